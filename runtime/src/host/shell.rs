//! The endpoint shell: everything a running endpoint has that does not depend on its
//! protocol, written once for all of them.
//!
//! Generated code describes each endpoint with a static [`Code`] table (its name and side,
//! its variables' defaults, its lowered `onCreate`, public functions and blocks) and wraps a
//! [`Handle`] in a typed struct whose methods are one-line forwards. Everything else lives
//! here: the running endpoint ([`Ep`]: its variables, its link to the partner, the dispatch
//! of endpoint calls by name and of the partner's blocks by number), the handle's own methods
//! (stop, stop listeners, options, identity), the constructors (alone, over TCP, in process,
//! over loopback) and the listener.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, Weak};

use crate::core::endpoint::{CallFuture, DynEndpoint, EndpointCore, EndpointRef};
use crate::core::error::{Error, Exception, Flow, app_error};
use crate::core::tx::Tx;
use crate::core::value::Value;
use crate::driver::link::{BlockFuture, Link, Program};
use crate::driver::tcp::{Accepted, ConnectionState, Listener, PairEnd, PairSpec, Pending, TcpOptions};
use crate::exec::ops::{Kind, check_args, copy_all};
use crate::exec::run::{CallOptions, then, transact};
use crate::exec::watchdog::What;
use crate::host::convert::{FromValue, IntoValue};

/// A lowered function body: `onCreate`, a public function, or the peered initializers.
pub type BodyFn = for<'a> fn(&'a Ep, &'a Tx, Vec<Value>) -> CallFuture<'a>;

/// A lowered block of a sequence, reading and writing the sequence's data.
pub type BlockFn = for<'a> fn(&'a Ep, &'a Tx, &'a mut [Value]) -> BlockFuture<'a>;

/// A lowered function body that never waits (it touches only its own values and the
/// sequence data): a plain `fn`, cheaper to run and to compile than an `async` one.
pub type NowFn = for<'a> fn(&'a Ep, &'a Tx, Vec<Value>) -> Flow<Vec<Value>>;

/// A lowered block that never waits.
pub type NowBlockFn = for<'a> fn(&'a Ep, &'a Tx, &'a mut [Value]) -> Flow<()>;

/// How a public function's body runs.
#[derive(Clone, Copy)]
pub enum Body {
    /// It may wait: a lock, the partner, another endpoint.
    Wait(BodyFn),
    /// It never waits.
    Now(NowFn),
}

/// How a block's body runs.
#[derive(Clone, Copy)]
pub enum BlockBody {
    /// It may wait.
    Wait(BlockFn),
    /// It never waits.
    Now(NowBlockFn),
    /// It waits only for locks: a plain function, run again from the start once it may go
    /// on (see `exec::restart`).
    Restart(NowBlockFn),
}

/// A public function of an endpoint.
#[derive(Clone, Copy)]
pub struct Function {
    /// Its Waldo name (what endpoint calls and errors use).
    pub name: &'static str,
    /// The kinds of its parameters (checked on endpoint calls).
    pub params: &'static [Kind],
    /// Its body.
    pub run: Body,
}

/// A block of a sequence that an endpoint runs.
#[derive(Clone, Copy)]
pub struct Block {
    /// The sequence's number in the protocol.
    pub seq: u32,
    /// The block's number in the sequence.
    pub block: u32,
    /// Its body.
    pub run: BlockBody,
}

impl Function {
    /// Public function `name` taking `params`, running `run`.
    pub const fn new(name: &'static str, params: &'static [Kind], run: BodyFn) -> Self {
        Function { name, params, run: Body::Wait(run) }
    }

    /// Public function `name` taking `params`, running `run`, which never waits.
    pub const fn now(name: &'static str, params: &'static [Kind], run: NowFn) -> Self {
        Function { name, params, run: Body::Now(run) }
    }
}

impl Block {
    /// Block `block` of sequence `seq`, running `run`.
    pub const fn new(seq: u32, block: u32, run: BlockFn) -> Self {
        Block { seq, block, run: BlockBody::Wait(run) }
    }

    /// Block `block` of sequence `seq`, running `run`, which never waits.
    pub const fn now(seq: u32, block: u32, run: NowBlockFn) -> Self {
        Block { seq, block, run: BlockBody::Now(run) }
    }

    /// Block `block` of sequence `seq`, running `run`, which waits only for locks (through
    /// `rt::now`): restarted rather than suspended.
    pub const fn restart(seq: u32, block: u32, run: NowBlockFn) -> Self {
        Block { seq, block, run: BlockBody::Restart(run) }
    }
}

