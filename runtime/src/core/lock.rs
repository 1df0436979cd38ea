//! The transaction lock on one item (a variable slot, a heap object, an External cell).
//!
//! Shared for reading, exclusive for writing, held until the transaction commits or aborts
//! (strict two-phase locking). The lock only records holders and waiters; the decision to
//! wound or wait belongs to the transactions. Every `LockState` sits inside the mutex of the
//! item it protects, so checking, granting and releasing are atomic with the item's data.
//! The lock knows its holders only through [`Holder`], so it depends on nothing else.

use std::sync::Arc;
use std::task::Waker;

/// What the lock needs to know of a transaction that holds or requests it.
pub(crate) trait Holder {
    /// Comparable ages: smaller is older.
    type Priority: Ord;
    /// Whether the transaction is still running (not committed nor aborted).
    fn is_live(&self) -> bool;
    /// The transaction's priority.
    fn priority(&self) -> Self::Priority;
}

/// Read or write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Read,
    Write,
}

/// Holders and waiters of one item.
pub(crate) struct LockState<H> {
    writer: Option<Arc<H>>,
    readers: Vec<Arc<H>>,
    waiters: Vec<Waker>,
    /// The oldest transaction waiting to write: younger readers and writers queue behind it,
    /// so a stream of young transactions cannot starve an old writer, and a writer woken by a
    /// release is not overtaken by one that asked later.
    waiting_writer: Option<Arc<H>>,
}

impl<H> Default for LockState<H> {
    fn default() -> Self {
        LockState { writer: None, readers: Vec::new(), waiters: Vec::new(), waiting_writer: None }
    }
}

/// The outcome of a request.
pub(crate) enum Grant<H> {
    /// Granted; `true` when the transaction did not hold the item before (it must remember
    /// to release it).
    Granted(bool),
    /// Held by others in a conflicting mode.
    Conflict(Vec<Arc<H>>),
    /// Free, but an older transaction waits to write it: the requester (a reader, or a
    /// younger writer) queues behind that writer, so the item goes to the oldest waiting
    /// writer first. The writer may end without ever holding the item (wounded elsewhere,
    /// past its deadline), and then no release wakes the requester: it must also be woken
    /// when the writer finishes.
    Behind(Arc<H>),
}

impl<H: Holder> LockState<H> {
    /// Grants `mode` to `tx` if nobody else holds the item in a conflicting mode.
    pub(crate) fn try_acquire(&mut self, tx: &Arc<H>, mode: Mode) -> Grant<H> {
        // A holder that ended without releasing (it cannot, but a leak must not wedge the
        // item forever) holds nothing.
        if self.writer.as_ref().is_some_and(|w| !w.is_live()) {
            self.writer = None;
        }
        self.readers.retain(|r| r.is_live());
        let is_me = |t: &Arc<H>| Arc::ptr_eq(t, tx);
        let held_before = self.writer.as_ref().is_some_and(is_me) || self.readers.iter().any(is_me);
        if let Some(w) = &self.waiting_writer
            && !w.is_live()
        {
            self.waiting_writer = None;
        }
        match mode {
            Mode::Read => {
                if !held_before
                    && let Some(w) = &self.waiting_writer
                    && !is_me(w)
                    && w.priority() < tx.priority()
                {
                    return Grant::Behind(w.clone());
                }
                match &self.writer {
                    Some(w) if !is_me(w) => return Grant::Conflict(vec![w.clone()]),
                    Some(_) => {}
                    None => {
                        if !self.readers.iter().any(is_me) {
                            self.readers.push(tx.clone());
                        }
                    }
                }
                Grant::Granted(!held_before)
            }
            Mode::Write => {
                if let Some(w) = &self.writer {
                    if is_me(w) {
                        return Grant::Granted(false);
                    }
                    if self.waiting_writer.as_ref().is_none_or(|ww| tx.priority() < ww.priority()) {
                        self.waiting_writer = Some(tx.clone());
                    }
                    return Grant::Conflict(vec![w.clone()]);
                }
                // Free, but an older writer is waiting for it (woken by the last release, not yet
                // run): the item goes to it, in age order, rather than to whoever asks first.
                if !held_before
                    && let Some(w) = &self.waiting_writer
                    && !is_me(w)
                    && w.priority() < tx.priority()
                    && self.readers.is_empty()
                {
                    return Grant::Behind(w.clone());
                }
                let others: Vec<Arc<H>> = self.readers.iter().filter(|r| !is_me(r)).cloned().collect();
                if !others.is_empty() {
                    if self.waiting_writer.as_ref().is_none_or(|w| tx.priority() < w.priority()) {
                        self.waiting_writer = Some(tx.clone());
                    }
                    return Grant::Conflict(others);
                }
                if self.waiting_writer.as_ref().is_some_and(is_me) {
                    self.waiting_writer = None;
                }
                self.readers.clear();
                self.writer = Some(tx.clone());
                Grant::Granted(!held_before)
            }
        }
    }

