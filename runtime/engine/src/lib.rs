//! The sans-io protocol engine of a Waldo pair, in a crate of its own so that the compiler
//! holds the rule: nothing here can open a socket, spawn a task or read a clock (its
//! dependencies are two small collection crates).
//!
//! - [`Engine`]: one side of a pair's transactions over a connection (the commit protocol,
//!   conflicts across sides, savepoint marks, deviation checks). It sees transactions,
//!   values and waiting callers only through the driver's types ([`Host`]).
//! - [`proto`]: its messages as frame payloads, values encoded by the driver's codec.
//! - [`wire`]: the primitives of the wire format and length-prefixed frames.
//! - [`liveness`]: heartbeats and the partner timeout, with time passed in.

#![warn(missing_docs)]

mod engine;
pub mod liveness;
pub mod proto;
mod types;
pub mod wire;

pub use engine::*;
pub use types::{Exception, ExceptionKind, Priority, TxId};
