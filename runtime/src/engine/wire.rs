//! The wire format: values in a compact binary encoding, and length-prefixed frames.
//!
//! **Values.** One tag byte, then the payload: Numbers as 8 little-endian bytes, lengths and
//! counts as LEB128 varints, Text as UTF-8. Lists, Maps and Structs are numbered in the order
//! they are first written; a later occurrence of the same object is written as a reference to
//! its number, so sharing and cycles inside a value survive the trip. Function, Endpoint and
//! External values belong to one host and cannot be encoded (the checker keeps them out of
//! peered and sequence data).
//!
//! **Frames.** A frame is a 4-byte little-endian length and that many bytes of payload.
//! [`FrameDecoder`] is sans-io: feed it bytes as they arrive, take complete frames out; a
//! frame longer than the configured maximum is an error before any of it is buffered.
//!
//! Decoding treats its input as hostile: every failure is a [`WireError`] that says what was
//! wrong and where; nothing panics, and nothing allocates more than the input can justify.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crate::core::value::{Key, Obj, ObjData, Value};

/// The largest frame accepted by default: 16 MiB.
pub const DEFAULT_MAX_FRAME: usize = 16 << 20;

/// How deeply values may nest on the wire (deeper input is refused, not recursed into).
pub const MAX_DEPTH: usize = 512;

const NOTHING: u8 = 0;
const NUMBER: u8 = 1;
const TEXT: u8 = 2;
const FALSE: u8 = 3;
const TRUE: u8 = 4;
const LIST: u8 = 5;
const MAP: u8 = 6;
const STRUCT: u8 = 7;
const SEEN: u8 = 8;

const KEY_NUMBER: u8 = 0;
const KEY_TEXT: u8 = 1;
const KEY_FALSE: u8 = 2;
const KEY_TRUE: u8 = 3;

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

// ---------------------------------------------------------------- encoding

/// Appends values to a buffer.
#[derive(Default)]
pub struct Writer {
    buf: Vec<u8>,
    seen: HashMap<usize, u64>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// A writer appending to `buf`.
    pub fn appending(buf: Vec<u8>) -> Self {
        Writer { buf, seen: HashMap::new() }
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

    /// Writes one byte.
    pub fn byte(&mut self, b: u8) {
        self.buf.push(b);
    }

    /// Writes a string: length, then UTF-8 bytes.
    pub fn text(&mut self, s: &str) {
        self.varint(s.len() as u64);
        self.buf.extend_from_slice(s.as_bytes());
    }

    /// Writes a value (objects are read directly: the caller owns a private copy, or holds
    /// the locks).
    pub fn value(&mut self, value: &Value) -> Result<(), WireError> {
        enum Task {
            Value(Value),
            Key(Key),
        }
        if self.scalar(value) {
            return Ok(()); // most values: no stack needed
        }
        // An explicit stack: deep values never recurse.
        let mut stack = vec![Task::Value(value.clone())];
        while let Some(task) = stack.pop() {
            let v = match task {
                Task::Key(k) => {
                    self.key(&k);
                    continue;
                }
                Task::Value(v) => v,
            };
            if self.scalar(&v) {
                continue;
            }
            match &v {
                Value::Nothing | Value::Number(_) | Value::Text(_) | Value::Bool(_) => {}
                Value::List(o) | Value::Map(o) | Value::Struct(o) => {
                    if let Some(&index) = self.seen.get(&o.addr()) {
                        self.buf.push(SEEN);
                        self.varint(index);
                        continue;
                    }
                    self.seen.insert(o.addr(), self.seen.len() as u64);
                    let data = o.0.lock().data.clone();
                    match data {
                        ObjData::List(items) | ObjData::Struct(items) => {
                            self.buf.push(if matches!(v, Value::List(_)) { LIST } else { STRUCT });
                            self.varint(items.len() as u64);
                            stack.extend(items.into_iter().rev().map(Task::Value));
                        }
                        ObjData::Map(entries) => {
                            self.buf.push(MAP);
                            self.varint(entries.len() as u64);
                            for (k, val) in entries.into_iter().rev() {
                                stack.push(Task::Value(val));
                                stack.push(Task::Key(k));
                            }
                        }
                    }
                }
                Value::Function(_) => return Err(WireError::HostBound { kind: "a Function" }),
                Value::Endpoint(_) => return Err(WireError::HostBound { kind: "an Endpoint" }),
                Value::External(_) => return Err(WireError::HostBound { kind: "an External" }),
            }
        }
        Ok(())
    }

    /// Writes `value` if it is a scalar (no object inside); false otherwise.
    fn scalar(&mut self, value: &Value) -> bool {
        match value {
            Value::Nothing => self.buf.push(NOTHING),
            Value::Number(n) => {
                self.buf.push(NUMBER);
                self.buf.extend_from_slice(&n.to_le_bytes());
            }
            Value::Text(t) => {
                self.buf.push(TEXT);
                self.text(t);
            }
            Value::Bool(b) => self.buf.push(if *b { TRUE } else { FALSE }),
            _ => return false,
        }
        true
    }

    fn key(&mut self, key: &Key) {
        match key {
            Key::Number(n) => {
                self.buf.push(KEY_NUMBER);
                self.buf.extend_from_slice(&n.to_le_bytes());
            }
            Key::Text(t) => {
                self.buf.push(KEY_TEXT);
                self.text(t);
            }
            Key::Bool(false) => self.buf.push(KEY_FALSE),
            Key::Bool(true) => self.buf.push(KEY_TRUE),
        }
    }
}

/// Encodes one value on its own.
pub fn encode_value(value: &Value) -> Result<Vec<u8>, WireError> {
    let mut w = Writer::new();
    w.value(value)?;
    Ok(w.finish())
}

// ---------------------------------------------------------------- decoding

/// Reads values from a byte slice.
pub struct Reader<'a> {
    input: &'a [u8],
    at: usize,
    objects: Vec<Obj>,
}

