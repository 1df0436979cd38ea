//! The handshake: preamble, `Hello`, nonce echo, and the named refusals; the frames it
//! reads and writes.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::options::*;
use super::session::{Answer, Offer};
use super::tls::{Role, TLS_TO_PLAIN, looks_like_tls, tls_error};
use crate::core::error::Error;
use crate::engine::Side;
use crate::wire::{FrameDecoder, Reader, WireError, Writer};

// ---------------------------------------------------------------- handshake

pub(super) fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

pub(super) fn text_frame(kind: u8, text: &str) -> Vec<u8> {
    let mut w = Writer::new();
    w.byte(kind);
    w.text(text);
    frame(&w.finish())
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
}

/// The other side's `Hello`.
pub(super) struct Hello {
    protocol: String,
    fingerprint: u64,
    side: u64,
    endpoint: String,
    nonce: u64,
    /// What the peer says about sessions.
    pub(super) offer: Offer,
}

/// A handshake done: the decoder holding whatever arrived after it, and what the peer
/// answered about sessions in its `Ack` (its offer went to the `answer` function).
pub(super) struct Shook {
    pub(super) dec: FrameDecoder,
    pub(super) answer: Answer,
}

pub(super) fn parse_hello(payload: &[u8]) -> Result<Hello, WireError> {
    let mut r = Reader::new(payload);
    r.byte("the frame kind")?;
    let mut hello = Hello {
        protocol: r.text()?,
        fingerprint: r.varint()?,
        side: r.varint()?,
        endpoint: r.text()?,
        nonce: r.varint()?,
        offer: Offer::None,
    };
    hello.offer = Offer::read(&mut r)?;
    r.finish()?;
    Ok(hello)
}

pub(super) fn parse_text(payload: &[u8]) -> Result<String, WireError> {
    let mut r = Reader::new(payload);
    r.byte("the frame kind")?;
    let text = r.text()?;
    r.finish()?;
    Ok(text)
}

