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

const ACTIVE: u8 = 0;
const WOUNDED: u8 = 1;
const COMMITTING: u8 = 2;
const FINISHED: u8 = 3;
/// A participant that answered its parent and waits for more work or the decision: it
/// cannot abort on its own (the root may already be committing), so a wound asks the root.
const PREPARED: u8 = 4;
/// Undoing its writes and releasing its locks.
const ABORTING: u8 = 5;

static NEXT_ATTEMPT: AtomicU64 = AtomicU64::new(1);

/// A number that tells this process apart from its peers (in transaction ids).
fn process_tag() -> u64 {
    static TAG: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TAG.get_or_init(rand::random)
}

/// A transaction's priority: smaller is older and wins conflicts. Fixed at the first attempt
/// and kept across retries. Comparable across endpoints and hosts: a Lamport clock, then the
/// origin (the clock that handed it out) as tie-break.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Priority {
    clock: u64,
    origin: u64,
}

impl Priority {
    /// The priority with these parts (from the wire).
    pub fn from_parts(clock: u64, origin: u64) -> Priority {
        Priority { clock, origin }
    }

    /// The parts, for the wire.
    pub fn parts(self) -> (u64, u64) {
        (self.clock, self.origin)
    }
}

/// A priority clock: a Lamport counter, advanced past every priority seen from a partner, so
/// that transactions started later here are younger than every one already met. Each clock
/// has its own random origin, so two clocks never hand out the same priority.
///
/// The endpoints of one host share a clock ([`Clock::host`]), so that on a host a
/// transaction begun later is always younger, whichever endpoint begins it.
#[derive(Debug)]
pub struct Clock {
    now: AtomicU64,
    origin: u64,
}

impl Default for Clock {
    fn default() -> Self {
        Clock::with_origin(rand::random())
    }
}

impl Clock {
    /// The clock of this process's endpoints (their host).
    pub fn host() -> Arc<Clock> {
        static HOST: std::sync::LazyLock<Arc<Clock>> = std::sync::LazyLock::new(Default::default);
        HOST.clone()
    }

    /// A clock whose priorities carry `origin` as their tie-break.
    pub fn with_origin(origin: u64) -> Clock {
        Clock { now: AtomicU64::new(1), origin }
    }

    /// A priority younger than every one this clock handed out or saw before.
    pub fn next(&self) -> Priority {
        Priority { clock: self.now.fetch_add(1, Ordering::Relaxed), origin: self.origin }
    }

    /// Notes a priority seen elsewhere: later priorities of this clock will be younger.
    pub fn observe(&self, seen: Priority) {
        self.now.fetch_max(seen.clock.saturating_add(1), Ordering::Relaxed);
    }
}

/// The identity of one attempt of a transaction, the same on every host it reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxId {
    /// The process that began it.
    pub origin: u64,
    /// Its number there.
    pub n: u64,
}

impl TxId {
    fn fresh() -> TxId {
        TxId { origin: process_tag(), n: NEXT_ATTEMPT.fetch_add(1, Ordering::Relaxed) }
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
}

impl TxInner {
    /// Whether the attempt is still running (not committed nor aborted).
    pub(crate) fn is_live(&self) -> bool {
        self.state.load(Ordering::Acquire) != FINISHED
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
    }
}

impl Tx {
    /// Begins an attempt with `priority` (a retry passes its first attempt's priority).
    pub fn begin(priority: Priority) -> Tx {
        Self::with_id(TxId::fresh(), priority)
    }

