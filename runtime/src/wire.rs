//! The wire form of values, over the engine's primitives ([`waldo_engine::wire`]).
//!
//! One tag byte, then the payload: Numbers as 8 little-endian bytes, Text as UTF-8 after
//! its length. Lists, Maps and Structs are numbered in the order they are first written; a
//! later occurrence of the same object is written as a reference to its number, so sharing
//! and cycles inside a value survive the trip. Function, Endpoint and External values
//! belong to one host and cannot be encoded (the checker keeps them out of peered and
//! sequence data). Decoding treats its input as hostile (see the engine's `wire`).

use std::collections::{BTreeMap, HashMap};

use crate::core::value::{Key, Obj, ObjData, Value};
pub use waldo_engine::wire::*;

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

// ---------------------------------------------------------------- encoding

/// What the encoder of one message remembers: the objects already written, by address.
#[derive(Default)]
pub struct Encoder {
    seen: HashMap<usize, u64>,
}

impl Encoder {
    /// Writes a value (objects are read directly: the caller owns a private copy, or holds
    /// the locks).
    pub fn value(&mut self, w: &mut Writer, value: &Value) -> Result<(), WireError> {
        enum Task {
            Value(Value),
            Key(Key),
        }
        if scalar(w, value) {
            return Ok(()); // most values: no stack needed
        }
        // An explicit stack: deep values never recurse.
        let mut stack = vec![Task::Value(value.clone())];
        while let Some(task) = stack.pop() {
            let v = match task {
                Task::Key(k) => {
                    key(w, &k);
                    continue;
                }
                Task::Value(v) => v,
            };
            if scalar(w, &v) {
                continue;
            }
            match &v {
                Value::Nothing | Value::Number(_) | Value::Text(_) | Value::Bool(_) => {}
                Value::List(o) | Value::Map(o) | Value::Struct(o) => {
                    if let Some(&index) = self.seen.get(&o.addr()) {
                        w.byte(SEEN);
                        w.varint(index);
                        continue;
                    }
                    self.seen.insert(o.addr(), self.seen.len() as u64);
                    let data = o.0.lock().data.clone();
                    match data {
                        ObjData::List(items) | ObjData::Struct(items) => {
                            w.byte(if matches!(v, Value::List(_)) { LIST } else { STRUCT });
                            w.varint(items.len() as u64);
                            stack.extend(items.into_iter().rev().map(Task::Value));
                        }
                        ObjData::Map(entries) => {
                            w.byte(MAP);
                            w.varint(entries.len() as u64);
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
}

/// Writes `value` if it is a scalar (no object inside); false otherwise.
fn scalar(w: &mut Writer, value: &Value) -> bool {
    match value {
        Value::Nothing => w.byte(NOTHING),
        Value::Number(n) => {
            w.byte(NUMBER);
            w.number(*n);
        }
        Value::Text(t) => {
            w.byte(TEXT);
            w.text(t);
        }
        Value::Bool(b) => w.byte(if *b { TRUE } else { FALSE }),
        _ => return false,
    }
    true
}

fn key(w: &mut Writer, key: &Key) {
    match key {
        Key::Number(n) => {
            w.byte(KEY_NUMBER);
            w.number(*n);
        }
        Key::Text(t) => {
            w.byte(KEY_TEXT);
            w.text(t);
        }
        Key::Bool(false) => w.byte(KEY_FALSE),
        Key::Bool(true) => w.byte(KEY_TRUE),
    }
}

/// Encodes one value on its own.
pub fn encode_value(value: &Value) -> Result<Vec<u8>, WireError> {
    let mut w = Writer::new();
    Encoder::default().value(&mut w, value)?;
    Ok(w.finish())
}

// ---------------------------------------------------------------- decoding

/// What the decoder of one message remembers: the objects decoded so far, by number.
#[derive(Default)]
pub struct Decoder {
    objects: Vec<Obj>,
}

/// What remains to fill in an object being decoded.
enum Fill {
    List { obj: Obj, items: Vec<Value>, left: u64 },
    Struct { obj: Obj, items: Vec<Value>, left: u64 },
    Map { obj: Obj, entries: BTreeMap<Key, Value>, key: Option<Key>, left: u64 },
}

/// Reads a scalar value (no object inside) if one comes next; `None` otherwise, with
/// nothing consumed.
fn read_scalar(r: &mut Reader<'_>) -> Result<Option<Value>, WireError> {
    let Some(tag) = r.peek() else { return Ok(None) };
    let value = match tag {
        NOTHING => Value::Nothing,
        FALSE => Value::Bool(false),
        TRUE => Value::Bool(true),
        NUMBER => {
            r.skip();
            return r.number().map(|n| Some(Value::Number(n)));
        }
        TEXT => {
            r.skip();
            return r.text_ref().map(|t| Some(Value::text(t)));
        }
        _ => return Ok(None),
    };
    r.skip();
    Ok(Some(value))
}

fn read_key(r: &mut Reader<'_>) -> Result<Key, WireError> {
    let at = r.offset();
    match r.byte("a map key")? {
        KEY_NUMBER => Ok(Key::number(r.number()?)),
        KEY_TEXT => Ok(Key::Text(r.text()?.into())),
        KEY_FALSE => Ok(Key::Bool(false)),
        KEY_TRUE => Ok(Key::Bool(true)),
        tag => Err(WireError::BadTag { tag, at }),
    }
}

impl Decoder {
    /// Reads one value. Objects are fresh, private to the caller.
    pub fn value(&mut self, r: &mut Reader<'_>) -> Result<Value, WireError> {
        if let Some(value) = read_scalar(r)? {
            return Ok(value); // most values: no stack needed
        }
        let mut stack: Vec<Fill> = Vec::new();
        loop {
            // A map in progress reads its next key first.
            if let Some(Fill::Map { key: key @ None, left, .. }) = stack.last_mut()
                && *left > 0
            {
                let k = read_key(r)?;
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
                let at = r.offset();
                match r.byte("a value")? {
                    NOTHING => Value::Nothing,
                    NUMBER => Value::Number(r.number()?),
                    TEXT => Value::text(r.text_ref()?),
                    FALSE => Value::Bool(false),
                    TRUE => Value::Bool(true),
                    tag @ (LIST | STRUCT | MAP) => {
                        if stack.len() >= MAX_DEPTH {
                            return Err(WireError::TooDeep);
                        }
                        let left = r.count(1)?;
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
                        let index = r.varint()?;
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
    let v = Decoder::default().value(&mut r)?;
    r.finish()?;
    Ok(v)
}

impl WireValue for Value {
    type Encoder = Encoder;
    type Decoder = Decoder;

    fn encode(&self, encoder: &mut Encoder, w: &mut Writer) -> Result<(), WireError> {
        encoder.value(w, self)
    }

    fn decode(decoder: &mut Decoder, r: &mut Reader<'_>) -> Result<Value, WireError> {
        decoder.value(r)
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