/// What remains to fill in an object being decoded.
enum Fill {
    List { obj: Obj, items: Vec<Value>, left: u64 },
    Struct { obj: Obj, items: Vec<Value>, left: u64 },
    Map { obj: Obj, entries: BTreeMap<Key, Value>, key: Option<Key>, left: u64 },
}

impl<'a> Reader<'a> {
    /// A reader over `input`.
    pub fn new(input: &'a [u8]) -> Self {
        Reader { input, at: 0, objects: Vec::new() }
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
    fn count(&mut self, min_size: usize) -> Result<u64, WireError> {
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
    fn text_ref(&mut self) -> Result<&'a str, WireError> {
        let len = self.count(1)?;
        let at = self.at;
        let bytes = self.bytes(len as usize, "a text")?;
        std::str::from_utf8(bytes).map_err(|_| WireError::BadText { at })
    }

    /// Reads a scalar value (no object inside) if one comes next; `None` otherwise, with
    /// nothing consumed.
    fn scalar(&mut self) -> Result<Option<Value>, WireError> {
        let Some(&tag) = self.input.get(self.at) else { return Ok(None) };
        let value = match tag {
            NOTHING => Value::Nothing,
            FALSE => Value::Bool(false),
            TRUE => Value::Bool(true),
            NUMBER => {
                self.at += 1;
                return self.number().map(|n| Some(Value::Number(n)));
            }
            TEXT => {
                self.at += 1;
                return self.text_ref().map(|t| Some(Value::text(t)));
            }
            _ => return Ok(None),
        };
        self.at += 1;
        Ok(Some(value))
    }

    fn number(&mut self) -> Result<f64, WireError> {
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

    fn key(&mut self) -> Result<Key, WireError> {
        let at = self.at;
        match self.byte("a map key")? {
            KEY_NUMBER => Ok(Key::number(self.number()?)),
            KEY_TEXT => Ok(Key::Text(self.text()?.into())),
            KEY_FALSE => Ok(Key::Bool(false)),
            KEY_TRUE => Ok(Key::Bool(true)),
            tag => Err(WireError::BadTag { tag, at }),
        }
    }

    /// Reads one value. Objects are fresh, private to the caller.
    pub fn value(&mut self) -> Result<Value, WireError> {
        if let Some(value) = self.scalar()? {
            return Ok(value); // most values: no stack needed
        }
        let mut stack: Vec<Fill> = Vec::new();
        loop {
            // A map in progress reads its next key first.
            if let Some(Fill::Map { key: key @ None, left, .. }) = stack.last_mut()
                && *left > 0
            {
                let k = self.key()?;
                *key = Some(k);
            }
            let finished = match stack.last() {
                Some(Fill::List { left, .. } | Fill::Struct { left, .. } | Fill::Map { left, .. }) => {
                    *left == 0
                }
                None => false,
            };
            let value = if finished {
                match stack.pop() {
                    Some(Fill::List { obj, items, .. }) => {
                        obj.0.lock().data = ObjData::List(items);
                        Value::List(obj)
                    }
                    Some(Fill::Struct { obj, items, .. }) => {
                        obj.0.lock().data = ObjData::Struct(items);
                        Value::Struct(obj)
                    }
                    Some(Fill::Map { obj, entries, .. }) => {
                        obj.0.lock().data = ObjData::Map(entries);
                        Value::Map(obj)
                    }
                    // `finished` means the stack is not empty; an error beats a panic regardless.
                    None => return Err(WireError::Truncated { reading: "a value" }),
                }
            } else {
                let at = self.at;
                match self.byte("a value")? {
                    NOTHING => Value::Nothing,
                    NUMBER => Value::Number(self.number()?),
                    TEXT => Value::text(self.text_ref()?),
                    FALSE => Value::Bool(false),
                    TRUE => Value::Bool(true),
                    tag @ (LIST | STRUCT | MAP) => {
                        if stack.len() >= MAX_DEPTH {
                            return Err(WireError::TooDeep);
                        }
                        let left = self.count(1)?;
                        let obj = Obj::new(ObjData::List(Vec::new()));
                        self.objects.push(obj.clone());
                        stack.push(match tag {
                            LIST => Fill::List { obj, items: Vec::new(), left },
                            STRUCT => Fill::Struct { obj, items: Vec::new(), left },
                            _ => Fill::Map { obj, entries: BTreeMap::new(), key: None, left },
                        });
                        continue;
                    }
                    SEEN => {
                        let index = self.varint()?;
                        let obj = usize::try_from(index)
                            .ok()
                            .and_then(|i| self.objects.get(i))
                            .cloned()
                            .ok_or(WireError::BadReference { index })?;
                        // The object's kind is known once it is filled; while it is being
                        // filled (a cycle), the kind is that of the Fill on the stack.
                        let pending = stack.iter().find_map(|f| match f {
                            Fill::List { obj: o, .. } if o.same(&obj) => Some(LIST),
                            Fill::Struct { obj: o, .. } if o.same(&obj) => Some(STRUCT),
                            Fill::Map { obj: o, .. } if o.same(&obj) => Some(MAP),
                            _ => None,
                        });
                        let kind = pending.unwrap_or_else(|| match &obj.0.lock().data {
                            ObjData::List(_) => LIST,
                            ObjData::Struct(_) => STRUCT,
                            ObjData::Map(_) => MAP,
                        });
                        match kind {
                            LIST => Value::List(obj),
                            STRUCT => Value::Struct(obj),
                            _ => Value::Map(obj),
                        }
                    }
                    tag => return Err(WireError::BadTag { tag, at }),
                }
            };
            match stack.last_mut() {
                None => return Ok(value),
                Some(Fill::List { items, left, .. } | Fill::Struct { items, left, .. }) => {
                    items.push(value);
                    *left -= 1;
                }
                Some(Fill::Map { entries, key, left, .. }) => {
                    if let Some(k) = key.take() {
                        entries.insert(k, value);
                    }
                    *left -= 1;
                }
            }
        }
    }
}

/// Decodes one value that must use all of `bytes`.
pub fn decode_value(bytes: &[u8]) -> Result<Value, WireError> {
    let mut r = Reader::new(bytes);
    let v = r.value()?;
    r.finish()?;
    Ok(v)
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

    fn roundtrip(v: &Value) -> Value {
        decode_value(&encode_value(v).expect("encodes")).expect("decodes")
    }

    fn list_items(v: &Value) -> Vec<Value> {
        match &v.as_obj().expect("an object").0.lock().data {
            ObjData::List(items) | ObjData::Struct(items) => items.clone(),
            ObjData::Map(m) => m.values().cloned().collect(),
        }
    }

    #[test]
    fn scalars_and_containers_round_trip() {
        for v in [
            Value::Nothing,
            Value::Number(-2.5),
            Value::text("héllo\n"),
            Value::Bool(true),
            Value::Bool(false),
        ] {
            assert_eq!(format!("{:?}", roundtrip(&v)), format!("{v:?}"));
        }
        let map = Value::new_map(BTreeMap::from([
            (Key::number(2.0), Value::text("two")),
            (Key::Text("k".into()), Value::new_list(vec![Value::Number(1.0)])),
            (Key::Bool(true), Value::new_struct(vec![Value::Bool(false), Value::Nothing])),
        ]));
        let back = roundtrip(&map);
        let ObjData::Map(entries) = back.as_obj().expect("map").0.lock().data.clone() else {
            panic!("a Map")
        };
        let keys: Vec<Key> = entries.keys().cloned().collect();
        assert_eq!(keys, vec![Key::number(2.0), Key::Text("k".into()), Key::Bool(true)]);
        assert_eq!(list_items(&entries[&Key::Text("k".into())]).len(), 1);
        assert!(matches!(entries[&Key::Bool(true)], Value::Struct(_)));
    }

    #[test]
    fn sharing_and_cycles_survive() {
        let inner = Value::new_list(vec![Value::Number(7.0)]);
        let outer = Value::new_list(vec![inner.clone(), inner]);
        let back = roundtrip(&outer);
        let items = list_items(&back);
        assert!(items[0].as_obj().expect("obj").same(items[1].as_obj().expect("obj")));

        let node = Value::new_struct(vec![Value::Nothing]);
        if let ObjData::Struct(fields) = &mut node.as_obj().expect("obj").0.lock().data {
            fields[0] = node.clone();
        }
        let back = roundtrip(&node);
        let fields = list_items(&back);
        assert!(fields[0].as_obj().expect("obj").same(back.as_obj().expect("obj")));
        assert!(matches!(fields[0], Value::Struct(_)));
        // Break the test's own cycles.
        if let ObjData::Struct(f) = &mut node.as_obj().expect("obj").0.lock().data {
            f.clear();
        }
        if let ObjData::Struct(f) = &mut back.as_obj().expect("obj").0.lock().data {
            f.clear();
        }
    }

    #[test]
    fn host_bound_values_are_refused() {
        let f = Value::Function(crate::core::value::HostFn::new(|_| Ok(vec![])));
        assert_eq!(encode_value(&f).map(|_| ()), Err(WireError::HostBound { kind: "a Function" }));
    }

    #[test]
    fn hostile_input_gives_errors() {
        assert_eq!(decode_value(&[]).map(|_| ()), Err(WireError::Truncated { reading: "a value" }));
        assert_eq!(decode_value(&[0x42]).map(|_| ()), Err(WireError::BadTag { tag: 0x42, at: 0 }));
        assert_eq!(
            decode_value(&[NUMBER, 1, 2]).map(|_| ()),
            Err(WireError::Truncated { reading: "a number" })
        );
        assert_eq!(decode_value(&[TEXT, 2, 0xff, 0xfe]).map(|_| ()), Err(WireError::BadText { at: 2 }));
        // A count of 33,554,431 elements with no bytes left to hold them.
        assert_eq!(
            decode_value(&[LIST, 0xff, 0xff, 0xff, 0x0f]).map(|_| ()),
            Err(WireError::BadLength { length: 33_554_431, at: 1 })
        );
        assert_eq!(decode_value(&[SEEN, 3]).map(|_| ()), Err(WireError::BadReference { index: 3 }));
        assert_eq!(decode_value(&[NOTHING, NOTHING]).map(|_| ()), Err(WireError::TrailingBytes { count: 1 }));
        let deep: Vec<u8> =
            std::iter::repeat_n([LIST, 1], MAX_DEPTH + 1).flatten().chain([NOTHING]).collect();
        assert_eq!(decode_value(&deep).map(|_| ()), Err(WireError::TooDeep));
        let long_varint = [LIST, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01];
        assert_eq!(decode_value(&long_varint).map(|_| ()), Err(WireError::BadVarint { at: 1 }));
    }

    #[test]
    fn frames_split_and_refuse_oversize() {
        let mut d = FrameDecoder::new(16);
        let a = encode_frame(b"hello", 16).expect("fits");
        let b = encode_frame(b"", 16).expect("fits");
        let stream: Vec<u8> = a.iter().chain(&b).copied().collect();
        for byte in &stream[..3] {
            d.feed(&[*byte]);
            assert_eq!(d.next_frame(), Ok(None));
        }
        d.feed(&stream[3..]);
        assert_eq!(d.next_frame(), Ok(Some(b"hello".to_vec())));
        assert_eq!(d.next_frame(), Ok(Some(Vec::new())));
        assert_eq!(d.next_frame(), Ok(None));
        assert_eq!(d.pending(), 0);
        d.feed(&1000u32.to_le_bytes());
        assert_eq!(d.next_frame(), Err(WireError::FrameTooLarge { length: 1000, max: 16 }));
        assert_eq!(
            encode_frame(&[0; 17], 16).map(|_| ()),
            Err(WireError::FrameTooLarge { length: 17, max: 16 })
        );
    }
}
