//! The primitives of the wire format and length-prefixed frames.
//!
//! **Primitives.** Lengths and counts are LEB128 varints, numbers 8 little-endian bytes,
//! text UTF-8 after its length. [`Writer`] appends them to a buffer; [`Reader`] reads them
//! back from a slice, treating its input as hostile: every failure is a [`WireError`] that
//! says what was wrong and where; nothing panics, and nothing allocates more than the input
//! can justify. How a driver's values are written with them is the driver's
//! [`WireValue`] codec.
//!
//! **Frames.** A frame is a 4-byte little-endian length and that many bytes of payload.
//! [`FrameDecoder`] is sans-io: feed it bytes as they arrive, take complete frames out; a
//! frame longer than the configured maximum is an error before any of it is buffered.

use std::fmt;

/// The largest frame accepted by default: 16 MiB.
pub const DEFAULT_MAX_FRAME: usize = 16 << 20;

/// How deeply values may nest on the wire (deeper input is refused, not recursed into).
pub const MAX_DEPTH: usize = 512;

/// Why bytes could not be decoded (or a value encoded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WireError {
    /// The input ended inside a value or frame.
    Truncated {
        /// What was being read.
        reading: &'static str,
    },
    /// A tag byte that means nothing here.
    BadTag {
        /// The byte.
        tag: u8,
        /// Its offset in the input.
        at: usize,
    },
    /// A varint longer than 10 bytes or above `u64::MAX`.
    BadVarint {
        /// Its offset in the input.
        at: usize,
    },
    /// Text that is not UTF-8.
    BadText {
        /// Its offset in the input.
        at: usize,
    },
    /// A reference to an object not yet decoded.
    BadReference {
        /// The object number.
        index: u64,
    },
    /// A count larger than the rest of the input could hold.
    BadLength {
        /// The count.
        length: u64,
        /// Its offset in the input.
        at: usize,
    },
    /// Values nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// Bytes left after the value.
    TrailingBytes {
        /// How many.
        count: usize,
    },
    /// A frame longer than the maximum.
    FrameTooLarge {
        /// Its announced length.
        length: usize,
        /// The maximum.
        max: usize,
    },
    /// A value that only means something on one host.
    HostBound {
        /// Which kind ("a Function", "an Endpoint", "an External").
        kind: &'static str,
    },
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Truncated { reading } => write!(f, "the input ended while reading {reading}"),
            WireError::BadTag { tag, at } => write!(f, "unknown tag {tag:#04x} at byte {at}"),
            WireError::BadVarint { at } => write!(f, "malformed length at byte {at}"),
            WireError::BadText { at } => write!(f, "text at byte {at} is not UTF-8"),
            WireError::BadReference { index } => {
                write!(f, "reference to object {index}, which was not sent before it")
            }
            WireError::BadLength { length, at } => {
                write!(f, "count {length} at byte {at} is larger than the rest of the input allows")
            }
            WireError::TooDeep => write!(f, "values nested more than {MAX_DEPTH} levels deep"),
            WireError::TrailingBytes { count } => write!(f, "{count} unexpected bytes after the value"),
            WireError::FrameTooLarge { length, max } => {
                write!(f, "a frame of {length} bytes is larger than the maximum of {max}")
            }
            WireError::HostBound { kind } => write!(f, "{kind} cannot be sent to another host"),
        }
    }
}

impl std::error::Error for WireError {}

// ---------------------------------------------------------------- values

/// How a driver's values cross the wire, with the state one message's values share (for
/// example the objects already written, so that sharing and cycles survive).
pub trait WireValue: Sized {
    /// What the encoder of one message remembers between its values.
    type Encoder: Default;
    /// What the decoder of one message remembers between its values.
    type Decoder: Default;
    /// Writes the value.
    fn encode(&self, encoder: &mut Self::Encoder, w: &mut Writer) -> Result<(), WireError>;
    /// Reads a value.
    fn decode(decoder: &mut Self::Decoder, r: &mut Reader<'_>) -> Result<Self, WireError>;
}

// ---------------------------------------------------------------- writing

/// Appends primitives to a buffer.
#[derive(Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// A writer appending to `buf`.
    pub fn appending(buf: Vec<u8>) -> Self {
        Writer { buf }
    }

