//! Post-commit effects (`signal`, `print`): delivered once per committed transaction, after
//! it released everything, in commit order, never for an aborted attempt.
//!
//! A committing transaction that has effects reserves a numbered place in the delivery queue
//! *while it still holds its locks*, so a later transaction that conflicts with it (and can
//! only commit after those locks are released) gets a later number. After releasing its
//! locks it fills its place in. Delivery runs places strictly in number order and stops at a
//! place that is reserved but not yet filled. The committing thread returns once its own
//! effects have run, unless it is itself delivering effects (a host function that commits
//! a transaction from inside a signal), in which case the running delivery takes them.
//!
//! A signalled function runs on the thread that commits; it must not wait for another Waldo
//! call to commit. A panic in a signalled function or a printer is caught and reported; the
//! other effects still run.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

use crate::value::{HostFn, Value};

/// Where `print` writes: the endpoint's printer (standard output unless the host sets one).
pub type Printer = Arc<dyn Fn(&str) + Send + Sync>;

/// One effect of a committed transaction.
pub(crate) enum Effect {
    /// `signal(f, args...)`, with arguments already copied.
    Signal(HostFn, Vec<Value>),
    /// `print(x)`.
    Print(Printer, String),
}

#[derive(Default)]
struct Queue {
    /// The next number to hand out.
    next: u64,
    /// Every place below this number has been delivered.
    delivered: u64,
    /// Reserved places: `None` until filled.
    places: BTreeMap<u64, Option<Vec<Effect>>>,
}

static QUEUE: Mutex<Queue> = Mutex::new(Queue { next: 0, delivered: 0, places: BTreeMap::new() });
static PROGRESS: Condvar = Condvar::new();
static DELIVERY: Mutex<()> = Mutex::new(());

thread_local! {
    static DELIVERING: Cell<bool> = const { Cell::new(false) };
}

/// Resets the "delivering" flag even if delivery unwinds.
struct DeliveringGuard;

impl Drop for DeliveringGuard {
    fn drop(&mut self) {
        DELIVERING.with(|d| d.set(false));
    }
}

/// Reserves the next place, for a committing transaction that still holds its locks.
pub(crate) fn reserve() -> u64 {
    let mut q = QUEUE.lock();
    let n = q.next;
    q.next += 1;
    q.places.insert(n, None);
    n
}

/// Fills place `n` with its effects and returns once they have run (see the module docs).
pub(crate) fn fill_and_deliver(n: u64, effects: Vec<Effect>) {
    if let Some(place) = QUEUE.lock().places.get_mut(&n) {
        *place = Some(effects);
    }
    if DELIVERING.with(Cell::get) {
        // This thread is inside a delivery: the loop below it will run these in order.
        return;
    }
    loop {
        if let Some(_serial) = DELIVERY.try_lock() {
            DELIVERING.with(|d| d.set(true));
            let _reset = DeliveringGuard;
            deliver_ready();
        }
        let mut q = QUEUE.lock();
        if q.delivered > n {
            return;
        }
        // Someone else is delivering, or an earlier place is not filled yet: wait for progress.
        PROGRESS.wait_for(&mut q, std::time::Duration::from_millis(1));
    }
}

/// Runs filled places in order, stopping at the first one not filled yet.
fn deliver_ready() {
    loop {
        let batch = {
            let mut q = QUEUE.lock();
            let next = q.delivered;
            match q.places.get(&next) {
                Some(Some(_)) => q.places.remove(&next).flatten(),
                _ => None,
            }
        };
        let Some(batch) = batch else { return };
        for effect in batch {
            let outcome = catch_unwind(AssertUnwindSafe(|| match effect {
                Effect::Signal(f, args) => {
                    if let Err(e) = f.call(args) {
                        tracing::warn!(message = %e.message, "a signalled host function raised after commit; the transaction stays committed");
                    }
                }
                Effect::Print(printer, text) => printer(&text),
            }));
            if outcome.is_err() {
                tracing::error!(
                    "a signalled host function or printer panicked after commit; the transaction stays committed"
                );
            }
        }
        QUEUE.lock().delivered += 1;
        PROGRESS.notify_all();
    }
}

/// The default printer: a line on standard output (a closed output is ignored).
pub fn stdout_printer() -> Printer {
    Arc::new(|text: &str| {
        let _ = writeln!(std::io::stdout().lock(), "{text}");
    })
}