/// What generated code knows of one endpoint: a static table the shell runs.
pub struct Code {
    /// The endpoint's Waldo name.
    pub name: &'static str,
    /// The protocol's file, as exceptions name it (`bank.wld:12`); empty when unknown.
    pub file: &'static str,
    /// The protocol's pair (for the handshake) and this endpoint's side in it; `None` for a
    /// protocol of one endpoint.
    pub pair: Option<(&'static PairSpec, u8)>,
    /// The default values of the variable slots: the peered variables first, then globals.
    pub slots: fn() -> Vec<Value>,
    /// How many slots hold peered variables.
    pub peered: usize,
    /// Peered slots the other endpoint controls: slot, variable, owner.
    pub controlled: &'static [(usize, &'static str, &'static str)],
    /// The initializers that run before the endpoint is connected: the peered variables'
    /// (on each replica), then the globals' when they need no partner (so that the
    /// partner's first blocks see them).
    pub init: Option<BodyFn>,
    /// The globals' initializers that need the partner (they start a sequence or call
    /// another endpoint), then `onCreate`.
    pub on_create: Option<BodyFn>,
    /// How many arguments `onCreate` takes.
    pub create_params: usize,
    /// The public functions, sorted by name: a host call names one by its index here.
    pub functions: &'static [Function],
    /// The blocks this endpoint runs, sorted by sequence and block number.
    pub blocks: &'static [Block],
}

impl Code {
    /// A table with nothing in it but a name: generated tables fill in the rest.
    pub const fn named(name: &'static str) -> Code {
        Code {
            name,
            file: "",
            pair: None,
            slots: Vec::new,
            peered: 0,
            controlled: &[],
            init: None,
            on_create: None,
            create_params: 0,
            functions: &[],
            blocks: &[],
        }
    }

    fn function(&self, name: &str) -> Option<&Function> {
        self.functions.binary_search_by(|f| f.name.cmp(name)).ok().map(|i| &self.functions[i])
    }

    fn block(&self, seq: u32, block: u32) -> Option<&Block> {
        self.blocks.binary_search_by(|b| (b.seq, b.block).cmp(&(seq, block))).ok().map(|i| &self.blocks[i])
    }
}

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Code").field("name", &self.name).finish_non_exhaustive()
    }
}

/// A running endpoint, as its generated code sees it: its variables ([`Ep::core`]), its link
/// to the partner, and its code.
pub struct Ep {
    /// The endpoint's variables.
    pub core: Arc<EndpointCore>,
    link: OnceLock<Link>,
    /// The partner's verified certificate, over TLS.
    peer: OnceLock<crate::driver::tcp::PeerIdentity>,
    me: Weak<Ep>,
    code: &'static Code,
    /// Why the initializers failed on an endpoint made for a partner that connected: its
    /// `accept` fails with it (and tells the partner), as when `onCreate` fails.
    failed_init: OnceLock<Error>,
}

#[allow(
    clippy::manual_async_fn,
    reason = "a declared `Send` ends a generated body's `Send` proof here (see `exec::ops`)"
)]
impl Ep {
    /// A new endpoint of `code` whose variables hold their types' defaults.
    fn new(code: &'static Code) -> Arc<Ep> {
        let core = EndpointCore::new(code.name, (code.slots)());
        for &(slot, variable, owner) in code.controlled {
            core.set_controlled_by(slot, variable, owner);
        }
        if code.peered > 0 {
            core.set_peered(code.peered);
        }
        Arc::new_cyclic(|me| Ep {
            core,
            link: OnceLock::new(),
            peer: OnceLock::new(),
            me: me.clone(),
            code,
            failed_init: OnceLock::new(),
        })
    }

    /// The connection to the partner (a `NetworkException` when there is none).
    pub fn link(&self) -> Flow<&Link> {
        self.link.get().ok_or_else(|| Exception::network("this endpoint has no partner").into())
    }

    /// Runs sequence `seq` in `tx` with `args`, started here (see [`Link::sequence`]).
    pub fn sequence<const N: usize>(
        &self,
        tx: &Tx,
        seq: u32,
        args: [Value; N],
        returns: usize,
    ) -> impl Future<Output = Flow<Vec<Value>>> + Send {
        async move {
            // The data gets room for the sequence's every value at once.
            let locals = self
                .code
                .pair
                .and_then(|(spec, _)| spec.sequences.get(seq as usize))
                .map_or(N, |s| s.locals as usize);
            let mut data = Vec::with_capacity(locals.max(N));
            data.extend(args);
            // This side's blocks note their places; the caller's statement is current again after.
            let mark = tx.mark();
            let done = self.link()?.sequence(tx, seq, data, returns).await;
            tx.back(mark, done)
        }
    }

    /// The value of variable `slot` in `tx`.
    pub fn get(&self, tx: &Tx, slot: usize) -> impl Future<Output = Flow<Value>> + Send {
        async move { tx.read(&self.core, slot).await }
    }

