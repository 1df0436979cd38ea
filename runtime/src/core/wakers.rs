//! A waker that records whether it was woken, for unit tests that poll futures by hand.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Wake, Waker};

/// Raised by a wake.
pub(crate) struct Flag(AtomicBool);

impl Flag {
    /// A lowered flag, and a waker that raises it.
    pub(crate) fn new() -> (Arc<Flag>, Waker) {
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        (flag.clone(), Waker::from(flag))
    }

    /// Whether a wake raised it.
    pub(crate) fn raised(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}
