//! The TCP driver (the book's runtime chapter, "Connections over TCP"): the handshake, framing, heartbeats and the graceful close
//! around a pair's [`Engine`](crate::engine::Engine), which stays the same as in process.
//!
//! **Handshake.** Each side sends at once the 8-byte preamble (`WALDO\0` and the wire version,
//! little-endian `u16`) and a `Hello` frame (protocol name, fingerprint, the side and
//! endpoint it plays, a random 64-bit nonce); each checks the other's, then sends an `Ack`
//! frame echoing the other's nonce and checks the echo of its own. Any mismatch is refused
//! with a `Refuse` frame naming the cause, and reported on both sides as
//! [`Error::HandshakeRefused`]. Handshake frames are limited to 64 KiB and the whole
//! handshake to [`TcpOptions::handshake_timeout`].
//!
//! **Frames.** After the handshake every frame is a 4-byte little-endian length and a payload
//! whose first byte says what it is: an engine message ([`crate::engine::proto`]), or one of the
//! control frames below (ready, heartbeat, stop, stop acknowledged, close with a reason). A
//! frame longer than [`TcpOptions::max_frame`], a malformed message or an unknown kind is a
//! protocol deviation: the connection is closed with the reason and the pair is broken.
//!
//! **Tasks.** A connection has a reader task (reads, splits frames, hands messages to the
//! link) and a writer task. Messages produced together are encoded into one buffer and
//! written with one non-blocking write from the thread that produced them; the writer task
//! only finishes writes the socket could not take at once, sends heartbeats when the
//! connection has been quiet for a period, and declares the partner lost when nothing has
//! arrived for [`TcpOptions::partner_timeout`].

mod conn;
mod handshake;
mod listener;
pub(crate) mod network;
mod options;
pub(crate) mod tls;

use std::future::Future;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use tokio::sync::{Notify, watch};

use crate::core::endpoint::EndpointCore;
use crate::core::error::Error;
use crate::driver::link::{Link, Program};
use crate::engine::Side;
use crate::wire::FrameDecoder;
use conn::*;
use handshake::*;
pub use listener::Listener;
pub use network::{Acceptor, Address, NetFuture, Network, Socket, Stream, SystemTcp, ToSocketAddrs};
use options::*;
pub use options::{Accepted, HANDSHAKE_MAX_FRAME, MAGIC, PairSpec, TcpOptions, WIRE_VERSION, kind};
pub use tls::{PeerIdentity, TlsClient};
use tls::{Role, tls_error};

/// A connection whose handshake is done and whose link runs, waiting for this side's
/// `onCreate` and the partner's ready signal before public calls may start.
pub struct Pending {
    conn: Arc<Conn>,
    link: Link,
    identity: Option<PeerIdentity>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").field("peer", &self.conn.peer).finish()
    }
}

impl Pending {
    /// The connection's link.
    pub fn link(&self) -> &Link {
        &self.link
    }

    /// The partner's verified certificate, over TLS (`None` over plain TCP, or when a TLS
    /// listener does not ask for client certificates).
    pub fn peer_identity(&self) -> Option<&PeerIdentity> {
        self.identity.as_ref()
    }

    /// Runs `on_create` (this side's `onCreate`), tells the partner this side is ready and
    /// waits until the partner is too. If `on_create` fails, the partner is told why.
    pub async fn ready(self, on_create: impl Future<Output = Result<(), Error>>) -> Result<(), Error> {
        let mut partner = self.conn.partner.subscribe();
        if let Err(e) = on_create.await {
            self.conn.close_with(&network(format!("onCreate failed on the partner: {e}")));
            return Err(e);
        }
        self.conn.push(&[kind::READY]);
        self.conn.write_now();
        let state = partner.wait_for(|p| !matches!(p, Partner::Waiting)).await.map(|p| p.clone());
        match state {
            Ok(Partner::Ready) => Ok(()),
            Ok(Partner::Gone(e)) => Err(e),
            Ok(Partner::Waiting) | Err(_) => {
                Err(network("the connection closed before the partner was ready"))
            }
        }
    }
}

