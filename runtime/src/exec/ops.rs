//! Waldo's operators and builtins on values, for generated code.
//!
//! The checker guarantees operand types, so the type checks here are a second line of defence
//! that raise an ApplicationException rather than panic. The errors a correct program can meet
//! at run time are the ones the book's language chapter lists ("Runtime errors"): division or `%` by zero, a List index out of
//! range or not whole, a missing Map key, removing what is not there, calling an unbound
//! Function or Endpoint. Each raises an ApplicationException whose message names the problem.
//!
//! The operations that may wait are written `fn .. -> impl Future<Output = ..> + Send` over
//! an `async` block rather than as `async fn`s (as are `Ep`'s and `Tx`'s that generated code
//! awaits): a generated function's future is proven `Send` for its endpoint's `Code` table,
//! and a declared `Send` ends that proof at each operation, where an `async fn`'s future
//! would have it go through the whole operation's body, again for every function that
//! awaits it (about 3 % of `cargo check` on the benchmark's sample protocol).
#![allow(
    clippy::manual_async_fn,
    reason = "a declared `Send` ends a generated body's `Send` proof here (see `exec::ops`)"
)]

use std::future::Future;
use std::sync::Arc;

use crate::core::error::{Exception, Flow, Raise, app_error};
use crate::core::tx::Tx;
use crate::core::value::{Key, Value, number_to_text};

/// The longest List `range` builds (a bigger one is almost certainly a mistake).
pub const MAX_RANGE: usize = 100_000_000;

fn numbers(a: &Value, b: &Value, op: &str) -> Flow<(f64, f64)> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => Ok((*x, *y)),
        _ => app_error(format!("`{op}` needs two Numbers, found {} and {}", a.kind_name(), b.kind_name())),
    }
}

/// `a + b`: adds Numbers or joins Texts.
pub fn add(a: &Value, b: &Value) -> Flow<Value> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => Ok(Value::Number(x + y)),
        (Value::Text(x), Value::Text(y)) => {
            let mut s = String::with_capacity(x.len() + y.len());
            s.push_str(x);
            s.push_str(y);
            Ok(Value::Text(Arc::from(s)))
        }
        _ => app_error(format!(
            "`+` needs two Numbers or two Texts, found {} and {}",
            a.kind_name(),
            b.kind_name()
        )),
    }
}

/// `a - b`.
pub fn sub(a: &Value, b: &Value) -> Flow<Value> {
    let (x, y) = numbers(a, b, "-")?;
    Ok(Value::Number(x - y))
}

/// `a * b`.
pub fn mul(a: &Value, b: &Value) -> Flow<Value> {
    let (x, y) = numbers(a, b, "*")?;
    Ok(Value::Number(x * y))
}

/// `a / b`; dividing by zero raises.
pub fn div(a: &Value, b: &Value) -> Flow<Value> {
    let (x, y) = numbers(a, b, "/")?;
    if y == 0.0 {
        return app_error("division by zero");
    }
    Ok(Value::Number(x / y))
}

/// `a % b` (the remainder has the sign of `a`, as in `fmod`); `% 0` raises.
pub fn rem(a: &Value, b: &Value) -> Flow<Value> {
    let (x, y) = numbers(a, b, "%")?;
    if y == 0.0 {
        return app_error("remainder by zero (`% 0`)");
    }
    Ok(Value::Number(x % y))
}

/// `-a`.
pub fn neg(a: &Value) -> Flow<f64> {
    Ok(-a.as_number()?)
}

/// `not a`.
pub fn not(a: &Value) -> Flow<bool> {
    Ok(!a.as_bool()?)
}

/// A comparison of two Numbers or two Texts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

/// `a < b` and friends, on two Numbers or two Texts.
pub fn compare(order: Order, a: &Value, b: &Value) -> Flow<bool> {
    let ord = match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.partial_cmp(y),
        (Value::Text(x), Value::Text(y)) => Some(x.cmp(y)),
        _ => return app_error(format!("cannot order {} and {}", a.kind_name(), b.kind_name())),
    };
    let Some(ord) = ord else { return Ok(false) }; // NaN compares false
    Ok(match order {
        Order::Lt => ord.is_lt(),
        Order::Le => ord.is_le(),
        Order::Gt => ord.is_gt(),
        Order::Ge => ord.is_ge(),
    })
}

/// `a == b` (deep; Endpoints by identity).
pub fn eq(tx: &Tx, a: &Value, b: &Value) -> impl Future<Output = Flow<bool>> + Send {
    async move { tx.equals(a, b).await }
}

