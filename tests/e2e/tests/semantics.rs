//! Generated code meets the language's rules on programs written to catch the hard cases:
//! function-wide scope, `try` undoing locals, tail returns, External containers, names that
//! would collide in Rust, and dynamic endpoint calls with wrong arguments.
//!
//! Then the runtime semantics the book's language and runtime chapters give, each scenario on the protocols
//! `protocols/sem_*.wld` and checked on an in-process pair and over loopback TCP: Text by
//! character, `toText`, Map order, `in`, deep equality, `range` steps, container methods and
//! their errors, unbound values, references inside an endpoint and copies across sequences
//! and endpoint calls, exceptions (`catch` order, `finally`, nested undo, rollback), `signal`
//! after commit, nested and one-block sequences, Externals, and symmetric sequences.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use waldo_e2e::{
    app_error, contend, corpus_name_collisions::clash, corpus_scope_and_undo::scoping, scenarios,
};

async fn keeper() -> (scoping::Keeper, waldo::External<BTreeMap<String, Vec<f64>>>) {
    let shelves = waldo::External::new(BTreeMap::from([("a".to_owned(), vec![1.0])]));
    (scoping::Keeper::new(shelves.clone()).await.expect("created"), shelves)
}

#[tokio::test]
async fn locals_live_for_the_whole_function() {
    let (k, _) = keeper().await;
    assert_eq!(k.loop_then_use().await.expect("runs"), 12.0);
    assert_eq!(k.branch_then_use(true).await.expect("runs"), "set!");
    // Not declared on this path: the variable holds its type's default.
    assert_eq!(k.branch_then_use(false).await.expect("runs"), "!");
    assert_eq!(k.declared_after_return().await.expect("runs"), 1.0);
}

#[tokio::test]
async fn a_failing_try_body_undoes_local_variables_too() {
    let (k, _) = keeper().await;
    // x goes back to 1 before the catch adds 100; l goes back to [1] (not [7, 3]).
    assert_eq!(k.undo_locals().await.expect("runs"), (101.0, 1.0));
    assert_eq!(k.twice(4.0).await.expect("runs"), (4.0, 5.0));
}

#[tokio::test]
async fn writes_inside_an_external_container_reach_the_host_after_commit() {
    let (k, shelves) = keeper().await;
    assert_eq!(k.stock("a".into(), 5.0).await.expect("runs"), 2.0);
    assert_eq!(shelves.get()["a"], vec![10.0, 5.0]);
}

#[tokio::test]
async fn names_that_collide_in_rust_stay_apart() {
    let (server, client) = clash::in_process_pair(clash::Config { port: 8080.0 }).await.expect("a pair");
    assert_eq!(client.get_x().await.expect("runs"), 1.0);
    assert_eq!(client.get_x_().await.expect("runs"), 2.0);
    assert_eq!(client.with_options_().await.expect("runs"), 3.0);
    // A host closure parameter named `args`; the sequence doubles, the closure adds one.
    assert_eq!(client.apply(|n| n + 1.0, 20.0).await.expect("runs"), 41.0);
    assert_eq!(server.size().await.expect("runs"), 0.0);
    let _struct_named_like_the_endpoint = clash::Server2 { n: 1.0 };
}

#[tokio::test]
async fn a_dynamic_call_with_wrong_arguments_is_an_application_exception() {
    let (_server, client) = clash::in_process_pair(clash::Config { port: 1.0 }).await.expect("a pair");
    let endpoint = client.endpoint();
    let clock = waldo::__rt::Clock::default();
    let tx = waldo::__rt::Tx::begin(&clock, clock.next());
    let err = endpoint
        .call(&tx, "apply", vec![waldo::__rt::Value::text("not a function"), waldo::__rt::Value::Number(1.0)])
        .await;
    match err {
        Err(waldo::__rt::Raise::Exception(e)) => {
            assert_eq!(e.message, "argument 1 of `apply` should be a Function, found a Text");
        }
        other => panic!("expected an exception, got {other:?}"),
    }
    let err = endpoint.call(&tx, "nope", vec![]).await;
    assert!(
        matches!(err, Err(waldo::__rt::Raise::Exception(e)) if e.message == "`Client` has no public function `nope`")
    );
    tx.abort();
}

