//! Transactions: isolation, nested undo, commit and abort.
//!
//! A transaction ([`Tx`]) is one host call (or `onCreate`) and everything it does, on every
//! endpoint of the host it reaches. Its rules:
//!
//! - **Strict two-phase locking.** Every read or write of a variable slot, heap object or
//!   External cell first takes that item's lock (shared to read, exclusive to write) and keeps
//!   it until the transaction ends. Writes happen in place; the first write of each piece is
//!   recorded in an undo log.
//! - **Wound-wait.** Each transaction has a priority fixed at its first attempt (older is
//!   higher) and kept across retries. On a conflict, an older requester *wounds* younger
//!   holders that have not begun to commit (they abort at their next step and release), and
//!   waits; a younger requester just waits. Waits-for edges always point from younger to
//!   older, so there is no deadlock; a retried transaction keeps its priority, so it
//!   eventually is the oldest and cannot starve.
//! - **Savepoints.** A `try` body records the length of the undo log; if it raises, the log
//!   is replayed back to that point on every endpoint it touched, and the transaction goes on.
//! - **Commit** marks the transaction committing (after which it cannot be wounded), queues its
//!   effects for delivery in commit order, and releases its locks; **abort** replays the
//!   whole undo log, drops its effects and releases its locks. A transaction dropped without
//!   committing aborts, so a cancelled or timed-out call leaves no trace.

mod copy;
mod external;
mod objects;
mod slots;
mod undo;

use std::collections::HashMap;
use std::future::{Future, poll_fn};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};

use parking_lot::Mutex;
use smallvec::SmallVec;

use crate::core::effects::{self, Effect, Issued};
use crate::core::endpoint::EndpointCore;
use crate::core::error::{Abort, Exception, Flow};
use crate::core::lock::{Grant, Holder, LockState, Mode};
use crate::core::value::{ExtCell, Key, Obj, ObjData, Value};
pub use waldo_engine::{Priority, TxId};

const ACTIVE: u8 = 0;
const WOUNDED: u8 = 1;
const COMMITTING: u8 = 2;
const FINISHED: u8 = 3;
/// A participant that answered its parent and waits for more work or the decision: it
/// cannot abort on its own (the root may already be committing), so a wound asks the root.
const PREPARED: u8 = 4;
/// Undoing its writes and releasing its locks.
const ABORTING: u8 = 5;

/// A host's clock: the priorities of its transactions (a Lamport counter, advanced past
/// every priority seen from a partner, so that transactions started later here are younger
/// than every one already met), the ids of their attempts, and the host's randomness
/// (retry jitter, handshake nonces). Each clock has its own origin, the tie-break of its
/// priorities and the first half of its attempt ids, so two clocks never hand out the same.
///
/// The endpoints of one host share a clock ([`Clock::current`]: the process's, or a scope's),
/// so that on a host a transaction begun later is always younger, whichever endpoint begins
/// it. A [seeded](Clock::seeded) clock makes its host deterministic: its origin and its random
/// numbers come from the seed, and its code runs without the watchdog thread (a simulated
/// host).
#[derive(Debug)]
pub struct Clock {
    now: AtomicU64,
    origin: u64,
    attempts: AtomicU64,
    /// The seeded generator of a deterministic clock (`None`: the thread's).
    rng: Option<Mutex<rand::rngs::SmallRng>>,
}

impl Default for Clock {
    fn default() -> Self {
        Clock::with_origin(rand::random())
    }
}

tokio::task_local! {
    /// The clock of the host whose code runs in this task, when it is not the process's
    /// (see [`Clock::scope`]).
    static CONTEXT: Arc<Clock>;
}

impl Clock {
    /// The clock of this process's endpoints (their host), for code outside any
    /// [`Clock::scope`].
    pub fn host() -> Arc<Clock> {
        static HOST: std::sync::LazyLock<Arc<Clock>> = std::sync::LazyLock::new(Default::default);
        HOST.clone()
    }

    /// The clock of the host the calling task runs as: its scope's, or the process's.
    pub fn current() -> Arc<Clock> {
        CONTEXT.try_with(Arc::clone).unwrap_or_else(|_| Clock::host())
    }

    /// Runs `f` as code of a host of its own whose clock is `clock`: the endpoints created
    /// inside share it, and share no clock with endpoints created elsewhere (several
    /// simulated hosts in one process).
    pub async fn scope<F: Future>(clock: Arc<Clock>, f: F) -> F::Output {
        CONTEXT.scope(clock, f).await
    }

    /// A clock whose priorities carry `origin` as their tie-break (random numbers from the
    /// thread's generator).
    pub fn with_origin(origin: u64) -> Clock {
        Clock { now: AtomicU64::new(1), origin, attempts: AtomicU64::new(1), rng: None }
    }

    /// A deterministic clock: its origin and every random number it gives come from `seed`,
    /// and code of its endpoints runs without the watchdog thread.
    pub fn seeded(seed: u64) -> Clock {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
        Clock {
            now: AtomicU64::new(1),
            origin: rng.random(),
            attempts: AtomicU64::new(1),
            rng: Some(Mutex::new(rng)),
        }
    }

