//! Values of every Waldo type.
//!
//! Scalars (`Number`, `Text`, `TrueFalse`) are plain values. Lists, Maps and Structs are
//! heap objects ([`Obj`]) shared by reference: after `b = a;` both name the same object, as
//! the book's language chapter ("Types") requires inside one endpoint. Each object carries its own transaction lock;
//! its contents are read and written only through a transaction ([`crate::Tx`]), which
//! locks it, so concurrent transactions never see each other's uncommitted writes.
//!
//! Crossing a boundary (endpoint call, sequence message, host call) copies a value deeply
//! ([`crate::Tx::deep_copy`]): the receiver never aliases the sender's objects.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::core::endpoint::EndpointRef;
use crate::core::error::Exception;
use crate::core::tx::TxLock;

/// A Waldo value.
#[derive(Clone)]
pub enum Value {
    /// No value: the result of a call that returns nothing.
    Nothing,
    /// `Number`: a 64-bit float.
    Number(f64),
    /// `Text`: an immutable string, cheap to clone.
    Text(Arc<str>),
    /// `TrueFalse`.
    Bool(bool),
    /// `List(element: T)`: a shared, mutable sequence.
    List(Obj),
    /// `Map(from: K, to: V)`: a shared, mutable map in ascending key order.
    Map(Obj),
    /// `Struct S`: a shared, mutable record (fields by position).
    Struct(Obj),
    /// `Function(...)`: a function given by the host.
    Function(HostFn),
    /// `Endpoint`: a reference to an endpoint on the same host.
    Endpoint(EndpointRef),
    /// `External T`: a host-owned transactional cell.
    External(ExtCell),
}

impl From<f64> for Value {
    fn from(n: f64) -> Value {
        Value::Number(n)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}

impl From<&str> for Value {
    fn from(t: &str) -> Value {
        Value::text(t)
    }
}

impl From<Arc<str>> for Value {
    fn from(t: Arc<str>) -> Value {
        Value::Text(t)
    }
}

impl Value {
    /// A Text value.
    pub fn text(s: impl AsRef<str>) -> Value {
        Value::Text(Arc::from(s.as_ref()))
    }

    /// A fresh, empty List.
    pub fn new_list(items: Vec<Value>) -> Value {
        Value::List(Obj::new(ObjData::List(items)))
    }

    /// A fresh Map.
    pub fn new_map(entries: BTreeMap<Key, Value>) -> Value {
        Value::Map(Obj::new(ObjData::Map(entries)))
    }

    /// A fresh Struct with `fields` (by position).
    pub fn new_struct(fields: Vec<Value>) -> Value {
        Value::Struct(Obj::new(ObjData::Struct(fields)))
    }

    /// The Number inside, or an ApplicationException naming what was found.
    pub fn as_number(&self) -> Result<f64, Exception> {
        match self {
            Value::Number(n) => Ok(*n),
            other => Err(Exception::application(format!("expected a Number, found {}", other.kind_name()))),
        }
    }

    /// The Text inside, or an ApplicationException.
    pub fn as_text(&self) -> Result<&Arc<str>, Exception> {
        match self {
            Value::Text(t) => Ok(t),
            other => Err(Exception::application(format!("expected a Text, found {}", other.kind_name()))),
        }
    }

    /// The text of a Text, or an ApplicationException.
    pub fn as_str(&self) -> Result<&str, Exception> {
        Ok(self.as_text()?)
    }

    /// The TrueFalse inside, or an ApplicationException.
    pub fn as_bool(&self) -> Result<bool, Exception> {
        match self {
            Value::Bool(b) => Ok(*b),
            other => {
                Err(Exception::application(format!("expected a TrueFalse, found {}", other.kind_name())))
            }
        }
    }

    /// The object of a List, Map or Struct.
    pub fn as_obj(&self) -> Result<&Obj, Exception> {
        match self {
            Value::List(o) | Value::Map(o) | Value::Struct(o) => Ok(o),
            other => {
                Err(Exception::application(format!("expected a container, found {}", other.kind_name())))
            }
        }
    }

