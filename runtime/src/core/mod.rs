//! The data model and transactions: values and heap objects, item locks, transactions
//! (locking, undo, commit), an endpoint's state (variable slots, gate, lifecycle, effect
//! queue) and post-commit effects. Nothing here runs a connection or a task of its own;
//! `value`, `tx` and `endpoint` refer to each other (a value may be an endpoint reference,
//! whose code runs in a transaction over the endpoint's slots), the other files are leaves.

pub(crate) mod effects;
pub(crate) mod endpoint;
pub(crate) mod error;
pub(crate) mod gate;
pub(crate) mod lifecycle;
pub(crate) mod lock;
pub(crate) mod shape;
pub(crate) mod stats;
pub(crate) mod tx;
pub(crate) mod value;
#[cfg(test)]
pub(crate) mod wakers;