    /// Whether `tx` holds the item for writing.
    pub(crate) fn written_by(&self, tx: &Arc<H>) -> bool {
        self.writer.as_ref().is_some_and(|w| Arc::ptr_eq(w, tx))
    }

    /// Parks a waiter until the next release.
    pub(crate) fn wait(&mut self, waker: &Waker) {
        if !self.waiters.iter().any(|w| w.will_wake(waker)) {
            self.waiters.push(waker.clone());
        }
    }

    /// Releases whatever `tx` holds and returns the waiters to wake.
    pub(crate) fn release(&mut self, tx: &Arc<H>) -> Vec<Waker> {
        if self.writer.as_ref().is_some_and(|w| Arc::ptr_eq(w, tx)) {
            self.writer = None;
        }
        self.readers.retain(|r| !Arc::ptr_eq(r, tx));
        std::mem::take(&mut self.waiters)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::{Grant, Holder, LockState, Mode};

    struct T(u64, AtomicBool);

    impl Holder for T {
        type Priority = u64;
        fn is_live(&self) -> bool {
            !self.1.load(Ordering::SeqCst)
        }
        fn priority(&self) -> u64 {
            self.0
        }
    }

    fn tx(age: u64) -> Arc<T> {
        Arc::new(T(age, AtomicBool::new(false)))
    }

    #[test]
    fn a_released_item_goes_to_the_oldest_waiting_writer_not_to_the_first_to_ask() {
        let (holder, old, young) = (tx(5), tx(1), tx(9));
        let mut lock = LockState::default();
        assert!(matches!(lock.try_acquire(&holder, Mode::Write), Grant::Granted(true)));
        // The older writer finds it held and waits; the holder commits and releases.
        assert!(matches!(lock.try_acquire(&old, Mode::Write), Grant::Conflict(h) if h[0].0 == 5));
        lock.release(&holder);
        holder.1.store(true, Ordering::SeqCst);
        // A younger writer (or reader) asking before the woken one runs queues behind it.
        assert!(matches!(lock.try_acquire(&young, Mode::Write), Grant::Behind(w) if w.0 == 1));
        assert!(matches!(lock.try_acquire(&young, Mode::Read), Grant::Behind(w) if w.0 == 1));
        assert!(matches!(lock.try_acquire(&old, Mode::Write), Grant::Granted(true)));
        lock.release(&old);
        old.1.store(true, Ordering::SeqCst);
        assert!(matches!(lock.try_acquire(&young, Mode::Write), Grant::Granted(true)));
    }

    #[test]
    fn an_older_writer_than_the_waiting_one_is_not_held_back() {
        let (holder, waiting, older) = (tx(5), tx(3), tx(1));
        let mut lock = LockState::default();
        assert!(matches!(lock.try_acquire(&holder, Mode::Write), Grant::Granted(true)));
        assert!(matches!(lock.try_acquire(&waiting, Mode::Write), Grant::Conflict(_)));
        lock.release(&holder);
        assert!(matches!(lock.try_acquire(&older, Mode::Write), Grant::Granted(true)));
        // A waiting writer that ended without ever holding the item holds nobody back.
        lock.release(&older);
        waiting.1.store(true, Ordering::SeqCst);
        let young = tx(9);
        assert!(matches!(lock.try_acquire(&young, Mode::Write), Grant::Granted(true)));
    }
}
