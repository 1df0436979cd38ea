//! Resuming a broken connection ([`super::session`]): the connecting side's redials with
//! jittered backoff, either side's resume window, and moving a session onto a new socket.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::conn::{Conn, Wire, handle, read_loop};
use super::network::Io;
use super::open::open;
use super::options::*;
use super::session::{Answer, Offer, RESEND_WITH_HANDSHAKE, Redial, Resumable};
use super::tls::Role;
use crate::core::error::Error;
use crate::wire::FrameDecoder;

/// How a refusal to resume a session begins: the session cannot be resumed (the partner
/// restarted, the session expired, a wrong token), so redialing again is pointless.
pub(super) const CANNOT: &str = "cannot resume the session:";

/// The outage of `conn`: redials (connecting side) or waits for the partner to come back
/// (listening side) until the resume window passes, then gives the pair up.
pub(super) async fn recover(conn: Arc<Conn>) {
    let Some(session) = &conn.session else { return };
    let (since, cause) = match &*session.outage.lock() {
        Some(outage) => (outage.since, outage.cause.clone()),
        None => return,
    };
    let window = session.policy.resume_window;
    let deadline = since + window;
    let expired = || {
        network(format!(
            "the partner did not come back within the resume window of {window:?} (the connection broke: {})",
            reason(&cause)
        ))
    };
    let Some(redial) = &session.redial else {
        tokio::time::sleep_until(deadline).await;
        conn.broken(expired());
        return;
    };
    let mut attempt = 0u32;
    loop {
        attempt = attempt.saturating_add(1);
        let wait = session.policy.delay(attempt, redial.clock.unit());
        if tokio::time::Instant::now() + wait >= deadline {
            tokio::time::sleep_until(deadline).await;
            conn.broken(expired());
            return;
        }
        if !wait.is_zero() {
            // (A zero sleep would still wait for the timer's next tick, up to a millisecond.)
            tokio::time::sleep(wait).await;
        }
        conn.state.send_replace(ConnectionState::Reconnecting { attempt });
        tracing::info!(attempt, addr = %redial.addr, "redialing the partner");
        match tokio::time::timeout_at(deadline, redial_once(&conn, redial)).await {
            Ok(Ok(())) => return,
            Ok(Err(Error::HandshakeRefused { reason })) if reason.contains(CANNOT) => {
                conn.broken(network(format!("the partner refused to resume the session: {reason}")));
                return;
            }
            Ok(Err(error)) => tracing::debug!(attempt, %error, "redialing failed"),
            Err(_) => {
                conn.broken(expired());
                return;
            }
        }
    }
}

fn reason(error: &Error) -> String {
    match error {
        Error::Network { message } => message.clone(),
        other => other.to_string(),
    }
}

/// One redial: connect, TLS when configured, the handshake resuming the session; on success
/// the session goes on over the new socket.
async fn redial_once(conn: &Conn, redial: &Redial) -> Result<(), Error> {
    let options = &redial.options;
    let stream = options
        .network()
        .connect(redial.addr.clone())
        .await
        .map_err(|e| network(format!("could not connect to the partner at {}: {e}", redial.addr)))?;
    let (guard, received) = conn.begin_resume()?;
    let keys = conn.session.as_ref().map(|s| s.keys).ok_or_else(|| network("not a resumable connection"))?;
    let nonce = redial.clock.random();
    // Every frame the listener has not confirmed follows the Hello at once (the listener
    // passes over those it has): no wait for its count first. What does not fit in the
    // handshake's write follows through the writer once the session is back.
    let (first, resend) = conn.resend(None, RESEND_WITH_HANDSHAKE)?;
    let offer = Offer::Resume { keys, received, first };
    let opened = open(
        stream.into(),
        redial.spec,
        redial.side,
        options,
        Role::Connecting,
        nonce,
        offer,
        &resend,
        |_| Ok((Answer::None, Vec::new())),
    )
    .await?;
    let Answer::Resumed { received: theirs } = opened.answer else {
        return Err(refused(format!("{CANNOT} the listener did not resume it")));
    };
    // The listener re-sent from our count on: nothing to pass over.
    conn.reattach(opened.io, opened.dec, Some(theirs), 0)?;
    drop(guard);
    Ok(())
}

impl Resumable for Conn {
    fn token(&self) -> u128 {
        self.session.as_ref().map_or(0, |s| s.keys.token)
    }

    fn begin_resume(&self) -> Result<(tokio::sync::OwnedMutexGuard<()>, u64), Error> {
        Conn::begin_resume(self)
    }

    fn resend(&self, theirs: Option<u64>, now: usize) -> Result<(u64, Vec<u8>), Error> {
        Conn::resend(self, theirs, now)
    }

    fn reattach(&self, io: Io, dec: FrameDecoder, theirs: Option<u64>, skip: u64) -> Result<(), Error> {
        Conn::reattach(self, io, dec, theirs, skip)
    }
}