    /// The value of Number variable `slot` in `tx`.
    pub fn num(&self, tx: &Tx, slot: usize) -> impl Future<Output = Flow<f64>> + Send {
        async move { Ok(tx.read(&self.core, slot).await?.as_number()?) }
    }

    /// The value of TrueFalse variable `slot` in `tx`.
    pub fn truth(&self, tx: &Tx, slot: usize) -> impl Future<Output = Flow<bool>> + Send {
        async move { Ok(tx.read(&self.core, slot).await?.as_bool()?) }
    }

    /// The value of Text variable `slot` in `tx`.
    pub fn text(&self, tx: &Tx, slot: usize) -> impl Future<Output = Flow<crate::exec::ops::Text>> + Send {
        async move { Ok(tx.read(&self.core, slot).await?.as_text()?.clone()) }
    }

    /// Sets variable `slot` to `value` in `tx`.
    pub fn set(
        &self,
        tx: &Tx,
        slot: usize,
        value: impl Into<Value>,
    ) -> impl Future<Output = Flow<()>> + Send {
        let value = value.into();
        async move { tx.write(&self.core, slot, value).await }
    }

    /// `self`: this endpoint as an `Endpoint` value.
    pub fn value(&self) -> Value {
        match self.me.upgrade() {
            Some(me) => Value::Endpoint(EndpointRef(me)),
            None => Value::Nothing,
        }
    }

    /// Runs the initializers that come before the connection (see [`Code::init`]).
    async fn start(&self, options: &CallOptions) -> Result<(), Error> {
        if let Some(init) = self.code.init {
            transact(What(self.code.name, "initializers"), &self.core, options, |tx| async move {
                init(self, &tx, Vec::new()).await
            })
            .await?;
        }
        Ok(())
    }

    /// Runs the globals' initializers and `onCreate` with `args`, as one transaction.
    async fn ready(&self, options: &CallOptions, args: Vec<Value>) -> Result<(), Error> {
        if let Some(error) = self.failed_init.get() {
            return Err(error.clone());
        }
        if args.len() != self.code.create_params {
            return Err(Error::Application {
                message: format!(
                    "`{}`'s onCreate takes {} arguments, {} were given",
                    self.code.name,
                    self.code.create_params,
                    args.len()
                ),
            });
        }
        let Some(on_create) = self.code.on_create else { return Ok(()) };
        transact(What(self.code.name, "onCreate"), &self.core, options, |tx| {
            let args: Vec<Value> = args.iter().map(Value::detached_copy).collect();
            async move { on_create(self, &tx, args).await }
        })
        .await?;
        Ok(())
    }

    /// What a TCP connection needs to know of this endpoint.
    fn pair_end(self: &Arc<Self>) -> Result<PairEnd, Error> {
        let Some((spec, side)) = self.code.pair else {
            return Err(Error::Application {
                message: format!("`{}` has no partner endpoint to connect to", self.code.name),
            });
        };
        Ok(PairEnd { spec, side, core: self.core.clone(), program: self.clone() })
    }
}

impl DynEndpoint for Ep {
    fn core(&self) -> &Arc<EndpointCore> {
        &self.core
    }

    fn call<'a>(&'a self, tx: &'a Tx, function: &'a str, args: Vec<Value>) -> CallFuture<'a> {
        Box::pin(async move {
            let Some(f) = self.code.function(function) else {
                return app_error(format!("`{}` has no public function `{function}`", self.code.name));
            };
            check_args(f.name, &args, f.params)?;
            match f.run {
                Body::Wait(run) => run(self, tx, args).await,
                Body::Now(run) => run(self, tx, args),
            }
        })
    }
}

impl Program for Ep {
    fn run_block<'a>(
        &'a self,
        tx: &'a Tx,
        seq: u32,
        block: u32,
        locals: &'a mut Vec<Value>,
    ) -> BlockFuture<'a> {
        match self.code.block(seq, block) {
            Some(b) => match b.run {
                BlockBody::Wait(run) => run(self, tx, locals),
                BlockBody::Now(run) => Box::pin(std::future::ready(run(self, tx, locals))),
                BlockBody::Restart(run) => {
                    Box::pin(crate::exec::restart::run(tx, locals, move |data| run(self, tx, data)))
                }
            },
            None => {
                let name = self.code.name;
                Box::pin(async move { app_error(format!("{name} runs no block {block} of sequence {seq}")) })
            }
        }
    }
}

/// What a generated endpoint type's public-function method returns: the call, as one
/// transaction, that resolves to the function's results once it commits. It does nothing
/// until awaited. It is `Send` and borrows the handle, so a task that makes the call holds
/// a clone of the handle: `tokio::spawn(async move { bank.balance(acct).await })`.
pub trait Call<T>: Future<Output = Result<T, Error>> + Send {}

