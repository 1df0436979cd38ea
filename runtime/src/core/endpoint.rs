//! Endpoints as the runtime sees them: their variable slots, their identity, and the dynamic
//! call interface other endpoints use (`e.f(args)`).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::core::effects::{Printer, stdout_printer};
use crate::core::error::Flow;
use crate::core::tx::Tx;
use crate::core::tx::TxLock;
use crate::core::value::Value;

pub(crate) struct Slot {
    pub(crate) value: Value,
    pub(crate) lock: TxLock,
    /// A peered variable: its writes go to the other replica too.
    pub(crate) peered: bool,
    /// A peered variable that the other endpoint controls.
    pub(crate) foreign: Option<crate::core::tx::Foreign>,
}

/// The data of one running endpoint: its global (and peered) variables, by slot number.
pub struct EndpointCore {
    pub(crate) name: String,
    pub(crate) id: String,
    pub(crate) serial: u64,
    pub(crate) slots: Mutex<Vec<Slot>>,
    /// How many of the slots are peered (`0..n`; set once, before any transaction).
    pub(crate) peered_slots: std::sync::atomic::AtomicUsize,
    pub(crate) printer: Printer,
    /// The connection to the partner, once it has one: a write to the endpoint's peered data
    /// enlists the transaction there. Weak: the generated endpoint owns its link.
    pub(crate) link: std::sync::OnceLock<std::sync::Weak<dyn crate::core::tx::TxLink>>,
    /// The priority clock of the endpoint's host (see [`crate::core::tx::Clock`]).
    pub(crate) clock: Arc<crate::core::tx::Clock>,
    /// The order this endpoint's `signal`/`print` effects are delivered in.
    pub(crate) effects: Arc<crate::core::effects::EffectQueue>,
    pub(crate) gate: crate::core::gate::Gate,
    pub(crate) life: crate::core::lifecycle::Lifecycle,
    /// What the endpoint's host calls did.
    pub(crate) stats: crate::core::stats::Counts,
}

static NEXT_ENDPOINT: AtomicU64 = AtomicU64::new(1);

impl EndpointCore {
    /// A new endpoint of kind `name` whose slots start with `initial` values.
    pub fn new(name: &str, initial: Vec<Value>) -> Arc<EndpointCore> {
        Self::with_printer(name, initial, stdout_printer())
    }

    /// Like [`EndpointCore::new`], with `print` going to `printer`.
    pub fn with_printer(name: &str, initial: Vec<Value>, printer: Printer) -> Arc<EndpointCore> {
        let n = NEXT_ENDPOINT.fetch_add(1, Ordering::Relaxed);
        Arc::new(EndpointCore {
            name: name.to_owned(),
            id: format!("{name}-{n}"),
            serial: n,
            slots: Mutex::new(
                initial
                    .into_iter()
                    .map(|value| Slot { value, lock: TxLock::default(), peered: false, foreign: None })
                    .collect(),
            ),
            peered_slots: std::sync::atomic::AtomicUsize::new(0),
            printer,
            link: std::sync::OnceLock::new(),
            clock: crate::core::tx::Clock::current(),
            effects: Arc::default(),
            gate: crate::core::gate::Gate::default(),
            life: crate::core::lifecycle::Lifecycle::default(),
            stats: crate::core::stats::Counts::default(),
        })
    }

    /// Appends a slot (used while initializing globals in order).
    pub fn push_slot(&self, value: Value) -> usize {
        let mut slots = self.slots.lock();
        slots.push(Slot { value, lock: TxLock::default(), peered: false, foreign: None });
        slots.len() - 1
    }

    /// Marks slots `0..count` as the endpoint's replica of the protocol's peered variables
    /// (the same numbering on both endpoints of a pair).
    pub fn set_peered(&self, count: usize) {
        let mut slots = self.slots.lock();
        self.peered_slots.store(count.min(slots.len()), Ordering::Release);
        for (i, s) in slots.iter_mut().enumerate().take(count) {
            s.peered = true;
            let tag = crate::core::tx::PeeredTag { core: self.serial, slot: i as u32, foreign: s.foreign };
            crate::core::value::tag_value(&s.value, &[tag]);
        }
    }

