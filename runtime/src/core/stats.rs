//! Per-endpoint counters (the book's "Observing a running protocol"): what an endpoint's
//! host calls and connection did, kept in relaxed atomics (a few of them touched per
//! transaction) and read as a [`Stats`] snapshot by `Handle::stats`.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::core::error::Error;

/// What an endpoint did since it started (see `Handle::stats`). Counters only grow; two
/// snapshots taken around some work tell what that work did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Host calls that committed.
    pub commits: u64,
    /// Host calls that ended undone, by cause.
    pub aborts: Aborts,
    /// Attempts run again after a conflict (a call that committed on its third attempt
    /// counts two).
    pub retries: u64,
    /// Attempts a conflicting transaction wounded (retried or not).
    pub conflicts: u64,
    /// Sequences this endpoint started.
    pub sequences: u64,
    /// Bytes read from the partner's connection (over TCP; 0 in process).
    pub bytes_in: u64,
    /// Bytes written to the partner's connection (over TCP; 0 in process).
    pub bytes_out: u64,
    /// Times the connection was resumed after a break (with a reconnect policy).
    pub reconnects: u64,
}

/// Host calls that ended undone, by cause (see [`Stats::aborts`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Aborts {
    /// The call raised an exception (`Error::Application`).
    pub exception: u64,
    /// Its deadline passed (`Error::Timeout`).
    pub timeout: u64,
    /// It ran out of attempts (`Error::ConflictRetriesExhausted`).
    pub retries_exhausted: u64,
    /// The partner or a called endpoint became unreachable (`Error::Network`).
    pub network: u64,
    /// Anything else (the endpoint stopped under it, a protocol deviation).
    pub other: u64,
}

impl Aborts {
    /// Every call that ended undone.
    pub fn total(&self) -> u64 {
        self.exception + self.timeout + self.retries_exhausted + self.network + self.other
    }
}

/// The counters of one endpoint's host calls.
#[derive(Default)]
pub(crate) struct Counts {
    commits: AtomicU64,
    retries: AtomicU64,
    conflicts: AtomicU64,
    sequences: AtomicU64,
    exception: AtomicU64,
    timeout: AtomicU64,
    retries_exhausted: AtomicU64,
    network: AtomicU64,
    other: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Counts {
    pub(crate) fn committed(&self) {
        bump(&self.commits);
    }

    /// An attempt was wounded (or lost its commit to a conflict).
    pub(crate) fn conflict(&self) {
        bump(&self.conflicts);
    }

    /// Another attempt starts.
    pub(crate) fn retry(&self) {
        bump(&self.retries);
    }

    pub(crate) fn sequence(&self) {
        bump(&self.sequences);
    }

    /// A host call ended with `error`, undone.
    pub(crate) fn aborted(&self, error: &Error) {
        bump(match error {
            Error::Application { .. } => &self.exception,
            Error::Timeout => &self.timeout,
            Error::ConflictRetriesExhausted { .. } => &self.retries_exhausted,
            Error::Network { .. } => &self.network,
            _ => &self.other,
        });
    }

    /// The counts so far (the connection's figures are the caller's to fill in).
    pub(crate) fn snapshot(&self) -> Stats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            commits: get(&self.commits),
            aborts: Aborts {
                exception: get(&self.exception),
                timeout: get(&self.timeout),
                retries_exhausted: get(&self.retries_exhausted),
                network: get(&self.network),
                other: get(&self.other),
            },
            retries: get(&self.retries),
            conflicts: get(&self.conflicts),
            sequences: get(&self.sequences),
            ..Stats::default()
        }
    }
}

/// What a connection carried (see `Transport::traffic`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Bytes read.
    pub bytes_in: u64,
    /// Bytes written.
    pub bytes_out: u64,
    /// Times the connection was resumed on a new socket.
    pub resumes: u64,
}

#[cfg(test)]
mod tests {
    use super::Counts;
    use crate::core::error::Error;

    #[test]
    fn each_error_counts_as_its_cause() {
        let counts = Counts::default();
        for error in [
            Error::Application { message: "x".into() },
            Error::Timeout,
            Error::Timeout,
            Error::ConflictRetriesExhausted { attempts: 3 },
            Error::Network { message: "gone".into() },
            Error::Stopped,
        ] {
            counts.aborted(&error);
        }
        counts.committed();
        counts.conflict();
        counts.conflict();
        counts.retry();
        let stats = counts.snapshot();
        let a = stats.aborts;
        assert_eq!((a.exception, a.timeout, a.retries_exhausted, a.network, a.other), (1, 2, 1, 1, 1));
        assert_eq!(a.total(), 6);
        assert_eq!((stats.commits, stats.conflicts, stats.retries), (1, 2, 1));
    }
}
