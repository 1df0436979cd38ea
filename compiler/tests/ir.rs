//! The checked representation: names resolved, expressions typed, blocks placed.

use waldo_compiler::SourceMap;
use waldo_compiler::ir::*;

fn protocol(source: &str) -> Protocol {
    let mut map = SourceMap::new();
    let checked = waldo_compiler::check_source(&mut map, "ir.wld", source);
    assert!(!checked.has_errors(), "{}", map.render(&checked.diagnostics, waldo_compiler::Color::Never));
    checked.protocol.expect("a checked protocol")
}

/// The first and the second endpoint, and the first sequence.
const E0: EndpointId = EndpointId(0);
const E1: EndpointId = EndpointId(1);
const S0: SequenceId = SequenceId(0);

const BANK: &str = include_str!("../../examples/protocols/bank.wld");
const PING_PONG: &str = include_str!("../../examples/protocols/ping_pong.wld");

#[test]
fn sequences_know_where_their_blocks_run() {
    let p = protocol(BANK);
    assert_eq!(p.endpoints.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["Branch", "Vault"]);
    let transfer = &p.sequences[0];
    assert_eq!(transfer.name, "Transfer");
    assert_eq!(transfer.blocks.iter().map(|b| b.endpoint).collect::<Vec<_>>(), [E0, E1]);
    assert_eq!((transfer.params, transfer.returns), (3, 1));
    assert_eq!(transfer.data[3].name, "ok");
    assert_eq!(transfer.data[3].ty, Ty::Bool);
    assert_eq!(p.blocks_on(E0), [(S0, 0, true)]);
    assert_eq!(p.blocks_on(E1), [(S0, 1, false)]);

    let rally = protocol(PING_PONG);
    assert_eq!(rally.blocks_on(E0), [(S0, 0, true), (S0, 2, true)]);
    assert_eq!(rally.blocks_on(E1), [(S0, 1, false), (S0, 3, false)]);
    assert_eq!(rally.peered[1].owner, Some(E0), "Pinger controls last_server");
}

#[test]
fn names_resolve_to_what_they_are() {
    let p = protocol(BANK);
    let send = p.endpoints[0].functions.iter().find(|f| f.name == "send").expect("send");
    assert!(send.public);
    assert_eq!(send.returns, [Ty::Bool]);
    let TStmtKind::Return(values) = &send.body[0].kind else { panic!("send returns") };
    let TExprKind::Call(callee, args) = &values[0].kind else { panic!("a call") };
    assert_eq!(**callee, Callee::Sequence(S0));
    assert_eq!(
        args.iter().map(|a| &a.kind).collect::<Vec<_>>(),
        [
            &TExprKind::Var(VarRef::Local(LocalId(0))),
            &TExprKind::Var(VarRef::Local(LocalId(1))),
            &TExprKind::Var(VarRef::Local(LocalId(2))),
        ]
    );

    // In the Vault's block, `holdings` is a global of the Vault and `ok` is sequence data.
    let credit = &p.sequences[0].blocks[1];
    let TStmtKind::If { branches, .. } = &credit.body[0].kind else { panic!("an if") };
    assert_eq!(branches[0].0.kind, TExprKind::Var(VarRef::SeqData(3)));
    assert!(format!("{:?}", branches[0].1).contains("Global(0)"));
}

#[test]
fn external_reads_are_explicit() {
    let p = protocol(
        "X Endpoint A; A {
  External Number cell;
  Public Function twice() returns Number { return cell * 2; }
  Public Function set(Number v) { extCopy v to cell; }
}",
    );
    let twice = &p.endpoints[0].functions[0];
    let TStmtKind::Return(values) = &twice.body[0].kind else { panic!("return") };
    let TExprKind::Binary(BinOp::Mul, lhs, _) = &values[0].kind else { panic!("a product") };
    assert_eq!(lhs.ty, Ty::Number);
    let TExprKind::Deref(inner) = &lhs.kind else { panic!("the External is read through Deref") };
    assert_eq!(inner.ty, Ty::External(Box::new(Ty::Number)));

    let set = &p.endpoints[0].functions[1];
    let TStmtKind::ExtCopy { source, target } = &set.body[0].kind else { panic!("extCopy") };
    assert_eq!(source.ty, Ty::Number);
    assert_eq!(target.kind, TExprKind::Var(VarRef::Global(0)));
}

#[test]
fn symmetric_protocols_mirror_the_body_and_run_blocks_on_either_side() {
    let p = protocol(
        "Echo Symmetric Left, Right;
Sequence Ping() returns Number n { Left.a { n = 1; } Right.b { n += 1; } }
Left { Public Function ping() returns Number { return Ping(); } }",
    );
    assert!(p.symmetric);
    assert_eq!(p.endpoints[1].name, "Right");
    assert_eq!(p.endpoints[1].functions, p.endpoints[0].functions);
    // Started on Left: a on Left, b on Right. Started on Right: a on Right, b on Left.
    let seq = &p.sequences[0];
    assert_eq!((seq.runs_on(0, E0, true), seq.runs_on(1, E0, true)), (E0, E1));
    assert_eq!((seq.runs_on(0, E1, true), seq.runs_on(1, E1, true)), (E1, E0));
    assert_eq!(p.blocks_on(E0), [(S0, 0, true), (S0, 1, false)]);
    assert_eq!(p.blocks_on(E1), [(S0, 0, true), (S0, 1, false)]);
}

#[test]
fn multi_value_calls_have_tuple_types_and_endpoint_calls_resolve() {
    let p = protocol(
        "T Endpoint A; A {
  Private Function two() returns Number, Text { return 1, 'one'; }
  Public Function both() returns Number, Text, TrueFalse { return two(), True; }
  Public Function me() returns Number { Number n = 0; Text t = ''; n, t = self.both2(); return n + len(t); }
  Public Function both2() returns Number, Text { return two(); }
}",
    );
    let both = &p.endpoints[0].functions[1];
    let TStmtKind::Return(values) = &both.body[0].kind else { panic!("return") };
    assert_eq!(values[0].ty, Ty::Tuple(vec![Ty::Number, Ty::Text]));
    let me = &p.endpoints[0].functions[2];
    let TStmtKind::Assign { value, .. } = &me.body[2].kind else { panic!("destructuring") };
    let TExprKind::Call(callee, _) = &value.kind else { panic!("a call") };
    let Callee::Endpoint { resolved, function, .. } = &**callee else { panic!("an endpoint call") };
    assert_eq!((function.as_str(), *resolved), ("both2", Some((E0, FunctionId(3)))));
}

#[test]
fn ids_hash_as_the_index_inside() {
    // The fingerprint hashes ids; it must not change with their types.
    fn stable_hash(value: impl std::hash::Hash) -> u64 {
        let mut hasher = StableHasher::default();
        value.hash(&mut hasher);
        std::hash::Hasher::finish(&hasher)
    }
    assert_eq!(stable_hash(EndpointId(1)), stable_hash(1usize));
    assert_eq!(stable_hash(StructId(2)), stable_hash(2usize));
    assert_eq!(stable_hash(SequenceId(3)), stable_hash(3usize));
    assert_eq!(stable_hash(FunctionId(4)), stable_hash(4usize));
    assert_eq!(stable_hash(LocalId(5)), stable_hash(5usize));
}
