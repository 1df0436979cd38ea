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

use super::handshake::*;
use super::options::*;
use crate::core::error::Error;
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
    /// They include a message someone waits for (not just a commit or an abort).
    pub(super) urgent: bool,
    /// The writer task is finishing a write: others only append.
    pub(super) writing: bool,
    /// A close frame was queued: nothing more is sent.
    pub(super) closing: bool,
}

/// The write half of a connection's stream, as the writer task holds it when producers
/// cannot write inline.
pub(super) type StreamWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// One connection of a pair.
pub(super) struct Conn {
    pub(super) me: Weak<Conn>,
    /// The socket's write half when the stream is plain TCP (producers write inline); `None`
    /// when the writer task owns another stream's write half.
    pub(super) tcp: Option<OwnedWriteHalf>,
    /// The write half of any other stream (TLS): locked only for one poll at a time.
    pub(super) stream: Option<Mutex<StreamWrite>>,
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
    /// The reader task, stopped when the connection is finished.
    pub(super) reader: OnceLock<tokio::task::AbortHandle>,
    /// Reads that returned data, and writes that sent some (for liveness).
    pub(super) received: AtomicU64,
    pub(super) sent: AtomicU64,
    /// The reader task is handling frames (running a block inline, which may block on a
    /// host function) rather than waiting for bytes: the partner's silence cannot be told.
    pub(super) reader_busy: std::sync::atomic::AtomicBool,
}

impl Conn {
    fn link(&self) -> Option<Link> {
        self.link.get().and_then(WeakLink::upgrade)
    }

    /// Appends a frame with `payload` to the outgoing bytes.
    pub(super) fn push(&self, payload: &[u8]) {
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

    /// Writes what it can of the outgoing bytes now; the writer task does the rest (all of it,
    /// over a stream that is not plain TCP).
    pub(super) fn write_now(&self) {
        let mut out = self.out.lock();
        if out.writing || out.bytes.is_empty() {
            return;
        }
        out.urgent = false;
        let Some(tcp) = &self.tcp else {
            self.write_stream_now(&mut out);
            return;
        };
        match tcp.try_write(&out.bytes) {
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

    /// Writes what a stream that is not plain TCP takes at once (one poll, with a no-op waker,
    /// as `try_write` does for TCP); the writer task does the rest.
    fn write_stream_now(&self, out: &mut Outgoing) {
        let Some(stream) = &self.stream else { return };
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
            out.bytes.clear();
            out.closing = true;
            self.broken(network(format!("writing to the partner failed: {e}")));
            return;
        }
        if written > 0 {
            self.sent.fetch_add(1, Ordering::Relaxed);
        }
        out.bytes.drain(..written);
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
        drop(self.admission.lock().take());
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
pub(super) const EARLY_WRITE: usize = 512;

thread_local! {
    /// While a reader handles the frames of one read: the connections that have messages to
    /// write at the end of it (blocks run inline answer in the same write).
    static BATCH: std::cell::RefCell<Option<Vec<Arc<Conn>>>> = const { std::cell::RefCell::new(None) };
}

/// Handles every complete frame in `dec`, writing what they produce at the end; false when
/// the connection is finished.
pub(super) fn handle_frames(conn: &Conn, dec: &mut FrameDecoder) -> bool {
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
pub(super) async fn read_loop(conn: Arc<Conn>, mut read: impl AsyncRead + Unpin, mut dec: FrameDecoder) {
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

pub(super) async fn write_loop(conn: Arc<Conn>, heartbeat: Duration, partner_timeout: Duration) {
    let mut closed = conn.closed.subscribe();
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
                        conn.broken(network(format!(
                            "the partner sent nothing, not even a heartbeat, for {silence:?}"
                        )));
                        return;
                    }
                }
                timer.as_mut().reset(liveness.next_timer().into());
            }
        }
        // A stream that is not plain TCP: the writer writes everything.
        if let Some(stream) = &conn.stream {
            match write_stream(&conn, stream, partner_timeout).await {
                Step::Closed => {
                    let _ = tokio::time::timeout(partner_timeout, closed.wait_for(|c| *c)).await;
                    conn.finished();
                    return;
                }
                Step::Failed(e) => {
                    conn.broken(network(format!("writing to the partner failed: {e}")));
                    return;
                }
                Step::Done | Step::Wait | Step::Again => continue,
            }
        }
        // Finish the write the producers could not complete.
        let Some(tcp) = &conn.tcp else { continue };
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
                biased;
                ready = tcp.writable() => {
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

/// Writes everything queued to a stream that is not plain TCP, then flushes it; shuts it
/// down after the close frame.
async fn write_stream(conn: &Conn, stream: &Mutex<StreamWrite>, partner_timeout: Duration) -> Step {
    let mut buf = Vec::new();
    loop {
        let closing = {
            let mut out = conn.out.lock();
            if out.bytes.is_empty() {
                out.writing = false;
                if !out.closing {
                    return Step::Done;
                }
                true
            } else {
                out.urgent = false;
                out.writing = true;
                std::mem::swap(&mut buf, &mut out.bytes);
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
                buf.clear();
            }
            Ok(Err(e)) => return Step::Failed(e),
            Err(_) => {
                return Step::Failed(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the partner read nothing for {partner_timeout:?}"),
                ));
            }
        }
    }
}

pub(super) fn finish_write(conn: &Conn) -> Step {
    let Some(tcp) = &conn.tcp else { return Step::Done };
    let mut out = conn.out.lock();
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
