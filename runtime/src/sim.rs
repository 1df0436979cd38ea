//! Deterministic simulation (the `sim` feature; the book's "Testing a protocol under
//! faults"): generated endpoints run as hosts of a [turmoil] simulation — one process, one
//! thread, simulated time, a seeded network with latency, partitions, held traffic, cut
//! connections and crashed hosts. The driver is the real one (handshake, framing,
//! heartbeats, deadlines, TLS); only the network under it is [`SimNetwork`]. Each host gets
//! a [seeded](crate::__rt::Clock::seeded) clock of its own, so its transaction ids, retry
//! jitter and nonces come from the simulation's seed, and the same seed replays the same
//! run.
//!
//! The only difference for generated code is the connection options:
//! `Server::listen("0.0.0.0:7000").with_options(waldo::sim::options())` and
//! `Client::connect("server:7000").with_options(waldo::sim::options())`.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::core::tx::Clock;
use crate::driver::tcp::{Acceptor, Address, NetFuture, Network, Socket, Stream, TcpOptions};

/// What host software returns: `Ok`, or any error (which fails the simulation).
pub type HostResult = Result<(), Box<dyn std::error::Error>>;

/// The connection options of endpoints on simulated hosts: the [`SimNetwork`], and
/// otherwise the defaults.
pub fn options() -> TcpOptions {
    TcpOptions::default().with_network(SimNetwork)
}

/// A simulation's mistake or failure, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimError {
    /// A fault or a query named a host the simulation does not have.
    UnknownHost {
        /// The name given.
        name: String,
        /// The hosts and clients the simulation has.
        known: Vec<String>,
    },
    /// A host or client of that name already exists.
    DuplicateHost(String),
    /// Only hosts (not clients) can crash and restart.
    NotAHost(String),
    /// The seed in an environment variable is not a number.
    BadSeed {
        /// The variable.
        var: String,
        /// What it holds.
        value: String,
    },
    /// The simulated-time limit passed with clients still running.
    TimeLimit {
        /// The limit.
        limit: Duration,
        /// The clients still running.
        running: Vec<String>,
    },
    /// Host or client software failed (returned an error or panicked).
    Software(String),
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimError::UnknownHost { name, known } => {
                write!(f, "the simulation has no host `{name}` (it has: {})", known.join(", "))
            }
            SimError::DuplicateHost(name) => write!(f, "the simulation already has a host `{name}`"),
            SimError::NotAHost(name) => {
                write!(f, "`{name}` is a client: only hosts (`Sim::host`) can crash and restart")
            }
            SimError::BadSeed { var, value } => {
                write!(f, "{var}=`{value}` is not a seed: expected a whole number such as {var}=42")
            }
            SimError::TimeLimit { limit, running } => write!(
                f,
                "the simulation did not finish within {limit:?} of simulated time; still running: {}",
                running.join(", ")
            ),
            SimError::Software(message) => write!(f, "simulated software failed: {message}"),
        }
    }
}

impl std::error::Error for SimError {}

/// Simulated time since the simulation started, for code running in it (`None` outside
/// a simulation).
pub fn elapsed() -> Option<Duration> {
    turmoil::sim_elapsed()
}

/// The seed in environment variable `var`, or `default` when it is not set.
pub fn seed_from_env(var: &str, default: u64) -> Result<u64, SimError> {
    match std::env::var(var) {
        Err(_) => Ok(default),
        Ok(value) => value.trim().parse().map_err(|_| SimError::BadSeed { var: var.to_owned(), value }),
    }
}

/// The command that replays `seed` of the running test: `WALDO_SIM_SEED=<seed> cargo test
/// -p <package> --test <target> -- <test> --exact` (from what cargo and the test harness
/// tell the running process).
pub fn replay_command(seed: u64) -> String {
    let mut command = format!("WALDO_SIM_SEED={seed} cargo test");
    if let Ok(package) = std::env::var("CARGO_PKG_NAME") {
        command.push_str(&format!(" -p {package}"));
    }
    let target = std::env::current_exe().ok().and_then(|exe| {
        let stem = exe.file_stem()?.to_str()?.to_owned();
        Some(match stem.rsplit_once('-') {
            Some((name, hash)) if hash.chars().all(|c| c.is_ascii_hexdigit()) => name.to_owned(),
            _ => stem,
        })
    });
    if let Some(target) = target {
        command.push_str(&format!(" --test {target}"));
    }
    if let Some(test) = std::thread::current().name().filter(|n| *n != "main") {
        command.push_str(&format!(" -- {test} --exact"));
    }
    command
}

/// Settings of a [`Sim`].
#[derive(Clone, Debug)]
pub struct Builder {
    seed: u64,
    latency: (Duration, Duration),
    time_limit: Duration,
    tick: Duration,
}

