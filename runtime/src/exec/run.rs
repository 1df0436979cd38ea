//! Running a host call as a transaction: attempts, retries with backoff, deadlines.
//!
//! An attempt that is wounded (an older transaction needed what it held) is undone and run
//! again with its original priority: at once for the first retries (its age puts it ahead of
//! younger transactions at every lock it waits for), then after a pause drawn uniformly from
//! zero to an exponentially growing bound ("full jitter"). The call gives up at its deadline
//! (timeout) or after its attempt limit. Host functions called by the code may therefore run more than
//! once; effects (`signal`, `print`) run once, after the attempt that commits.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::core::endpoint::EndpointCore;
use crate::core::error::{Abort, Error, Flow, Raise};
use crate::core::tx::Tx;
use crate::exec::watchdog::What;

/// Per-call options.
#[derive(Clone, Debug)]
pub struct CallOptions {
    /// Give up (and leave no trace) if the call has not committed after this long.
    pub deadline: Option<Duration>,
    /// Give up after this many aborted attempts.
    pub max_attempts: u32,
    /// How many retries run at once, without a pause: a retried attempt keeps its age, so
    /// the locks it waits for go to it before any younger transaction, and a pause would
    /// only leave them to younger ones meanwhile.
    pub immediate_retries: u32,
    /// The first retry after the immediate ones pauses up to this long; each further one
    /// doubles the bound.
    pub backoff_base: Duration,
    /// The largest pause bound.
    pub backoff_cap: Duration,
}

impl Default for CallOptions {
    fn default() -> Self {
        CallOptions {
            deadline: None,
            max_attempts: 10_000,
            immediate_retries: 2,
            backoff_base: Duration::from_micros(20),
            backoff_cap: Duration::from_millis(20),
        }
    }
}

impl CallOptions {
    /// These options with a deadline.
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// These options with no deadline.
    pub fn without_deadline(mut self) -> Self {
        self.deadline = None;
        self
    }

    /// These options with `n` retries run at once before retries start to pause.
    pub fn with_immediate_retries(mut self, n: u32) -> Self {
        self.immediate_retries = n;
        self
    }

    /// These options with an attempt limit (at least one attempt is always made).
    pub fn with_max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// These options with the first retry's pause bound (each further one doubles it).
    pub fn with_backoff_base(mut self, base: Duration) -> Self {
        self.backoff_base = base;
        self
    }

    /// These options with the largest pause bound between retries.
    pub fn with_backoff_cap(mut self, cap: Duration) -> Self {
        self.backoff_cap = cap;
        self
    }
}

/// Process-wide transaction counts (see [`counters`]).
static COMMITTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static ABORTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many host calls committed, and how many attempts were aborted by conflicts and
/// retried, in this process so far (for monitoring and benchmarks).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Host calls that committed.
    pub committed: u64,
    /// Attempts undone because a conflicting transaction wounded them.
    pub retried: u64,
}

/// The process-wide transaction counts.
pub fn counters() -> Counters {
    Counters {
        committed: COMMITTED.load(std::sync::atomic::Ordering::Relaxed),
        retried: ABORTED.load(std::sync::atomic::Ordering::Relaxed),
    }
}

/// What a transaction did, for tests and statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Attempts {
    /// How many attempts ran (1 when there was no conflict).
    pub attempts: u32,
}

/// Runs `body`, a host call of a function of endpoint `core`, as a transaction named `what`
/// (for watchdog reports) until it commits, raises, times out or runs out of attempts. The
/// body runs as code of `core` (under its gate).
pub fn transact<'a, T, F, Fut>(
    what: impl Into<What>,
    core: &'a Arc<EndpointCore>,
    options: &'a CallOptions,
    body: F,
) -> impl Future<Output = Result<T, Error>> + 'a
where
    F: FnMut(Tx) -> Fut + 'a,
    Fut: Future<Output = Flow<T>> + 'a,
    T: 'a,
{
    then(transact_counted(what.into(), core, options, body), |r| r.map(|(v, _)| v))
}

pin_project_lite::pin_project! {
    /// [`then`]'s future.
    pub(crate) struct Then<F, G> {
        #[pin]
        inner: F,
        then: Option<G>,
    }
}

/// `inner`, with `f` applied to its output. An `async` block awaiting `inner` would do the
/// same, but would hold its captures beside `inner`'s own copy of them: every host call's
/// future nests a few of these, and each move of it copies them all.
pub(crate) fn then<F: Future, G: FnOnce(F::Output) -> O, O>(inner: F, f: G) -> Then<F, G> {
    Then { inner, then: Some(f) }
}

impl<F: Future, G: FnOnce(F::Output) -> O, O> Future for Then<F, G> {
    type Output = O;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<O> {
        let this = self.project();
        let out = std::task::ready!(this.inner.poll(cx));
        let f = this.then.take().expect("`Then` polled after it completed");
        std::task::Poll::Ready(f(out))
    }
}

