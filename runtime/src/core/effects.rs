//! Post-commit effects (`signal`, `print`): delivered once per committed transaction, after
//! it released everything, in each endpoint's commit order, never for an aborted attempt.
//!
//! Every endpoint has its own [`EffectQueue`]; endpoints that share nothing never wait for
//! each other's effects. A committing transaction with effects takes a numbered place in
//! the queue of every endpoint its effects belong to *while it still holds its locks* (all
//! its places at once, the queues locked in address order), so a later transaction that
//! conflicts with it (and can only commit after those locks are released) gets a later
//! number there. After releasing its locks it fills its places in, tells its partners to
//! commit, and *pumps* its queues: whoever finds a queue's next place filled and nobody
//! delivering runs the filled places in number order until one is not filled yet. Nobody
//! ever waits for a place to be filled or for another thread's delivery: a place not yet
//! filled is run by the thread that fills it, a queue being delivered by the thread
//! delivering it. So commits never wait for each other's effects, whatever the partners do
//! inline.
//!
//! A host call waits (asynchronously) until its own places have been delivered before it
//! returns, so when a call returns, its effects have run; the partner's effects run when the
//! partner commits. A transaction committed from inside a signalled function on a queue this
//! thread is delivering does not wait: the delivery around it runs its effects next.
//!
//! A panic in a signalled function or a printer is caught and reported; the other effects
//! still run, and a place is always filled, even by a panicking thread.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;

/// Where `print` writes: the endpoint's printer (standard output unless the host sets one).
pub type Printer = Arc<dyn Fn(&str) + Send + Sync>;

/// One effect of a committed transaction: a `signal` call with its copied arguments, or a
/// line to print, ready to run.
pub(crate) type Effect = Box<dyn FnOnce() + Send>;

/// Effects a committing transaction issued, each with the queue of its endpoint.
pub(crate) type Issued = Vec<(Arc<EffectQueue>, Effect)>;

/// The delivery order of one endpoint's effects.
#[derive(Default)]
pub(crate) struct EffectQueue {
    places: Mutex<Places>,
    /// Held by the thread running this queue's effects.
    delivering: Mutex<()>,
    /// The head moved on.
    progress: Notify,
}

#[derive(Default)]
struct Places {
    /// The next number to hand out.
    next: u64,
    /// The next place to deliver: every place below it has been delivered.
    head: u64,
    /// Places taken and not delivered yet: `None` until filled.
    waiting: BTreeMap<u64, Option<Vec<Effect>>>,
}