/// The endpoint that plays one side of a connection: generated code fills it in.
pub struct PairEnd {
    /// The protocol.
    pub spec: &'static PairSpec,
    /// The side this endpoint plays (its index among the protocol's endpoints).
    pub side: Side,
    /// The endpoint's data.
    pub core: Arc<EndpointCore>,
    /// The endpoint's code.
    pub program: Arc<dyn Program>,
}

/// Runs the handshake on a socket a listener accepted, for `end` (over TLS when
/// `options.tls_server` is set), then starts the connection's link; `attach` receives the
/// link before any message is read from the partner.
pub async fn establish(
    accepted: impl Into<Accepted>,
    end: PairEnd,
    options: &TcpOptions,
    attach: impl FnOnce(Link),
) -> Result<Pending, Error> {
    establish_as(accepted.into(), end, options, attach, Role::Listening).await
}

async fn establish_as(
    accepted: Accepted,
    end: PairEnd,
    options: &TcpOptions,
    attach: impl FnOnce(Link),
    role: Role,
) -> Result<Pending, Error> {
    let Accepted { stream, admission, heard } = accepted;
    let mut stream = stream;
    stream.set_nodelay().map_err(|e| network(format!("could not set TCP_NODELAY: {e}")))?;
    let peer = stream.peer_addr();
    let nonce = end.core.clock.random();
    let limit = options.handshake_timeout;
    let within = async |what: &str| refused(format!("the peer did not complete the {what} within {limit:?}"));
    let heard = heard.as_deref();
    let tls = match role {
        Role::Connecting => options.tls_client.as_ref().map(|_| role),
        Role::Listening => options.tls_server.as_ref().map(|_| role),
    };
    // The TLS handshake in time, its failures named.
    let tls_session = async |handshake: std::pin::Pin<
        Box<dyn Future<Output = std::io::Result<tokio_rustls::TlsStream<Socket>>> + Send + '_>,
    >| match tokio::time::timeout(limit, handshake).await {
        Ok(Ok(session)) => Ok(session),
        Ok(Err(e)) => {
            Err(tls_error(&e, role).unwrap_or_else(|| network(format!("the TLS handshake failed: {e}"))))
        }
        Err(_) => Err(within("TLS handshake").await),
    };
    let session = match (role, &options.tls_client, &options.tls_server) {
        (Role::Connecting, Some(client), _) => {
            let connector = tokio_rustls::TlsConnector::from(client.config.clone());
            let name = client.server_name.clone();
            Ok(tls_session(Box::pin(async move { connector.connect(name, stream).await.map(Into::into) }))
                .await?)
        }
        (Role::Listening, _, Some(server)) => {
            // A peer that speaks Waldo in plain TCP is told so in plain TCP.
            let mut first = [0u8; 6];
            let idle = options.handshake_idle.min(limit);
            let n = match tokio::time::timeout(idle, stream.peek(&mut first)).await {
                Ok(Some(Ok(n))) => n,
                // A stream that cannot peek: TLS tells a plain peer by its bad record.
                Ok(None) => 0,
                Ok(Some(Err(e))) => return Err(network(format!("the handshake failed: {e}"))),
                Err(_) => {
                    return Err(refused(format!("the peer sent nothing for {idle:?} during the handshake")));
                }
            };
            if let Some(heard) = heard {
                heard.store(true, std::sync::atomic::Ordering::Release);
            }
            if n > 0 && first[..n] == MAGIC[..n] {
                listener::refuse_over_limit(stream, tls::PLAIN_TO_TLS).await;
                return Err(refused(tls::PLAIN_TO_TLS));
            }
            let acceptor = tokio_rustls::TlsAcceptor::from(server.clone());
            Ok(tls_session(Box::pin(async move { acceptor.accept(stream).await.map(Into::into) })).await?)
        }
        // Plain TCP.
        _ => Err(stream),
    };
    let (dec, io, identity) = match session {
        Ok(mut session) => {
            let identity = session
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| PeerIdentity::from_der(c));
            let dec = match tokio::time::timeout(
                limit,
                handshake(&mut session, end.spec, end.side, nonce, options.handshake_idle, heard, tls),
            )
            .await
            {
                Ok(result) => result?,
                Err(_) => return Err(within("handshake").await),
            };
            let (read, write) = tokio::io::split(session);
            (dec, Io::Stream(Box::new(read), Box::new(write)), identity)
        }
        Err(mut stream) => {
            let dec = match tokio::time::timeout(
                limit,
                handshake(&mut stream, end.spec, end.side, nonce, options.handshake_idle, heard, None),
            )
            .await
            {
                Ok(result) => result?,
                Err(_) => return Err(within("handshake").await),
            };
            let io = match stream.into_tcp() {
                Ok(tcp) => {
                    let (read, write) = tcp.into_split();
                    Io::Tcp(read, write)
                }
                Err(other) => {
                    let (read, write) = tokio::io::split(other);
                    Io::Stream(Box::new(read), Box::new(write))
                }
            };
            (dec, io, None)
        }
    };
    Ok(start(dec, io, peer, identity, end, options, attach, admission))
}