/// Like [`transact`], also telling how many attempts it took.
pub async fn transact_counted<T, F, Fut>(
    what: impl Into<What>,
    core: &Arc<EndpointCore>,
    options: &CallOptions,
    mut body: F,
) -> Result<(T, Attempts), Error>
where
    F: FnMut(Tx) -> Fut,
    Fut: Future<Output = Flow<T>>,
{
    let what = what.into();
    let _call = core.life.enter()?;
    // The call's span (`waldo.call`): each attempt runs in it; it records how the call ended.
    // Boxed, and only when a subscriber wants it: the call's future stays small.
    let span = crate::exec::observe::spans()
        .then(|| {
            tracing::debug_span!(
                "waldo.call",
                endpoint = %core.id,
                function = %what,
                attempts = tracing::field::Empty,
                outcome = tracing::field::Empty,
                error = tracing::field::Empty,
            )
        })
        .filter(|span| !span.is_disabled())
        .map(Box::new);
    let priority = core.clock.next();
    // A deadline too far away to represent is no deadline.
    let deadline = options.deadline.and_then(|d| Instant::now().checked_add(d));
    let mut attempts = 0;
    loop {
        attempts += 1;
        let tx = Tx::begin(&core.clock, priority);
        let work = body(tx.clone());
        let prepared = &tx;
        // The body, then the partners' votes: both can be wounded, both count for the deadline.
        let work = async move {
            let value = work.await?;
            prepared.prepare_links().await?;
            Ok(value)
        };
        // Built in place, with the call's span (a move of an attempt copies its whole future).
        let attempt = Attempt { what, core, tx: &tx, span: span.as_deref(), inner: work };
        let outcome = match deadline {
            // Boxed: a timer is large, and most calls have no deadline.
            Some(d) => match Box::pin(tokio::time::timeout_at(d, attempt)).await {
                Ok(outcome) => outcome,
                Err(_) => Err(Raise::Abort(Abort::Deadline)),
            },
            None => attempt.await,
        };
        match outcome {
            Ok(value) => {
                if let Ok(committed) = tx.commit() {
                    COMMITTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    core.stats.committed();
                    // The call returns once its effects have run.
                    committed.delivered().await;
                    return finished(core, span.as_deref(), Ok(value), attempts);
                }
                ABORTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                core.stats.conflict();
            }
            Err(Raise::Exception(e)) => {
                let e = tx.locate(e);
                tx.abort();
                return finished(core, span.as_deref(), Err((*e).into()), attempts);
            }
            Err(Raise::Abort(Abort::Deadline)) => {
                tx.abort();
                return finished(core, span.as_deref(), Err(Error::Timeout), attempts);
            }
            // A restartable block's wait never leaves its runner; were it to, undoing and
            // running the attempt again is always safe.
            Err(Raise::Abort(Abort::Wounded | Abort::Blocked)) => {
                ABORTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                core.stats.conflict();
                tx.abort();
            }
        }
        if attempts >= options.max_attempts {
            return finished(
                core,
                span.as_deref(),
                Err(Error::ConflictRetriesExhausted { attempts }),
                attempts,
            );
        }
        if attempts <= options.immediate_retries {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return finished(core, span.as_deref(), Err(Error::Timeout), attempts);
            }
            core.stats.retry();
            // Let the transaction that wounded this one run first.
            tokio::task::yield_now().await;
            continue;
        }
        let backoffs = attempts - options.immediate_retries;
        let bound = options.backoff_base.saturating_mul(1 << (backoffs - 1).min(16)).min(options.backoff_cap);
        let pause = bound.mul_f64(core.clock.unit());
        if let Some(d) = deadline
            && Instant::now().checked_add(pause).is_none_or(|resume| resume >= d)
        {
            return finished(core, span.as_deref(), Err(Error::Timeout), attempts);
        }
        core.stats.retry();
        tokio::time::sleep(pause).await;
    }
}

/// Runs `future`, code of transaction `tx` on endpoint `core`, as [`Attempt`] does.
pub(crate) fn guarded<'a, T, F: Future<Output = Flow<T>>>(
    what: impl Into<What>,
    core: &'a Arc<EndpointCore>,
    tx: &'a Tx,
    future: F,
) -> Attempt<'a, F> {
    Attempt { what: what.into(), core, tx, span: None, inner: future }
}

pin_project_lite::pin_project! {
    /// One attempt of a host call (or one block run for a partner). Each poll: publishes the
    /// task's waker to the transaction (so a wound wakes it whatever it waits for) and stops
    /// if it was wounded; holds the endpoint's gate (one logical task per endpoint); and runs
    /// under the watchdog's eye. It borrows what its runner holds: the endpoint, the
    /// transaction (no handle to clone and drop, which costs atomic operations) and the span.
    pub(crate) struct Attempt<'a, F> {
        what: What,
        core: &'a Arc<EndpointCore>,
        tx: &'a Tx,
        span: Option<&'a tracing::Span>,
        #[pin]
        inner: F,
    }
}

/// A host call ended with `result` after `attempts`: counted, and recorded in its span.
fn finished<T>(
    core: &EndpointCore,
    span: Option<&tracing::Span>,
    result: Result<T, Error>,
    attempts: u32,
) -> Result<(T, Attempts), Error> {
    if let Err(error) = &result {
        core.stats.aborted(error);
    }
    if let Some(span) = span {
        span.record("attempts", attempts);
        span.record("outcome", crate::exec::observe::outcome(result.as_ref().err()));
        if let Err(error) = &result {
            span.record("error", tracing::field::display(error));
        }
    }
    result.map(|value| (value, Attempts { attempts }))
}

impl<T, F: Future<Output = Flow<T>>> Future for Attempt<'_, F> {
    type Output = Flow<T>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Flow<T>> {
        let this = self.project();
        let _entered = this.span.as_ref().map(|span| span.enter());
        this.tx.wake_on_wound(cx.waker());
        if this.tx.is_wounded() {
            return std::task::Poll::Ready(Err(Raise::Abort(Abort::Wounded)));
        }
        let Some(_leave) = this.core.gate.enter(cx, this.tx.addr()) else {
            return std::task::Poll::Pending;
        };
        let inner = this.inner;
        if this.core.clock.is_deterministic() {
            // A simulated host: no watchdog thread, no real time.
            return inner.poll(cx);
        }
        crate::exec::watchdog::during(*this.what, || inner.poll(cx))
    }
}
