//! The protocol engine of one side of a pair: a sans-io state machine.
//!
//! It keeps, for every transaction that crossed the connection, which side is its *parent*
//! there (the side that sent the transaction's first message over it; the other side is the
//! *child*), which sequence frames wait for an answer, how many messages each side sent
//! (for savepoint rollback), and whether the child's vote is current. Its inputs are the
//! messages received and the events of its driver (a block finished, a prepare finished, a
//! local transaction asks to send, the connection was lost); its outputs ([`Out`]) are
//! messages to send, jobs to run (a block, applying a prepare), answers for waiting local
//! calls, and decisions for local transactions (commit, abort, wound, roll back). It owns no
//! socket, spawns nothing, reads no clock and never runs Waldo code itself.
//!
//! **Time.** The engine's protocol needs no timer: a deadline is the host call's (it aborts
//! the transaction, and the engine hears of it through [`Engine::finish`]), and a lost
//! connection reaches it as [`Engine::lost`]. The timers of a connection, heartbeats and the
//! partner timeout, are the sans-io [`Liveness`](crate::liveness::Liveness) beside it: the
//! driver passes the time in when its timer fires and sets the timer it is told to.
//!
//! **Commit protocol.** Every message a child sends while it becomes idle carries its vote
//! (`vote: true`): it holds all its locks, has applied every peered change it was sent, and
//! has sent every peered change it made. When the root's work ends, a child whose vote is
//! current and that has nothing new to receive needs no prepare round: the root decides and
//! sends one `Commit`. So a k-block sequence between two endpoints costs k messages plus one
//! commit when the last block runs on the partner. A child that was sent something after its
//! vote (peered data written by the root after the sequence, or a transaction that only
//! wrote peered data) gets a `Prepare` carrying the changes and answers `Vote`.
//!
//! **Conflicts.** A busy child (running a block its parent waits for) that an older
//! transaction wounds aborts on its own and answers `Aborted`. An idle child has voted and
//! may not abort alone (its root may be committing): it asks its parent with `WoundMe`, and
//! the root aborts the transaction if it has not decided yet.
//!
//! **Admission token.** The roots of one side at a time take the locks of the peered data:
//! the side holding the connection's token ([`Engine::admit`]; `TokenAsk` and `TokenGive`
//! move it). It orders roots that would otherwise meet holding one replica each; it
//! decides no conflict (locks and wound-wait still do), so a root admitted without it is
//! correct, only slower.
//!
//! **Deviations.** A message that does not fit (an unknown sequence or block, a block that
//! does not run on this side, wrong sequence data, a decision while work is running) closes
//! the connection ([`Out::Close`] with the reason); messages about transactions that ended
//! here (aborted) are stale and ignored.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use crate::types::{Exception, Priority, TxId};

/// What the engine needs to know of its driver's types. The engine moves values and
/// waiting callers around without looking inside them, and drives transactions through
/// [`Txn`].
pub trait Host {
    /// The handle on the local part of a transaction.
    type Tx: Txn;
    /// A value of sequence or peered data.
    type Value;
    /// A local call waiting for an answer ([`Out::Answer`] hands it back with its reply).
    type Waiter;
}

/// What the engine does with a local transaction.
pub trait Txn: Clone {
    /// A mark in the transaction's undo log.
    type Savepoint: Clone;
    /// Its identity.
    fn id(&self) -> TxId;
    /// Its priority.
    fn priority(&self) -> Priority;
    /// The local part of a transaction that began on the other side.
    fn child(id: TxId, priority: Priority) -> Self;
    /// A handle that does not keep the transaction alive (a dropped host call still
    /// aborts).
    fn unguarded(&self) -> Self;
    /// The current position in the undo log.
    fn savepoint(&self) -> Self::Savepoint;
    /// Its state, for messages.
    fn state_name(&self) -> &'static str;
    /// Marks a child idle and prepared; false if it can no longer commit (it was wounded).
    fn try_prepare(&self) -> bool;
    /// A prepared child gets work again: it is active until it votes anew.
    fn resume(&self);
    /// Whether it is prepared.
    fn is_prepared(&self) -> bool;
    /// Whether it is running (not wounded, committing or ended): a root waiting for the
    /// admission token that may still use it.
    fn is_running(&self) -> bool;
}

/// Which endpoint of the protocol a side plays: its index in the protocol's declaration.
pub type Side = u8;

/// The outputs of one engine step (rarely more than a few: kept inline).
pub type Outs<H> = smallvec::SmallVec<[Out<H>; 4]>;

/// Peered variables carried by a message: (peered slot, value).
pub type PeeredData<V> = Vec<(u32, V)>;

/// A message between the two sides of a pair.
#[derive(Clone, Debug)]
pub enum Msg<V> {
    /// Run block `block` of sequence `seq` (frame `frame`) with sequence data `locals`.
    Work {
        /// Transaction.
        tx: TxId,
        /// Its priority.
        prio: Priority,
        /// Sent by the transaction's parent on this connection.
        from_parent: bool,
        /// The sequence run this belongs to.
        frame: u64,
        /// Sequence number in the protocol.
        seq: u32,
        /// Block index in the sequence.
        block: u32,
        /// Sequence-local data.
        locals: Vec<V>,
        /// Peered data changed since the last message.
        peered: PeeredData<V>,
        /// The sender is idle and prepared (a child's vote).
        vote: bool,
    },
    /// The sequence of frame `frame` ended (its last block ran on the sender).
    Done {
        /// Transaction.
        tx: TxId,
        /// Sent by the transaction's parent on this connection.
        from_parent: bool,
        /// The sequence run.
        frame: u64,
        /// Final sequence-local data (the return values among it).
        locals: Vec<V>,
        /// Peered data changed since the last message.
        peered: PeeredData<V>,
        /// The sender is idle and prepared.
        vote: bool,
    },
    /// A block of frame `frame` raised an exception nothing caught.
    Raise {
        /// Transaction.
        tx: TxId,
        /// Sent by the transaction's parent on this connection.
        from_parent: bool,
        /// The sequence run.
        frame: u64,
        /// The exception (its kind and message).
        exception: Exception,
        /// Peered data changed since the last message.
        peered: PeeredData<V>,
        /// The sender is idle and prepared.
        vote: bool,
    },
    /// The child aborted its part (it was wounded while working).
    Aborted {
        /// Transaction.
        tx: TxId,
    },
    /// Parent to child: apply these changes and vote.
    Prepare {
        /// Transaction.
        tx: TxId,
        /// Its priority.
        prio: Priority,
        /// Peered data changed since the last message.
        peered: PeeredData<V>,
    },
    /// Child to parent: prepared.
    Vote {
        /// Transaction.
        tx: TxId,
    },
    /// Parent to child: the transaction committed.
    Commit {
        /// Transaction.
        tx: TxId,
    },
    /// Parent to child: the transaction aborted.
    Abort {
        /// Transaction.
        tx: TxId,
    },
    /// Parent to child: undo everything done since the parent's `mark`-th message.
    Rollback {
        /// Transaction.
        tx: TxId,
        /// How many messages the parent had sent at the savepoint.
        mark: u64,
    },
    /// Child to parent: an older transaction needs what this prepared child holds.
    WoundMe {
        /// Transaction.
        tx: TxId,
    },
    /// A root on the sender waits to take the locks of the peered data: the receiver, which
    /// holds the admission token, admits no root younger than `prio` and hands the token
    /// over once the roots it admitted have ended.
    TokenAsk {
        /// The oldest waiting root.
        tx: TxId,
        /// Its priority.
        prio: Priority,
        /// A waiting root holds locks: the receiver's admitted roots younger than `prio`
        /// are wounded (they might wait for those locks, while it waits for them).
        wound: bool,
    },
    /// The admission token: the receiver's roots may now take the locks of the peered data.
    TokenGive {
        /// The root whose ask it answers.
        tx: TxId,
    },
}

impl<V> Msg<V> {
    /// The transaction the message is about.
    pub fn tx(&self) -> TxId {
        match self {
            Msg::Work { tx, .. }
            | Msg::Done { tx, .. }
            | Msg::Raise { tx, .. }
            | Msg::Aborted { tx }
            | Msg::Prepare { tx, .. }
            | Msg::Vote { tx }
            | Msg::Commit { tx }
            | Msg::Abort { tx }
            | Msg::Rollback { tx, .. }
            | Msg::WoundMe { tx }
            | Msg::TokenAsk { tx, .. }
            | Msg::TokenGive { tx } => *tx,
        }
    }

