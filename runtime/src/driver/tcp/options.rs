//! What both sides of a TCP connection must agree on (the wire constants and the
//! protocol's `PairSpec`), the options of a connection, and the errors the driver reports.

use std::time::Duration;

use tokio::net::TcpStream;

use super::network::{Network, Socket, SystemTcp};

use crate::core::error::Error;
use crate::core::shape::Shape;
use crate::engine::SequenceInfo;

/// The first bytes each side sends.
pub const MAGIC: [u8; 6] = *b"WALDO\0";
/// The version of the wire format this runtime speaks (4: the admission token's messages).
pub const WIRE_VERSION: u16 = 4;
/// The largest handshake frame accepted.
pub const HANDSHAKE_MAX_FRAME: usize = 64 * 1024;

/// Frame kinds (the first payload byte). Engine messages use 1 to 12
/// ([`crate::engine::proto::MESSAGE_TAGS`]).
pub mod kind {
    /// Handshake: protocol, fingerprint, side, endpoint, nonce.
    pub const HELLO: u8 = 0x40;
    /// Handshake: the other side's nonce, echoed.
    pub const ACK: u8 = 0x41;
    /// Handshake refused: the reason, as text.
    pub const REFUSE: u8 = 0x42;
    /// The sender ran `onCreate`; public calls may start once both sides sent it.
    pub const READY: u8 = 0x50;
    /// Nothing to say, but alive.
    pub const HEARTBEAT: u8 = 0x51;
    /// The sender is stopping ([`crate::driver::link::Control::Stop`]).
    pub const STOP: u8 = 0x52;
    /// The sender has stopped ([`crate::driver::link::Control::StopAck`]).
    pub const STOP_ACK: u8 = 0x53;
    /// The sender closes the connection: the reason, as text.
    pub const CLOSE: u8 = 0x54;
    /// A resumable session: how many frames the sender has received (a varint), so the
    /// partner may forget them.
    pub const RECEIVED: u8 = 0x55;
}

/// How a TCP connection behaves.
#[derive(Clone, Debug)]
pub struct TcpOptions {
    /// The largest frame sent or accepted (default 16 MiB).
    pub max_frame: usize,
    /// A heartbeat is sent when nothing else was sent for this long (default 1 s).
    pub heartbeat: Duration,
    /// The partner is lost when nothing arrived from it for this long (default 5 s).
    pub partner_timeout: Duration,
    /// The handshake must complete within this long (default 10 s).
    pub handshake_timeout: Duration,
    /// During the handshake, the peer may be silent at most this long (default 2 s): a
    /// connection that opens and sends nothing is closed then.
    pub handshake_idle: Duration,
    /// A listener serves at most this many connections at once, handshaking or established
    /// (default 1,024); one more is refused with the reason.
    pub max_connections: usize,
    /// A listener runs at most this many handshakes at once (default 64); when all are
    /// taken, a new connection takes the place of the one that has been handshaking
    /// longest, so idle sockets cannot keep a real partner out.
    pub max_handshakes: usize,
    /// TLS for connecting: the rustls client configuration and the name the listener's
    /// certificate must be valid for. `None` (the default): plain TCP.
    pub tls_client: Option<super::tls::TlsClient>,
    /// TLS for listening: the rustls server configuration (its certificate, and whether it
    /// requires client certificates). `None` (the default): plain TCP.
    pub tls_server: Option<std::sync::Arc<rustls::ServerConfig>>,
    /// The network connections are made over: `None` (the default) is the system's TCP;
    /// `waldo::sim::options()` sets the simulated network.
    pub network: Option<std::sync::Arc<dyn Network>>,
    /// Whether a broken connection is resumed, and how (the book's "Connections over TCP").
    /// `None` (the default): a broken connection ends the pair.
    pub reconnect: Option<ReconnectPolicy>,
}

