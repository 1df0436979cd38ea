//! Conversions between host Rust types and Waldo values: what the generated API takes and
//! returns (Number `f64`, Text `String`, TrueFalse `bool`, List `Vec`, Map `BTreeMap`).
//!
//! `from_committed` reads objects without transaction locks, so it is only used on values
//! nobody else can reach: fresh deep copies and committed External values.

use std::collections::BTreeMap;

use crate::core::error::Exception;
use crate::core::value::{Key, ObjData, Value};

/// A Number usable as a Map key on the host side: ordered totally (see [`Key`]).
#[derive(Clone, Copy, Debug)]
pub struct NumberKey(pub f64);

impl PartialEq for NumberKey {
    fn eq(&self, other: &Self) -> bool {
        Key::number(self.0) == Key::number(other.0)
    }
}
impl Eq for NumberKey {}
impl PartialOrd for NumberKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for NumberKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        Key::number(self.0).cmp(&Key::number(other.0))
    }
}

/// Host values that become Waldo values (fresh objects, owned by nobody yet).
pub trait IntoValue {
    /// The Waldo value.
    fn into_value(self) -> Value;
}

/// Host values read back from Waldo values nobody else can reach.
pub trait FromValue: Sized {
    /// Reads the value; an ApplicationException when its shape does not match.
    fn from_committed(value: &Value) -> Result<Self, Exception>;
}

/// A protocol's struct: the value a variable of its type starts with (every field at its
/// own starting value).
pub trait Fresh {
    /// A new struct value with every field at its starting value.
    fn fresh() -> Value;
}

/// The starting value of struct `S` (`rt::fresh::<super::Row>()` in generated code).
pub fn fresh<S: Fresh>() -> Value {
    S::fresh()
}

/// Host types usable as Map keys.
pub trait IntoKey {
    /// The key.
    fn into_key(self) -> Key;
}

/// Host types read back from Map keys.
pub trait FromKey: Sized {
    /// Reads the key.
    fn from_key(key: &Key) -> Result<Self, Exception>;
}

impl IntoValue for f64 {
    fn into_value(self) -> Value {
        Value::Number(self)
    }
}
impl IntoValue for String {
    fn into_value(self) -> Value {
        Value::text(self)
    }
}
impl IntoValue for &str {
    fn into_value(self) -> Value {
        Value::text(self)
    }
}
impl IntoValue for bool {
    fn into_value(self) -> Value {
        Value::Bool(self)
    }
}
impl IntoValue for Value {
    fn into_value(self) -> Value {
        self
    }
}
impl<T: IntoValue> IntoValue for Vec<T> {
    fn into_value(self) -> Value {
        Value::new_list(self.into_iter().map(IntoValue::into_value).collect())
    }
}
impl<K: IntoKey, V: IntoValue> IntoValue for BTreeMap<K, V> {
    fn into_value(self) -> Value {
        Value::new_map(self.into_iter().map(|(k, v)| (k.into_key(), v.into_value())).collect())
    }
}

impl IntoKey for f64 {
    fn into_key(self) -> Key {
        Key::number(self)
    }
}
impl IntoKey for NumberKey {
    fn into_key(self) -> Key {
        Key::number(self.0)
    }
}
impl IntoKey for String {
    fn into_key(self) -> Key {
        Key::Text(self.into())
    }
}
impl IntoKey for bool {
    fn into_key(self) -> Key {
        Key::Bool(self)
    }
}
impl FromKey for NumberKey {
    fn from_key(key: &Key) -> Result<Self, Exception> {
        match key {
            Key::Number(n) => Ok(NumberKey(*n)),
            _ => Err(Exception::application("expected a Number key")),
        }
    }
}
impl FromKey for String {
    fn from_key(key: &Key) -> Result<Self, Exception> {
        match key {
            Key::Text(t) => Ok(t.to_string()),
            _ => Err(Exception::application("expected a Text key")),
        }
    }
}
impl FromKey for bool {
    fn from_key(key: &Key) -> Result<Self, Exception> {
        match key {
            Key::Bool(b) => Ok(*b),
            _ => Err(Exception::application("expected a TrueFalse key")),
        }
    }
}

