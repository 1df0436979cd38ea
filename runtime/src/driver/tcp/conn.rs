//! An established connection: the outgoing buffer, the reader task, the writer task
//! (gathered writes, heartbeats, the partner timeout).
//!
//! A connection runs over any byte stream (`AsyncRead + AsyncWrite`): plain TCP, TLS, a
//! simulated network. The producing thread writes its bytes itself, without waiting (no task
//! hop on the hot path): over plain TCP with a non-blocking `try_write`, over any other stream
//! by polling its write half once with a no-op waker. What the stream does not take at once,
//! the writer task writes, polling with its own waker.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::handshake::parse_text;
use super::network::Io;
use super::options::*;
use super::session::{CONFIRM_EVERY, Outage, Reading, Replay, Session};
use crate::core::error::Error;
use crate::core::value::Value;
use crate::driver::link::{Control, Link, Transport, WeakLink};
use crate::engine::Msg;
use crate::engine::liveness::{Beat, Liveness};
use crate::wire::{FrameDecoder, Writer};

// ---------------------------------------------------------------- the connection

/// Whether the partner has said it is ready.
#[derive(Clone, Debug)]
pub(super) enum Partner {
    Waiting,
    Ready,
    Gone(Error),
}

pub(super) struct Outgoing {
    /// Encoded frames not yet written.
    pub(super) bytes: Vec<u8>,
    /// The socket they are written to.
    pub(super) wire: Wire,
    /// A resumable connection: the frames sent and not yet confirmed.
    pub(super) replay: Option<Replay>,
    /// They include a message someone waits for (not just a commit or an abort).
    pub(super) urgent: bool,
    /// The writer task is finishing a write: others only append.
    pub(super) writing: bool,
    /// A close frame was queued: nothing more is sent.
    pub(super) closing: bool,
    /// Bytes handed to sockets so far.
    pub(super) bytes_out: u64,
}

/// The write half of a connection's stream, as the writer task holds it when producers
/// cannot write inline.
pub(super) type StreamWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// Where a connection's bytes go.
pub(super) enum Wire {
    /// Plain TCP: producers write inline with `try_write`.
    Tcp(Arc<OwnedWriteHalf>),
    /// Any other stream (TLS, a simulated network): locked only for one poll at a time.
    Stream(Arc<Mutex<StreamWrite>>),
    /// No socket: a resumable connection between two sockets (bytes wait for the next).
    Down,
}

impl Wire {
    /// The read half of `io`, and where its writes go.
    pub(super) fn split(io: Io) -> (Box<dyn AsyncRead + Send + Unpin>, Wire) {
        match io {
            Io::Tcp(read, write) => (Box::new(read), Wire::Tcp(Arc::new(write))),
            Io::Stream(read, write) => (read, Wire::Stream(Arc::new(Mutex::new(write)))),
        }
    }
}

impl Outgoing {
    /// A new queue writing to `wire`, keeping sent frames when `resumable`.
    pub(super) fn new(wire: Wire, resumable: bool) -> Outgoing {
        Outgoing {
            bytes: Vec::with_capacity(4096),
            wire,
            replay: resumable.then(Replay::default),
            urgent: false,
            writing: false,
            closing: false,
            bytes_out: 0,
        }
    }

    /// The first `n` queued bytes were handed to the socket.
    pub(super) fn written(&mut self, n: usize) {
        self.bytes_out += n as u64;
        match &mut self.replay {
            Some(replay) => {
                replay.sent(&self.bytes[..n]);
                self.bytes.drain(..n);
            }
            None if n == self.bytes.len() => {
                self.bytes.clear();
                if self.bytes.capacity() > 1 << 20 {
                    self.bytes.shrink_to(64 * 1024);
                }
            }
            None => {
                self.bytes.drain(..n);
            }
        }
    }

    /// The socket failed: what is queued is lost with it, unless the connection resumes.
    fn failed(&mut self) {
        if self.replay.is_none() {
            self.bytes.clear();
            self.closing = true;
        }
    }

    /// Bytes waiting for the partner: queued, or sent and not confirmed.
    pub(super) fn backlog(&self) -> usize {
        self.bytes.len() + self.replay.as_ref().map_or(0, |r| r.sent.len())
    }
}

