//! The listener: a handshake per accepted connection, each in its own task; the connections
//! that succeed wait for `accept`, the failures for `next_failure`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::sync::mpsc;

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
    /// Listens on `addr`; `setup` turns each accepted socket into a `P`.
    pub async fn bind<F, Fut>(addr: impl ToSocketAddrs, setup: F) -> Result<Listener<P>, Error>
    where
        F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<P, Error>> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| network(format!("could not listen: {e}")))?;
        let addr = listener.local_addr().map_err(|e| network(format!("could not listen: {e}")))?;
        let (accepted_tx, accepted) = mpsc::channel(1024);
        let (failures_tx, failures) = mpsc::channel(FAILURES_KEPT);
        let setup = Arc::new(setup);
        let task = tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, peer)) => {
                        let setup = setup.clone();
                        let accepted_tx = accepted_tx.clone();
                        let failures_tx = failures_tx.clone();
                        tokio::spawn(async move {
                            match setup(stream).await {
                                Ok(p) => {
                                    let _ = accepted_tx.send(p).await;
                                }
                                Err(error) => {
                                    tracing::warn!(%peer, %error, "a connection failed");
                                    let _ = failures_tx.try_send(error);
                                }
                            }
                        });
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