    /// A short name of the message kind (statistics, errors).
    pub fn kind(&self) -> &'static str {
        match self {
            Msg::Work { .. } => "Work",
            Msg::Done { .. } => "Done",
            Msg::Raise { .. } => "Raise",
            Msg::Aborted { .. } => "Aborted",
            Msg::Prepare { .. } => "Prepare",
            Msg::Vote { .. } => "Vote",
            Msg::Commit { .. } => "Commit",
            Msg::Abort { .. } => "Abort",
            Msg::Rollback { .. } => "Rollback",
            Msg::WoundMe { .. } => "WoundMe",
            Msg::TokenAsk { .. } => "TokenAsk",
            Msg::TokenGive { .. } => "TokenGive",
        }
    }
}

/// What a sequence of the protocol looks like to the engine.
#[derive(Clone, Copy, Debug)]
pub struct SequenceInfo {
    /// Its name (for messages).
    pub name: &'static str,
    /// How many blocks it has (block `i` runs on the starter when `i` is even).
    pub blocks: u32,
    /// How many sequence-local values its messages carry.
    pub locals: u32,
    /// Which sides may start it (by side number).
    pub starters: [bool; 2],
}

impl SequenceInfo {
    /// Sequence `name` of `blocks` blocks carrying `locals` values, started by the sides
    /// marked in `starters`.
    pub const fn new(name: &'static str, blocks: u32, locals: u32, starters: [bool; 2]) -> Self {
        SequenceInfo { name, blocks, locals, starters }
    }
}

/// The answer a waiting local call gets.
#[derive(Debug)]
pub enum Reply<V> {
    /// The sequence ended; its data and the peered changes to apply.
    Done(Vec<V>, PeeredData<V>),
    /// The sequence raised on the partner: the exception and the peered changes to apply.
    Raise(Exception, PeeredData<V>),
    /// The partner voted.
    Voted,
    /// The partner aborted its part: the transaction must abort.
    Aborted,
    /// The connection is gone.
    Lost(String),
}

/// A job for the driver: Waldo work to run for a transaction that came over the connection.
pub enum Job<H: Host> {
    /// Apply `peered`, run block `block` of `seq`, then report with
    /// [`Engine::block_finished`].
    Block {
        /// The local transaction.
        tx: H::Tx,
        /// The sequence run.
        frame: u64,
        /// Sequence.
        seq: u32,
        /// Block index.
        block: u32,
        /// Sequence data.
        locals: Vec<H::Value>,
        /// Peered changes to apply first.
        peered: PeeredData<H::Value>,
        /// Whether this side is the child (it must prepare its own links before answering).
        child: bool,
        /// Whether the sequence run started here (an end here answers a local call, and the
        /// changes then stay dirty rather than travel with an answer).
        started_here: bool,
        /// Whether this is the sequence's last block.
        last: bool,
    },
    /// Apply `peered`, prepare own links, then report with [`Engine::prepare_finished`].
    Prepare {
        /// The local transaction.
        tx: H::Tx,
        /// Peered changes to apply.
        peered: PeeredData<H::Value>,
    },
}

/// An output of the engine, for its driver to carry out.
pub enum Out<H: Host> {
    /// Send a message to the other side. Sends leave in the order the engine made them.
    Send(Msg<H::Value>),
    /// Run a job (in its own task: it may wait for locks).
    Run(Job<H>),
    /// Answer a waiting local call.
    Answer(H::Waiter, Reply<H::Value>),
    /// Commit the local part of a transaction (the parent decided).
    Commit(H::Tx),
    /// Abort the local part of a transaction.
    Abort(H::Tx),
    /// Wound a local transaction (its child asked, or it is the root of one that failed).
    Wound(H::Tx),
    /// Wound a local transaction even if prepared (its parent aborted it while it works).
    ForceWound(H::Tx),
    /// Undo the local part back to a savepoint (the other side of this connection already
    /// undid its own).
    Rollback(H::Tx, <H::Tx as Txn>::Savepoint),
    /// Close the connection: the peer deviated from the protocol (the reason).
    Close(String),
    /// The other side sent a transaction of this priority: the endpoint's clock moves past
    /// it, so the transactions the endpoint starts later are younger.
    Observe(Priority),
    /// The admission token arrived, or the connection closed: the roots waiting for it ask
    /// [`Engine::admit`] again.
    Admit,
    /// A transaction joined the connection here: the driver registers the link with it (as
    /// parent or child), with the counter of messages this side sends; for a child, it also
    /// arranges that a wound while prepared reaches [`Engine::wound_requested`].
    Joined {
        /// The local transaction.
        tx: H::Tx,
        /// Whether this side is its parent on the connection.
        parent: bool,
        /// Messages this side sent about it.
        sent: Arc<AtomicU64>,
    },
}

/// The result of a block job, as the driver reports it.
pub enum BlockResult<V> {
    /// The block ended normally, with the sequence data and the changes to send.
    Ok(Vec<V>, PeeredData<V>),
    /// The block raised an exception nothing caught.
    Raised(Exception, PeeredData<V>),
    /// The transaction was wounded or aborted while the block ran, or could not prepare.
    Aborted,
}

/// The runs of sequences started here that wait for their end (usually one).
struct Waiters<W>(smallvec::SmallVec<[(u64, Waiter<W>); 1]>);

impl<W> Default for Waiters<W> {
    fn default() -> Self {
        Waiters(smallvec::SmallVec::new())
    }
}

impl<W> Waiters<W> {
    fn insert(&mut self, frame: u64, w: Waiter<W>) {
        self.0.push((frame, w));
    }

    fn remove(&mut self, frame: &u64) -> Option<Waiter<W>> {
        let i = self.0.iter().position(|(f, _)| f == frame)?;
        Some(self.0.remove(i).1)
    }

    fn get(&self, frame: &u64) -> Option<&Waiter<W>> {
        self.0.iter().find(|(f, _)| f == frame).map(|(_, w)| w)
    }

    fn drain(&mut self) -> impl Iterator<Item = (u64, Waiter<W>)> + '_ {
        self.0.drain(..)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A sequence run started here, waiting for its end.
struct Waiter<W> {
    seq: u32,
    answer: W,
}

struct Entry<H: Host> {
    tx: H::Tx,
    parent: bool,
    /// Messages this side sent about the transaction (shared with its savepoints).
    sent: Arc<AtomicU64>,
    /// Parent role: the child's last message was a vote, and nothing was sent since.
    child_voted: bool,
    /// Parent role: the child aborted its part.
    child_aborted: bool,
    /// The savepoint at the arrival of each message from the other side (the other side's
    /// rollback marks count those messages).
    arrivals: smallvec::SmallVec<[<H::Tx as Txn>::Savepoint; 2]>,
    /// Child role: the transaction must abort once its running jobs stop.
    abort_requested: bool,
    /// Jobs running here for this transaction.
    jobs: u32,
    /// Frames started here, waiting for their sequence to end.
    waiters: Waiters<H::Waiter>,
    /// Parent role: waiting for the child's vote.
    vote_waiter: Option<H::Waiter>,
}

impl<H: Host> Entry<H> {
    fn new(tx: H::Tx, parent: bool) -> Entry<H> {
        Entry {
            tx,
            parent,
            sent: Arc::new(AtomicU64::new(0)),
            child_voted: false,
            child_aborted: false,
            arrivals: smallvec::SmallVec::new(),
            abort_requested: false,
            jobs: 0,
            waiters: Waiters::default(),
            vote_waiter: None,
        }
    }

    fn idle(&self) -> bool {
        self.jobs == 0 && self.waiters.is_empty()
    }

    fn arrived(&mut self) {
        let sp = self.tx.savepoint();
        self.arrivals.push(sp);
    }
}

/// Counts of messages, for tests and statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Messages sent.
    pub sent: u64,
    /// Messages received.
    pub received: u64,
    /// Transactions this side was the child of.
    pub child_txs: u64,
    /// Abort-type messages sent (`Abort`, `Aborted`, `WoundMe`): a measure of conflicts.
    pub conflicts: u64,
}

/// How many ended transactions an engine remembers, to recognise late messages about them.
const REMEMBERED: usize = 1 << 16;

/// The state machine of one side of a pair.
pub struct Engine<H: Host> {
    side: Side,
    sequences: Vec<SequenceInfo>,
    peered: u32,
    txs: HashMap<TxId, Entry<H>>,
    /// Transactions that ended here, most recent last (bounded).
    ended: HashSet<TxId>,
    ended_order: VecDeque<TxId>,
    next_frame: u64,
    closed: Option<String>,
    stats: Stats,
    token: Token<H>,
}

/// The admission token of the peered data (see [`Engine::admit`]).
struct Token<H: Host> {
    /// This side holds it.
    here: bool,
    /// The roots admitted under it here, which have not ended.
    users: HashMap<TxId, H::Tx>,
    /// The roots refused here, which may still wait for it, and whether each holds locks.
    waiting: Vec<(H::Tx, bool)>,
    /// The priority this side last asked with (while the token is away).
    asked: Option<Priority>,
    /// The other side's oldest waiting root (while the token is here).
    requested: Option<(Priority, TxId)>,
}