impl FromValue for f64 {
    fn from_committed(value: &Value) -> Result<Self, Exception> {
        value.as_number()
    }
}
impl FromValue for String {
    fn from_committed(value: &Value) -> Result<Self, Exception> {
        Ok(value.as_text()?.to_string())
    }
}
impl FromValue for bool {
    fn from_committed(value: &Value) -> Result<Self, Exception> {
        value.as_bool()
    }
}
impl FromValue for Value {
    /// A copy, so the host never holds an object that Waldo code may change later.
    fn from_committed(value: &Value) -> Result<Self, Exception> {
        Ok(value.detached_copy())
    }
}
impl<T: FromValue> FromValue for Vec<T> {
    fn from_committed(value: &Value) -> Result<Self, Exception> {
        match value {
            Value::List(o) => match &o.0.lock().data {
                ObjData::List(items) => items.iter().map(T::from_committed).collect(),
                _ => Err(Exception::application("expected a List")),
            },
            other => Err(Exception::application(format!("expected a List, found {}", other.kind_name()))),
        }
    }
}
impl<K: FromKey + Ord, V: FromValue> FromValue for BTreeMap<K, V> {
    fn from_committed(value: &Value) -> Result<Self, Exception> {
        match value {
            Value::Map(o) => match &o.0.lock().data {
                ObjData::Map(m) => {
                    m.iter().map(|(k, v)| Ok((K::from_key(k)?, V::from_committed(v)?))).collect()
                }
                _ => Err(Exception::application("expected a Map")),
            },
            other => Err(Exception::application(format!("expected a Map, found {}", other.kind_name()))),
        }
    }
}

impl IntoValue for crate::core::endpoint::EndpointRef {
    fn into_value(self) -> Value {
        Value::Endpoint(self)
    }
}

impl FromValue for crate::core::endpoint::EndpointRef {
    fn from_committed(value: &Value) -> Result<Self, Exception> {
        match value {
            Value::Endpoint(e) => Ok(e.clone()),
            other => {
                Err(Exception::application(format!("expected an Endpoint, found {}", other.kind_name())))
            }
        }
    }
}

impl IntoValue for crate::core::value::HostFn {
    fn into_value(self) -> Value {
        Value::Function(self)
    }
}

impl FromValue for crate::core::value::HostFn {
    fn from_committed(value: &Value) -> Result<Self, Exception> {
        match value {
            Value::Function(f) => Ok(f.clone()),
            other => Err(Exception::application(format!("expected a Function, found {}", other.kind_name()))),
        }
    }
}

/// What a host function (a Rust closure passed where Waldo code takes a `Function`) may
/// return: its results as they are (an infallible function), or a `Result` of them. An
/// `Err` raises an `ApplicationException` in the Waldo code that called the function, with
/// the error's text as its message; the code may catch it, and if it does not, the whole
/// transaction rolls back on every side and the host call returns the error. (A panic in a
/// host function raises the same exception, with the panic's message.)
///
/// `T` is the Rust form of the function's Waldo results: `()` for `returns: Nothing`, the
/// one type, or a tuple of them.
pub trait HostResult<T> {
    /// The results, or the exception to raise.
    fn into_host(self) -> Result<T, Exception>;
}

impl<T> HostResult<T> for T {
    fn into_host(self) -> Result<T, Exception> {
        Ok(self)
    }
}

impl<T, E: std::fmt::Display> HostResult<T> for Result<T, E> {
    fn into_host(self) -> Result<T, Exception> {
        self.map_err(|e| Exception::application(e.to_string()))
    }
}

/// `None` is an unbound value (an `Endpoint` or `Function` variable that holds none).
impl<T: IntoValue> IntoValue for Option<T> {
    fn into_value(self) -> Value {
        self.map_or(Value::Nothing, IntoValue::into_value)
    }
}

/// An unbound value reads as `None`.
impl<T: FromValue> FromValue for Option<T> {
    fn from_committed(value: &Value) -> Result<Self, Exception> {
        match value {
            Value::Nothing => Ok(None),
            other => T::from_committed(other).map(Some),
        }
    }
}

