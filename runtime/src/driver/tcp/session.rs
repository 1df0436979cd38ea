//! Resumable sessions (the book's "Connections over TCP", "Reconnection"): what a pair keeps
//! so that a broken connection can be replaced without the engines noticing.
//!
//! **The idea.** A resumable connection is a reliable stream of frames that outlives its
//! sockets. Every frame after the handshake is numbered (in each direction, from 1); each side
//! keeps the frames it sent until the partner confirms it received them (a `RECEIVED` frame
//! every [`CONFIRM_EVERY`] frames, and with the heartbeats), and counts the frames it
//! received. When the connection breaks, the connecting side redials. Its `Hello` names the
//! session (id and secret token), says how many frames this side received and from which
//! frame on it re-sends, and the re-sent frames follow it at once: every frame the listener
//! has not confirmed (the listener passes over those it already has). A resuming side sends
//! no `Ack` (its token proves it; see the handshake in [`super`]): the listener answers with
//! its `Ack` holding its own count, followed by its frames from the count the connecting side
//! named, and reads on without waiting. So the first frames after a resume cost half a round
//! trip beyond the new socket, and every message — a block's work, a vote,
//! a commit or abort decision — arrives exactly once and in order, and the engines on both
//! sides see one unbroken connection: a transaction in flight at the cut just takes longer,
//! a prepared child keeps waiting for its decision, and nothing is applied twice or lost.
//! Only when the resume window passes (or the partner says it no longer knows the session)
//! is the pair given up as before.
//!
//! **Who may resume.** The listener makes the session's id and token (128 random bits each,
//! from the host's clock: the thread's cryptographic generator, or a simulation's seed) and
//! gives them in its handshake answer. A resume must present both; a wrong token, an unknown
//! or expired session, another protocol or the other role is refused with the reason, and
//! the session it named is not disturbed.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use super::network::{Address, Io};
use super::options::*;
use crate::core::error::Error;
use crate::engine::Side;
use crate::wire::{FrameDecoder, Reader, WireError, Writer};

/// A confirmation goes out once this many frames arrived since the last one.
pub(super) const CONFIRM_EVERY: u64 = 32;

/// At most this many bytes of re-sent frames go out with a resume's handshake; the rest
/// follows through the connection's writer once the session is back. Small enough that the
/// socket takes them without the peer reading (the peer may be writing its own at the same
/// moment), large enough for the frames of the calls waiting at a cut.
pub(super) const RESEND_WITH_HANDSHAKE: usize = 16 * 1024;

/// A session's id and its secret.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct Keys {
    pub(super) id: u128,
    pub(super) token: u128,
}

impl Keys {
    /// New keys from the host's clock.
    pub(super) fn new(clock: &crate::core::tx::Clock) -> Keys {
        let draw = || (u128::from(clock.random()) << 64) | u128::from(clock.random());
        Keys { id: draw(), token: draw() }
    }

    /// The id as people read it (the first 8 bytes: enough to tell sessions apart in a log).
    pub(super) fn name(id: u128) -> String {
        format!("{:016x}", (id >> 64) as u64)
    }
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a secret: never printed.
        f.debug_struct("Keys").field("id", &Keys::name(self.id)).finish_non_exhaustive()
    }
}

/// What a side says about sessions in its `Hello`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Offer {
    /// Nothing: the connection ends with its socket.
    None,
    /// This side resumes broken connections (the listener then grants a session).
    Resumable,
    /// This connection resumes `keys`' session; this side received `received` frames, and
    /// re-sends, right after its `Ack`, every frame from number `first` on.
    Resume { keys: Keys, received: u64, first: u64 },
}

/// What a side says about sessions in its `Ack`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Answer {
    /// Nothing.
    None,
    /// The listener grants a resumable session with `keys`.
    Grant(Keys),
    /// The listener resumed the session; it received `received` frames, and re-sends, right
    /// after its `Ack`, every frame the other side did not receive.
    Resumed { received: u64 },
}

const RESUMABLE: u8 = 1;
const RESUME: u8 = 2;
const GRANT: u8 = 1;
const RESUMED: u8 = 2;

fn write_keys(w: &mut Writer, keys: &Keys) {
    for part in [keys.id >> 64, keys.id, keys.token >> 64, keys.token] {
        w.fixed_u64(part as u64);
    }
}