impl Builder {
    /// A simulation with `seed`: latency 1 to 5 ms, ticks of 1 ms, at most an hour of
    /// simulated time.
    pub fn new(seed: u64) -> Builder {
        Builder {
            seed,
            latency: (Duration::from_millis(1), Duration::from_millis(5)),
            time_limit: Duration::from_secs(3600),
            tick: Duration::from_millis(1),
        }
    }

    /// Each message takes between `min` and `max` (random, from the seed).
    pub fn latency(mut self, min: Duration, max: Duration) -> Builder {
        self.latency = (min.min(max), max.max(min));
        self
    }

    /// The simulation stops with [`SimError::TimeLimit`] when clients still run after
    /// `limit` of simulated time.
    pub fn time_limit(mut self, limit: Duration) -> Builder {
        self.time_limit = limit;
        self
    }

    /// Simulated time advances by `tick` per step.
    pub fn tick(mut self, tick: Duration) -> Builder {
        self.tick = tick.max(Duration::from_micros(1));
        self
    }

    /// The simulation.
    pub fn build<'a>(self) -> Sim<'a> {
        let mut builder = turmoil::Builder::new();
        builder
            .rng_seed(self.seed)
            .min_message_latency(self.latency.0)
            .max_message_latency(self.latency.1)
            .tick_duration(self.tick)
            // Our own limit reports which clients still run; turmoil's is a backstop.
            .simulation_duration(self.time_limit.saturating_mul(2).max(self.time_limit + self.tick));
        CUTS.with(|c| c.borrow_mut().clear());
        Sim {
            sim: builder.build(),
            seed: self.seed,
            time_limit: self.time_limit,
            names: Vec::new(),
            clients: Vec::new(),
        }
    }
}

/// A simulation: hosts (restartable software), clients (the test's own code), the network
/// between them and its faults.
pub struct Sim<'a> {
    sim: turmoil::Sim<'a>,
    seed: u64,
    time_limit: Duration,
    names: Vec<(String, bool)>,
    clients: Vec<(String, Rc<Cell<bool>>)>,
}

impl fmt::Debug for Sim<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sim").field("seed", &self.seed).field("elapsed", &self.sim.elapsed()).finish()
    }
}