impl Conn {
    /// Prepares to move the session onto a new socket: one resume at a time; the current
    /// socket (if this side had not noticed the break) is given up; its reader stops
    /// counting. Returns the count of frames received, for the handshake.
    pub(super) fn begin_resume(&self) -> Result<(tokio::sync::OwnedMutexGuard<()>, u64), Error> {
        let Some(session) = &self.session else {
            return Err(refused(format!("{CANNOT} it is not resumable")));
        };
        let guard = session
            .resuming
            .clone()
            .try_lock_owned()
            .map_err(|_| refused("another connection is resuming this session at the moment"))?;
        if *self.closed.borrow() {
            return Err(refused(format!("{CANNOT} it has ended")));
        }
        let socket = self.socket.load(Ordering::Relaxed);
        self.io_failed(socket, network("the partner reconnected"));
        let mut reading = session.reading.lock();
        reading.socket = u64::MAX;
        Ok((guard, reading.received))
    }

    /// Puts every frame not confirmed (after the partner said it received `theirs`, if it
    /// said) back in the queue, before those not sent yet, for a new socket; returns the
    /// number of the first, and the first `now` bytes of the queue, taken to go out with the
    /// handshake (they count as sent). A partner that claims more than was sent broke the
    /// protocol: the pair breaks.
    pub(super) fn resend(&self, theirs: Option<u64>, now: usize) -> Result<(u64, Vec<u8>), Error> {
        let mut guard = self.out.lock();
        let out = &mut *guard;
        let first = match out.replay.as_mut() {
            Some(replay) => replay.requeue(&mut out.bytes, theirs),
            None => Ok(1),
        };
        match first {
            Ok(first) => {
                let n = now.min(out.bytes.len());
                let bytes = out.bytes[..n].to_vec();
                out.written(n);
                Ok((first, bytes))
            }
            Err(message) => {
                drop(guard);
                let error = deviation(message);
                self.broken(error.clone());
                Err(error)
            }
        }
    }

    /// Moves the session onto the socket of `io` (its handshake done, the first frames to
    /// re-send written with it; `dec` holds what arrived after it, whose first `skip` frames
    /// this side already has): forgets the frames the partner received (`theirs`, when it
    /// said so in the handshake), writes the rest of the queue, handles what arrived, and
    /// reads on.
    pub(super) fn reattach(
        &self,
        io: Io,
        mut dec: FrameDecoder,
        theirs: Option<u64>,
        skip: u64,
    ) -> Result<(), Error> {
        let Some(session) = &self.session else { return Err(network("not a resumable connection")) };
        dec.set_max(self.max_frame);
        let (read, wire) = Wire::split(io);
        let socket = {
            let mut out = self.out.lock();
            if *self.closed.borrow() {
                return Err(network("the session ended while it was resumed"));
            }
            if let (Some(theirs), Some(replay)) = (theirs, out.replay.as_mut())
                && let Err(message) = replay.confirm(theirs)
            {
                drop(out);
                let error = deviation(message);
                self.broken(error.clone());
                return Err(error);
            }
            out.wire = wire;
            out.writing = false;
            out.urgent = true;
            self.socket.fetch_add(1, Ordering::Relaxed) + 1
        };
        {
            let mut reading = session.reading.lock();
            reading.socket = socket;
            reading.skip = skip;
        }
        let me = self.me.upgrade().ok_or_else(|| network("the connection ended"))?;
        // Taken first: if the new socket fails at once, that is a new outage.
        let outage = session.outage.lock().take();
        let down_for = outage.as_ref().map(|o| o.since.elapsed());
        self.state.send_replace(ConnectionState::Connected);
        self.resumes.fetch_add(1, Ordering::Relaxed);
        self.bytes_in.fetch_add(dec.pending() as u64, Ordering::Relaxed);
        tracing::info!(peer = ?self.peer, ?down_for, "the session resumed");
        self.write_now();
        // What came with the handshake (a resuming partner's frames follow its Hello) is
        // handled here and now: the first answer goes out without waiting for a new task.
        self.reader_busy.store(true, Ordering::Relaxed);
        let going = handle(self, &mut dec, socket);
        self.reader_busy.store(false, Ordering::Relaxed);
        if going {
            let span = self.span.clone();
            let reader =
                tokio::spawn(tracing::Instrument::instrument(read_loop(me, read, dec, socket), span))
                    .abort_handle();
            if let Some(old) = self.reader.lock().replace(reader) {
                old.abort();
            }
        }
        self.wake_writer.notify_one();
        self.room.notify_waiters();
        // Last: on the connecting side this is the task running this code.
        if let Some(task) = outage.and_then(|o| o.task) {
            task.abort();
        }
        Ok(())
    }
}

impl std::fmt::Debug for Wire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Wire::Tcp(_) => "Tcp",
            Wire::Stream(_) => "Stream",
            Wire::Down => "Down",
        })
    }
}