/// A `Map(from: Number, to: V)` on the host side: a map with `f64` keys, in ascending key
/// order (`-0.0` and `0.0` are one key; NaN sorts after every other number).
///
/// ```
/// let mut rates = waldo::NumberMap::from([(1.0, "one".to_string()), (2.5, "two and a half".into())]);
/// rates.insert(0.5, "half".into());
/// assert_eq!(rates.get(2.5).map(String::as_str), Some("two and a half"));
/// assert_eq!(rates.keys().collect::<Vec<_>>(), [0.5, 1.0, 2.5]);
/// ```
#[derive(Clone, PartialEq)]
pub struct NumberMap<V>(BTreeMap<NumberKey, V>);

impl<V> NumberMap<V> {
    /// An empty map.
    pub fn new() -> Self {
        NumberMap(BTreeMap::new())
    }

    /// The value at `key`.
    pub fn get(&self, key: f64) -> Option<&V> {
        self.0.get(&NumberKey(key))
    }

    /// The value at `key`, to change.
    pub fn get_mut(&mut self, key: f64) -> Option<&mut V> {
        self.0.get_mut(&NumberKey(key))
    }

    /// Whether there is a value at `key`.
    pub fn contains_key(&self, key: f64) -> bool {
        self.0.contains_key(&NumberKey(key))
    }

    /// Puts `value` at `key`; the value it replaces.
    pub fn insert(&mut self, key: f64, value: V) -> Option<V> {
        self.0.insert(NumberKey(key), value)
    }

    /// Takes the value at `key` out.
    pub fn remove(&mut self, key: f64) -> Option<V> {
        self.0.remove(&NumberKey(key))
    }

    /// How many entries it has.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it has no entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The entries in ascending key order.
    pub fn iter(&self) -> impl Iterator<Item = (f64, &V)> {
        self.0.iter().map(|(k, v)| (k.0, v))
    }

    /// The keys in ascending order.
    pub fn keys(&self) -> impl Iterator<Item = f64> + '_ {
        self.0.keys().map(|k| k.0)
    }

    /// The values in ascending key order.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.0.values()
    }
}

impl<V> Default for NumberMap<V> {
    fn default() -> Self {
        NumberMap::new()
    }
}

impl<V: std::fmt::Debug> std::fmt::Debug for NumberMap<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<V> std::ops::Index<f64> for NumberMap<V> {
    type Output = V;

    /// The value at `key`; panics when there is none (like `BTreeMap`'s index).
    fn index(&self, key: f64) -> &V {
        self.get(key).unwrap_or_else(|| panic!("no entry for key {key} in the NumberMap"))
    }
}

impl<V> FromIterator<(f64, V)> for NumberMap<V> {
    fn from_iter<I: IntoIterator<Item = (f64, V)>>(iter: I) -> Self {
        NumberMap(iter.into_iter().map(|(k, v)| (NumberKey(k), v)).collect())
    }
}

impl<V> Extend<(f64, V)> for NumberMap<V> {
    fn extend<I: IntoIterator<Item = (f64, V)>>(&mut self, iter: I) {
        self.0.extend(iter.into_iter().map(|(k, v)| (NumberKey(k), v)));
    }
}

impl<V, const N: usize> From<[(f64, V); N]> for NumberMap<V> {
    fn from(entries: [(f64, V); N]) -> Self {
        entries.into_iter().collect()
    }
}

impl<V> From<BTreeMap<NumberKey, V>> for NumberMap<V> {
    fn from(map: BTreeMap<NumberKey, V>) -> Self {
        NumberMap(map)
    }
}

impl<V> IntoIterator for NumberMap<V> {
    type Item = (f64, V);
    type IntoIter =
        std::iter::Map<std::collections::btree_map::IntoIter<NumberKey, V>, fn((NumberKey, V)) -> (f64, V)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter().map(|(k, v)| (k.0, v))
    }
}

impl<V: IntoValue> IntoValue for NumberMap<V> {
    fn into_value(self) -> Value {
        self.0.into_value()
    }
}

impl<V: FromValue> FromValue for NumberMap<V> {
    fn from_committed(value: &Value) -> Result<Self, Exception> {
        BTreeMap::<NumberKey, V>::from_committed(value).map(NumberMap)
    }
}
