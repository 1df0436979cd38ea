//! Waldo's operators and builtins on values, for generated code.
//!
//! The checker guarantees operand types, so the type checks here are a second line of defence
//! that raise an ApplicationException rather than panic. The errors a correct program can meet
//! at run time are the ones LANGUAGE.md §5 lists: division or `%` by zero, a List index out of
//! range or not whole, a missing Map key, removing what is not there, calling an unbound
//! Function or Endpoint. Each raises an ApplicationException whose message names the problem.

use std::sync::Arc;

use crate::error::{Exception, Flow, app_error};
use crate::tx::Tx;
use crate::value::{Key, Value, number_to_text};

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
pub fn neg(a: &Value) -> Flow<Value> {
    Ok(Value::Number(-a.as_number()?))
}

/// `not a`.
pub fn not(a: &Value) -> Flow<Value> {
    Ok(Value::Bool(!a.as_bool()?))
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
pub fn compare(order: Order, a: &Value, b: &Value) -> Flow<Value> {
    let ord = match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.partial_cmp(y),
        (Value::Text(x), Value::Text(y)) => Some(x.cmp(y)),
        _ => return app_error(format!("cannot order {} and {}", a.kind_name(), b.kind_name())),
    };
    let Some(ord) = ord else { return Ok(Value::Bool(false)) }; // NaN compares false
    Ok(Value::Bool(match order {
        Order::Lt => ord.is_lt(),
        Order::Le => ord.is_le(),
        Order::Gt => ord.is_gt(),
        Order::Ge => ord.is_ge(),
    }))
}

/// `a == b` (deep; Endpoints by identity).
pub async fn eq(tx: &Tx, a: &Value, b: &Value) -> Flow<Value> {
    Ok(Value::Bool(tx.equals(a, b).await?))
}

/// `item in container`: an element of a List, a key of a Map, a substring of a Text.
pub async fn contains(tx: &Tx, item: &Value, container: &Value) -> Flow<Value> {
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
    Ok(Value::Bool(found))
}

/// `len(x)`: List elements, Map entries, Text characters.
pub async fn len(tx: &Tx, v: &Value) -> Flow<Value> {
    let n = match v {
        Value::List(o) | Value::Map(o) => tx.len(o).await?,
        Value::Text(t) => t.chars().count(),
        other => {
            return app_error(format!("`len` needs a List, a Map or a Text, found {}", other.kind_name()));
        }
    };
    Ok(Value::Number(n as f64))
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
pub fn to_text(v: &Value) -> Flow<Value> {
    Ok(match v {
        Value::Number(n) => Value::text(number_to_text(*n)),
        Value::Text(t) => Value::Text(t.clone()),
        Value::Bool(true) => Value::text("True"),
        Value::Bool(false) => Value::text("False"),
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
pub async fn index_get(tx: &Tx, base: &Value, index: &Value) -> Flow<Value> {
    match base {
        Value::List(o) => tx.list_get(o, index.as_number()?).await,
        Value::Map(o) => tx.map_get(o, &index.to_key()?).await,
        Value::Text(t) => char_at(t, index),
        other => app_error(format!("{} cannot be indexed", other.kind_name())),
    }
}

/// `base[index] = value` on a List or Map.
pub async fn index_set(tx: &Tx, base: &Value, index: &Value, value: Value) -> Flow<()> {
    match base {
        Value::List(o) => tx.list_set(o, index.as_number()?, value).await,
        Value::Map(o) => tx.map_set(o, index.to_key()?, value).await,
        other => app_error(format!("cannot assign into {}", other.kind_name())),
    }
}

/// What a `for` loop visits: List elements, Map keys in ascending order, Text characters.
/// The loop runs over a snapshot: changes made in the body do not change what it visits.
pub async fn iteration(tx: &Tx, v: &Value) -> Flow<Vec<Value>> {
    match v {
        Value::List(o) => tx.list_items(o).await,
        Value::Map(o) => Ok(tx.map_keys(o).await?.iter().map(Key::to_value).collect()),
        Value::Text(t) => Ok(t.chars().map(|c| Value::text(c.to_string())).collect()),
        other => app_error(format!("cannot loop over {}", other.kind_name())),
    }
}

/// The TrueFalse of a condition.
pub fn truth(v: &Value) -> Flow<bool> {
    Ok(v.as_bool()?)
}

/// Calls a Function value with copies of `args` (host functions never alias Waldo data).
pub async fn call_function(tx: &Tx, f: &Value, args: Vec<Value>) -> Flow<Vec<Value>> {
    match f {
        Value::Function(host) => {
            let mut copied = Vec::with_capacity(args.len());
            for a in &args {
                copied.push(tx.deep_copy(a).await?);
            }
            Ok(host.call(copied)?)
        }
        Value::Nothing => app_error("this Function variable was never given a function"),
        other => Err(Exception::application(format!("{} is not a Function", other.kind_name())).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Raise;

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
            crate::value::ObjData::List(items) => {
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
        assert!(compare(Order::Lt, &n(1.0), &n(2.0)).expect("cmp").as_bool().expect("b"));
        assert!(compare(Order::Ge, &Value::text("b"), &Value::text("a")).expect("cmp").as_bool().expect("b"));
        assert!(!compare(Order::Lt, &n(f64::NAN), &n(1.0)).expect("cmp").as_bool().expect("b"));
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
        assert_eq!(&**to_text(&n(3.0)).expect("t").as_text().expect("t"), "3");
        assert_eq!(&**to_text(&n(2.5)).expect("t").as_text().expect("t"), "2.5");
        assert_eq!(&**to_text(&Value::Bool(true)).expect("t").as_text().expect("t"), "True");
        assert_eq!(&**char_at("héllo", &n(1.0)).expect("char").as_text().expect("t"), "é");
        assert_eq!(
            message(char_at("abc", &n(3.0))),
            "Text index 3 is out of range for a Text of 3 characters"
        );
    }
}
