//! Post-commit effects (`signal`, `print`): delivered once per committed transaction, after
//! it released everything, in each endpoint's commit order, never for an aborted attempt.
//!
//! Every endpoint has its own [`EffectQueue`]; endpoints that share nothing never wait for
//! each other's effects. A committing transaction with effects takes a numbered place in
//! the queue of every endpoint its effects belong to *while it still holds its locks*
//! (several queues at once, taken in a fixed order), so a later transaction that conflicts
//! with it (and can only commit after those locks are released) gets a later number there.
//! After releasing its locks, the transaction waits until it is at the head of each of its
//! queues, runs its effects in the order the code issued them, and moves the heads on. Only
//! then does it tell its partners to commit, so a committing thread never waits for a place
//! while it still has one to deliver: every wait points at a place taken earlier, and the
//! holder of that place is running, not waiting for a later one (no cycle, no deadlock).
//!
//! A signalled function runs on the thread that commits; it must not wait for another Waldo
//! call to commit. A transaction committed from inside a signalled function (a host
//! function that runs a call to completion) delivers its effects at once, inside the
//! signal. A panic in a signalled function or a printer is caught and reported; the other
//! effects still run, and a place is always given up, even by a panicking thread.

use std::cell::Cell;
use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

/// Where `print` writes: the endpoint's printer (standard output unless the host sets one).
pub type Printer = Arc<dyn Fn(&str) + Send + Sync>;

/// One effect of a committed transaction: a `signal` call with its copied arguments, or a
/// line to print, ready to run.
pub(crate) type Effect = Box<dyn FnOnce() + Send>;

/// The delivery order of one endpoint's effects.
#[derive(Default)]
pub(crate) struct EffectQueue {
    places: Mutex<Places>,
    progress: Condvar,
}

#[derive(Default)]
struct Places {
    /// The next number to hand out.
    next: u64,
    /// The place whose effects run next (every place below it has been delivered).
    head: u64,
}

thread_local! {
    /// Whether this thread is running effects (a transaction committed from inside a
    /// signalled function then delivers at once, without a place).
    static DELIVERING: Cell<bool> = const { Cell::new(false) };
}

/// Effects a committing transaction issued, each with the queue of its endpoint.
pub(crate) type Issued = Vec<(Arc<EffectQueue>, Effect)>;

/// The places a committing transaction holds, one per queue. Dropping it (after delivery,
/// or while unwinding) moves every head on, so a place is never left behind.
pub(crate) struct Reserved {
    places: Vec<(Arc<EffectQueue>, u64)>,
    effects: Vec<Effect>,
}

impl Reserved {
    /// Waits until this transaction is at the head of each of its queues, then runs its
    /// effects in order.
    pub(crate) fn deliver(mut self) {
        for (queue, n) in &self.places {
            let mut places = queue.places.lock();
            while places.head != *n {
                queue.progress.wait(&mut places);
            }
        }
        run(std::mem::take(&mut self.effects));
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        for (queue, n) in &self.places {
            let mut places = queue.places.lock();
            // Normally the head is `n` (this transaction delivered); if a panic unwound
            // before delivery, wait for our turn all the same, so the order holds.
            while places.head < *n {
                queue.progress.wait(&mut places);
            }
            places.head = places.head.max(n + 1);
            drop(places);
            queue.progress.notify_all();
        }
    }
}

/// Takes a place in the queue of every endpoint `issued` names (each once), for a committing
/// transaction that still holds its locks. `None` when there is nothing to deliver.
pub(crate) fn reserve(issued: Issued) -> Option<Reserved> {
    if issued.is_empty() {
        return None;
    }
    let mut queues: Vec<Arc<EffectQueue>> = Vec::with_capacity(1);
    let mut effects = Vec::with_capacity(issued.len());
    for (queue, effect) in issued {
        if !queues.iter().any(|q| Arc::ptr_eq(q, &queue)) {
            queues.push(queue);
        }
        effects.push(effect);
    }
    if DELIVERING.with(Cell::get) {
        // Committed inside a signalled function: run now, inside the delivery around it.
        run(effects);
        return None;
    }
    let places = match queues.len() {
        1 => {
            let queue = queues.pop().expect("one queue");
            let n = queue.take_place();
            vec![(queue, n)]
        }
        _ => {
            // Several endpoints' queues: take every place at once, locking the queues in
            // address order, so two transactions never hold places in opposite orders.
            queues.sort_by_key(|q| Arc::as_ptr(q) as usize);
            let mut guards: Vec<_> = queues.iter().map(|q| q.places.lock()).collect();
            let numbers: Vec<u64> = guards
                .iter_mut()
                .map(|p| {
                    p.next += 1;
                    p.next - 1
                })
                .collect();
            drop(guards);
            queues.into_iter().zip(numbers).collect()
        }
    };
    Some(Reserved { places, effects })
}

