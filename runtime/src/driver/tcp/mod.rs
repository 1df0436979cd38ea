//! The TCP driver (the book's runtime chapter, "Connections over TCP"): the handshake, framing, heartbeats and the graceful close
//! around a pair's [`Engine`](crate::engine::Engine), which stays the same as in process.
//!
//! **Handshake.** Each side sends at once the 8-byte preamble (`WALDO\0` and the wire version,
//! little-endian `u16`) and a `Hello` frame (protocol name, fingerprint, the side and
//! endpoint it plays, a random 64-bit nonce); each checks the other's, then sends an `Ack`
//! frame echoing the other's nonce and checks the echo of its own (a side resuming a session
//! sends no `Ack`, and its frames follow its `Hello`: see [`session`]). Any mismatch is refused
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
//!
//! **Reconnection.** With a [`ReconnectPolicy`] on both sides, the listener grants a session
//! in its handshake answer, and a broken connection is resumed instead of ending the pair
//! ([`session`] says how; [`resume`] runs an outage).

mod conn;
mod handshake;
mod listener;
pub(crate) mod network;
mod open;
mod options;
mod resume;
mod session;
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
use conn::*;
pub use listener::Listener;
pub use network::{Acceptor, Address, NetFuture, Network, Socket, Stream, SystemTcp, ToSocketAddrs};
use open::{Open, open};
use options::*;
pub use options::{
    Accepted, ConnectionState, HANDSHAKE_MAX_FRAME, MAGIC, PairSpec, ReconnectPolicy, TcpOptions,
    WIRE_VERSION, kind,
};
use session::{Answer, Keys, NotFound, Offer, RESEND_WITH_HANDSHAKE, Redial, Session, Starting};
use tls::Role;
pub use tls::{PeerIdentity, TlsClient};

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
/// link before any message is read from the partner. A connection that resumes a session
/// of this listener is refused here (see [`accept`] for listeners that resume).
pub async fn establish(
    accepted: impl Into<Accepted>,
    end: PairEnd,
    options: &TcpOptions,
    attach: impl FnOnce(Link),
) -> Result<Pending, Error> {
    let mut accepted = accepted.into();
    accepted.sessions = None;
    match accept(accepted, end.spec, end.side, options).await? {
        Accept::New(opened) => Ok((*opened).start(end, options, attach)),
        Accept::Resumed => Err(refused("a resumed session where a new one was expected")),
    }
}

/// A connection a listener accepted, after its handshake.
pub enum Accept {
    /// A new partner: start its endpoint with [`Opened::start`].
    New(Box<Opened>),
    /// The partner of an existing session came back: the session goes on over this
    /// connection, and nothing is left to do.
    Resumed,
}

impl std::fmt::Debug for Accept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Accept::New(_) => "New",
            Accept::Resumed => "Resumed",
        })
    }
}

/// Runs the handshake of a socket a listener accepted, as `side` of `spec`: a new partner,
/// or (when the listener resumes sessions) one resuming its session.
pub async fn accept(
    accepted: Accepted,
    spec: &'static PairSpec,
    side: Side,
    options: &TcpOptions,
) -> Result<Accept, Error> {
    let clock = crate::core::tx::Clock::current();
    let sessions = accepted.sessions.clone().filter(|_| options.reconnect.is_some());
    let offer = if sessions.is_some() { Offer::Resumable } else { Offer::None };
    let mut granted = None;
    let mut starting = None;
    let mut resuming = None;
    let shook =
        open(accepted, spec, side, options, Role::Listening, clock.random(), offer, &[], |peer| match peer {
            Offer::None => Ok((Answer::None, Vec::new())),
            Offer::Resumable => Ok((
                match &sessions {
                    Some(registry) => {
                        let keys = Keys::new(&clock);
                        // Known from the grant on: a partner that breaks and comes back before
                        // this side's connection starts is told to try again, not refused.
                        starting = Some(registry.starting(keys.id));
                        granted = Some(keys);
                        Answer::Grant(keys)
                    }
                    None => Answer::None,
                },
                Vec::new(),
            )),
            Offer::Resume { keys, received, first } => {
                let Some(sessions) = &sessions else {
                    return Err(refused(format!(
                        "{} this listener does not resume sessions",
                        resume::CANNOT
                    )));
                };
                if *first == 0 {
                    return Err(refused(format!(
                        "{} the partner re-sends from frame 0, but frames are numbered from 1",
                        resume::CANNOT
                    )));
                }
                let conn = sessions.find(keys).map_err(|not| match not {
                    NotFound::Never(reason) => refused(format!("{} {reason}", resume::CANNOT)),
                    NotFound::NotYet(reason) => refused(reason),
                })?;
                let (guard, mine) = conn.begin_resume()?;
                // The partner re-sends from frame `first` on: those this side already has
                // are passed over; none may be missing.
                if *first > mine + 1 {
                    return Err(refused(format!(
                        "{} the partner re-sends from frame {first}, but this side received only {mine}",
                        resume::CANNOT
                    )));
                }
                let (_, resend) = conn.resend(Some(*received), RESEND_WITH_HANDSHAKE)?;
                resuming = Some((conn, guard, mine + 1 - *first));
                Ok((Answer::Resumed { received: mine }, resend))
            }
        })
        .await?;
    if let Some((conn, guard, skip)) = resuming {
        conn.reattach(shook.io, shook.dec, None, skip)?;
        drop(guard);
        return Ok(Accept::Resumed);
    }
    let session = match (granted, &options.reconnect, &sessions) {
        (Some(keys), Some(policy), Some(registry)) => {
            Some(Session::new(keys, policy.clone(), None, Some(Arc::downgrade(registry))))
        }
        _ => None,
    };
    Ok(Accept::New(Box::new(Opened { shook, session, _starting: starting })))
}

