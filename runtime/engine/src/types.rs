//! The plain data the engine and its drivers share: transaction identities and priorities,
//! and Waldo exceptions.

use std::fmt;

/// The identity of one attempt of a transaction, the same on every host it reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxId {
    /// The process that began it.
    pub origin: u64,
    /// Its number there.
    pub n: u64,
}

/// A transaction's priority: smaller is older and wins conflicts. Fixed at the first attempt
/// and kept across retries. Comparable across endpoints and hosts: a Lamport clock, then the
/// origin (the clock that handed it out) as tie-break.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Priority {
    clock: u64,
    origin: u64,
}

impl Priority {
    /// The priority with these parts (from the wire, or from a clock).
    pub fn from_parts(clock: u64, origin: u64) -> Priority {
        Priority { clock, origin }
    }

    /// The parts: the clock's count and the clock's origin.
    pub fn parts(self) -> (u64, u64) {
        (self.clock, self.origin)
    }
}

/// The kind of a Waldo exception, as `catch` clauses name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExceptionKind {
    /// `ApplicationException`: a program error (division by zero, missing key, unknown
    /// function on an endpoint call, ...).
    Application,
    /// `NetworkException`: the partner or a called endpoint became unreachable.
    Network,
}

/// A Waldo exception: its kind and a message a person can act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exception {
    /// Application or network.
    pub kind: ExceptionKind,
    /// What happened (e.g. "division by zero").
    pub message: String,
    /// Where in the protocol it was raised (`bank.wld:12`), when known: the host sees it
    /// after the message; Waldo code that catches the exception sees the message alone.
    pub at: String,
}

impl Exception {
    /// An `ApplicationException` with `message`.
    pub fn application(message: impl Into<String>) -> Self {
        Exception { kind: ExceptionKind::Application, message: message.into(), at: String::new() }
    }

    /// A `NetworkException` with `message`.
    pub fn network(message: impl Into<String>) -> Self {
        Exception { kind: ExceptionKind::Network, message: message.into(), at: String::new() }
    }
}

impl fmt::Display for Exception {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}