    /// The bytes written so far.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }

    /// Writes an unsigned integer as a LEB128 varint.
    pub fn varint(&mut self, mut n: u64) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                self.buf.push(byte);
                return;
            }
            self.buf.push(byte | 0x80);
        }
    }

    /// Writes a u64 as 8 little-endian bytes (for numbers that are usually large, like
    /// random tags, where a varint would take 10).
    pub fn fixed_u64(&mut self, n: u64) {
        self.buf.extend_from_slice(&n.to_le_bytes());
    }

    /// Writes a number as 8 little-endian bytes.
    pub fn number(&mut self, n: f64) {
        self.buf.extend_from_slice(&n.to_le_bytes());
    }

    /// Writes one byte.
    pub fn byte(&mut self, b: u8) {
        self.buf.push(b);
    }

    /// Writes a string: length, then UTF-8 bytes.
    pub fn text(&mut self, s: &str) {
        self.varint(s.len() as u64);
        self.buf.extend_from_slice(s.as_bytes());
    }
}

// ---------------------------------------------------------------- reading

/// Reads primitives from a byte slice.
pub struct Reader<'a> {
    input: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    /// A reader over `input`.
    pub fn new(input: &'a [u8]) -> Self {
        Reader { input, at: 0 }
    }

    /// How far into the input the reader is.
    pub fn offset(&self) -> usize {
        self.at
    }

    /// How many bytes are left.
    pub fn remaining(&self) -> usize {
        self.input.len() - self.at
    }

    /// Fails unless every byte was read.
    pub fn finish(&self) -> Result<(), WireError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(WireError::TrailingBytes { count }),
        }
    }

    /// The next byte, without consuming it.
    pub fn peek(&self) -> Option<u8> {
        self.input.get(self.at).copied()
    }

    /// Skips one byte (after [`Reader::peek`]).
    pub fn skip(&mut self) {
        self.at = (self.at + 1).min(self.input.len());
    }

    /// Reads one byte (`reading` names what, for the error).
    pub fn byte(&mut self, reading: &'static str) -> Result<u8, WireError> {
        let b = *self.input.get(self.at).ok_or(WireError::Truncated { reading })?;
        self.at += 1;
        Ok(b)
    }

    fn bytes(&mut self, n: usize, reading: &'static str) -> Result<&'a [u8], WireError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.input.len())
            .ok_or(WireError::Truncated { reading })?;
        let out = &self.input[self.at..end];
        self.at = end;
        Ok(out)
    }

    /// Reads a LEB128 varint.
    pub fn varint(&mut self) -> Result<u64, WireError> {
        if let Some(&b) = self.input.get(self.at)
            && b < 0x80
        {
            self.at += 1;
            return Ok(u64::from(b)); // one byte: most lengths, counts and tags
        }
        let start = self.at;
        let mut n: u64 = 0;
        let rest = self.input.get(start..).unwrap_or_default();
        for (i, &b) in rest.iter().take(10).enumerate() {
            let part = u64::from(b & 0x7f);
            if i == 9 && part > 1 {
                return Err(WireError::BadVarint { at: start });
            }
            n |= part << (7 * i);
            if b & 0x80 == 0 {
                self.at = start + i + 1;
                return Ok(n);
            }
        }
        if rest.len() < 10 {
            self.at = self.input.len();
            return Err(WireError::Truncated { reading: "a length" });
        }
        Err(WireError::BadVarint { at: start })
    }

    /// Reads a count, refusing counts that the rest of the input cannot hold (each element
    /// takes at least `min_size` bytes).
    pub fn count(&mut self, min_size: usize) -> Result<u64, WireError> {
        let at = self.at;
        let n = self.varint()?;
        if n > (self.remaining() / min_size.max(1)) as u64 {
            return Err(WireError::BadLength { length: n, at });
        }
        Ok(n)
    }

    /// Reads a string.
    pub fn text(&mut self) -> Result<String, WireError> {
        self.text_ref().map(str::to_owned)
    }

    /// Reads a string in place.
    pub fn text_ref(&mut self) -> Result<&'a str, WireError> {
        let len = self.count(1)?;
        let at = self.at;
        let bytes = self.bytes(len as usize, "a text")?;
        std::str::from_utf8(bytes).map_err(|_| WireError::BadText { at })
    }

    /// Reads a number written by [`Writer::number`].
    pub fn number(&mut self) -> Result<f64, WireError> {
        self.fixed_raw("a number").map(f64::from_le_bytes)
    }

    /// Reads a u64 written by [`Writer::fixed_u64`].
    pub fn fixed_u64(&mut self, reading: &'static str) -> Result<u64, WireError> {
        self.fixed_raw(reading).map(u64::from_le_bytes)
    }

    fn fixed_raw(&mut self, reading: &'static str) -> Result<[u8; 8], WireError> {
        let bytes = self.bytes(8, reading)?;
        let mut raw = [0u8; 8];
        raw.copy_from_slice(bytes);
        Ok(raw)
    }
}