    /// The local part of a transaction that began on another host.
    pub(crate) fn with_id(id: TxId, priority: Priority) -> Tx {
        let inner = Arc::new(TxInner {
            id,
            priority,
            state: AtomicU8::new(ACTIVE),
            wakers: Mutex::new(SmallVec::new()),
            guards: std::sync::atomic::AtomicUsize::new(1),
            log: Mutex::new(TxLog::default()),
            hook: Mutex::new(None),
            hook_fired: std::sync::atomic::AtomicBool::new(false),
        });
        Tx { inner, guarded: true }
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
                        debug_assert!(ep.is_some(), "peered data reached without a slot of its endpoint");
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

    // ---------------------------------------------------------------- variable slots

    /// Runs `f` on slot `slot` of `ep` with its lock taken in `mode`.
    async fn with_slot<T>(
        &self,
        ep: &Arc<EndpointCore>,
        slot: usize,
        mode: Mode,
        mut f: impl FnMut(&mut Value) -> T,
    ) -> Flow<T> {
        poll_fn(|cx| -> Poll<Flow<T>> {
            let mut slots = ep.slots.lock();
            let Some(s) = slots.get_mut(slot) else {
                return Poll::Ready(Err(Exception::application(format!(
                    "no variable {slot} on {}",
                    ep.name
                ))
                .into()));
            };
            match self.poll_grant(cx, &mut s.lock, mode) {
                Poll::Ready(Ok(new)) => {
                    let out = f(&mut s.value);
                    drop(slots);
                    if new {
                        self.hold(Held::Slot(ep.clone(), slot));
                    }
                    Poll::Ready(Ok(out))
                }
                Poll::Ready(Err(a)) => Poll::Ready(Err(a.into())),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }

    /// Reads slot `slot` of `ep` (a global or peered variable).
    pub async fn read(&self, ep: &Arc<EndpointCore>, slot: usize) -> Flow<Value> {
        self.with_slot(ep, slot, Mode::Read, |v| v.clone()).await
    }

    /// Writes `value` into slot `slot` of `ep`. A peered variable becomes dirty: the
    /// transaction will send it to the other replica before it commits.
    pub async fn write(&self, ep: &Arc<EndpointCore>, slot: usize, value: Value) -> Flow<()> {
        self.write_slot(ep, slot, value, true).await
    }

    /// Like [`Tx::write`], for the initializers of peered variables, which run on both
    /// replicas whoever controls the variable.
    pub async fn write_initial(&self, ep: &Arc<EndpointCore>, slot: usize, value: Value) -> Flow<()> {
        self.write_slot(ep, slot, value, false).await
    }

    async fn write_slot(
        &self,
        ep: &Arc<EndpointCore>,
        slot: usize,
        value: Value,
        controls: bool,
    ) -> Flow<()> {
        let (peered, foreign) = ep.slots.lock().get(slot).map_or((false, None), |s| (s.peered, s.foreign));
        if let Some(f) = foreign.filter(|_| controls) {
            return f.refuse();
        }
        let new = value.clone();
        let mut value = Some(value);
        let old = self
            .with_slot(ep, slot, Mode::Write, |v| {
                std::mem::replace(v, value.take().unwrap_or(Value::Nothing))
            })
            .await?;
        self.log_undo(Undo::Slot { ep: ep.clone(), slot, old });
        if peered {
            let tag = PeeredTag { core: ep.serial, slot: slot as u32, foreign };
            crate::core::value::tag_value(&new, &[tag]);
            self.mark_dirty(&[tag]);
        }
        Ok(())
    }

    /// Installs a peered value received from the other replica: locks the variable for
    /// writing and replaces its contents in place (references to the old container keep
    /// seeing the variable), recording the undo. It does not make the variable dirty.
    pub(crate) async fn apply_peered(&self, ep: &Arc<EndpointCore>, slot: usize, value: Value) -> Flow<()> {
        let foreign = ep.slots.lock().get(slot).and_then(|s| s.foreign);
        let tag = PeeredTag { core: ep.serial, slot: slot as u32, foreign };
        let current = self.with_slot(ep, slot, Mode::Write, |v| v.clone()).await?;
        let same_kind = matches!(
            (&current, &value),
            (Value::List(_), Value::List(_))
                | (Value::Map(_), Value::Map(_))
                | (Value::Struct(_), Value::Struct(_))
        );
        if same_kind
            && let (
                Value::List(o) | Value::Map(o) | Value::Struct(o),
                Value::List(n) | Value::Map(n) | Value::Struct(n),
            ) = (&current, &value)
        {
            let fresh = n.snapshot();
            // Lock the container itself: readers that hold a reference to it must not see
            // the change before this transaction ends.
            let old = self.with_obj_untracked(o, |d| std::mem::replace(d, fresh.clone())).await?;
            self.log_undo(Undo::Contents { obj: o.clone(), old });
            // The objects inside are the received ones (shared with `value`): mark them.
            crate::core::value::tag_value(&value, &[tag]);
        } else {
            crate::core::value::tag_value(&value, &[tag]);
            let mut value = Some(value);
            let old = self
                .with_slot(ep, slot, Mode::Write, |v| {
                    std::mem::replace(v, value.take().unwrap_or(Value::Nothing))
                })
                .await?;
            self.log_undo(Undo::Slot { ep: ep.clone(), slot, old });
        }
        Ok(())
    }

    /// The value of slot `slot` of `ep`, which this transaction holds at least for reading
    /// (it wrote the variable or something inside it): read without asking for the lock.
    pub(crate) fn held_value(&self, ep: &EndpointCore, slot: usize) -> Value {
        ep.slots.lock().get(slot).map(|s| s.value.clone()).unwrap_or(Value::Nothing)
    }

    // ---------------------------------------------------------------- heap objects

    /// Write-locks `obj` and runs `f` on its contents without marking anything dirty.
    async fn with_obj_untracked<T>(&self, obj: &Obj, mut f: impl FnMut(&mut ObjData) -> T) -> Flow<T> {
        poll_fn(|cx| {
            let mut inner = obj.0.lock();
            match self.poll_grant(cx, &mut inner.lock, Mode::Write) {
                Poll::Ready(Ok(new)) => {
                    let out = f(&mut inner.data);
                    drop(inner);
                    if new {
                        self.hold(Held::Obj(obj.clone()));
                    }
                    Poll::Ready(Ok(out))
                }
                Poll::Ready(Err(a)) => Poll::Ready(Err(a.into())),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }

    /// Marks what was just stored into `container` as part of the same peered variables.
    fn tag_like(&self, container: &Obj, stored: &Value) {
        if matches!(stored, Value::List(_) | Value::Map(_) | Value::Struct(_)) {
            let tags = container.0.lock().peered.clone();
            crate::core::value::tag_value(stored, &tags);
        }
    }

    /// Runs `f` on the contents of `obj` with the lock taken in `mode`.
    async fn with_obj<T>(
        &self,
        obj: &Obj,
        mode: Mode,
        mut f: impl FnMut(&mut ObjData) -> Flow<T>,
    ) -> Flow<T> {
        poll_fn(|cx| {
            let mut inner = obj.0.lock();
            match self.poll_grant(cx, &mut inner.lock, mode) {
                Poll::Ready(Ok(new)) => {
                    let tags = if mode == Mode::Write { inner.peered.clone() } else { Vec::new() };
                    // A container of a peered variable the other endpoint controls, reached
                    // through an alias or an argument: refused before anything changes.
                    let done = match tags.iter().find_map(|t| t.foreign) {
                        Some(foreign) => Err(foreign),
                        None => Ok(f(&mut inner.data)),
                    };
                    drop(inner);
                    if new {
                        self.hold(Held::Obj(obj.clone()));
                    }
                    match done {
                        Ok(out) => {
                            self.mark_dirty(&tags);
                            Poll::Ready(out)
                        }
                        Err(foreign) => Poll::Ready(foreign.refuse()),
                    }
                }
                Poll::Ready(Err(a)) => Poll::Ready(Err(a.into())),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }

    /// The number of elements of a List or entries of a Map.
    pub async fn len(&self, obj: &Obj) -> Flow<usize> {
        self.with_obj(obj, Mode::Read, |d| {
            Ok(match d {
                ObjData::List(items) => items.len(),
                ObjData::Map(m) => m.len(),
                ObjData::Struct(f) => f.len(),
            })
        })
        .await
    }

    /// `list[index]`.
    pub async fn list_get(&self, obj: &Obj, index: f64) -> Flow<Value> {
        self.with_obj(obj, Mode::Read, |d| {
            let items = list(d)?;
            let i = list_index(index, items.len(), false)?;
            Ok(items[i].clone())
        })
        .await
    }

    /// `list[index] = value`.
    pub async fn list_set(&self, obj: &Obj, index: f64, value: Value) -> Flow<()> {
        let stored = value.clone();
        let mut value = Some(value);
        let old = self
            .with_obj(obj, Mode::Write, |d| {
                let items = list(d)?;
                let i = list_index(index, items.len(), false)?;
                Ok((i, std::mem::replace(&mut items[i], value.take().unwrap_or(Value::Nothing))))
            })
            .await?;
        self.log_undo(Undo::ListSet { obj: obj.clone(), index: old.0, old: old.1 });
        self.tag_like(obj, &stored);
        Ok(())
    }

    /// `list.append(value)`.
    pub async fn list_append(&self, obj: &Obj, value: Value) -> Flow<()> {
        let stored = value.clone();
        let mut value = Some(value);
        let index = self
            .with_obj(obj, Mode::Write, |d| {
                let items = list(d)?;
                items.push(value.take().unwrap_or(Value::Nothing));
                Ok(items.len() - 1)
            })
            .await?;
        self.log_undo(Undo::ListInserted { obj: obj.clone(), index });
        self.tag_like(obj, &stored);
        Ok(())
    }

    /// `list.insert(index, value)` (index may equal the length: append).
    pub async fn list_insert(&self, obj: &Obj, index: f64, value: Value) -> Flow<()> {
        let stored = value.clone();
        let mut value = Some(value);
        let index = self
            .with_obj(obj, Mode::Write, |d| {
                let items = list(d)?;
                let i = list_index(index, items.len(), true)?;
                items.insert(i, value.take().unwrap_or(Value::Nothing));
                Ok(i)
            })
            .await?;
        self.log_undo(Undo::ListInserted { obj: obj.clone(), index });
        self.tag_like(obj, &stored);
        Ok(())
    }

    /// `list.remove(index)`.
    pub async fn list_remove(&self, obj: &Obj, index: f64) -> Flow<()> {
        let (index, old) = self
            .with_obj(obj, Mode::Write, |d| {
                let items = list(d)?;
                let i = list_index(index, items.len(), false)?;
                Ok((i, items.remove(i)))
            })
            .await?;
        self.log_undo(Undo::ListRemoved { obj: obj.clone(), index, old });
        Ok(())
    }

    /// A copy of a List's elements (for iteration: later changes do not affect the loop).
    pub async fn list_items(&self, obj: &Obj) -> Flow<Vec<Value>> {
        self.with_obj(obj, Mode::Read, |d| Ok(list(d)?.clone())).await
    }

    /// `map[key]`; a missing key raises an ApplicationException.
    pub async fn map_get(&self, obj: &Obj, key: &Key) -> Flow<Value> {
        self.with_obj(obj, Mode::Read, |d| match map(d)?.get(key) {
            Some(v) => Ok(v.clone()),
            None => Err(Exception::application(format!("no key {} in the Map", show_key(key))).into()),
        })
        .await
    }

    /// `key in map`.
    pub async fn map_contains(&self, obj: &Obj, key: &Key) -> Flow<bool> {
        self.with_obj(obj, Mode::Read, |d| Ok(map(d)?.contains_key(key))).await
    }

    /// `map[key] = value`.
    pub async fn map_set(&self, obj: &Obj, key: Key, value: Value) -> Flow<()> {
        let stored = value.clone();
        let mut value = Some(value);
        let old = self
            .with_obj(obj, Mode::Write, |d| {
                Ok(map(d)?.insert(key.clone(), value.take().unwrap_or(Value::Nothing)))
            })
            .await?;
        self.log_undo(Undo::MapSet { obj: obj.clone(), key, old });
        self.tag_like(obj, &stored);
        Ok(())
    }

    /// `map.remove(key)`; a missing key raises an ApplicationException.
    pub async fn map_remove(&self, obj: &Obj, key: &Key) -> Flow<()> {
        let old = self
            .with_obj(obj, Mode::Write, |d| match map(d)?.remove(key) {
                Some(old) => Ok(old),
                None => Err(Exception::application(format!(
                    "cannot remove key {}: it is not in the Map",
                    show_key(key)
                ))
                .into()),
            })
            .await?;
        self.log_undo(Undo::MapSet { obj: obj.clone(), key: key.clone(), old: Some(old) });
        Ok(())
    }

    /// The keys of a Map, in ascending order.
    pub async fn map_keys(&self, obj: &Obj) -> Flow<Vec<Key>> {
        self.with_obj(obj, Mode::Read, |d| Ok(map(d)?.keys().cloned().collect())).await
    }

    /// Field `field` of a Struct.
    pub async fn field_get(&self, obj: &Obj, field: usize) -> Flow<Value> {
        self.with_obj(obj, Mode::Read, |d| match d {
            ObjData::Struct(fields) => {
                fields.get(field).cloned().ok_or_else(|| Exception::application("no such field").into())
            }
            _ => Err(Exception::application("not a Struct").into()),
        })
        .await
    }

    /// Sets field `field` of a Struct.
    pub async fn field_set(&self, obj: &Obj, field: usize, value: Value) -> Flow<()> {
        let stored = value.clone();
        let mut value = Some(value);
        let old = self
            .with_obj(obj, Mode::Write, |d| match d {
                ObjData::Struct(fields) => match fields.get_mut(field) {
                    Some(slot) => Ok(std::mem::replace(slot, value.take().unwrap_or(Value::Nothing))),
                    None => Err(Exception::application("no such field").into()),
                },
                _ => Err(Exception::application("not a Struct").into()),
            })
            .await?;
        self.log_undo(Undo::StructSet { obj: obj.clone(), field, old });
        self.tag_like(obj, &stored);
        Ok(())
    }

    // ---------------------------------------------------------------- copies and equality

    /// A deep copy of `value` that shares nothing with it (sharing and cycles inside the
    /// value are kept). Used wherever a value crosses a boundary. Objects are read under
    /// this transaction's locks.
    pub async fn deep_copy(&self, value: &Value) -> Flow<Value> {
        let mut copies: HashMap<usize, Obj> = HashMap::new();
        let mut todo: Vec<(Obj, Obj)> = Vec::new();
        let root = self.copy_shallow(value, &mut copies, &mut todo);
        while let Some((source, target)) = todo.pop() {
            let data = self.with_obj(&source, Mode::Read, |d| Ok(d.clone())).await?;
            let copied = match data {
                ObjData::List(items) => ObjData::List(
                    items.iter().map(|v| self.copy_shallow(v, &mut copies, &mut todo)).collect(),
                ),
                ObjData::Map(m) => ObjData::Map(
                    m.iter()
                        .map(|(k, v)| (k.clone(), self.copy_shallow(v, &mut copies, &mut todo)))
                        .collect(),
                ),
                ObjData::Struct(fields) => ObjData::Struct(
                    fields.iter().map(|v| self.copy_shallow(v, &mut copies, &mut todo)).collect(),
                ),
            };
            target.0.lock().data = copied;
        }
        Ok(root)
    }

    fn copy_shallow(
        &self,
        value: &Value,
        copies: &mut HashMap<usize, Obj>,
        todo: &mut Vec<(Obj, Obj)>,
    ) -> Value {
        let mut obj = |o: &Obj, empty: ObjData| -> Obj {
            copies
                .entry(o.addr())
                .or_insert_with(|| {
                    let fresh = Obj::new(empty);
                    todo.push((o.clone(), fresh.clone()));
                    fresh
                })
                .clone()
        };
        match value {
            Value::List(o) => Value::List(obj(o, ObjData::List(Vec::new()))),
            Value::Map(o) => Value::Map(obj(o, ObjData::Map(Default::default()))),
            Value::Struct(o) => Value::Struct(obj(o, ObjData::Struct(Vec::new()))),
            other => other.clone(),
        }
    }

    /// Deep equality (`==`): containers and structs by contents, Endpoints by identity.
    pub async fn equals(&self, a: &Value, b: &Value) -> Flow<bool> {
        let mut pending = vec![(a.clone(), b.clone())];
        while let Some((a, b)) = pending.pop() {
            let same = match (&a, &b) {
                (Value::Nothing, Value::Nothing) => true,
                (Value::Number(x), Value::Number(y)) => x == y,
                (Value::Text(x), Value::Text(y)) => x == y,
                (Value::Bool(x), Value::Bool(y)) => x == y,
                (Value::Endpoint(x), Value::Endpoint(y)) => x.id() == y.id(),
                (Value::Function(x), Value::Function(y)) => Arc::ptr_eq(&x.0, &y.0),
                (Value::External(x), Value::External(y)) => x.same(y),
                (Value::List(x), Value::List(y))
                | (Value::Map(x), Value::Map(y))
                | (Value::Struct(x), Value::Struct(y)) => {
                    if x.same(y) {
                        true
                    } else {
                        let dx = self.with_obj(x, Mode::Read, |d| Ok(d.clone())).await?;
                        let dy = self.with_obj(y, Mode::Read, |d| Ok(d.clone())).await?;
                        match (dx, dy) {
                            (ObjData::List(p), ObjData::List(q))
                            | (ObjData::Struct(p), ObjData::Struct(q)) => {
                                p.len() == q.len() && {
                                    pending.extend(p.into_iter().zip(q));
                                    true
                                }
                            }
                            (ObjData::Map(p), ObjData::Map(q)) => {
                                p.len() == q.len() && p.keys().zip(q.keys()).all(|(k, l)| k == l) && {
                                    pending.extend(p.into_values().zip(q.into_values()));
                                    true
                                }
                            }
                            _ => false,
                        }
                    }
                }
                _ => false,
            };
            if !same {
                return Ok(false);
            }
        }
        Ok(true)
    }

    // ---------------------------------------------------------------- External cells

    /// The current value of an External cell, as this transaction sees it. A container read
    /// from it is a copy: what the cell holds is never reachable from a variable, because the
    /// host reads it without locks.
    pub async fn ext_read(&self, cell: &ExtCell) -> Flow<Value> {
        let (value, pending) = poll_fn(|cx| -> Poll<Flow<(Value, bool)>> {
            let mut state = cell.0.lock();
            match self.poll_grant(cx, &mut state.lock, Mode::Read) {
                Poll::Ready(Ok(new)) => {
                    let read = match &state.pending {
                        Some(p) if state.lock.written_by(&self.inner) => (p.clone(), true),
                        _ => (state.committed.clone(), false),
                    };
                    drop(state);
                    if new {
                        self.hold(Held::Ext(cell.clone()));
                    }
                    Poll::Ready(Ok(read))
                }
                Poll::Ready(Err(a)) => Poll::Ready(Err(a.into())),
                Poll::Pending => Poll::Pending,
            }
        })
        .await?;
        let _ = pending;
        // Containers are copied even from this transaction's own pending value, so that no
        // variable ever aliases what the cell holds (the host reads it without locks).
        match value {
            Value::List(_) | Value::Map(_) | Value::Struct(_) => self.deep_copy(&value).await,
            other => Ok(other),
        }
    }

    /// Takes the write lock of an External cell; returns its pending value if this
    /// transaction already wrote it.
    async fn ext_lock_write(&self, cell: &ExtCell) -> Flow<Option<Value>> {
        poll_fn(|cx| -> Poll<Flow<Option<Value>>> {
            let mut state = cell.0.lock();
            match self.poll_grant(cx, &mut state.lock, Mode::Write) {
                Poll::Ready(Ok(new)) => {
                    let pending = state.pending.clone();
                    drop(state);
                    if new {
                        self.hold(Held::Ext(cell.clone()));
                    }
                    Poll::Ready(Ok(pending))
                }
                Poll::Ready(Err(a)) => Poll::Ready(Err(a.into())),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }

    /// Sets the pending value of a cell this transaction write-locked, recording the old one.
    fn ext_set_pending(&self, cell: &ExtCell, value: Value) {
        let old = cell.0.lock().pending.replace(value);
        self.log_undo(Undo::Ext { cell: cell.clone(), old });
    }

    /// The container an External cell holds, for changing it in place (`m[k] = v` on an
    /// External Map): this transaction's private pending copy, made on its first write.
    /// Generated code uses the result only for that change; it must not store it anywhere.
    pub async fn ext_for_write(&self, cell: &ExtCell) -> Flow<Value> {
        if let Some(pending) = self.ext_lock_write(cell).await? {
            return Ok(pending);
        }
        // The committed value is shared with the host: change a private copy.
        let committed = cell.committed();
        let copy = self.deep_copy(&committed).await?;
        self.ext_set_pending(cell, copy.clone());
        Ok(copy)
    }

    /// `extCopy value to cell`: the cell holds a copy of `value` once the transaction commits.
    pub async fn ext_write(&self, cell: &ExtCell, value: Value) -> Flow<()> {
        self.ext_lock_write(cell).await?;
        let copy = self.deep_copy(&value).await?;
        self.ext_set_pending(cell, copy);
        Ok(())
    }

    // ---------------------------------------------------------------- effects, savepoints

    /// Queues `f(args)` to run once after `ep`'s part of the transaction commits (`signal`
    /// in code running on `ep`). The arguments are copied now: the host gets the values as
    /// they were when `signal` ran.
    pub async fn signal(
        &self,
        ep: &EndpointCore,
        f: crate::core::value::HostFn,
        args: Vec<Value>,
    ) -> Flow<()> {
        let mut copied = Vec::with_capacity(args.len());
        for a in &args {
            copied.push(self.deep_copy(a).await?);
        }
        let effect: Effect = Box::new(move || {
            if let Err(e) = f.call(copied) {
                tracing::warn!(message = %e.message, "a signalled host function raised after commit; the transaction stays committed");
            }
        });
        self.inner.log.lock().effects.push((ep.effects.clone(), effect));
        Ok(())
    }

    /// Queues a line to print once after commit (`print`), through the endpoint's printer.
    pub fn print(&self, ep: &EndpointCore, text: String) {
        let printer = ep.printer.clone();
        let effect: Effect = Box::new(move || printer(&text));
        self.inner.log.lock().effects.push((ep.effects.clone(), effect));
    }

    /// Marks the undo log for a `try` body.
    pub fn savepoint(&self) -> Savepoint {
        let log = self.inner.log.lock();
        Savepoint {
            undo: log.undo.len(),
            effects: log.effects.len(),
            shipped: log.shipped.len(),
            links: log.links.iter().map(|l| l.sent.load(Ordering::Acquire)).collect(),
        }
    }

    /// Undoes everything written since `sp`, on every endpoint and on every partner the
    /// transaction reached since then, and drops the effects queued since then. Locks stay
    /// held.
    pub fn rollback_to(&self, sp: Savepoint) {
        self.rollback_except(sp, None);
    }

    /// Rolls back because the other side of `from` did: everyone but `from` is told.
    pub(crate) fn rollback_from(&self, sp: Savepoint, from: &dyn TxLink) {
        self.rollback_except(sp, Some(from));
    }

    fn rollback_except(&self, sp: Savepoint, from: Option<&dyn TxLink>) {
        let (undo, links) = {
            let mut log = self.inner.log.lock();
            log.effects.truncate(sp.effects);
            let shipped_at = sp.shipped.min(log.shipped.len());
            let resent: SmallVec<[PeeredTag; 2]> = log.shipped.drain(shipped_at..).collect();
            for t in resent {
                if !log.dirty.contains(&t) {
                    log.dirty.push(t);
                }
            }
            let at = sp.undo.min(log.undo.len());
            (log.undo.drain(at..).collect::<SmallVec<[Undo; 4]>>(), log.links.clone())
        };
        replay(undo);
        for (i, reg) in links.iter().enumerate() {
            let then = sp.links.get(i).copied().unwrap_or(0);
            if from.is_some_and(|f| reg.link.same(f)) {
                continue;
            }
            let sent = reg.sent.load(Ordering::Acquire);
            if then == 0 {
                // Links are only ever appended: `i` still names this one (unless the
                // transaction ended meanwhile and its log was taken).
                if let Some(reg) = self.inner.log.lock().links.get_mut(i) {
                    reg.void_at = sent;
                }
            }
            if sent > then {
                reg.link.rollback(self.inner.id, then);
            }
        }
    }

    /// Commits: from here the transaction can no longer be wounded; its effects are queued in
    /// commit order, its locks released, then its effects delivered; the partners it is the
    /// parent of are told. Fails with `Abort::Wounded` if it was wounded first (it is then
    /// aborted).
    pub fn commit(self) -> Result<(), Abort> {
        if self.inner.state.compare_exchange(ACTIVE, COMMITTING, Ordering::AcqRel, Ordering::Acquire).is_err()
        {
            abort_inner(&self.inner);
            return Err(Abort::Wounded);
        }
        commit_inner(&self.inner);
        Ok(())
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
            commit_inner(&self.inner);
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

fn commit_inner(inner: &Arc<TxInner>) {
    let log = std::mem::take(&mut *inner.log.lock());
    // Take the places in each endpoint's commit order while still holding the locks.
    let places = effects::reserve(log.effects);
    release(inner, log.held);
    inner.state.store(FINISHED, Ordering::Release);
    // Deliver before telling the partners: a thread that waits for its turn then never
    // holds a place of its own that others wait for (see `effects`).
    if let Some(places) = places {
        places.deliver();
    }
    for reg in log.links.iter().filter(|l| l.parent) {
        reg.link.finish(inner.id, true);
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

fn list(d: &mut ObjData) -> Flow<&mut Vec<Value>> {
    match d {
        ObjData::List(items) => Ok(items),
        _ => Err(Exception::application("not a List").into()),
    }
}

fn map(d: &mut ObjData) -> Flow<&mut std::collections::BTreeMap<Key, Value>> {
    match d {
        ObjData::Map(m) => Ok(m),
        _ => Err(Exception::application("not a Map").into()),
    }
}

/// Checks a List index: a whole number in range (`len` itself allowed when inserting).
fn list_index(index: f64, len: usize, inserting: bool) -> Flow<usize> {
    let limit = if inserting { len } else { len.saturating_sub(1) };
    if index.fract() != 0.0 || !index.is_finite() {
        return Err(Exception::application(format!("List index {index} is not a whole number")).into());
    }
    if index < 0.0 || index > limit as f64 || (!inserting && len == 0) {
        return Err(Exception::application(format!(
            "List index {} is out of range for a List of {len} element{}",
            crate::core::value::number_to_text(index),
            if len == 1 { "" } else { "s" }
        ))
        .into());
    }
    Ok(index as usize)
}

fn show_key(key: &Key) -> String {
    match key {
        Key::Number(n) => crate::core::value::number_to_text(*n),
        Key::Text(t) => format!("'{t}'"),
        Key::Bool(b) => if *b { "True" } else { "False" }.to_owned(),
    }
}
