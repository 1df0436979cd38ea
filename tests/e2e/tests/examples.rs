//! The example protocols, generated and run on in-process pairs: each does what its header
//! comment promises.

use std::sync::{Arc, Mutex};

use waldo_e2e::{corpus_bank::bank, corpus_chat::chat, corpus_ping_pong::ping_pong};

#[tokio::test]
async fn bank_moves_money_atomically() {
    let (branch, vault) = bank::in_process_pair().await.expect("a pair");
    branch.open("a".into(), 100.0).await.expect("open");
    assert!(branch.send("a".into(), "b".into(), 30.0).await.expect("send"));
    assert!(!branch.send("a".into(), "b".into(), 500.0).await.expect("send"));
    assert_eq!(branch.balance("a".into()).await.expect("balance"), 70.0);
    assert_eq!(vault.holding("b".into()).await.expect("holding"), 30.0);
    // A missing key is an application exception that leaves no trace.
    let err = branch.balance("nobody".into()).await.expect_err("no such account");
    assert!(matches!(err, waldo::Error::Application { ref message } if message.contains("nobody")), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bank_keeps_its_total_under_concurrent_transfers() {
    let (branch, vault) = bank::in_process_pair().await.expect("a pair");
    for acct in ["a", "b", "c"] {
        branch.open(acct.into(), 1000.0).await.expect("open");
    }
    let mut tasks = Vec::new();
    for t in 0..4u32 {
        let branch = branch.clone();
        tasks.push(tokio::spawn(async move {
            let mut moved = 0.0;
            for i in 0..200u32 {
                let from = ["a", "b", "c"][((t + i) % 3) as usize];
                let amount = f64::from(1 + (i % 7));
                if branch.send(from.into(), "vault".into(), amount).await.expect("send") {
                    moved += amount;
                }
            }
            moved
        }));
    }
    let mut moved = 0.0;
    for t in tasks {
        moved += t.await.expect("task");
    }
    let mut left = 0.0;
    for acct in ["a", "b", "c"] {
        left += branch.balance(acct.into()).await.expect("balance");
    }
    assert_eq!(left + vault.holding("vault".into()).await.expect("holding"), 3000.0);
    assert_eq!(vault.holding("vault".into()).await.expect("holding"), moved);
}

#[tokio::test]
async fn ping_pong_rallies_four_hits() {
    let (pinger, ponger) = ping_pong::in_process_pair().await.expect("a pair");
    assert_eq!(pinger.play("alice".into()).await.expect("play"), (4.0, 4.0));
    assert_eq!(pinger.play("bob".into()).await.expect("play"), (4.0, 8.0));
    assert_eq!(ponger.total_hits().await.expect("hits"), 8.0);
    assert_eq!(ponger.server().await.expect("server"), "bob");
}

#[tokio::test]
async fn chat_signals_each_line_once_after_commit() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let (member, room) = chat::in_process_pair(move |who, what| sink.lock().expect("lock").push((who, what)))
        .await
        .expect("a pair");
    member.join("zoe".into()).await.expect("join");
    assert_eq!(member.say("hi".into()).await.expect("say"), 1.0);
    assert_eq!(member.say("yo".into()).await.expect("say"), 2.0);
    assert_eq!(room.size().await.expect("size"), 2.0);
    let seen = seen.lock().expect("lock").clone();
    let expected: Vec<(String, String)> = [("zoe", "joined"), ("zoe", "hi"), ("zoe", "yo")]
        .iter()
        .map(|(a, b)| ((*a).into(), (*b).into()))
        .collect();
    assert_eq!(seen, expected);
}
