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

// ---------------------------------------------------------------- engine messages

use waldo::__rt::{Priority, TxId};
use waldo::ExceptionKind;
use waldo::engine::Msg;
use waldo::proto::{decode_msg, encode_msg};

fn msg() -> impl Strategy<Value = Msg> {
    let tx = (any::<u64>(), any::<u64>()).prop_map(|(origin, n)| TxId { origin, n });
    let prio = (any::<u64>(), any::<u64>()).prop_map(|(c, o)| Priority::from_parts(c, o));
    let values = || proptest::collection::vec(value(), 0..4);
    let peered = || proptest::collection::vec((any::<u32>(), value()), 0..3);
    prop_oneof![
        (
            tx.clone(),
            prio.clone(),
            any::<bool>(),
            any::<u64>(),
            any::<u32>(),
            any::<u32>(),
            values(),
            peered(),
            any::<bool>()
        )
            .prop_map(|(tx, prio, from_parent, frame, seq, block, locals, peered, vote)| Msg::Work {
                tx,
                prio,
                from_parent,
                frame,
                seq,
                block,
                locals,
                peered,
                vote
            }),
        (tx.clone(), any::<bool>(), any::<u64>(), values(), peered(), any::<bool>()).prop_map(
            |(tx, from_parent, frame, locals, peered, vote)| Msg::Done {
                tx,
                from_parent,
                frame,
                locals,
                peered,
                vote
            }
        ),
        (
            tx.clone(),
            any::<bool>(),
            any::<u64>(),
            any::<bool>(),
            (".{0,20}", "[a-z.:0-9]{0,12}"),
            peered(),
            any::<bool>()
        )
            .prop_map(|(tx, from_parent, frame, network, (message, at), peered, vote)| Msg::Raise {
                tx,
                from_parent,
                frame,
                exception: waldo::Exception {
                    kind: if network { ExceptionKind::Network } else { ExceptionKind::Application },
                    message,
                    at,
                },
                peered,
                vote,
            }),
        (tx.clone(), prio.clone(), peered()).prop_map(|(tx, prio, peered)| Msg::Prepare { tx, prio, peered }),
        (tx.clone(), any::<u64>()).prop_map(|(tx, mark)| Msg::Rollback { tx, mark }),
        tx.clone().prop_map(|tx| Msg::Aborted { tx }),
        tx.clone().prop_map(|tx| Msg::Vote { tx }),
        tx.clone().prop_map(|tx| Msg::Commit { tx }),
        tx.clone().prop_map(|tx| Msg::Abort { tx }),
        tx.clone().prop_map(|tx| Msg::WoundMe { tx }),
        (tx.clone(), prio, any::<bool>()).prop_map(|(tx, prio, wound)| Msg::TokenAsk { tx, prio, wound }),
        tx.prop_map(|tx| Msg::TokenGive { tx }),
    ]
}

/// A canonical text of a message (values through `show`).
fn show_msg(m: &Msg) -> String {
    let vals = |vs: &[Value]| vs.iter().map(show).collect::<Vec<_>>().join(",");
    let peer = |ps: &[(u32, Value)]| {
        ps.iter().map(|(s, v)| format!("{s}={}", show(v))).collect::<Vec<_>>().join(",")
    };
    match m {
        Msg::Work { tx, prio, from_parent, frame, seq, block, locals, peered, vote } => {
            format!(
                "W{tx:?}{prio:?}{from_parent}{frame}/{seq}/{block}[{}][{}]{vote}",
                vals(locals),
                peer(peered)
            )
        }
        Msg::Done { tx, from_parent, frame, locals, peered, vote } => {
            format!("D{tx:?}{from_parent}{frame}[{}][{}]{vote}", vals(locals), peer(peered))
        }
        Msg::Raise { tx, from_parent, frame, exception, peered, vote } => {
            format!("R{tx:?}{from_parent}{frame}{exception:?}[{}]{vote}", peer(peered))
        }
        Msg::Prepare { tx, prio, peered } => format!("P{tx:?}{prio:?}[{}]", peer(peered)),
        other => format!("{other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn messages_round_trip(m in msg()) {
        let bytes = encode_msg(&m).expect("encodes");
        let back = decode_msg(&bytes).expect("decodes");
        prop_assert_eq!(show_msg(&m), show_msg(&back));
    }

    #[test]
    fn corrupted_messages_give_errors_not_panics(m in msg(), cut in any::<prop::sample::Index>(), flip in any::<(prop::sample::Index, u8)>()) {
        let bytes = encode_msg(&m).expect("encodes");
        // Truncated anywhere short of the end: an error.
        let at = cut.index(bytes.len());
        prop_assert!(decode_msg::<Value>(&bytes[..at]).is_err());
        // A flipped byte: an error or some message, never a panic.
        let mut changed = bytes;
        let i = flip.0.index(changed.len());
        changed[i] ^= flip.1 | 1;
        let _ = decode_msg::<Value>(&changed);
    }

    #[test]
    fn random_bytes_never_panic_as_messages(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = decode_msg::<Value>(&bytes);
    }
}
