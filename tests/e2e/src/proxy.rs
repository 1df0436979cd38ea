//! A TCP proxy that cuts connections, for the reconnection tests and benchmark: it forwards
//! bytes both ways between a connecting side and a listener, counts the frames it forwards
//! in each direction (after each connection's preamble and handshake frames), and on
//! command cuts a connection after its k-th frame in one direction, cuts every connection
//! now, or refuses new ones (a partner that is gone for good). Cutting closes both sockets:
//! each side sees its connection end, as when a NAT forgets it or a proxy restarts.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// A direction through the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// From the connecting side to the listener.
    ToListener = 0,
    /// From the listener to the connecting side.
    ToConnector = 1,
}

#[derive(Default)]
struct Shared {
    /// The next connection is cut after its k-th frame in this direction.
    armed: parking_lot::Mutex<Option<(Dir, u64)>>,
    /// Frames forwarded after the handshake, per direction, over all connections.
    frames: [AtomicU64; 2],
    connections: AtomicUsize,
    cuts: AtomicUsize,
    refusing: AtomicBool,
    /// Every live connection listens for a cut.
    cut_all: Notify,
    generation: AtomicU64,
    /// When the last cut closed its sockets.
    last_cut: parking_lot::Mutex<Option<std::time::Instant>>,
    /// The sockets of every live connection (the connecting side's, the listener's), by
    /// number: `cut_now` shuts them down itself, at once.
    live: parking_lot::Mutex<std::collections::HashMap<usize, (socket2::Socket, socket2::Socket)>>,
}

/// The proxy; dropping it stops accepting (connections already made go on until cut).
pub struct CutProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::AbortHandle,
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl CutProxy {
    /// A proxy on a free loopback port, forwarding to `target`.
    pub async fn start(target: SocketAddr) -> CutProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if s.refusing.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(target).await else { continue };
                let _ = (client.set_nodelay(true), server.set_nodelay(true));
                let n = s.connections.fetch_add(1, Ordering::SeqCst);
                if let (Ok(c), Ok(l)) =
                    (socket2::SockRef::from(&client).try_clone(), socket2::SockRef::from(&server).try_clone())
                {
                    s.live.lock().insert(n, (c, l));
                }
                let plan = s.armed.lock().take();
                tokio::spawn(relay(n, client, server, plan, s.clone()));
            }
        })
        .abort_handle();
        CutProxy { addr, shared, task }
    }

    /// The address to connect to instead of the listener's.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The next connection through the proxy is cut right after its `k`-th frame (counting
    /// from 1 after the handshake) in direction `dir` is forwarded.
    pub fn cut_after(&self, dir: Dir, k: u64) {
        *self.shared.armed.lock() = Some((dir, k));
    }

    /// Cuts every connection through the proxy now: shuts their sockets down before it
    /// returns (the connecting sides' first, the side that redials).
    pub fn cut_now(&self) {
        // The generation first: a connection made after it (a side that noticed the cut and
        // redialed) is not cut.
        self.shared.generation.fetch_add(1, Ordering::SeqCst);
        let live: Vec<_> = self.shared.live.lock().drain().map(|(_, pair)| pair).collect();
        for (connector, _) in &live {
            let _ = connector.shutdown(std::net::Shutdown::Both);
        }
        for (_, listener) in &live {
            let _ = listener.shutdown(std::net::Shutdown::Both);
        }
        if !live.is_empty() {
            *self.shared.last_cut.lock() = Some(std::time::Instant::now());
            self.shared.cuts.fetch_add(live.len(), Ordering::SeqCst);
        }
        self.shared.cut_all.notify_waiters();
    }

    /// While `on`, new connections are closed as soon as they arrive.
    pub fn refuse(&self, on: bool) {
        self.shared.refusing.store(on, Ordering::SeqCst);
    }

    /// Frames forwarded after the handshakes, in `dir`, over all connections.
    pub fn frames(&self, dir: Dir) -> u64 {
        self.shared.frames[dir as usize].load(Ordering::SeqCst)
    }

    /// Connections made through the proxy.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// When the last cut closed its connection's sockets.
    pub fn last_cut(&self) -> Option<std::time::Instant> {
        *self.shared.last_cut.lock()
    }

    /// Connections cut.
    pub fn cuts(&self) -> usize {
        self.shared.cuts.load(Ordering::SeqCst)
    }
}

