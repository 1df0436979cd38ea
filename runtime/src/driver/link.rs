//! The driver half of a pair's connection: runs the [`Engine`]'s outputs, runs the jobs it
//! asks for (blocks and prepares) as tasks, and gives generated code its one entry point,
//! [`Link::sequence`].
//!
//! A [`Transport`] carries messages to the other side. The in-process transport
//! ([`in_process_pair`]) hands each message straight to the partner's engine, as copies that
//! share nothing with the sender; the TCP transport encodes them into frames. Everything else
//! (the commit protocol, conflicts, savepoints) is the engine's and the same for both.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, Weak};

use std::sync::atomic::Ordering as AtomicOrdering;

use parking_lot::Mutex;

use crate::core::endpoint::EndpointCore;
use crate::core::error::{Abort, Error, Exception, Flow, Raise};
use crate::core::tx::{Tx, TxId, TxLink};
use crate::core::value::Value;
use crate::engine::{BlockResult, Engine, Job, Msg, Out, Outs, PeeredData, Reply, SequenceInfo, Side, Stats};

/// The future of one block of a sequence.
pub type BlockFuture<'a> = Pin<Box<dyn Future<Output = Flow<()>> + Send + 'a>>;

/// What generated code implements per endpoint so that the partner can run its blocks.
pub trait Program: Send + Sync + 'static {
    /// Runs block `block` of sequence `seq` (a block of this endpoint) in `tx`, reading and
    /// writing the sequence data `locals`.
    fn run_block<'a>(
        &'a self,
        tx: &'a Tx,
        seq: u32,
        block: u32,
        locals: &'a mut Vec<Value>,
    ) -> BlockFuture<'a>;
}

/// Carries messages to the other side of a pair.
pub trait Transport: Send + Sync {
    /// Sends `msg` (in order with the messages sent before it). It may wait in a buffer
    /// until the next [`Transport::flush`].
    fn send(&self, msg: Msg);
    /// Sends what [`Transport::send`] buffered; messages sent together may share one write.
    /// `busy` says that several transactions are in flight over the connection: the
    /// transport may then wait a moment to gather more messages into one write.
    fn flush(&self, busy: bool) {
        let _ = busy;
    }
    /// Sends a control message of the graceful stop.
    fn control(&self, control: Control);
    /// Closes the connection because of `error`.
    fn close(&self, error: &Error);
    /// When too much waits for the partner (a resumable connection during an outage, or a
    /// partner slow to confirm): what a new sequence waits for before it starts.
    fn room(&self) -> Option<Room> {
        None
    }
    /// Bytes waiting for the partner: queued, or sent and not yet confirmed (a resumable
    /// connection).
    fn backlog(&self) -> usize {
        0
    }
    /// The connection's state, when it has one the host can watch.
    fn state(&self) -> Option<tokio::sync::watch::Receiver<crate::driver::tcp::ConnectionState>> {
        None
    }
    /// Checks the sequence data a finished sequence `seq` brought back against the
    /// protocol's types (a connection to a peer that may not be trusted does).
    fn check_results(&self, seq: u32, locals: &[Value]) -> Result<(), String> {
        let _ = (seq, locals);
        Ok(())
    }
    /// What the connection carried so far.
    fn traffic(&self) -> crate::core::stats::Traffic {
        crate::core::stats::Traffic::default()
    }
}

/// What a new sequence waits for when a connection's backlog is full: room, or the error
/// that ended the connection.
pub type Room = Pin<Box<dyn Future<Output = Result<(), Error>> + Send>>;

/// The messages of the graceful stop handshake (the book's runtime chapter, "Connections over TCP").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// The sender is stopping: stop taking host calls, finish the ones running, answer
    /// [`Control::StopAck`].
    Stop,
    /// The receiver of a [`Control::Stop`] has stopped.
    StopAck,
}