    /// Whether this clock is [seeded](Clock::seeded).
    pub fn is_deterministic(&self) -> bool {
        self.rng.is_some()
    }

    /// A priority younger than every one this clock handed out or saw before.
    pub fn next(&self) -> Priority {
        Priority::from_parts(self.now.fetch_add(1, Ordering::Relaxed), self.origin)
    }

    /// Notes a priority seen elsewhere: later priorities of this clock will be younger.
    pub fn observe(&self, seen: Priority) {
        self.now.fetch_max(seen.parts().0.saturating_add(1), Ordering::Relaxed);
    }

    /// A random 64-bit number from this host's randomness (the thread's generator unless
    /// the clock is seeded).
    pub fn random(&self) -> u64 {
        match &self.rng {
            Some(rng) => rand::Rng::random(&mut *rng.lock()),
            None => rand::random(),
        }
    }

    /// A random number in `[0, 1)` from this host's randomness (the thread's generator
    /// unless the clock is seeded).
    pub fn unit(&self) -> f64 {
        match &self.rng {
            Some(rng) => rand::Rng::random(&mut *rng.lock()),
            None => rand::random(),
        }
    }

    /// A new attempt's identity: this clock's origin and its next number.
    fn fresh_id(&self) -> TxId {
        TxId { origin: self.origin, n: self.attempts.fetch_add(1, Ordering::Relaxed) }
    }
}

/// Where a transaction spread over a connection, as the transaction sees it: the side that
/// sent the first message of the transaction over a link is that link's parent, and drives
/// its prepare, commit, abort and savepoint rollback.
pub(crate) trait TxLink: Send + Sync {
    /// Whether the other side already holds all of this transaction's changes and voted to
    /// commit (so [`TxLink::prepare`] would have nothing to do).
    fn prepared(&self, tx: &Tx) -> bool;
    /// Makes sure the other side holds this transaction's changes and voted to commit.
    fn prepare<'a>(&'a self, tx: &'a Tx) -> std::pin::Pin<Box<dyn Future<Output = Flow<()>> + Send + 'a>>;
    /// The decision: tells the other side to commit or abort.
    fn finish(&self, tx: TxId, committed: bool);
    /// Undoes on the other side everything done after this side's `mark`-th message.
    fn rollback(&self, tx: TxId, mark: u64);
    /// Identity, so that a transaction registers each link once.
    fn same(&self, other: &dyn TxLink) -> bool;
    /// The transaction wrote the link's peered data: it joins the link as its parent,
    /// unless it is already known there.
    fn enlist(&self, tx: &Tx);
    /// A transaction that is a prepared child on this link was wounded: ask its parent.
    fn wound_requested(&self, tx: TxId);
    /// Whether the connection is closed (lost, stopped or broken).
    fn closed(&self) -> bool;
    /// Whether root `tx` may take the locks of the link's peered data now (the admission
    /// token: see `Engine::admit`; `holds`: it holds locks, here or through partners); if
    /// not, `cx` is woken when it should ask again.
    fn poll_admit(&self, tx: &Tx, holds: bool, cx: &mut Context<'_>) -> Poll<()> {
        let _ = (tx, holds, cx);
        Poll::Ready(())
    }
}

/// The mark of an object that belongs to a peered variable: writes through any reference to
/// it make that variable dirty (to be sent to the other replica).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PeeredTag {
    pub(crate) core: u64,
    pub(crate) slot: u32,
    /// Set when the other endpoint `controls` the variable: this one may not change it.
    pub(crate) foreign: Option<Foreign>,
}

/// A peered variable that the other endpoint of the pair controls (`B controls T x` seen
/// from A).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Foreign {
    /// The variable's name.
    pub(crate) variable: &'static str,
    /// The endpoint that controls it.
    pub(crate) owner: &'static str,
}

impl Foreign {
    /// The exception of a write to the variable by the other endpoint's code.
    fn refuse<T>(self) -> Flow<T> {
        crate::core::error::app_error(format!(
            "`{}` is controlled by `{}`: only code running on `{}` can change it (through any reference to it)",
            self.variable, self.owner, self.owner
        ))
    }
}

/// What a write changed, to be put back on abort or savepoint rollback.
enum Undo {
    Slot { ep: Arc<EndpointCore>, slot: usize, old: Value },
    ListSet { obj: Obj, index: usize, old: Value },
    ListInserted { obj: Obj, index: usize },
    ListRemoved { obj: Obj, index: usize, old: Value },
    MapSet { obj: Obj, key: Key, old: Option<Value> },
    StructSet { obj: Obj, field: usize, old: Value },
    Ext { cell: ExtCell, old: Option<Value> },
    Contents { obj: Obj, old: ObjData },
}

/// An item whose lock the transaction holds.
enum Held {
    Slot(Arc<EndpointCore>, usize),
    Obj(Obj),
    Ext(ExtCell),
}