impl<T, F: Future<Output = Result<T, Error>> + Send> Call<T> for F {}

/// A running endpoint of type `E`, as the host holds it: the shared part of every generated
/// endpoint type (which dereferences to it). Cheap to clone; clones share the endpoint. Calls
/// made through it use its [`CallOptions`].
pub struct Handle<E> {
    ep: Arc<Ep>,
    options: CallOptions,
    endpoint: PhantomData<fn() -> E>,
}

impl<E> Clone for Handle<E> {
    fn clone(&self) -> Self {
        Handle { ep: self.ep.clone(), options: self.options.clone(), endpoint: PhantomData }
    }
}

#[allow(
    clippy::manual_async_fn,
    reason = "a declared `Send` ends a generated body's `Send` proof here (see `exec::ops`)"
)]
impl<E> Handle<E> {
    fn new(ep: Arc<Ep>, options: CallOptions) -> Handle<E> {
        Handle { ep, options, endpoint: PhantomData }
    }

    /// Stops the endpoint gracefully: no new calls, running ones finish, the partner (if any)
    /// is told and stops too, then the stop listeners run. Later calls return
    /// [`Error::Stopped`].
    pub async fn stop(&self) {
        crate::driver::link::stop(&self.ep.core, self.ep.link.get()).await;
    }

    /// Adds a listener that runs once when the endpoint stops (by its own `stop` or its
    /// partner's); at once if it already has. [`StopListener::remove`] takes it back.
    pub fn on_stop(&self, listener: impl FnOnce() + Send + 'static) -> StopListener {
        let id = self.ep.core.life.on_stop(Box::new(listener));
        StopListener { core: Arc::downgrade(&self.ep.core), id }
    }

    /// The endpoint's unique id (`id()` in Waldo).
    pub fn id(&self) -> &str {
        self.ep.core.id()
    }

    /// The endpoint's name in its protocol.
    pub fn name(&self) -> &'static str {
        self.ep.code.name
    }

    /// The per-call options of this handle.
    pub fn options(&self) -> &CallOptions {
        &self.options
    }

    /// The endpoint with other per-call options (deadline, attempt limit), for the calls
    /// made through what this returns.
    pub fn with_options(&self, options: CallOptions) -> E
    where
        E: Endpoint,
    {
        E::from_handle(Handle::new(self.ep.clone(), options))
    }

    /// This endpoint as an `Endpoint` value, to pass to Waldo code.
    pub fn endpoint(&self) -> EndpointRef {
        EndpointRef(self.ep.clone())
    }

    /// Who the partner is, over a TLS connection: the subject and names of the certificate it
    /// presented and this side verified. `None` over plain TCP, in process, with no partner,
    /// or on a listener that does not ask for client certificates. Authorize with it in the
    /// host's own code.
    pub fn peer_identity(&self) -> Option<&crate::driver::tcp::PeerIdentity> {
        self.ep.peer.get()
    }

    /// The state of the endpoint's connection to its partner now: `Connected` (also for a
    /// pair in one process), `Reconnecting` while a resumable session is being resumed, or
    /// `Closed` with the reason (also for an endpoint without a partner).
    pub fn connection_state(&self) -> ConnectionState {
        self.watch_connection().borrow().clone()
    }

    /// The state of the endpoint's connection, to watch: `changed().await` returns at each
    /// change (and fails once no change can come: the connection closed, or the pair is in
    /// one process).
    pub fn watch_connection(&self) -> tokio::sync::watch::Receiver<ConnectionState> {
        match self.ep.link.get() {
            Some(link) => match link.connection() {
                Some(state) => state,
                None => tokio::sync::watch::channel(ConnectionState::Connected).1,
            },
            None => {
                tokio::sync::watch::channel(ConnectionState::Closed {
                    reason: format!("`{}` has no partner", self.ep.code.name),
                })
                .1
            }
        }
    }

    /// Bytes waiting for the partner: queued while it is unreachable, or sent and not yet
    /// confirmed (a resumable connection; see `ReconnectPolicy::max_backlog`). 0 in process
    /// and on a connection that does not resume.
    pub fn backlog(&self) -> usize {
        self.ep.link.get().map_or(0, |l| l.backlog())
    }

    /// What the endpoint did so far: its host calls (commits, aborts by cause, retries,
    /// conflicts), the sequences it started, and its connection's bytes and resumes.
    pub fn stats(&self) -> crate::Stats {
        let mut stats = self.ep.core.stats.snapshot();
        if let Some(link) = self.ep.link.get() {
            let traffic = link.traffic();
            stats.bytes_in = traffic.bytes_in;
            stats.bytes_out = traffic.bytes_out;
            stats.reconnects = traffic.resumes;
        }
        stats
    }

    /// Whether the endpoint has stopped or is stopping.
    pub fn is_stopped(&self) -> bool {
        self.ep.core.is_stopped()
    }

    /// Calls public function number `index` of the endpoint's table with `args`, as one
    /// transaction, and reads its results as `T` (`()` or a tuple; see
    /// [`Handle::call_one`]).
    #[doc(hidden)]
    pub fn call<T: FromResults>(
        &self,
        index: usize,
        args: Vec<Value>,
    ) -> impl Future<Output = Result<T, Error>> + Send {
        then(self.call_values(index, args), |values| results(values?))
    }

    /// Like [`Handle::call`], for a function with one result.
    #[doc(hidden)]
    pub fn call_one<T: FromValue>(
        &self,
        index: usize,
        args: Vec<Value>,
    ) -> impl Future<Output = Result<T, Error>> + Send {
        then(self.call_values(index, args), |values| result(values?))
    }

    /// Calls public function number `index` with `args`, as one transaction; the results
    /// are deep copies nobody else holds (generated code: a function with more results than
    /// [`FromResults`] takes reads them with [`result_at`]).
    #[doc(hidden)]
    pub fn call_values(
        &self,
        index: usize,
        args: Vec<Value>,
    ) -> impl Future<Output = Result<Vec<Value>, Error>> + Send + '_ {
        let ep = &self.ep;
        let f = &ep.code.functions[index];
        transact(What(ep.code.name, f.name), &ep.core, &self.options, move |tx| {
            let args: Vec<Value> = args.iter().map(Value::detached_copy).collect();
            async move {
                let results = match f.run {
                    Body::Wait(run) => run(ep, &tx, args).await?,
                    Body::Now(run) => run(ep, &tx, args)?,
                };
                copy_all(&tx, results).await
            }
        })
    }
}

