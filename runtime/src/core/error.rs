//! Errors: what reaches the host ([`Error`]), and what travels inside a transaction
//! ([`Raise`]: a Waldo exception that code may catch, or an abort that it may not).

use std::fmt;

pub use waldo_engine::{Exception, ExceptionKind};

/// Why a transaction attempt cannot go on. Aborts are not exceptions: Waldo code cannot
/// catch them; the runtime undoes the attempt and retries it (or reports to the host).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Abort {
    /// An older transaction needed something this one holds.
    Wounded,
    /// The call's deadline passed.
    Deadline,
    /// A block that runs at once had to wait for a lock: its runner undoes it, waits, and
    /// runs it again (see `exec::restart`). It never leaves that runner.
    Blocked,
}

/// What Waldo code propagates with `?`: an exception (catchable) or an abort (not). Boxed,
/// so that every `Flow` result stays two words over its value: exceptions are rare.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Raise {
    /// A Waldo exception.
    Exception(Box<Exception>),
    /// The attempt must stop.
    Abort(Abort),
}

impl From<Exception> for Raise {
    fn from(e: Exception) -> Self {
        Raise::Exception(Box::new(e))
    }
}

impl From<Abort> for Raise {
    fn from(a: Abort) -> Self {
        Raise::Abort(a)
    }
}

/// The result of Waldo code inside a transaction.
pub type Flow<T> = Result<T, Raise>;

/// Raises an `ApplicationException` with `message`.
pub fn app_error<T>(message: impl Into<String>) -> Flow<T> {
    Err(Exception::application(message).into())
}

/// Everything a call into a Waldo endpoint can fail with, as the host sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// Waldo code raised an exception that nothing caught; the transaction left no trace.
    Application {
        /// The exception's message (e.g. "division by zero").
        message: String,
    },
    /// The partner or a called endpoint became unreachable; the transaction left no trace.
    Network {
        /// What was lost and why.
        message: String,
    },
    /// The call's deadline passed before it could commit; it left no trace.
    Timeout,
    /// The transaction was aborted by conflicts more times than the call allows.
    ConflictRetriesExhausted {
        /// How many attempts were made.
        attempts: u32,
    },
    /// The endpoint was stopped.
    Stopped,
    /// The connection's handshake was refused.
    HandshakeRefused {
        /// Why (different protocol, same role twice, bad nonce, wrong version...).
        reason: String,
    },
    /// The peer sent something that does not fit the protocol; the connection was closed.
    ProtocolDeviation {
        /// What was wrong.
        message: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Application { message } => write!(f, "application exception: {message}"),
            Error::Network { message } => write!(f, "network error: {message}"),
            Error::Timeout => write!(f, "the call's deadline passed before it could commit"),
            Error::ConflictRetriesExhausted { attempts } => {
                let s = if *attempts == 1 { "" } else { "s" };
                write!(f, "gave up after {attempts} attempt{s} aborted by conflicting transactions")
            }
            Error::Stopped => write!(f, "the endpoint is stopped"),
            Error::HandshakeRefused { reason } => write!(f, "handshake refused: {reason}"),
            Error::ProtocolDeviation { message } => write!(f, "protocol deviation: {message}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<Exception> for Error {
    fn from(e: Exception) -> Self {
        match e.kind {
            ExceptionKind::Application if e.at.is_empty() => Error::Application { message: e.message },
            ExceptionKind::Application => {
                Error::Application { message: format!("{} at {}", e.message, e.at) }
            }
            ExceptionKind::Network => Error::Network { message: e.message },
        }
    }
}
