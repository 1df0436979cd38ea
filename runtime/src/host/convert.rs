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