/// A connection whose handshake is done, before its link starts.
pub struct Opened {
    shook: Open,
    session: Option<Session>,
    /// Until the connection starts, a resume of its session is told to try again.
    _starting: Option<Starting>,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened").field("peer", &self.shook.peer).finish_non_exhaustive()
    }
}

impl Opened {
    /// The partner's verified certificate, over TLS.
    pub fn peer_identity(&self) -> Option<&PeerIdentity> {
        self.shook.identity.as_ref()
    }

    /// Starts the connection's link for `end`; `attach` receives the link before any message
    /// is read from the partner.
    pub fn start(self, end: PairEnd, options: &TcpOptions, attach: impl FnOnce(Link)) -> Pending {
        // The session is registered before `_starting` goes, at the end of this call.
        start(self.shook, self.session, end, options, attach)
    }
}

/// Starts the connection's link and tasks once its handshake is done.
fn start(
    open: Open,
    session: Option<Session>,
    end: PairEnd,
    options: &TcpOptions,
    attach: impl FnOnce(Link),
) -> Pending {
    let PairEnd { spec, side, core, program } = end;
    let Open { mut dec, io, peer, identity, admission, answer: _ } = open;
    // Frames after the handshake may be as large as the connection allows.
    dec.set_max(options.max_frame);
    let link = Link::new(core, side, spec.sequences.to_vec(), program);
    let (read, wire) = Wire::split(io);
    let resumable = session.is_some();
    let span = tracing::debug_span!(
        "waldo.connection",
        protocol = spec.protocol,
        endpoint = spec.endpoints[side as usize],
        ?peer,
        session = session.as_ref().map(|s| Keys::name(s.keys.id)),
    );
    let conn = Arc::new_cyclic(|me| Conn {
        me: me.clone(),
        socket: AtomicU64::new(0),
        session,
        state: watch::Sender::new(ConnectionState::Connected),
        room: Notify::new(),
        peer,
        max_frame: options.max_frame,
        out: Mutex::new(Outgoing::new(wire, resumable)),
        wake_writer: Notify::new(),
        link: OnceLock::new(),
        partner: watch::Sender::new(Partner::Waiting),
        closed: watch::Sender::new(false),
        reader: Mutex::new(None),
        received: AtomicU64::new(0),
        // What arrived with the handshake counts too.
        bytes_in: AtomicU64::new(dec.pending() as u64),
        resumes: AtomicU64::new(0),
        span: span.clone(),
        reader_busy: std::sync::atomic::AtomicBool::new(false),
        sent: AtomicU64::new(0),
        admission: Mutex::new(admission),
        spec,
    });
    if let Some(session) = &conn.session
        && let Some(registry) = session.registry.as_ref().and_then(std::sync::Weak::upgrade)
    {
        let weak: std::sync::Weak<Conn> = Arc::downgrade(&conn);
        registry.insert(session.keys.id, weak);
    }
    let _ = conn.link.set(link.downgrade());
    link.attach(conn.clone());
    attach(link.clone());
    let reader = tracing::Instrument::instrument(read_loop(conn.clone(), read, dec, 0), span.clone());
    *conn.reader.lock() = Some(tokio::spawn(reader).abort_handle());
    let writer = write_loop(conn.clone(), options.heartbeat, options.partner_timeout);
    tokio::spawn(tracing::Instrument::instrument(writer, span));
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
    let clock = end.core.clock.clone();
    let offer = if options.reconnect.is_some() { Offer::Resumable } else { Offer::None };
    let open = open(
        stream.into(),
        end.spec,
        end.side,
        options,
        Role::Connecting,
        clock.random(),
        offer,
        &[],
        |_| Ok((Answer::None, Vec::new())),
    )
    .await?;
    let session = match (&open.answer, &options.reconnect) {
        (Answer::Grant(keys), Some(policy)) => Some(Session::new(
            *keys,
            policy.clone(),
            Some(Redial { addr, options: options.clone(), spec: end.spec, side: end.side, clock }),
            None,
        )),
        _ => None,
    };
    Ok(start(open, session, end, options, attach))
}