    /// Marks peered slot `slot` (variable `variable`) as controlled by the other endpoint,
    /// `owner`: this endpoint's code may read it but not change it, directly or through any
    /// reference to what it holds. Call it before [`EndpointCore::set_peered`].
    pub fn set_controlled_by(&self, slot: usize, variable: &'static str, owner: &'static str) {
        if let Some(s) = self.slots.lock().get_mut(slot) {
            s.foreign = Some(crate::core::tx::Foreign { variable, owner });
        }
    }

    /// How many peered variables the endpoint holds (slots `0..n`).
    pub fn peered_count(&self) -> usize {
        self.slots.lock().iter().take_while(|s| s.peered).count()
    }

    /// The committed value of slot `slot`, copied, read without a transaction (for tests
    /// and for the host's view of a broken pair).
    pub fn committed_value(&self, slot: usize) -> Option<Value> {
        self.slots.lock().get(slot).map(|s| s.value.detached_copy())
    }

    /// The endpoint's unique id (`id()` in Waldo).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The endpoint's kind (its name in the protocol).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Adds a listener that runs once when the endpoint stops (by its own `stop` or its
    /// partner's); at once if it already has.
    pub fn on_stop(&self, listener: impl FnOnce() + Send + 'static) {
        self.life.on_stop(Box::new(listener));
    }

    /// Whether the endpoint is stopping or stopped.
    pub fn is_stopped(&self) -> bool {
        self.life.is_stopping()
    }
}

impl fmt::Debug for EndpointCore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointCore").field("id", &self.id).finish_non_exhaustive()
    }
}

/// The future of a dynamic endpoint call.
pub type CallFuture<'a> = Pin<Box<dyn Future<Output = Flow<Vec<Value>>> + Send + 'a>>;

/// What generated code implements so that other endpoints can call its public functions by
/// name (`e.f(args)`). An unknown name or wrong arguments must raise an
/// ApplicationException, never hang.
pub trait DynEndpoint: std::any::Any + Send + Sync {
    /// The endpoint's data (its id and gate come from here).
    fn core(&self) -> &Arc<EndpointCore>;
    /// Calls public function `function` inside `tx` with `args` (already deep-copied).
    fn call<'a>(&'a self, tx: &'a Tx, function: &'a str, args: Vec<Value>) -> CallFuture<'a>;
}

/// A reference to an endpoint on the same host (`Endpoint` values).
#[derive(Clone)]
pub struct EndpointRef(pub Arc<dyn DynEndpoint>);

impl fmt::Debug for EndpointRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<Endpoint {}>", self.id())
    }
}

impl EndpointRef {
    /// The endpoint's unique id.
    pub fn id(&self) -> &str {
        self.0.core().id()
    }

    /// `e.f(args)`: calls public function `function` of the endpoint in the caller's
    /// transaction. Arguments and results are deep-copied across the boundary.
    pub async fn call(&self, tx: &Tx, function: &str, args: Vec<Value>) -> Flow<Vec<Value>> {
        // Like a host call, an endpoint call counts as running on the endpoint (its stop
        // waits for it), and a stopped endpoint takes none.
        let core = self.0.core();
        let entered = if core.gate.held_by(tx.addr()) { core.life.enter_nested() } else { core.life.enter() };
        let _running = entered.map_err(|_| {
            crate::core::error::Exception::network(format!(
                "cannot call `{function}`: endpoint `{}` is stopped",
                core.id()
            ))
        })?;
        let mut copied = Vec::with_capacity(args.len());
        for a in &args {
            copied.push(tx.deep_copy(a).await?);
        }
        // The callee's code runs as code of the callee: under its gate.
        let results = Gated {
            core: self.0.core().clone(),
            tx: tx.clone(),
            inner: Box::pin(self.0.call(tx, function, copied)),
        }
        .await?;
        let mut out = Vec::with_capacity(results.len());
        for r in &results {
            out.push(tx.deep_copy(r).await?);
        }
        Ok(out)
    }
}

/// A future whose every poll holds an endpoint's gate: code of transaction `tx` running as
/// code of endpoint `core`.
struct Gated<F> {
    core: Arc<EndpointCore>,
    tx: Tx,
    inner: Pin<Box<F>>,
}

impl<F: Future> Future for Gated<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<F::Output> {
        let this = &mut *self;
        let Some(_leave) = this.core.gate.enter(cx, this.tx.addr()) else { return std::task::Poll::Pending };
        this.inner.as_mut().poll(cx)
    }
}