/// The seed of one incarnation of one host: the simulation's seed mixed with the host's
/// name and how many times it started.
fn host_seed(seed: u64, name: &str, incarnation: u64) -> u64 {
    let mut h = seed ^ 0x9e37_79b9_7f4a_7c15;
    for b in name.bytes().chain(incarnation.to_le_bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    // splitmix64's finalizer
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

impl<'a> Sim<'a> {
    /// A simulation with `seed` and the default settings ([`Builder::new`]).
    pub fn new(seed: u64) -> Sim<'a> {
        Builder::new(seed).build()
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Simulated time since the start.
    pub fn elapsed(&self) -> Duration {
        self.sim.elapsed()
    }

    fn add_name(&mut self, name: &str, host: bool) -> Result<(), SimError> {
        if self.names.iter().any(|(n, _)| n == name) {
            return Err(SimError::DuplicateHost(name.to_owned()));
        }
        self.names.push((name.to_owned(), host));
        Ok(())
    }

    fn known(&self, name: &str) -> Result<bool, SimError> {
        self.names.iter().find(|(n, _)| n == name).map(|(_, host)| *host).ok_or_else(|| {
            SimError::UnknownHost {
                name: name.to_owned(),
                known: self.names.iter().map(|(n, _)| n.clone()).collect(),
            }
        })
    }

    /// Adds host `name` whose software `software` makes (again after each restart). Its
    /// endpoints share a clock seeded from the simulation's seed, the name and the restart.
    pub fn host<F, Fut>(&mut self, name: &str, software: F) -> Result<(), SimError>
    where
        F: Fn() -> Fut + 'a,
        Fut: Future<Output = HostResult> + 'static,
    {
        self.add_name(name, true)?;
        let (seed, owned, starts) = (self.seed, name.to_owned(), Cell::new(0u64));
        self.sim.host(name, move || {
            let n = starts.get();
            starts.set(n + 1);
            let clock = Arc::new(Clock::seeded(host_seed(seed, &owned, n)));
            Clock::scope(clock, software())
        });
        Ok(())
    }

    /// Adds client `name`: the test's code, run once; the simulation runs until every client
    /// finished.
    pub fn client<Fut>(&mut self, name: &str, software: Fut) -> Result<(), SimError>
    where
        Fut: Future<Output = HostResult> + 'static,
    {
        self.add_name(name, false)?;
        let done = Rc::new(Cell::new(false));
        self.clients.push((name.to_owned(), done.clone()));
        let clock = Arc::new(Clock::seeded(host_seed(self.seed, name, 0)));
        self.sim.client(name, async move {
            let result = Clock::scope(clock, software).await;
            done.set(true);
            result
        });
        Ok(())
    }

    /// Drops every message between `a` and `b` (both ways) until [`Sim::repair`].
    pub fn partition(&mut self, a: &str, b: &str) -> Result<(), SimError> {
        self.known(a)?;
        self.known(b)?;
        self.sim.partition(a, b);
        Ok(())
    }

    /// Ends a partition or a hold between `a` and `b`.
    pub fn repair(&mut self, a: &str, b: &str) -> Result<(), SimError> {
        self.known(a)?;
        self.known(b)?;
        self.sim.repair(a, b);
        Ok(())
    }

    /// Holds every message between `a` and `b` (delivered, in order, at [`Sim::release`]).
    pub fn hold(&mut self, a: &str, b: &str) -> Result<(), SimError> {
        self.known(a)?;
        self.known(b)?;
        self.sim.hold(a, b);
        Ok(())
    }

    /// Delivers what [`Sim::hold`] held between `a` and `b`.
    pub fn release(&mut self, a: &str, b: &str) -> Result<(), SimError> {
        self.known(a)?;
        self.known(b)?;
        self.sim.release(a, b);
        Ok(())
    }

    /// Sets the latency between `a` and `b`.
    pub fn set_latency(&mut self, a: &str, b: &str, latency: Duration) -> Result<(), SimError> {
        self.known(a)?;
        self.known(b)?;
        self.sim.set_link_latency(a, b, latency);
        Ok(())
    }

    /// Cuts every connection between `a` and `b`: both ends fail at once, as after a reset.
    /// Returns how many connections were cut.
    pub fn cut(&mut self, a: &str, b: &str) -> Result<usize, SimError> {
        self.known(a)?;
        self.known(b)?;
        let (a, b) = (self.sim.lookup(a), self.sim.lookup(b));
        Ok(CUTS.with(|cuts| {
            let mut cuts = cuts.borrow_mut();
            cuts.retain(|c| c.strong_count() > 0);
            let mut n = 0;
            for c in cuts.iter().filter_map(std::sync::Weak::upgrade) {
                if (c.local == a && c.peer == b) || (c.local == b && c.peer == a) {
                    n += usize::from(!c.cut.swap(true, Ordering::AcqRel));
                    c.wake();
                }
            }
            n
        }))
    }

    /// Crashes host `name`: its software stops and everything it held in memory is gone.
    pub fn crash(&mut self, name: &str) -> Result<(), SimError> {
        if !self.known(name)? {
            return Err(SimError::NotAHost(name.to_owned()));
        }
        self.sim.crash(name);
        Ok(())
    }

    /// Restarts host `name` (crashed or not) with its software made anew.
    pub fn bounce(&mut self, name: &str) -> Result<(), SimError> {
        if !self.known(name)? {
            return Err(SimError::NotAHost(name.to_owned()));
        }
        self.sim.bounce(name);
        Ok(())
    }

    /// Advances the simulation one tick; `true` once every client finished.
    pub fn step(&mut self) -> Result<bool, SimError> {
        if self.sim.elapsed() >= self.time_limit && self.clients.iter().any(|(_, done)| !done.get()) {
            return Err(SimError::TimeLimit {
                limit: self.time_limit,
                running: self.clients.iter().filter(|(_, d)| !d.get()).map(|(n, _)| n.clone()).collect(),
            });
        }
        self.sim.step().map_err(|e| SimError::Software(e.to_string()))
    }

    /// Runs until every client finished.
    pub fn run(&mut self) -> Result<(), SimError> {
        while !self.step()? {}
        Ok(())
    }

    /// Runs for `duration` of simulated time (or until every client finished).
    pub fn run_for(&mut self, duration: Duration) -> Result<bool, SimError> {
        let until = self.sim.elapsed() + duration;
        while self.sim.elapsed() < until {
            if self.step()? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

// ---------------------------------------------------------------- the network

/// The simulated network (turmoil's TCP), with connections [`Sim::cut`] can cut.
#[derive(Clone, Copy, Debug, Default)]
pub struct SimNetwork;

/// One simulated connection's end, as [`Sim::cut`] finds it.
struct CutHandle {
    local: IpAddr,
    peer: IpAddr,
    cut: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl CutHandle {
    fn wake(&self) {
        if let Some(w) = self.waker.lock().take() {
            w.wake();
        }
    }
}

thread_local! {
    /// The connections of the simulation running on this thread.
    static CUTS: RefCell<Vec<std::sync::Weak<CutHandle>>> = const { RefCell::new(Vec::new()) };
}

struct SimStream {
    inner: turmoil::net::TcpStream,
    handle: Arc<CutHandle>,
}

impl SimStream {
    fn new(inner: turmoil::net::TcpStream) -> io::Result<SimStream> {
        let handle = Arc::new(CutHandle {
            local: inner.local_addr()?.ip(),
            peer: inner.peer_addr()?.ip(),
            cut: AtomicBool::new(false),
            waker: Mutex::new(None),
        });
        CUTS.with(|c| c.borrow_mut().push(Arc::downgrade(&handle)));
        Ok(SimStream { inner, handle })
    }

    /// The error of a connection that was cut, or whose simulation is over (endpoints
    /// dropped with the simulation close their connections outside it).
    fn gone(&self) -> Option<io::Error> {
        if self.handle.cut.load(Ordering::Acquire) {
            Some(io::Error::new(io::ErrorKind::ConnectionReset, "the connection was cut"))
        } else if !turmoil::in_simulation() {
            Some(io::Error::new(io::ErrorKind::BrokenPipe, "the simulation has ended"))
        } else {
            None
        }
    }

    fn check(&self, cx: &mut Context<'_>) -> io::Result<()> {
        if let Some(e) = self.gone() {
            return Err(e);
        }
        let mut waker = self.handle.waker.lock();
        if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            *waker = Some(cx.waker().clone());
        }
        Ok(())
    }
}

impl Stream for SimStream {
    fn peer_addr(&self) -> Option<SocketAddr> {
        self.inner.peer_addr().ok()
    }
}

impl AsyncRead for SimStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for SimStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(e) = this.gone() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(e) = this.gone() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(e) = this.gone() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

struct SimAcceptor(turmoil::net::TcpListener);

impl Acceptor for SimAcceptor {
    fn accept(&mut self) -> NetFuture<'_, (Socket, SocketAddr)> {
        Box::pin(async move {
            let (stream, peer) = self.0.accept().await?;
            Ok((Socket::new(SimStream::new(stream)?), peer))
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

impl Network for SimNetwork {
    fn connect(&self, addr: Address) -> NetFuture<'static, Socket> {
        Box::pin(async move {
            let (host, port) = addr.host_port()?;
            let stream = turmoil::net::TcpStream::connect((host.as_str(), port)).await?;
            Ok(Socket::new(SimStream::new(stream)?))
        })
    }

    fn bind(&self, addr: Address) -> NetFuture<'static, Box<dyn Acceptor>> {
        Box::pin(async move {
            let (host, port) = addr.host_port()?;
            let listener = turmoil::net::TcpListener::bind((host.as_str(), port)).await?;
            Ok(Box::new(SimAcceptor(listener)) as Box<dyn Acceptor>)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_input_is_a_clear_error() {
        let mut sim = Sim::new(1);
        sim.host("server", || async { Ok(()) }).expect("a host");
        sim.client("client", async { Ok(()) }).expect("a client");
        assert_eq!(
            sim.partition("server", "nobody").expect_err("unknown").to_string(),
            "the simulation has no host `nobody` (it has: server, client)"
        );
        assert_eq!(sim.crash("client"), Err(SimError::NotAHost("client".into())));
        assert_eq!(sim.host("server", || async { Ok(()) }), Err(SimError::DuplicateHost("server".into())));
        let var = "WALDO_SIM_SEED_TEST_ONLY";
        assert_eq!(seed_from_env(var, 7), Ok(7));
        let err = SimError::BadSeed { var: var.into(), value: "abc".into() };
        assert_eq!(
            err.to_string(),
            format!("{var}=`abc` is not a seed: expected a whole number such as {var}=42")
        );
        sim.run().expect("runs");
    }

    #[test]
    fn a_client_past_the_time_limit_is_named() {
        let mut sim = Builder::new(3).time_limit(Duration::from_secs(2)).build();
        sim.client("sleeper", async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok(())
        })
        .expect("a client");
        sim.client("quick", async { Ok(()) }).expect("a client");
        match sim.run() {
            Err(SimError::TimeLimit { running, .. }) => assert_eq!(running, ["sleeper"]),
            other => panic!("expected the time limit, got {other:?}"),
        }
    }

    #[test]
    fn host_seeds_differ_by_name_and_restart_and_repeat() {
        assert_eq!(host_seed(1, "a", 0), host_seed(1, "a", 0));
        assert_ne!(host_seed(1, "a", 0), host_seed(1, "b", 0));
        assert_ne!(host_seed(1, "a", 0), host_seed(1, "a", 1));
        assert_ne!(host_seed(1, "a", 0), host_seed(2, "a", 0));
    }
}