fn read_keys(r: &mut Reader<'_>) -> Result<Keys, WireError> {
    let mut part = || r.fixed_u64("a session key").map(u128::from);
    let id = (part()? << 64) | part()?;
    let token = (part()? << 64) | part()?;
    Ok(Keys { id, token })
}

impl Offer {
    pub(super) fn write(&self, w: &mut Writer) {
        match self {
            // Nothing is written: a plain connection's handshake is the same as without sessions.
            Offer::None => {}
            Offer::Resumable => w.byte(RESUMABLE),
            Offer::Resume { keys, received, first } => {
                w.byte(RESUME);
                write_keys(w, keys);
                w.varint(*received);
                w.varint(*first);
            }
        }
    }

    /// Reads an offer; a `Hello` without one offers nothing.
    pub(super) fn read(r: &mut Reader<'_>) -> Result<Offer, WireError> {
        if r.remaining() == 0 {
            return Ok(Offer::None);
        }
        Ok(match r.byte("the session offer")? {
            RESUMABLE => Offer::Resumable,
            RESUME => {
                let keys = read_keys(r)?;
                let received = r.varint()?;
                Offer::Resume { keys, received, first: r.varint()? }
            }
            _ => Offer::None,
        })
    }
}

impl Answer {
    pub(super) fn write(&self, w: &mut Writer) {
        match self {
            Answer::None => {}
            Answer::Grant(keys) => {
                w.byte(GRANT);
                write_keys(w, keys);
            }
            Answer::Resumed { received } => {
                w.byte(RESUMED);
                w.varint(*received);
            }
        }
    }

    pub(super) fn read(r: &mut Reader<'_>) -> Result<Answer, WireError> {
        if r.remaining() == 0 {
            return Ok(Answer::None);
        }
        Ok(match r.byte("the session answer")? {
            GRANT => Answer::Grant(read_keys(r)?),
            RESUMED => Answer::Resumed { received: r.varint()? },
            _ => Answer::None,
        })
    }
}

/// What the connecting side needs to redial.
pub(super) struct Redial {
    pub(super) addr: Address,
    pub(super) options: TcpOptions,
    pub(super) spec: &'static PairSpec,
    pub(super) side: Side,
    pub(super) clock: Arc<crate::core::tx::Clock>,
}

/// A resumable connection's session.
pub(super) struct Session {
    pub(super) keys: Keys,
    pub(super) policy: ReconnectPolicy,
    /// On the connecting side: how to redial.
    pub(super) redial: Option<Redial>,
    /// On the listening side: the listener's sessions, left when the session ends.
    pub(super) registry: Option<Weak<Sessions>>,
    /// Which socket may read, and what has been read: the reader holds this lock while it
    /// handles frames, so a resume that takes it knows the count is final for the old socket.
    pub(super) reading: Mutex<Reading>,
    /// The outage in progress, if any.
    pub(super) outage: Mutex<Option<Outage>>,
    /// Held while a new socket is being attached: one resume at a time.
    pub(super) resuming: Arc<tokio::sync::Mutex<()>>,
}

impl Session {
    pub(super) fn new(
        keys: Keys,
        policy: ReconnectPolicy,
        redial: Option<Redial>,
        registry: Option<Weak<Sessions>>,
    ) -> Session {
        Session {
            keys,
            policy,
            redial,
            registry,
            reading: Mutex::new(Reading { socket: 0, skip: 0, received: 0, confirmed: 0 }),
            outage: Mutex::new(None),
            resuming: Arc::new(tokio::sync::Mutex::new(())),
        }
    }
}

pub(super) struct Reading {
    /// The socket (by number) whose reader may handle frames.
    pub(super) socket: u64,
    /// Frames to pass over at the start of a resumed socket: the partner re-sent them, and
    /// they had arrived before.
    pub(super) skip: u64,
    /// Frames received.
    pub(super) received: u64,
    /// The count last confirmed to the partner.
    pub(super) confirmed: u64,
}

/// A broken connection being resumed.
pub(super) struct Outage {
    /// When it broke (the resume window runs from then).
    pub(super) since: tokio::time::Instant,
    /// What broke it.
    pub(super) cause: Error,
    /// The task that redials, or gives the session up when the window passes.
    pub(super) task: Option<tokio::task::AbortHandle>,
}