/// One side of a pair's connection.
pub(crate) struct LinkShared {
    me: Weak<LinkShared>,
    core: Arc<EndpointCore>,
    /// The endpoint's code. Weak: the endpoint owns its link, not the other way round, so
    /// dropping the endpoint drops the link and closes the connection.
    program: Weak<dyn Program>,
    engine: Mutex<Engine>,
    transport: OnceLock<Arc<dyn Transport>>,
    error: Mutex<Option<Error>>,
    /// Messages made by the engine, waiting to be handed to the transport in order.
    outbox: Mutex<std::collections::VecDeque<Msg>>,
    /// The drainer's second queue.
    spare: Mutex<std::collections::VecDeque<Msg>>,
    draining: std::sync::atomic::AtomicBool,
    /// How many messages the outbox holds (read without its lock).
    queued: std::sync::atomic::AtomicUsize,
    /// Set when the partner acknowledged our stop, or the connection is gone.
    stop_done: tokio::sync::watch::Sender<bool>,
    /// Whether several transactions were in flight at the last engine visit.
    busy: std::sync::atomic::AtomicBool,
    /// Roots waiting for the admission token (`Engine::admit`): woken by [`Out::Admit`].
    token_waiters: Mutex<Vec<std::task::Waker>>,
}

/// A handle on one side of a pair's connection (cheap to clone).
#[derive(Clone)]
pub struct Link(Arc<LinkShared>);

/// A link that does not keep its endpoint's connection alive (held by the connection).
#[derive(Clone)]
pub(crate) struct WeakLink(Weak<LinkShared>);

impl WeakLink {
    pub(crate) fn upgrade(&self) -> Option<Link> {
        self.0.upgrade().map(Link)
    }
}

impl Link {
    /// The link of endpoint `core`, playing `side`, with the protocol's `sequences`. Its
    /// transport is attached with [`Link::attach`].
    pub fn new(
        core: Arc<EndpointCore>,
        side: Side,
        sequences: Vec<SequenceInfo>,
        program: Arc<dyn Program>,
    ) -> Link {
        let peered = core.peered_count() as u32;
        let shared = Arc::new_cyclic(|me| LinkShared {
            me: me.clone(),
            core: core.clone(),
            program: Arc::downgrade(&program),
            engine: Mutex::new(Engine::new(side, sequences, peered)),
            transport: OnceLock::new(),
            error: Mutex::new(None),
            outbox: Mutex::new(std::collections::VecDeque::new()),
            spare: Mutex::new(std::collections::VecDeque::new()),
            draining: std::sync::atomic::AtomicBool::new(false),
            queued: std::sync::atomic::AtomicUsize::new(0),
            stop_done: tokio::sync::watch::Sender::new(false),
            busy: std::sync::atomic::AtomicBool::new(false),
            token_waiters: Mutex::new(Vec::new()),
        });
        let as_link: Arc<dyn TxLink> = shared.clone();
        // An endpoint joins one partner in its life (a later link is never attached).
        let _ = core.link.set(Arc::downgrade(&as_link));
        Link(shared)
    }

    pub(crate) fn downgrade(&self) -> WeakLink {
        WeakLink(Arc::downgrade(&self.0))
    }

    /// Attaches the transport (once).
    pub fn attach(&self, transport: Arc<dyn Transport>) {
        let _ = self.0.transport.set(transport);
    }

    /// The endpoint this side belongs to.
    pub fn core(&self) -> &Arc<EndpointCore> {
        &self.0.core
    }

    /// Message counts so far.
    pub fn stats(&self) -> Stats {
        self.0.engine.lock().stats()
    }

    /// The engine's transactions in flight, one line each (for diagnostics).
    pub fn describe(&self) -> String {
        self.0.engine.lock().describe()
    }

    /// How many transactions are in flight over the connection.
    pub fn in_flight(&self) -> usize {
        self.0.engine.lock().in_flight()
    }

    /// The connection's state, when the transport has one (a TCP connection); `None` in
    /// process.
    pub fn connection(&self) -> Option<tokio::sync::watch::Receiver<crate::driver::tcp::ConnectionState>> {
        self.0.transport.get().and_then(|t| t.state())
    }

    /// Bytes waiting for the partner ([`Transport::backlog`]).
    pub fn backlog(&self) -> usize {
        self.0.transport.get().map_or(0, |t| t.backlog())
    }