/// One connection of a pair.
pub(super) struct Conn {
    pub(super) me: Weak<Conn>,
    /// The number of the current socket (a resumed connection's next socket has the next
    /// number); changed under `out`'s lock.
    pub(super) socket: AtomicU64,
    /// A resumable connection's session.
    pub(super) session: Option<Session>,
    /// The state the host sees.
    pub(super) state: watch::Sender<ConnectionState>,
    /// Woken when the backlog shrinks or the connection ends.
    pub(super) room: Notify,
    /// The peer's address, for messages.
    pub(super) peer: Option<std::net::SocketAddr>,
    pub(super) max_frame: usize,
    pub(super) out: Mutex<Outgoing>,
    pub(super) wake_writer: Notify,
    pub(super) link: OnceLock<WeakLink>,
    pub(super) partner: watch::Sender<Partner>,
    /// Set when the connection is finished: the tasks end.
    pub(super) closed: watch::Sender<bool>,
    /// The connection's place among its listener's connections, given back when it ends.
    pub(super) admission: Mutex<Option<tokio::sync::OwnedSemaphorePermit>>,
    /// The reader task of the current socket, stopped when the connection is finished.
    pub(super) reader: Mutex<Option<tokio::task::AbortHandle>>,
    /// Reads that returned data, and writes that sent some (for liveness).
    pub(super) received: AtomicU64,
    pub(super) sent: AtomicU64,
    /// Bytes read from sockets so far, and times the session was resumed.
    pub(super) bytes_in: AtomicU64,
    pub(super) resumes: AtomicU64,
    /// The reader task is handling frames (running a block inline, which may block on a
    /// host function) rather than waiting for bytes: the partner's silence cannot be told.
    pub(super) reader_busy: std::sync::atomic::AtomicBool,
    /// The connection's `waldo.connection` span: its tasks run in it.
    pub(super) span: tracing::Span,
    /// The protocol, whose shapes received values are checked against.
    pub(super) spec: &'static PairSpec,
}

impl Conn {
    fn link(&self) -> Option<Link> {
        self.link.get().and_then(WeakLink::upgrade)
    }

    /// Appends a frame with `payload` to the outgoing bytes.
    pub(super) fn push(&self, payload: &[u8]) {
        self.push_frame(payload, true);
    }

    /// Appends a frame; `urgent` when someone waits for it.
    fn push_frame(&self, payload: &[u8], urgent: bool) {
        let mut out = self.out.lock();
        if !out.closing {
            out.bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            out.bytes.extend_from_slice(payload);
            out.urgent |= urgent;
            if let Some(replay) = &mut out.replay {
                replay.queued(payload.len() + 4);
            }
        }
    }