/// Frames sent and not yet confirmed by the partner, kept to be re-sent after a resume.
#[derive(Default)]
pub(super) struct Replay {
    /// The bytes of frames handed to a socket, not yet confirmed.
    pub(super) sent: Vec<u8>,
    /// The length (header included) of every frame not yet confirmed, sent or still queued,
    /// oldest first.
    pub(super) frames: VecDeque<usize>,
    /// Frames confirmed so far.
    pub(super) confirmed: u64,
    /// Frames queued so far (confirmed or not).
    pub(super) queued: u64,
    /// Confirmed bytes not yet in `sent` (a write in progress reached the partner before it
    /// was recorded): dropped as they are recorded.
    pub(super) owed: usize,
}

impl Replay {
    /// `bytes` were handed to the socket.
    pub(super) fn sent(&mut self, bytes: &[u8]) {
        let owed = self.owed.min(bytes.len());
        self.owed -= owed;
        self.sent.extend_from_slice(&bytes[owed..]);
    }

    /// Every frame not confirmed goes back to the queue, before the frames `queued` and not
    /// yet sent, once the partner said it received `count` frames (if it said): a resumed
    /// connection sends them again, in order, like new ones. Returns the number of the first.
    pub(super) fn requeue(&mut self, queued: &mut Vec<u8>, count: Option<u64>) -> Result<u64, String> {
        if let Some(count) = count {
            self.confirm(count)?;
        }
        let mut all = std::mem::take(&mut self.sent);
        all.append(queued);
        // Confirmed bytes not recorded as sent yet are at the front of the queue.
        let owed = self.owed.min(all.len());
        all.drain(..owed);
        self.owed = 0;
        *queued = all;
        Ok(self.confirmed + 1)
    }

    /// A frame of `len` bytes (header included) was queued.
    pub(super) fn queued(&mut self, len: usize) {
        self.frames.push_back(len);
        self.queued += 1;
    }

    /// The partner received `count` frames: forget them. An error when it claims more than
    /// were queued.
    pub(super) fn confirm(&mut self, count: u64) -> Result<(), String> {
        if count > self.queued {
            return Err(format!("the partner confirmed {count} frames, but only {} were sent", self.queued));
        }
        let mut bytes = 0;
        while self.confirmed < count {
            bytes += self.frames.pop_front().unwrap_or(0);
            self.confirmed += 1;
        }
        let now = bytes.min(self.sent.len());
        self.owed += bytes - now;
        self.sent.drain(..now);
        if self.sent.capacity() > 1 << 20 && self.sent.len() < 64 * 1024 {
            self.sent.shrink_to(64 * 1024);
        }
        Ok(())
    }
}

/// A connection whose session can be resumed (the connection, as the registry sees it).
pub(super) trait Resumable: Send + Sync {
    /// The session's secret token.
    fn token(&self) -> u128;
    /// Prepares to move the session onto a new socket (see `Conn::begin_resume`).
    fn begin_resume(&self) -> Result<(tokio::sync::OwnedMutexGuard<()>, u64), Error>;
    /// What to re-send (see `Conn::resend`).
    fn resend(&self, theirs: Option<u64>, now: usize) -> Result<(u64, Vec<u8>), Error>;
    /// Moves the session onto the socket of `io` (see `Conn::reattach`).
    fn reattach(&self, io: Io, dec: FrameDecoder, theirs: Option<u64>, skip: u64) -> Result<(), Error>;
}

/// The resumable sessions a listener serves, by id; and the ids of those given up lately, to
/// tell "expired" from "unknown".
#[derive(Default)]
pub(super) struct Sessions {
    live: Mutex<HashMap<u128, Weak<dyn Resumable>>>,
    /// Sessions granted whose connection has not started yet (the listener is still making
    /// the endpoint): a resume of one is told to try again.
    starting: Mutex<std::collections::HashSet<u128>>,
    expired: Mutex<VecDeque<u128>>,
}

/// A session granted and not yet started: leaves the registry's `starting` set when dropped.
pub(super) struct Starting {
    sessions: Arc<Sessions>,
    id: u128,
}

impl Drop for Starting {
    fn drop(&mut self) {
        self.sessions.starting.lock().remove(&self.id);
    }
}

/// Why a session cannot be resumed now.
pub(super) enum NotFound {
    /// Never again (a wrong token, an unknown or expired session).
    Never(String),
    /// Not yet: try again.
    NotYet(String),
}