/// `item in container`: an element of a List, a key of a Map, a substring of a Text.
pub fn contains(tx: &Tx, item: &Value, container: &Value) -> impl Future<Output = Flow<bool>> + Send {
    async move {
        let found = match container {
            Value::List(o) => {
                let mut found = false;
                for element in tx.list_items(o).await? {
                    if tx.equals(&element, item).await? {
                        found = true;
                        break;
                    }
                }
                found
            }
            Value::Map(o) => tx.map_contains(o, &item.to_key()?).await?,
            Value::Text(t) => t.contains(&**item.as_text()?),
            other => {
                return app_error(format!("`in` needs a List, a Map or a Text, found {}", other.kind_name()));
            }
        };
        Ok(found)
    }
}

/// `len(x)`: List elements, Map entries, Text characters.
pub fn len(tx: &Tx, v: &Value) -> impl Future<Output = Flow<f64>> + Send {
    async move {
        let n = match v {
            Value::List(o) | Value::Map(o) => tx.len(o).await?,
            Value::Text(t) => t.chars().count(),
            other => {
                return app_error(format!(
                    "`len` needs a List, a Map or a Text, found {}",
                    other.kind_name()
                ));
            }
        };
        Ok(n as f64)
    }
}

/// `range(a, b[, step])`: the Numbers from `a` up to (not including) `b` by `step`
/// (default 1; a negative step counts down). A step of zero raises.
pub fn range(start: &Value, end: &Value, step: Option<&Value>) -> Flow<Value> {
    let (a, b) = numbers(start, end, "range")?;
    let s = match step {
        Some(s) => s.as_number()?,
        None => 1.0,
    };
    if s == 0.0 || !s.is_finite() {
        return app_error(format!("`range` needs a step that is not zero, found {}", number_to_text(s)));
    }
    let count = ((b - a) / s).ceil();
    if !(count.is_finite()) || count > MAX_RANGE as f64 {
        return app_error(format!("`range` would make more than {MAX_RANGE} Numbers"));
    }
    let count = count.max(0.0) as usize;
    Ok(Value::new_list((0..count).map(|i| Value::Number(a + i as f64 * s)).collect()))
}

/// `toText(x)` of a Number, Text or TrueFalse.
pub fn to_text(v: &Value) -> Flow<Text> {
    Ok(match v {
        Value::Number(n) => number_text(*n),
        Value::Text(t) => t.clone(),
        Value::Bool(b) => bool_text(*b),
        other => {
            return app_error(format!(
                "`toText` needs a Number, Text or TrueFalse, found {}",
                other.kind_name()
            ));
        }
    })
}

/// The character of a Text at a whole-number index.
fn char_at(text: &str, index: &Value) -> Flow<Value> {
    let i = index.as_number()?;
    let count = text.chars().count();
    if i.fract() != 0.0 || i < 0.0 || i >= count as f64 {
        return app_error(format!(
            "Text index {} is out of range for a Text of {count} characters",
            number_to_text(i)
        ));
    }
    match text.chars().nth(i as usize) {
        Some(c) => Ok(Value::text(c.to_string())),
        None => app_error("Text index out of range"),
    }
}

/// `base[index]` on a List, Map or Text.
pub fn index_get(tx: &Tx, base: &Value, index: &Value) -> impl Future<Output = Flow<Value>> + Send {
    async move {
        match base {
            Value::List(o) => tx.list_get(o, index.as_number()?).await,
            Value::Map(o) => tx.map_get(o, &index.to_key()?).await,
            Value::Text(t) => char_at(t, index),
            other => app_error(format!("{} cannot be indexed", other.kind_name())),
        }
    }
}

/// `base[index] = value` on a List or Map.
pub fn index_set(
    tx: &Tx,
    base: &Value,
    index: &Value,
    value: Value,
) -> impl Future<Output = Flow<()>> + Send {
    async move {
        match base {
            Value::List(o) => tx.list_set(o, index.as_number()?, value).await,
            Value::Map(o) => tx.map_set(o, index.to_key()?, value).await,
            other => app_error(format!("cannot assign into {}", other.kind_name())),
        }
    }
}

/// What a `for` loop visits: List elements, Map keys in ascending order, Text characters.
/// The loop runs over a snapshot: changes made in the body do not change what it visits.
pub fn iteration(tx: &Tx, v: &Value) -> impl Future<Output = Flow<Vec<Value>>> + Send {
    async move {
        match v {
            Value::List(o) => tx.list_items(o).await,
            Value::Map(o) => Ok(tx.map_keys(o).await?.iter().map(Key::to_value).collect()),
            Value::Text(t) => Ok(t.chars().map(|c| Value::text(c.to_string())).collect()),
            other => app_error(format!("cannot loop over {}", other.kind_name())),
        }
    }
}