    /// Tells the partner how many frames arrived (a resumable connection), so it may forget
    /// them.
    fn confirm(&self, reading: &mut Reading) {
        if reading.received > reading.confirmed {
            reading.confirmed = reading.received;
            let mut w = Writer::new();
            w.byte(kind::RECEIVED);
            w.varint(reading.received);
            self.push_frame(&w.finish(), false);
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

    /// Writes what it can of the outgoing bytes now; the writer task does the rest (all of it,
    /// over a stream that is not plain TCP).
    pub(super) fn write_now(&self) {
        let mut out = self.out.lock();
        if out.writing || out.bytes.is_empty() {
            return;
        }
        out.urgent = false;
        let result = match &out.wire {
            Wire::Tcp(tcp) => tcp.try_write(&out.bytes),
            Wire::Stream(stream) => {
                let stream = stream.clone();
                self.write_stream_now(&mut out, &stream);
                return;
            }
            Wire::Down => return,
        };
        match result {
            Ok(n) => {
                self.sent.fetch_add(1, Ordering::Relaxed);
                let all = n == out.bytes.len();
                out.written(n);
                if !all {
                    out.writing = true;
                    self.wake_writer.notify_one();
                } else if out.closing {
                    self.wake_writer.notify_one();
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                out.writing = true;
                self.wake_writer.notify_one();
            }
            Err(e) => {
                out.failed();
                let socket = self.socket.load(Ordering::Relaxed);
                drop(out);
                self.io_failed(socket, network(format!("writing to the partner failed: {e}")));
            }
        }
    }

    /// Writes what a stream that is not plain TCP takes at once (one poll, with a no-op waker,
    /// as `try_write` does for TCP); the writer task does the rest.
    fn write_stream_now(&self, out: &mut parking_lot::MutexGuard<'_, Outgoing>, stream: &Mutex<StreamWrite>) {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let mut stream = stream.lock();
        let mut written = 0;
        let mut failed = None;
        while written < out.bytes.len() {
            match std::pin::Pin::new(&mut *stream).poll_write(&mut cx, &out.bytes[written..]) {
                std::task::Poll::Ready(Ok(0)) => break,
                std::task::Poll::Ready(Ok(n)) => written += n,
                std::task::Poll::Ready(Err(e)) => {
                    failed = Some(e);
                    break;
                }
                std::task::Poll::Pending => break,
            }
        }
        let flushed = failed.is_none()
            && written == out.bytes.len()
            && match std::pin::Pin::new(&mut *stream).poll_flush(&mut cx) {
                std::task::Poll::Ready(Ok(())) => true,
                std::task::Poll::Ready(Err(e)) => {
                    failed = Some(e);
                    false
                }
                std::task::Poll::Pending => false,
            };
        drop(stream);
        if let Some(e) = failed {
            out.failed();
            let socket = self.socket.load(Ordering::Relaxed);
            parking_lot::MutexGuard::unlocked(out, || {
                self.io_failed(socket, network(format!("writing to the partner failed: {e}")));
            });
            return;
        }
        if written > 0 {
            self.sent.fetch_add(1, Ordering::Relaxed);
        }
        out.written(written);
        if !flushed || !out.bytes.is_empty() || out.closing {
            out.writing = true;
            self.wake_writer.notify_one();
        }
    }

    /// Queues a close frame with `error` as the reason; the writer shuts the socket down
    /// once everything before it is written.
    pub(super) fn close_with(&self, error: &Error) {
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

    /// The socket numbered `socket` failed with `error`: a resumable connection starts to
    /// resume (unless that socket was already replaced); any other breaks.
    pub(super) fn io_failed(&self, socket: u64, error: Error) {
        self.fail(socket, error, false);
    }

    /// [`Conn::io_failed`], from the reader of that socket: true when the reader is to run
    /// the outage itself ([`super::resume::recover`]: no task hop before redialing).
    fn reader_failed(&self, socket: u64, error: Error) -> bool {
        self.fail(socket, error, true)
    }

    fn fail(&self, socket: u64, error: Error, reading: bool) -> bool {
        let Some(session) = &self.session else {
            self.broken(error);
            return false;
        };
        if *self.closed.borrow() {
            return false;
        }
        let old = {
            let mut out = self.out.lock();
            if out.closing {
                drop(out);
                self.broken(error);
                return false;
            }
            if self.socket.load(Ordering::Relaxed) != socket || matches!(out.wire, Wire::Down) {
                return false;
            }
            self.socket.fetch_add(1, Ordering::Relaxed);
            out.writing = false;
            std::mem::replace(&mut out.wire, Wire::Down)
        };
        // Make sure the old socket is dead on both ends, so the partner notices too.
        if let Wire::Tcp(tcp) = &old {
            let stream: &tokio::net::TcpStream = (**tcp).as_ref();
            let _ = socket2::SockRef::from(stream).shutdown(std::net::Shutdown::Both);
        }
        drop(old);
        // The reader that failed runs the outage; any other reader of the socket ends.
        let reader = self.reader.lock().take();
        let reader = match reader {
            Some(reader) if reading => Some(reader),
            Some(reader) => {
                reader.abort();
                None
            }
            None => None,
        };
        tracing::warn!(peer = ?self.peer, %error, "the connection broke; resuming the session");
        self.state.send_replace(ConnectionState::Reconnecting { attempt: 0 });
        let mut outage = session.outage.lock();
        if outage.is_some() {
            return false;
        }
        let inline = reader.is_some();
        let task = match reader {
            Some(reader) => reader,
            None => match self.me.upgrade() {
                Some(me) => {
                    let recover =
                        tracing::Instrument::instrument(super::resume::recover(me), self.span.clone());
                    tokio::spawn(recover).abort_handle()
                }
                None => return false,
            },
        };
        *outage = Some(Outage { since: Instant::now(), cause: error, task: Some(task) });
        inline
    }

    /// The connection is unusable because of `error`: the pair breaks, the tasks end.
    pub(super) fn broken(&self, error: Error) {
        let _ = self.partner.send_if_modified(|p| {
            if matches!(p, Partner::Waiting) {
                *p = Partner::Gone(error.clone());
                true
            } else {
                false
            }
        });
        // Closed before the calls fail, so a host that sees the error sees the state too.
        self.closed_because(error.to_string());
        if let Some(link) = self.link() {
            link.lost(error);
        }
        self.finished();
    }

    /// The state becomes `Closed` with `reason` (unless it already is).
    fn closed_because(&self, reason: String) {
        self.state.send_if_modified(|s| {
            if matches!(s, ConnectionState::Closed { .. }) {
                false
            } else {
                tracing::info!(peer = ?self.peer, %reason, "the connection closed");
                *s = ConnectionState::Closed { reason };
                true
            }
        });
    }

    /// Ends both tasks.
    fn finished(&self) {
        self.closed.send_replace(true);
        drop(self.admission.lock().take());
        self.wake_writer.notify_one();
        self.room.notify_waiters();
        if let Some(reader) = self.reader.lock().take() {
            reader.abort();
        }
        if let Some(session) = &self.session {
            if let Some(registry) = session.registry.as_ref().and_then(Weak::upgrade) {
                registry.ended(session.keys.id);
            }
            if let Some(outage) = session.outage.lock().take()
                && let Some(task) = outage.task
            {
                task.abort();
            }
        }
        let reason = match self.link().and_then(|l| l.error()) {
            Some(e) => e.to_string(),
            None => "the connection closed".to_owned(),
        };
        self.closed_because(reason);
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

    /// Checks the values a message carries against the protocol's shapes: its peered data,
    /// and the sequence data of a `Work` (where the engine checks their number). Sequence
    /// data that a block has not set yet travels as Nothing. The data a `Done` brings back
    /// is checked where its sequence is known (`Transport::check_results`).
    fn check_values(&self, msg: &Msg) -> Result<(), String> {
        let peered = match msg {
            Msg::Work { seq, locals, peered, .. } => {
                self.check_data(*seq, locals)?;
                peered
            }
            Msg::Done { peered, .. } | Msg::Raise { peered, .. } | Msg::Prepare { peered, .. } => peered,
            _ => return Ok(()),
        };
        for (slot, value) in peered {
            if let Some((name, shape)) = self.spec.peered.get(*slot as usize) {
                shape.check(value).map_err(|e| format!("peered variable `{name}` received {e}"))?;
            }
        }
        Ok(())
    }

    /// Checks the data of sequence `seq` against its shapes (Nothing: not set yet).
    fn check_data(&self, seq: u32, locals: &[Value]) -> Result<(), String> {
        if let Some(shapes) = self.spec.data.get(seq as usize) {
            let name = self.spec.sequences.get(seq as usize).map_or("?", |s| s.name);
            for (i, (value, shape)) in locals.iter().zip(shapes.iter()).enumerate() {
                if !matches!(value, Value::Nothing) {
                    shape
                        .check(value)
                        .map_err(|e| format!("value {} of sequence `{name}`'s data is {e}", i + 1))?;
                }
            }
        }
        Ok(())
    }

    /// Handles one frame; false when the connection is finished.
    fn frame(&self, payload: &[u8]) -> bool {
        match payload.first().copied() {
            Some(tag) if crate::engine::proto::MESSAGE_TAGS.contains(&tag) => {
                match crate::engine::proto::decode_msg(payload) {
                    Ok(msg) => {
                        if let Err(message) = self.check_values(&msg) {
                            self.deviated(message);
                            return false;
                        }
                        if let Some(link) = self.link() {
                            link.receive(msg);
                        }
                        true
                    }
                    Err(e) => {
                        self.deviated(format!("a malformed message: {e}"));
                        false
                    }
                }
            }
            Some(kind::HEARTBEAT) if payload.len() == 1 => true,
            Some(kind::RECEIVED) if self.session.is_some() => {
                let mut r = crate::wire::Reader::new(&payload[1..]);
                let count = r.varint().and_then(|n| r.finish().map(|()| n));
                let confirmed = match count {
                    Ok(n) => self.out.lock().replay.as_mut().map_or(Ok(()), |replay| replay.confirm(n)),
                    Err(e) => Err(format!("a malformed confirmation: {e}")),
                };
                match confirmed {
                    Ok(()) => {
                        self.room.notify_waiters();
                        true
                    }
                    Err(message) => {
                        self.deviated(message);
                        false
                    }
                }
            }
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
            None => {
                out.bytes[start..start + 4].copy_from_slice(&(length as u32).to_le_bytes());
                if let Some(replay) = &mut out.replay {
                    replay.queued(length + 4);
                }
            }
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

    fn room(&self) -> Option<crate::driver::link::Room> {
        let max = self.session.as_ref()?.policy.max_backlog;
        if self.out.lock().backlog() < max {
            return None;
        }
        let me = self.me.upgrade()?;
        Some(Box::pin(async move {
            loop {
                let room = me.room.notified();
                if *me.closed.borrow() {
                    return Err(network("the connection closed while the call waited for the partner"));
                }
                if me.out.lock().backlog() < max {
                    return Ok(());
                }
                room.await;
            }
        }))
    }

    fn backlog(&self) -> usize {
        self.out.lock().backlog()
    }

    fn state(&self) -> Option<watch::Receiver<ConnectionState>> {
        Some(self.state.subscribe())
    }

    fn check_results(&self, seq: u32, locals: &[Value]) -> Result<(), String> {
        self.check_data(seq, locals)
    }

    fn traffic(&self) -> crate::core::stats::Traffic {
        crate::core::stats::Traffic {
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.out.lock().bytes_out,
            resumes: self.resumes.load(Ordering::Relaxed),
        }
    }
}

/// A gathered write starts once this many bytes are waiting.
pub(super) const EARLY_WRITE: usize = 512;

thread_local! {
    /// While a reader handles the frames of one read: the connections that have messages to
    /// write at the end of it (blocks run inline answer in the same write).
    static BATCH: std::cell::RefCell<Option<Vec<Arc<Conn>>>> = const { std::cell::RefCell::new(None) };
}

/// Handles every complete frame in `dec`, writing what they produce at the end; false when
/// the connection is finished. `reading` counts the frames (a resumable connection), after
/// passing over those to skip.
pub(super) fn handle_frames(conn: &Conn, dec: &mut FrameDecoder, mut reading: Option<&mut Reading>) -> bool {
    let outer = BATCH.with(|b| b.borrow_mut().replace(Vec::new()));
    let mut going = true;
    loop {
        match dec.next_frame_ref() {
            Ok(Some(payload)) => {
                if let Some(reading) = reading.as_deref_mut() {
                    // A frame re-sent after a resume that arrived before the break.
                    if reading.skip > 0 {
                        reading.skip -= 1;
                        continue;
                    }
                    reading.received += 1;
                }
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

/// Handles what arrived on socket number `socket`; false when this reader must end (the
/// connection is finished, or a resumed connection replaced the socket).
pub(super) fn handle(conn: &Conn, dec: &mut FrameDecoder, socket: u64) -> bool {
    let Some(session) = &conn.session else {
        return handle_frames(conn, dec, None);
    };
    let mut reading = session.reading.lock();
    if reading.socket != socket {
        return false;
    }
    let going = handle_frames(conn, dec, Some(&mut reading));
    if going && reading.received >= reading.confirmed + CONFIRM_EVERY {
        conn.confirm(&mut reading);
        drop(reading);
        conn.wake_writer.notify_one();
    }
    going
}

/// Reads socket number `socket` until it ends; aborted when the connection is closed from
/// this side or the socket replaced.
pub(super) async fn read_loop(
    conn: Arc<Conn>,
    mut read: impl AsyncRead + Unpin,
    mut dec: FrameDecoder,
    socket: u64,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        conn.reader_busy.store(true, Ordering::Relaxed);
        if !handle(&conn, &mut dec, socket) {
            return;
        }
        conn.reader_busy.store(false, Ordering::Relaxed);
        match read.read(&mut buf).await {
            Ok(0) => {
                let error = if dec.pending() > 0 && conn.session.is_none() {
                    deviation(format!(
                        "the connection ended inside a frame ({} bytes of it arrived)",
                        dec.pending()
                    ))
                } else {
                    network("the partner closed the connection")
                };
                if conn.reader_failed(socket, error) {
                    super::resume::recover(conn).await;
                }
                return;
            }
            Ok(n) => {
                conn.received.fetch_add(1, Ordering::Relaxed);
                conn.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
                dec.feed(&buf[..n]);
            }
            Err(e) => {
                if conn.reader_failed(socket, network(format!("reading from the partner failed: {e}"))) {
                    super::resume::recover(conn).await;
                }
                return;
            }
        }
    }
}

pub(super) async fn write_loop(conn: Arc<Conn>, heartbeat: Duration, partner_timeout: Duration) {
    let mut closed = conn.closed.subscribe();
    let mut socket = conn.socket.load(Ordering::Relaxed);
    let mut liveness = Liveness::new(Instant::now().into_std(), heartbeat, partner_timeout);
    let timer = tokio::time::sleep_until(liveness.next_timer().into());
    tokio::pin!(timer);
    loop {
        // `finished` wakes the writer after marking the connection closed, so the closed
        // flag is read on each wake rather than watched in its own branch (a cheaper poll:
        // the writer wakes about once per transaction, for a lazy commit).
        // Biased: the same order every time, so a seeded simulation replays exactly.
        tokio::select! {
            biased;
            _ = conn.wake_writer.notified() => {
                if *closed.borrow() {
                    return;
                }
            }
            () = &mut timer => {
                let now = conn.socket.load(Ordering::Relaxed);
                let down = matches!(conn.out.lock().wire, Wire::Down);
                if now != socket {
                    // A resumed connection: a new socket, heard from just now.
                    socket = now;
                    liveness = Liveness::new(Instant::now().into_std(), heartbeat, partner_timeout);
                } else if !down {
                    if let Some(session) = &conn.session {
                        conn.confirm(&mut session.reading.lock());
                    }
                    let (sent, received) = (conn.sent.load(Ordering::Relaxed), conn.received.load(Ordering::Relaxed));
                    let busy = conn.reader_busy.load(Ordering::Relaxed);
                    match liveness.timer(Instant::now().into_std(), sent, received, busy) {
                        Beat::Quiet => {}
                        Beat::Heartbeat => {
                            conn.push(&[kind::HEARTBEAT]);
                            conn.write_now();
                            liveness.sent(conn.sent.load(Ordering::Relaxed));
                        }
                        Beat::Lost(silence) => {
                            conn.io_failed(socket, network(format!(
                                "the partner sent nothing, not even a heartbeat, for {silence:?}"
                            )));
                            if conn.session.is_none() {
                                return;
                            }
                        }
                    }
                }
                let next = if down { Instant::now() + heartbeat } else { liveness.next_timer().into() };
                timer.as_mut().reset(next);
            }
        }
        let (wire, current) = {
            let out = conn.out.lock();
            let wire = match &out.wire {
                Wire::Tcp(tcp) => Some(Ok(tcp.clone())),
                Wire::Stream(stream) => Some(Err(stream.clone())),
                Wire::Down => None,
            };
            (wire, conn.socket.load(Ordering::Relaxed))
        };
        match wire {
            None => continue,
            // A stream that is not plain TCP: the writer writes everything.
            Some(Err(stream)) => match write_stream(&conn, &stream, partner_timeout, current).await {
                Step::Closed => {
                    let _ = tokio::time::timeout(partner_timeout, closed.wait_for(|c| *c)).await;
                    conn.finished();
                    return;
                }
                Step::Failed(e) => {
                    conn.io_failed(current, network(format!("writing to the partner failed: {e}")));
                    if conn.session.is_none() {
                        return;
                    }
                }
                Step::Done | Step::Wait | Step::Again => {}
            },
            // Finish the write the producers could not complete.
            Some(Ok(tcp)) => loop {
                match finish_write(&conn, &tcp, current) {
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
                        conn.io_failed(current, network(format!("writing to the partner failed: {e}")));
                        if conn.session.is_none() {
                            return;
                        }
                        break;
                    }
                }
                tokio::select! {
                    biased;
                    ready = tcp.writable() => {
                        if let Err(e) = ready {
                            conn.io_failed(current, network(format!("writing to the partner failed: {e}")));
                            if conn.session.is_none() {
                                return;
                            }
                            break;
                        }
                    }
                    _ = closed.wait_for(|c| *c) => return,
                    _ = tokio::time::sleep(partner_timeout) => {
                        conn.io_failed(current, network(format!("the partner read nothing for {partner_timeout:?}")));
                        if conn.session.is_none() {
                            return;
                        }
                        break;
                    }
                }
                if conn.socket.load(Ordering::Relaxed) != current {
                    break;
                }
            },
        }
    }
}

/// What the writer task does next.
pub(super) enum Step {
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

/// Writes everything queued to a stream that is not plain TCP (socket number `socket`), then
/// flushes it; shuts it down after the close frame.
async fn write_stream(
    conn: &Conn,
    stream: &Mutex<StreamWrite>,
    partner_timeout: Duration,
    socket: u64,
) -> Step {
    let mut buf = Vec::new();
    loop {
        let closing = {
            let mut out = conn.out.lock();
            if conn.socket.load(Ordering::Relaxed) != socket {
                return Step::Done;
            }
            if out.bytes.is_empty() {
                out.writing = false;
                if !out.closing {
                    return Step::Done;
                }
                true
            } else {
                out.urgent = false;
                out.writing = true;
                // Copied, not taken: until written, the bytes stay queued (a resumed
                // connection re-sends them in order).
                buf.clear();
                buf.extend_from_slice(&out.bytes);
                false
            }
        };
        // One poll at a time under the lock, with this task's waker.
        let write = async {
            if closing {
                std::future::poll_fn(|cx| std::pin::Pin::new(&mut *stream.lock()).poll_shutdown(cx)).await
            } else {
                let mut written = 0;
                while written < buf.len() {
                    let n = std::future::poll_fn(|cx| {
                        std::pin::Pin::new(&mut *stream.lock()).poll_write(cx, &buf[written..])
                    })
                    .await?;
                    if n == 0 {
                        return Err(io::Error::from(io::ErrorKind::WriteZero));
                    }
                    written += n;
                }
                std::future::poll_fn(|cx| std::pin::Pin::new(&mut *stream.lock()).poll_flush(cx)).await
            }
        };
        match tokio::time::timeout(partner_timeout, write).await {
            Ok(Ok(())) if closing => return Step::Closed,
            Ok(Ok(())) => {
                conn.sent.fetch_add(1, Ordering::Relaxed);
                let mut out = conn.out.lock();
                if conn.socket.load(Ordering::Relaxed) == socket {
                    out.written(buf.len());
                }
            }
            Ok(Err(e)) => {
                conn.out.lock().failed();
                return Step::Failed(e);
            }
            Err(_) => {
                conn.out.lock().failed();
                return Step::Failed(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the partner read nothing for {partner_timeout:?}"),
                ));
            }
        }
    }
}

pub(super) fn finish_write(conn: &Conn, tcp: &OwnedWriteHalf, socket: u64) -> Step {
    let mut out = conn.out.lock();
    if conn.socket.load(Ordering::Relaxed) != socket {
        return Step::Done;
    }
    if out.bytes.is_empty() {
        out.writing = false;
        if out.closing {
            let _ = socket2::SockRef::from(tcp.as_ref()).shutdown(std::net::Shutdown::Write);
            return Step::Closed;
        }
        return Step::Done;
    }
    out.urgent = false;
    match tcp.try_write(&out.bytes) {
        Ok(n) => {
            conn.sent.fetch_add(1, Ordering::Relaxed);
            out.written(n);
            Step::Again
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Step::Wait,
        Err(e) => {
            out.failed();
            Step::Failed(e)
        }
    }
}