// ---------------------------------------------------------------- frames

/// Prefixes `payload` with its length.
pub fn encode_frame(payload: &[u8], max: usize) -> Result<Vec<u8>, WireError> {
    if payload.len() > max || payload.len() > u32::MAX as usize {
        return Err(WireError::FrameTooLarge { length: payload.len(), max });
    }
    let mut out = Vec::with_capacity(4 + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

/// Splits a byte stream into frames, sans-io: [`FrameDecoder::feed`] what arrives,
/// [`FrameDecoder::next_frame`] until it returns `Ok(None)`.
pub struct FrameDecoder {
    max: usize,
    buf: Vec<u8>,
    start: usize,
}

impl FrameDecoder {
    /// A decoder refusing frames longer than `max` bytes.
    pub fn new(max: usize) -> Self {
        FrameDecoder { max, buf: Vec::new(), start: 0 }
    }

    /// Changes the largest frame accepted from now on.
    pub fn set_max(&mut self, max: usize) {
        self.max = max;
    }

    /// Adds received bytes.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 64 * 1024 && self.start * 2 > self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame's payload, `None` if more bytes are needed, or an error if
    /// the next frame announces a length over the maximum (the stream is then unusable).
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, WireError> {
        Ok(self.next_frame_ref()?.map(<[u8]>::to_vec))
    }

    /// Like [`FrameDecoder::next_frame`], without copying the payload out of the buffer.
    pub fn next_frame_ref(&mut self) -> Result<Option<&[u8]>, WireError> {
        let available = &self.buf[self.start..];
        let Some(header) = available.get(..4) else { return Ok(None) };
        let length = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        if length > self.max {
            return Err(WireError::FrameTooLarge { length, max: self.max });
        }
        if available.len() < 4 + length {
            return Ok(None);
        }
        let at = self.start + 4;
        self.start = at + length;
        Ok(Some(&self.buf[at..at + length]))
    }

    /// How many bytes are buffered but not yet returned as frames (a partial frame when the
    /// stream ends means it was truncated).
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_and_bad_ones_are_errors() {
        for n in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut w = Writer::new();
            w.varint(n);
            let bytes = w.finish();
            let mut r = Reader::new(&bytes);
            assert_eq!(r.varint(), Ok(n));
            assert_eq!(r.finish(), Ok(()));
        }
        assert_eq!(Reader::new(&[0x80; 11]).varint(), Err(WireError::BadVarint { at: 0 }));
        assert_eq!(Reader::new(&[0x80, 0x80]).varint(), Err(WireError::Truncated { reading: "a length" }));
        assert_eq!(Reader::new(&[5, b'a']).text(), Err(WireError::BadLength { length: 5, at: 0 }));
    }
}
