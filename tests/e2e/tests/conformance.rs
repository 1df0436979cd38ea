//! The conformance suite: for each feature area, a protocol in `protocols/conf_*.wld` and
//! the exact values its generated code must give, checked on an in-process pair and over
//! loopback TCP (each scenario below is one module with an `in_process` and an `over_tcp`
//! test).

use std::sync::{Arc, Mutex};

use waldo::Error;

use waldo_e2e::{app_error, contend, scenarios, take_turns};

scenarios! {
    // ------------------------------------------------------------ values and control flow

    operators_and_precedence: corpus_conf_values::conf_values, |l, _r| {
        assert_eq!(l.arithmetic().await.expect("arithmetic"), (5.0, 9.0, 1.0, 6.0, -5.0));
        assert_eq!(l.logic().await.expect("logic"), (true, true, true, true));
        assert_eq!(l.texts().await.expect("texts"), ("abcd32.5".to_owned(), 5.0, true, "True".to_owned()));
    }

    runtime_errors_are_application_exceptions: corpus_conf_values::conf_values, |l, _r| {
        // The host's error names the file and line that raised.
        app_error(l.divide(1.0, 0.0).await, "division by zero at conf_values.wld:42");
        assert_eq!(l.divide(1.0, 4.0).await.expect("divide"), 0.25);
        assert_eq!(l.index(1.0).await.expect("index"), 20.0);
        app_error(l.index(3.0).await, "3");
        app_error(l.index(1.5).await, "List index 1.5 is not a whole number at conf_values.wld:45");
        assert_eq!(l.lookup("a".into()).await.expect("lookup"), 1.0);
        app_error(l.lookup("z".into()).await, "z");
        app_error(l.lookup("z".into()).await, " at conf_values.wld:49");
    }

    operations_that_raise_in_typed_and_dynamic_positions: corpus_conf_raise::conf_raise, |l, _r| {
        // Typed positions: Number and Text parameters and locals.
        app_error(l.typed_divide(1.0, 0.0).await, "division by zero");
        assert_eq!(l.typed_divide(-3.0, 4.0).await.expect("divide"), -0.75);
        app_error(l.typed_remainder(1.0, 0.0).await, "remainder by zero");
        assert_eq!(l.typed_remainder(-7.0, 3.0).await.expect("remainder"), -1.0);
        app_error(l.typed_compound(6.0, 0.0).await, "division by zero at conf_raise.wld:37");
        assert_eq!(l.typed_compound(7.0, 2.0).await.expect("compound"), (3.5, 1.0));
        assert_eq!(l.typed_char_at("héllo".into(), 1.0).await.expect("char"), "é");
        app_error(l.typed_char_at("abc".into(), 3.0).await, "Text index 3 is out of range");
        app_error(l.typed_char_at("abc".into(), 0.5).await, "Text index 0.5 is out of range");
        app_error(l.typed_char_at("abc".into(), -1.0).await, "Text index -1 is out of range");
        app_error(l.typed_range(0.0).await, "not zero");
        assert_eq!(l.typed_range(2.0).await.expect("range"), 2.0);
        // Dynamic positions: container elements, struct fields, shared variables.
        app_error(l.element_divide(0.0).await, "division by zero");
        assert_eq!(l.element_divide(5.0).await.expect("element"), 4.0);
        app_error(l.field_remainder(0.0).await, "remainder by zero");
        assert_eq!(l.field_remainder(4.0).await.expect("field"), 1.0);
        assert_eq!(l.field_char_at(1.0).await.expect("field char"), "y");
        app_error(l.field_char_at(2.0).await, "Text index 2 is out of range");
        // A shared variable divided by zero inside a try: the global's write is undone too.
        assert_eq!(l.shared_divide(0.0).await.expect("caught"), (5.0, -1.0));
        assert_eq!(l.state().await.expect("state"), (5.0, 7.0));
        assert_eq!(l.shared_divide(7.0).await.expect("divides"), (100.0, 1.0));
        // Sequence data, on the partner's side of the sequence.
        assert_eq!(l.sequence_data(9.0, 2.0, 1.0).await.expect("sequence"), (0.5, "b".to_owned()));
        // Raised in the partner's block: its line, in the partner's file.
        app_error(l.sequence_data(9.0, 0.0, 1.0).await, "division by zero at conf_raise.wld:22");
        app_error(l.sequence_data(9.0, 2.0, 3.0).await, "Text index 3 is out of range");
        // The whole call was undone: the shared variable is as the last success left it.
        assert_eq!(l.state().await.expect("state"), (100.0, 1.0));
        // Caught in a typed position: the message, and the local as it was before the try.
        assert_eq!(l.caught(0.0).await.expect("caught"), ("remainder by zero (`% 0`)".to_owned(), 3.0));
        assert_eq!(l.caught(3.0).await.expect("not caught"), ("none".to_owned(), 1.0));
    }

    exceptions_name_the_statement_that_raised: corpus_conf_places::places, |l, _r| {
        let at = |line: u32| format!(" at conf_places.wld:{line}");
        app_error(l.fin(0.0).await, &format!("division by zero{}", at(35)));
        app_error(l.remote(0.0).await, &format!("division by zero{}", at(12)));
        app_error(l.nested(0.0).await, &format!("remainder by zero (`% 0`){}", at(26)));
        app_error(l.after(0.0).await, &format!("division by zero{}", at(50)));
        assert_eq!(l.after(5.0).await.expect("after"), 1.0);
        app_error(l.spin(2.0).await, &format!("division by zero{}", at(56)));
        app_error(l.branch(0.0).await, &format!("division by zero{}", at(66)));
        assert_eq!(l.branch(1.0).await.expect("branch"), 2.0);
        app_error(l.unbound().await, &at(74));
        app_error(l.signals().await, &at(78));
        app_error(l.last(0.0).await, &format!("division by zero{}", at(82)));
        app_error(l.last_if(0.0).await, &format!("remainder by zero (`% 0`){}", at(85)));
        assert_eq!(l.last_if(2.0).await.expect("last if"), 1.0);
    }

    control_flow_and_function_wide_scope: corpus_conf_values::conf_values, |l, _r| {
        assert_eq!(l.loops().await.expect("loops"), (19.0, 5.0, "abc".to_owned()));
        assert_eq!(l.scope(3.0).await.expect("scope"), 6.0);
        assert_eq!(l.scope(-1.0).await.expect("scope"), 0.0);
        // Locals declared in a try body that raised are put back as well.
        assert_eq!(l.try_scope(2.0).await.expect("try scope"), (20.0, 0.0));
        assert_eq!(l.try_scope(5.0).await.expect("try scope"), (30.0, 0.0));
        for (x, want) in [(-5.0, "neg"), (0.0, "zero"), (3.0, "small"), (50.0, "big")] {
            assert_eq!(l.branches(x).await.expect("branches"), want);
        }
    }

    containers_alias_inside_and_copy_across: corpus_conf_values::conf_values, |l, _r| {
        assert_eq!(l.aliasing().await.expect("aliasing"), (3.0, 3.0, 3.0));
        // The partner changed its copies of the list and the struct; ours are untouched.
        assert_eq!(l.across().await.expect("across"), (2.0, 3.0, 1.0, 101.0, 1.0));
    }

    initializers_run_before_the_partner_can_reach_them: corpus_conf_create::conf_create, |l, _r| {
        // Right's `base` (computed from `one`), `xs` and `doubled` (by a function) were set
        // when Left's `onCreate` ran its sequence there.
        assert_eq!(l.result().await.expect("result"), 46.0);
    }

    structs_and_deep_equality: corpus_conf_values::conf_values, |l, _r| {
        assert_eq!(l.structs().await.expect("structs"), (7.0, 5.0, true));
        assert_eq!(l.cycles().await.expect("cycles"), (true, false, false));
        assert_eq!(l.tree().await.expect("a cyclic struct crosses"), 2.0);
        // More results than the runtime's result tuples hold.
        let nine = l.nine().await.expect("nine");
        assert_eq!((nine.0, nine.7, nine.8), (1.0, 8.0, "nine".to_owned()));
    }

    // ------------------------------------------------------------ the pair

    seven_block_sequence_with_sequence_data: corpus_conf_pair::conf_pair, |l, r| {
        assert_eq!(l.seven("w".into()).await.expect("seven"), ("w1234567".to_owned(), 7.0));
        let expected = (2.0, 1.0, "nobody".to_owned());
        assert_eq!(l.state().await.expect("state"), expected);
        assert_eq!(r.state().await.expect("state"), expected);
    }

    peered_writes_outside_sequences_replicate: corpus_conf_pair::conf_pair, |l, r| {
        l.bump(5.0).await.expect("bump");
        assert_eq!(r.state().await.expect("state").0, 5.0);
        r.bump(2.0).await.expect("bump");
        assert_eq!(l.state().await.expect("state").0, 7.0);
        // `Left controls owner`: Left writes it, Right reads the same value.
        l.name("ann".into()).await.expect("name");
        assert_eq!(r.state().await.expect("state"), (7.0, 0.0, "ann".to_owned()));
        assert_eq!(l.touch("a".into()).await.expect("touch"), 1.0);
        assert_eq!(r.state().await.expect("state").1, 1.0);
    }

    controls_hold_through_aliases_and_arguments: corpus_conf_pair::conf_pair, |l, r| {
        l.score(5.0).await.expect("the controlling side writes");
        assert_eq!(r.scores_seen().await.expect("scores"), vec![1.0, 5.0]);
        app_error(r.sneak_alias().await, "`scores` is controlled by `Left`: only code running on `Left` can change it");
        app_error(r.sneak_arg().await, "`scores` is controlled by `Left`");
        // Refused before anything changed, and the whole call (its `total += 1`) undone.
        assert_eq!(r.scores_seen().await.expect("scores"), vec![1.0, 5.0]);
        assert_eq!(l.state().await.expect("state").0, 0.0);
        l.score(6.0).await.expect("the controlling side writes");
        assert_eq!(r.scores_seen().await.expect("scores"), vec![1.0, 5.0, 6.0]);
    }

    a_partner_exception_reaches_the_caller_and_rolls_back_both_sides: corpus_conf_pair::conf_pair, |l, r| {
        app_error(l.fail(0.0).await, "division by zero");
        let untouched = (0.0, 0.0, "nobody".to_owned());
        assert_eq!(l.state().await.expect("state"), untouched);
        assert_eq!(r.state().await.expect("state"), untouched);
        // An uncaught exception on the partner's own call rolls back its peered writes too.
        app_error(r.raise_after_write().await, "division by zero");
        assert_eq!(l.state().await.expect("state"), untouched);
        assert_eq!(r.state().await.expect("state"), untouched);
    }

    try_catch_finally_undoes_across_the_pair: corpus_conf_pair::conf_pair, |l, r| {
        let (seen, total, log) = l.guarded(0.0).await.expect("guarded");
        assert!(seen.contains("division by zero"), "{seen}");
        // The try body's writes on both sides are undone; the code before it and `finally` stay.
        assert_eq!((total, log), (1.0, 1.0));
        assert_eq!(r.state().await.expect("state"), (1.0, 1.0, "nobody".to_owned()));
        let (seen, total, log) = l.guarded(1.0).await.expect("guarded");
        assert_eq!((seen.as_str(), total, log), ("no error", 1002.0, 4.0));
        assert_eq!(r.state().await.expect("state"), (1002.0, 4.0, "nobody".to_owned()));
    }

    nested_try_undoes_only_its_own_part: corpus_conf_pair::conf_pair, |l, r| {
        assert_eq!(l.nested().await.expect("nested"), 10001.0);
        assert_eq!(r.state().await.expect("state").0, 10001.0);
        assert_eq!(l.state().await.expect("state").1, 0.0);
    }

    ids_and_self: corpus_conf_pair::conf_pair, |l, r| {
        assert_eq!(l.me().await.expect("me"), l.id());
        assert_eq!(l.self_id().await.expect("self"), l.id());
        assert_eq!(r.me().await.expect("me"), r.id());
        assert_ne!(l.id(), r.id());
    }

    stop_and_stop_listeners: corpus_conf_pair::conf_pair, |l, r| {
        let ran = Arc::new(Mutex::new(Vec::new()));
        let (a, b) = (ran.clone(), ran.clone());
        l.on_stop(move || a.lock().expect("ran").push("left"));
        r.on_stop(move || b.lock().expect("ran").push("right"));
        l.bump(1.0).await.expect("bump");
        l.stop().await;
        for _ in 0..500 {
            if ran.lock().expect("ran").len() == 2 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let mut sides = ran.lock().expect("ran").clone();
        sides.sort_unstable();
        assert_eq!(sides, ["left", "right"], "each side's listener ran once");
        assert_eq!(l.state().await, Err(Error::Stopped));
        assert_eq!(r.state().await, Err(Error::Stopped));
        // A listener added after the stop runs at once.
        let late = Arc::new(Mutex::new(false));
        let flag = late.clone();
        r.on_stop(move || *flag.lock().expect("late") = true);
        assert!(*late.lock().expect("late"));
    }

    symmetric_sequences_run_in_both_directions: corpus_conf_symmetric::conf_symmetric, |l, r| {
        assert_eq!(l.tell("a".into()).await.expect("tell"), 1.0);
        assert_eq!(r.tell("b".into()).await.expect("tell"), 2.0);
        assert_eq!(l.tell("c".into()).await.expect("tell"), 3.0);
        assert_eq!(l.all().await.expect("all"), "abc");
        assert_eq!(r.all().await.expect("all"), "abc");
    }

    externals_commit_with_their_transaction: corpus_conf_externals::conf_externals,
        setup { let stock = waldo::External::new(std::collections::BTreeMap::<String, f64>::new()); }
        left(stock.clone())
        |l, r| {
        assert_eq!(l.count("apple".into()).await.expect("count"), 1.0);
        assert_eq!(l.count("pear".into()).await.expect("count"), 2.0);
        assert_eq!(r.rounds_seen().await.expect("rounds"), 2.0);
        // The failed try body's write is undone; the catch's write commits.
        assert_eq!(l.failing("plum".into()).await.expect("failing"), 3.0);
        let held: Vec<(String, f64)> = stock.get().into_iter().collect();
        assert_eq!(held, [("apple".to_owned(), 1.0), ("caught".to_owned(), 1.0), ("pear".to_owned(), 2.0)]);
        // Deep equality and `in` read the cells: equal values are equal, whatever the cells.
        assert_eq!(l.compare().await.expect("compare"), (true, false, true, true, false));
    }

    a_lost_partner_is_a_network_exception_in_waldo_code: corpus_conf_externals::conf_externals,
        setup { let stock = waldo::External::new(std::collections::BTreeMap::<String, f64>::new()); }
        left(stock.clone())
        |l, r| {
        assert_eq!(l.count("apple".into()).await.expect("count"), 1.0);
        // The last handle on the Right endpoint goes: its connection closes.
        drop(r);
        let mut seen = String::new();
        for _ in 0..500 {
            seen = l.lost().await.expect("lost");
            if seen == "network" {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(seen, "network");
        // The caught exception undid the sequence's part: only the first count is in the stock.
        assert_eq!(stock.get().len(), 1);
        let err = l.count("pear".into()).await.expect_err("the pair is broken");
        assert!(matches!(err, Error::Network { .. }), "{err}");
    }

    // ------------------------------------------------------------ calls, host functions, contention

    endpoint_calls_and_an_unknown_function: corpus_conf_calls::conf_calls,
        setup { let told = Arc::new(Mutex::new(Vec::<String>::new())); let log = told.clone(); }
        left(|x: f64| x * 2.0, move |s: String| log.lock().expect("log").push(s))
        |l, r| {
        assert_eq!(l.call(l.endpoint(), 10.0).await.expect("call"), 11.0);
        assert_eq!(l.calls_made().await.expect("calls"), 1.0);
        // Functions that wait and call themselves, directly and through each other.
        assert_eq!(l.depth(5.0).await.expect("depth"), 6.0);
        assert!(l.even(4.0).await.expect("even"));
        assert!(!l.even(7.0).await.expect("even"));
        let seen = l.call_unknown(r.endpoint()).await.expect("call_unknown");
        assert!(seen.contains("nosuch"), "{seen}");
        assert!(told.lock().expect("told").is_empty());
        // Results of a function the checker could not identify are checked when they arrive.
        assert_eq!(l.info_of(l.endpoint()).await.expect("info_of"), 7.0);
        app_error(l.info_of(r.endpoint()).await, "`info` returned a Text where a Number is expected");
        assert_eq!(l.pair_of(l.endpoint()).await.expect("pair_of"), (2.0, "two".to_owned()));
        app_error(l.pair_of(r.endpoint()).await, "`pair` returned 1 value where 2 are expected");
        assert_eq!(l.split_of(l.endpoint()).await.expect("split_of"), "2two");
        app_error(l.split_of(r.endpoint()).await, "`pair` returned 1 value where 2 are expected");
    }

    host_functions_and_signals_after_commit: corpus_conf_calls::conf_calls,
        setup { let told = Arc::new(Mutex::new(Vec::<String>::new())); let log = told.clone(); }
        left(|x: f64| x * 2.0, move |s: String| log.lock().expect("log").push(s))
        |l, _r| {
        assert_eq!(l.host(4.0).await.expect("host"), 8.0);
        assert_eq!(*told.lock().expect("told"), vec!["host 4".to_owned()]);
        app_error(l.host_then_fail(3.0).await, "division by zero");
        assert_eq!(*told.lock().expect("told"), vec!["host 4".to_owned()], "no signal from an aborted call");
    }

    contention_from_both_sides_commits_each_increment_once: corpus_conf_calls::conf_calls,
        threads(1)
        left(|x: f64| x, |_s: String| ())
        |l, r| {
        const EACH: usize = 150;
        let all = contend(4, EACH, {
            let (l, r) = (l.clone(), r.clone());
            move |k| {
                let (l, r) = (l.clone(), r.clone());
                async move { if k % 2 == 0 { l.inc().await } else { r.inc().await } }
            }
        })
        .await;
        let expected: Vec<f64> = (1..=4 * EACH).map(|n| n as f64).collect();
        assert_eq!(all, expected, "each increment saw a distinct count: serializable, exactly once");
        assert_eq!(l.count().await.expect("count"), (4 * EACH) as f64);
        assert_eq!(r.count().await.expect("count"), (4 * EACH) as f64);
    }

    two_callers_on_one_endpoint_take_turns: corpus_conf_calls::conf_calls,
        threads(1)
        left(|x: f64| x, |_s: String| ())
        |l, _r| {
        const EACH: usize = 200;
        let all = take_turns(TRANSPORT, EACH, {
            let l = l.clone();
            move |_| {
                let l = l.clone();
                async move { l.inc().await }
            }
        })
        .await;
        let expected: Vec<f64> = (1..=2 * EACH).map(|n| n as f64).collect();
        assert_eq!(all, expected, "each increment saw a distinct count");
    }

    one_caller_on_each_side_take_turns: corpus_conf_calls::conf_calls,
        threads(1)
        left(|x: f64| x, |_s: String| ())
        |l, r| {
        const EACH: usize = 200;
        let all = take_turns(TRANSPORT, EACH, {
            let (l, r) = (l.clone(), r.clone());
            move |k| {
                let (l, r) = (l.clone(), r.clone());
                async move { if k == 0 { l.inc().await } else { r.inc().await } }
            }
        })
        .await;
        let expected: Vec<f64> = (1..=2 * EACH).map(|n| n as f64).collect();
        assert_eq!(all, expected, "each increment saw a distinct count");
        assert_eq!(r.count().await.expect("count"), (2 * EACH) as f64);
    }

    // ------------------------------------------------------------ effects, failing host functions, Externals

    effects_on_both_sides_of_one_sequence: corpus_fix_effects::fix_effects,
        setup { let (left_seen, right_seen) = (Seen::default(), Seen::default()); }
        left(left_seen.recorder())
        right(right_seen.recorder())
        |l, _r| {
        // Each side signals after its own commit; neither waits for the other's effects.
        tokio::time::timeout(LIMIT, l.exact()).await.expect("the call returns").expect("exact");
        assert_eq!(left_seen.wait_for(1).await, [1.0]);
        assert_eq!(right_seen.wait_for(1).await, [2.0]);
        // And the process's other effects are not held up either.
        tokio::time::timeout(LIMIT, l.exact()).await.expect("the call returns").expect("exact");
        assert_eq!(left_seen.wait_for(2).await, [1.0, 1.0]);
        assert_eq!(right_seen.wait_for(2).await, [2.0, 2.0]);
    }

    effects_are_delivered_once_in_each_endpoints_commit_order: corpus_fix_effects::fix_effects,
        setup { let (left_seen, right_seen) = (Seen::default(), Seen::default()); }
        left(left_seen.recorder())
        right(right_seen.recorder())
        |l, r| {
        // Two concurrent callers, one on each side, each starting sequences that bump the
        // peered `n` and signal it on both sides.
        const EACH: usize = 500;
        let from_left = tokio::spawn({
            let l = l.clone();
            async move {
                for _ in 0..EACH {
                    l.go().await.expect("go");
                }
            }
        });
        let from_right = tokio::spawn({
            let r = r.clone();
            async move {
                for _ in 0..EACH {
                    r.back().await.expect("back");
                }
            }
        });
        tokio::time::timeout(4 * LIMIT, async { from_left.await.and(from_right.await) })
            .await
            .expect("the callers finish")
            .expect("no caller panicked");
        assert_eq!(l.count().await.expect("count"), (2 * EACH) as f64);
        let expected: Vec<f64> = (1..=2 * EACH).map(|n| n as f64).collect();
        // Every transaction's signals, exactly once on each side, in commit order (the
        // peered `n` numbers the commits, and each one locked it).
        assert_eq!(left_seen.wait_for(2 * EACH).await, expected);
        assert_eq!(right_seen.wait_for(2 * EACH).await, expected);
    }

    failing_host_functions_raise_where_they_are_called: corpus_fix_host_fns::fix_host_fns,
        left(failing, 3.0, false)
        right(failing)
        |l, r| {
        host_function_failures(&l, &r, true).await;
    }

    panicking_infallible_host_functions_raise_too: corpus_fix_host_fns::fix_host_fns,
        left(panicking, 3.0, false)
        right(panicking)
        |l, r| {
        host_function_failures(&l, &r, false).await;
    }

    externals_declared_in_waldo_start_with_a_fresh_cell: corpus_fix_externals::fix_externals,
        left(35.0, 31.0)
        |l, r| {
        assert_eq!(l.get(31.0).await.expect("get"), (35.0, 35.0));
        // `map_[31]` is the same cell as `num`.
        l.set(7.0).await.expect("set");
        assert_eq!(l.get(31.0).await.expect("get"), (7.0, 7.0));
        assert_eq!(l.endpoints().await.expect("endpoints"), 1.0);
        // A local and a struct field start with a cell holding their type's default.
        assert_eq!(l.local_and_field(4.0).await.expect("local_and_field"), (0.0, 4.0, 5.0, 0.0));
        // A local External gets a new cell at each declaration.
        assert_eq!(l.fresh_each_call().await.expect("fresh_each_call"), 0.0);
        assert_eq!(l.fresh_each_call().await.expect("fresh_each_call"), 0.0);
        // The partner's own External global, written in its block.
        assert_eq!(l.copy_to_partner(9.0).await.expect("copy_to_partner"), 10.0);
        assert_eq!(r.mine_now().await.expect("mine_now"), 9.0);
    }
}

/// How long a call that used to hang may take before the test says it hangs.
const LIMIT: std::time::Duration = std::time::Duration::from_secs(20);

/// The Numbers a host function was signalled with, in order.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<f64>>>);

impl Seen {
    fn recorder(&self) -> impl Fn(f64) + Send + Sync + 'static {
        let log = self.0.clone();
        move |x| log.lock().expect("seen").push(x)
    }

    /// Waits (a bounded time) until `n` signals arrived (the partner of a TCP pair commits
    /// after the call returns), and returns them.
    async fn wait_for(&self, n: usize) -> Vec<f64> {
        for _ in 0..2000 {
            if self.0.lock().expect("seen").len() >= n {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        self.0.lock().expect("seen").clone()
    }
}

// ANCHOR: host_functions
/// A fallible host function: panics for 1, refuses 2, multiplies anything else by 10.
fn failing(x: f64) -> Result<f64, String> {
    if x == 1.0 {
        panic!("boom {x}");
    }
    if x == 2.0 { Err(format!("refused {x}")) } else { Ok(x * 10.0) }
}

/// An infallible host function that panics for 1 and 2, and multiplies anything else by 10.
fn panicking(x: f64) -> f64 {
    if x == 1.0 || x == 2.0 {
        panic!("boom {x}");
    }
    x * 10.0
}
// ANCHOR_END: host_functions

/// The checks of `fix_host_fns` with `failing` (`fallible`) or `panicking` on both sides.
async fn host_function_failures(
    l: &waldo_e2e::corpus_fix_host_fns::fix_host_fns::Left,
    r: &waldo_e2e::corpus_fix_host_fns::fix_host_fns::Right,
    fallible: bool,
) {
    let two = if fallible { "refused 2" } else { "a host function panicked: boom 2" };
    assert_eq!(l.state().await.expect("state"), (0.0, 30.0, 0.0), "onCreate called the host function");
    // In a function body: uncaught, the call fails and is undone (`calls += 1` with it).
    app_error(l.local(1.0).await, "a host function panicked: boom 1");
    app_error(l.local(2.0).await, two);
    assert_eq!(l.state().await.expect("state").2, 0.0);
    // Caught, the code goes on.
    let seen = l.local_caught(1.0).await.expect("local_caught");
    assert!(seen.starts_with("caught: ") && seen.contains("a host function panicked: boom 1"), "{seen}");
    let seen = l.local_caught(2.0).await.expect("local_caught");
    assert!(seen.starts_with("caught: ") && seen.contains(two), "{seen}");
    assert_eq!(l.local(4.0).await.expect("local"), 40.0);
    assert_eq!(l.state().await.expect("state").2, 3.0);
    // In the partner's block: uncaught, the sequence is undone on both sides.
    app_error(l.remote(1.0).await, "a host function panicked: boom 1");
    app_error(l.remote(2.0).await, two);
    assert_eq!(l.state().await.expect("state").0, 0.0);
    assert_eq!(r.seen().await.expect("seen"), 0.0);
    // Caught there, both sides' writes commit.
    let seen = l.remote_caught(1.0).await.expect("remote_caught");
    assert!(seen.starts_with("caught: ") && seen.contains("a host function panicked: boom 1"), "{seen}");
    let seen = l.remote_caught(2.0).await.expect("remote_caught");
    assert!(seen.starts_with("caught: ") && seen.contains(two), "{seen}");
    assert_eq!(l.state().await.expect("state").0, 4.0);
    assert_eq!(r.seen().await.expect("seen"), 4.0);
    // Both endpoints go on serving.
    assert_eq!(l.remote(5.0).await.expect("remote"), "50");
    assert_eq!(r.seen().await.expect("seen"), 6.0);
}

/// A global's initializer that raises (it runs before the endpoint is connected): the
/// endpoint is not created, and over TCP both sides hear why, as when `onCreate` fails.
mod initializer_failing_before_the_connection {
    use super::*;
    use waldo_e2e::corpus_init_fails::init_fails as m;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn in_process() {
        app_error(m::in_process_pair().await, "division by zero");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn over_tcp() {
        let listener = m::Right::listen("127.0.0.1:0").await.expect("listen");
        let (left, right) = tokio::join!(m::Left::connect(listener.local_addr()), listener.accept());
        app_error(right, "division by zero");
        let err = left.expect_err("the partner of a failed side is not ready");
        assert!(err.to_string().contains("division by zero"), "the partner hears why: {err}");
    }
}

/// `onCreate` calling a host function that fails: uncaught, the endpoint is not created (in
/// process and over TCP, where the listener goes on serving); caught, it is, and serves calls.
mod host_function_failing_in_on_create {
    use super::*;
    use waldo_e2e::corpus_fix_host_fns::fix_host_fns as m;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn in_process() {
        app_error(m::in_process_pair(failing, 1.0, false, failing).await, "a host function panicked: boom 1");
        app_error(m::in_process_pair(failing, 2.0, false, failing).await, "refused 2");
        app_error(
            m::in_process_pair(panicking, 2.0, false, panicking).await,
            "a host function panicked: boom 2",
        );
        for (x, f) in [(1.0, failing as fn(f64) -> Result<f64, String>), (2.0, failing)] {
            let (l, _r) = m::in_process_pair(f, x, true, failing).await.expect("a pair");
            assert_eq!(l.state().await.expect("state").1, -1.0, "the catch ran");
            assert_eq!(l.local(3.0).await.expect("local"), 30.0);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn over_tcp() {
        let listener = m::Right::listen("127.0.0.1:0").await.expect("listen");
        let addr = listener.local_addr();
        for (x, needle) in [(1.0, "a host function panicked: boom 1"), (2.0, "refused 2")] {
            let (left, right) =
                tokio::join!(m::Left::connect(addr, failing, x, false), listener.accept(failing));
            app_error(left, needle);
            assert!(right.is_err(), "the partner of a failed onCreate is not ready: {right:?}");
        }
        for x in [1.0, 2.0] {
            let (l, _r) =
                tokio::try_join!(m::Left::connect(addr, failing, x, true), listener.accept(failing))
                    .expect("the listener goes on serving");
            assert_eq!(l.state().await.expect("state").1, -1.0, "the catch ran");
            assert_eq!(l.remote(3.0).await.expect("remote"), "30");
        }
    }
}

/// The program from the original Waldo tests: `S::new(35, 31)`, then `get(31)`.
#[tokio::test]
async fn externals_declared_in_waldo_in_a_single_endpoint_protocol() {
    use waldo_e2e::corpus_fix_solo_externals::x::S;
    let s = S::new(35.0, 31.0).await.expect("new");
    assert_eq!(s.get(31.0).await.expect("get"), (35.0, 35.0));
    s.set(36.0).await.expect("set");
    assert_eq!(s.get(31.0).await.expect("get"), (36.0, 36.0));
    assert_eq!(s.endpoints().await.expect("endpoints"), 1.0);
}
