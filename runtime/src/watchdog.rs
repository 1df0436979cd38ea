//! The watchdog: reports (through `tracing`) Waldo code that runs longer than a budget without
//! yielding, such as a block stuck in a loop. Each poll of a transaction's code registers when
//! it started; a background thread looks every few milliseconds and warns once per long poll.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// The default budget: 50 ms.
pub const DEFAULT_BUDGET: Duration = Duration::from_millis(50);

static BUDGET_US: AtomicU64 = AtomicU64::new(50_000);
static RUNNING: Mutex<Vec<Option<Running>>> = Mutex::new(Vec::new());
static REPORTS: AtomicU64 = AtomicU64::new(0);
static THREAD: OnceLock<()> = OnceLock::new();

struct Running {
    since: Instant,
    what: &'static str,
    reported: bool,
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
            loop {
                let budget = budget();
                std::thread::sleep((budget / 4).clamp(Duration::from_millis(1), Duration::from_millis(20)));
                let mut running = RUNNING.lock();
                for entry in running.iter_mut().flatten() {
                    if !entry.reported && entry.since.elapsed() > budget {
                        entry.reported = true;
                        REPORTS.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(code = entry.what, budget_ms = budget.as_millis() as u64,
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

/// Runs `f` (one poll of Waldo code named `what`) under the watchdog's eye.
pub(crate) fn during<T>(what: &'static str, f: impl FnOnce() -> T) -> T {
    start_thread();
    let slot = {
        let mut running = RUNNING.lock();
        let entry = Some(Running { since: Instant::now(), what, reported: false });
        match running.iter().position(Option::is_none) {
            Some(i) => {
                running[i] = entry;
                i
            }
            None => {
                running.push(entry);
                running.len() - 1
            }
        }
    };
    // Free the slot when the poll ends, even by unwinding.
    struct Free(usize);
    impl Drop for Free {
        fn drop(&mut self) {
            if let Some(entry) = RUNNING.lock().get_mut(self.0) {
                *entry = None;
            }
        }
    }
    let _free = Free(slot);
    f()
}
