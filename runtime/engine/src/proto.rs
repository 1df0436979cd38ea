//! The engine's messages on the wire: one message per frame payload, in the compact binary
//! encoding of [`crate::wire`], values in the driver's [`WireValue`] codec.
//!
//! A message is a tag byte, the transaction (its origin, a random process tag, as 8
//! little-endian bytes, and its number as a varint), then the fields
//! of its kind in a fixed order. Counts are checked against what the rest of the input could
//! hold before anything is allocated; every failure is a [`WireError`], never a panic.
//! Decoding checks only the encoding: whether a message fits the protocol and the
//! transaction's state is the engine's business (a misfit there is a protocol deviation).

use crate::engine::{Msg, PeeredData};
use crate::types::{Exception, ExceptionKind, Priority, TxId};
use crate::wire::{Reader, WireError, WireValue, Writer};

const WORK: u8 = 1;
const DONE: u8 = 2;
const RAISE: u8 = 3;
const ABORTED: u8 = 4;
const PREPARE: u8 = 5;
const VOTE: u8 = 6;
const COMMIT: u8 = 7;
const ABORT: u8 = 8;
const ROLLBACK: u8 = 9;
const WOUND_ME: u8 = 10;
const TOKEN_ASK: u8 = 11;
const TOKEN_GIVE: u8 = 12;

/// The first bytes of the engine's messages (a transport tells them from its own frames).
pub const MESSAGE_TAGS: std::ops::RangeInclusive<u8> = WORK..=TOKEN_GIVE;

/// Flag bits of the messages that carry them.
const FROM_PARENT: u8 = 1;
const VOTE_BIT: u8 = 2;

/// Encodes `msg` as a frame payload. Fails only for a value that cannot cross hosts
/// (a Function, Endpoint or External, which the checker keeps out of sequence and peered
/// data).
pub fn encode_msg<V: WireValue>(msg: &Msg<V>) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::new();
    encode_msg_into(msg, &mut out)?;
    Ok(out)
}

/// Like [`encode_msg`], appending to `out`. On failure `out` holds what it held before.
pub fn encode_msg_into<V: WireValue>(msg: &Msg<V>, out: &mut Vec<u8>) -> Result<(), WireError> {
    let start = out.len();
    let mut w = Writer::appending(std::mem::take(out));
    let result = encode(&mut w, msg);
    *out = w.finish();
    if result.is_err() {
        out.truncate(start);
    }
    result
}

fn encode<V: WireValue>(w: &mut Writer, msg: &Msg<V>) -> Result<(), WireError> {
    let enc = &mut V::Encoder::default();
    let flags = |from_parent: bool, vote: bool| {
        (if from_parent { FROM_PARENT } else { 0 }) | (if vote { VOTE_BIT } else { 0 })
    };
    match msg {
        Msg::Work { tx, prio, from_parent, frame, seq, block, locals, peered, vote } => {
            head(w, WORK, *tx);
            priority(w, *prio);
            w.byte(flags(*from_parent, *vote));
            w.varint(*frame);
            w.varint(u64::from(*seq));
            w.varint(u64::from(*block));
            values(w, enc, locals)?;
            peered_data(w, enc, peered)?;
        }
        Msg::Done { tx, from_parent, frame, locals, peered, vote } => {
            head(w, DONE, *tx);
            w.byte(flags(*from_parent, *vote));
            w.varint(*frame);
            values(w, enc, locals)?;
            peered_data(w, enc, peered)?;
        }
        Msg::Raise { tx, from_parent, frame, exception, peered, vote } => {
            head(w, RAISE, *tx);
            w.byte(flags(*from_parent, *vote));
            w.varint(*frame);
            w.byte(match exception.kind {
                ExceptionKind::Application => 0,
                ExceptionKind::Network => 1,
            });
            w.text(&exception.message);
            w.text(&exception.at);
            peered_data(w, enc, peered)?;
        }
        Msg::Aborted { tx } => head(w, ABORTED, *tx),
        Msg::Prepare { tx, prio, peered } => {
            head(w, PREPARE, *tx);
            priority(w, *prio);
            peered_data(w, enc, peered)?;
        }
        Msg::Vote { tx } => head(w, VOTE, *tx),
        Msg::Commit { tx } => head(w, COMMIT, *tx),
        Msg::Abort { tx } => head(w, ABORT, *tx),
        Msg::Rollback { tx, mark } => {
            head(w, ROLLBACK, *tx);
            w.varint(*mark);
        }
        Msg::WoundMe { tx } => head(w, WOUND_ME, *tx),
        Msg::TokenAsk { tx, prio, wound } => {
            head(w, TOKEN_ASK, *tx);
            priority(w, *prio);
            w.byte(u8::from(*wound));
        }
        Msg::TokenGive { tx } => head(w, TOKEN_GIVE, *tx),
    }
    Ok(())
}

fn head(w: &mut Writer, tag: u8, tx: TxId) {
    w.byte(tag);
    w.fixed_u64(tx.origin);
    w.varint(tx.n);
}