impl<E> fmt::Debug for Handle<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(self.ep.code.name).field("id", &self.id()).finish()
    }
}

/// A stop listener added by [`Handle::on_stop`].
/// Dropping it keeps the listener.
#[derive(Debug)]
pub struct StopListener {
    core: Weak<EndpointCore>,
    id: u64,
}

impl StopListener {
    /// Takes the listener back. Returns whether it was still waiting (false once it has run).
    pub fn remove(self) -> bool {
        self.core.upgrade().is_some_and(|core| core.life.remove_on_stop(self.id))
    }
}

/// What every generated endpoint type is: a typed [`Handle`].
///
/// Generic code can create, connect and recover endpoints of any protocol through it:
/// [`EndpointRef::downcast`], [`join_loopback`].
pub trait Endpoint:
    Clone + fmt::Debug + std::ops::Deref<Target = Handle<Self>> + Send + Sync + Sized + 'static
{
    /// The listener type of the endpoint (its `listen` makes one).
    type Listener: From<EndpointListener<Self>> + Send;
    /// The endpoint's code.
    #[doc(hidden)]
    const CODE: &'static Code;
    /// The typed endpoint around `handle`.
    #[doc(hidden)]
    fn from_handle(handle: Handle<Self>) -> Self;
}

impl EndpointRef {
    /// The endpoint as a typed `E`, if it is one (`None` for an endpoint of another type),
    /// with default call options.
    pub fn downcast<E: Endpoint>(&self) -> Option<E> {
        let any: Arc<dyn std::any::Any + Send + Sync> = self.0.clone();
        let ep = any.downcast::<Ep>().ok()?;
        std::ptr::eq(ep.code, E::CODE).then(|| E::from_handle(Handle::new(ep, CallOptions::default())))
    }
}

/// A host value as a Waldo value (generated code's short form of [`IntoValue::into_value`]).
pub fn value<T: IntoValue>(x: T) -> Value {
    x.into_value()
}

/// An `Endpoint` argument as a Waldo value: `None` is an unbound endpoint.
pub fn endpoint_value(endpoint: impl Into<Option<EndpointRef>>) -> Value {
    endpoint.into().map_or(Value::Nothing, Value::Endpoint)
}

/// The results of a host call as the Rust type `T`: `()` for none, one value, or a tuple.
pub fn results<T: FromResults>(values: Vec<Value>) -> Result<T, Error> {
    T::from_results(&values).map_err(Error::from)
}

/// Rust forms of a function's results (see [`results`]).
pub trait FromResults: Sized {
    /// Reads the results.
    fn from_results(values: &[Value]) -> Result<Self, Exception>;
}

/// One result.
impl<T: FromValue> FromResults for (T,) {
    fn from_results(values: &[Value]) -> Result<Self, Exception> {
        Ok((T::from_committed(values.first().unwrap_or(&Value::Nothing))?,))
    }
}