/// The TrueFalse of a condition.
pub fn truth(v: &Value) -> Flow<bool> {
    Ok(v.as_bool()?)
}

/// Calls a Function value with copies of `args` (host functions never alias Waldo data).
pub fn call_function(tx: &Tx, f: &Value, args: Vec<Value>) -> impl Future<Output = Flow<Vec<Value>>> + Send {
    async move {
        match f {
            Value::Function(host) => {
                let mut copied = Vec::with_capacity(args.len());
                for a in &args {
                    copied.push(tx.deep_copy(a).await?);
                }
                // The results are copies too: a host function may hand back the same object twice.
                Ok(host.call(copied)?.iter().map(Value::detached_copy).collect())
            }
            Value::Nothing => app_error("this Function variable was never given a function"),
            other => Err(Exception::application(format!("{} is not a Function", other.kind_name())).into()),
        }
    }
}

/// How a `try` body (run as its own block of code) ended, for the code around it.
#[derive(Debug)]
pub enum Ctl {
    /// It ran to its end.
    Next,
    /// `break` out of a loop around the `try`.
    Break,
    /// `continue` a loop around the `try`.
    Continue,
    /// `return` from the function, with these values.
    Return(Vec<Value>),
}

/// The first of a call's results (the value of a call used as an expression).
pub fn first(values: Vec<Value>) -> Value {
    values.into_iter().next().unwrap_or(Value::Nothing)
}

/// The `i`-th of several results (destructuring `a, b = f();`).
pub fn nth(values: &[Value], i: usize) -> Value {
    values.get(i).cloned().unwrap_or(Value::Nothing)
}

fn cell(v: &Value) -> Flow<&crate::core::value::ExtCell> {
    match v {
        Value::External(c) => Ok(c),
        Value::Nothing => app_error("this External was never given a cell (use extCopy or extAssign first)"),
        other => app_error(format!("{} is not an External", other.kind_name())),
    }
}

/// The current value of an External (`x` where a value is expected).
pub fn ext_read(tx: &Tx, v: &Value) -> impl Future<Output = Flow<Value>> + Send {
    async move { tx.ext_read(cell(v)?).await }
}

/// The container an External holds, to change in place (`x[k] = v`, `x.append(v)`).
pub fn ext_container(tx: &Tx, v: &Value) -> impl Future<Output = Flow<Value>> + Send {
    async move { tx.ext_for_write(cell(v)?).await }
}

/// `extCopy value to place`, where the place currently holds `current`: writes into its
/// cell, or makes a fresh cell when it has none (returned, for the place to hold).
pub fn ext_copy(tx: &Tx, current: &Value, value: Value) -> impl Future<Output = Flow<Option<Value>>> + Send {
    async move {
        match current {
            Value::External(c) => {
                tx.ext_write(c, value).await?;
                Ok(None)
            }
            Value::Nothing => {
                let fresh = crate::core::value::ExtCell::new(Value::Nothing);
                tx.ext_write(&fresh, value).await?;
                Ok(Some(Value::External(fresh)))
            }
            other => app_error(format!("cannot extCopy into {}", other.kind_name())),
        }
    }
}

/// A Map literal `{k: v, ...}`.
pub fn map_literal(entries: Vec<(Value, Value)>) -> Flow<Value> {
    let mut map = std::collections::BTreeMap::new();
    for (k, v) in entries {
        map.insert(k.to_key()?, v);
    }
    Ok(Value::new_map(map))
}

/// `s.field`.
pub fn field_get(tx: &Tx, base: &Value, field: usize) -> impl Future<Output = Flow<Value>> + Send {
    async move { tx.field_get(base.as_obj()?, field).await }
}

/// `s.field = value`.
pub fn field_set(tx: &Tx, base: &Value, field: usize, value: Value) -> impl Future<Output = Flow<()>> + Send {
    async move { tx.field_set(base.as_obj()?, field, value).await }
}

/// `list.append(x)`.
pub fn append(tx: &Tx, list: &Value, x: Value) -> impl Future<Output = Flow<()>> + Send {
    async move { tx.list_append(list.as_obj()?, x).await }
}

/// `list.insert(i, x)`.
pub fn insert(tx: &Tx, list: &Value, i: &Value, x: Value) -> impl Future<Output = Flow<()>> + Send {
    async move { tx.list_insert(list.as_obj()?, i.as_number()?, x).await }
}

/// `list.remove(i)`.
pub fn remove_index(tx: &Tx, list: &Value, i: &Value) -> impl Future<Output = Flow<()>> + Send {
    async move { tx.list_remove(list.as_obj()?, i.as_number()?).await }
}

