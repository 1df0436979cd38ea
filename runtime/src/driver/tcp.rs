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

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;

use crate::core::endpoint::EndpointCore;
use crate::core::error::Error;
use crate::driver::link::{Control, Link, Program, Transport, WeakLink};
use crate::engine::liveness::{Beat, Liveness};
use crate::engine::wire::{FrameDecoder, Reader, WireError, Writer};
use crate::engine::{Msg, SequenceInfo, Side};

/// The first bytes each side sends.
pub const MAGIC: [u8; 6] = *b"WALDO\0";
/// The version of the wire format this runtime speaks.
pub const WIRE_VERSION: u16 = 2;
/// The largest handshake frame accepted.
pub const HANDSHAKE_MAX_FRAME: usize = 64 * 1024;

/// Frame kinds (the first payload byte). Engine messages use 1 to 10 ([`crate::engine::proto`]).
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
}

impl Default for TcpOptions {
    fn default() -> Self {
        TcpOptions {
            max_frame: crate::engine::wire::DEFAULT_MAX_FRAME,
            heartbeat: Duration::from_secs(1),
            partner_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(10),
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
    pub sequences: fn() -> Vec<SequenceInfo>,
}

fn network(message: impl Into<String>) -> Error {
    Error::Network { message: message.into() }
}

fn refused(reason: impl Into<String>) -> Error {
    Error::HandshakeRefused { reason: reason.into() }
}

fn deviation(message: impl Into<String>) -> Error {
    Error::ProtocolDeviation { message: message.into() }
}

// ---------------------------------------------------------------- handshake

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

fn text_frame(kind: u8, text: &str) -> Vec<u8> {
    let mut w = Writer::new();
    w.byte(kind);
    w.text(text);
    frame(&w.finish())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
}

/// The other side's `Hello`.
struct Hello {
    protocol: String,
    fingerprint: u64,
    side: u64,
    endpoint: String,
    nonce: u64,
}

fn parse_hello(payload: &[u8]) -> Result<Hello, WireError> {
    let mut r = Reader::new(payload);
    r.byte("the frame kind")?;
    let hello = Hello {
        protocol: r.text()?,
        fingerprint: r.varint()?,
        side: r.varint()?,
        endpoint: r.text()?,
        nonce: r.varint()?,
    };
    r.finish()?;
    Ok(hello)
}

fn parse_text(payload: &[u8]) -> Result<String, WireError> {
    let mut r = Reader::new(payload);
    r.byte("the frame kind")?;
    let text = r.text()?;
    r.finish()?;
    Ok(text)
}

/// Reads the next handshake frame.
async fn read_frame(stream: &mut TcpStream, dec: &mut FrameDecoder) -> Result<Vec<u8>, Error> {
    let mut buf = [0u8; 4096];
    loop {
        match dec.next_frame() {
            Ok(Some(f)) => return Ok(f),
            Ok(None) => {}
            Err(e) => return Err(refused(format!("malformed handshake: {e}"))),
        }
        let n = stream.read(&mut buf).await.map_err(|e| network(format!("the handshake failed: {e}")))?;
        if n == 0 {
            return Err(if dec.pending() > 0 {
                refused(format!(
                    "the peer closed the connection inside a handshake frame ({} bytes of it arrived)",
                    dec.pending()
                ))
            } else {
                network("the peer closed the connection during the handshake")
            });
        }
        dec.feed(&buf[..n]);
    }
}

/// Tells the peer why the handshake is refused and stops writing; returns the error for this
/// side.
async fn refuse(stream: &mut TcpStream, error: Error) -> Error {
    if let Error::HandshakeRefused { reason } = &error {
        let _ = stream.write_all(&text_frame(kind::REFUSE, reason)).await;
    }
    let _ = stream.shutdown().await;
    // Read what the peer still sends for a moment: closing a socket with unread input resets
    // the connection, and the peer could lose the reason before reading it.
    let drain = async {
        let mut buf = [0u8; 4096];
        let mut total = 0;
        while total < 1 << 20 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(500), drain).await;
    error
}

/// Checks the peer's `Hello` against this side's.
fn check_hello(hello: &Hello, spec: &PairSpec, side: Side) -> Result<(), String> {
    if hello.fingerprint != spec.fingerprint {
        return Err(if hello.protocol != spec.protocol {
            format!(
                "different protocols: the peer speaks `{}`, this side `{}`",
                hello.protocol, spec.protocol
            )
        } else {
            format!(
                "different versions of protocol `{}`: the peer's fingerprint is {:016x}, this side's \
                 {:016x} (build both sides from the same .wld file)",
                spec.protocol, hello.fingerprint, spec.fingerprint
            )
        });
    }
    if hello.side == u64::from(side) {
        return Err(format!("same role twice: both sides play `{}`", spec.endpoints[side as usize]));
    }
    if hello.side > 1 || hello.endpoint != spec.endpoints[hello.side as usize] {
        return Err(format!(
            "the peer plays `{}`, which is not an endpoint of protocol `{}`",
            hello.endpoint, spec.protocol
        ));
    }
    Ok(())
}

/// Runs the handshake as `side` of `spec`; returns the decoder holding whatever arrived after it.
async fn handshake(stream: &mut TcpStream, spec: &PairSpec, side: Side) -> Result<FrameDecoder, Error> {
    let nonce: u64 = rand::random();
    let mut hello = Writer::new();
    hello.byte(kind::HELLO);
    hello.text(spec.protocol);
    hello.varint(spec.fingerprint);
    hello.varint(u64::from(side));
    hello.text(spec.endpoints[side as usize]);
    hello.varint(nonce);
    let mut first = Vec::from(MAGIC);
    first.extend_from_slice(&WIRE_VERSION.to_le_bytes());
    first.extend_from_slice(&frame(&hello.finish()));
    stream.write_all(&first).await.map_err(|e| network(format!("the handshake failed: {e}")))?;

    let mut preamble = [0u8; 8];
    if let Err(e) = stream.read_exact(&mut preamble).await {
        return Err(if e.kind() == io::ErrorKind::UnexpectedEof {
            network("the peer closed the connection during the handshake")
        } else {
            network(format!("the handshake failed: {e}"))
        });
    }
    if preamble[..6] != MAGIC {
        let error = refused(format!(
            "the peer is not a Waldo endpoint: it sent the bytes {} instead of the Waldo magic \"WALDO\\0\"",
            hex(&preamble)
        ));
        return Err(refuse(stream, error).await);
    }
    let version = u16::from_le_bytes([preamble[6], preamble[7]]);
    if version != WIRE_VERSION {
        let error = refused(format!(
            "wrong wire version: the peer speaks version {version}, this side version {WIRE_VERSION}"
        ));
        return Err(refuse(stream, error).await);
    }

    let mut dec = FrameDecoder::new(HANDSHAKE_MAX_FRAME);
    let payload = match read_frame(stream, &mut dec).await {
        Ok(p) => p,
        Err(e) => return Err(refuse(stream, e).await),
    };
    match payload.first() {
        Some(&kind::HELLO) => {}
        Some(&kind::REFUSE) => {
            let reason = parse_text(&payload).unwrap_or_else(|e| format!("(unreadable reason: {e})"));
            return Err(refused(format!("the peer refused the handshake: {reason}")));
        }
        _ => {
            let error = refused(format!(
                "malformed handshake: expected a Hello frame, got one starting with {}",
                hex(&payload[..payload.len().min(8)])
            ));
            return Err(refuse(stream, error).await);
        }
    }
    let peer = match parse_hello(&payload) {
        Ok(h) => h,
        Err(e) => return Err(refuse(stream, refused(format!("malformed Hello frame: {e}"))).await),
    };
    if let Err(reason) = check_hello(&peer, spec, side) {
        return Err(refuse(stream, refused(reason)).await);
    }
    let mut ack = Writer::new();
    ack.byte(kind::ACK);
    ack.varint(peer.nonce);
    stream
        .write_all(&frame(&ack.finish()))
        .await
        .map_err(|e| network(format!("the handshake failed: {e}")))?;

    let payload = match read_frame(stream, &mut dec).await {
        Ok(p) => p,
        Err(e) => return Err(refuse(stream, e).await),
    };
    match payload.first() {
        Some(&kind::ACK) => {
            let mut r = Reader::new(&payload[1..]);
            let echo = r.varint().and_then(|v| r.finish().map(|()| v));
            match echo {
                Ok(echo) if echo == nonce => {}
                Ok(echo) => {
                    let error = refused(format!(
                        "bad nonce: the peer echoed {echo:016x}, but this side sent {nonce:016x}"
                    ));
                    return Err(refuse(stream, error).await);
                }
                Err(e) => return Err(refuse(stream, refused(format!("malformed Ack frame: {e}"))).await),
            }
        }
        Some(&kind::REFUSE) => {
            let reason = parse_text(&payload).unwrap_or_else(|e| format!("(unreadable reason: {e})"));
            return Err(refused(format!("the peer refused the handshake: {reason}")));
        }
        _ => {
            let error = refused("malformed handshake: expected an Ack frame");
            return Err(refuse(stream, error).await);
        }
    }
    Ok(dec)
}

// ---------------------------------------------------------------- the connection

/// Whether the partner has said it is ready.
#[derive(Clone, Debug)]
enum Partner {
    Waiting,
    Ready,
    Gone(Error),
}

struct Outgoing {
    /// Encoded frames not yet written.
    bytes: Vec<u8>,
    /// They include a message someone waits for (not just a commit or an abort).
    urgent: bool,
    /// The writer task is finishing a write: others only append.
    writing: bool,
    /// A close frame was queued: nothing more is sent.
    closing: bool,
}

/// One TCP connection of a pair.
struct Conn {
    me: Weak<Conn>,
    write: OwnedWriteHalf,
    max_frame: usize,
    out: Mutex<Outgoing>,
    wake_writer: Notify,
    link: OnceLock<WeakLink>,
    partner: watch::Sender<Partner>,
    /// Set when the connection is finished: the tasks end.
    closed: watch::Sender<bool>,
    /// The reader task, stopped when the connection is finished.
    reader: OnceLock<tokio::task::AbortHandle>,
    /// Reads that returned data, and writes that sent some (for liveness).
    received: AtomicU64,
    sent: AtomicU64,
    /// The reader task is handling frames (running a block inline, which may block on a
    /// host function) rather than waiting for bytes: the partner's silence cannot be told.
    reader_busy: std::sync::atomic::AtomicBool,
}

impl Conn {
    fn link(&self) -> Option<Link> {
        self.link.get().and_then(WeakLink::upgrade)
    }

    /// Appends a frame with `payload` to the outgoing bytes.
    fn push(&self, payload: &[u8]) {
        let mut out = self.out.lock();
        if !out.closing {
            out.bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            out.bytes.extend_from_slice(payload);
            out.urgent = true;
        }
    }

    /// Writes the outgoing bytes now if someone waits for them and the connection is not
    /// busy; otherwise lets the writer task gather more first. Inside the reader's handling
    /// of one read, waits for the end of it.
    fn flush_soon(&self, busy: bool) {
        let deferred = BATCH.with(|b| match &mut *b.borrow_mut() {
            Some(list) => {
                if !list.iter().any(|c| std::ptr::eq(Arc::as_ptr(c), self))
                    && let Some(me) = self.me.upgrade()
                {
                    list.push(me);
                }
                true
            }
            None => false,
        });
        if deferred {
            return;
        }
        let (urgent, size) = {
            let mut out = self.out.lock();
            (std::mem::take(&mut out.urgent), out.bytes.len())
        };
        // A busy connection gathers messages into larger writes, but not so many that the
        // partner sits idle while this side produces them.
        if (urgent && !busy) || size >= EARLY_WRITE {
            self.write_now();
        } else {
            self.wake_writer.notify_one();
        }
    }

    /// Writes what it can of the outgoing bytes now; the writer task does the rest.
    fn write_now(&self) {
        let mut out = self.out.lock();
        if out.writing || out.bytes.is_empty() {
            return;
        }
        out.urgent = false;
        match self.write.try_write(&out.bytes) {
            Ok(n) => {
                self.sent.fetch_add(1, Ordering::Relaxed);
                if n == out.bytes.len() {
                    out.bytes.clear();
                    if out.bytes.capacity() > 1 << 20 {
                        out.bytes.shrink_to(64 * 1024);
                    }
                    if out.closing {
                        self.wake_writer.notify_one();
                    }
                } else {
                    out.bytes.drain(..n);
                    out.writing = true;
                    self.wake_writer.notify_one();
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                out.writing = true;
                self.wake_writer.notify_one();
            }
            Err(e) => {
                out.bytes.clear();
                out.closing = true;
                drop(out);
                self.broken(network(format!("writing to the partner failed: {e}")));
            }
        }
    }

    /// Queues a close frame with `error` as the reason; the writer shuts the socket down
    /// once everything before it is written.
    fn close_with(&self, error: &Error) {
        let reason = error.to_string();
        let mut w = Writer::new();
        w.byte(kind::CLOSE);
        w.text(&reason);
        self.push(&w.finish());
        self.out.lock().closing = true;
        let _ = self.partner.send_if_modified(|p| {
            if matches!(p, Partner::Waiting) {
                *p = Partner::Gone(error.clone());
                true
            } else {
                false
            }
        });
        self.write_now();
        self.wake_writer.notify_one();
    }

    /// The connection is unusable because of `error`: the pair breaks, the tasks end.
    fn broken(&self, error: Error) {
        let _ = self.partner.send_if_modified(|p| {
            if matches!(p, Partner::Waiting) {
                *p = Partner::Gone(error.clone());
                true
            } else {
                false
            }
        });
        if let Some(link) = self.link() {
            link.lost(error);
        }
        self.finished();
    }

    /// Ends both tasks.
    fn finished(&self) {
        self.closed.send_replace(true);
        self.wake_writer.notify_one();
        if let Some(reader) = self.reader.get() {
            reader.abort();
        }
    }

    /// The peer broke the protocol: tell it why, close, break the pair.
    fn deviated(&self, message: String) {
        let error = deviation(message);
        tracing::warn!(%error, "closing the connection");
        self.close_with(&error);
        if let Some(link) = self.link() {
            link.lost(error);
        }
    }

    /// Handles one frame; false when the connection is finished.
    fn frame(&self, payload: &[u8]) -> bool {
        match payload.first().copied() {
            Some(1..=10) => match crate::engine::proto::decode_msg(payload) {
                Ok(msg) => {
                    if let Some(link) = self.link() {
                        link.receive(msg);
                    }
                    true
                }
                Err(e) => {
                    self.deviated(format!("a malformed message: {e}"));
                    false
                }
            },
            Some(kind::HEARTBEAT) if payload.len() == 1 => true,
            Some(kind::READY) if payload.len() == 1 => {
                let _ = self.partner.send_if_modified(|p| {
                    if matches!(p, Partner::Waiting) {
                        *p = Partner::Ready;
                        true
                    } else {
                        false
                    }
                });
                true
            }
            Some(kind::STOP) if payload.len() == 1 => {
                if let Some(link) = self.link() {
                    link.control(Control::Stop);
                }
                true
            }
            Some(kind::STOP_ACK) if payload.len() == 1 => {
                if let Some(link) = self.link() {
                    link.control(Control::StopAck);
                }
                true
            }
            Some(kind::CLOSE) => {
                let reason = parse_text(payload).unwrap_or_else(|e| format!("(unreadable reason: {e})"));
                let error = if reason == Error::Stopped.to_string() {
                    Error::Stopped
                } else {
                    network(format!("the partner closed the connection: {reason}"))
                };
                self.broken(error);
                false
            }
            Some(tag) => {
                self.deviated(format!("a frame of unknown kind {tag:#04x} ({} bytes)", payload.len()));
                false
            }
            None => {
                self.deviated("an empty frame".into());
                false
            }
        }
    }
}

impl Transport for Conn {
    fn send(&self, msg: Msg) {
        let mut out = self.out.lock();
        if out.closing {
            return;
        }
        if !matches!(msg, Msg::Commit { .. } | Msg::Abort { .. }) {
            out.urgent = true;
        }
        let start = out.bytes.len();
        out.bytes.extend_from_slice(&[0; 4]);
        let result = crate::engine::proto::encode_msg_into(&msg, &mut out.bytes);
        let length = out.bytes.len() - start - 4;
        let problem = match result {
            Ok(()) if length <= self.max_frame => None,
            Ok(()) => Some(format!(
                "a message of {length} bytes is larger than the frame maximum of {} bytes",
                self.max_frame
            )),
            Err(e) => Some(format!("a message could not be encoded: {e}")),
        };
        match problem {
            None => out.bytes[start..start + 4].copy_from_slice(&(length as u32).to_le_bytes()),
            Some(problem) => {
                out.bytes.truncate(start);
                drop(out);
                let error = network(problem);
                self.close_with(&error);
                self.broken(error);
            }
        }
    }

    fn flush(&self, busy: bool) {
        self.flush_soon(busy);
    }

    fn control(&self, control: Control) {
        self.push(&[match control {
            Control::Stop => kind::STOP,
            Control::StopAck => kind::STOP_ACK,
        }]);
    }

    fn close(&self, error: &Error) {
        self.close_with(error);
    }
}

/// A gathered write starts once this many bytes are waiting.
const EARLY_WRITE: usize = 512;

thread_local! {
    /// While a reader handles the frames of one read: the connections that have messages to
    /// write at the end of it (blocks run inline answer in the same write).
    static BATCH: std::cell::RefCell<Option<Vec<Arc<Conn>>>> = const { std::cell::RefCell::new(None) };
}

/// Handles every complete frame in `dec`, writing what they produce at the end; false when
/// the connection is finished.
fn handle_frames(conn: &Conn, dec: &mut FrameDecoder) -> bool {
    let outer = BATCH.with(|b| b.borrow_mut().replace(Vec::new()));
    let mut going = true;
    loop {
        match dec.next_frame_ref() {
            Ok(Some(payload)) => {
                if !conn.frame(payload) {
                    going = false;
                    break;
                }
                if conn.out.lock().bytes.len() >= EARLY_WRITE {
                    conn.write_now();
                }
            }
            Ok(None) => break,
            Err(e) => {
                conn.deviated(e.to_string());
                going = false;
                break;
            }
        }
    }
    let batch = BATCH.with(|b| std::mem::replace(&mut *b.borrow_mut(), outer)).unwrap_or_default();
    for c in batch {
        c.write_now();
    }
    going
}

/// Reads until the connection ends; aborted when it is closed from this side.
async fn read_loop(conn: Arc<Conn>, mut read: OwnedReadHalf, mut dec: FrameDecoder) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        conn.reader_busy.store(true, Ordering::Relaxed);
        if !handle_frames(&conn, &mut dec) {
            return;
        }
        conn.reader_busy.store(false, Ordering::Relaxed);
        match read.read(&mut buf).await {
            Ok(0) => {
                let error = if dec.pending() > 0 {
                    deviation(format!(
                        "the connection ended inside a frame ({} bytes of it arrived)",
                        dec.pending()
                    ))
                } else {
                    network("the partner closed the connection")
                };
                conn.broken(error);
                return;
            }
            Ok(n) => {
                conn.received.fetch_add(1, Ordering::Relaxed);
                dec.feed(&buf[..n]);
            }
            Err(e) => {
                conn.broken(network(format!("reading from the partner failed: {e}")));
                return;
            }
        }
    }
}

async fn write_loop(conn: Arc<Conn>, heartbeat: Duration, partner_timeout: Duration) {
    let mut closed = conn.closed.subscribe();
    let mut liveness = Liveness::new(Instant::now(), heartbeat, partner_timeout);
    let timer = tokio::time::sleep_until(liveness.next_timer());
    tokio::pin!(timer);
    loop {
        // `finished` wakes the writer after marking the connection closed, so the closed
        // flag is read on each wake rather than watched in its own branch (a cheaper poll:
        // the writer wakes about once per transaction, for a lazy commit).
        tokio::select! {
            _ = conn.wake_writer.notified() => {
                if *closed.borrow() {
                    return;
                }
            }
            () = &mut timer => {
                let (sent, received) = (conn.sent.load(Ordering::Relaxed), conn.received.load(Ordering::Relaxed));
                let busy = conn.reader_busy.load(Ordering::Relaxed);
                match liveness.timer(Instant::now(), sent, received, busy) {
                    Beat::Quiet => {}
                    Beat::Heartbeat => {
                        conn.push(&[kind::HEARTBEAT]);
                        conn.write_now();
                        liveness.sent(conn.sent.load(Ordering::Relaxed));
                    }
                    Beat::Lost(silence) => {
                        conn.broken(network(format!(
                            "the partner sent nothing, not even a heartbeat, for {silence:?}"
                        )));
                        return;
                    }
                }
                timer.as_mut().reset(liveness.next_timer());
            }
        }
        // Finish the write the producers could not complete.
        loop {
            match finish_write(&conn) {
                Step::Done => break,
                Step::Again => continue,
                Step::Wait => {}
                Step::Closed => {
                    // The peer closes its side when it reads the close frame; give it a
                    // moment, then let go of the socket.
                    let _ = tokio::time::timeout(partner_timeout, closed.wait_for(|c| *c)).await;
                    conn.finished();
                    return;
                }
                Step::Failed(e) => {
                    conn.broken(network(format!("writing to the partner failed: {e}")));
                    return;
                }
            }
            tokio::select! {
                ready = conn.write.writable() => {
                    if let Err(e) = ready {
                        conn.broken(network(format!("writing to the partner failed: {e}")));
                        return;
                    }
                }
                _ = closed.wait_for(|c| *c) => return,
                _ = tokio::time::sleep(partner_timeout) => {
                    conn.broken(network(format!("the partner read nothing for {partner_timeout:?}")));
                    return;
                }
            }
        }
    }
}

/// What the writer task does next.
enum Step {
    /// Nothing left to write.
    Done,
    /// Wait until the socket takes more.
    Wait,
    /// Some was written: look again.
    Again,
    /// Everything including the close frame is written; the write half is shut down.
    Closed,
    /// The socket failed.
    Failed(io::Error),
}

fn finish_write(conn: &Conn) -> Step {
    let mut out = conn.out.lock();
    if out.bytes.is_empty() {
        out.writing = false;
        if out.closing {
            let _ = socket2::SockRef::from(conn.write.as_ref()).shutdown(std::net::Shutdown::Write);
            return Step::Closed;
        }
        return Step::Done;
    }
    out.urgent = false;
    match conn.write.try_write(&out.bytes) {
        Ok(n) => {
            conn.sent.fetch_add(1, Ordering::Relaxed);
            out.bytes.drain(..n);
            Step::Again
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Step::Wait,
        Err(e) => {
            out.bytes.clear();
            Step::Failed(e)
        }
    }
}

/// A connection whose handshake is done and whose link runs, waiting for this side's
/// `onCreate` and the partner's ready signal before public calls may start.
pub struct Pending {
    conn: Arc<Conn>,
    link: Link,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").field("peer", &self.conn.write.peer_addr().ok()).finish()
    }
}

impl Pending {
    /// The connection's link.
    pub fn link(&self) -> &Link {
        &self.link
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

/// Runs the handshake on `stream` for `end`, then starts the connection's link; `attach`
/// receives the link before any message is read from the partner.
pub async fn establish(
    mut stream: TcpStream,
    end: PairEnd,
    options: &TcpOptions,
    attach: impl FnOnce(Link),
) -> Result<Pending, Error> {
    let PairEnd { spec, side, core, program } = end;
    stream.set_nodelay(true).map_err(|e| network(format!("could not set TCP_NODELAY: {e}")))?;
    let dec = match tokio::time::timeout(options.handshake_timeout, handshake(&mut stream, spec, side)).await
    {
        Ok(result) => result?,
        Err(_) => {
            return Err(refused(format!(
                "the peer did not complete the handshake within {:?}",
                options.handshake_timeout
            )));
        }
    };
    let mut dec = dec;
    // Frames after the handshake may be as large as the connection allows.
    dec.set_max(options.max_frame);
    let link = Link::new(core, side, (spec.sequences)(), program);
    let (read, write) = stream.into_split();
    let conn = Arc::new_cyclic(|me| Conn {
        me: me.clone(),
        write,
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
    });
    let _ = conn.link.set(link.downgrade());
    link.attach(conn.clone());
    attach(link.clone());
    let _ = conn.reader.set(tokio::spawn(read_loop(conn.clone(), read, dec)).abort_handle());
    tokio::spawn(write_loop(conn.clone(), options.heartbeat, options.partner_timeout));
    Ok(Pending { conn, link })
}

/// Connects to `addr` and runs [`establish`].
pub async fn connect(
    addr: impl ToSocketAddrs,
    end: PairEnd,
    options: &TcpOptions,
    attach: impl FnOnce(Link),
) -> Result<Pending, Error> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| network(format!("could not connect to the partner: {e}")))?;
    establish(stream, end, options, attach).await
}

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
const FAILURES_KEPT: usize = 64;

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
