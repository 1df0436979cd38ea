//! Generated endpoints over real loopback TCP: results, stop, every handshake refusal (on
//! both sides, with the listener serving on), deviations after the handshake, a silent
//! partner, a partner process killed mid-sequence and one frozen mid-sequence (lost by its
//! silence), the ready barrier and a failing `onCreate`, a deadline mid-sequence, and a
//! thousand connections to one listener.
//!
//! The raw clients here speak the wire format byte by byte, as documented in the runtime's
//! `tcp` module, so these tests also pin that format down.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use waldo::net::{MAGIC, kind};
use waldo::{Error, TcpOptions};
use waldo_e2e::corpus_bank::bank::{self, Branch, Vault};
use waldo_e2e::corpus_ping_pong::ping_pong::Pinger;
use waldo_e2e::corpus_ready::ready::{Guest, Host};
use waldo_e2e::corpus_stall::stall::{Helper, Starter, StarterListener};
use waldo_e2e::raw::*;

const WAIT: Duration = Duration::from_secs(10);

async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f).await.unwrap_or_else(|_| panic!("{what} took more than {WAIT:?}"))
}

fn refused(e: &Error, needle: &str) -> bool {
    matches!(e, Error::HandshakeRefused { reason } if reason.contains(needle))
}

// ---------------------------------------------------------------- the wire, by hand

/// A raw Branch that completes the handshake with the Vault listening at `addr`.
async fn raw_branch(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let mut first = preamble();
    first.extend(hello("Bank", bank::FINGERPRINT, 0, "Branch", 42));
    s.write_all(&first).await.expect("write the hello");
    let mut pre = [0u8; 8];
    s.read_exact(&mut pre).await.expect("the listener's preamble");
    assert_eq!(pre.to_vec(), preamble());
    let theirs = read_frame(&mut s).await.expect("the listener's hello");
    assert_eq!(theirs[0], kind::HELLO);
    s.write_all(&ack(hello_nonce(&theirs))).await.expect("write the ack");
    let echoed = read_frame(&mut s).await.expect("the listener's ack");
    assert_eq!(echoed, ack(42)[4..].to_vec(), "the listener echoes our nonce");
    s
}

/// Reads the listener's preamble.
async fn skip_preamble(s: &mut TcpStream) {
    let mut pre = [0u8; 8];
    within("the preamble", s.read_exact(&mut pre)).await.expect("the listener's preamble");
    assert_eq!(pre.to_vec(), preamble());
}

/// Reads frames until a Refuse or Close frame; its kind and text.
async fn last_word(s: &mut TcpStream) -> (u8, String) {
    while let Some(f) = within("a frame", read_frame(s)).await {
        if f[0] == kind::REFUSE || f[0] == kind::CLOSE {
            return (f[0], frame_text(&f));
        }
    }
    panic!("the connection ended without a Refuse or Close frame");
}

