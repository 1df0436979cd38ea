//! Where connections come from. The driver (handshake, TLS, framing, heartbeats, limits)
//! runs over a [`Socket`]: by default the system's TCP ([`SystemTcp`]), or any other
//! [`Network`] set in [`TcpOptions::with_network`](super::TcpOptions::with_network) — the
//! simulated network of `waldo::sim` is one. A socket of the system's TCP keeps the fast
//! path (inline non-blocking writes); any other stream is written through its
//! `AsyncWrite`.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A boxed future of a [`Network`] or an [`Acceptor`].
pub type NetFuture<'a, T> = Pin<Box<dyn Future<Output = io::Result<T>> + Send + 'a>>;

/// An address to connect to or listen on: a socket address, or a host name and a port
/// resolved by the network when used (by DNS for the system's TCP, by host name in a
/// simulation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    /// An IP address and port.
    Socket(SocketAddr),
    /// A host name (or an IP address as text) and a port.
    Named(String, u16),
    /// `host:port` as one text, split when used.
    Text(String),
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Socket(a) => write!(f, "{a}"),
            Address::Named(host, port) => write!(f, "{host}:{port}"),
            Address::Text(text) => f.write_str(text),
        }
    }
}

impl Address {
    /// The host and port, for a network that resolves names itself. A text without a valid
    /// `:port` is an error naming it.
    pub fn host_port(&self) -> io::Result<(String, u16)> {
        match self {
            Address::Socket(a) => Ok((a.ip().to_string(), a.port())),
            Address::Named(host, port) => Ok((host.clone(), *port)),
            Address::Text(text) => {
                let bad = || {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("`{text}` is not an address: expected `host:port`"),
                    )
                };
                let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
                let port = port.parse().map_err(|_| bad())?;
                Ok((host.trim_start_matches('[').trim_end_matches(']').to_owned(), port))
            }
        }
    }
}

/// What a connection or a listener can be given as an address: what tokio's `connect` and
/// `bind` take (`"host:port"`, `("host", port)`, a `SocketAddr`, an IP address and a port).
pub trait ToSocketAddrs {
    /// The address.
    fn to_address(self) -> Address;
}

impl ToSocketAddrs for Address {
    fn to_address(self) -> Address {
        self
    }
}
impl ToSocketAddrs for SocketAddr {
    fn to_address(self) -> Address {
        Address::Socket(self)
    }
}
impl ToSocketAddrs for SocketAddrV4 {
    fn to_address(self) -> Address {
        Address::Socket(self.into())
    }
}
impl ToSocketAddrs for SocketAddrV6 {
    fn to_address(self) -> Address {
        Address::Socket(self.into())
    }
}
impl ToSocketAddrs for (IpAddr, u16) {
    fn to_address(self) -> Address {
        Address::Socket(self.into())
    }
}
impl ToSocketAddrs for (Ipv4Addr, u16) {
    fn to_address(self) -> Address {
        Address::Socket(self.into())
    }
}
impl ToSocketAddrs for (Ipv6Addr, u16) {
    fn to_address(self) -> Address {
        Address::Socket(self.into())
    }
}
impl ToSocketAddrs for (&str, u16) {
    fn to_address(self) -> Address {
        Address::Named(self.0.to_owned(), self.1)
    }
}
impl ToSocketAddrs for (String, u16) {
    fn to_address(self) -> Address {
        Address::Named(self.0, self.1)
    }
}
impl ToSocketAddrs for &str {
    fn to_address(self) -> Address {
        Address::Text(self.to_owned())
    }
}
impl ToSocketAddrs for String {
    fn to_address(self) -> Address {
        Address::Text(self)
    }
}
impl<T: ToSocketAddrs + Clone> ToSocketAddrs for &T {
    fn to_address(self) -> Address {
        self.clone().to_address()
    }
}

/// A network connections are made over: how to connect and how to listen.
pub trait Network: fmt::Debug + Send + Sync + 'static {
    /// Connects to `addr`.
    fn connect(&self, addr: Address) -> NetFuture<'static, Socket>;
    /// Listens at `addr`.
    fn bind(&self, addr: Address) -> NetFuture<'static, Box<dyn Acceptor>>;
}

/// A listening socket of a [`Network`].
pub trait Acceptor: Send + 'static {
    /// The next connection, and its peer's address.
    fn accept(&mut self) -> NetFuture<'_, (Socket, SocketAddr)>;
    /// The address listened on (with the port chosen for port 0).
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

/// A byte stream of a [`Network`] other than the system's TCP.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {
    /// The peer's address, when known.
    fn peer_addr(&self) -> Option<SocketAddr>;
}

/// One connection's byte stream.
pub struct Socket(Kind);

enum Kind {
    Tcp(TcpStream),
    Other(Box<dyn Stream>),
}

impl fmt::Debug for Socket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Socket").field("peer", &self.peer_addr()).finish()
    }
}