    /// A short description of the value's kind, for messages.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Value::Nothing => "nothing",
            Value::Number(_) => "a Number",
            Value::Text(_) => "a Text",
            Value::Bool(_) => "a TrueFalse",
            Value::List(_) => "a List",
            Value::Map(_) => "a Map",
            Value::Struct(_) => "a Struct",
            Value::Function(_) => "a Function",
            Value::Endpoint(_) => "an Endpoint",
            Value::External(_) => "an External",
        }
    }

    /// The Map key for this value (Number, Text or TrueFalse).
    pub fn to_key(&self) -> Result<Key, Exception> {
        match self {
            Value::Number(n) => Ok(Key::number(*n)),
            Value::Text(t) => Ok(Key::Text(t.clone())),
            Value::Bool(b) => Ok(Key::Bool(*b)),
            other => Err(Exception::application(format!("{} cannot be a Map key", other.kind_name()))),
        }
    }
}

impl Value {
    /// A deep copy read without transaction locks (sharing and cycles kept): only for values
    /// nobody changes in place, such as committed External values and private copies.
    pub fn detached_copy(&self) -> Value {
        let mut copies: std::collections::HashMap<usize, Obj> = std::collections::HashMap::new();
        let mut todo: Vec<(Obj, Obj)> = Vec::new();
        let shallow =
            |v: &Value, copies: &mut std::collections::HashMap<usize, Obj>, todo: &mut Vec<(Obj, Obj)>| {
                let mut obj = |o: &Obj| {
                    copies
                        .entry(o.addr())
                        .or_insert_with(|| {
                            let fresh = Obj::new(ObjData::List(Vec::new()));
                            todo.push((o.clone(), fresh.clone()));
                            fresh
                        })
                        .clone()
                };
                match v {
                    Value::List(o) => Value::List(obj(o)),
                    Value::Map(o) => Value::Map(obj(o)),
                    Value::Struct(o) => Value::Struct(obj(o)),
                    other => other.clone(),
                }
            };
        let root = shallow(self, &mut copies, &mut todo);
        while let Some((source, target)) = todo.pop() {
            let data = match source.snapshot() {
                ObjData::List(items) => {
                    ObjData::List(items.iter().map(|v| shallow(v, &mut copies, &mut todo)).collect())
                }
                ObjData::Struct(items) => {
                    ObjData::Struct(items.iter().map(|v| shallow(v, &mut copies, &mut todo)).collect())
                }
                ObjData::Map(m) => ObjData::Map(
                    m.iter().map(|(k, v)| (k.clone(), shallow(v, &mut copies, &mut todo))).collect(),
                ),
            };
            target.0.lock().data = data;
        }
        root
    }
}

impl Value {
    /// The value's contents as text, containers included (`[1, [2, 3]]`, `{'a': 1}`), read
    /// without transaction locks: for tests and debugging, on values nobody is changing.
    pub fn render(&self) -> String {
        fn go(v: &Value, depth: usize, out: &mut String) {
            use std::fmt::Write as _;
            if depth > 64 {
                out.push_str("...");
                return;
            }
            match v {
                Value::List(o) | Value::Struct(o) => {
                    let items = match o.snapshot() {
                        ObjData::List(items) | ObjData::Struct(items) => items,
                        ObjData::Map(_) => Vec::new(),
                    };
                    out.push('[');
                    for (i, item) in items.iter().enumerate() {
                        if i > 0 {
                            out.push_str(", ");
                        }
                        go(item, depth + 1, out);
                    }
                    out.push(']');
                }
                Value::Map(o) => {
                    out.push('{');
                    if let ObjData::Map(m) = o.snapshot() {
                        for (i, (k, item)) in m.iter().enumerate() {
                            if i > 0 {
                                out.push_str(", ");
                            }
                            go(&k.to_value(), depth + 1, out);
                            out.push_str(": ");
                            go(item, depth + 1, out);
                        }
                    }
                    out.push('}');
                }
                Value::Number(n) => out.push_str(&number_to_text(*n)),
                other => {
                    let _ = write!(out, "{other:?}");
                }
            }
        }
        let mut out = String::new();
        go(self, 0, &mut out);
        out
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Nothing => write!(f, "Nothing"),
            Value::Number(n) => write!(f, "{n}"),
            Value::Text(t) => write!(f, "{t:?}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::List(o) => write!(f, "List@{:p}", Arc::as_ptr(&o.0)),
            Value::Map(o) => write!(f, "Map@{:p}", Arc::as_ptr(&o.0)),
            Value::Struct(o) => write!(f, "Struct@{:p}", Arc::as_ptr(&o.0)),
            Value::Function(_) => write!(f, "Function"),
            Value::Endpoint(e) => write!(f, "Endpoint({})", e.id()),
            Value::External(_) => write!(f, "External"),
        }
    }
}