impl EffectQueue {
    fn take_place(&self) -> u64 {
        let mut places = self.places.lock();
        places.next += 1;
        places.next - 1
    }
}

/// Resets the "delivering" flag even if delivery unwinds.
struct DeliveringGuard(bool);

impl Drop for DeliveringGuard {
    fn drop(&mut self) {
        DELIVERING.with(|d| d.set(self.0));
    }
}

/// Runs `effects` in order on this thread, each one caught if it panics.
fn run(effects: Vec<Effect>) {
    let _reset = DeliveringGuard(DELIVERING.with(|d| d.replace(true)));
    for effect in effects {
        let outcome = catch_unwind(AssertUnwindSafe(effect));
        if outcome.is_err() {
            tracing::error!(
                "a signalled host function or printer panicked after commit; the transaction stays committed"
            );
        }
    }
}

/// The default printer: a line on standard output (a closed output is ignored).
pub fn stdout_printer() -> Printer {
    Arc::new(|text: &str| {
        let _ = writeln!(std::io::stdout().lock(), "{text}");
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorder(log: &Arc<Mutex<Vec<String>>>, name: &str) -> Effect {
        let (log, name) = (log.clone(), name.to_owned());
        Box::new(move || log.lock().push(format!("{name}:")))
    }

    #[test]
    fn places_are_delivered_in_number_order_whatever_order_they_are_ready() {
        let queue = Arc::new(EffectQueue::default());
        let log = Arc::new(Mutex::new(Vec::new()));
        let first = reserve(vec![(queue.clone(), recorder(&log, "first"))]).expect("a place");
        let second = reserve(vec![(queue, recorder(&log, "second"))]).expect("a place");
        // The second is ready first: it waits for the first, on its own thread.
        let waiting = std::thread::spawn(move || second.deliver());
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(log.lock().is_empty(), "the second place ran before the first");
        first.deliver();
        waiting.join().expect("the second delivery");
        assert_eq!(*log.lock(), ["first:", "second:"]);
    }

    #[test]
    fn queues_of_other_endpoints_do_not_wait_for_each_other() {
        let (a, b) = (Arc::new(EffectQueue::default()), Arc::new(EffectQueue::default()));
        let log = Arc::new(Mutex::new(Vec::new()));
        let held = reserve(vec![(a, recorder(&log, "a"))]).expect("a place");
        // `a`'s place is not delivered, yet `b`'s runs at once.
        reserve(vec![(b, recorder(&log, "b"))]).expect("a place").deliver();
        assert_eq!(*log.lock(), ["b:"]);
        held.deliver();
        assert_eq!(*log.lock(), ["b:", "a:"]);
    }

    #[test]
    fn a_transaction_on_two_endpoints_keeps_its_own_order_and_a_dropped_place_moves_on() {
        let (a, b) = (Arc::new(EffectQueue::default()), Arc::new(EffectQueue::default()));
        let log = Arc::new(Mutex::new(Vec::new()));
        let both = reserve(vec![
            (a.clone(), recorder(&log, "a1")),
            (b, recorder(&log, "b1")),
            (a.clone(), recorder(&log, "a2")),
        ])
        .expect("places");
        both.deliver();
        assert_eq!(*log.lock(), ["a1:", "b1:", "a2:"]);
        // A place given up without delivering (a panic unwinding) still moves the head on.
        drop(reserve(vec![(a.clone(), recorder(&log, "lost"))]));
        reserve(vec![(a, recorder(&log, "after"))]).expect("a place").deliver();
        assert_eq!(log.lock().last().map(String::as_str), Some("after:"));
    }
}