/// How a pair survives a broken connection: the connecting side redials with jittered
/// exponential backoff, the listener routes the new connection to the session, and both
/// sides re-send what the other did not receive, so transactions in flight go on.
///
/// Both sides must enable it (each side's window decides when it gives up).
#[derive(Clone, Debug, PartialEq)]
pub struct ReconnectPolicy {
    /// The wait before the first redial (default 0: most cuts are brief).
    pub first_delay: Duration,
    /// The bound of the second redial's wait; each later bound is `multiplier` times the one
    /// before, up to `max_delay`; each wait is drawn uniformly below its bound (full jitter).
    /// Default 100 ms.
    pub base_delay: Duration,
    /// The largest bound of a wait (default 5 s).
    pub max_delay: Duration,
    /// How much each bound grows (default 2).
    pub multiplier: f64,
    /// How long after the break the session may still be resumed; then the pair is given up
    /// and calls in flight fail with a network error (default 30 s).
    pub resume_window: Duration,
    /// At most this many bytes wait for the partner while it is unreachable (or has not
    /// confirmed them); a sequence that would start beyond that waits until the partner is
    /// back (default 8 MiB).
    pub max_backlog: usize,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        ReconnectPolicy {
            first_delay: Duration::ZERO,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
            multiplier: 2.0,
            resume_window: Duration::from_secs(30),
            max_backlog: 8 << 20,
        }
    }
}

impl ReconnectPolicy {
    /// This policy with another resume window.
    pub fn with_resume_window(mut self, window: Duration) -> Self {
        self.resume_window = window;
        self
    }

    /// This policy with another backoff: the first wait, the bound of the second, the largest
    /// bound and the growth of the bounds (at least 1).
    pub fn with_backoff(mut self, first: Duration, base: Duration, max: Duration, multiplier: f64) -> Self {
        self.first_delay = first;
        self.base_delay = base;
        self.max_delay = max;
        self.multiplier = if multiplier.is_finite() { multiplier.max(1.0) } else { 2.0 };
        self
    }

    /// This policy with another bound on the bytes waiting for the partner.
    pub fn with_max_backlog(mut self, bytes: usize) -> Self {
        self.max_backlog = bytes.max(1);
        self
    }

    /// The wait before redial number `attempt` (1 is the first), given a uniform draw `unit`
    /// in [0, 1).
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        if attempt <= 1 {
            return self.first_delay;
        }
        let growth = self.multiplier.powi(attempt.saturating_sub(2).min(64) as i32);
        let bound = self.base_delay.as_secs_f64() * growth;
        let bound = bound.min(self.max_delay.as_secs_f64());
        Duration::from_secs_f64((bound * unit.clamp(0.0, 1.0)).max(0.0))
    }
}

/// The state of a pair's connection, as the host sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectionState {
    /// The partner is reachable (or the pair is in one process).
    Connected,
    /// The connection broke and the session is being resumed; `attempt` counts the redials
    /// of this side (0 on the listening side, which waits for its partner to come back).
    Reconnecting {
        /// Redials so far.
        attempt: u32,
    },
    /// The pair is over: the reason.
    Closed {
        /// Why.
        reason: String,
    },
}

impl Default for TcpOptions {
    fn default() -> Self {
        TcpOptions {
            max_frame: crate::wire::DEFAULT_MAX_FRAME,
            heartbeat: Duration::from_secs(1),
            partner_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(10),
            handshake_idle: Duration::from_secs(2),
            max_connections: 1024,
            max_handshakes: 64,
            tls_client: None,
            tls_server: None,
            network: None,
            reconnect: None,
        }
    }
}

impl TcpOptions {
    /// These options with another heartbeat period and partner timeout.
    pub fn with_heartbeat(mut self, period: Duration, partner_timeout: Duration) -> Self {
        self.heartbeat = period;
        self.partner_timeout = partner_timeout;
        self
    }

    /// These options with another frame size limit.
    pub fn with_max_frame(mut self, max_frame: usize) -> Self {
        self.max_frame = max_frame;
        self
    }

    /// These options with another handshake time limit.
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// These options with another partner timeout (the heartbeat period stays).
    pub fn with_partner_timeout(mut self, timeout: Duration) -> Self {
        self.partner_timeout = timeout;
        self
    }

    /// These options with another limit on the peer's silence during the handshake.
    pub fn with_handshake_idle(mut self, idle: Duration) -> Self {
        self.handshake_idle = idle;
        self
    }

    /// These options with another limit on a listener's connections (at least 1).
    pub fn with_max_connections(mut self, max: usize) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// These options with another limit on a listener's concurrent handshakes (at least 1).
    pub fn with_max_handshakes(mut self, max: usize) -> Self {
        self.max_handshakes = max.max(1);
        self
    }

