//! The runtime's `tracing` spans (the book's "Observing a running protocol"): one per host
//! call (`waldo.call`), per sequence a host call starts (`waldo.sequence`) and per TCP
//! connection (`waldo.connection`). With no subscriber interested, a span costs a check of
//! its callsite; `waldo-bench` measures that against spans turned off altogether with
//! [`set_spans`], which exists for that measurement.

use std::sync::atomic::{AtomicBool, Ordering};

static SPANS: AtomicBool = AtomicBool::new(true);

/// Whether spans are opened (always, unless a benchmark turned them off).
pub(crate) fn spans() -> bool {
    SPANS.load(Ordering::Relaxed)
}

/// Turns the runtime's spans on or off in this process (for measuring their cost).
#[doc(hidden)]
pub fn set_spans(on: bool) {
    SPANS.store(on, Ordering::Relaxed);
}

/// What a host call's span records as its `outcome`.
pub(crate) fn outcome(error: Option<&crate::Error>) -> &'static str {
    match error {
        None => "committed",
        Some(crate::Error::Application { .. }) => "aborted: exception",
        Some(crate::Error::Timeout) => "aborted: timeout",
        Some(crate::Error::ConflictRetriesExhausted { .. }) => "aborted: retries exhausted",
        Some(crate::Error::Network { .. }) => "aborted: network",
        Some(_) => "aborted: other",
    }
}