    /// What the connection carried so far ([`Transport::traffic`]).
    pub(crate) fn traffic(&self) -> crate::core::stats::Traffic {
        self.0.transport.get().map(|t| t.traffic()).unwrap_or_default()
    }

    /// Why the connection closed, if it did.
    pub fn error(&self) -> Option<Error> {
        self.0.error.lock().clone()
    }

    /// A message arrived from the other side.
    pub fn receive(&self, msg: Msg) {
        self.0.with_engine(|e, out| e.received(msg, out));
    }

    /// The connection was lost or closed: every transaction over it fails, and so does every
    /// later sequence or peered write.
    pub fn lost(&self, error: Error) {
        self.0.lost(error);
    }

    /// A control message of the stop handshake arrived from the other side.
    pub fn control(&self, control: Control) {
        match control {
            Control::Stop => {
                let me = self.0.clone();
                tokio::spawn(async move {
                    // The partner is stopping: so is this endpoint. Calls running here may
                    // still need the partner, which serves them until it has our answer.
                    let first = me.core.life.begin_stop();
                    me.core.life.idle().await;
                    if let Some(t) = me.transport.get() {
                        t.control(Control::StopAck);
                        t.flush(false);
                    }
                    me.lost(Error::Stopped);
                    if first {
                        me.core.life.finish_stop();
                    }
                });
            }
            Control::StopAck => {
                self.0.stop_done.send_replace(true);
            }
        }
    }

    /// The graceful stop of the pair, from this side (whose host calls have finished):
    /// tells the partner, waits until it has stopped or is gone, and closes the connection.
    pub async fn stop(&self) {
        let mut done = self.0.stop_done.subscribe();
        if self.0.error.lock().is_none()
            && let Some(t) = self.0.transport.get()
        {
            t.control(Control::Stop);
            t.flush(false);
            let _ = done.wait_for(|d| *d).await;
        }
        self.0.lost(Error::Stopped);
        if let Some(t) = self.0.transport.get() {
            t.close(&Error::Stopped);
        }
    }

    /// Runs sequence `seq` in `tx`, started here, with copies of `args` (its parameters;
    /// its other values start as Nothing, and its first block gives them their starting
    /// values): its first block here, the others alternately on the partner and here.
    /// Returns its results: the `returns` values after the parameters in the final data.
    pub async fn sequence(&self, tx: &Tx, seq: u32, args: Vec<Value>, returns: usize) -> Flow<Vec<Value>> {
        let params = args.len();
        let data = self.sequence_data(tx, seq, args).await?;
        Ok(crate::exec::ops::seq_results(data, params, returns))
    }

    /// Runs sequence `seq` in `tx`, started here, with copies of `data` (missing values
    /// start as Nothing). Returns its final data.
    pub async fn sequence_data(&self, tx: &Tx, seq: u32, data: Vec<Value>) -> Flow<Vec<Value>> {
        let data = crate::exec::ops::copy_all(tx, data).await?;
        self.0.sequence(tx, seq, data).await
    }
}

fn lost_exception(reason: &str) -> Raise {
    Exception::network(reason.to_owned()).into()
}

impl LinkShared {
    fn arc(&self) -> Arc<LinkShared> {
        self.me.upgrade().expect("a link is alive while it is used")
    }

    /// The endpoint's code, unless the endpoint was dropped.
    fn program(&self) -> Flow<Arc<dyn Program>> {
        self.program.upgrade().ok_or_else(|| lost_exception("the endpoint was dropped"))
    }

    /// Runs `f` on the engine, then carries out its outputs. Messages go into the outbox
    /// while the engine is still locked, so they leave in the order the engine made them
    /// whatever thread carries them; everything else runs after the lock is released.
    fn with_engine<T>(&self, f: impl FnOnce(&mut Engine, &mut Outs) -> T) -> T {
        let mut out = Outs::new();
        let result = {
            let mut engine = self.engine.lock();
            let result = f(&mut engine, &mut out);
            self.busy.store(engine.in_flight() > 1, AtomicOrdering::Relaxed);
            if out.iter().any(|o| matches!(o, Out::Send(_))) {
                let mut outbox = self.outbox.lock();
                out.retain_mut(|o| match o {
                    Out::Send(msg) => {
                        outbox.push_back(std::mem::replace(msg, Msg::Vote { tx: msg.tx() }));
                        self.queued.fetch_add(1, AtomicOrdering::SeqCst);
                        false
                    }
                    _ => true,
                });
            }
            result
        };
        self.run(&mut out);
        self.flush();
        result
    }