    /// These options connecting over TLS with `config`, to a listener whose certificate is
    /// valid for `server_name` (`ServerName::try_from("vault.example")`).
    pub fn with_tls_client(
        mut self,
        config: std::sync::Arc<rustls::ClientConfig>,
        server_name: rustls::pki_types::ServerName<'static>,
    ) -> Self {
        self.tls_client = Some(super::tls::TlsClient { config, server_name });
        self
    }

    /// These options listening over TLS with `config`.
    pub fn with_tls_server(mut self, config: std::sync::Arc<rustls::ServerConfig>) -> Self {
        self.tls_server = Some(config);
        self
    }

    /// These options connecting and listening over `network` instead of the system's TCP.
    pub fn with_network(mut self, network: impl Network) -> Self {
        self.network = Some(std::sync::Arc::new(network));
        self
    }

    /// These options resuming broken connections under `policy` (both sides must enable it).
    pub fn with_reconnect(mut self, policy: ReconnectPolicy) -> Self {
        self.reconnect = Some(policy);
        self
    }

    /// The network connections are made over.
    pub(super) fn network(&self) -> &dyn Network {
        match &self.network {
            Some(n) => n.as_ref(),
            None => &SystemTcp,
        }
    }
}

/// A connection to establish: a socket, and for one a listener accepted, its place among the
/// listener's connections (given back when the connection closes).
pub struct Accepted {
    pub(super) stream: Socket,
    pub(super) admission: Option<tokio::sync::OwnedSemaphorePermit>,
    /// Set once the peer's preamble arrived (the listener may close a handshake that heard
    /// nothing to make room for others).
    pub(super) heard: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// The listener's resumable sessions (when it resumes them).
    pub(super) sessions: Option<std::sync::Arc<super::session::Sessions>>,
}

impl Accepted {
    /// A socket a listener accepted, holding `admission` until its connection closes.
    pub(super) fn admitted(
        stream: Socket,
        admission: tokio::sync::OwnedSemaphorePermit,
        heard: std::sync::Arc<std::sync::atomic::AtomicBool>,
        sessions: Option<std::sync::Arc<super::session::Sessions>>,
    ) -> Accepted {
        Accepted { stream, admission: Some(admission), heard: Some(heard), sessions }
    }
}

impl From<Socket> for Accepted {
    fn from(stream: Socket) -> Accepted {
        Accepted { stream, admission: None, heard: None, sessions: None }
    }
}

impl From<TcpStream> for Accepted {
    fn from(stream: TcpStream) -> Accepted {
        Socket::from(stream).into()
    }
}

impl std::fmt::Debug for Accepted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accepted").field("peer", &self.stream.peer_addr()).finish()
    }
}

/// What both sides of a connection must agree on: generated per protocol.
#[derive(Debug)]
pub struct PairSpec {
    /// The protocol's name.
    pub protocol: &'static str,
    /// The checked protocol's fingerprint.
    pub fingerprint: u64,
    /// The names of the endpoints playing sides 0 and 1.
    pub endpoints: [&'static str; 2],
    /// The protocol's sequences.
    pub sequences: &'static [SequenceInfo],
    /// The peered variables, by slot: name and shape (what a received value must be).
    pub peered: &'static [(&'static str, &'static Shape)],
    /// The shapes of each sequence's data, by sequence.
    pub data: &'static [&'static [&'static Shape]],
}

impl PairSpec {
    /// Protocol `protocol` with `fingerprint`, whose sides 0 and 1 are `endpoints`.
    pub const fn new(
        protocol: &'static str,
        fingerprint: u64,
        endpoints: [&'static str; 2],
        sequences: &'static [SequenceInfo],
    ) -> Self {
        PairSpec { protocol, fingerprint, endpoints, sequences, peered: &[], data: &[] }
    }

    /// With the shapes of the peered variables and of each sequence's data, which received
    /// values are checked against (see [`Shape`]).
    pub const fn with_shapes(
        mut self,
        peered: &'static [(&'static str, &'static Shape)],
        data: &'static [&'static [&'static Shape]],
    ) -> Self {
        self.peered = peered;
        self.data = data;
        self
    }
}

pub(super) fn network(message: impl Into<String>) -> Error {
    Error::Network { message: message.into() }
}

pub(super) fn refused(reason: impl Into<String>) -> Error {
    Error::HandshakeRefused { reason: reason.into() }
}

pub(super) fn deviation(message: impl Into<String>) -> Error {
    Error::ProtocolDeviation { message: message.into() }
}
