//! The wire format under property tests: values round-trip; hostile bytes never panic.

use std::collections::BTreeMap;

use proptest::prelude::*;
use waldo::__rt::{Key, ObjData, Value};
use waldo::wire::{FrameDecoder, decode_value, encode_frame, encode_value};

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Nothing),
        any::<f64>().prop_map(Value::Number),
        ".{0,12}".prop_map(Value::text),
        any::<bool>().prop_map(Value::Bool),
    ];
    leaf.prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::new_list),
            proptest::collection::vec(inner.clone(), 1..4).prop_map(Value::new_struct),
            proptest::collection::vec((any::<i16>(), inner), 0..6).prop_map(|entries| {
                Value::new_map(
                    entries
                        .into_iter()
                        .map(|(k, v)| (Key::number(f64::from(k)), v))
                        .collect::<BTreeMap<_, _>>(),
                )
            }),
        ]
    })
}

/// A canonical text of a value, to compare an original with its decoded copy.
fn show(v: &Value) -> String {
    match v {
        Value::Number(n) => format!("N{}", n.to_bits()),
        Value::List(o) | Value::Struct(o) | Value::Map(o) => match &o.snapshot() {
            ObjData::List(items) => format!("[{}]", items.iter().map(show).collect::<Vec<_>>().join(",")),
            ObjData::Struct(items) => format!("S({})", items.iter().map(show).collect::<Vec<_>>().join(",")),
            ObjData::Map(m) => {
                format!(
                    "{{{}}}",
                    m.iter().map(|(k, v)| format!("{k:?}:{}", show(v))).collect::<Vec<_>>().join(",")
                )
            }
        },
        other => format!("{other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn values_round_trip(v in value()) {
        let bytes = encode_value(&v).expect("encodable");
        let back = decode_value(&bytes).expect("decodable");
        prop_assert_eq!(show(&back), show(&v));
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode_value(&bytes);
        let mut frames = FrameDecoder::new(64);
        frames.feed(&bytes);
        while let Ok(Some(_)) = frames.next_frame() {}
    }

    #[test]
    fn corrupted_encodings_never_panic(v in value(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4)) {
        let mut bytes = encode_value(&v).expect("encodable");
        for (at, byte) in flips {
            let i = at % bytes.len();
            bytes[i] = byte;
        }
        let _ = decode_value(&bytes);
        let framed = encode_frame(&bytes, 1 << 20).expect("fits");
        let mut frames = FrameDecoder::new(1 << 20);
        frames.feed(&framed[..framed.len() / 2]);
        let _ = frames.next_frame();
    }
}