/// The largest priority clock a peer may send. Clocks count transactions, so a real one
/// never comes near it; a larger one would push the host's clock towards its end (where it
/// would wrap and make new transactions the oldest).
pub const MAX_PRIORITY_CLOCK: u64 = 1 << 62;

fn check_priority(prio: Priority) -> Result<(), String> {
    let (clock, _) = prio.parts();
    if clock > MAX_PRIORITY_CLOCK {
        return Err(format!(
            "a priority clock of {clock}, beyond the largest one allowed ({MAX_PRIORITY_CLOCK})"
        ));
    }
    Ok(())
}

fn deviation<H: Host>(message: String) -> Out<H> {
    Out::Close(message)
}

impl<H: Host> Engine<H> {
    /// The engine of side `side` of a protocol with these sequences and `peered` peered
    /// variables.
    pub fn new(side: Side, sequences: Vec<SequenceInfo>, peered: u32) -> Engine<H> {
        Engine {
            side,
            sequences,
            peered,
            txs: HashMap::default(),
            ended: HashSet::default(),
            ended_order: VecDeque::new(),
            next_frame: 0,
            closed: None,
            stats: Stats::default(),
            token: Token {
                here: side == 0,
                users: HashMap::default(),
                waiting: Vec::new(),
                asked: None,
                requested: None,
            },
        }
    }

    /// The side this engine plays.
    pub fn side(&self) -> Side {
        self.side
    }

    /// Message counts so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Why the connection is closed, if it is.
    pub fn closed(&self) -> Option<&str> {
        self.closed.as_deref()
    }

