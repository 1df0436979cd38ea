//! The watchdog: reports (through `tracing`) Waldo code that runs longer than a budget without
//! yielding, such as a block stuck in a loop. Each poll of a transaction's code registers when
//! it started; a background thread looks every few milliseconds and warns once per long poll.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// The default budget: 50 ms.
pub const DEFAULT_BUDGET: Duration = Duration::from_millis(50);

static BUDGET_US: AtomicU64 = AtomicU64::new(50_000);
/// One slot per thread that ever ran Waldo code.
static THREADS: Mutex<Vec<Arc<ThreadSlot>>> = Mutex::new(Vec::new());
static REPORTS: AtomicU64 = AtomicU64::new(0);
static THREAD: OnceLock<()> = OnceLock::new();

/// Microseconds since the watchdog started, advanced by its thread: polls read this instead
/// of the clock, so the watchdog costs a poll a few atomic operations on its own thread's
/// slot.
static NOW_US: AtomicU64 = AtomicU64::new(0);

/// The name of running Waldo code, for reports: `Endpoint.function`, or one name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct What(pub &'static str, pub &'static str);

impl From<&'static str> for What {
    fn from(name: &'static str) -> Self {
        What(name, "")
    }
}

impl std::fmt::Display for What {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.1.is_empty() { f.write_str(self.0) } else { write!(f, "{}.{}", self.0, self.1) }
    }
}

/// What one thread is running: since when (plus one; zero when idle), and what.
#[derive(Default)]
struct ThreadSlot {
    since: AtomicU64,
    what: Mutex<What>,
    /// The `since` value already reported (each long poll is reported once).
    reported: AtomicU64,
}

/// This thread's slot, and the name last written into it (most polls on a thread run the
/// same code as the one before: they skip the slot's lock).
struct Local {
    slot: Arc<ThreadSlot>,
    written: std::cell::Cell<What>,
}

thread_local! {
    static SLOT: Local = {
        let slot = Arc::new(ThreadSlot::default());
        THREADS.lock().push(slot.clone());
        Local { slot, written: std::cell::Cell::new(What::default()) }
    };
}

/// Sets the budget after which running code is reported.
pub fn set_budget(budget: Duration) {
    BUDGET_US.store(budget.as_micros().max(1) as u64, Ordering::Relaxed);
}

/// How many reports the watchdog has made since the process started.
pub fn reports() -> u64 {
    REPORTS.load(Ordering::Relaxed)
}

fn budget() -> Duration {
    Duration::from_micros(BUDGET_US.load(Ordering::Relaxed))
}

fn start_thread() {
    THREAD.get_or_init(|| {
        let spawned = std::thread::Builder::new().name("waldo-watchdog".into()).spawn(|| {
            let start = Instant::now();
            loop {
                let budget = budget();
                std::thread::sleep((budget / 8).clamp(Duration::from_millis(1), Duration::from_millis(10)));
                // Never zero, so that a poll started now is not taken for "idle".
                let now = start.elapsed().as_micros() as u64 + 1;
                NOW_US.store(now, Ordering::Relaxed);
                let budget_us = budget.as_micros() as u64;
                let threads = THREADS.lock().clone();
                for slot in threads {
                    let since = slot.since.load(Ordering::Acquire);
                    if since != 0
                        && now.saturating_sub(since) > budget_us
                        && slot.reported.swap(since, Ordering::AcqRel) != since
                    {
                        REPORTS.fetch_add(1, Ordering::Relaxed);
                        let what = *slot.what.lock();
                        tracing::warn!(code = %what, budget_ms = budget.as_millis() as u64,
                            "Waldo code has been running without yielding for longer than the watchdog budget");
                    }
                }
            }
        });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "could not start the watchdog thread; long-running code will not be reported");
        }
    });
}

/// Runs `f` (one poll of Waldo code named `what`) under the watchdog's eye. Nested polls
/// (an inline job inside a poll) keep the outer poll's start.
pub(crate) fn during<T>(what: What, f: impl FnOnce() -> T) -> T {
    start_thread();
    SLOT.with(|local| {
        let slot = &*local.slot;
        let outer = slot.since.load(Ordering::Relaxed);
        if outer == 0 {
            // The same names (the same static strings) need not be written again.
            let last = local.written.get();
            if !(std::ptr::eq(last.0, what.0) && std::ptr::eq(last.1, what.1)) {
                *slot.what.lock() = what;
                local.written.set(what);
            }
            slot.since.store(NOW_US.load(Ordering::Relaxed).max(1), Ordering::Release);
        }
        // Back to idle when the poll ends, even by unwinding.
        struct Idle<'a>(&'a ThreadSlot, u64);
        impl Drop for Idle<'_> {
            fn drop(&mut self) {
                if self.1 == 0 {
                    self.0.since.store(0, Ordering::Release);
                }
            }
        }
        let _idle = Idle(slot, outer);
        f()
    })
}

#[cfg(test)]
mod tests {
    use super::{SLOT, What, during};

    /// What this thread's slot names (what a report would say).
    fn named() -> What {
        SLOT.with(|local| *local.slot.what.lock())
    }

    /// A poll names the code it runs, whether the thread ran the same code just before or
    /// other code (the name is only written when it changes); a nested poll keeps the
    /// outer one's name.
    #[test]
    fn each_poll_names_the_code_it_runs() {
        let (a, b) = (What("A", "f"), What("B", "g"));
        assert_eq!(during(a, named), a);
        assert_eq!(during(a, named), a);
        assert_eq!(during(b, named), b);
        assert_eq!(during(b, || during(a, named)), b, "a nested poll keeps the outer name");
        assert_eq!(during(a, named), a);
        // Equal names in other strings are written too (the check compares the strings' places).
        let other = What(String::from("A").leak(), String::from("f").leak());
        assert!(during(other, || std::ptr::eq(named().0, other.0)));
    }
}