// ==================================================================== runtime semantics
//
// The scenarios below run on the protocols `protocols/sem_*.wld`, each on an in-process pair
// and over loopback TCP, and check the exact values that the book's language chapter (types to
// effects) and runtime chapter (transactions, values) give.

fn texts(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// One `signal(sig, xs, t)` delivery: `xs`, `t`, and the committed value of `ext` then.
type Signal = (Vec<f64>, String, f64);

/// The host side of `sem_effects`: what its host functions saw, and its External cells.
struct Host {
    /// `note(t)` calls (a host function run inside the transaction), each with the committed
    /// value of `ext` at the time.
    notes: Arc<Mutex<Vec<(String, f64)>>>,
    /// `signal(sig, xs, t)` deliveries, each with the committed value of `ext` at the time.
    signals: Arc<Mutex<Vec<Signal>>>,
    ext: waldo::External<f64>,
    extl: waldo::External<Vec<String>>,
}

impl Host {
    fn new() -> Host {
        Host {
            notes: Arc::default(),
            signals: Arc::default(),
            ext: waldo::External::new(0.0),
            extl: waldo::External::new(Vec::new()),
        }
    }

    fn note(&self) -> impl Fn(String) + Send + Sync + 'static {
        let (log, ext) = (self.notes.clone(), self.ext.clone());
        move |t| log.lock().expect("notes").push((t, ext.get()))
    }

    fn sig(&self) -> impl Fn(Vec<f64>, String) + Send + Sync + 'static {
        let (log, ext) = (self.signals.clone(), self.ext.clone());
        move |xs, t| log.lock().expect("signals").push((xs, t, ext.get()))
    }

    fn notes(&self) -> Vec<String> {
        self.notes.lock().expect("notes").iter().map(|(t, _)| t.clone()).collect()
    }

    fn signals(&self) -> Vec<Signal> {
        self.signals.lock().expect("signals").clone()
    }
}

