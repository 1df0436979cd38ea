//! The example protocols over loopback TCP: each does what its header comment promises, as
//! it does on an in-process pair (`examples.rs`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use waldo_e2e::corpus_bank::bank::{Branch, Vault};
use waldo_e2e::corpus_chat::chat::{Member, Room};
use waldo_e2e::corpus_gossip::gossip::{Other, Peer};
use waldo_e2e::corpus_inventory::inventory::{Shop, Warehouse};
use waldo_e2e::corpus_ping_pong::ping_pong::{Pinger, Ponger};
use waldo_e2e::corpus_relay::relay::{Receiver, Sender};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_pong_over_tcp() {
    let listener = Ponger::listen("127.0.0.1:0").await.expect("listen");
    let (pinger, ponger) =
        tokio::try_join!(Pinger::connect(listener.local_addr()), listener.accept()).expect("a pair");
    assert_eq!(pinger.play("alice".into()).await.expect("play"), (4.0, 4.0));
    assert_eq!(pinger.play("bob".into()).await.expect("play"), (4.0, 8.0));
    assert_eq!(ponger.total_hits().await.expect("hits"), 8.0);
    assert_eq!(ponger.server().await.expect("server"), "bob");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_over_tcp_signals_each_line_once_in_order() {
    let listener = Room::listen("127.0.0.1:0").await.expect("listen");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let heard = lines.clone();
    let on_line = move |who: String, body: String| heard.lock().expect("lines").push((who, body));
    let (member, room) =
        tokio::try_join!(Member::connect(listener.local_addr()), listener.accept(on_line)).expect("a pair");
    member.join("zoe".into()).await.expect("join");
    assert_eq!(member.say("hi".into()).await.expect("say"), 1.0);
    assert_eq!(member.say("yo".into()).await.expect("say"), 2.0);
    assert_eq!(room.size().await.expect("size"), 2.0);
    // The Room commits (and then signals) when the Member's `Commit` arrives, just after
    // the Member's call returned.
    for _ in 0..500 {
        if lines.lock().expect("lines").len() >= 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let pairs =
        |v: &[(&str, &str)]| v.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect::<Vec<_>>();
    assert_eq!(*lines.lock().expect("lines"), pairs(&[("zoe", "joined"), ("zoe", "hi"), ("zoe", "yo")]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_over_tcp_with_an_external_and_host_functions() {
    let stock = waldo::External::new(BTreeMap::from([("apple".to_owned(), 10.0), ("pear".to_owned(), 2.0)]));
    let reports = Arc::new(Mutex::new(Vec::new()));
    let seen = reports.clone();
    let report = move |item: String, count: f64| seen.lock().expect("reports").push((item, count));
    let price = |item: String| if item == "apple" { 0.5 } else { 2.0 };
    let listener = Warehouse::listen("127.0.0.1:0").await.expect("listen");
    let (shop, _warehouse) =
        tokio::try_join!(Shop::connect(listener.local_addr(), price), listener.accept(stock.clone(), report))
            .expect("a pair");
    assert_eq!(shop.order("apple".into(), 4.0).await.expect("order"), 2.0);
    assert_eq!(shop.order("pear".into(), 5.0).await.expect("order"), 0.0);
    assert_eq!(shop.order("plum".into(), 1.0).await.expect("order"), 0.0);
    assert_eq!(shop.takings().await.expect("takings"), 2.0);
    assert_eq!(stock.get(), BTreeMap::from([("apple".to_owned(), 6.0), ("pear".to_owned(), 2.0)]));
    assert_eq!(*reports.lock().expect("reports"), vec![("apple".to_owned(), 4.0)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_is_symmetric_over_tcp() {
    let listener = Other::listen("127.0.0.1:0").await.expect("listen");
    let (ann, bob) =
        tokio::try_join!(Peer::connect(listener.local_addr(), "ann".into()), listener.accept("bob".into()))
            .expect("a pair");
    assert_eq!(ann.tell("rain".into()).await.expect("tell"), 1.0);
    assert_eq!(bob.tell("sun".into()).await.expect("tell"), 2.0);
    assert_eq!(ann.heard().await.expect("heard"), "ann: rain, bob: sun");
    assert_eq!(bob.heard().await.expect("heard"), "ann: rain, bob: sun");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_commits_along_a_chain_of_pairs() {
    let mut pairs = Vec::new();
    for name in ["r1", "r2", "r3"] {
        let listener = Receiver::listen("127.0.0.1:0").await.expect("listen");
        pairs.push(
            tokio::try_join!(Sender::connect(listener.local_addr()), listener.accept(name.into()))
                .expect("a pair"),
        );
    }
    for i in 0..pairs.len() - 1 {
        pairs[i].1.follow(pairs[i + 1].0.endpoint()).await.expect("follow");
    }
    assert_eq!(pairs[0].0.relay("hi".into(), 2.0).await.expect("relay"), "hi>r1>r2>r3");
    for (sender, receiver) in &pairs {
        assert_eq!(sender.count().await.expect("count"), 1.0);
        assert_eq!(receiver.count().await.expect("count"), 1.0);
    }
    // A relay that runs past the end of the chain fails at the last Receiver, whose `next`
    // was never set, and leaves no trace on any pair.
    let err = pairs[0].0.relay("far".into(), 3.0).await.expect_err("the chain is too short");
    assert!(matches!(err, waldo::Error::Application { .. }), "{err}");
    for (sender, receiver) in &pairs {
        assert_eq!(sender.count().await.expect("count"), 1.0);
        assert_eq!(receiver.count().await.expect("count"), 1.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bank_over_tcp_keeps_its_total_under_concurrent_transfers() {
    let listener = Vault::listen("127.0.0.1:0").await.expect("listen");
    let (branch, vault) =
        tokio::try_join!(Branch::connect(listener.local_addr()), listener.accept()).expect("a pair");
    for acct in ["a", "b", "c"] {
        branch.open(acct.into(), 1000.0).await.expect("open");
    }
    let mut tasks = Vec::new();
    for t in 0..6u32 {
        let branch = branch.clone();
        tasks.push(tokio::spawn(async move {
            let mut moved = 0.0;
            for i in 0..150u32 {
                let from = ["a", "b", "c"][((t + i) % 3) as usize];
                let amount = f64::from(1 + (i % 7));
                if branch.send(from.into(), "vault".into(), amount).await.expect("send") {
                    moved += amount;
                }
            }
            moved
        }));
    }
    // Reads on the Vault side run while the transfers go on.
    let reader = tokio::spawn({
        let vault = vault.clone();
        async move {
            let mut last = 0.0;
            for _ in 0..100 {
                let now = vault.holding("vault".into()).await.expect("holding");
                assert!(now >= last, "committed holdings only grow: {last} then {now}");
                last = now;
            }
        }
    });
    let mut moved = 0.0;
    for t in tasks {
        moved += t.await.expect("a task");
    }
    reader.await.expect("the reader");
    let mut left = 0.0;
    for acct in ["a", "b", "c"] {
        left += branch.balance(acct.into()).await.expect("balance");
    }
    let held = vault.holding("vault".into()).await.expect("holding");
    assert_eq!(held, moved, "every committed transfer credited once");
    assert_eq!(left + held, 3000.0, "the total is constant");
}
