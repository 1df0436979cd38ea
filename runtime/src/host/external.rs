//! External cells: values the host owns and Waldo code reads and writes transactionally.
//!
//! A cell keeps its committed value, which the host reads at any time without waiting, and at
//! most one transaction's pending value, installed when that transaction commits. Endpoints on
//! the host share a cell by holding the same [`External`] (`extAssign`).

use std::marker::PhantomData;

use crate::core::error::Exception;
use crate::core::value::{ExtCell, Value};
use crate::host::convert::{FromValue, IntoValue};

/// A host-owned External cell holding a `T` (a Number, Text, TrueFalse, or a container of them).
pub struct External<T> {
    cell: ExtCell,
    _t: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for External<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "External({:?})", self.cell.committed())
    }
}

impl<T> Clone for External<T> {
    fn clone(&self) -> Self {
        External { cell: self.cell.clone(), _t: PhantomData }
    }
}

impl<T: FromValue + IntoValue> External<T> {
    /// A cell holding `value`.
    pub fn new(value: T) -> Self {
        External { cell: ExtCell::new(value.into_value()), _t: PhantomData }
    }

    /// The committed value.
    ///
    /// # Panics
    ///
    /// If Waldo code stored a value of another type in the cell, which the checker rules out
    /// for generated code; [`External::try_get`] reports it instead.
    pub fn get(&self) -> T {
        match self.try_get() {
            Ok(v) => v,
            Err(e) => panic!("an External holds a value of another type: {e}"),
        }
    }

    /// The committed value, or an error if the cell holds a value of another type.
    pub fn try_get(&self) -> Result<T, Exception> {
        T::from_committed(&self.cell.committed())
    }
}

impl<T> External<T> {
    /// The untyped cell, for generated code.
    pub fn cell(&self) -> &ExtCell {
        &self.cell
    }

    /// The typed view of a cell (generated code knows its type from the checker).
    pub(crate) fn from_cell(cell: ExtCell) -> Self {
        External { cell, _t: PhantomData }
    }
}

impl<T> IntoValue for External<T> {
    fn into_value(self) -> Value {
        Value::External(self.cell().clone())
    }
}

impl<T> FromValue for External<T> {
    fn from_committed(value: &Value) -> Result<Self, Exception> {
        match value {
            Value::External(c) => Ok(External::from_cell(c.clone())),
            other => {
                Err(Exception::application(format!("expected an External, found {}", other.kind_name())))
            }
        }
    }
}