/// Where a direction's byte stream is: in the preamble, a frame header, or a payload.
struct Framing {
    preamble: usize,
    header: [u8; 4],
    have: usize,
    payload: usize,
    /// The kind of the frame whose payload is arriving (its first byte).
    kind: Option<u8>,
    /// Handshake frames still to come in this direction.
    handshake: u64,
    frames: u64,
}

/// Handshake frames each side sends: its `Hello` and its `Ack` (a side resuming a session
/// sends no `Ack`: its frames follow its `Hello`).
const HANDSHAKE_FRAMES: u64 = 2;

impl Framing {
    fn new() -> Framing {
        Framing {
            preamble: 8,
            header: [0; 4],
            have: 0,
            payload: 0,
            kind: None,
            handshake: HANDSHAKE_FRAMES,
            frames: 0,
        }
    }

    /// Takes `bytes`; returns how many to forward, and whether the connection is to be cut
    /// after them (frame number `cut` ended there). Counts the frames completed.
    fn feed(&mut self, bytes: &[u8], cut: Option<u64>, counted: &AtomicU64) -> (usize, bool) {
        let mut i = 0;
        while i < bytes.len() {
            if self.preamble > 0 {
                let n = self.preamble.min(bytes.len() - i);
                self.preamble -= n;
                i += n;
                continue;
            }
            if self.payload == 0 && self.have < 4 {
                self.header[self.have] = bytes[i];
                self.have += 1;
                i += 1;
                if self.have == 4 {
                    self.payload = u32::from_le_bytes(self.header) as usize;
                    if self.payload == 0 {
                        self.have = 0;
                        if self.done(cut, counted) {
                            return (i, true);
                        }
                    }
                }
                continue;
            }
            if self.kind.is_none() {
                self.kind = Some(bytes[i]);
            }
            let n = self.payload.min(bytes.len() - i);
            self.payload -= n;
            i += n;
            if self.payload == 0 {
                self.have = 0;
                if self.done(cut, counted) {
                    return (i, true);
                }
            }
        }
        (i, false)
    }

    /// A frame ended; true when it is the one to cut after.
    fn done(&mut self, cut: Option<u64>, counted: &AtomicU64) -> bool {
        let kind = self.kind.take();
        if self.handshake == 1 && kind != Some(waldo::net::kind::ACK) {
            // A resume's frames after its Hello.
            self.handshake = 0;
        }
        if self.handshake > 0 {
            self.handshake -= 1;
            return false;
        }
        self.frames += 1;
        counted.fetch_add(1, Ordering::SeqCst);
        cut == Some(self.frames)
    }
}

async fn relay(
    n: usize,
    client: TcpStream,
    server: TcpStream,
    plan: Option<(Dir, u64)>,
    shared: Arc<Shared>,
) {
    let generation = shared.generation.load(Ordering::SeqCst);
    let cut = Arc::new(Notify::new());
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let at = |dir: Dir| plan.filter(|(d, _)| *d == dir).map(|(_, k)| k);
    let up = pump(cr, sw, at(Dir::ToListener), Dir::ToListener, shared.clone(), cut.clone());
    let down = pump(sr, cw, at(Dir::ToConnector), Dir::ToConnector, shared.clone(), cut.clone());
    let cut_all = async {
        loop {
            let notified = shared.cut_all.notified();
            if shared.generation.load(Ordering::SeqCst) != generation {
                return;
            }
            notified.await;
        }
    };
    // A cut ends the connection (both sockets drop here), or both directions end; `cut_now`
    // shut the sockets down and counted its cut itself.
    let cutting = tokio::select! {
        _ = async { tokio::join!(up, down) } => false,
        () = cut.notified() => true,
        () = cut_all => false,
    };
    shared.live.lock().remove(&n);
    if cutting {
        *shared.last_cut.lock() = Some(std::time::Instant::now());
        shared.cuts.fetch_add(1, Ordering::SeqCst);
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    cut_at: Option<u64>,
    dir: Dir,
    shared: Arc<Shared>,
    cut: Arc<Notify>,
) {
    let mut framing = Framing::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let (forward, cutting) = framing.feed(&buf[..n], cut_at, &shared.frames[dir as usize]);
        if to.write_all(&buf[..forward]).await.is_err() {
            break;
        }
        if cutting {
            cut.notify_one();
            // Wait to be dropped with the connection.
            std::future::pending::<()>().await;
        }
    }
    // The other direction may still be going: a half-closed socket is the peer's business.
    let _ = to.shutdown().await;
}