/// `map.remove(k)`.
pub fn remove_key(tx: &Tx, map: &Value, k: &Value) -> impl Future<Output = Flow<()>> + Send {
    async move { tx.map_remove(map.as_obj()?, &k.to_key()?).await }
}

/// `signal(f, args...)` in code running on `ep`: `f(args)` once, after commit.
pub fn signal(
    tx: &Tx,
    ep: &crate::core::endpoint::EndpointCore,
    f: &Value,
    args: Vec<Value>,
) -> impl Future<Output = Flow<()>> + Send {
    async move {
        match f {
            Value::Function(host) => tx.signal(ep, host.clone(), args).await,
            Value::Nothing => app_error("signal: this Function variable was never given a function"),
            other => app_error(format!("signal: {} is not a Function", other.kind_name())),
        }
    }
}

/// `e.f(args)` on an Endpoint value, in the caller's transaction.
pub fn call_endpoint(
    tx: &Tx,
    target: &Value,
    function: &str,
    args: Vec<Value>,
) -> impl Future<Output = Flow<Vec<Value>>> + Send {
    async move {
        match target {
            Value::Endpoint(e) => {
                // The callee's code notes its places; the caller's statement is current again after.
                let mark = tx.mark();
                let done = e.call(tx, function, args).await;
                tx.back(mark, done)
            }
            Value::Nothing => app_error(format!(
                "cannot call `{function}`: this Endpoint variable was never given an endpoint"
            )),
            other => app_error(format!("cannot call `{function}` on {}", other.kind_name())),
        }
    }
}

/// `e.id()` on an Endpoint value.
pub fn endpoint_id(target: &Value) -> Flow<Text> {
    match target {
        Value::Endpoint(e) => Ok(text(e.id())),
        Value::Nothing => {
            app_error("cannot take the id of an Endpoint variable that was never given an endpoint")
        }
        other => app_error(format!("{} is not an Endpoint", other.kind_name())),
    }
}

/// Deep copies of `values` (results leaving a transaction for the host).
///
/// Values with no container are returned as they are; only when there is one to copy does
/// the copy's future (its maps of what was copied, the objects' locks) go to the heap, so
/// that every host call's future, which holds this one, stays small.
pub fn copy_all(tx: &Tx, values: Vec<Value>) -> impl Future<Output = Flow<Vec<Value>>> + Send {
    async move {
        if values.iter().any(|v| matches!(v, Value::List(_) | Value::Map(_) | Value::Struct(_))) {
            Box::pin(copy_containers(tx, values)).await
        } else {
            Ok(values)
        }
    }
}

async fn copy_containers(tx: &Tx, mut values: Vec<Value>) -> Flow<Vec<Value>> {
    for v in &mut values {
        if matches!(v, Value::List(_) | Value::Map(_) | Value::Struct(_)) {
            *v = tx.deep_copy(v).await?;
        }
    }
    Ok(values)
}

/// The `n` fields of a Struct value nobody else can reach (for host conversions).
pub fn struct_fields(v: &Value, n: usize) -> Result<Vec<Value>, Exception> {
    match v {
        Value::Struct(o) => match o.snapshot() {
            crate::core::value::ObjData::Struct(fields) if fields.len() == n => Ok(fields),
            _ => Err(Exception::application(format!("expected a Struct of {n} fields"))),
        },
        other => Err(Exception::application(format!("expected a Struct, found {}", other.kind_name()))),
    }
}

/// The text `print(x)` prints: Text as is, Numbers and TrueFalse as `toText` writes them,
/// containers in brackets.
pub fn print_text(tx: &Tx, v: &Value) -> impl Future<Output = Flow<String>> + Send {
    async move {
        let copy = match v {
            Value::List(_) | Value::Map(_) | Value::Struct(_) => tx.deep_copy(v).await?,
            other => other.clone(),
        };
        Ok(show(&copy, 0))
    }
}

fn show(v: &Value, depth: usize) -> String {
    use crate::core::value::ObjData;
    if depth > 32 {
        return "...".to_owned();
    }
    match v {
        Value::Nothing => "Nothing".to_owned(),
        Value::Number(n) => number_to_text(*n),
        Value::Text(t) => t.to_string(),
        Value::Bool(b) => if *b { "True" } else { "False" }.to_owned(),
        Value::List(o) | Value::Struct(o) => match o.snapshot() {
            ObjData::List(items) | ObjData::Struct(items) => {
                let parts: Vec<String> = items.iter().map(|i| show(i, depth + 1)).collect();
                format!("[{}]", parts.join(", "))
            }
            ObjData::Map(_) => String::new(),
        },
        Value::Map(o) => match o.snapshot() {
            ObjData::Map(m) => {
                let parts: Vec<String> = m
                    .iter()
                    .map(|(k, v)| format!("{}: {}", show(&k.to_value(), depth + 1), show(v, depth + 1)))
                    .collect();
                format!("{{{}}}", parts.join(", "))
            }
            _ => String::new(),
        },
        Value::Function(_) => "<Function>".to_owned(),
        Value::Endpoint(e) => e.id().to_owned(),
        Value::External(c) => show(&c.committed(), depth + 1),
    }
}