#[derive(Default)]
/// (The small vectors keep a typical transaction's log in one allocation.)
struct TxLog {
    undo: SmallVec<[Undo; 4]>,
    held: SmallVec<[Held; 4]>,
    effects: Issued,
    /// Links this transaction spread over, as parent or child.
    links: SmallVec<[LinkReg; 1]>,
    /// Peered variables written here and not yet sent to the other replica.
    dirty: SmallVec<[PeeredTag; 2]>,
    /// Peered variables sent, in order: a savepoint rollback makes those sent after it dirty
    /// again, since the other side undoes what it received.
    shipped: SmallVec<[PeeredTag; 2]>,
    /// Endpoints whose link this transaction has joined for their peered data.
    enlisted: SmallVec<[u64; 1]>,
}

/// A link a transaction is on.
#[derive(Clone)]
struct LinkReg {
    link: Arc<dyn TxLink>,
    /// Whether this side is the transaction's parent there (it then drives prepare and
    /// decision); a child only rolls back through it.
    parent: bool,
    /// Messages this side sent over it in this transaction (kept by the link's engine):
    /// savepoints record it, so that a rollback knows what the other side must undo.
    sent: Arc<AtomicU64>,
    /// The value of `sent` when a rollback last undid everything sent over the link
    /// (`u64::MAX`: never). While `sent` still equals it, the transaction has no work there.
    void_at: u64,
}

/// The lock of an item that transactions take.
pub(crate) type TxLock = LockState<TxInner>;

impl Holder for TxInner {
    type Priority = Priority;

    fn is_live(&self) -> bool {
        TxInner::is_live(self)
    }

    fn priority(&self) -> Priority {
        self.priority
    }
}

/// The shared part of a transaction, referenced by the locks it holds.
pub(crate) struct TxInner {
    id: TxId,
    priority: Priority,
    state: AtomicU8,
    /// The tasks running this transaction's code here (the root's, and blocks run for a
    /// partner): a wound wakes them all.
    wakers: Mutex<SmallVec<[Waker; 1]>>,
    /// How many guarded handles ([`Tx`] clones that abort the attempt when the last one
    /// goes) exist.
    guards: std::sync::atomic::AtomicUsize,
    log: Mutex<TxLog>,
    /// For a child: the link to ask its parent through when wounded while prepared.
    hook: Mutex<Option<std::sync::Weak<dyn TxLink>>>,
    hook_fired: std::sync::atomic::AtomicBool,
    /// Requesters queued behind this transaction's request to write an item
    /// ([`Grant::Behind`]): woken when it finishes.
    behind: Mutex<Vec<Waker>>,
    /// The protocol file and line of the last statement that could raise which ran here
    /// ([`Tx::at`]).
    at: Mutex<(&'static str, u32)>,
    /// The endpoint (its serial; 0 for none) whose link last admitted this transaction to
    /// its peered data ([`TxLink::poll_admit`]): asked once, not at every access.
    pub(super) admitted: AtomicU64,
}

impl TxInner {
    /// Empties a finished transaction's shared part for reuse: everything but its id,
    /// priority, state and guard count (which [`Tx::with_id`] sets) as a new one has it.
    fn clear(&mut self) {
        let TxInner {
            id: _,
            priority: _,
            state: _,
            wakers,
            guards: _,
            log,
            hook,
            hook_fired,
            behind,
            at,
            admitted,
        } = self;
        wakers.get_mut().clear();
        let TxLog { undo, held, effects, links, dirty, shipped, enlisted } = log.get_mut();
        undo.clear();
        held.clear();
        effects.clear();
        links.clear();
        dirty.clear();
        shipped.clear();
        enlisted.clear();
        *hook.get_mut() = None;
        *hook_fired.get_mut() = false;
        behind.get_mut().clear();
        *at.get_mut() = ("", 0);
        *admitted.get_mut() = 0;
    }

    /// Whether the attempt is still running (not committed nor aborted).
    pub(crate) fn is_live(&self) -> bool {
        self.state.load(Ordering::Acquire) != FINISHED
    }

    /// Wakes `waker` when this transaction finishes (at once if it has).
    fn wake_when_finished(&self, waker: &Waker) {
        {
            let mut behind = self.behind.lock();
            if !behind.iter().any(|w| w.will_wake(waker)) {
                behind.push(waker.clone());
            }
        }
        // Finishing stores FINISHED before it takes the list: either it saw this waker, or
        // this look sees FINISHED.
        if !self.is_live() {
            waker.wake_by_ref();
        }
    }

    /// It finished: the readers queued behind it look again.
    fn finished(&self) {
        let behind = std::mem::take(&mut *self.behind.lock());
        for w in behind {
            w.wake();
        }
    }