    /// Hands the outbox to the transport, in order; one thread at a time does it. The
    /// counter and the flag are sequentially consistent: a thread that queues a message and
    /// finds another draining knows that one will see its message after it stops draining.
    fn flush(&self) {
        loop {
            if self.queued.load(AtomicOrdering::SeqCst) == 0 {
                return;
            }
            if self.draining.swap(true, AtomicOrdering::SeqCst) {
                return; // another thread is draining and will see our messages
            }
            // The messages queued so far, taken in one go (the drainer alone uses the
            // spare queue, so its capacity is kept from one drain to the next).
            let mut batch = std::mem::take(&mut *self.spare.lock());
            loop {
                std::mem::swap(&mut *self.outbox.lock(), &mut batch);
                if batch.is_empty() {
                    break;
                }
                self.queued.fetch_sub(batch.len(), AtomicOrdering::SeqCst);
                match self.transport.get() {
                    Some(t) => batch.drain(..).for_each(|msg| t.send(msg)),
                    None => batch.clear(),
                }
            }
            *self.spare.lock() = batch;
            if let Some(t) = self.transport.get() {
                t.flush(self.busy.load(AtomicOrdering::Relaxed));
            }
            self.draining.store(false, AtomicOrdering::SeqCst);
        }
    }

    /// Carries out the engine's outputs (taken from `out`, which stays in place: moving the
    /// whole inline vector costs more than draining it).
    fn run(&self, out: &mut Outs) {
        for o in out.drain(..) {
            match o {
                Out::Send(msg) => {
                    self.outbox.lock().push_back(msg);
                    self.queued.fetch_add(1, AtomicOrdering::SeqCst);
                }
                Out::Run(job) => {
                    let me = self.arc();
                    run_soon(Box::pin(async move { me.job(job).await }));
                }
                Out::Answer(waiter, reply) => {
                    let _ = waiter.send(reply);
                }
                Out::Commit(tx) => tx.commit_decided(),
                Out::Abort(tx) => tx.abort_shared(),
                Out::Wound(tx) => tx.wound(),
                Out::Observe(priority) => self.core.clock.observe(priority),
                Out::Admit => {
                    for w in std::mem::take(&mut *self.token_waiters.lock()) {
                        w.wake();
                    }
                }
                Out::ForceWound(tx) => tx.force_wound(),
                Out::Rollback(tx, sp) => tx.rollback_from(sp, self),
                Out::Close(message) => self.deviated(message),
                Out::Joined { tx, parent, sent } => {
                    tx.add_link(self.arc(), parent, sent);
                    // Admitted for the token while it was being aborted (it waited, and the
                    // token came as it gave up): its abort may have run before the link was
                    // there, so the engine hears of its end here (twice is harmless).
                    if parent && tx.is_ending() {
                        let id = tx.id();
                        self.with_engine(|e, out| e.finish(id, false, out));
                    }
                    if !parent {
                        let me: Weak<dyn TxLink> = self.me.clone();
                        tx.set_wound_hook(me);
                    }
                }
            }
        }
    }

    fn lost(&self, error: Error) {
        let reason = match &error {
            Error::Network { message } => message.clone(),
            other => other.to_string(),
        };
        {
            let mut slot = self.error.lock();
            if slot.is_none() {
                *slot = Some(error);
            }
        }
        self.stop_done.send_replace(true);
        self.with_engine(|e, out| e.lost(&reason, out));
    }

    /// The partner broke the protocol: close the connection with the reason.
    fn deviated(&self, message: String) {
        let error = Error::ProtocolDeviation { message };
        tracing::warn!(endpoint = self.core.id(), %error, "closing the connection");
        if let Some(t) = self.transport.get() {
            t.close(&error);
        }
        self.lost(error);
    }