/// A Map key: Number, Text or TrueFalse, totally ordered (Numbers by value, with `-0` equal
/// to `0`; then Texts; then TrueFalse), so iteration order is deterministic.
#[derive(Clone, Debug)]
pub enum Key {
    /// A Number key.
    Number(f64),
    /// A Text key.
    Text(Arc<str>),
    /// A TrueFalse key.
    Bool(bool),
}

impl Key {
    /// A Number key (`-0` is stored as `0`).
    pub fn number(n: f64) -> Key {
        Key::Number(if n == 0.0 { 0.0 } else { n })
    }

    /// The key as a value.
    pub fn to_value(&self) -> Value {
        match self {
            Key::Number(n) => Value::Number(*n),
            Key::Text(t) => Value::Text(t.clone()),
            Key::Bool(b) => Value::Bool(*b),
        }
    }

    fn rank(&self) -> u8 {
        match self {
            Key::Number(_) => 0,
            Key::Text(_) => 1,
            Key::Bool(_) => 2,
        }
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Key::Number(a), Key::Number(b)) => a.total_cmp(b),
            (Key::Text(a), Key::Text(b)) => a.cmp(b),
            (Key::Bool(a), Key::Bool(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Key {}

/// The contents of a heap object.
#[derive(Clone, Debug)]
pub enum ObjData {
    /// A List's elements.
    List(Vec<Value>),
    /// A Map's entries.
    Map(BTreeMap<Key, Value>),
    /// A Struct's fields, by position.
    Struct(Vec<Value>),
}

pub(crate) struct ObjInner {
    pub(crate) lock: TxLock,
    pub(crate) data: ObjData,
    /// The peered variables this object is part of (usually none, at most a few).
    pub(crate) peered: Vec<crate::core::tx::PeeredTag>,
}

/// A heap object (List, Map or Struct), shared by reference. Clone it to share it.
#[derive(Clone)]
pub struct Obj(pub(crate) Arc<Mutex<ObjInner>>);

impl Obj {
    /// A fresh object with `data`, private to whoever holds it until stored somewhere shared.
    pub fn new(data: ObjData) -> Obj {
        Obj(Arc::new(Mutex::new(ObjInner { lock: TxLock::default(), data, peered: Vec::new() })))
    }

    /// A copy of the contents, read without any transaction lock: only for objects nobody
    /// else can reach (fresh values, decoded messages, private deep copies).
    pub fn snapshot(&self) -> ObjData {
        self.0.lock().data.clone()
    }

    /// Whether two handles name the same object.
    pub fn same(&self, other: &Obj) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    pub(crate) fn addr(&self) -> usize {
        Arc::as_ptr(&self.0) as *const () as usize
    }
}

/// Marks every object reachable from `value` as part of the peered variables `tags`, so that
/// a write through any reference to it makes them dirty. Stops at objects already marked.
pub(crate) fn tag_value(value: &Value, tags: &[crate::core::tx::PeeredTag]) {
    if tags.is_empty() {
        return;
    }
    let mut todo: Vec<Obj> = Vec::new();
    let push = |v: &Value, todo: &mut Vec<Obj>| {
        if let Value::List(o) | Value::Map(o) | Value::Struct(o) = v {
            todo.push(o.clone());
        }
    };
    push(value, &mut todo);
    while let Some(obj) = todo.pop() {
        let mut inner = obj.0.lock();
        let mut added = false;
        for t in tags {
            if !inner.peered.contains(t) {
                inner.peered.push(*t);
                added = true;
            }
        }
        if !added {
            continue;
        }
        match &inner.data {
            ObjData::List(items) | ObjData::Struct(items) => items.iter().for_each(|v| push(v, &mut todo)),
            ObjData::Map(m) => m.values().for_each(|v| push(v, &mut todo)),
        }
    }
}

/// The closure behind a [`HostFn`].
pub type HostClosure = dyn Fn(Vec<Value>) -> Result<Vec<Value>, Exception> + Send + Sync;

impl fmt::Debug for HostFn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<Function>")
    }
}

/// A function given by the host: takes Waldo values, returns Waldo values or raises.
#[derive(Clone)]
pub struct HostFn(pub Arc<HostClosure>);

impl HostFn {
    /// Wraps a closure.
    pub fn new(f: impl Fn(Vec<Value>) -> Result<Vec<Value>, Exception> + Send + Sync + 'static) -> HostFn {
        HostFn(Arc::new(f))
    }