/// The results of a sequence: its named return values, out of its final data.
pub fn seq_results(data: Vec<Value>, params: usize, returns: usize) -> Vec<Value> {
    data.into_iter().skip(params).take(returns).collect()
}

/// The kind of value a parameter takes (dynamic endpoint calls check their arguments).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `Number`.
    Number,
    /// `Text`.
    Text,
    /// `TrueFalse`.
    TrueFalse,
    /// `List(...)`.
    List,
    /// `Map(...)`.
    Map,
    /// `Struct S`.
    Struct,
    /// `Function(...)` (may be unbound).
    Function,
    /// `Endpoint` (may be unbound).
    Endpoint,
    /// `External T` (may be unbound).
    External,
    /// Anything.
    Any,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Number => "a Number",
            Kind::Text => "a Text",
            Kind::TrueFalse => "a TrueFalse",
            Kind::List => "a List",
            Kind::Map => "a Map",
            Kind::Struct => "a Struct",
            Kind::Function => "a Function",
            Kind::Endpoint => "an Endpoint",
            Kind::External => "an External",
            Kind::Any => "anything",
        }
    }

    fn accepts(self, v: &Value) -> bool {
        matches!(
            (self, v),
            (Kind::Any, _)
                | (Kind::Number, Value::Number(_))
                | (Kind::Text, Value::Text(_))
                | (Kind::TrueFalse, Value::Bool(_))
                | (Kind::List, Value::List(_))
                | (Kind::Map, Value::Map(_))
                | (Kind::Struct, Value::Struct(_))
                | (Kind::Function, Value::Function(_) | Value::Nothing)
                | (Kind::Endpoint, Value::Endpoint(_) | Value::Nothing)
                | (Kind::External, Value::External(_) | Value::Nothing)
        )
    }
}

/// Checks the arguments of a dynamic call of public function `function` (`e.f(args)` on an
/// endpoint the checker could not identify): their number and kinds.
pub fn check_args(function: &str, args: &[Value], kinds: &[Kind]) -> Flow<()> {
    if args.len() != kinds.len() {
        let n = kinds.len();
        return app_error(format!(
            "`{function}` takes {n} argument{}, {} were given",
            if n == 1 { "" } else { "s" },
            args.len()
        ));
    }
    for (i, (a, k)) in args.iter().zip(kinds).enumerate() {
        if !k.accepts(a) {
            return app_error(format!(
                "argument {} of `{function}` should be {}, found {}",
                i + 1,
                k.name(),
                a.kind_name()
            ));
        }
    }
    Ok(())
}

/// Checks the results of a dynamic call of `function` against what the caller takes back
/// (`Number n = e.f();`, `a, b = e.f();`, `return e.f();`): their number and kinds.
pub fn check_results(function: &str, results: Vec<Value>, kinds: &[Kind]) -> Flow<Vec<Value>> {
    if results.len() != kinds.len() {
        let (n, got) = (kinds.len(), results.len());
        return app_error(format!(
            "`{function}` returned {got} value{} where {n} {} expected",
            if got == 1 { "" } else { "s" },
            if n == 1 { "is" } else { "are" }
        ));
    }
    for (i, (r, k)) in results.iter().zip(kinds).enumerate() {
        if !k.accepts(r) {
            let which = if kinds.len() == 1 { String::new() } else { format!(" as value {}", i + 1) };
            return app_error(format!(
                "`{function}` returned {}{which} where {} is expected",
                r.kind_name(),
                k.name()
            ));
        }
    }
    Ok(results)
}

// ---------------------------------------------------------------- typed values
//
// Generated code keeps Number, TrueFalse and Text values that the checker has typed as plain
// `f64`, `bool` and `Text`; these are the operations on them that can raise, or that Rust has
// no operator for. Values cross to and from `Value` only where they meet containers, shared
// variables, sequence data and calls.

/// A Text value of typed code: immutable and cheap to clone (the payload of `Value::Text`).
pub type Text = Arc<str>;

/// A Text value from a literal or a message.
pub fn text(s: &str) -> Text {
    Arc::from(s)
}