fn priority(w: &mut Writer, p: Priority) {
    let (clock, origin) = p.parts();
    w.varint(clock);
    w.fixed_u64(origin);
}

fn values<V: WireValue>(w: &mut Writer, enc: &mut V::Encoder, vs: &[V]) -> Result<(), WireError> {
    w.varint(vs.len() as u64);
    for v in vs {
        v.encode(enc, w)?;
    }
    Ok(())
}

fn peered_data<V: WireValue>(
    w: &mut Writer,
    enc: &mut V::Encoder,
    peered: &PeeredData<V>,
) -> Result<(), WireError> {
    w.varint(peered.len() as u64);
    for (slot, v) in peered {
        w.varint(u64::from(*slot));
        v.encode(enc, w)?;
    }
    Ok(())
}

/// Decodes a frame payload into a message; the whole payload must be used.
pub fn decode_msg<V: WireValue>(bytes: &[u8]) -> Result<Msg<V>, WireError> {
    let mut r = Reader::new(bytes);
    let dec = &mut V::Decoder::default();
    let tag = r.byte("a message tag")?;
    let tx = TxId { origin: r.fixed_u64("a transaction")?, n: r.varint()? };
    let msg = match tag {
        WORK => {
            let prio = read_priority(&mut r)?;
            let flags = r.byte("message flags")?;
            Msg::Work {
                tx,
                prio,
                from_parent: flags & FROM_PARENT != 0,
                frame: r.varint()?,
                seq: small(&mut r)?,
                block: small(&mut r)?,
                locals: read_values(&mut r, dec)?,
                peered: read_peered(&mut r, dec)?,
                vote: flags & VOTE_BIT != 0,
            }
        }
        DONE => {
            let flags = r.byte("message flags")?;
            Msg::Done {
                tx,
                from_parent: flags & FROM_PARENT != 0,
                frame: r.varint()?,
                locals: read_values(&mut r, dec)?,
                peered: read_peered(&mut r, dec)?,
                vote: flags & VOTE_BIT != 0,
            }
        }
        RAISE => {
            let flags = r.byte("message flags")?;
            let frame = r.varint()?;
            let kind = match r.byte("an exception kind")? {
                0 => ExceptionKind::Application,
                1 => ExceptionKind::Network,
                other => return Err(WireError::BadTag { tag: other, at: r.offset() - 1 }),
            };
            let message = r.text()?;
            let at = r.text()?;
            Msg::Raise {
                tx,
                from_parent: flags & FROM_PARENT != 0,
                frame,
                exception: Exception { kind, message, at },
                peered: read_peered(&mut r, dec)?,
                vote: flags & VOTE_BIT != 0,
            }
        }
        ABORTED => Msg::Aborted { tx },
        PREPARE => Msg::Prepare { tx, prio: read_priority(&mut r)?, peered: read_peered(&mut r, dec)? },
        VOTE => Msg::Vote { tx },
        COMMIT => Msg::Commit { tx },
        ABORT => Msg::Abort { tx },
        ROLLBACK => Msg::Rollback { tx, mark: r.varint()? },
        WOUND_ME => Msg::WoundMe { tx },
        TOKEN_ASK => {
            let prio = read_priority(&mut r)?;
            let wound = match r.byte("a wound flag")? {
                0 => false,
                1 => true,
                other => return Err(WireError::BadTag { tag: other, at: r.offset() - 1 }),
            };
            Msg::TokenAsk { tx, prio, wound }
        }
        TOKEN_GIVE => Msg::TokenGive { tx },
        other => return Err(WireError::BadTag { tag: other, at: 0 }),
    };
    r.finish()?;
    Ok(msg)
}

fn read_priority(r: &mut Reader<'_>) -> Result<Priority, WireError> {
    Ok(Priority::from_parts(r.varint()?, r.fixed_u64("a priority")?))
}

fn small(r: &mut Reader<'_>) -> Result<u32, WireError> {
    let n = r.varint()?;
    u32::try_from(n).map_err(|_| WireError::BadLength { length: n, at: r.offset() })
}

/// A count of items, each at least one byte: more than the input holds is an error before
/// anything is allocated.
fn count(r: &mut Reader<'_>) -> Result<usize, WireError> {
    let n = r.varint()?;
    if n > r.remaining() as u64 {
        return Err(WireError::BadLength { length: n, at: r.offset() });
    }
    Ok(n as usize)
}

fn read_values<V: WireValue>(r: &mut Reader<'_>, dec: &mut V::Decoder) -> Result<Vec<V>, WireError> {
    let n = count(r)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(V::decode(dec, r)?);
    }
    Ok(out)
}

fn read_peered<V: WireValue>(r: &mut Reader<'_>, dec: &mut V::Decoder) -> Result<PeeredData<V>, WireError> {
    let n = count(r)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push((small(r)?, V::decode(dec, r)?));
    }
    Ok(out)
}