macro_rules! from_results {
    ($($t:ident $i:tt),*) => {
        impl<$($t: FromValue),*> FromResults for ($($t,)*) {
            fn from_results(values: &[Value]) -> Result<Self, Exception> {
                Ok(($($t::from_committed(values.get($i).unwrap_or(&Value::Nothing))?,)*))
            }
        }
    };
}
impl FromResults for () {
    fn from_results(_: &[Value]) -> Result<Self, Exception> {
        Ok(())
    }
}
from_results!(A 0, B 1);
from_results!(A 0, B 1, C 2);
from_results!(A 0, B 1, C 2, D 3);
from_results!(A 0, B 1, C 2, D 3, E 4);
from_results!(A 0, B 1, C 2, D 3, E 4, F 5);
from_results!(A 0, B 1, C 2, D 3, E 4, F 5, G 6);
from_results!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);

/// The one result of a host call as `T`.
pub fn result<T: FromValue>(values: Vec<Value>) -> Result<T, Error> {
    results::<(T,)>(values).map(|(t,)| t)
}

/// Result number `i` of a host call as `T` (for functions with more results than a
/// [`FromResults`] tuple holds).
pub fn result_at<T: FromValue>(values: &[Value], i: usize) -> Result<T, Error> {
    T::from_committed(values.get(i).unwrap_or(&Value::Nothing)).map_err(Error::from)
}

/// Creates an endpoint of `E` with no partner: its initializers, then `onCreate` with
/// `args`. A sequence it starts raises a `NetworkException`.
pub async fn create<E: Endpoint>(args: Vec<Value>) -> Result<E, Error> {
    let ep = Ep::new(E::CODE);
    let options = CallOptions::default();
    ep.start(&options).await?;
    ep.ready(&options, args).await?;
    Ok(E::from_handle(Handle::new(ep, options)))
}

/// A boxed future of the shell.
type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A future made from options on its first poll: until then the options may change.
enum Lazy<'a, O, T> {
    Waiting(O, Box<dyn FnOnce(O) -> BoxFuture<'a, T> + Send + 'a>),
    Running(BoxFuture<'a, T>),
    Done,
}

impl<'a, O: Default, T> Lazy<'a, O, T> {
    fn new(make: Box<dyn FnOnce(O) -> BoxFuture<'a, T> + Send + 'a>) -> Self {
        Lazy::Waiting(O::default(), make)
    }

    fn set(&mut self, options: O) {
        if let Lazy::Waiting(o, _) = self {
            *o = options;
        }
    }

    fn poll(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<T> {
        if let Lazy::Waiting(..) = self
            && let Lazy::Waiting(options, make) = std::mem::replace(self, Lazy::Done)
        {
            *self = Lazy::Running(make(options));
        }
        match self {
            Lazy::Running(future) => {
                let out = future.as_mut().poll(cx);
                if out.is_ready() {
                    *self = Lazy::Done;
                }
                out
            }
            _ => panic!("a `Connect` or `Listen` future polled after it completed"),
        }
    }
}

/// A connection to be made (from a generated `connect`): [`Connect::with_options`] sets the
/// connection's options; awaiting it connects, runs the handshake and both sides'
/// `onCreate`, and returns the endpoint once both sides are ready.
#[must_use = "the connection is made when this is awaited"]
pub struct Connect<'a, E> {
    state: Lazy<'a, TcpOptions, Result<E, Error>>,
}

impl<E> fmt::Debug for Connect<'_, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connect").finish_non_exhaustive()
    }
}

impl<'a, E: Endpoint> Connect<'a, E> {
    /// Connects to `addr`, then runs this side's `onCreate` with `args`.
    #[doc(hidden)]
    pub fn new(addr: impl crate::driver::tcp::ToSocketAddrs + Send + 'a, args: Vec<Value>) -> Self {
        Connect { state: Lazy::new(Box::new(move |tcp| Box::pin(connect::<E>(addr, tcp, args)))) }
    }

    /// With these connection options (heartbeats, frame size, handshake time limit).
    pub fn with_options(mut self, tcp: TcpOptions) -> Self {
        self.state.set(tcp);
        self
    }
}

impl<E> Future for Connect<'_, E> {
    type Output = Result<E, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        self.state.poll(cx)
    }
}

async fn connect<E: Endpoint>(
    addr: impl crate::driver::tcp::ToSocketAddrs,
    tcp: TcpOptions,
    args: Vec<Value>,
) -> Result<E, Error> {
    let ep = Ep::new(E::CODE);
    let options = CallOptions::default();
    ep.start(&options).await?;
    let end = ep.pair_end()?;
    let pending = crate::driver::tcp::connect(addr, end, &tcp, |link| {
        let _ = ep.link.set(link);
    })
    .await?;
    if let Some(identity) = pending.peer_identity() {
        let _ = ep.peer.set(identity.clone());
    }
    pending.ready(ep.ready(&options, args)).await?;
    Ok(E::from_handle(Handle::new(ep, options)))
}

