//! Opening a socket: TLS when the options say so (with its failures named), then the
//! handshake, in time.

use std::future::Future;

use super::handshake::{Shook, Terms, handshake, refuse_over_limit};
use super::network::{Io, Socket};
use super::options::*;
use super::session::{Answer, Offer};
use super::tls::{self, PeerIdentity, Role, tls_error};
use crate::core::error::Error;
use crate::engine::Side;
use crate::wire::FrameDecoder;

/// A socket after its handshake: what the connection is made of.
pub(super) struct Open {
    pub(super) dec: FrameDecoder,
    pub(super) io: Io,
    pub(super) peer: Option<std::net::SocketAddr>,
    pub(super) identity: Option<PeerIdentity>,
    pub(super) admission: Option<tokio::sync::OwnedSemaphorePermit>,
    /// What the partner answered about sessions.
    pub(super) answer: Answer,
}

/// Opens `accepted` as `side` of `spec`: TLS when the options say so, then the handshake
/// with this side's session `offer` (and the bytes that `follow` its `Hello`); `answer`
/// decides what this side answers to the peer's, and what it sends right after its `Ack`.
#[allow(clippy::too_many_arguments)]
pub(super) async fn open(
    accepted: Accepted,
    spec: &PairSpec,
    side: Side,
    options: &TcpOptions,
    role: Role,
    nonce: u64,
    offer: Offer,
    follow: &[u8],
    answer: impl FnOnce(&Offer) -> Result<(Answer, Vec<u8>), Error>,
) -> Result<Open, Error> {
    let Accepted { stream, admission, heard, sessions: _ } = accepted;
    let mut stream = stream;
    stream.set_nodelay().map_err(|e| network(format!("could not set TCP_NODELAY: {e}")))?;
    let peer = stream.peer_addr();
    let limit = options.handshake_timeout;
    let within = async |what: &str| refused(format!("the peer did not complete the {what} within {limit:?}"));
    let heard = heard.as_deref();
    let tls = match role {
        Role::Connecting => options.tls_client.as_ref().map(|_| role),
        Role::Listening => options.tls_server.as_ref().map(|_| role),
    };
    let terms = |tls| Terms { spec, side, nonce, idle: options.handshake_idle, heard, tls, offer, follow };
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
                refuse_over_limit(stream, tls::PLAIN_TO_TLS).await;
                return Err(refused(tls::PLAIN_TO_TLS));
            }
            let acceptor = tokio_rustls::TlsAcceptor::from(server.clone());
            Ok(tls_session(Box::pin(async move { acceptor.accept(stream).await.map(Into::into) })).await?)
        }
        // Plain TCP.
        _ => Err(stream),
    };
    let (shook, io, identity) = match session {
        Ok(mut session) => {
            let identity = session
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| PeerIdentity::from_der(c));
            let shook = match tokio::time::timeout(limit, handshake(&mut session, terms(tls), answer)).await {
                Ok(result) => result?,
                Err(_) => return Err(within("handshake").await),
            };
            let (read, write) = tokio::io::split(session);
            (shook, Io::Stream(Box::new(read), Box::new(write)), identity)
        }
        Err(mut stream) => {
            let shook = match tokio::time::timeout(limit, handshake(&mut stream, terms(None), answer)).await {
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
            (shook, io, None)
        }
    };
    let Shook { dec, answer, .. } = shook;
    Ok(Open { dec, io, peer, identity, admission, answer })
}
