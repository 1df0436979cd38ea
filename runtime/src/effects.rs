//! Post-commit effects (`signal`, `print`): delivered once per committed transaction, after
//! commit, in commit order, never for an aborted attempt.
//!
//! A committing transaction queues its effects *before* releasing its locks, so a later
//! transaction that conflicts with it (and therefore commits after it) queues after it.
//! Delivery is serialized by one process-wide lock and runs outside every transaction lock.
//! When `commit` returns, the committing transaction's own effects have run.

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::value::{HostFn, Value};

/// Where `print` writes: the endpoint's printer (standard output unless the host sets one).
pub type Printer = Arc<dyn Fn(&str) + Send + Sync>;

/// One effect of a committed transaction.
pub(crate) enum Effect {
    /// `signal(f, args...)`.
    Signal(HostFn, Vec<Value>),
    /// `print(x)`.
    Print(Printer, String),
}

static QUEUE: Mutex<VecDeque<Vec<Effect>>> = Mutex::new(VecDeque::new());
static DELIVERY: Mutex<()> = Mutex::new(());

thread_local! {
    /// Set while this thread delivers effects: a host function that commits a transaction
    /// from inside a signal leaves its effects to the delivery loop already running.
    static DELIVERING: Cell<bool> = const { Cell::new(false) };
}

/// Queues the effects of a transaction that is committing.
pub(crate) fn enqueue(effects: Vec<Effect>) {
    if !effects.is_empty() {
        QUEUE.lock().push_back(effects);
    }
}

/// Delivers every queued batch, in order.
pub(crate) fn deliver() {
    if DELIVERING.with(Cell::get) {
        return;
    }
    if QUEUE.lock().is_empty() {
        return;
    }
    let _serial = DELIVERY.lock();
    DELIVERING.with(|d| d.set(true));
    loop {
        let Some(batch) = QUEUE.lock().pop_front() else { break };
        for effect in batch {
            match effect {
                Effect::Signal(f, args) => {
                    if let Err(e) = f.call(args) {
                        tracing::warn!(message = %e.message, "a signalled host function raised after commit; the transaction stays committed");
                    }
                }
                Effect::Print(printer, text) => printer(&text),
            }
        }
    }
    DELIVERING.with(|d| d.set(false));
}

/// The default printer: a line on standard output.
pub fn stdout_printer() -> Printer {
    Arc::new(|text: &str| println!("{text}"))
}