    /// Calls it. A panic in the closure does not unwind into Waldo code: it becomes an
    /// `ApplicationException` whose message says the host function panicked, with the
    /// panic's own message.
    pub fn call(&self, args: Vec<Value>) -> Result<Vec<Value>, Exception> {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (self.0)(args))) {
            Ok(result) => result,
            Err(payload) => Err(Exception::application(format!(
                "a host function panicked: {}",
                panic_message(payload.as_ref())
            ))),
        }
    }
}

/// The message of a panic's payload (`panic!("...")` gives a `&str` or a `String`).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic without a message)".to_owned()
    }
}

/// Formats a Number the way `toText` does: integral values without `.0`.
pub fn number_to_text(n: f64) -> String {
    if n.is_finite() && n == n.trunc() && n.abs() < 1e15 { format!("{}", n as i64) } else { format!("{n}") }
}

// ---------------------------------------------------------------- External cells

pub(crate) struct ExtState {
    pub(crate) committed: Value,
    pub(crate) pending: Option<Value>,
    pub(crate) lock: TxLock,
}

/// An untyped External cell, as Waldo values hold it.
#[derive(Clone)]
pub struct ExtCell(pub(crate) Arc<Mutex<ExtState>>);

impl ExtCell {
    /// A cell holding `value`.
    pub fn new(value: Value) -> ExtCell {
        ExtCell(Arc::new(Mutex::new(ExtState { committed: value, pending: None, lock: TxLock::default() })))
    }

    /// Whether two handles name the same cell.
    pub fn same(&self, other: &ExtCell) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// The committed value (never one a transaction has not committed yet).
    pub fn committed(&self) -> Value {
        self.0.lock().committed.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_totally_ordered_and_zero_is_one_key() {
        let mut keys = [
            Key::text("b"),
            Key::Bool(true),
            Key::number(2.0),
            Key::number(-1.5),
            Key::text("a"),
            Key::number(f64::NAN),
        ];
        keys.sort();
        assert_eq!(keys[0], Key::number(-1.5));
        assert_eq!(keys[1], Key::number(2.0));
        assert_eq!(keys[3], Key::text("a"));
        assert_eq!(keys[5], Key::Bool(true));
        assert_eq!(Key::number(-0.0), Key::number(0.0));
    }

    #[test]
    fn to_text_of_numbers() {
        assert_eq!(number_to_text(3.0), "3");
        assert_eq!(number_to_text(-2.0), "-2");
        assert_eq!(number_to_text(2.5), "2.5");
        assert_eq!(number_to_text(1e20), "100000000000000000000");
    }

    impl Key {
        fn text(s: &str) -> Key {
            Key::Text(Arc::from(s))
        }
    }
}