/// `a + b` on two Texts.
pub fn concat(a: &str, b: &str) -> Text {
    let mut s = String::with_capacity(a.len() + b.len());
    s.push_str(a);
    s.push_str(b);
    Arc::from(s)
}

/// `a / b` on two Numbers; dividing by zero raises.
pub fn divide(a: f64, b: f64) -> Flow<f64> {
    if b == 0.0 {
        return app_error("division by zero");
    }
    Ok(a / b)
}

/// `a % b` on two Numbers (the remainder has the sign of `a`); `% 0` raises.
pub fn remainder(a: f64, b: f64) -> Flow<f64> {
    if b == 0.0 {
        return app_error("remainder by zero (`% 0`)");
    }
    Ok(a % b)
}

/// `not x` where `x` is a comparison or a logical expression (kept whole, as written).
pub fn negate(x: bool) -> bool {
    !x
}

/// A TrueFalse literal as a condition (`while (True)`).
pub fn constant(b: bool) -> bool {
    b
}

/// `toText(n)` of a Number.
pub fn number_text(n: f64) -> Text {
    Arc::from(number_to_text(n))
}

/// `toText(b)` of a TrueFalse.
pub fn bool_text(b: bool) -> Text {
    text(if b { "True" } else { "False" })
}

/// `len(t)` of a Text: its characters.
pub fn text_len(t: &str) -> f64 {
    t.chars().count() as f64
}

/// `item in t` on two Texts: whether `item` is a substring of `t`.
pub fn text_in(item: &str, t: &str) -> bool {
    t.contains(item)
}

/// `t[i]` on a Text: the character at a whole-number index; out of range raises.
pub fn char_at_index(t: &str, i: f64) -> Flow<Text> {
    match char_at(t, &Value::Number(i))? {
        Value::Text(c) => Ok(c),
        _ => app_error("Text index out of range"),
    }
}

/// A parameter of typed code, out of the `Value` a call passed (the runtime has checked its
/// kind; another kind raises rather than panics).
pub trait Typed: Sized {
    /// The typed value of `v`.
    fn from_value(v: Value) -> Result<Self, Exception>;
}

impl Typed for f64 {
    fn from_value(v: Value) -> Result<Self, Exception> {
        v.as_number()
    }
}

impl Typed for bool {
    fn from_value(v: Value) -> Result<Self, Exception> {
        v.as_bool()
    }
}

impl Typed for Text {
    fn from_value(v: Value) -> Result<Self, Exception> {
        match v {
            Value::Text(t) => Ok(t),
            other => other.as_text().cloned(),
        }
    }
}

impl Typed for Value {
    fn from_value(v: Value) -> Result<Self, Exception> {
        Ok(v)
    }
}

/// A function's parameters, taken out of a call's arguments in order, each as its type is
/// held (`let (x, xs): (f64, rt::Value) = rt::ops::params(args)?;`). A missing argument is
/// `Nothing`.
pub trait Params: Sized {
    /// The parameters in `args`.
    fn from_args(args: Vec<Value>) -> Result<Self, Exception>;
}

impl<T: Typed> Params for T {
    fn from_args(args: Vec<Value>) -> Result<Self, Exception> {
        arg(&mut args.into_iter())
    }
}

macro_rules! params_tuple {
    ($($t:ident),+) => {
        impl<$($t: Typed),+> Params for ($($t,)+) {
            fn from_args(args: Vec<Value>) -> Result<Self, Exception> {
                let mut args = args.into_iter();
                Ok(($(arg::<$t>(&mut args)?,)+))
            }
        }
    };
}

params_tuple!(A, B);
params_tuple!(A, B, C);
params_tuple!(A, B, C, D);
params_tuple!(A, B, C, D, E);
params_tuple!(A, B, C, D, E, F);
params_tuple!(A, B, C, D, E, F, G);
params_tuple!(A, B, C, D, E, F, G, H);

/// The parameters of a call (see [`Params`]).
pub fn params<P: Params>(args: Vec<Value>) -> Result<P, Exception> {
    P::from_args(args)
}

/// The first of a call's values, a Number.
pub fn first_number(values: Vec<Value>) -> Result<f64, Exception> {
    f64::from_value(first(values))
}

/// The first of a call's values, a TrueFalse.
pub fn first_bool(values: Vec<Value>) -> Result<bool, Exception> {
    bool::from_value(first(values))
}

/// The first of a call's values, a Text.
pub fn first_text(values: Vec<Value>) -> Result<Text, Exception> {
    Text::from_value(first(values))
}