/// How many given-up session ids a listener remembers.
const EXPIRED_KEPT: usize = 1024;

impl Sessions {
    /// Session `id` was granted; its connection starts soon.
    pub(super) fn starting(self: &Arc<Self>, id: u128) -> Starting {
        self.starting.lock().insert(id);
        Starting { sessions: self.clone(), id }
    }

    pub(super) fn insert(&self, id: u128, conn: Weak<dyn Resumable>) {
        self.live.lock().insert(id, conn);
    }

    /// The session ended: it can no longer be resumed.
    pub(super) fn ended(&self, id: u128) {
        if self.live.lock().remove(&id).is_some() {
            let mut expired = self.expired.lock();
            if expired.len() == EXPIRED_KEPT {
                expired.pop_front();
            }
            expired.push_back(id);
        }
    }

    /// The connection of session `keys`, or why it cannot be resumed.
    pub(super) fn find(&self, keys: &Keys) -> Result<Arc<dyn Resumable>, NotFound> {
        let name = Keys::name(keys.id);
        let found = self.live.lock().get(&keys.id).and_then(Weak::upgrade);
        match found {
            Some(conn) => {
                let token = conn.token();
                // Compared in constant time: the time taken says nothing about the token.
                let differ = (token ^ keys.token).count_ones();
                if differ == 0 {
                    Ok(conn)
                } else {
                    Err(NotFound::Never(format!("wrong resume token for session {name}")))
                }
            }
            None if self.starting.lock().contains(&keys.id) => {
                Err(NotFound::NotYet(format!("session {name} is still starting on the listener; try again")))
            }
            None if self.expired.lock().contains(&keys.id) => Err(NotFound::Never(format!(
                "session {name} has expired (its resume window passed, or its endpoint stopped)"
            ))),
            None => Err(NotFound::Never(format!(
                "unknown session {name} (the listener restarted, or the session never existed)"
            ))),
        }
    }
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").field("live", &self.live.lock().len()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::Replay;

    /// Queues frames `1..=n` of 3 bytes each (`[k, k, k]`, with no header: the replay only
    /// counts lengths) into `queued`.
    fn queue(replay: &mut Replay, queued: &mut Vec<u8>, from: u8, to: u8) {
        for k in from..=to {
            queued.extend_from_slice(&[k; 3]);
            replay.queued(3);
        }
    }

    #[test]
    fn a_resume_queues_what_was_not_confirmed_before_what_was_not_sent() {
        let (mut replay, mut queued) = (Replay::default(), Vec::new());
        queue(&mut replay, &mut queued, 1, 4);
        // Frames 1 to 3 reach a socket; the partner confirms 1.
        replay.sent(&queued[..9]);
        queued.drain(..9);
        replay.confirm(1).expect("a count within what was sent");
        queue(&mut replay, &mut queued, 5, 5);
        // The partner says it received 2: frames 3, 4 and 5 go again, in order.
        assert_eq!(replay.requeue(&mut queued, Some(2)), Ok(3));
        assert_eq!(queued, [3, 3, 3, 4, 4, 4, 5, 5, 5]);
        assert!(replay.sent.is_empty());
        // Written again, they are kept until confirmed, like new ones.
        replay.sent(&queued);
        assert_eq!(replay.requeue(&mut Vec::new(), None), Ok(3));
    }

    #[test]
    fn confirmed_bytes_still_being_written_are_not_sent_again() {
        let (mut replay, mut queued) = (Replay::default(), Vec::new());
        queue(&mut replay, &mut queued, 1, 3);
        // A write of frames 1 and 2 is in progress (still queued) when the partner confirms
        // them: they are owed.
        replay.confirm(2).expect("a count within what was queued");
        assert_eq!(replay.requeue(&mut queued, None), Ok(3));
        assert_eq!(queued, [3, 3, 3]);
    }

    #[test]
    fn a_partner_that_claims_more_than_was_sent_is_an_error() {
        let (mut replay, mut queued) = (Replay::default(), Vec::new());
        queue(&mut replay, &mut queued, 1, 2);
        let error = replay.requeue(&mut queued, Some(5)).expect_err("more than was sent");
        assert!(error.contains("confirmed 5 frames, but only 2 were sent"), "{error}");
    }
}