thread_local! {
    /// The queues this thread is delivering right now (by address).
    static DELIVERING: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

fn delivering_here(queue: &Arc<EffectQueue>) -> bool {
    DELIVERING.with(|d| d.borrow().contains(&(Arc::as_ptr(queue) as usize)))
}

/// The places a committing transaction took, each with the effects that go there. Dropping
/// it unfilled (a panic between taking and filling) fills them with nothing, so a queue is
/// never left waiting.
pub(crate) struct Reserved {
    places: Vec<(Arc<EffectQueue>, u64, Vec<Effect>)>,
}

/// Places filled in, to be pumped, and then waited for by the host call that committed.
pub(crate) struct Filled {
    places: Vec<(Arc<EffectQueue>, u64)>,
}

/// Takes a place in the queue of every endpoint `issued` names, for a committing transaction
/// that still holds its locks. `None` when there is nothing to deliver.
pub(crate) fn reserve(issued: Issued) -> Option<Reserved> {
    if issued.is_empty() {
        return None;
    }
    // One batch per queue, each in the order the code issued its effects.
    let mut batches: Vec<(Arc<EffectQueue>, Vec<Effect>)> = Vec::with_capacity(1);
    for (queue, effect) in issued {
        match batches.iter_mut().find(|(q, _)| Arc::ptr_eq(q, &queue)) {
            Some((_, batch)) => batch.push(effect),
            None => batches.push((queue, vec![effect])),
        }
    }
    // Several queues: take every place at once, locking the queues in address order, so
    // that two transactions never hold places in opposite orders.
    batches.sort_by_key(|(q, _)| Arc::as_ptr(q) as usize);
    let mut guards: Vec<_> = batches.iter().map(|(q, _)| q.places.lock()).collect();
    let numbers: Vec<u64> = guards
        .iter_mut()
        .map(|p| {
            let n = p.next;
            p.next += 1;
            p.waiting.insert(n, None);
            n
        })
        .collect();
    drop(guards);
    Some(Reserved { places: batches.into_iter().zip(numbers).map(|((q, b), n)| (q, n, b)).collect() })
}

impl Reserved {
    /// Fills the places in (after the locks are released). Nothing runs yet.
    pub(crate) fn fill(mut self) -> Filled {
        let places = std::mem::take(&mut self.places);
        let mut filled = Vec::with_capacity(places.len());
        for (queue, n, batch) in places {
            if let Some(place) = queue.places.lock().waiting.get_mut(&n) {
                *place = Some(batch);
            }
            filled.push((queue, n));
        }
        Filled { places: filled }
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        for (queue, n, _) in std::mem::take(&mut self.places) {
            if let Some(place) = queue.places.lock().waiting.get_mut(&n) {
                *place = Some(Vec::new());
            }
            queue.pump();
        }
    }
}

impl Filled {
    /// Runs what can run now on this thread (see the module docs); never waits.
    pub(crate) fn pump(&self) {
        for (queue, _) in &self.places {
            queue.pump();
        }
    }

    /// Waits until every place has been delivered (unless this thread is delivering its
    /// queue: then the delivery around it runs them next).
    pub(crate) async fn delivered(self) {
        for (queue, n) in &self.places {
            loop {
                let progress = queue.progress.notified();
                tokio::pin!(progress);
                progress.as_mut().enable();
                if queue.places.lock().head > *n || delivering_here(queue) {
                    break;
                }
                // Nobody may be delivering when we look (the place was filled after the
                // last delivery looked): pump once more before waiting.
                queue.pump();
                if queue.places.lock().head > *n {
                    break;
                }
                progress.await;
            }
        }
    }
}

impl EffectQueue {
    /// Runs the filled places from the head on, unless another thread is delivering (it
    /// will see them) or this thread is (the delivery around this call will).
    fn pump(self: &Arc<Self>) {
        if delivering_here(self) {
            return;
        }
        loop {
            let Some(guard) = self.delivering.try_lock() else { return };
            let me = Arc::as_ptr(self) as usize;
            DELIVERING.with(|d| d.borrow_mut().push(me));
            let _reset = Reset(me);
            loop {
                let batch = {
                    let mut places = self.places.lock();
                    let head = places.head;
                    match places.waiting.get(&head) {
                        Some(Some(_)) => places.waiting.remove(&head).flatten(),
                        _ => None,
                    }
                };
                let Some(batch) = batch else { break };
                run(batch);
                self.places.lock().head += 1;
                self.progress.notify_waiters();
            }
            drop(_reset);
            drop(guard);
            // A place filled while this thread was finishing (after its last look) would
            // otherwise wait for the next commit: look once more.
            let places = self.places.lock();
            if !matches!(places.waiting.get(&places.head), Some(Some(_))) {
                return;
            }
        }
    }
}

/// Takes a queue off this thread's "delivering" list, even if delivery unwinds.
struct Reset(usize);

impl Drop for Reset {
    fn drop(&mut self) {
        DELIVERING.with(|d| d.borrow_mut().retain(|q| *q != self.0));
    }
}

/// Runs `effects` in order on this thread, each one caught if it panics.
fn run(effects: Vec<Effect>) {
    for effect in effects {
        if catch_unwind(AssertUnwindSafe(effect)).is_err() {
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
        Box::new(move || log.lock().push(name))
    }

    fn queue() -> Arc<EffectQueue> {
        Arc::new(EffectQueue::default())
    }

    #[test]
    fn places_run_in_number_order_whatever_order_they_are_filled() {
        let q = queue();
        let log = Arc::new(Mutex::new(Vec::new()));
        let first = reserve(vec![(q.clone(), recorder(&log, "first"))]).expect("a place");
        let second = reserve(vec![(q, recorder(&log, "second"))]).expect("a place");
        // The second is filled first: it cannot run before the first, and nobody waits.
        second.fill().pump();
        assert!(log.lock().is_empty(), "the second place ran before the first");
        // Filling the first runs both, in order, on this thread.
        first.fill().pump();
        assert_eq!(*log.lock(), ["first", "second"]);
    }

    #[test]
    fn queues_of_other_endpoints_do_not_wait_for_each_other() {
        let (a, b) = (queue(), queue());
        let log = Arc::new(Mutex::new(Vec::new()));
        let held = reserve(vec![(a, recorder(&log, "a"))]).expect("a place");
        // `a`'s place is not filled, yet `b`'s runs at once.
        reserve(vec![(b, recorder(&log, "b"))]).expect("a place").fill().pump();
        assert_eq!(*log.lock(), ["b"]);
        held.fill().pump();
        assert_eq!(*log.lock(), ["b", "a"]);
    }

    #[test]
    fn a_transaction_on_two_endpoints_keeps_each_endpoints_order_and_a_dropped_place_moves_on() {
        let (a, b) = (queue(), queue());
        let log = Arc::new(Mutex::new(Vec::new()));
        reserve(vec![
            (a.clone(), recorder(&log, "a1")),
            (b, recorder(&log, "b1")),
            (a.clone(), recorder(&log, "a2")),
        ])
        .expect("places")
        .fill()
        .pump();
        let seen = log.lock().clone();
        let pos = |x: &str| seen.iter().position(|s| s == x).expect("ran");
        assert!(pos("a1") < pos("a2"), "{seen:?}");
        assert_eq!(seen.len(), 3);
        // A place given up unfilled (a panic unwinding) still lets the next one run.
        drop(reserve(vec![(a.clone(), recorder(&log, "lost"))]));
        reserve(vec![(a, recorder(&log, "after"))]).expect("a place").fill().pump();
        assert_eq!(log.lock().last().map(String::as_str), Some("after"));
        assert!(!log.lock().iter().any(|s| s == "lost"));
    }

    #[test]
    fn a_waiting_call_returns_once_another_thread_delivered_its_place() {
        let q = queue();
        let log = Arc::new(Mutex::new(Vec::new()));
        let first = reserve(vec![(q.clone(), recorder(&log, "first"))]).expect("a place");
        let second = reserve(vec![(q, recorder(&log, "second"))]).expect("a place").fill();
        second.pump();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        runtime.block_on(async {
            let filler = std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(20));
                first.fill().pump();
            });
            tokio::time::timeout(std::time::Duration::from_secs(5), second.delivered())
                .await
                .expect("delivered");
            filler.join().expect("the filler");
        });
        assert_eq!(*log.lock(), ["first", "second"]);
    }
}