    /// The peered variables `tx` changed here and has not sent yet, as private copies taken
    /// under the transaction's locks.
    async fn take_dirty(&self, tx: &Tx) -> Flow<PeeredData> {
        let slots = tx.take_dirty(self.core.serial);
        let mut out = Vec::with_capacity(slots.len());
        for slot in slots {
            // Locked: the write may have gone through another reference to the data (a
            // global aliasing it), without the variable itself being locked.
            let value = tx.read(&self.core, slot as usize).await?;
            let copy = match value {
                Value::List(_) | Value::Map(_) | Value::Struct(_) => tx.deep_copy(&value).await?,
                other => other,
            };
            out.push((slot, copy));
        }
        Ok(out)
    }

    async fn apply(&self, tx: &Tx, peered: PeeredData) -> Flow<()> {
        for (slot, value) in peered {
            tx.apply_peered(&self.core, slot as usize, value).await?;
        }
        Ok(())
    }

    fn join(&self, tx: &Tx) {
        self.with_engine(|e, out| e.enlist(tx, out));
    }

    async fn sequence(&self, tx: &Tx, seq: u32, locals: Vec<Value>) -> Flow<Vec<Value>> {
        let info = {
            let engine = self.engine.lock();
            if let Some(reason) = engine.closed() {
                return Err(lost_exception(reason));
            }
            engine.sequence(seq)
        };
        let Some(info) = info else {
            return Err(Exception::application(format!("no sequence number {seq}")).into());
        };
        self.core.stats.sequence();
        // The sequence's span (`waldo.sequence`, inside its host call's): open while the
        // sequence runs. It is not entered across the waits (the call's span is).
        let _span = crate::exec::observe::spans()
            .then(|| tracing::debug_span!("waldo.sequence", sequence = info.name, blocks = info.blocks))
            .filter(|span| !span.is_disabled())
            .map(Box::new);
        let mut locals = locals;
        locals.resize(info.locals as usize, Value::Nothing);
        // The transaction joins the connection when it first sends over it (or writes peered
        // data, which enlists it at once).
        self.program()?.run_block(tx, seq, 0, &mut locals).await?;
        if info.blocks <= 1 {
            // The results go back as copies, as from a longer sequence.
            return crate::exec::ops::copy_all(tx, locals).await;
        }
        let locals = crate::exec::ops::copy_all(tx, locals).await?;
        let peered = self.take_dirty(tx).await?;
        let room = self.transport.get().and_then(|t| t.room());
        if let Some(room) = room {
            room.await.map_err(|e| lost_exception(&e.to_string()))?;
        }
        let (answer, waiter) = tokio::sync::oneshot::channel();
        self.with_engine(|e, out| e.start_frame(tx, seq, locals, peered, answer, out))
            .map_err(|(reason, _)| lost_exception(&reason))?;
        let reply = waiter.await.unwrap_or(Reply::Lost("the connection closed".into()));
        match reply {
            Reply::Done(locals, peered) => {
                if let Some(Err(message)) = self.transport.get().map(|t| t.check_results(seq, &locals)) {
                    self.deviated(message.clone());
                    return Err(lost_exception(&message));
                }
                self.apply(tx, peered).await?;
                Ok(locals)
            }
            Reply::Raise(exception, peered) => {
                self.apply(tx, peered).await?;
                Err(exception.into())
            }
            Reply::Aborted => Err(Abort::Wounded.into()),
            Reply::Lost(reason) => Err(lost_exception(&reason)),
            Reply::Voted => Err(Exception::application("a vote where a sequence's end was expected").into()),
        }
    }