/// Gives sequence data its starting values: `values` into `data` from index `at` (the
/// first block of a sequence, for its returns and declarations).
pub fn fill<const N: usize>(data: &mut [Value], at: usize, values: [Value; N]) {
    for (slot, value) in data[at..].iter_mut().zip(values) {
        *slot = value;
    }
}

/// Before a `finally` runs: an attempt that must stop (wounded, past its deadline) stops
/// here, without running the `finally` for nothing (its undoing follows); an exception that
/// goes on after it keeps the place it was raised at, not one in the `finally`.
pub fn before_finally<T>(tx: &Tx, outcome: Flow<T>) -> Flow<Flow<T>> {
    match outcome {
        Err(Raise::Abort(abort)) => Err(Raise::Abort(abort)),
        Err(Raise::Exception(e)) => Ok(Err(Raise::Exception(tx.locate(e)))),
        Ok(value) => Ok(Ok(value)),
    }
}

/// Runs the body of a `try` that cannot wait, to its outcome (see `Tx::caught`).
pub fn attempt(body: impl FnOnce() -> Flow<()>) -> Flow<()> {
    body()
}

/// The next argument of a call, typed (`let x: f64 = rt::ops::arg(&mut args)?;`).
pub fn arg<T: Typed>(args: &mut std::vec::IntoIter<Value>) -> Result<T, Exception> {
    T::from_value(args.next().unwrap_or(Value::Nothing))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::error::Abort;

    #[test]
    fn only_an_abort_stops_before_a_finally() {
        let clock = crate::core::tx::Clock::with_origin(1);
        let tx = Tx::begin(&clock, clock.next());
        let wounded: Flow<()> = Err(Raise::Abort(Abort::Wounded));
        assert!(matches!(before_finally(&tx, wounded), Err(Raise::Abort(Abort::Wounded))));
        // An exception runs the finally, and keeps the place noted before the finally ran.
        tx.at("t.wld", 7);
        let raised: Flow<()> = Err(Exception::application("boom").into());
        let outcome = before_finally(&tx, raised).expect("runs the finally");
        tx.at("t.wld", 9);
        assert!(matches!(outcome, Err(Raise::Exception(e)) if e.at == "t.wld:7"));
        assert!(matches!(before_finally(&tx, Ok(3)), Ok(Ok(3))));
    }

    #[test]
    fn fill_gives_the_data_after_the_parameters_their_starting_values() {
        let mut data = vec![Value::Number(7.0), Value::Nothing, Value::Nothing, Value::Nothing];
        fill(&mut data, 1, [Value::Number(0.0), Value::text("")]);
        assert_eq!(data[0].as_number().ok(), Some(7.0));
        assert_eq!(data[1].as_number().ok(), Some(0.0));
        assert_eq!(data[2].as_str().ok(), Some(""));
        assert!(matches!(data[3], Value::Nothing), "values past the array stay");
        // The typed first value of a call, and its kind checked.
        assert_eq!(first_number(vec![Value::Number(2.0), Value::Bool(true)]).ok(), Some(2.0));
        assert_eq!(first_text(vec![Value::text("a")]).ok().as_deref(), Some("a"));
        assert!(first_bool(vec![Value::Number(1.0)]).is_err(), "a Number is not a TrueFalse");
        assert!(first_number(vec![]).is_err(), "no value is Nothing, not a Number");
    }

    #[test]
    fn dynamic_results_are_checked_for_number_and_kind() {
        let ok = check_results("f", vec![Value::Number(1.0), Value::text("a")], &[Kind::Number, Kind::Text]);
        assert_eq!(ok.map(|v| v.len()).ok(), Some(2));
        assert_eq!(
            message(check_results("f", vec![], &[Kind::Number])),
            "`f` returned 0 values where 1 is expected"
        );
        assert_eq!(
            message(check_results("f", vec![Value::Number(1.0)], &[Kind::Number, Kind::Text])),
            "`f` returned 1 value where 2 are expected"
        );
        assert_eq!(
            message(check_results("f", vec![Value::text("x")], &[Kind::Number])),
            "`f` returned a Text where a Number is expected"
        );
        assert_eq!(
            message(check_results(
                "g",
                vec![Value::Number(1.0), Value::Number(2.0)],
                &[Kind::Number, Kind::Text]
            )),
            "`g` returned a Number as value 2 where a Text is expected"
        );
    }

    fn message<T: std::fmt::Debug>(r: Flow<T>) -> String {
        match r {
            Err(Raise::Exception(e)) => e.message,
            other => panic!("expected an exception, got {other:?}"),
        }
    }

    fn n(x: f64) -> Value {
        Value::Number(x)
    }

    fn list_numbers(v: &Value) -> Vec<f64> {
        match v.as_obj().expect("a list").snapshot() {
            crate::core::value::ObjData::List(items) => {
                items.iter().map(|i| i.as_number().expect("numbers")).collect()
            }
            _ => panic!("a List"),
        }
    }

    #[test]
    fn arithmetic_and_its_errors() {
        assert_eq!(add(&n(1.0), &n(2.0)).expect("adds").as_number().expect("n"), 3.0);
        assert_eq!(
            &**add(&Value::text("ab"), &Value::text("c")).expect("joins").as_text().expect("t"),
            "abc"
        );
        assert_eq!(message(div(&n(1.0), &n(0.0))), "division by zero");
        assert_eq!(message(rem(&n(1.0), &n(0.0))), "remainder by zero (`% 0`)");
        assert_eq!(rem(&n(-7.0), &n(3.0)).expect("rem").as_number().expect("n"), -1.0);
        assert!(message(add(&n(1.0), &Value::text("x"))).contains("two Numbers or two Texts"));
    }

    #[test]
    fn comparisons() {
        assert!(compare(Order::Lt, &n(1.0), &n(2.0)).expect("cmp"));
        assert!(compare(Order::Ge, &Value::text("b"), &Value::text("a")).expect("cmp"));
        assert!(!compare(Order::Lt, &n(f64::NAN), &n(1.0)).expect("cmp"));
    }

    #[test]
    fn ranges() {
        assert_eq!(list_numbers(&range(&n(0.0), &n(4.0), None).expect("range")), vec![0.0, 1.0, 2.0, 3.0]);
        assert_eq!(
            list_numbers(&range(&n(10.0), &n(0.0), Some(&n(-4.0))).expect("range")),
            vec![10.0, 6.0, 2.0]
        );
        assert!(list_numbers(&range(&n(5.0), &n(1.0), None).expect("range")).is_empty());
        assert!(message(range(&n(0.0), &n(1.0), Some(&n(0.0)))).contains("not zero"));
        assert!(message(range(&n(0.0), &n(1e12), None)).contains("more than"));
    }

    #[test]
    fn text_conversions_and_characters() {
        assert_eq!(&*to_text(&n(3.0)).expect("t"), "3");
        assert_eq!(&*to_text(&n(2.5)).expect("t"), "2.5");
        assert_eq!(&*to_text(&Value::Bool(true)).expect("t"), "True");
        assert_eq!(&**char_at("héllo", &n(1.0)).expect("char").as_text().expect("t"), "é");
        assert_eq!(
            message(char_at("abc", &n(3.0))),
            "Text index 3 is out of range for a Text of 3 characters"
        );
    }

    #[test]
    fn typed_operations_raise_where_the_language_says() {
        assert_eq!(divide(7.0, 2.0).expect("divides"), 3.5);
        assert_eq!(message(divide(1.0, 0.0)), "division by zero");
        assert_eq!(message(divide(0.0, -0.0)), "division by zero");
        assert_eq!(remainder(-7.0, 3.0).expect("rem"), -1.0);
        assert_eq!(message(remainder(1.0, 0.0)), "remainder by zero (`% 0`)");
        assert_eq!(&*char_at_index("héllo", 1.0).expect("char"), "é");
        assert_eq!(
            message(char_at_index("abc", 3.0)),
            "Text index 3 is out of range for a Text of 3 characters"
        );
        assert!(message(char_at_index("abc", 0.5)).contains("out of range"));
        assert!(message(char_at_index("abc", -1.0)).contains("out of range"));
        assert_eq!(&*concat("ab", "c"), "abc");
        assert_eq!(&*number_text(3.0), "3");
        assert_eq!(&*number_text(-0.25), "-0.25");
        assert_eq!(&*bool_text(false), "False");
        assert_eq!(text_len("héllo"), 5.0);
        assert!(text_in("ll", "hello") && !text_in("x", "hello") && text_in("", ""));
        assert!(!negate(true) && constant(true));
    }

    #[test]
    fn typed_arguments_are_checked() {
        let mut args = vec![n(2.0), Value::text("t"), Value::Bool(true)].into_iter();
        assert_eq!(arg::<f64>(&mut args).expect("a Number"), 2.0);
        assert_eq!(&*arg::<Text>(&mut args).expect("a Text"), "t");
        assert!(arg::<bool>(&mut args).expect("a TrueFalse"));
        // Missing, or of another kind: an ApplicationException, not a panic.
        assert!(arg::<f64>(&mut args).expect_err("none left").message.contains("expected a Number"));
        let mut args = vec![Value::text("x")].into_iter();
        assert!(arg::<f64>(&mut args).expect_err("a Text").message.contains("found a Text"));
    }
}