impl From<TcpStream> for Socket {
    fn from(stream: TcpStream) -> Socket {
        Socket(Kind::Tcp(stream))
    }
}

impl Socket {
    /// A connection over some other stream.
    pub fn new(stream: impl Stream) -> Socket {
        Socket(Kind::Other(Box::new(stream)))
    }

    /// The peer's address, when known.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        match &self.0 {
            Kind::Tcp(s) => s.peer_addr().ok(),
            Kind::Other(s) => s.peer_addr(),
        }
    }

    /// Sends small writes at once (TCP only; other streams decide for themselves).
    pub(super) fn set_nodelay(&self) -> io::Result<()> {
        match &self.0 {
            Kind::Tcp(s) => s.set_nodelay(true),
            Kind::Other(_) => Ok(()),
        }
    }

    /// Reads the first bytes without taking them, where the stream can (`None` where not).
    pub(super) async fn peek(&mut self, buf: &mut [u8]) -> Option<io::Result<usize>> {
        match &mut self.0 {
            Kind::Tcp(s) => Some(s.peek(buf).await),
            Kind::Other(_) => None,
        }
    }

    /// Writes what the stream takes at once without waiting.
    pub(super) fn try_write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.0 {
            Kind::Tcp(s) => s.try_write(buf),
            Kind::Other(s) => {
                let mut cx = Context::from_waker(std::task::Waker::noop());
                match Pin::new(s).poll_write(&mut cx, buf) {
                    Poll::Ready(r) => r,
                    Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
                }
            }
        }
    }

    /// The TCP stream, if this is one.
    pub(super) fn into_tcp(self) -> Result<TcpStream, Box<dyn Stream>> {
        match self.0 {
            Kind::Tcp(s) => Ok(s),
            Kind::Other(s) => Err(s),
        }
    }
}

impl AsyncRead for Socket {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().0 {
            Kind::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Kind::Other(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().0 {
            Kind::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Kind::Other(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // TLS writes its records (an alert before a close, say) as several slices at once.
        match &mut self.get_mut().0 {
            Kind::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Kind::Other(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.0 {
            Kind::Tcp(s) => s.is_write_vectored(),
            Kind::Other(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().0 {
            Kind::Tcp(s) => Pin::new(s).poll_flush(cx),
            Kind::Other(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().0 {
            Kind::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Kind::Other(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// The system's TCP (tokio's sockets).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemTcp;

impl SystemTcp {
    async fn connect_to(addr: Address) -> io::Result<Socket> {
        let stream = match addr {
            Address::Socket(a) => TcpStream::connect(a).await?,
            Address::Named(host, port) => TcpStream::connect((host.as_str(), port)).await?,
            Address::Text(text) => TcpStream::connect(text.as_str()).await?,
        };
        Ok(stream.into())
    }

    async fn bind_to(addr: Address) -> io::Result<Box<dyn Acceptor>> {
        let listener = match addr {
            Address::Socket(a) => tokio::net::TcpListener::bind(a).await?,
            Address::Named(host, port) => tokio::net::TcpListener::bind((host.as_str(), port)).await?,
            Address::Text(text) => tokio::net::TcpListener::bind(text.as_str()).await?,
        };
        Ok(Box::new(listener))
    }
}

impl Network for SystemTcp {
    fn connect(&self, addr: Address) -> NetFuture<'static, Socket> {
        Box::pin(Self::connect_to(addr))
    }

    fn bind(&self, addr: Address) -> NetFuture<'static, Box<dyn Acceptor>> {
        Box::pin(Self::bind_to(addr))
    }
}

impl Acceptor for tokio::net::TcpListener {
    fn accept(&mut self) -> NetFuture<'_, (Socket, SocketAddr)> {
        Box::pin(async move {
            let (stream, peer) = tokio::net::TcpListener::accept(self).await?;
            Ok((stream.into(), peer))
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        tokio::net::TcpListener::local_addr(self)
    }
}

/// A connection's stream after its handshake, split: plain TCP (written inline by
/// producers), or any other.
pub(super) enum Io {
    Tcp(tokio::net::tcp::OwnedReadHalf, tokio::net::tcp::OwnedWriteHalf),
    Stream(Box<dyn AsyncRead + Send + Unpin>, Box<dyn AsyncWrite + Send + Unpin>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_split_into_host_and_port() {
        assert_eq!("server:7000".to_address().host_port().expect("valid"), ("server".to_owned(), 7000));
        assert_eq!("[::1]:80".to_address().host_port().expect("valid"), ("::1".to_owned(), 80));
        assert_eq!(("vault", 9).to_address().to_string(), "vault:9");
        let err = "server".to_address().host_port().expect_err("no port");
        assert_eq!(err.to_string(), "`server` is not an address: expected `host:port`");
        assert!("server:http".to_address().host_port().is_err());
    }
}