    async fn job(self: Arc<Self>, job: Job) {
        match job {
            Job::Block { tx, frame, seq, block, locals, peered, child, started_here, last } => {
                let id = tx.id();
                let name = self.engine.lock().sequence(seq).map_or("block", |s| s.name);
                let work = {
                    let (me, tx) = (&self, &tx);
                    async move {
                        let mut locals = locals;
                        me.apply(tx, peered).await?;
                        let raised = match me.program()?.run_block(tx, seq, block, &mut locals).await {
                            Ok(()) => None,
                            Err(Raise::Exception(e)) => Some(*tx.locate(e)),
                            Err(abort) => return Err(abort),
                        };
                        // A child answering its parent must have its own partners prepared:
                        // its answer is its vote. If it cannot, it aborts alone.
                        if child && tx.prepare_links().await.is_err() {
                            return Err(Abort::Wounded.into());
                        }
                        // Changes travel with the answer, unless the sequence ends here where
                        // it started: then they stay dirty for the next message or prepare.
                        let answered_here = started_here && (raised.is_some() || last);
                        let dirty = if answered_here { Vec::new() } else { me.take_dirty(tx).await? };
                        Ok(match raised {
                            Some(e) => BlockResult::Raised(e, dirty),
                            None => BlockResult::Ok(crate::exec::ops::copy_all(tx, locals).await?, dirty),
                        })
                    }
                };
                let result = match crate::exec::run::guarded(name, &self.core, &tx, work).await {
                    Ok(result) => result,
                    Err(Raise::Exception(e)) => BlockResult::Raised(*e, Vec::new()),
                    Err(Raise::Abort(_)) => BlockResult::Aborted,
                };
                self.with_engine(|e, out| e.block_finished(id, frame, seq, block, result, out));
            }
            Job::Prepare { tx, peered } => {
                let id = tx.id();
                let work = {
                    let (me, tx) = (&self, &tx);
                    async move {
                        me.apply(tx, peered).await?;
                        tx.prepare_links().await
                    }
                };
                let ok = crate::exec::run::guarded("prepare", &self.core, &tx, work).await.is_ok();
                self.with_engine(|e, out| e.prepare_finished(id, ok, out));
            }
        }
    }
}

impl Drop for LinkShared {
    fn drop(&mut self) {
        // The endpoint is gone: so is the connection.
        if self.error.get_mut().is_none()
            && let Some(t) = self.transport.get()
        {
            t.close(&Error::Network { message: "the partner endpoint was dropped".into() });
        }
    }
}

impl TxLink for LinkShared {
    fn prepared(&self, tx: &Tx) -> bool {
        !tx.has_dirty(self.core.serial) && self.engine.lock().voted(tx.id())
    }

    fn prepare<'a>(&'a self, tx: &'a Tx) -> Pin<Box<dyn Future<Output = Flow<()>> + Send + 'a>> {
        Box::pin(async move {
            let peered = self.take_dirty(tx).await?;
            let mut vote = None;
            let needed = self.with_engine(|e, out| {
                e.prepare(
                    tx,
                    peered,
                    || {
                        let (sender, receiver) = tokio::sync::oneshot::channel();
                        vote = Some(receiver);
                        sender
                    },
                    out,
                )
            });
            let waiter = match needed.map(|_| vote) {
                Ok(None) => return Ok(()),
                Ok(Some(w)) => w,
                Err(Reply::Aborted) => return Err(Abort::Wounded.into()),
                Err(Reply::Lost(reason)) => return Err(lost_exception(&reason)),
                Err(_) => return Err(Exception::application("unexpected answer to a prepare").into()),
            };
            match waiter.await.unwrap_or(Reply::Lost("the connection closed".into())) {
                Reply::Voted => Ok(()),
                Reply::Aborted => Err(Abort::Wounded.into()),
                Reply::Lost(reason) => Err(lost_exception(&reason)),
                _ => Err(Exception::application("unexpected answer to a prepare").into()),
            }
        })
    }

    fn finish(&self, tx: TxId, committed: bool) {
        self.with_engine(|e, out| e.finish(tx, committed, out));
    }

    fn rollback(&self, tx: TxId, mark: u64) {
        self.with_engine(|e, out| e.rollback(tx, mark, out));
    }

    fn same(&self, other: &dyn TxLink) -> bool {
        std::ptr::addr_eq(self as *const LinkShared, other as *const dyn TxLink)
    }

    fn enlist(&self, tx: &Tx) {
        self.join(tx);
    }