/// A listener to be bound (from a generated `listen`): [`Listen::with_options`] sets the
/// options of every accepted connection and the listener's limits; awaiting it binds the
/// listener.
#[must_use = "the listener is bound when this is awaited"]
pub struct Listen<'a, E: Endpoint> {
    state: Lazy<'a, TcpOptions, Result<E::Listener, Error>>,
}

impl<E: Endpoint> fmt::Debug for Listen<'_, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listen").finish_non_exhaustive()
    }
}

impl<'a, E: Endpoint> Listen<'a, E> {
    /// Listens at `addr` for partners of `E`.
    #[doc(hidden)]
    pub fn new(addr: impl crate::driver::tcp::ToSocketAddrs + Send + 'a) -> Self {
        Listen {
            state: Lazy::new(Box::new(move |tcp| {
                Box::pin(async move { listen::<E>(addr, tcp).await.map(E::Listener::from) })
            })),
        }
    }

    /// With these options for every accepted connection and the listener's limits.
    pub fn with_options(mut self, tcp: TcpOptions) -> Self {
        self.state.set(tcp);
        self
    }
}

impl<E: Endpoint> Future for Listen<'_, E> {
    type Output = Result<E::Listener, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        self.state.poll(cx)
    }
}

async fn listen<E: Endpoint>(
    addr: impl crate::driver::tcp::ToSocketAddrs,
    tcp: TcpOptions,
) -> Result<EndpointListener<E>, Error> {
    let limits = tcp.clone();
    // The endpoints made for partners belong to the host that listens (its clock), though
    // their handshakes run in tasks of their own.
    let clock = crate::core::tx::Clock::current();
    let listener = Listener::bind_with(addr, &limits, move |stream: Accepted| {
        let tcp = tcp.clone();
        crate::core::tx::Clock::scope(clock.clone(), async move {
            let Some((spec, side)) = E::CODE.pair else {
                return Err(Error::Application {
                    message: format!("`{}` has no partner endpoint to listen for", E::CODE.name),
                });
            };
            // The handshake first: a partner resuming its session needs no new endpoint.
            let opened = match crate::driver::tcp::accept(stream, spec, side, &tcp).await? {
                crate::driver::tcp::Accept::New(opened) => *opened,
                crate::driver::tcp::Accept::Resumed => return Ok(None),
            };
            let ep = Ep::new(E::CODE);
            if let Err(error) = ep.start(&CallOptions::default()).await {
                let _ = ep.failed_init.set(error);
            }
            let end = ep.pair_end()?;
            if let Some(identity) = opened.peer_identity() {
                let _ = ep.peer.set(identity.clone());
            }
            let pending = opened.start(end, &tcp, |link| {
                let _ = ep.link.set(link);
            });
            Ok(Some((ep, pending)))
        })
    })
    .await?;
    Ok(EndpointListener { listener, endpoint: PhantomData })
}

/// A TCP listener that makes an `E` for each partner that connects. Each connection that
/// completes the handshake waits in the listener until `accept` takes it.
pub struct EndpointListener<E> {
    listener: Listener<(Arc<Ep>, Pending)>,
    endpoint: PhantomData<fn() -> E>,
}

impl<E: Endpoint> EndpointListener<E> {
    /// The address the listener is bound to (with the port chosen for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr()
    }

    /// Takes the next partner that completed the handshake, runs this side's `onCreate`
    /// (which must take no arguments: the generated listener of an endpoint whose
    /// `onCreate` takes some has its own `accept`), and returns the endpoint once both sides
    /// are ready. A connection that fails at this point returns its error; the listener goes
    /// on serving the others.
    pub async fn accept(&self) -> Result<E, Error> {
        self.accept_args(Vec::new()).await
    }

    /// Like [`EndpointListener::accept`], with `onCreate`'s arguments.
    #[doc(hidden)]
    pub async fn accept_args(&self, args: Vec<Value>) -> Result<E, Error> {
        let (ep, pending) = self.listener.next().await?;
        let options = CallOptions::default();
        pending.ready(ep.ready(&options, args)).await?;
        Ok(E::from_handle(Handle::new(ep, options)))
    }

    /// The error of the next connection that failed before `accept` could take it (a
    /// refused handshake, a peer that went away); `None` once stopped.
    pub async fn next_failure(&self) -> Option<Error> {
        self.listener.next_failure().await
    }

    /// Stops accepting connections; endpoints already accepted go on.
    pub fn stop(&self) {
        self.listener.stop();
    }
}

impl<E: Endpoint> fmt::Debug for EndpointListener<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointListener")
            .field("endpoint", &E::CODE.name)
            .field("addr", &self.local_addr())
            .finish()
    }
}