scenarios! {
    // ------------------------------------------------------------ values (sem_values)

    text_is_indexed_and_iterated_by_character: corpus_sem_values::sem_values, |l, _r| {
        assert_eq!(l.chars("añ😀b".into()).await.expect("chars"), texts(&["a", "ñ", "😀", "b"]));
        assert_eq!(l.chars(String::new()).await.expect("chars"), Vec::<String>::new());
        assert_eq!(l.char_at("héllo".into(), 1.0).await.expect("char_at"), "é");
        assert_eq!(l.char_at("a😀b".into(), 2.0).await.expect("char_at"), "b");
        app_error(l.char_at("a😀b".into(), 3.0).await, "Text index 3 is out of range");
        assert_eq!(l.length("€uro".into()).await.expect("length"), 4.0);
        assert_eq!(l.length("😀".into()).await.expect("length"), 1.0);
        assert_eq!(l.escapes().await.expect("escapes"), (3.0, 2.0, "it's \"q\"".to_owned()));
    }

    to_text_of_numbers_booleans_and_texts: corpus_sem_values::sem_values, |l, _r| {
        let want = ["3", "-2", "0", "2.5", "-0.75", "1000000000", "0.125", "True", "False", "as is", "2.5", "2"];
        assert_eq!(l.texts().await.expect("texts"), texts(&want));
    }

    maps_iterate_in_ascending_key_order: corpus_sem_values::sem_values, |l, _r| {
        let (keys, values) = l.number_keys().await.expect("number_keys");
        assert_eq!(keys, [-1.0, 2.5, 3.0, 7.0, 10.0]);
        assert_eq!(values, "minus half three seven ten ");
        assert_eq!(l.text_keys().await.expect("text_keys"), "<><B><a><aa><b><é>");
        assert_eq!(l.bool_keys().await.expect("bool_keys"), [false, true]);
        let m: Vec<(f64, String)> = l.map_out().await.expect("map_out").into_iter().collect();
        assert_eq!(m, [(1.0, "a".to_owned()), (2.0, "b".to_owned()), (3.0, "c".to_owned())]);
    }

    membership_in_lists_maps_and_texts: corpus_sem_values::sem_values, |l, _r| {
        let want = [
            true, false, true, // List
            true, false, true, // Map keys
            true, false, true, true, false, // Text substrings
            false, true, true, // `not` binds looser than `in`; a range; a Number-keyed Map
        ];
        assert_eq!(l.membership().await.expect("membership"), want);
    }

    deep_equality_of_lists_maps_and_structs: corpus_sem_values::sem_values, |l, _r| {
        let want = [true, false, false, true, true, true, true, false, false, true, true, false, true, true];
        assert_eq!(l.equality().await.expect("equality"), want);
    }

    endpoints_compare_by_identity: corpus_sem_values::sem_values, |l, r| {
        assert_eq!(l.same(l.endpoint(), l.endpoint()).await.expect("same"), (true, false));
        assert_eq!(l.same(l.endpoint(), r.endpoint()).await.expect("same"), (false, true));
    }

    ranges_with_a_step: corpus_sem_values::sem_values, |l, _r| {
        let (a, b, c, d, e) = l.ranges().await.expect("ranges");
        assert_eq!(a, [0.0, 3.0, 6.0, 9.0]);
        assert_eq!(b, [5.0, 3.0, 1.0]);
        assert_eq!(c, Vec::<f64>::new());
        assert_eq!(d, Vec::<f64>::new());
        assert_eq!(e, [0.0, 0.25, 0.5, 0.75]);
        assert_eq!(l.sum_range(10.0, 0.0, -3.0).await.expect("sum_range"), 22.0);
        assert_eq!(l.sum_range(-2.0, 2.0, 1.0).await.expect("sum_range"), -2.0);
        assert_eq!(l.sum_range(0.0, 1.0, 0.5).await.expect("sum_range"), 0.5);
    }

    insert_and_remove_with_their_errors: corpus_sem_values::sem_values, |l, _r| {
        assert_eq!(l.edit_list().await.expect("edit_list"), [0.0, 15.0, 2.0, 3.0]);
        assert_eq!(l.insert_at(0.0).await.expect("insert_at"), [7.0, 1.0, 2.0, 3.0]);
        assert_eq!(l.insert_at(3.0).await.expect("insert_at"), [1.0, 2.0, 3.0, 7.0]);
        app_error(l.insert_at(5.0).await, "List index 5 is out of range");
        app_error(l.insert_at(-1.0).await, "List index -1 is out of range");
        app_error(l.insert_at(0.5).await, "List index 0.5 is not a whole number");
        assert_eq!(l.remove_at(0.0).await.expect("remove_at"), [2.0, 3.0]);
        assert_eq!(l.remove_at(2.0).await.expect("remove_at"), [1.0, 2.0]);
        app_error(l.remove_at(3.0).await, "List index 3 is out of range");
        app_error(l.remove_at(-1.0).await, "List index -1 is out of range");
        app_error(l.remove_at(1.5).await, "List index 1.5 is not a whole number");
        let left: Vec<(String, f64)> = l.remove_key("a".into()).await.expect("remove_key").into_iter().collect();
        assert_eq!(left, [("b".to_owned(), 2.0)]);
        app_error(l.remove_key("zz".into()).await, "cannot remove key 'zz'");
    }

    index_errors_on_writes_texts_and_modulo: corpus_sem_values::sem_values, |l, _r| {
        assert_eq!(l.set_at(2.0).await.expect("set_at"), [1.0, 2.0, 0.0]);
        app_error(l.set_at(3.0).await, "List index 3 is out of range");
        app_error(l.set_at(0.5).await, "List index 0.5 is not a whole number");
        assert_eq!(l.text_at(2.0).await.expect("text_at"), "c");
        app_error(l.text_at(1.5).await, "Text index 1.5");
        app_error(l.text_at(-1.0).await, "Text index -1 is out of range");
        assert_eq!(l.modulo(7.0, 3.0).await.expect("modulo"), 1.0);
        assert_eq!(l.modulo(7.5, 2.0).await.expect("modulo"), 1.5);
        app_error(l.modulo(7.0, 0.0).await, "remainder by zero");
        assert_eq!(l.by_literals(7.0).await.expect("by_literals"), (3.5, 2.0, 1.75, 1.0, -1.0));
        assert_eq!(l.by_literals(-7.0).await.expect("by_literals"), (-3.5, -2.0, -1.75, -1.0, 1.0));
        app_error(l.by_literal_zero(1.0).await, "division by zero");
        app_error(l.rem_literal_zero(1.0).await, "remainder by zero");
    }

    unbound_functions_endpoints_and_externals_and_defaults: corpus_sem_values::sem_values, |l, _r| {
        app_error(l.call_unbound(1.0).await, "Function variable was never given");
        app_error(l.call_unbound_endpoint().await, "this Endpoint variable was never given an endpoint");
        app_error(l.id_of_unbound_endpoint().await, "never given an endpoint");
        // An External declared without a value has a fresh cell holding 0.
        assert_eq!(l.read_fresh_external().await.expect("read_fresh_external"), 15.0);
        let want = (0.0, String::new(), false, 0.0, 0.0, String::new(), 0.0);
        assert_eq!(l.defaults().await.expect("defaults"), want);
    }

    references_inside_one_endpoint: corpus_sem_values::sem_values, |l, r| {
        assert_eq!(l.aliases().await.expect("aliases"), (4.0, 3.0, 4.0, 2.0, 2.0, 9.0));
        // Writes through an alias of endpoint data persist; a list stored in a map is shared.
        assert_eq!(l.alias_global(5.0).await.expect("alias_global"), 1.0);
        assert_eq!(l.globals().await.expect("globals"), (vec![5.0], vec![5.0, 5.0]));
        assert_eq!(l.alias_global(6.0).await.expect("alias_global"), 2.0);
        assert_eq!(l.globals().await.expect("globals"), (vec![5.0, 6.0], vec![6.0, 6.0]));
        // ... and a write through an alias of peered data replicates.
        assert_eq!(l.alias_peered("x".into()).await.expect("alias_peered"), 1.0);
        assert_eq!(r.peered().await.expect("peered"), texts(&["x"]));
        l.grab().await.expect("grab");
        assert_eq!(l.push_handle("y".into()).await.expect("push_handle"), 2.0);
        assert_eq!(r.peered().await.expect("peered"), texts(&["x", "y"]));
    }

    // ------------------------------------------------------------ effects (sem_effects)

    catch_sees_messages_from_nested_calls_and_other_endpoints: corpus_sem_effects::sem_effects,
        setup { let h = Host::new(); }
        left(h.note(), h.sig(), h.ext.clone(), h.extl.clone())
        |l, r| {
        assert_eq!(l.caught_nested(2.0).await.expect("caught_nested"), "ok 6");
        let seen = l.caught_nested(0.0).await.expect("caught_nested");
        assert!(seen.starts_with("caught: ") && seen.contains("division by zero"), "{seen}");
        assert_eq!(l.caught_index(1.0).await.expect("caught_index"), "2");
        let seen = l.caught_index(2.0).await.expect("caught_index");
        assert!(seen.contains('2'), "{seen}");
        assert_eq!(l.caught_remote(r.endpoint(), "here".into()).await.expect("caught_remote"), "1");
        assert_eq!(r.state().await.expect("state").2, 100.0);
        let seen = l.caught_remote(r.endpoint(), "gone".into()).await.expect("caught_remote");
        assert!(seen.contains("gone"), "{seen}");
        // The callee's `bumps += 100` before it raised is undone with the try body.
        assert_eq!(r.state().await.expect("state").2, 100.0);
    }

    catch_clauses_are_tried_in_order: corpus_sem_effects::sem_effects,
        setup { let h = Host::new(); }
        left(h.note(), h.sig(), h.ext.clone(), h.extl.clone())
        |l, _r| {
        let want = ("application".to_owned(), "application".to_owned(), "exception".to_owned());
        assert_eq!(l.kinds().await.expect("kinds"), want);
        // No clause matches: the exception reaches the host.
        app_error(l.only_network().await, "division by zero");
    }

    finally_runs_on_success_and_on_failure: corpus_sem_effects::sem_effects,
        setup { let h = Host::new(); }
        left(h.note(), h.sig(), h.ext.clone(), h.extl.clone())
        |l, _r| {
        assert_eq!(l.with_finally(5.0).await.expect("with_finally"), 201.0);
        assert_eq!(l.with_finally(0.0).await.expect("with_finally"), -98.0);
        assert_eq!(h.notes(), texts(&["finally 2", "finally -1"]));
        // Uncaught: `finally` runs (its host call happened), then the whole call is undone.
        app_error(l.finally_uncaught(0.0).await, "division by zero");
        assert_eq!(h.notes().last().map(String::as_str), Some("finally only 0"));
        assert_eq!(l.hit_count().await.expect("hit_count"), 2.0);
        assert_eq!(l.finally_uncaught(2.0).await.expect("finally_uncaught"), 5.0);
        assert_eq!(h.notes().last().map(String::as_str), Some("finally only 5"));
        assert_eq!(l.hit_count().await.expect("hit_count"), 3.0);
        // A catch body that raises: `finally` still runs and the new exception goes on.
        app_error(l.finally_after_failing_catch().await, "5");
        assert_eq!(h.notes().last().map(String::as_str), Some("after catch"));
        assert_eq!(h.notes().len(), 5);
        // `finally` runs when the try body returns, breaks or continues.
        assert_eq!(l.return_in_try().await.expect("return_in_try"), 1.0);
        assert_eq!(h.notes().last().map(String::as_str), Some("finally after return"));
        assert_eq!(l.break_in_try().await.expect("break_in_try"), 3.0);
        assert_eq!(h.notes()[6..], texts(&["loop 1", "loop 2", "loop 3"]));
    }

    a_failing_try_body_is_undone_on_every_endpoint: corpus_sem_effects::sem_effects,
        setup { let h = Host::new(); }
        left(h.note(), h.sig(), h.ext.clone(), h.extl.clone())
        |l, r| {
        // Before the try: kept [1], total 1, Right's bumps 1. The try body's writes (through an
        // alias, in a sequence, on another endpoint) are gone; the catch's `total += 100` stays.
        assert_eq!(l.undo(r.endpoint()).await.expect("undo"), (1.0, 101.0, 1.0, 0.0, 0.0));
        assert_eq!(l.state().await.expect("state"), (vec![1.0], 101.0, Vec::new(), 0.0));
        assert_eq!(r.state().await.expect("state"), (101.0, Vec::new(), 1.0, Vec::new()));
    }

    an_uncaught_exception_leaves_no_trace_anywhere: corpus_sem_effects::sem_effects,
        setup { let h = Host::new(); }
        left(h.note(), h.sig(), h.ext.clone(), h.extl.clone())
        |l, r| {
        app_error(l.doom(r.endpoint(), 3.0).await, "division by zero");
        assert_eq!(l.state().await.expect("state"), (Vec::new(), 0.0, Vec::new(), 0.0));
        assert_eq!(r.state().await.expect("state"), (0.0, Vec::new(), 0.0, Vec::new()));
        assert_eq!(h.ext.get(), 0.0);
        assert_eq!(h.extl.get(), Vec::<String>::new());
    }

    signals_run_after_commit_with_arguments_copied_when_signalled: corpus_sem_effects::sem_effects,
        setup { let h = Host::new(); }
        left(h.note(), h.sig(), h.ext.clone(), h.extl.clone())
        |l, _r| {
        assert_eq!(l.signal_copy().await.expect("signal_copy"), 2.0);
        let want = vec![(vec![1.0, 2.0], "first".to_owned(), 0.0), (vec![1.0, 2.0, 3.0], "second".to_owned(), 0.0)];
        assert_eq!(h.signals(), want);
        // A host function runs inside the transaction (the External still holds its committed
        // 0); the signal runs after the commit (it holds 4).
        l.signal_after_write(4.0).await.expect("signal_after_write");
        assert_eq!(*h.notes.lock().expect("notes"), [("inside".to_owned(), 0.0)]);
        assert_eq!(h.signals()[2], (vec![4.0], "after".to_owned(), 4.0));
        app_error(l.signal_then_fail().await, "division by zero");
        assert_eq!(h.signals().len(), 3, "no signal from an aborted call");
    }

    signals_are_delivered_once_in_commit_order_under_contention: corpus_sem_effects::sem_effects,
        threads(1)
        setup { let h = Host::new(); }
        left(h.note(), h.sig(), h.ext.clone(), h.extl.clone())
        |l, r| {
        const EACH: usize = 100;
        let all = contend(4, EACH, {
            let (l, r) = (l.clone(), r.clone());
            move |k| {
                let (l, r) = (l.clone(), r.clone());
                async move { if k % 2 == 0 { l.inc().await } else { r.tick().await } }
            }
        })
        .await;
        let expected: Vec<f64> = (1..=4 * EACH).map(|n| n as f64).collect();
        assert_eq!(all, expected);
        // One signal per committed transaction (none from retried attempts), in commit order.
        // A `tick` commits on Left (where its signal runs) after Right's call has returned.
        for _ in 0..500 {
            if h.signals().len() >= 4 * EACH {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let delivered: Vec<f64> = h.signals().iter().map(|(xs, _, _)| xs[0]).collect();
        assert_eq!(delivered, expected);
    }

    a_nested_sequence_started_from_a_block: corpus_sem_effects::sem_effects,
        setup { let h = Host::new(); }
        left(h.note(), h.sig(), h.ext.clone(), h.extl.clone())
        |l, r| {
        assert_eq!(l.outer(3.0).await.expect("outer"), (7.0, ">o1 o2 back0 o3".to_owned()));
        assert_eq!(l.outer(1.0).await.expect("outer"), (3.0, ">o1 o2 back0 o3".to_owned()));
        let trail = texts(&["b1", "b2", "b1", "b2"]);
        assert_eq!(l.state().await.expect("state").2, trail);
        assert_eq!(r.state().await.expect("state").1, trail);
        // The nested sequence's last block raises on Left: the caller catches it, and every
        // block's writes (Back's `trail.append('b1')` on Right too) are undone.
        let (seen, trail_len) = l.outer_caught(0.0).await.expect("outer_caught");
        assert!(seen.contains("division by zero"), "{seen}");
        assert_eq!(trail_len, 4.0);
        assert_eq!(r.state().await.expect("state").0, 1.0);
        assert_eq!(r.state().await.expect("state").1, trail);
        let (seen, trail_len) = l.outer_caught(2.0).await.expect("outer_caught");
        assert_eq!((seen.as_str(), trail_len), (">o1 o2 back0 o3", 6.0));
    }

    sequences_copy_their_arguments_and_results: corpus_sem_effects::sem_effects,
        setup { let h = Host::new(); }
        left(h.note(), h.sig(), h.ext.clone(), h.extl.clone())
        |l, r| {
        // A sequence whose last block runs on the starter copies its results to the caller.
        assert_eq!(l.lap().await.expect("lap"), (vec![7.0, 8.0], 1.0));
        assert_eq!(l.state().await.expect("state").0, [7.0]);
        // A one-block sequence runs on the starter only, and still copies its arguments and
        // its results: appending to the result leaves `kept` alone.
        let (mine, ys, n, kept) = l.solo().await.expect("solo");
        assert_eq!((mine, ys, n, kept), (vec![1.0], vec![7.0, 8.0], 2.0, 1.0));
        assert_eq!(l.carry().await.expect("carry"), (vec![0.0, 10.0], vec![0.0, 1.0, 2.0, 20.0]));
        assert_eq!(r.state().await.expect("state").3, [0.0, 1.0, 2.0]);
    }

    endpoint_calls_copy_their_arguments_and_results: corpus_sem_effects::sem_effects,
        setup { let h = Host::new(); }
        left(h.note(), h.sig(), h.ext.clone(), h.extl.clone())
        |l, r| {
        let want = (vec![1.0, 10.0], vec![1.0, 2.0, 20.0], vec![1.0, 2.0]);
        assert_eq!(l.lend(r.endpoint()).await.expect("lend"), want);
        assert_eq!(r.stashed().await.expect("stashed"), [1.0, 2.0]);
        // A call through `self` copies too.
        let want = (vec![1.0, 10.0], vec![1.0, 2.0, 20.0], vec![1.0, 2.0]);
        assert_eq!(l.self_lend().await.expect("self_lend"), want);
        // What the host got is its own copy too.
        let mut got = r.stashed().await.expect("stashed");
        got.push(3.0);
        assert_eq!(r.stashed().await.expect("stashed"), [1.0, 2.0]);
    }

    externals_copy_assign_and_containers: corpus_sem_effects::sem_effects,
        setup { let h = Host::new(); }
        left(h.note(), h.sig(), h.ext.clone(), h.extl.clone())
        |l, _r| {
        assert_eq!(l.ext_ops(5.0).await.expect("ext_ops"), (0.0, 10.0, 1.0, 6.0, 3.0, 6.0));
        assert_eq!(h.ext.get(), 6.0);
        assert_eq!(h.extl.get(), texts(&["5"]));
        assert_eq!(l.ext_ops(7.0).await.expect("ext_ops"), (6.0, 14.0, 1.0, 8.0, 4.0, 8.0));
        assert_eq!(h.ext.get(), 8.0);
        assert_eq!(l.ext_list().await.expect("ext_list"), (3.0, true, "5".to_owned()));
        assert_eq!(h.extl.get(), texts(&["5", "7", "x"]));
        // An index expression that yields an External place, on either side of `to`.
        assert_eq!(l.ext_in_map(9.0).await.expect("ext_in_map"), 18.0);
        assert_eq!(h.ext.get(), 9.0);
    }

    exception_catches_a_network_exception: corpus_sem_effects::sem_effects,
        setup { let h = Host::new(); }
        left(h.note(), h.sig(), h.ext.clone(), h.extl.clone())
        |l, r| {
        assert_eq!(l.network_kinds().await.expect("network_kinds"), "reached ");
        drop(r);
        let mut seen = String::new();
        for _ in 0..500 {
            seen = l.network_kinds().await.expect("network_kinds");
            if seen != "reached " {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(seen, "exception network");
    }

    // ------------------------------------------------------------ symmetric (sem_symmetric)

    symmetric_three_block_sequences_from_both_sides: corpus_sem_symmetric::sem_symmetric, |l, r| {
        let (li, ri) = (l.id().to_owned(), r.id().to_owned());
        assert_eq!(l.trip("x".into()).await.expect("trip"), (li.clone(), ri.clone(), li.clone(), 1.0));
        assert_eq!(r.trip("y".into()).await.expect("trip"), (ri.clone(), li.clone(), ri.clone(), 2.0));
        assert_eq!(l.trip("z".into()).await.expect("trip"), (li.clone(), ri.clone(), li.clone(), 3.0));
        // Each side's own data: `mine` counts the middle blocks that ran there.
        assert_eq!(l.mine_count().await.expect("mine"), 1.0);
        assert_eq!(r.mine_count().await.expect("mine"), 2.0);
        let seen = texts(&["x@a", "x@b", "y@a", "y@b", "z@a", "z@b"]);
        assert_eq!(l.seen_all().await.expect("seen"), seen);
        assert_eq!(r.seen_all().await.expect("seen"), seen);
    }

    symmetric_nested_sequence_runs_the_other_way: corpus_sem_symmetric::sem_symmetric, |l, r| {
        let (li, ri) = (l.id().to_owned(), r.id().to_owned());
        assert_eq!(l.ping().await.expect("ping"), ri);
        assert_eq!(r.ping().await.expect("ping"), li);
        // Deep's second block runs on the partner, which starts Ping from its side, so Ping's
        // last block runs back on the starter.
        assert_eq!(l.deep().await.expect("deep"), (li.clone(), li.clone()));
        assert_eq!(r.deep().await.expect("deep"), (ri.clone(), ri.clone()));
        assert_eq!(l.seen_all().await.expect("seen").len(), 4);
    }
}
