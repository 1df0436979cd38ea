//! One logical task per endpoint (the book's runtime chapter, "One endpoint, one logical task"): the code of an endpoint never runs on two
//! threads at once.
//!
//! Each endpoint has a gate. Every poll of code running on an endpoint holds that endpoint's
//! gate for the length of the poll, that is, until the code next waits. Acquiring a gate
//! never blocks a thread: a busy gate parks the task and wakes it when the gate frees, so
//! gates cannot deadlock even when endpoint calls form cycles. A gate is re-entrant for the
//! transaction that holds it on the thread where it holds it, because a nested poll (an
//! endpoint call to an endpoint already running in the same poll, e.g. `self.f()`) is part of
//! the same logical step; another transaction never enters a gate mid-step. The gate is
//! released even if the code panics.

use std::task::{Context, Waker};

thread_local! {
    /// A number for this thread, cheaper to get than `std::thread::current().id()`.
    static THREAD_NUMBER: u64 = {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    };
}

use parking_lot::Mutex;

#[derive(Default)]
struct GateState {
    /// The thread and transaction (by address) running code of the endpoint.
    owner: Option<(u64, usize)>,
    depth: u32,
    waiters: Vec<Waker>,
}

/// An endpoint's gate.
#[derive(Default)]
pub(crate) struct Gate(Mutex<GateState>);

impl Gate {
    fn try_enter(&self, cx: &Context<'_>, tx: usize) -> bool {
        let me = (THREAD_NUMBER.with(|n| *n), tx);
        let mut state = self.0.lock();
        match state.owner {
            None => {
                state.owner = Some(me);
                state.depth = 1;
                true
            }
            Some(owner) if owner == me => {
                state.depth += 1;
                true
            }
            Some(_) => {
                if !state.waiters.iter().any(|w| w.will_wake(cx.waker())) {
                    state.waiters.push(cx.waker().clone());
                }
                false
            }
        }
    }

    /// Enters the gate for one poll of the code of the transaction at address `tx`, or
    /// parks the task (it is woken when the gate is free).
    pub(crate) fn enter(&self, cx: &Context<'_>, tx: usize) -> Option<Leave<'_>> {
        self.try_enter(cx, tx).then(|| Leave(self))
    }

    /// Whether transaction `tx` is running code of this endpoint on this thread right now
    /// (so a call into the endpoint is part of that code: `self.f()`, or a call back).
    pub(crate) fn held_by(&self, tx: usize) -> bool {
        self.0.lock().owner == Some((THREAD_NUMBER.with(|n| *n), tx))
    }

    fn leave(&self) {
        let waiters = {
            let mut state = self.0.lock();
            state.depth -= 1;
            if state.depth > 0 {
                return;
            }
            state.owner = None;
            std::mem::take(&mut state.waiters)
        };
        for w in waiters {
            w.wake();
        }
    }
}

/// Leaves the gate when dropped: at the end of a poll, normally or by unwinding.
pub(crate) struct Leave<'a>(&'a Gate);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.0.leave();
    }
}