/// A good Branch connects through `listener` and commits a transfer. The Branch waits up to
/// 10 s for the listener's first bytes, not the default 2 s: a listener that is clearing idle
/// sockets first reaches it later on a machine busy with the other tests of this file (which
/// run at the same time); `within` still bounds the whole at 10 s.
async fn serves(listener: &bank::VaultListener) {
    let addr = listener.local_addr();
    let patient = TcpOptions::default().with_handshake_idle(Duration::from_secs(10));
    let (branch, vault) = within("a good client", async {
        tokio::try_join!(Branch::connect(addr).with_options(patient), listener.accept())
    })
    .await
    .expect("a good client is served");
    branch.open("a".into(), 10.0).await.expect("open");
    assert!(branch.send("a".into(), "b".into(), 4.0).await.expect("send"));
    assert_eq!(vault.holding("b".into()).await.expect("holding"), 4.0);
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bank_over_tcp_gives_the_documented_results_and_stops_both_sides() {
    let listener = Vault::listen("127.0.0.1:0").await.expect("listen");
    let addr = listener.local_addr();
    let (branch, vault) = tokio::try_join!(Branch::connect(addr), listener.accept()).expect("a pair");
    branch.open("a".into(), 100.0).await.expect("open");
    assert!(branch.send("a".into(), "b".into(), 30.0).await.expect("send"));
    assert!(!branch.send("a".into(), "b".into(), 500.0).await.expect("send"));
    assert_eq!(branch.balance("a".into()).await.expect("balance"), 70.0);
    assert_eq!(vault.holding("b".into()).await.expect("holding"), 30.0);
    let err = branch.balance("nobody".into()).await.expect_err("no such account");
    assert!(matches!(err, Error::Application { ref message } if message.contains("nobody")), "{err}");

    let stops = Arc::new(AtomicUsize::new(0));
    let s = stops.clone();
    branch.on_stop(move || {
        s.fetch_add(1, Ordering::SeqCst);
    });
    let (tx, rx) = tokio::sync::oneshot::channel();
    let s = stops.clone();
    vault.on_stop(move || {
        s.fetch_add(10, Ordering::SeqCst);
        let _ = tx.send(());
    });
    within("stop", branch.stop()).await;
    within("the partner's stop listener", rx).await.expect("the Vault's listener ran");
    assert_eq!(stops.load(Ordering::SeqCst), 11, "each side's listener ran once");
    assert_eq!(branch.balance("a".into()).await, Err(Error::Stopped));
    assert_eq!(vault.holding("b".into()).await, Err(Error::Stopped));
    // Stopping again returns at once.
    within("a second stop", vault.stop()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_names_its_cause_on_both_sides_and_the_listener_serves_on() {
    let listener = Vault::listen("127.0.0.1:0").await.expect("listen");
    let addr = listener.local_addr();
    serves(&listener).await;

    // A different protocol.
    let err = within("ping-pong", Pinger::connect(addr)).await.expect_err("refused");
    assert!(refused(&err, "different protocols: the peer speaks `Bank`, this side `PingPong`"), "{err}");
    let theirs = within("a failure", listener.next_failure()).await.expect("a failure");
    assert!(
        refused(&theirs, "different protocols: the peer speaks `PingPong`, this side `Bank`"),
        "{theirs}"
    );
    serves(&listener).await;

    // Another version of the same protocol (another fingerprint).
    let mut raw = TcpStream::connect(addr).await.expect("connect");
    let mut first = preamble();
    first.extend(hello("Bank", bank::FINGERPRINT ^ 1, 0, "Branch", 42));
    raw.write_all(&first).await.expect("write the hello");
    skip_preamble(&mut raw).await;
    let (k, reason) = last_word(&mut raw).await;
    assert_eq!(k, kind::REFUSE);
    let expected = format!(
        "different versions of protocol `Bank`: the peer's fingerprint is {:016x}, this side's {:016x} \
         (build both sides from the same .wld file)",
        bank::FINGERPRINT ^ 1,
        bank::FINGERPRINT
    );
    assert!(reason.contains(&expected), "{reason}");
    let theirs = within("a failure", listener.next_failure()).await.expect("a failure");
    assert!(refused(&theirs, "different versions of protocol `Bank`"), "{theirs}");
    serves(&listener).await;

    // The same role twice.
    let err = within("a second vault", Vault::connect(addr)).await.expect_err("refused");
    assert!(refused(&err, "same role twice: both sides play `Vault`"), "{err}");
    let theirs = within("a failure", listener.next_failure()).await.expect("a failure");
    assert!(refused(&theirs, "same role twice"), "{theirs}");
    serves(&listener).await;

    // Garbage instead of a handshake: refused, and told so.
    let mut raw = TcpStream::connect(addr).await.expect("connect");
    raw.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
    skip_preamble(&mut raw).await;
    let (k, reason) = last_word(&mut raw).await;
    assert_eq!(k, kind::REFUSE);
    assert!(reason.contains("not a Waldo endpoint"), "{reason}");
    let theirs = within("a failure", listener.next_failure()).await.expect("a failure");
    assert!(refused(&theirs, "not a Waldo endpoint: it sent the bytes 47 45 54 20"), "{theirs}");
    serves(&listener).await;

    // A wrong wire version.
    let mut raw = TcpStream::connect(addr).await.expect("connect");
    let mut bytes = MAGIC.to_vec();
    bytes.extend_from_slice(&99u16.to_le_bytes());
    raw.write_all(&bytes).await.expect("write");
    skip_preamble(&mut raw).await;
    let (_, reason) = last_word(&mut raw).await;
    assert!(reason.contains("wrong wire version: the peer speaks version 99"), "{reason}");
    let theirs = within("a failure", listener.next_failure()).await.expect("a failure");
    assert!(refused(&theirs, "wrong wire version"), "{theirs}");
    serves(&listener).await;

    // A truncated handshake frame.
    let mut raw = TcpStream::connect(addr).await.expect("connect");
    let mut bytes = preamble();
    bytes.extend_from_slice(&100u32.to_le_bytes());
    bytes.extend_from_slice(&[kind::HELLO, 1, 2, 3]);
    raw.write_all(&bytes).await.expect("write");
    raw.shutdown().await.expect("shutdown");
    let theirs = within("a failure", listener.next_failure()).await.expect("a failure");
    assert!(refused(&theirs, "inside a handshake frame (8 bytes of it arrived)"), "{theirs}");
    serves(&listener).await;

    // A handshake frame over the limit: refused before any of it is read.
    let mut raw = TcpStream::connect(addr).await.expect("connect");
    let mut bytes = preamble();
    bytes.extend_from_slice(&(1u32 << 30).to_le_bytes());
    raw.write_all(&bytes).await.expect("write");
    skip_preamble(&mut raw).await;
    let (_, reason) = last_word(&mut raw).await;
    assert!(reason.contains("a frame of 1073741824 bytes is larger than the maximum of 65536"), "{reason}");
    let theirs = within("a failure", listener.next_failure()).await.expect("a failure");
    assert!(refused(&theirs, "larger than the maximum"), "{theirs}");
    serves(&listener).await;

    // A bad nonce echo.
    let mut raw = TcpStream::connect(addr).await.expect("connect");
    let mut first = preamble();
    first.extend(hello("Bank", bank::FINGERPRINT, 0, "Branch", 7));
    raw.write_all(&first).await.expect("write");
    let mut pre = [0u8; 8];
    raw.read_exact(&mut pre).await.expect("preamble");
    let theirs = read_frame(&mut raw).await.expect("hello");
    raw.write_all(&ack(hello_nonce(&theirs) ^ 1)).await.expect("write");
    let (k, reason) = last_word(&mut raw).await;
    assert_eq!(k, kind::REFUSE);
    assert!(reason.contains("bad nonce"), "{reason}");
    let theirs = within("a failure", listener.next_failure()).await.expect("a failure");
    assert!(refused(&theirs, "bad nonce"), "{theirs}");
    serves(&listener).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deviations_after_the_handshake_close_the_connection_with_the_reason() {
    let options = TcpOptions::default().with_max_frame(1024);
    let listener = Vault::listen("127.0.0.1:0").with_options(options).await.expect("listen");
    let addr = listener.local_addr();
    let cases: [(&[u8], &str); 4] = [
        (&4096u32.to_le_bytes(), "a frame of 4096 bytes is larger than the maximum of 1024"),
        (&[10, 0, 0, 0, 1, 2, 3], "the connection ended inside a frame (7 bytes of it arrived)"),
        (&[2, 0, 0, 0, 0x77, 0], "a frame of unknown kind 0x77"),
        (&[3, 0, 0, 0, 1, 0xff, 0xff], "a malformed message"),
    ];
    for (bytes, expected) in cases {
        let mut raw = raw_branch(addr).await;
        raw.write_all(bytes).await.expect("write");
        raw.shutdown().await.expect("shutdown");
        let err = within("accept", listener.accept()).await.expect_err("the connection is closed");
        assert!(matches!(&err, Error::ProtocolDeviation { message } if message.contains(expected)), "{err}");
        if !expected.contains("ended inside") {
            let (k, reason) = last_word(&mut raw).await;
            assert_eq!(k, kind::CLOSE);
            assert!(reason.contains(expected), "{reason}");
        }
        serves(&listener).await;
    }
}

/// A well-formed message whose values do not have the protocol's types (a buggy or hostile
/// peer with the right fingerprint) is a deviation: it closes the connection before any
/// value reaches a block or a replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_of_the_wrong_type_close_the_connection() {
    use waldo::__rt::{Priority, TxId, Value};
    use waldo::engine::proto::encode_msg;
    let listener = Vault::listen("127.0.0.1:0").await.expect("listen");
    // `Transfer(Text from, Text to, Number amount) returns TrueFalse ok`: a Number and a
    // Text swapped, at any depth of the message, is refused.
    let cases = [
        (
            vec![Value::Number(1.0), Value::text("b"), Value::Number(5.0), Value::Bool(false)],
            "value 1 of sequence `Transfer`'s data is a Number where a Text was expected",
        ),
        (
            vec![Value::text("a"), Value::text("b"), Value::new_list(Vec::new()), Value::Bool(false)],
            "value 3 of sequence `Transfer`'s data is a List where a Number was expected",
        ),
    ];
    for (locals, expected) in cases {
        let mut raw = raw_branch(listener.local_addr()).await;
        let work = waldo::engine::Msg::Work {
            tx: TxId { origin: 7, n: 1 },
            prio: Priority::from_parts(1, 7),
            from_parent: true,
            frame: 1,
            seq: 0,
            block: 1,
            locals,
            peered: Vec::new(),
            vote: false,
        };
        let payload = encode_msg(&work).expect("encodes");
        let mut frame = (payload.len() as u32).to_le_bytes().to_vec();
        frame.extend(payload);
        raw.write_all(&frame).await.expect("write");
        let err = within("accept", listener.accept()).await.expect_err("the connection is closed");
        assert!(matches!(&err, Error::ProtocolDeviation { message } if message.contains(expected)), "{err}");
        let (k, reason) = last_word(&mut raw).await;
        assert_eq!(k, kind::CLOSE);
        assert!(reason.contains(expected), "{reason}");
        serves(&listener).await;
    }
}

/// The results a sequence brings back are checked too: a `Done` whose data has the wrong
/// types fails the call and closes the connection, before the caller sees a value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_of_the_wrong_type_close_the_connection() {
    use waldo::__rt::Value;
    use waldo::engine::proto::{decode_msg, encode_msg};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    // A raw Vault: the listener's side of the handshake, Ready, then a wrong answer.
    let vault = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.expect("accept");
        let mut pre = [0u8; 8];
        s.read_exact(&mut pre).await.expect("the branch's preamble");
        let theirs = read_frame(&mut s).await.expect("the branch's hello");
        let mut first = preamble();
        first.extend(hello("Bank", bank::FINGERPRINT, 1, "Vault", 7));
        s.write_all(&first).await.expect("write the hello");
        read_frame(&mut s).await.expect("the branch's ack");
        s.write_all(&ack(hello_nonce(&theirs))).await.expect("echo the nonce");
        s.write_all(&frame(&[kind::READY])).await.expect("ready");
        loop {
            let f = read_frame(&mut s).await.expect("a message");
            let Ok(waldo::engine::Msg::Work { tx, frame: id, .. }) = decode_msg::<Value>(&f) else {
                continue;
            };
            let done = waldo::engine::Msg::Done {
                tx,
                from_parent: false,
                frame: id,
                locals: vec![Value::Number(1.0), Value::text("b"), Value::Number(5.0), Value::Bool(true)],
                peered: Vec::new(),
                vote: true,
            };
            s.write_all(&frame(&encode_msg(&done).expect("encodes"))).await.expect("answer");
            return last_word(&mut s).await;
        }
    });
    let branch = within("connect", Branch::connect(addr)).await.expect("connected");
    branch.open("a".into(), 100.0).await.expect("open");
    let err = within("send", branch.send("a".into(), "b".into(), 30.0)).await.expect_err("refused");
    let expected = "value 1 of sequence `Transfer`'s data is a Number where a Text was expected";
    assert!(err.to_string().contains(expected), "{err}");
    let (k, reason) = within("the close", vault).await.expect("the raw vault");
    assert_eq!(k, kind::CLOSE);
    assert!(reason.contains(expected), "{reason}");
    // Nothing of the call was committed here.
    assert_eq!(branch.balance("a".into()).await.expect("a local read"), 100.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_partner_is_lost_after_the_timeout() {
    let options = TcpOptions::default().with_heartbeat(Duration::from_millis(50), Duration::from_millis(300));
    let listener = Vault::listen("127.0.0.1:0").with_options(options).await.expect("listen");
    let _raw = raw_branch(listener.local_addr()).await;
    let started = std::time::Instant::now();
    let err = within("accept", listener.accept()).await.expect_err("the partner is lost");
    assert!(matches!(&err, Error::Network { message } if message.contains("not even a heartbeat")), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3), "noticed after {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_process_killed_mid_sequence_fails_the_call_and_leaves_no_trace() {
    let listener = Starter::listen("127.0.0.1:0").await.expect("listen");
    let (mut child, starter, work) = helper_paused_mid_sequence(&listener, None).await;
    child.kill().expect("kill the helper");
    let _ = child.wait();

    let err = within("the call", work).await.expect("join").expect_err("the partner died");
    assert!(matches!(err, Error::Network { .. }), "{err}");
    // Nothing of the transaction is committed here; the pair is broken but local work goes on.
    assert_eq!(starter.count().await.expect("peered data stays readable"), 0.0);
    assert_eq!(starter.bump().await.expect("a local transaction"), 1.0);
    assert_eq!(starter.bump().await.expect("a local transaction"), 2.0);
    let err = starter.write().await.expect_err("writes to peered data fail");
    assert!(matches!(err, Error::Network { .. }), "{err}");
    let err = starter.work().await.expect_err("sequences fail");
    assert!(matches!(err, Error::Network { .. }), "{err}");
    assert_eq!(starter.count().await.expect("read"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumable_partner_process_killed_mid_sequence_is_given_up_after_the_resume_window() {
    let window = Duration::from_millis(800);
    let options =
        TcpOptions::default().with_reconnect(waldo::ReconnectPolicy::default().with_resume_window(window));
    let listener = Starter::listen("127.0.0.1:0").with_options(options).await.expect("listen");
    let (mut child, starter, work) = helper_paused_mid_sequence(&listener, Some("resume")).await;
    assert_eq!(starter.connection_state(), waldo::ConnectionState::Connected);
    child.kill().expect("kill the helper");
    let _ = child.wait();
    let killed_at = std::time::Instant::now();
    // The listening side waits for its partner to come back...
    let mut state = starter.watch_connection();
    let waiting =
        within("the break", state.wait_for(|s| *s == waldo::ConnectionState::Reconnecting { attempt: 0 }))
            .await
            .map(|s| s.clone());
    assert!(waiting.is_ok(), "the break is seen: {waiting:?}");
    // ...for the resume window, then gives the pair up: the call fails, undone here.
    let err = within("the call", work).await.expect("join").expect_err("the partner died");
    let waited = killed_at.elapsed();
    assert!(
        matches!(&err, Error::Network { message } if message.contains("did not come back within the resume window of 800ms")),
        "{err}"
    );
    assert!(waited >= window - Duration::from_millis(100), "given up after {waited:?}, before the window");
    assert!(waited < window + Duration::from_secs(2), "given up after {waited:?}");
    assert!(matches!(starter.connection_state(), waldo::ConnectionState::Closed { .. }));
    assert_eq!(starter.count().await.expect("peered data stays readable"), 0.0);
    assert_eq!(starter.bump().await.expect("a local transaction"), 1.0);
    let err = starter.work().await.expect_err("sequences fail");
    assert!(matches!(err, Error::Network { .. }), "{err}");
}

/// Starts `stall_helper` (a Helper in a process of its own) connecting to `listener`, and a
/// `work()` call on the Starter; returns once the helper's process is inside its block,
/// whose host function never returns.
async fn helper_paused_mid_sequence(
    listener: &StarterListener,
    option: Option<&str>,
) -> (std::process::Child, Starter, tokio::task::JoinHandle<Result<f64, Error>>) {
    use std::io::BufRead as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_stall_helper"))
        .arg(listener.local_addr().to_string())
        .args(option)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the helper process");
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    let stdout = child.stdout.take().expect("piped stdout");
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let lines = Arc::new(std::sync::Mutex::new(lines));
    let next_line = move || lines.lock().expect("lines").recv_timeout(WAIT).expect("a line from the helper");
    let starter = within("accept", listener.accept()).await.expect("the helper connects");
    let line = tokio::task::spawn_blocking({
        let next_line = next_line.clone();
        move || next_line()
    })
    .await
    .expect("read");
    assert!(line.starts_with("connected"), "{line}");
    let work = tokio::spawn({
        let starter = starter.clone();
        async move { starter.work().await }
    });
    let line = tokio::task::spawn_blocking(next_line).await.expect("read");
    assert_eq!(line, "paused", "the helper is inside its block");
    (child, starter, work)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_process_frozen_mid_sequence_is_lost_by_its_silence() {
    // The helper's heartbeats come every second (its default); this side gives up after 1.5 s
    // of silence, well before the default 5 s.
    let options =
        TcpOptions::default().with_heartbeat(Duration::from_millis(100), Duration::from_millis(1500));
    let listener = Starter::listen("127.0.0.1:0").with_options(options).await.expect("listen");
    let (mut child, starter, work) = helper_paused_mid_sequence(&listener, None).await;
    // Frozen, not killed: the socket stays open and only the silence tells.
    let stopped = std::process::Command::new("kill")
        .args(["-STOP", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(stopped.success());
    let frozen_at = std::time::Instant::now();

    let err = within("the call", work).await.expect("join").expect_err("the partner went silent");
    let waited = frozen_at.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        matches!(&err, Error::Network { message } if message.contains("not even a heartbeat, for 1.5s")),
        "{err}"
    );
    assert!(waited < Duration::from_secs(4), "lost after {waited:?}");
    assert_eq!(starter.count().await.expect("peered data stays readable"), 0.0);
    assert_eq!(starter.bump().await.expect("a local transaction"), 1.0);
    let err = starter.work().await.expect_err("sequences fail");
    assert!(matches!(err, Error::Network { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_on_creates_commit_before_the_first_call_and_a_failing_one_fails_both_sides() {
    let listener = Host::listen("127.0.0.1:0").await.expect("listen");
    let addr = listener.local_addr();
    let (host, guest) =
        within("a pair", async { tokio::try_join!(listener.accept(2.0), Guest::connect(addr)) })
            .await
            .expect("a pair");
    // The first call on either side already sees both onCreates, replicated.
    assert_eq!(guest.seen().await.expect("seen"), ("welcome 5".to_owned(), 1.0));
    assert_eq!(host.seen().await.expect("seen"), ("welcome 5".to_owned(), 1.0));

    let (accepted, connected) =
        within("a failing pair", async { tokio::join!(listener.accept(0.0), Guest::connect(addr)) }).await;
    let accepted = accepted.expect_err("the Host's onCreate raised");
    assert!(
        matches!(&accepted, Error::Application { message } if message.contains("division by zero")),
        "{accepted}"
    );
    let connected = connected.expect_err("the partner's onCreate raised");
    assert!(
        matches!(&connected, Error::Network { message }
            if message.contains("onCreate failed on the partner") && message.contains("division by zero")),
        "{connected}"
    );

    // The listener serves on.
    let (host, guest) =
        within("another pair", async { tokio::try_join!(listener.accept(5.0), Guest::connect(addr)) })
            .await
            .expect("another pair");
    assert_eq!(host.seen().await.expect("seen"), ("welcome 2".to_owned(), 1.0));
    assert_eq!(guest.seen().await.expect("seen"), ("welcome 2".to_owned(), 1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_passing_mid_sequence_aborts_on_both_sides() {
    let listener = Starter::listen("127.0.0.1:0").await.expect("listen");
    let addr = listener.local_addr();
    let first = Arc::new(AtomicBool::new(true));
    // A host function that blocks tells tokio so, or it would hold up the tasks queued on
    // its worker thread.
    let pause = move || {
        if first.swap(false, Ordering::SeqCst) {
            tokio::task::block_in_place(|| std::thread::sleep(Duration::from_millis(600)));
        }
    };
    let (starter, helper) =
        tokio::try_join!(listener.accept(), Helper::connect(addr, pause)).expect("a pair");
    let hurried =
        starter.with_options(waldo::CallOptions::default().with_deadline(Duration::from_millis(150)));
    let started = std::time::Instant::now();
    assert_eq!(hurried.work().await, Err(Error::Timeout));
    assert!(started.elapsed() < Duration::from_millis(550), "the call returned at its deadline");
    // Once the Helper's block is over, its part is aborted too: nothing committed anywhere.
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(starter.count().await.expect("count"), 0.0);
    assert_eq!(helper.count().await.expect("count"), 0.0);
    // The pair goes on.
    assert_eq!(starter.work().await.expect("work"), 11.0);
    assert_eq!(starter.count().await.expect("count"), 111.0);
    assert_eq!(helper.count().await.expect("count"), 111.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_connections_to_one_listener_each_commit() {
    const N: usize = 1000;
    let listener = Arc::new(Vault::listen("127.0.0.1:0").await.expect("listen"));
    let addr = listener.local_addr();
    let acceptor = tokio::spawn({
        let listener = listener.clone();
        async move {
            let mut vaults = Vec::with_capacity(N);
            for _ in 0..N {
                vaults.push(listener.accept().await.expect("accept"));
            }
            vaults
        }
    });
    let mut clients = Vec::with_capacity(N);
    for i in 0..N {
        clients.push(tokio::spawn(async move {
            let branch = Branch::connect(addr).await.expect("connect");
            let acct = format!("a{i}");
            branch.open(acct.clone(), 10.0).await.expect("open");
            assert!(branch.send(acct.clone(), "b".into(), 4.0).await.expect("send"));
            assert_eq!(branch.balance(acct).await.expect("balance"), 6.0);
            branch
        }));
    }
    let mut branches = Vec::with_capacity(N);
    for c in clients {
        branches.push(
            tokio::time::timeout(Duration::from_secs(120), c).await.expect("in time").expect("a client"),
        );
    }
    let vaults = acceptor.await.expect("the acceptor");
    assert_eq!(vaults.len(), N);
    for v in &vaults {
        assert_eq!(v.holding("b".into()).await.expect("holding"), 4.0, "each pair committed its transfer");
    }
    drop(branches);
}

// ---------------------------------------------------------------- listener limits

/// Connects until a good Branch is served (a place may take a moment to free), then checks
/// the pair works.
async fn served_eventually(listener: &bank::VaultListener) {
    let addr = listener.local_addr();
    for _ in 0..100 {
        match within("a good client", async { tokio::try_join!(Branch::connect(addr), listener.accept()) })
            .await
        {
            Ok((branch, vault)) => {
                branch.open("a".into(), 10.0).await.expect("open");
                assert!(branch.send("a".into(), "b".into(), 4.0).await.expect("send"));
                assert_eq!(vault.holding("b".into()).await.expect("holding"), 4.0);
                return;
            }
            Err(e) => assert!(refused(&e, "maximum of"), "only the limit may refuse it: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("a good client was never served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_refuses_connections_over_its_limit_with_the_reason_and_goes_on() {
    let options = TcpOptions::default().with_max_connections(2).with_handshake_idle(WAIT);
    let listener = Vault::listen("127.0.0.1:0").with_options(options).await.expect("listen");
    let addr = listener.local_addr();
    // Two sockets that connect and say nothing take both places (accepted in order, so
    // before the ones below).
    let idle_a = TcpStream::connect(addr).await.expect("connect");
    let idle_b = TcpStream::connect(addr).await.expect("connect");
    let mut third = TcpStream::connect(addr).await.expect("connect");
    skip_preamble(&mut third).await;
    let (k, reason) = last_word(&mut third).await;
    assert_eq!(k, kind::REFUSE);
    assert!(reason.contains("the listener serves its maximum of 2 connections"), "{reason}");
    // A real partner over the limit hears the reason too.
    let err = within("a refused client", Branch::connect(addr)).await.expect_err("over the limit");
    assert!(refused(&err, "maximum of 2 connections"), "{err}");
    // A place frees when its socket closes; the listener serves a real partner again.
    drop(idle_a);
    served_eventually(&listener).await;
    drop(idle_b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_cannot_keep_a_real_partner_out() {
    // Four handshakes at a time, each allowed to stay silent for a minute: without eviction,
    // twenty idle sockets would hold the places for that long.
    let options = TcpOptions::default().with_max_handshakes(4).with_handshake_idle(Duration::from_secs(60));
    let listener = Vault::listen("127.0.0.1:0").with_options(options).await.expect("listen");
    let addr = listener.local_addr();
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(TcpStream::connect(addr).await.expect("connect"));
    }
    // The real partner takes the place of the longest-waiting idle socket.
    within("a partner among idle sockets", serves(&listener)).await;
    // The oldest idle socket was closed to make room, long before its minute was up: its
    // stream ends (`within` fails the test after 10 s).
    let mut first = idle.remove(0);
    let mut rest = Vec::new();
    let _ = within("the evicted socket's end", first.read_to_end(&mut rest)).await;
    assert!(rest.starts_with(&preamble()), "it had been accepted and sent the listener's hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_silent_during_the_handshake_is_refused_after_the_idle_limit() {
    let options = TcpOptions::default().with_handshake_idle(Duration::from_millis(200));
    let listener = Vault::listen("127.0.0.1:0").with_options(options).await.expect("listen");
    let addr = listener.local_addr();
    let mut silent = TcpStream::connect(addr).await.expect("connect");
    let started = std::time::Instant::now();
    skip_preamble(&mut silent).await;
    let (k, reason) = last_word(&mut silent).await;
    assert_eq!(k, kind::REFUSE);
    assert!(reason.contains("the peer sent nothing for 200ms during the handshake"), "{reason}");
    assert!(started.elapsed() >= Duration::from_millis(200), "not before the limit");
    let failure = within("the listener's failure", listener.next_failure()).await.expect("a failure");
    assert!(refused(&failure, "sent nothing for 200ms"), "{failure}");
    serves(&listener).await;
}