    /// The admission token's state, then one line per transaction in flight, for
    /// diagnostics.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "token here={} users={} waiting={} asked={:?} requested={:?}\n",
            self.token.here,
            self.token.users.len(),
            self.token.waiting.len(),
            self.token.asked,
            self.token.requested
        ));
        for (id, e) in &self.txs {
            out.push_str(&format!(
                "{id:?} {} parent={} voted={} child_aborted={} abort_requested={} jobs={} waiters={} vote_waiter={}\n",
                e.tx.state_name(),
                e.parent,
                e.child_voted,
                e.child_aborted,
                e.abort_requested,
                e.jobs,
                e.waiters.0.len(),
                e.vote_waiter.is_some()
            ));
        }
        out
    }

    /// How many transactions are in flight over the connection.
    pub fn in_flight(&self) -> usize {
        self.txs.len()
    }

    /// Sequence `seq` of the protocol.
    pub fn sequence(&self, seq: u32) -> Option<SequenceInfo> {
        self.sequences.get(seq as usize).copied()
    }

    fn send(&mut self, out: &mut Outs<H>, msg: Msg<H::Value>) {
        self.stats.sent += 1;
        if matches!(msg, Msg::Abort { .. } | Msg::Aborted { .. } | Msg::WoundMe { .. }) {
            self.stats.conflicts += 1;
        }
        // Messages that make the other side work are counted: the other side records a
        // savepoint at the arrival of each, and rollbacks name them by number.
        if matches!(msg, Msg::Work { .. } | Msg::Done { .. } | Msg::Raise { .. } | Msg::Prepare { .. })
            && let Some(e) = self.txs.get_mut(&msg.tx())
        {
            e.sent.fetch_add(1, Ordering::AcqRel);
            if e.parent {
                e.child_voted = false;
            }
        }
        out.push(Out::Send(msg));
    }

    /// Removes transaction `id`, remembering that it aborted (late messages about it are
    /// then stale; a committed transaction has none).
    fn end(&mut self, id: TxId) -> Option<Entry<H>> {
        let entry = self.txs.remove(&id)?;
        self.remember(id);
        Some(entry)
    }

    fn remember(&mut self, id: TxId) {
        if self.ended.insert(id) {
            self.ended_order.push_back(id);
            if self.ended_order.len() > REMEMBERED
                && let Some(old) = self.ended_order.pop_front()
            {
                self.ended.remove(&old);
            }
        }
    }

    /// A local transaction wrote peered data or starts a sequence: it joins the connection,
    /// as its parent unless it is already known here.
    pub fn enlist(&mut self, tx: &H::Tx, out: &mut Outs<H>) {
        if self.txs.contains_key(&tx.id()) {
            return;
        }
        // The engine's handle must not keep a dropped host call from aborting.
        let entry = Entry::new(tx.unguarded(), true);
        out.push(Out::Joined { tx: tx.clone(), parent: true, sent: entry.sent.clone() });
        self.txs.insert(tx.id(), entry);
    }

    /// Whether local transaction `tx` may take the locks of the peered data now.
    ///
    /// Each side locks its own replica first, so roots on both sides that wrote the same
    /// peered variable at once would meet holding one replica each, and one would be
    /// wounded. So the roots of one side at a time take those locks: the side holding the
    /// admission token (side 0 at first). A root on the other side is refused; the engine
    /// asks for the token with the oldest waiting root's priority ([`Msg::TokenAsk`]), and
    /// [`Out::Admit`] says when to ask again. The holder admits no root younger than an ask
    /// it has and hands the token over ([`Msg::TokenGive`], after the last one's `Commit` or
    /// `Abort`) once its admitted roots have ended; the roots that waited are admitted as it
    /// arrives. `holds` says that `tx` holds locks, or may through a partner, or is admitted
    /// on another connection: then the other side's admitted roots younger than it are
    /// wounded (they might wait for what it holds), as wound-wait would. A waiting root that
    /// holds nothing may wait for younger admitted roots, but nothing can wait for it in
    /// turn, so no cycle of waits forms. A transaction that is a child here (it acts for a
    /// root of the other side) never waits for the token, and one admitted stays admitted
    /// until it ends; on a closed connection every transaction is admitted (it fails when it
    /// sends). The token only orders the roots: locks and wound-wait still decide every
    /// conflict.
    pub fn admit(&mut self, tx: &H::Tx, holds: bool, out: &mut Outs<H>) -> bool {
        let id = tx.id();
        if self.closed.is_some()
            || self.token.users.contains_key(&id)
            || self.txs.get(&id).is_some_and(|e| !e.parent)
        {
            return true;
        }
        let prio = tx.priority();
        if self.token.here && self.token.requested.is_none_or(|(r, _)| prio < r) {
            self.admit_user(tx, out);
            return true;
        }
        let known = self.token.waiting.iter().any(|(w, _)| w.id() == id);
        if !known {
            // Attempts that gave up (wounded, past their deadline) wait no more.
            self.token.waiting.retain(|(w, _)| w.is_running());
            self.token.waiting.push((tx.unguarded(), holds));
        }
        if self.token.here {
            // Refused for an older root of the other side: admitted roots younger than this
            // one might wait for what it holds.
            if holds && !known {
                self.wound_users_younger_than(prio, out);
            }
        } else if self.token.asked.is_none_or(|a| prio < a) || (holds && !known) {
            self.token.asked = Some(self.token.asked.map_or(prio, |a| a.min(prio)));
            self.send(out, Msg::TokenAsk { tx: id, prio, wound: holds });
        }
        false
    }

    /// Wounds the admitted roots younger than `prio` (those that have not begun to commit).
    fn wound_users_younger_than(&self, prio: Priority, out: &mut Outs<H>) {
        for user in self.token.users.values() {
            if prio < user.priority() {
                out.push(Out::Wound(user.clone()));
            }
        }
    }

    /// Admits root `tx`; it joins the connection, so that its end reaches
    /// [`Engine::finish`].
    fn admit_user(&mut self, tx: &H::Tx, out: &mut Outs<H>) {
        self.token.users.insert(tx.id(), tx.unguarded());
        self.enlist(tx, out);
    }

    /// Hands the token over if the other side asked for it and no root admitted here is
    /// left; asks for it back at once if roots here still wait.
    fn give_token(&mut self, out: &mut Outs<H>) {
        let Some((_, asker)) = self.token.requested else { return };
        if !self.token.here || !self.token.users.is_empty() || self.closed.is_some() {
            return;
        }
        self.token.here = false;
        self.token.requested = None;
        self.send(out, Msg::TokenGive { tx: asker });
        self.token.waiting.retain(|(w, _)| w.is_running());
        if let Some((oldest, _)) = self.token.waiting.iter().min_by_key(|(w, _)| w.priority()) {
            let (prio, id) = (oldest.priority(), oldest.id());
            let wound = self.token.waiting.iter().any(|(_, holds)| *holds);
            self.token.asked = Some(prio);
            self.send(out, Msg::TokenAsk { tx: id, prio, wound });
        }
    }

    /// Whether this side holds the admission token (for tests and diagnostics).
    pub fn holds_token(&self) -> bool {
        self.token.here
    }

    /// A local call starts a run of sequence `seq` in `tx` (its first block already ran) and
    /// sends the second block. Returns the waiter for the sequence's end.
    pub fn start_frame(
        &mut self,
        tx: &H::Tx,
        seq: u32,
        locals: Vec<H::Value>,
        peered: PeeredData<H::Value>,
        answer: H::Waiter,
        out: &mut Outs<H>,
    ) -> Result<(), (String, H::Waiter)> {
        if let Some(reason) = &self.closed {
            return Err((reason.clone(), answer));
        }
        self.enlist(tx, out);
        let frame = (self.next_frame << 1) | u64::from(self.side & 1);
        self.next_frame += 1;
        let entry = self.txs.get_mut(&tx.id()).expect("enlisted above");
        entry.waiters.insert(frame, Waiter { seq, answer });
        let from_parent = entry.parent;
        let msg = Msg::Work {
            tx: tx.id(),
            prio: tx.priority(),
            from_parent,
            frame,
            seq,
            block: 1,
            locals,
            peered,
            vote: false,
        };
        self.send(out, msg);
        Ok(())
    }

    /// Aborts the local part of child transaction `id` now if no job of it runs, else once
    /// the last one stops.
    fn abort_child(&mut self, id: TxId, out: &mut Outs<H>) {
        let Some(entry) = self.txs.get_mut(&id) else { return };
        for (_, w) in entry.waiters.drain() {
            out.push(Out::Answer(w.answer, Reply::Aborted));
        }
        if entry.jobs > 0 {
            entry.abort_requested = true;
            out.push(Out::ForceWound(entry.tx.clone()));
        } else if let Some(e) = self.end(id) {
            out.push(Out::Abort(e.tx));
        }
    }

    /// A block job ended. Decides what to send (the next block, the end of the sequence, the
    /// exception, or the abort) and whether this side is now an idle, prepared child.
    pub fn block_finished(
        &mut self,
        id: TxId,
        frame: u64,
        seq: u32,
        block: u32,
        result: BlockResult<H::Value>,
        out: &mut Outs<H>,
    ) {
        let Some(entry) = self.txs.get_mut(&id) else { return };
        entry.jobs = entry.jobs.saturating_sub(1);
        let parent = entry.parent;
        if entry.abort_requested {
            if entry.jobs == 0
                && let Some(e) = self.end(id)
            {
                out.push(Out::Abort(e.tx));
            }
            return;
        }
        let starter_here = frame & 1 == u64::from(self.side & 1);
        let (locals, peered, raised) = match result {
            BlockResult::Aborted => {
                if !parent {
                    // A busy child wounded: it aborts alone (its parent is waiting for it)
                    // once every job of the transaction here has stopped.
                    self.send(out, Msg::Aborted { tx: id });
                    self.abort_child(id, out);
                }
                // A parent wounded while running a block for its child: the root notices
                // the wound and aborts the whole transaction.
                return;
            }
            BlockResult::Ok(locals, peered) => (locals, peered, None),
            BlockResult::Raised(e, peered) => (Vec::new(), peered, Some(e)),
        };
        let blocks = self.sequences.get(seq as usize).map_or(0, |s| s.blocks);
        let ended = raised.is_some() || block + 1 >= blocks;
        if ended && starter_here {
            // The sequence ends here, where it started: answer the local caller.
            let entry = self.txs.get_mut(&id).expect("present");
            if let Some(w) = entry.waiters.remove(&frame) {
                let reply = match raised {
                    Some(e) => Reply::Raise(e, peered),
                    None => Reply::Done(locals, peered),
                };
                out.push(Out::Answer(w.answer, reply));
            }
            return;
        }
        // A child that ends up idle votes with this message; if it was wounded in the
        // meantime it may still abort alone, since its parent waits for this answer.
        let mut vote = false;
        if !parent {
            let entry = self.txs.get_mut(&id).expect("present");
            if entry.idle() {
                if entry.tx.try_prepare() {
                    vote = true;
                } else {
                    self.send(out, Msg::Aborted { tx: id });
                    self.abort_child(id, out);
                    return;
                }
            }
        }
        let msg = match raised {
            Some(e) => Msg::Raise { tx: id, from_parent: parent, frame, exception: e, peered, vote },
            None if ended => Msg::Done { tx: id, from_parent: parent, frame, locals, peered, vote },
            None => {
                let prio = self.txs[&id].tx.priority();
                Msg::Work {
                    tx: id,
                    prio,
                    from_parent: parent,
                    frame,
                    seq,
                    block: block + 1,
                    locals,
                    peered,
                    vote,
                }
            }
        };
        self.send(out, msg);
    }

    /// A prepare job ended: vote, or abort alone if the transaction was wounded first.
    pub fn prepare_finished(&mut self, id: TxId, ok: bool, out: &mut Outs<H>) {
        let Some(entry) = self.txs.get_mut(&id) else { return };
        entry.jobs = entry.jobs.saturating_sub(1);
        if entry.abort_requested {
            if entry.jobs == 0
                && let Some(e) = self.end(id)
            {
                out.push(Out::Abort(e.tx));
            }
            return;
        }
        if ok && entry.idle() && entry.tx.try_prepare() {
            self.send(out, Msg::Vote { tx: id });
        } else {
            self.send(out, Msg::Aborted { tx: id });
            self.abort_child(id, out);
        }
    }

    /// Parent role: the root's work ended; make sure the child voted after receiving
    /// everything. Returns `None` when no round is needed, or the waiter for the vote.
    pub fn prepare(
        &mut self,
        tx: &H::Tx,
        peered: PeeredData<H::Value>,
        waiter: impl FnOnce() -> H::Waiter,
        out: &mut Outs<H>,
    ) -> Result<bool, Reply<H::Value>> {
        let id = tx.id();
        // Nothing sent about it and nothing to send (a root admitted for the token that only
        // read): there is no child to vote, whether or not the connection is still open.
        if peered.is_empty()
            && self.txs.get(&id).is_some_and(|e| e.parent && e.sent.load(Ordering::Acquire) == 0)
        {
            return Ok(false);
        }
        if let Some(reason) = &self.closed {
            return Err(Reply::Lost(reason.clone()));
        }
        let Some(entry) = self.txs.get_mut(&id) else { return Ok(false) };
        if !entry.parent {
            return Ok(false);
        }
        if entry.child_aborted {
            return Err(Reply::Aborted);
        }
        if peered.is_empty() && entry.child_voted {
            return Ok(false);
        }
        entry.vote_waiter = Some(waiter());
        self.send(out, Msg::Prepare { tx: id, prio: tx.priority(), peered });
        Ok(true)
    }

    /// Whether [`Engine::prepare`] with no peered data would have nothing to do for `id`:
    /// this side sent nothing about it, or the connection is open and the transaction is not
    /// a parent here, or its child voted and nothing was sent since.
    pub fn voted(&self, id: TxId) -> bool {
        let entry = self.txs.get(&id);
        if entry.is_some_and(|e| e.parent && e.sent.load(Ordering::Acquire) == 0) {
            return true;
        }
        self.closed.is_none() && entry.is_none_or(|e| !e.parent || (!e.child_aborted && e.child_voted))
    }

    /// Parent role: the transaction committed or aborted here; tell the child. An admitted
    /// root ends its use of the admission token (after its `Commit` or `Abort` is sent).
    pub fn finish(&mut self, id: TxId, committed: bool, out: &mut Outs<H>) {
        self.finish_parent(id, committed, out);
        if self.token.users.remove(&id).is_some() {
            self.give_token(out);
        }
    }

    fn finish_parent(&mut self, id: TxId, committed: bool, out: &mut Outs<H>) {
        let Some(entry) = self.txs.get(&id) else { return };
        if !entry.parent {
            return;
        }
        let (sent, child_aborted) = (entry.sent.load(Ordering::Acquire), entry.child_aborted);
        if committed {
            self.txs.remove(&id);
        } else {
            self.end(id);
        }
        if sent == 0 || self.closed.is_some() {
            return;
        }
        if committed {
            self.send(out, Msg::Commit { tx: id });
        } else if !child_aborted {
            self.send(out, Msg::Abort { tx: id });
        }
    }

    /// Undoes on the other side everything done since this side's `mark`-th message.
    pub fn rollback(&mut self, id: TxId, mark: u64, out: &mut Outs<H>) {
        if self.closed.is_none() && self.txs.get(&id).is_some_and(|e| e.sent.load(Ordering::Acquire) > mark) {
            // A rollback message is not itself counted: marks count messages that did work.
            self.stats.sent += 1;
            out.push(Out::Send(Msg::Rollback { tx: id, mark }));
        }
    }

    /// Child role: an older transaction wounded this prepared child: ask the parent.
    pub fn wound_requested(&mut self, id: TxId, out: &mut Outs<H>) {
        if self.closed.is_none() && self.txs.get(&id).is_some_and(|e| !e.parent) {
            self.send(out, Msg::WoundMe { tx: id });
        }
    }

    /// The connection is gone (`reason` says why): every transaction over it fails.
    pub fn lost(&mut self, reason: &str, out: &mut Outs<H>) {
        if self.closed.is_none() {
            self.closed = Some(reason.to_owned());
            // Roots waiting for the token go on (and fail when they send).
            self.token.users.clear();
            self.token.waiting.clear();
            out.push(Out::Admit);
        }
        let ids: Vec<TxId> = self.txs.keys().copied().collect();
        for id in ids {
            let Some(entry) = self.txs.get_mut(&id) else { continue };
            for (_, w) in entry.waiters.drain() {
                out.push(Out::Answer(w.answer, Reply::Lost(reason.to_owned())));
            }
            if let Some(w) = entry.vote_waiter.take() {
                out.push(Out::Answer(w, Reply::Lost(reason.to_owned())));
            }
            if entry.parent {
                // Nothing crossed for it (a root admitted for the token that only read): it
                // needs no vote and may still commit; it goes when it finishes.
                if entry.sent.load(Ordering::Acquire) == 0 {
                    continue;
                }
                // The root learns it from its waiters or its prepare; it aborts then.
                self.end(id);
            } else {
                // The parent cannot reach us any more: presume abort.
                self.abort_child(id, out);
            }
        }
    }

    /// A message arrived from the other side.
    pub fn received(&mut self, msg: Msg<H::Value>, out: &mut Outs<H>) {
        if self.closed.is_some() {
            return;
        }
        self.stats.received += 1;
        let id = msg.tx();
        match msg {
            Msg::Work { prio, from_parent, frame, seq, block, locals, peered, vote, .. } => {
                if let Err(why) =
                    self.check_work(id, frame, seq, block, &locals, &peered).and(check_priority(prio))
                {
                    out.push(deviation(why));
                    return;
                }
                out.push(Out::Observe(prio));
                // Only the first block a parent sends can start a transaction here.
                let starts = from_parent && block == 1 && frame & 1 != u64::from(self.side & 1);
                let last = block + 1 >= self.sequences[seq as usize].blocks;
                let started_here = frame & 1 == u64::from(self.side & 1);
                let Some(entry) = self.entry_for(id, prio, from_parent, starts, out) else { return };
                if entry.parent {
                    entry.child_voted = vote;
                } else {
                    entry.tx.resume();
                }
                entry.arrived();
                entry.jobs += 1;
                let child = !entry.parent;
                let tx = entry.tx.clone();
                out.push(Out::Run(Job::Block {
                    tx,
                    frame,
                    seq,
                    block,
                    locals,
                    peered,
                    child,
                    started_here,
                    last,
                }));
            }
            Msg::Done { from_parent, frame, locals, peered, vote, .. } => {
                self.frame_answer(id, from_parent, frame, vote, Some(locals), peered, None, out);
            }
            Msg::Raise { from_parent, frame, exception, peered, vote, .. } => {
                self.frame_answer(id, from_parent, frame, vote, None, peered, Some(exception), out);
            }
            Msg::Aborted { .. } => {
                let Some(entry) = self.txs.get_mut(&id).filter(|e| e.parent) else { return };
                entry.child_aborted = true;
                entry.child_voted = false;
                for (_, w) in entry.waiters.drain() {
                    out.push(Out::Answer(w.answer, Reply::Aborted));
                }
                if let Some(w) = entry.vote_waiter.take() {
                    out.push(Out::Answer(w, Reply::Aborted));
                }
                out.push(Out::Wound(entry.tx.clone()));
            }
            Msg::Prepare { prio, peered, .. } => {
                if let Err(why) = self.check_peered(&peered).and(check_priority(prio)) {
                    out.push(deviation(why));
                    return;
                }
                out.push(Out::Observe(prio));
                let Some(entry) = self.entry_for(id, prio, true, true, out) else { return };
                if entry.parent {
                    out.push(deviation("a Prepare from the child of a transaction".into()));
                    return;
                }
                entry.tx.resume();
                entry.arrived();
                entry.jobs += 1;
                out.push(Out::Run(Job::Prepare { tx: entry.tx.clone(), peered }));
            }
            Msg::Vote { .. } => {
                let Some(entry) = self.txs.get_mut(&id).filter(|e| e.parent) else { return };
                entry.child_voted = true;
                if let Some(w) = entry.vote_waiter.take() {
                    out.push(Out::Answer(w, Reply::Voted));
                }
            }
            Msg::Commit { .. } => match self.txs.get(&id) {
                Some(e) if !e.parent && e.idle() && e.tx.is_prepared() => {
                    let e = self.txs.remove(&id).expect("present");
                    out.push(Out::Commit(e.tx));
                }
                Some(_) => {
                    out.push(deviation(format!("a Commit of transaction {id:?}, which has not voted here")));
                }
                None if self.ended.contains(&id) => {
                    out.push(deviation(format!("a Commit of transaction {id:?}, which aborted here")));
                }
                None => out.push(deviation(format!("a Commit of unknown transaction {id:?}"))),
            },
            Msg::Abort { .. } => {
                if self.txs.get(&id).is_some_and(|e| !e.parent) {
                    self.abort_child(id, out);
                }
            }
            Msg::Rollback { mark, .. } => {
                // The other side runs this transaction's code now, so none of it runs here:
                // whatever jobs exist wait for answers.
                let Some(entry) = self.txs.get_mut(&id) else { return };
                match entry.arrivals.get(mark as usize) {
                    Some(sp) => out.push(Out::Rollback(entry.tx.clone(), sp.clone())),
                    None => out.push(deviation(format!(
                        "a Rollback to message {mark}, but only {} arrived",
                        entry.arrivals.len()
                    ))),
                }
            }
            Msg::WoundMe { .. } => {
                if let Some(entry) = self.txs.get(&id).filter(|e| e.parent) {
                    out.push(Out::Wound(entry.tx.clone()));
                }
            }
            Msg::TokenAsk { prio, wound, .. } => {
                if let Err(why) = check_priority(prio) {
                    out.push(deviation(why));
                    return;
                }
                out.push(Out::Observe(prio));
                if !self.token.here {
                    // It crossed the token on its way there.
                    return;
                }
                if self.token.requested.is_none_or(|(r, _)| prio < r) {
                    self.token.requested = Some((prio, id));
                }
                if wound {
                    self.wound_users_younger_than(prio, out);
                }
                self.give_token(out);
            }
            Msg::TokenGive { .. } => {
                if self.token.here {
                    out.push(deviation("the admission token, which this side already holds".into()));
                    return;
                }
                self.token.here = true;
                self.token.asked = None;
                // The roots that waited for it are admitted now, before an ask from the
                // other side that may come right behind it could take it back: it came for
                // them. (A root admitted here is parked in its wait for the token: it
                // cannot be committing while the driver registers the link.)
                let mut waiting = std::mem::take(&mut self.token.waiting);
                waiting.sort_by_key(|(w, _)| w.priority());
                for (tx, _) in waiting.iter().filter(|(w, _)| w.is_running()) {
                    self.admit_user(tx, out);
                }
                out.push(Out::Admit);
            }
        }
    }

    /// The entry of transaction `id` for a message; `starts` when the message may start the
    /// transaction here.
    fn entry_for(
        &mut self,
        id: TxId,
        prio: Priority,
        from_parent: bool,
        starts: bool,
        out: &mut Outs<H>,
    ) -> Option<&mut Entry<H>> {
        if !self.txs.contains_key(&id) {
            if !starts || self.ended.contains(&id) {
                // About a transaction that ended here (or a late part of one): stale.
                return None;
            }
            self.stats.child_txs += 1;
            let tx = H::Tx::child(id, prio);
            let entry = Entry::new(tx.clone(), false);
            out.push(Out::Joined { tx, parent: false, sent: entry.sent.clone() });
            self.txs.insert(id, entry);
        }
        let entry = self.txs.get_mut(&id).expect("present");
        if entry.parent == from_parent {
            out.push(deviation(format!("both sides claim to be the parent of transaction {id:?}")));
            return None;
        }
        Some(entry)
    }

    #[allow(clippy::too_many_arguments)]
    fn frame_answer(
        &mut self,
        id: TxId,
        from_parent: bool,
        frame: u64,
        vote: bool,
        locals: Option<Vec<H::Value>>,
        peered: PeeredData<H::Value>,
        raised: Option<Exception>,
        out: &mut Outs<H>,
    ) {
        if let Err(why) = self.check_peered(&peered) {
            out.push(deviation(why));
            return;
        }
        let sequences = &self.sequences;
        let Some(entry) = self.txs.get_mut(&id) else { return };
        if entry.parent == from_parent {
            out.push(deviation(format!("both sides claim to be the parent of transaction {id:?}")));
            return;
        }
        let Some(waiter) = entry.waiters.remove(&frame) else {
            out.push(deviation(format!("the end of sequence run {frame}, which is not waiting")));
            return;
        };
        let expected = sequences.get(waiter.seq as usize).map_or(0, |s| s.locals as usize);
        let reply = match (locals, raised) {
            (Some(locals), _) if locals.len() != expected => {
                out.push(deviation(format!(
                    "a sequence's end carries {} values, not {expected}",
                    locals.len()
                )));
                return;
            }
            (Some(locals), _) => Reply::Done(locals, peered),
            (None, Some(e)) => Reply::Raise(e, peered),
            (None, None) => Reply::Aborted,
        };
        if entry.parent {
            entry.child_voted = vote;
        }
        entry.arrived();
        out.push(Out::Answer(waiter.answer, reply));
    }

    fn check_work(
        &self,
        id: TxId,
        frame: u64,
        seq: u32,
        block: u32,
        locals: &[H::Value],
        peered: &PeeredData<H::Value>,
    ) -> Result<(), String> {
        let Some(info) = self.sequences.get(seq as usize) else {
            return Err(format!("unknown sequence number {seq}"));
        };
        let starter = (frame & 1) as usize;
        if !info.starters[starter] {
            return Err(format!("sequence {} cannot be started by that side", info.name));
        }
        if block == 0 || block >= info.blocks {
            return Err(format!("sequence {} has no block {block} to run here", info.name));
        }
        let runs_on_starter = block.is_multiple_of(2);
        let here_is_starter = starter == usize::from(self.side & 1);
        if runs_on_starter != here_is_starter {
            return Err(format!("block {block} of sequence {} does not run on this side", info.name));
        }
        if here_is_starter
            && self.txs.get(&id).is_none_or(|e| e.waiters.get(&frame).is_none_or(|w| w.seq != seq))
            && !self.ended.contains(&id)
        {
            return Err(format!("block {block} of a run of sequence {} this side did not start", info.name));
        }
        if locals.len() != info.locals as usize {
            return Err(format!(
                "sequence {} carries {} values, the message has {}",
                info.name,
                info.locals,
                locals.len()
            ));
        }
        self.check_peered(peered)
    }

    fn check_peered(&self, peered: &PeeredData<H::Value>) -> Result<(), String> {
        match peered.iter().find(|(slot, _)| *slot >= self.peered) {
            Some((slot, _)) => {
                Err(format!("peered variable {slot} does not exist (there are {})", self.peered))
            }
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    //! The engine driven by hand: events in, outputs checked, no tasks and no sockets.

    use std::cell::Cell;
    use std::rc::Rc;

    use super::*;

    /// The tests' driver: fake transactions, numbers for values, numbers for waiters.
    struct Fake;

    impl Host for Fake {
        type Tx = FakeTx;
        type Value = i64;
        type Waiter = u32;
    }

    type Engine = super::Engine<Fake>;
    type Out = super::Out<Fake>;
    type Outs = super::Outs<Fake>;
    type Msg = super::Msg<i64>;
    type Reply = super::Reply<i64>;
    type BlockResult = super::BlockResult<i64>;
    type PeeredData = super::PeeredData<i64>;

    /// A transaction with an identity, a priority and a state, and no data: what the
    /// engine may do to it is recorded in its state.
    #[derive(Clone)]
    struct FakeTx(Rc<FakeState>);

    struct FakeState {
        id: TxId,
        priority: Priority,
        state: Cell<&'static str>,
        savepoints: Cell<usize>,
    }

    thread_local! {
        /// A fake clock: later transactions are younger.
        static NEXT: Cell<u64> = const { Cell::new(1) };
    }

    impl FakeTx {
        /// A new root transaction, younger than every one before it.
        fn root() -> FakeTx {
            let n = NEXT.with(|c| c.replace(c.get() + 1));
            FakeTx::child(TxId { origin: 7, n }, Priority::from_parts(n, 7))
        }
    }

    impl Txn for FakeTx {
        type Savepoint = usize;

        fn id(&self) -> TxId {
            self.0.id
        }

        fn priority(&self) -> Priority {
            self.0.priority
        }

        fn child(id: TxId, priority: Priority) -> FakeTx {
            FakeTx(Rc::new(FakeState { id, priority, state: Cell::new("active"), savepoints: Cell::new(0) }))
        }

        fn unguarded(&self) -> FakeTx {
            self.clone()
        }

        fn savepoint(&self) -> usize {
            self.0.savepoints.replace(self.0.savepoints.get() + 1)
        }

        fn state_name(&self) -> &'static str {
            self.0.state.get()
        }

        fn try_prepare(&self) -> bool {
            self.0.state.set("prepared");
            true
        }

        fn resume(&self) {
            self.0.state.set("active");
        }

        fn is_prepared(&self) -> bool {
            self.0.state.get() == "prepared"
        }

        fn is_running(&self) -> bool {
            self.0.state.get() == "active"
        }
    }

    /// The reply given to waiter `w` among `out`, if any.
    fn answer(out: &[Out], w: u32) -> Option<&Reply> {
        out.iter().find_map(|o| match o {
            Out::Answer(x, r) if *x == w => Some(r),
            _ => None,
        })
    }

    fn seqs() -> Vec<SequenceInfo> {
        vec![
            SequenceInfo { name: "Two", blocks: 2, locals: 1, starters: [true, false] },
            SequenceInfo { name: "Four", blocks: 4, locals: 0, starters: [true, false] },
        ]
    }

    fn pair() -> (Engine, Engine) {
        (Engine::new(0, seqs(), 2), Engine::new(1, seqs(), 2))
    }

    fn sends(out: &[Out]) -> Vec<Msg> {
        out.iter()
            .filter_map(|o| match o {
                Out::Send(m) => Some(m.clone()),
                _ => None,
            })
            .collect()
    }

    fn one_send(out: Outs) -> Msg {
        let mut s = sends(&out);
        assert_eq!(s.len(), 1, "expected one message, got {s:?}");
        s.remove(0)
    }

    fn closed(out: &[Out]) -> Option<String> {
        out.iter().find_map(|o| match o {
            Out::Close(message) => Some(message.clone()),
            _ => None,
        })
    }

    /// A block job: transaction, frame, sequence, block.
    type BlockJob = (TxId, u64, u32, u32);

    /// Delivers `msg` to `to`; returns the block job it starts, if any, and all outputs.
    fn deliver(to: &mut Engine, msg: Msg) -> (Option<BlockJob>, Outs) {
        let mut out = Outs::new();
        to.received(msg, &mut out);
        let job = out.iter().find_map(|o| match o {
            Out::Run(Job::Block { tx, frame, seq, block, .. }) => Some((tx.id(), *frame, *seq, *block)),
            _ => None,
        });
        (job, out)
    }

    #[test]
    fn a_k_block_sequence_costs_k_plus_one_messages_when_it_ends_on_the_partner() {
        for (seq, k) in [(0u32, 2u32), (1, 4)] {
            let (mut a, mut b) = pair();
            let root = FakeTx::root();
            let mut out = Outs::new();
            let locals = vec![0; seqs()[seq as usize].locals as usize];
            a.start_frame(&root, seq, locals, vec![], 1, &mut out).expect("open");
            let mut msg = one_send(out);
            let ended;
            let mut messages = 1;
            // Alternate: each side runs the block it is sent and answers.
            let mut at_b = true;
            loop {
                let (engine, _other) = if at_b { (&mut b, &mut a) } else { (&mut a, &mut b) };
                let (job, out) = deliver(engine, msg.clone());
                if let Some((tx, frame, s, block)) = job {
                    let mut out = Outs::new();
                    let locals = vec![0; seqs()[s as usize].locals as usize];
                    engine.block_finished(tx, frame, s, block, BlockResult::Ok(locals, vec![]), &mut out);
                    let s = sends(&out);
                    if s.is_empty() {
                        // Ended where it started: answered locally.
                        ended = matches!(answer(&out, 1), Some(Reply::Done(..)));
                        break;
                    }
                    messages += s.len();
                    msg = s[0].clone();
                    at_b = !at_b;
                } else {
                    ended = matches!(answer(&out, 1), Some(Reply::Done(..)));
                    break;
                }
            }
            assert!(ended, "the waiting call got the sequence's end");
            // The child's last message carried its vote: no prepare round.
            let mut out = Outs::new();
            assert!(matches!(a.prepare(&root, vec![], || 2, &mut out), Ok(false)));
            a.finish(root.id(), true, &mut out);
            let commit = one_send(out);
            assert!(matches!(commit, Msg::Commit { .. }));
            messages += 1;
            let (_, out) = deliver(&mut b, commit);
            assert!(out.iter().any(|o| matches!(o, Out::Commit(_))));
            assert_eq!(messages as u32, k + 1, "{k}-block sequence");
            assert_eq!(a.in_flight() + b.in_flight(), 0);
        }
    }

    #[test]
    fn peered_changes_after_the_vote_need_a_prepare_round() {
        let (mut a, mut b) = pair();
        let root = FakeTx::root();
        let mut out = Outs::new();
        a.enlist(&root, &mut out);
        assert!(matches!(out.as_slice(), [Out::Joined { parent: true, .. }]));
        let mut out = Outs::new();
        assert!(a.prepare(&root, vec![(1, 5)], || 2, &mut out).expect("open"), "a round");
        let prepare = one_send(out);
        let (_, out) = deliver(&mut b, prepare);
        assert!(out.iter().any(|o| matches!(o, Out::Run(Job::Prepare { peered, .. }) if peered.len() == 1)));
        let mut out = Outs::new();
        b.prepare_finished(root.id(), true, &mut out);
        let vote = one_send(out);
        assert!(matches!(vote, Msg::Vote { .. }));
        let (_, out) = deliver(&mut a, vote);
        assert!(matches!(answer(&out, 2), Some(Reply::Voted)));
    }

    #[test]
    fn messages_that_do_not_fit_close_the_connection() {
        let tx = FakeTx::root();
        let work = |frame, seq, block, locals: usize, peered: PeeredData| Msg::Work {
            tx: tx.id(),
            prio: tx.priority(),
            from_parent: true,
            frame,
            seq,
            block,
            locals: vec![0; locals],
            peered,
            vote: false,
        };
        let cases = [
            (work(0, 7, 1, 1, vec![]), "unknown sequence"),
            (work(0, 0, 2, 1, vec![]), "no block 2"),
            (work(0, 1, 2, 0, vec![]), "does not run on this side"),
            (work(1, 0, 1, 1, vec![]), "cannot be started"),
            (work(0, 0, 1, 3, vec![]), "carries 1 values"),
            (work(0, 0, 1, 1, vec![(9, 0)]), "peered variable 9"),
            (Msg::Commit { tx: tx.id() }, "unknown transaction"),
        ];
        for (msg, expected) in cases {
            let (_, mut b) = pair();
            let (_, out) = deliver(&mut b, msg);
            let why = closed(&out).unwrap_or_else(|| panic!("no deviation for {expected}"));
            assert!(why.contains(expected), "{why:?} should mention {expected:?}");
        }
    }

    #[test]
    fn stale_messages_about_ended_transactions_are_ignored() {
        let (mut a, _) = pair();
        let tx = FakeTx::root();
        for msg in [
            Msg::Done {
                tx: tx.id(),
                from_parent: false,
                frame: 0,
                locals: vec![],
                peered: vec![],
                vote: true,
            },
            Msg::Vote { tx: tx.id() },
            Msg::Aborted { tx: tx.id() },
            Msg::Abort { tx: tx.id() },
            Msg::WoundMe { tx: tx.id() },
        ] {
            let (_, out) = deliver(&mut a, msg);
            assert!(out.is_empty(), "a stale message caused output");
        }
    }

    #[test]
    fn an_idle_child_asks_its_parent_to_wound_it_and_a_busy_one_aborts_alone() {
        let (mut a, mut b) = pair();
        let root = FakeTx::root();
        let mut out = Outs::new();
        a.start_frame(&root, 1, vec![], vec![], 1, &mut out).expect("open");
        let (job, _) = deliver(&mut b, one_send(out));
        let (id, frame, seq, block) = job.expect("a block job");
        // Busy: wounded while running block 1 → aborts alone and says so.
        let mut out = Outs::new();
        b.block_finished(id, frame, seq, block, BlockResult::Aborted, &mut out);
        assert!(out.iter().any(|o| matches!(o, Out::Abort(_))));
        let aborted = one_send(out);
        assert!(matches!(aborted, Msg::Aborted { .. }));
        let (_, out) = deliver(&mut a, aborted);
        assert!(out.iter().any(|o| matches!(o, Out::Answer(_, Reply::Aborted))));
        assert!(out.iter().any(|o| matches!(o, Out::Wound(_))));

        // Idle after its vote: asks.
        let (mut a, mut b) = pair();
        let root = FakeTx::root();
        let mut out = Outs::new();
        a.start_frame(&root, 1, vec![], vec![], 1, &mut out).expect("open");
        let (job, _) = deliver(&mut b, one_send(out));
        let (id, frame, seq, block) = job.expect("a block job");
        let mut out = Outs::new();
        b.block_finished(id, frame, seq, block, BlockResult::Ok(vec![], vec![]), &mut out);
        assert!(matches!(one_send(out), Msg::Work { vote: true, block: 2, .. }));
        let mut out = Outs::new();
        b.wound_requested(id, &mut out);
        let ask = one_send(out);
        assert!(matches!(ask, Msg::WoundMe { .. }));
        let (_, out) = deliver(&mut a, ask);
        assert!(out.iter().any(|o| matches!(o, Out::Wound(_))));
        // The root aborts: the child is told.
        let mut out = Outs::new();
        a.finish(root.id(), false, &mut out);
        let (_, out) = deliver(&mut b, one_send(out));
        assert!(out.iter().any(|o| matches!(o, Out::Abort(_))));
        assert_eq!(b.in_flight(), 0);
    }

    #[test]
    fn an_abort_while_the_child_works_waits_for_its_block_to_stop() {
        let (mut a, mut b) = pair();
        let root = FakeTx::root();
        let mut out = Outs::new();
        a.start_frame(&root, 0, vec![0], vec![], 1, &mut out).expect("open");
        let (job, _) = deliver(&mut b, one_send(out));
        let (id, frame, seq, block) = job.expect("a block job");
        let mut out = Outs::new();
        a.finish(root.id(), false, &mut out);
        let (_, out) = deliver(&mut b, one_send(out));
        assert!(out.iter().any(|o| matches!(o, Out::ForceWound(_))));
        assert!(!out.iter().any(|o| matches!(o, Out::Abort(_))), "not while its block runs");
        let mut out = Outs::new();
        b.block_finished(id, frame, seq, block, BlockResult::Aborted, &mut out);
        assert!(out.iter().any(|o| matches!(o, Out::Abort(_))));
        assert!(sends(&out).is_empty(), "the parent already knows");
    }

    #[test]
    fn losing_the_connection_fails_waiting_calls_and_presumes_abort() {
        let (mut a, mut b) = pair();
        let root = FakeTx::root();
        let mut out = Outs::new();
        a.start_frame(&root, 0, vec![0], vec![], 1, &mut out).expect("open");
        let (job, _) = deliver(&mut b, one_send(out));
        assert!(job.is_some());
        let mut out = Outs::new();
        a.lost("partner gone", &mut out);
        assert!(matches!(answer(&out, 1), Some(Reply::Lost(r)) if r == "partner gone"));
        let mut out = Outs::new();
        b.lost("partner gone", &mut out);
        // The child's block still runs: it is stopped, and undone once it has stopped.
        assert!(out.iter().any(|o| matches!(o, Out::ForceWound(_))));
        assert!(!out.iter().any(|o| matches!(o, Out::Abort(_))));
        let (id, frame, seq, block) = job.expect("a block job");
        let mut out = Outs::new();
        b.block_finished(id, frame, seq, block, BlockResult::Aborted, &mut out);
        assert!(out.iter().any(|o| matches!(o, Out::Abort(_))));
        assert!(sends(&out).is_empty());
        // Later sequences fail at once.
        let mut out = Outs::new();
        assert!(a.start_frame(&FakeTx::root(), 0, vec![], vec![], 3, &mut out).is_err());
    }

    #[test]
    fn a_priority_far_beyond_any_clock_is_a_deviation() {
        let (_, mut b) = pair();
        let tx = FakeTx::root();
        let far = Msg::Prepare { tx: tx.id(), prio: Priority::from_parts(u64::MAX, 1), peered: vec![] };
        let (_, out) = deliver(&mut b, far);
        assert!(closed(&out).is_some_and(|m| m.contains("priority clock")), "{:?}", closed(&out));
        assert!(!out.iter().any(|o| matches!(o, Out::Observe(_))), "the clock must not see it");
    }

    #[test]
    fn late_work_for_a_transaction_that_aborted_here_does_not_bring_it_back() {
        let (mut a, mut b) = pair();
        let root = FakeTx::root();
        let mut out = Outs::new();
        a.start_frame(&root, 1, vec![], vec![], 1, &mut out).expect("open");
        let first = one_send(out);
        let (job, _) = deliver(&mut b, first);
        let (id, frame, seq, block) = job.expect("a block job");
        let mut out = Outs::new();
        b.block_finished(id, frame, seq, block, BlockResult::Aborted, &mut out);
        assert_eq!(b.in_flight(), 0);
        // A later block of the same run, sent before the parent heard of the abort.
        let late = Msg::Work {
            tx: id,
            prio: root.priority(),
            from_parent: true,
            frame,
            seq,
            block: 3,
            locals: vec![],
            peered: vec![],
            vote: false,
        };
        let (job, out) = deliver(&mut b, late);
        // (Only its priority is noted, as of every message.)
        assert!(
            job.is_none() && out.iter().all(|o| matches!(o, Out::Observe(_))),
            "a stale message started work"
        );
        assert_eq!(b.in_flight(), 0);
        // And a first block can start a transaction only once.
        let again = Msg::Work {
            tx: id,
            prio: root.priority(),
            from_parent: true,
            frame,
            seq,
            block: 1,
            locals: vec![],
            peered: vec![],
            vote: false,
        };
        let (job, _) = deliver(&mut b, again);
        assert!(job.is_none());
    }

    #[test]
    fn a_sequence_end_with_the_wrong_amount_of_data_is_a_deviation() {
        let (mut a, mut b) = pair();
        let root = FakeTx::root();
        let mut out = Outs::new();
        a.start_frame(&root, 0, vec![0], vec![], 1, &mut out).expect("open");
        let (job, _) = deliver(&mut b, one_send(out));
        let (id, frame, _, _) = job.expect("a block job");
        let forged =
            Msg::Done { tx: id, from_parent: false, frame, locals: vec![], peered: vec![], vote: true };
        let (_, out) = deliver(&mut a, forged);
        assert!(closed(&out).is_some_and(|m| m.contains("carries 0 values")));
    }

    #[test]
    fn a_block_for_a_run_this_side_did_not_start_is_a_deviation() {
        let (mut a, _) = pair();
        let tx = FakeTx::root();
        // Side 0 is told to run block 2 of a run it supposedly started (frame parity 0).
        let forged = Msg::Work {
            tx: tx.id(),
            prio: tx.priority(),
            from_parent: true,
            frame: 0,
            seq: 1,
            block: 2,
            locals: vec![],
            peered: vec![],
            vote: false,
        };
        let (_, out) = deliver(&mut a, forged);
        assert!(closed(&out).is_some_and(|m| m.contains("did not start")));
    }

    // ------------------------------------------------------------ the admission token

    /// Whether `out` wounds `tx`.
    fn wounds(out: &[Out], tx: &FakeTx) -> bool {
        out.iter().any(|o| matches!(o, Out::Wound(t) if t.id() == tx.id()))
    }

    /// Side 0 holds the token at first: its roots are admitted at once (and join the
    /// connection, so that their end is heard); a root of side 1 is refused, and side 1
    /// asks for the token with its priority, once.
    #[test]
    fn the_token_starts_on_side_0_and_the_other_side_asks_for_it() {
        let (mut a, mut b) = pair();
        assert!(a.holds_token() && !b.holds_token());
        let (ra, rb) = (FakeTx::root(), FakeTx::root());
        let mut out = Outs::new();
        assert!(a.admit(&ra, false, &mut out));
        assert!(matches!(out.as_slice(), [Out::Joined { parent: true, .. }]));
        let mut out = Outs::new();
        assert!(!b.admit(&rb, false, &mut out));
        match one_send(out) {
            Msg::TokenAsk { tx, prio, wound } => {
                assert_eq!((tx, prio, wound), (rb.id(), rb.priority(), false));
            }
            other => panic!("expected an ask, got {other:?}"),
        }
        let mut out = Outs::new();
        assert!(!b.admit(&rb, false, &mut out), "asked again: still refused");
        assert!(sends(&out).is_empty(), "one ask is enough");
    }

    /// The holder hands the token over once its admitted roots have ended (after their own
    /// messages), admits no root younger than the ask meanwhile, and the roots that waited
    /// on the other side are admitted as it arrives, before an ask right behind it could
    /// take it back; that ask waits for them.
    #[test]
    fn the_token_goes_over_when_the_holders_roots_end_and_admits_the_waiters() {
        let (mut a, mut b) = pair();
        let ra = FakeTx::root();
        assert!(a.admit(&ra, false, &mut Outs::new()));
        let rb = FakeTx::root();
        let mut out = Outs::new();
        assert!(!b.admit(&rb, false, &mut out));
        let ask = one_send(out);
        let (_, out) = deliver(&mut a, ask);
        assert!(sends(&out).is_empty(), "a root admitted on side 0 has not ended");
        assert!(!wounds(&out, &ra), "a waiting root that holds nothing wounds nobody");
        // A root of side 0 younger than the ask is refused.
        let late = FakeTx::root();
        let mut out = Outs::new();
        assert!(!a.admit(&late, false, &mut out));
        assert!(sends(&out).is_empty(), "side 0 holds the token: nothing to ask");
        // The admitted root ends: the token goes, and side 0 asks for it back at once.
        let mut out = Outs::new();
        a.finish(ra.id(), true, &mut out);
        let msgs = sends(&out);
        assert!(matches!(msgs.as_slice(), [Msg::TokenGive { .. }, Msg::TokenAsk { .. }]), "{msgs:?}");
        assert!(!a.holds_token());
        // Side 1 gets the token and admits its waiter; the ask behind it waits for that root.
        let mut out = Outs::new();
        b.received(msgs[0].clone(), &mut out);
        assert!(b.holds_token());
        assert!(out.iter().any(|o| matches!(o, Out::Admit)));
        assert!(out.iter().any(|o| matches!(o, Out::Joined { tx, .. } if tx.id() == rb.id())));
        let (_, out) = deliver(&mut b, msgs[1].clone());
        assert!(sends(&out).is_empty(), "the waiter admitted here has not ended");
        assert!(b.admit(&rb, false, &mut Outs::new()), "the waiter is admitted");
        let mut out = Outs::new();
        b.finish(rb.id(), true, &mut out);
        assert!(matches!(sends(&out).as_slice(), [Msg::TokenGive { .. }]));
    }

    /// A waiting root that holds locks asks with `wound`: the holder wounds its admitted
    /// roots younger than it (they might wait for those locks), not the older ones.
    #[test]
    fn an_ask_from_a_root_that_holds_locks_wounds_younger_admitted_roots() {
        let (mut a, mut b) = pair();
        let older = FakeTx::root();
        assert!(a.admit(&older, false, &mut Outs::new()));
        let rb = FakeTx::root();
        let younger = FakeTx::root();
        assert!(a.admit(&younger, false, &mut Outs::new()));
        let mut out = Outs::new();
        assert!(!b.admit(&rb, true, &mut out));
        let ask = one_send(out);
        assert!(matches!(ask, Msg::TokenAsk { wound: true, .. }));
        let (_, out) = deliver(&mut a, ask);
        assert!(wounds(&out, &younger) && !wounds(&out, &older));
    }

    /// On a closed connection every root is admitted, and the waiting ones are told to ask
    /// again; a root admitted only to read needs no vote, even once the connection is gone;
    /// a token given to the side that holds it is a deviation.
    #[test]
    fn a_lost_connection_admits_everyone_and_a_second_token_is_a_deviation() {
        let (mut a, mut b) = pair();
        let reader = FakeTx::root();
        assert!(a.admit(&reader, false, &mut Outs::new()));
        a.lost("cut", &mut Outs::new());
        assert!(a.voted(reader.id()), "nothing was sent about it: nothing to vote on");
        assert!(matches!(a.prepare(&reader, Vec::new(), || 9, &mut Outs::new()), Ok(false)));
        let (mut a, _) = pair();
        let rb = FakeTx::root();
        assert!(!b.admit(&rb, false, &mut Outs::new()));
        let mut out = Outs::new();
        b.lost("cut", &mut out);
        assert!(out.iter().any(|o| matches!(o, Out::Admit)));
        assert!(b.admit(&rb, false, &mut Outs::new()));
        let (_, out) = deliver(&mut a, Msg::TokenGive { tx: rb.id() });
        assert!(closed(&out).is_some_and(|m| m.contains("admission token")));
    }
}
