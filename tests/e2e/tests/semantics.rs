//! Generated code meets the language's rules on programs written to catch the hard cases:
//! function-wide scope, `try` undoing locals, tail returns, External containers, names that
//! would collide in Rust, and dynamic endpoint calls with wrong arguments.

use std::collections::BTreeMap;

use waldo_e2e::{corpus_name_collisions::clash, corpus_scope_and_undo::scoping};

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
    assert_eq!(client.from_inner_().await.expect("runs"), 3.0);
    // A host closure parameter named `args`; the sequence doubles, the closure adds one.
    assert_eq!(client.apply(|n| n + 1.0, 20.0).await.expect("runs"), 41.0);
    assert_eq!(server.size().await.expect("runs"), 0.0);
    let _struct_named_like_the_endpoint = clash::Server2 { n: 1.0 };
}

#[tokio::test]
async fn a_dynamic_call_with_wrong_arguments_is_an_application_exception() {
    let (_server, client) = clash::in_process_pair(clash::Config { port: 1.0 }).await.expect("a pair");
    let endpoint = client.endpoint();
    let tx = waldo::__rt::Tx::begin(waldo::__rt::Priority::next());
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
    assert!(matches!(err, Err(waldo::__rt::Raise::Exception(e)) if e.message == "no public function `nope`"));
    tx.abort();
}