    /// Wounds the transaction unless it has begun to commit; wakes it so it notices. A
    /// prepared participant asks its root instead (once per prepared period).
    pub(crate) fn wound(&self) {
        match self.state.compare_exchange(ACTIVE, WOUNDED, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => {
                for w in std::mem::take(&mut *self.wakers.lock()) {
                    w.wake();
                }
            }
            Err(PREPARED) => {
                if !self.hook_fired.swap(true, Ordering::AcqRel) {
                    let hook = self.hook.lock().as_ref().and_then(std::sync::Weak::upgrade);
                    if let Some(link) = hook {
                        // The wounder may hold the lock of the item it waits for (an
                        // endpoint's slots, an object); asking the root runs the link's
                        // engine, which may commit a transaction that needs that same lock.
                        // So the request goes from a task of its own.
                        let id = self.id;
                        match tokio::runtime::Handle::try_current() {
                            Ok(runtime) => {
                                runtime.spawn(async move { link.wound_requested(id) });
                            }
                            Err(_) => link.wound_requested(id),
                        }
                    }
                }
            }
            Err(_) => {}
        }
    }
}

/// A mark in the undo log, for a `try` body; also how far each partner had got.
#[derive(Clone, Debug)]
pub struct Savepoint {
    undo: usize,
    effects: usize,
    shipped: usize,
    links: SmallVec<[u64; 2]>,
}

/// A running transaction attempt. Cheap to clone: clones are the same transaction (endpoint
/// calls pass it along). Dropping the last clone without committing aborts it.
pub struct Tx {
    inner: Arc<TxInner>,
    /// Whether this handle is counted in `inner.guards`: the attempt aborts when the last
    /// guarded handle goes. The handles a connection's engine keeps for a transaction it is
    /// parent of are unguarded, so that a host call that is dropped (cancelled, timed out)
    /// still aborts.
    guarded: bool,
}

impl Clone for Tx {
    fn clone(&self) -> Tx {
        if self.guarded {
            self.inner.guards.fetch_add(1, Ordering::Relaxed);
        }
        Tx { inner: self.inner.clone(), guarded: self.guarded }
    }
}

impl Drop for Tx {
    fn drop(&mut self) {
        if self.guarded && self.inner.guards.fetch_sub(1, Ordering::AcqRel) == 1 {
            let state = self.inner.state.load(Ordering::Acquire);
            if state == ACTIVE || state == WOUNDED || state == PREPARED {
                abort_inner(&self.inner);
            }
        }
        // The last handle of a finished transaction, which no lock refers to any more: its
        // shared part is kept for the next transaction this thread begins.
        // (`strong_count` first: a plain load, where `get_mut` writes.)
        if Arc::strong_count(&self.inner) == 1
            && let Some(inner) = Arc::get_mut(&mut self.inner)
            && *inner.state.get_mut() == FINISHED
        {
            inner.clear();
            let spare = self.inner.clone();
            // (Not while the thread's locals are being destroyed.)
            let _ = SPARE.try_with(|s| s.set(Some(spare)));
        }
    }
}

thread_local! {
    /// The shared part of the last finished transaction dropped on this thread, emptied:
    /// [`Tx::with_id`] reuses it rather than allocating and filling a new one (its log is
    /// large). It is only ever taken when nothing else refers to it, so no lock, waiter
    /// or handle can see it change identity.
    static SPARE: std::cell::Cell<Option<Arc<TxInner>>> = const { std::cell::Cell::new(None) };
}

impl Tx {
    /// Begins an attempt with `priority` (a retry passes its first attempt's priority).
    pub fn begin(clock: &Clock, priority: Priority) -> Tx {
        Self::with_id(clock.fresh_id(), priority)
    }

    /// The local part of a transaction that began on another host.
    pub(crate) fn with_id(id: TxId, priority: Priority) -> Tx {
        if let Some(mut inner) = SPARE.try_with(std::cell::Cell::take).ok().flatten()
            && let Some(fresh) = Arc::get_mut(&mut inner)
        {
            fresh.id = id;
            fresh.priority = priority;
            *fresh.state.get_mut() = ACTIVE;
            *fresh.guards.get_mut() = 1;
            return Tx { inner, guarded: true };
        }
        let inner = Arc::new(TxInner {
            id,
            priority,
            state: AtomicU8::new(ACTIVE),
            wakers: Mutex::new(SmallVec::new()),
            guards: std::sync::atomic::AtomicUsize::new(1),
            log: Mutex::new(TxLog::default()),
            hook: Mutex::new(None),
            hook_fired: std::sync::atomic::AtomicBool::new(false),
            behind: Mutex::new(Vec::new()),
            at: Mutex::new(("", 0)),
            admitted: AtomicU64::new(0),
        });
        Tx { inner, guarded: true }
    }

    /// Notes that the statement about to run, which may raise an `ApplicationException`, is
    /// at `line` of protocol file `file` (generated code, before each such statement).
    pub fn at(&self, file: &'static str, line: u32) {
        *self.inner.at.lock() = (file, line);
    }

    /// [`Tx::at`] as a condition that holds: generated code notes the place of a `while`'s or
    /// an `elseIf`'s test with it (`tx.noted(CODE.file, 12) && test`), since the test runs
    /// after other statements noted theirs.
    pub fn noted(&self, file: &'static str, line: u32) -> bool {
        self.at(file, line);
        true
    }

    /// The place last noted ([`Tx::at`]), to put back with [`Tx::back`].
    pub fn mark(&self) -> (&'static str, u32) {
        *self.inner.at.lock()
    }