/// A connection's stream, split: plain TCP (written inline by producers), or any other.
enum Io {
    Tcp(tokio::net::tcp::OwnedReadHalf, tokio::net::tcp::OwnedWriteHalf),
    Stream(Box<dyn tokio::io::AsyncRead + Send + Unpin>, StreamWrite),
}

/// Starts the connection's link and tasks once its handshake is done.
#[allow(clippy::too_many_arguments)]
fn start(
    mut dec: FrameDecoder,
    io: Io,
    peer: Option<std::net::SocketAddr>,
    identity: Option<PeerIdentity>,
    end: PairEnd,
    options: &TcpOptions,
    attach: impl FnOnce(Link),
    admission: Option<tokio::sync::OwnedSemaphorePermit>,
) -> Pending {
    let PairEnd { spec, side, core, program } = end;
    // Frames after the handshake may be as large as the connection allows.
    dec.set_max(options.max_frame);
    let link = Link::new(core, side, spec.sequences.to_vec(), program);
    let (tcp, stream_write, read): (_, _, Box<dyn tokio::io::AsyncRead + Send + Unpin>) = match io {
        Io::Tcp(read, write) => (Some(write), None, Box::new(read)),
        Io::Stream(read, write) => (None, Some(write), read),
    };
    let conn = Arc::new_cyclic(|me| Conn {
        me: me.clone(),
        tcp,
        stream: stream_write.map(Mutex::new),
        peer,
        max_frame: options.max_frame,
        out: Mutex::new(Outgoing {
            bytes: Vec::with_capacity(4096),
            urgent: false,
            writing: false,
            closing: false,
        }),
        wake_writer: Notify::new(),
        link: OnceLock::new(),
        partner: watch::Sender::new(Partner::Waiting),
        closed: watch::Sender::new(false),
        reader: OnceLock::new(),
        received: AtomicU64::new(0),
        reader_busy: std::sync::atomic::AtomicBool::new(false),
        sent: AtomicU64::new(0),
        admission: Mutex::new(admission),
    });
    let _ = conn.link.set(link.downgrade());
    link.attach(conn.clone());
    attach(link.clone());
    let _ = conn.reader.set(tokio::spawn(read_loop(conn.clone(), read, dec)).abort_handle());
    tokio::spawn(write_loop(conn.clone(), options.heartbeat, options.partner_timeout));
    Pending { conn, link, identity }
}

/// Connects to `addr` (over `options.network`) and runs [`establish`].
pub async fn connect(
    addr: impl ToSocketAddrs,
    end: PairEnd,
    options: &TcpOptions,
    attach: impl FnOnce(Link),
) -> Result<Pending, Error> {
    let addr = addr.to_address();
    let stream = options
        .network()
        .connect(addr.clone())
        .await
        .map_err(|e| network(format!("could not connect to the partner at {addr}: {e}")))?;
    establish_as(stream.into(), end, options, attach, Role::Connecting).await
}