    fn wound_requested(&self, tx: TxId) {
        self.with_engine(|e, out| e.wound_requested(tx, out));
    }

    fn closed(&self) -> bool {
        self.engine.lock().closed().is_some()
    }

    fn poll_admit(&self, tx: &Tx, holds: bool, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        // No connection yet: nothing to hand the token over (nor anything to conflict with).
        if self.transport.get().is_none() {
            return std::task::Poll::Ready(());
        }
        // The waker is registered under the engine's lock: the token's arrival, which the
        // engine reports after that lock is released, wakes it.
        let admitted = self.with_engine(|e, out| {
            let admitted = e.admit(tx, holds, out);
            if !admitted {
                let mut waiters = self.token_waiters.lock();
                if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
                    waiters.push(cx.waker().clone());
                }
            }
            admitted
        });
        if admitted { std::task::Poll::Ready(()) } else { std::task::Poll::Pending }
    }
}

thread_local! {
    /// How deeply jobs are being run inline on this thread.
    static INLINE_DEPTH: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Inline runs nest (a block's answer runs the next block on the other side); beyond this
/// depth jobs go to their own task at once.
const MAX_INLINE_DEPTH: u32 = 32;

/// Runs a job: polls it once right here, and gives it its own task only if it has to wait
/// (for a lock, or for the partner). Most blocks finish in their first poll, so a sequence
/// between two endpoints of one process costs no task switch. A job polled here and then
/// spawned is polled again by its task, which registers the task's waker wherever the first
/// poll registered the placeholder.
fn run_soon(mut job: Pin<Box<dyn Future<Output = ()> + Send>>) {
    let depth = INLINE_DEPTH.with(|d| d.get());
    if depth < MAX_INLINE_DEPTH {
        INLINE_DEPTH.with(|d| d.set(depth + 1));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let ready = job.as_mut().poll(&mut cx).is_ready();
        INLINE_DEPTH.with(|d| d.set(depth));
        if ready {
            return;
        }
    }
    tokio::spawn(job);
}

/// The in-process transport: hands each message to the partner's link directly.
struct Direct(Weak<LinkShared>);

impl Transport for Direct {
    fn send(&self, msg: Msg) {
        if let Some(partner) = self.0.upgrade() {
            Link(partner).receive(msg);
        }
    }

    fn control(&self, control: Control) {
        if let Some(partner) = self.0.upgrade() {
            Link(partner).control(control);
        }
    }

    fn close(&self, error: &Error) {
        if let Some(partner) = self.0.upgrade() {
            let error = match error {
                Error::Stopped => Error::Stopped,
                Error::Network { message } => Error::Network { message: message.clone() },
                other => Error::Network { message: format!("the partner closed the connection: {other}") },
            };
            Link(partner).lost(error);
        }
    }
}

/// Joins two endpoints of a protocol into a pair in this process, without sockets: `a` plays
/// side 0 and `b` side 1. Messages are copies, as on a real connection.
pub fn in_process_pair(
    a: (Arc<EndpointCore>, Arc<dyn Program>),
    b: (Arc<EndpointCore>, Arc<dyn Program>),
    sequences: Vec<SequenceInfo>,
) -> (Link, Link) {
    let la = Link::new(a.0, 0, sequences.clone(), a.1);
    let lb = Link::new(b.0, 1, sequences, b.1);
    la.attach(Arc::new(Direct(Arc::downgrade(&lb.0))));
    lb.attach(Arc::new(Direct(Arc::downgrade(&la.0))));
    (la, lb)
}

/// `stop()` of endpoint `core` and its pair's `link` (if it has a partner): refuses new host
/// calls, lets the running ones finish, tells the partner and waits for it to stop, closes
/// the connection, then runs the stop listeners. Stopping twice waits for the first stop.
pub async fn stop(core: &EndpointCore, link: Option<&Link>) {
    if !core.life.begin_stop() {
        core.life.stopped().await;
        return;
    }
    core.life.idle().await;
    if let Some(link) = link {
        link.stop().await;
    }
    core.life.finish_stop();
}