/// Creates an `A` and a `B`, the two endpoints of a protocol, joined in this process (no
/// sockets, the same semantics as a connection); runs both `onCreate`s (with `args_a` and
/// `args_b`) and returns once both are ready.
pub async fn join_in_process<A: Endpoint, B: Endpoint>(
    args_a: Vec<Value>,
    args_b: Vec<Value>,
) -> Result<(A, B), Error> {
    let (a, b) = (Ep::new(A::CODE), Ep::new(B::CODE));
    let (Some((spec, 0)), Some((_, 1))) = (A::CODE.pair, B::CODE.pair) else {
        return Err(Error::Application {
            message: format!("`{}` and `{}` are not the two sides of a pair", A::CODE.name, B::CODE.name),
        });
    };
    let options = CallOptions::default();
    a.start(&options).await?;
    b.start(&options).await?;
    let (la, lb) = crate::driver::link::in_process_pair(
        (a.core.clone(), a.clone() as Arc<dyn Program>),
        (b.core.clone(), b.clone() as Arc<dyn Program>),
        spec.sequences.to_vec(),
    );
    let _ = a.link.set(la);
    let _ = b.link.set(lb);
    let (ready_a, ready_b) = tokio::join!(a.ready(&options, args_a), b.ready(&options, args_b));
    ready_a?;
    ready_b?;
    Ok((A::from_handle(Handle::new(a, options.clone())), B::from_handle(Handle::new(b, options))))
}

/// Creates an `A` and a `B` connected over TCP on this machine's loopback interface: `B`
/// listens on a port the system picks, `A` connects, both `onCreate`s run (with `args_a`
/// and `args_b`), and the listener is closed. The quickest way to test a protocol over a
/// real socket.
pub async fn join_loopback<A: Endpoint, B: Endpoint>(
    args_a: Vec<Value>,
    args_b: Vec<Value>,
) -> Result<(A, B), Error> {
    let listener = listen::<B>((std::net::Ipv4Addr::LOCALHOST, 0), TcpOptions::default()).await?;
    let joined = tokio::try_join!(
        connect::<A>(listener.local_addr(), TcpOptions::default(), args_a),
        listener.accept_args(args_b)
    );
    listener.stop();
    joined
}

/// Fails to compile (a constant evaluation error naming both versions) when generated code
/// made for runtime `generated` meets this runtime and the two are not compatible: same
/// major version, and the same minor version while the major version is 0.
pub const fn check_version(generated: &str) {
    let ours = env!("CARGO_PKG_VERSION").as_bytes();
    let theirs = generated.as_bytes();
    // Compare up to the second dot for 0.x versions, the first dot otherwise.
    let dots = if ours[0] == b'0' { 2 } else { 1 };
    let mut i = 0;
    let mut seen = 0;
    loop {
        let a = if i < ours.len() { ours[i] } else { b'.' };
        let b = if i < theirs.len() { theirs[i] } else { b'.' };
        if a != b {
            panic!(concat!(
                "this code was generated for another version of the `waldo` runtime than the one it is built with, ",
                env!("CARGO_PKG_VERSION"),
                " (the version it was made for is the string passed to `check_version` just above): ",
                "regenerate it with the waldoc of this version, or use the runtime of the waldoc that made it"
            ));
        }
        if a == b'.' {
            seen += 1;
            if seen == dots {
                return;
            }
        }
        if i >= ours.len() && i >= theirs.len() {
            return;
        }
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::check_version;

    fn refused(generated: &'static str) -> Option<String> {
        std::panic::catch_unwind(|| check_version(generated))
            .err()
            .map(|e| e.downcast_ref::<&str>().map(|s| (*s).to_owned()).unwrap_or_default())
    }

    #[test]
    fn generated_code_pins_the_runtime_version() {
        let ours = env!("CARGO_PKG_VERSION");
        let (major, rest) = ours.split_once('.').expect("a version");
        let minor = rest.split('.').next().expect("a minor version");
        // The same version, and another patch of it, are compatible.
        assert_eq!(refused(ours), None);
        let other_patch: &'static str = format!("{major}.{minor}.999").leak();
        assert_eq!(refused(other_patch), None);
        // Another minor version (while the major is 0) or another major version is not,
        // and the message names the runtime's version.
        let next_minor: &'static str =
            format!("{major}.{}.0", minor.parse::<u32>().expect("a number") + 1).leak();
        let next_major: &'static str = format!("{}.0.0", major.parse::<u32>().expect("a number") + 1).leak();
        for other in [next_major, "10.0.0", "", "garbage"] {
            let message = refused(other).unwrap_or_else(|| panic!("{other:?} should be refused"));
            assert!(message.contains(ours), "{message}");
        }
        if major == "0" {
            assert!(refused(next_minor).is_some());
        } else {
            assert_eq!(refused(next_minor), None);
        }
    }
}
