//! The listener: a handshake per accepted connection, each in its own task; the connections
//! that succeed wait for `accept`, the failures for `next_failure`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{Notify, Semaphore, mpsc};

use super::handshake::{refusal, refuse_over_limit};
use super::network::ToSocketAddrs;
use super::options::*;
use crate::core::error::Error;

// ---------------------------------------------------------------- listening

/// A TCP listener that runs the handshake of every connection it accepts, each in its own
/// task, and queues the connections that succeed as `P` (made by the listener's setup
/// function). A connection that fails does not disturb the others; its error is kept for
/// [`Listener::next_failure`] and logged.
pub struct Listener<P> {
    addr: SocketAddr,
    accepted: tokio::sync::Mutex<mpsc::Receiver<P>>,
    failures: tokio::sync::Mutex<mpsc::Receiver<Error>>,
    task: tokio::task::AbortHandle,
}

impl<P> std::fmt::Debug for Listener<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener").field("addr", &self.addr).finish_non_exhaustive()
    }
}

/// How many failed connections a listener remembers until they are read.
pub(super) const FAILURES_KEPT: usize = 64;

impl<P: Send + 'static> Listener<P> {
    /// Listens on `addr` with the default limits; `setup` turns each accepted socket into a `P`
    /// (or nothing).
    pub async fn bind<F, Fut>(addr: impl ToSocketAddrs, setup: F) -> Result<Listener<P>, Error>
    where
        F: Fn(Accepted) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Option<P>, Error>> + Send + 'static,
    {
        Self::bind_with(addr, &TcpOptions::default(), setup).await
    }

    /// Listens on `addr`; `setup` turns each accepted socket into a `P` (it runs the
    /// handshake), or into nothing (a partner that resumed its session). At most `options.max_connections` connections are served at once (one
    /// more is refused with the reason) and at most `options.max_handshakes` run their
    /// `setup` at once; the others wait, and a handshake that heard nothing from its peer
    /// for half a second is closed to make room for them, so sockets that connect and say
    /// nothing cannot keep a real partner out.
    pub async fn bind_with<F, Fut>(
        addr: impl ToSocketAddrs,
        options: &TcpOptions,
        setup: F,
    ) -> Result<Listener<P>, Error>
    where
        F: Fn(Accepted) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Option<P>, Error>> + Send + 'static,
    {
        let addr = addr.to_address();
        let mut listener = options
            .network()
            .bind(addr.clone())
            .await
            .map_err(|e| network(format!("could not listen at {addr}: {e}")))?;
        let addr = listener.local_addr().map_err(|e| network(format!("could not listen at {addr}: {e}")))?;
        let (accepted_tx, accepted) = mpsc::channel(1024);
        let (failures_tx, failures) = mpsc::channel(FAILURES_KEPT);
        let setup = Arc::new(setup);
        let connections = Arc::new(Semaphore::new(options.max_connections.max(1)));
        let max_connections = options.max_connections.max(1);
        let handshakes = Arc::new(Handshakes::new(options.max_handshakes.max(1)));
        let refusing = Arc::new(Semaphore::new(REFUSALS_AT_ONCE));
        let sessions = options.reconnect.is_some().then(|| Arc::new(super::session::Sessions::default()));
        let task = tokio::spawn(async move {
            let mut refused_since_warning = 0u64;
            let mut last_warning: Option<std::time::Instant> = None;
            loop {
                match listener.accept().await {
                    Ok((stream, peer)) => {
                        let Ok(admission) = connections.clone().try_acquire_owned() else {
                            // Over the limit: say why. A few refusals at a time wait a moment
                            // for the peer's bytes before closing (closing with unread input
                            // resets the connection, and the peer could lose the reason);
                            // past that, the socket just closes.
                            let reason =
                                format!("the listener serves its maximum of {max_connections} connections");
                            match refusing.clone().try_acquire_owned() {
                                Ok(permit) => {
                                    let reason = reason.clone();
                                    tokio::spawn(async move {
                                        refuse_over_limit(stream, &reason).await;
                                        drop(permit);
                                    });
                                }
                                Err(_) => {
                                    let mut stream = stream;
                                    let _ = stream.try_write(&refusal(&reason));
                                    drop(stream);
                                }
                            }
                            refused_since_warning += 1;
                            if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                                tracing::warn!(%peer, refused = refused_since_warning, %reason, "refusing connections");
                                refused_since_warning = 0;
                                last_warning = Some(std::time::Instant::now());
                            }
                            continue;
                        };
                        let heard = Arc::new(AtomicBool::new(false));
                        let accepted = Accepted::admitted(stream, admission, heard.clone(), sessions.clone());
                        let (setup, accepted_tx, failures_tx, handshakes) =
                            (setup.clone(), accepted_tx.clone(), failures_tx.clone(), handshakes.clone());
                        let handshakes_now = handshakes.clone();
                        // The handshake's task: it holds a place among the running
                        // handshakes and can be aborted to make room (see `Handshakes`).
                        let launch = move |slot: HandshakeSlot| {
                            let n = slot.n;
                            let task = tokio::spawn(async move {
                                let result = setup(accepted).await;
                                drop(slot);
                                match result {
                                    Ok(Some(p)) => {
                                        let _ = accepted_tx.send(p).await;
                                    }
                                    Ok(None) => {}
                                    Err(error) => {
                                        tracing::warn!(%peer, %error, "a connection failed");
                                        let _ = failures_tx.try_send(error);
                                    }
                                }
                            });
                            handshakes.started(n, task.abort_handle());
                        };
                        // A free place: at once (no task hop before the handshake starts);
                        // otherwise wait for one in a task of its own.
                        match handshakes_now.try_enter(heard) {
                            Ok(slot) => launch(slot),
                            Err(heard) => {
                                let handshakes = handshakes_now.clone();
                                tokio::spawn(async move { launch(handshakes.enter(heard).await) });
                            }
                        }
                    }
                    Err(e) => {
                        // Out of descriptors or similar: wait a little and go on.
                        tracing::warn!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        })
        .abort_handle();
        Ok(Listener {
            addr,
            accepted: tokio::sync::Mutex::new(accepted),
            failures: tokio::sync::Mutex::new(failures),
            task,
        })
    }
}

/// How many refused connections may wait for their peer's bytes at once.
const REFUSALS_AT_ONCE: usize = 64;

/// The handshakes a listener runs: at most `max` at once. A connection that finds them all
/// taken waits for a place; while it waits, a handshake that has run for [`PATIENCE`]
/// without hearing anything from its peer (not even the preamble every real partner sends
/// at once) is closed to make room. So sockets that connect and say nothing delay a real
/// partner by at most about [`PATIENCE`] per round, instead of keeping it out until their
/// idle limit.
struct Handshakes {
    max: usize,
    table: parking_lot::Mutex<HandshakeTable>,
    freed: Notify,
}

/// How long a handshake that has heard nothing keeps its place when others wait for one.
const PATIENCE: Duration = Duration::from_millis(500);

#[derive(Default)]
struct HandshakeTable {
    next: u64,
    /// Running handshakes by number (ascending: oldest first).
    running: std::collections::BTreeMap<u64, Running>,
}

struct Running {
    since: tokio::time::Instant,
    heard: Arc<AtomicBool>,
    task: Option<tokio::task::AbortHandle>,
}

/// A running handshake's place; dropping it (the handshake ended, or its task was aborted)
/// frees the place.
struct HandshakeSlot {
    table: Arc<Handshakes>,
    n: u64,
}

impl Handshakes {
    fn new(max: usize) -> Handshakes {
        Handshakes { max, table: parking_lot::Mutex::new(HandshakeTable::default()), freed: Notify::new() }
    }

    /// Waits for a place among the running handshakes (see the type's docs).
    async fn enter(self: &Arc<Self>, heard: Arc<AtomicBool>) -> HandshakeSlot {
        loop {
            let freed = self.freed.notified();
            let wait = {
                let mut table = self.table.lock();
                let mut evict = None;
                let mut wait = PATIENCE;
                if table.running.len() >= self.max {
                    let now = tokio::time::Instant::now();
                    for (n, r) in &table.running {
                        if r.heard.load(Ordering::Acquire) {
                            continue;
                        }
                        let age = now.saturating_duration_since(r.since);
                        if age >= PATIENCE {
                            evict = Some(*n);
                        } else {
                            wait = wait.min(PATIENCE - age);
                        }
                        break; // the oldest silent one decides
                    }
                }
                if table.running.len() < self.max || evict.is_some() {
                    if let Some(old) = evict.and_then(|n| table.running.remove(&n)) {
                        tracing::debug!(
                            "closing a handshake that heard nothing, to make room for a new connection"
                        );
                        if let Some(task) = old.task {
                            task.abort();
                        }
                    }
                    table.next += 1;
                    let n = table.next;
                    table
                        .running
                        .insert(n, Running { since: tokio::time::Instant::now(), heard, task: None });
                    return HandshakeSlot { table: self.clone(), n };
                }
                wait
            };
            let _ = tokio::time::timeout(wait, freed).await;
        }
    }

    /// A place among the running handshakes if one is free now; `heard` back otherwise.
    fn try_enter(self: &Arc<Self>, heard: Arc<AtomicBool>) -> Result<HandshakeSlot, Arc<AtomicBool>> {
        let mut table = self.table.lock();
        if table.running.len() >= self.max {
            return Err(heard);
        }
        table.next += 1;
        let n = table.next;
        table.running.insert(n, Running { since: tokio::time::Instant::now(), heard, task: None });
        Ok(HandshakeSlot { table: self.clone(), n })
    }

    /// The task of handshake `n` (unless it already ended).
    fn started(&self, n: u64, task: tokio::task::AbortHandle) {
        if let Some(r) = self.table.lock().running.get_mut(&n) {
            r.task = Some(task);
        }
    }
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        self.table.table.lock().running.remove(&self.n);
        self.table.freed.notify_waiters();
    }
}
impl<P> Listener<P> {
    /// The address the listener is bound to (with the port the system chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The next connection that completed its handshake; [`Error::Stopped`] once the
    /// listener is stopped and the queue is empty.
    pub async fn next(&self) -> Result<P, Error> {
        self.accepted.lock().await.recv().await.ok_or(Error::Stopped)
    }

    /// The error of the next connection that failed before it was accepted (a refused
    /// handshake, a peer that vanished); `None` once the listener is stopped.
    pub async fn next_failure(&self) -> Option<Error> {
        self.failures.lock().await.recv().await
    }

    /// Stops accepting connections. Endpoints already accepted go on.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl<P> Drop for Listener<P> {
    fn drop(&mut self) {
        self.task.abort();
    }
}