/// Reads the next handshake frame.
pub(super) async fn read_frame(
    stream: &mut (impl AsyncRead + AsyncWrite + Unpin),
    dec: &mut FrameDecoder,
    idle: Duration,
) -> Result<Vec<u8>, Error> {
    let mut buf = [0u8; 4096];
    loop {
        match dec.next_frame() {
            Ok(Some(f)) => return Ok(f),
            Ok(None) => {}
            Err(e) => return Err(refused(format!("malformed handshake: {e}"))),
        }
        let n = silent_for(idle, stream.read(&mut buf))
            .await?
            .map_err(|e| network(format!("the handshake failed: {e}")))?;
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

/// `read`, unless the peer stays silent for `idle`: a named refusal then.
async fn silent_for<T>(idle: Duration, read: impl Future<Output = T>) -> Result<T, Error> {
    tokio::time::timeout(idle, read)
        .await
        .map_err(|_| refused(format!("the peer sent nothing for {idle:?} during the handshake")))
}

/// Tells the peer why the handshake is refused and stops writing; returns the error for this
/// side.
pub(super) async fn refuse(stream: &mut (impl AsyncRead + AsyncWrite + Unpin), error: Error) -> Error {
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
pub(super) fn check_hello(hello: &Hello, spec: &PairSpec, side: Side) -> Result<(), String> {
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

/// What one side brings to a handshake.
pub(super) struct Terms<'a> {
    pub(super) spec: &'a PairSpec,
    pub(super) side: Side,
    pub(super) nonce: u64,
    pub(super) idle: Duration,
    pub(super) heard: Option<&'a std::sync::atomic::AtomicBool>,
    pub(super) tls: Option<Role>,
    /// What this side says about sessions in its `Hello`.
    pub(super) offer: Offer,
    /// What follows this side's `Hello` in the same write (a resume's re-sent frames).
    pub(super) follow: &'a [u8],
}

/// Runs the handshake; `answer` decides, from the peer's session offer, what this side's
/// `Ack` says about sessions and what follows it (or refuses the connection).
///
/// A side that resumes a session sends no `Ack`, and its peer reads none: the session's
/// secret token proves who it is, and the listener answers and goes on at once (half a round
/// trip sooner). Over plain TCP the nonce echo it does without proves nothing an observer of
/// the token could not fake anyway; over TLS, TLS proves the peer is live.
pub(super) async fn handshake(
    stream: &mut (impl AsyncRead + AsyncWrite + Unpin),
    terms: Terms<'_>,
    answer: impl FnOnce(&Offer) -> Result<(Answer, Vec<u8>), Error>,
) -> Result<Shook, Error> {
    let Terms { spec, side, nonce, idle, heard, tls, offer, follow } = terms;
    let resuming = matches!(offer, Offer::Resume { .. });
    // Over TLS, an I/O error may be the peer refusing this side's certificate (TLS 1.3
    // reports it on the first read after the TLS handshake).
    let failed = |e: io::Error| match tls.and_then(|role| tls_error(&e, role)) {
        Some(named) => named,
        None => network(format!("the handshake failed: {e}")),
    };
    let mut hello = Writer::new();
    hello.byte(kind::HELLO);
    hello.text(spec.protocol);
    hello.varint(spec.fingerprint);
    hello.varint(u64::from(side));
    hello.text(spec.endpoints[side as usize]);
    hello.varint(nonce);
    offer.write(&mut hello);
    let mut first = Vec::from(MAGIC);
    first.extend_from_slice(&WIRE_VERSION.to_le_bytes());
    first.extend_from_slice(&frame(&hello.finish()));
    first.extend_from_slice(follow);
    stream.write_all(&first).await.map_err(failed)?;
    stream.flush().await.map_err(failed)?;

    let mut preamble = [0u8; 8];
    let read = match silent_for(idle, stream.read_exact(&mut preamble)).await {
        Ok(read) => read,
        Err(silent) => return Err(refuse(stream, silent).await),
    };
    if let Err(e) = read {
        return Err(if e.kind() == io::ErrorKind::UnexpectedEof {
            network("the peer closed the connection during the handshake")
        } else {
            failed(e)
        });
    }
    if let Some(heard) = heard {
        heard.store(true, std::sync::atomic::Ordering::Release);
    }
    if tls.is_none() && looks_like_tls(&preamble) {
        return Err(refuse(stream, refused(TLS_TO_PLAIN)).await);
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
    let payload = match read_frame(stream, &mut dec, idle).await {
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
    let (mine, after) = match answer(&peer.offer) {
        Ok(mine) => mine,
        Err(e) => return Err(refuse(stream, e).await),
    };
    if !resuming {
        let mut ack = Writer::new();
        ack.byte(kind::ACK);
        ack.varint(peer.nonce);
        mine.write(&mut ack);
        // What a resumed session re-sends follows the Ack in the same write.
        let mut out = frame(&ack.finish());
        out.extend_from_slice(&after);
        stream.write_all(&out).await.map_err(failed)?;
        stream.flush().await.map_err(failed)?;
    }
    if matches!(peer.offer, Offer::Resume { .. }) {
        // The peer resumes: it sends no Ack, and what follows its Hello is its frames.
        return Ok(Shook { dec, answer: Answer::None });
    }

    let payload = match read_frame(stream, &mut dec, idle).await {
        Ok(p) => p,
        Err(e) => return Err(refuse(stream, e).await),
    };
    let answer = match payload.first() {
        Some(&kind::ACK) => {
            let mut r = Reader::new(&payload[1..]);
            let echo =
                r.varint().and_then(|v| Answer::read(&mut r).and_then(|a| r.finish().map(|()| (v, a))));
            match echo {
                Ok((echo, answer)) if echo == nonce => answer,
                Ok((echo, _)) => {
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
    };
    Ok(Shook { dec, answer })
}

/// Writes the refusal, stops writing, and reads what the peer sends for a moment (at most
/// half a second and 64 KiB) before closing.
pub(super) async fn refuse_over_limit(mut stream: super::network::Socket, reason: &str) {
    let _ = stream.write_all(&refusal(reason)).await;
    let _ = stream.shutdown().await;
    let drain = async {
        let mut buf = [0u8; 4096];
        let mut total = 0;
        while total < 64 * 1024 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(500), drain).await;
}

/// A preamble and a `Refuse` frame: what a refused peer reads before the socket closes.
pub(super) fn refusal(reason: &str) -> Vec<u8> {
    let mut bytes = Vec::from(MAGIC);
    bytes.extend_from_slice(&WIRE_VERSION.to_le_bytes());
    let mut w = Writer::new();
    w.byte(kind::REFUSE);
    w.text(reason);
    let payload = w.finish();
    bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&payload);
    bytes
}