    /// `result`, a call made within a statement that noted its place as `mark`: when the
    /// call returns, the place is the statement's again (the callee noted its own), so that
    /// what the statement raises after the call names the statement. When the call raised,
    /// the callee's place stays: it is where the exception came from.
    pub fn back<T>(&self, mark: (&'static str, u32), result: Flow<T>) -> Flow<T> {
        if result.is_ok() {
            *self.inner.at.lock() = mark;
        }
        result
    }

    /// `e` with the place of the last statement noted by [`Tx::at`], if it is an
    /// application exception that has none yet: where it was raised, since the code stops
    /// at the statement that raises.
    pub(crate) fn locate<E: std::ops::DerefMut<Target = Exception>>(&self, mut e: E) -> E {
        let (file, line) = *self.inner.at.lock();
        if e.kind == crate::core::error::ExceptionKind::Application && e.at.is_empty() && line > 0 {
            e.at = if file.is_empty() { format!("line {line}") } else { format!("{file}:{line}") };
        }
        e
    }

    /// The attempt's identity.
    pub fn id(&self) -> TxId {
        self.inner.id
    }

    /// A handle that does not keep the attempt from aborting when the others are dropped.
    pub(crate) fn unguarded(&self) -> Tx {
        Tx { inner: self.inner.clone(), guarded: false }
    }

    /// Whether this participant voted and waits for the decision.
    pub(crate) fn is_prepared(&self) -> bool {
        self.inner.state.load(Ordering::Acquire) == PREPARED
    }

    /// Wounds this transaction (as an older one would).
    pub(crate) fn wound(&self) {
        self.inner.wound();
    }

    /// Wounds this transaction even if it is prepared (its parent decided to abort it).
    pub(crate) fn force_wound(&self) {
        let _ = self.inner.state.compare_exchange(PREPARED, ACTIVE, Ordering::AcqRel, Ordering::Acquire);
        self.inner.wound();
    }

    /// Sets what a wound does while this participant is prepared.
    pub(crate) fn set_wound_hook(&self, link: std::sync::Weak<dyn TxLink>) {
        *self.inner.hook.lock() = Some(link);
    }

    /// Marks a participant prepared (it voted). False if it was wounded first: it may then
    /// still abort on its own.
    pub(crate) fn try_prepare(&self) -> bool {
        self.inner.hook_fired.store(false, Ordering::Release);
        self.inner.state.compare_exchange(ACTIVE, PREPARED, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    /// A prepared participant gets more work: it is active again.
    pub(crate) fn resume(&self) {
        let _ = self.inner.state.compare_exchange(PREPARED, ACTIVE, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Registers `link` (once), as parent or child there, with its count of messages sent.
    pub(crate) fn add_link(&self, link: Arc<dyn TxLink>, parent: bool, sent: Arc<AtomicU64>) {
        let mut log = self.inner.log.lock();
        if !log.links.iter().any(|l| l.link.same(&*link)) {
            log.links.push(LinkReg { link, parent, sent, void_at: u64::MAX });
        }
    }

    /// Takes the peered variables of endpoint `core` written and not yet sent.
    pub(crate) fn take_dirty(&self, core: u64) -> Vec<u32> {
        let mut log = self.inner.log.lock();
        let mut out = Vec::new();
        let mut shipped = Vec::new();
        log.dirty.retain(|t| {
            if t.core == core {
                out.push(t.slot);
                shipped.push(*t);
                false
            } else {
                true
            }
        });
        log.shipped.extend(shipped);
        out
    }

    /// Whether peered variables of endpoint `core` were written and not yet sent.
    pub(crate) fn has_dirty(&self, core: u64) -> bool {
        self.inner.log.lock().dirty.iter().any(|t| t.core == core)
    }

    fn mark_dirty(&self, tags: &[PeeredTag]) {
        if tags.is_empty() {
            return;
        }
        let mut fresh: SmallVec<[Arc<dyn TxLink>; 1]> = SmallVec::new();
        {
            let mut log = self.inner.log.lock();
            let log = &mut *log;
            for t in tags {
                if !log.dirty.contains(t) {
                    log.dirty.push(*t);
                    if !log.enlisted.contains(&t.core) {
                        log.enlisted.push(t.core);
                        // Objects never cross endpoints (boundaries copy), so the
                        // transaction reached this peered data by reading a slot of its
                        // endpoint, whose lock it holds: that is where the link is found.
                        let ep = log.held.iter().find_map(|h| match h {
                            Held::Slot(ep, _) if ep.serial == t.core => Some(ep),
                            _ => None,
                        });
                        if ep.is_none() {
                            debug_assert!(false, "peered data reached without a slot of its endpoint");
                            tracing::error!(
                                endpoint = t.core,
                                "a write to peered data that reached no slot of its endpoint: it is not replicated"
                            );
                        }
                        fresh.extend(ep.and_then(|ep| ep.link.get()).and_then(std::sync::Weak::upgrade));
                    }
                }
            }
        }
        for link in fresh {
            link.enlist(self);
        }
    }

    /// Makes sure every link this transaction is the parent on holds its changes and voted.
    pub(crate) async fn prepare_links(&self) -> Flow<()> {
        let mut done = 0;
        loop {
            // A prepare may add links (it never does today, but stay correct if it did).
            let link = {
                let log = self.inner.log.lock();
                match log.links.get(done) {
                    Some(l) => l.clone(),
                    None => return Ok(()),
                }
            };
            // A partner that is gone needs no vote when everything this transaction did there
            // was undone (a `try` caught the NetworkException, say).
            let void = link.void_at == link.sent.load(Ordering::Acquire);
            if link.parent && !(void && link.link.closed()) && !link.link.prepared(self) {
                link.link.prepare(self).await?;
            }
            done += 1;
        }
    }

    /// The transaction's priority.
    pub fn priority(&self) -> Priority {
        self.inner.priority
    }

    /// An identity of this attempt, for the gate's re-entrancy.
    pub(crate) fn addr(&self) -> usize {
        Arc::as_ptr(&self.inner) as *const () as usize
    }

    /// Makes a wound wake `waker` (the task running the attempt), whatever it is waiting for.
    pub(crate) fn wake_on_wound(&self, waker: &Waker) {
        if waker.will_wake(Waker::noop()) {
            return; // a job's first, inline poll: its task will poll again
        }
        let mut wakers = self.inner.wakers.lock();
        if !wakers.iter().any(|w| w.will_wake(waker)) {
            wakers.push(waker.clone());
        }
    }

    /// The transaction's state, for diagnostics.
    pub fn state_name(&self) -> &'static str {
        match self.inner.state.load(Ordering::Acquire) {
            ACTIVE => "active",
            WOUNDED => "wounded",
            COMMITTING => "committing",
            FINISHED => "finished",
            PREPARED => "prepared",
            _ => "aborting",
        }
    }

    /// Fails with `Abort::Wounded` if an older transaction wounded this one.
    pub fn check(&self) -> Result<(), Abort> {
        match self.inner.state.load(Ordering::Acquire) {
            ACTIVE | COMMITTING => Ok(()),
            _ => Err(Abort::Wounded),
        }
    }

    /// Whether anything may wait for this transaction: it holds locks here, or may hold
    /// some elsewhere (through a partner it sent work to, or, as a partner's child, through
    /// its parent), or it joined a connection (it may be admitted to that connection's
    /// peered data, which the other side's roots wait for).
    pub(crate) fn holds_locks(&self) -> bool {
        let log = self.inner.log.lock();
        !log.held.is_empty() || !log.links.is_empty()
    }

    /// Whether the attempt runs: not wounded, committing, aborting or ended.
    pub(crate) fn is_running(&self) -> bool {
        self.inner.state.load(Ordering::Acquire) == ACTIVE
    }

    /// Whether it is being aborted or has ended (it no longer looks at its links).
    pub(crate) fn is_ending(&self) -> bool {
        matches!(self.inner.state.load(Ordering::Acquire), ABORTING | FINISHED)
    }

    /// Whether an older transaction wounded this one.
    pub fn is_wounded(&self) -> bool {
        self.inner.state.load(Ordering::Acquire) == WOUNDED
    }

    /// One step of acquiring `lock` (which the caller has locked): grants, or wounds younger
    /// holders and parks the task until the next release.
    fn poll_grant(&self, cx: &mut Context<'_>, lock: &mut TxLock, mode: Mode) -> Poll<Result<bool, Abort>> {
        if let Err(abort) = self.check() {
            return Poll::Ready(Err(abort));
        }
        match lock.try_acquire(&self.inner, mode) {
            Grant::Granted(new) => Poll::Ready(Ok(new)),
            Grant::Behind(writer) => {
                lock.wait(cx.waker());
                writer.wake_when_finished(cx.waker());
                self.wake_on_wound(cx.waker());
                if let Err(abort) = self.check() {
                    return Poll::Ready(Err(abort));
                }
                Poll::Pending
            }
            Grant::Conflict(holders) => {
                for holder in holders {
                    if self.inner.priority < holder.priority {
                        holder.wound();
                    }
                }
                lock.wait(cx.waker());
                // Publish the waker, then look again: a wound that raced with this request
                // either sees the waker (and wakes us) or happened before the second look.
                self.wake_on_wound(cx.waker());
                if let Err(abort) = self.check() {
                    return Poll::Ready(Err(abort));
                }
                Poll::Pending
            }
        }
    }

    fn hold(&self, item: Held) {
        self.inner.log.lock().held.push(item);
    }

    fn log_undo(&self, undo: Undo) {
        self.inner.log.lock().undo.push(undo);
    }

    /// Commits: from here the transaction can no longer be wounded; its effects take their
    /// places in commit order, its locks are released, the partners it is the parent of are
    /// told, and the effects that can run now run ([`Committed::delivered`] waits for the
    /// rest). Fails with `Abort::Wounded` if it was wounded first (it is then aborted).
    pub fn commit(self) -> Result<Committed, Abort> {
        if self.inner.state.compare_exchange(ACTIVE, COMMITTING, Ordering::AcqRel, Ordering::Acquire).is_err()
        {
            abort_inner(&self.inner);
            return Err(Abort::Wounded);
        }
        Ok(commit_inner(&self.inner))
    }

    /// Commits a participant whose parent decided to commit: it voted, so a wound that came
    /// after its vote does not stop it.
    pub(crate) fn commit_decided(&self) {
        if self
            .inner
            .state
            .compare_exchange(PREPARED, COMMITTING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            // Nobody waits for a participant's effects: they run when they can.
            drop(commit_inner(&self.inner));
        }
    }

    /// Aborts: undoes everything, drops effects, releases locks, tells the partners.
    pub fn abort(self) {
        abort_inner(&self.inner);
    }

    /// Aborts through a shared handle.
    pub(crate) fn abort_shared(&self) {
        abort_inner(&self.inner);
    }
}

fn commit_inner(inner: &Arc<TxInner>) -> Committed {
    // Only what commit uses moves out of the log (it is large); the undo entries are
    // dropped in place.
    let (effects, held, links) = {
        let mut log = inner.log.lock();
        log.undo.clear();
        log.dirty.clear();
        log.shipped.clear();
        log.enlisted.clear();
        (std::mem::take(&mut log.effects), std::mem::take(&mut log.held), std::mem::take(&mut log.links))
    };
    // Take the places in each endpoint's commit order while still holding the locks.
    let places = effects::reserve(effects);
    release(inner, held);
    inner.state.store(FINISHED, Ordering::Release);
    inner.finished();
    let filled = places.map(effects::Reserved::fill);
    // The partners first (they hold locks until they hear), then the effects that can run.
    for reg in links.iter().filter(|l| l.parent) {
        reg.link.finish(inner.id, true);
    }
    if let Some(filled) = &filled {
        filled.pump();
    }
    Committed(filled)
}

/// A committed transaction whose effects may still be running (on this thread or another:
/// see the effects module).
pub struct Committed(Option<effects::Filled>);

impl Committed {
    /// Waits until the transaction's effects on this host have run.
    pub async fn delivered(self) {
        if let Some(filled) = self.0 {
            filled.delivered().await;
        }
    }
}

fn abort_inner(inner: &Arc<TxInner>) {
    // ABORTING until the undo is replayed and the locks released: the transaction still
    // holds its items (nobody may read what it wrote) but can no longer take new ones.
    let mut state = inner.state.load(Ordering::Acquire);
    loop {
        if state == FINISHED || state == ABORTING {
            return;
        }
        match inner.state.compare_exchange(state, ABORTING, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => break,
            Err(now) => state = now,
        }
    }
    let log = std::mem::take(&mut *inner.log.lock());
    replay(log.undo);
    release(inner, log.held);
    inner.state.store(FINISHED, Ordering::Release);
    inner.finished();
    for reg in log.links.iter().filter(|l| l.parent) {
        reg.link.finish(inner.id, false);
    }
}

/// Puts back the writes of `undo`, newest first.
fn replay(undo: SmallVec<[Undo; 4]>) {
    for entry in undo.into_iter().rev() {
        match entry {
            Undo::Slot { ep, slot, old } => {
                if let Some(s) = ep.slots.lock().get_mut(slot) {
                    s.value = old;
                }
            }
            Undo::ListSet { obj, index, old } => {
                if let ObjData::List(items) = &mut obj.0.lock().data
                    && let Some(slot) = items.get_mut(index)
                {
                    *slot = old;
                }
            }
            Undo::ListInserted { obj, index } => {
                if let ObjData::List(items) = &mut obj.0.lock().data
                    && index < items.len()
                {
                    items.remove(index);
                }
            }
            Undo::ListRemoved { obj, index, old } => {
                if let ObjData::List(items) = &mut obj.0.lock().data {
                    items.insert(index.min(items.len()), old);
                }
            }
            Undo::MapSet { obj, key, old } => {
                if let ObjData::Map(m) = &mut obj.0.lock().data {
                    match old {
                        Some(v) => m.insert(key, v),
                        None => m.remove(&key),
                    };
                }
            }
            Undo::StructSet { obj, field, old } => {
                if let ObjData::Struct(fields) = &mut obj.0.lock().data
                    && let Some(slot) = fields.get_mut(field)
                {
                    *slot = old;
                }
            }
            Undo::Ext { cell, old } => cell.0.lock().pending = old,
            Undo::Contents { obj, old } => obj.0.lock().data = old,
        }
    }
}

/// Releases every lock in `held` and wakes their waiters; a committing transaction also
/// installs its pending External values.
fn release(inner: &Arc<TxInner>, held: SmallVec<[Held; 4]>) {
    // Install every External value first, so the host never sees one of this transaction's
    // cells updated and another not.
    if inner.state.load(Ordering::Acquire) == COMMITTING {
        for item in &held {
            if let Held::Ext(cell) = item {
                let mut state = cell.0.lock();
                if state.lock.written_by(inner)
                    && let Some(v) = state.pending.take()
                {
                    state.committed = v;
                }
            }
        }
    }
    let mut wake = Vec::new();
    for item in held {
        match item {
            Held::Slot(ep, slot) => {
                if let Some(s) = ep.slots.lock().get_mut(slot) {
                    wake.extend(s.lock.release(inner));
                }
            }
            Held::Obj(obj) => wake.extend(obj.0.lock().lock.release(inner)),
            Held::Ext(cell) => {
                let mut state = cell.0.lock();
                if state.lock.written_by(inner) {
                    state.pending = None;
                }
                wake.extend(state.lock.release(inner));
            }
        }
    }
    for w in wake {
        w.wake();
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::task::{Context, Poll, Waker};

    use super::{Clock, Tx};
    use crate::core::endpoint::EndpointCore;
    use crate::core::value::Value;
    use crate::core::wakers::Flag;

    fn poll_once<F: Future>(future: &mut std::pin::Pin<Box<F>>, waker: &Waker) -> Poll<F::Output> {
        future.as_mut().poll(&mut Context::from_waker(waker))
    }

    /// A reader queued behind an older transaction waiting to write is woken when that
    /// writer ends without ever holding the item (here it aborts; wounded elsewhere or past
    /// its deadline, the same). Without it, the reader would wait forever.
    #[test]
    fn a_reader_behind_a_writer_that_gives_up_is_woken() {
        let clock = Clock::with_origin(1);
        let ep = EndpointCore::new("E", vec![Value::Number(0.0)]);
        let (holder, writer, reader) = (
            Tx::begin(&clock, clock.next()),
            Tx::begin(&clock, clock.next()),
            Tx::begin(&clock, clock.next()),
        );
        let noop = Waker::noop();
        // The oldest holds the item; the next waits to write it.
        let mut hold = Box::pin(holder.write(&ep, 0, Value::Number(1.0)));
        assert!(matches!(poll_once(&mut hold, noop), Poll::Ready(Ok(()))));
        let mut write = Box::pin(writer.write(&ep, 0, Value::Number(2.0)));
        assert!(poll_once(&mut write, noop).is_pending(), "the writer waits for the holder");
        // The holder commits; before the writer looks again, the youngest asks to read and
        // queues behind the waiting writer.
        drop(hold);
        let _ = holder.commit().map(drop);
        let (flag, woken) = Flag::new();
        let mut read = Box::pin(reader.read(&ep, 0));
        assert!(poll_once(&mut read, &woken).is_pending(), "the reader queues behind the writer");
        assert!(!flag.raised());
        // The writer gives up without ever holding the item: the reader is woken, and reads.
        drop(write);
        writer.abort();
        assert!(flag.raised(), "the reader was woken");
        match poll_once(&mut read, &woken) {
            Poll::Ready(Ok(Value::Number(n))) => assert_eq!(n, 1.0),
            other => panic!("expected the committed value, got {other:?}"),
        }
    }

    /// A finished transaction's shared part is reused by the next one begun on the thread,
    /// empty: its log, its wakers and its place note are gone, and it can be wounded,
    /// written with and committed like a new one. While anything else refers to it (here an
    /// unguarded handle, as a connection's engine keeps), it is not reused.
    #[test]
    fn a_finished_transaction_is_reused_empty_and_only_when_nothing_refers_to_it() {
        let clock = Clock::with_origin(1);
        let ep = EndpointCore::new("E", vec![Value::Number(0.0)]);
        let noop = Waker::noop();
        let first = Tx::begin(&clock, clock.next());
        let addr = first.addr();
        first.at("p.wld", 7);
        first.wake_on_wound(noop);
        let mut write = Box::pin(first.write(&ep, 0, Value::Number(1.0)));
        assert!(matches!(poll_once(&mut write, noop), Poll::Ready(Ok(()))));
        drop(write);
        assert!(first.commit().is_ok());

        let second = Tx::begin(&clock, clock.next());
        assert_eq!(second.addr(), addr, "the finished transaction's part is reused");
        assert_eq!(second.state_name(), Tx::begin(&clock, clock.next()).state_name());
        assert_eq!(*second.inner.at.lock(), ("", 0), "its place note is gone");
        assert!(second.inner.wakers.lock().is_empty(), "its wakers are gone");
        {
            let log = second.inner.log.lock();
            assert!(log.undo.is_empty() && log.held.is_empty() && log.effects.is_empty());
        }
        // It works as a new one: it takes the lock the first released, and its abort puts
        // back its own write only.
        let mut write = Box::pin(second.write(&ep, 0, Value::Number(2.0)));
        assert!(matches!(poll_once(&mut write, noop), Poll::Ready(Ok(()))));
        drop(write);
        let keep = second.unguarded();
        second.abort();
        assert!(keep.inner.log.lock().held.is_empty());
        let third = Tx::begin(&clock, clock.next());
        assert_ne!(third.addr(), addr, "a part something still refers to is not reused");
        let mut read = Box::pin(third.read(&ep, 0));
        match poll_once(&mut read, noop) {
            Poll::Ready(Ok(Value::Number(n))) => assert_eq!(n, 1.0, "the first's commit stays"),
            other => panic!("expected the committed value, got {other:?}"),
        }
    }
}
