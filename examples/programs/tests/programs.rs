//! Each example program runs both sides over loopback TCP and prints what happened: run
//! them as a user would and check what they print, `print` output included.

use std::process::Command;

/// Runs example program `bin`; its standard output.
fn run(bin: &str) -> String {
    let out = Command::new(bin).output().unwrap_or_else(|e| panic!("{bin} did not start: {e}"));
    assert!(out.status.success(), "{bin} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

fn assert_lines(output: &str, expected: &[&str]) {
    let mut rest = output;
    for line in expected {
        let at =
            rest.find(line).unwrap_or_else(|| panic!("{line:?} missing (or out of order) in:\n{output}"));
        rest = &rest[at + line.len()..];
    }
}

#[test]
fn ping_pong() {
    let out = run(env!("CARGO_BIN_EXE_ping_pong"));
    assert_lines(&out, &["play(alice) = (4, 4)", "play(bob) = (4, 8)", "total_hits() = 8, server() = bob"]);
}

#[test]
fn chat() {
    let out = run(env!("CARGO_BIN_EXE_chat"));
    assert_lines(&out, &["say(hi) = 1", "say(yo) = 2", "room size() = 2"]);
    for line in ["[room] zoe: joined", "[room] zoe: hi", "[room] zoe: yo"] {
        assert_eq!(out.matches(line).count(), 1, "{line:?} once in:\n{out}");
    }
}

#[test]
fn inventory() {
    let out = run(env!("CARGO_BIN_EXE_inventory"));
    assert_lines(
        &out,
        &[
            "order(apple, 4) = 2",
            "order(pear, 5) = 0",
            "order(plum, 1) = 0",
            "takings() = 2",
            r#"the host reads the stock: {"apple": 6.0, "pear": 2.0}"#,
        ],
    );
    assert_eq!(out.matches("[warehouse] shipped").count(), 1, "one shipment signalled:\n{out}");
}

#[test]
fn gossip_prints_once_after_each_commit() {
    let out = run(env!("CARGO_BIN_EXE_gossip"));
    assert_lines(
        &out,
        &[
            "ann said rain",
            "ann.tell(rain) = 1",
            "bob said sun",
            "bob.tell(sun) = 2",
            "ann heard: ann: rain, bob: sun",
            "bob heard: ann: rain, bob: sun",
        ],
    );
    assert_eq!(out.matches("said rain").count(), 1, "{out}");
    assert_eq!(out.matches("said sun").count(), 1, "{out}");
}

#[test]
fn relay() {
    let out = run(env!("CARGO_BIN_EXE_relay"));
    assert_lines(&out, &["relay(hi, 2) = hi>r1>r2>r3"]);
    assert_eq!(out.matches("count() = 1 and 1").count(), 3, "every pair committed once:\n{out}");
}
