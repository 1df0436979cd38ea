//! Reconnection over real TCP on loopback (the book's "Connections over TCP",
//! "Reconnection"): a proxy cuts the connection after every possible frame, in each
//! direction, of a script of 2-block and 7-block sequences started from both sides, and of a
//! commit tree of three pairs; after each cut every call returns its exact value, both
//! replicas agree, and no transfer is applied twice or lost. Then the refusals: a wrong
//! token, an unknown session, an expired one, with the listener serving its real partner
//! throughout; a partner gone for good is given up after the resume window, with the call in
//! flight failed and its effects rolled back on both sides; the connection states a host
//! can watch; the bound on what waits during an outage.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use waldo::net::kind;
use waldo::{ConnectionState, Error, ReconnectPolicy, TcpOptions};
use waldo_e2e::corpus_relay::relay::{Receiver, Sender};
use waldo_e2e::corpus_resume::resume::{self, Left, Right};
use waldo_e2e::proxy::{CutProxy, Dir};
use waldo_e2e::raw;

fn policy(window: Duration) -> ReconnectPolicy {
    ReconnectPolicy::default()
        .with_backoff(Duration::ZERO, Duration::from_millis(10), Duration::from_millis(100), 2.0)
        .with_resume_window(window)
}

/// Resumable connections; heartbeats rare enough that a script's frames are always the same.
fn options(window: Duration) -> TcpOptions {
    TcpOptions::default()
        .with_heartbeat(Duration::from_secs(1), Duration::from_secs(3))
        .with_reconnect(policy(window))
}

/// What a side's host was signalled: the ids of the transfers it committed.
type Signals = Arc<Mutex<Vec<String>>>;

/// A log, and the host function that writes to it.
fn signals() -> (Signals, impl Fn(String) + Send + Sync + 'static) {
    let log = Signals::default();
    let writer = log.clone();
    (log, move |id| writer.lock().expect("the log").push(id))
}

/// A Left connected through a proxy to a Right.
struct Pair {
    left: Left,
    right: Right,
    signalled: [Signals; 2],
    _listener: resume::RightListener,
    proxy: CutProxy,
}

async fn pair(window: Duration, cut: Option<(Dir, u64)>) -> Pair {
    let listener = Right::listen("127.0.0.1:0").with_options(options(window)).await.expect("listen");
    let proxy = CutProxy::start(listener.local_addr()).await;
    if let Some((dir, k)) = cut {
        proxy.cut_after(dir, k);
    }
    let ((ls, lf), (rs, rf)) = (signals(), signals());
    let (left, right) =
        tokio::try_join!(Left::connect(proxy.addr(), lf).with_options(options(window)), listener.accept(rf))
            .expect("a pair");
    Pair { left, right, signalled: [ls, rs], _listener: listener, proxy }
}

/// Blocks in the script's sequences: 2 + 7 + 2 + 2 + 7.
const SCRIPT_BLOCKS: f64 = 20.0;

/// Runs the script: every call must return its exact value.
async fn script(p: &Pair) -> Result<(), String> {
    let check = |what: &str, got: Result<f64, Error>, want: f64| match got {
        Ok(v) if v == want => Ok(()),
        other => Err(format!("{what}: {other:?}, expected {want}")),
    };
    check("two t1", p.left.two("t1".into(), 1.0).await, 4.0)?;
    check("seven t2", p.left.seven("t2".into(), 10.0).await, 16.0)?;
    check("back t3", p.right.back("t3".into(), 5.0).await, 15.0)?;
    check("two t4", p.left.two("t4".into(), 2.0).await, 6.0)?;
    check("seven t5", p.left.seven("t5".into(), 0.0).await, 6.0)?;
    Ok(())
}

/// Both replicas hold every transfer once, and the same count of blocks.
async fn agree(p: &Pair, refs: &[&str], blocks: f64) -> Result<(), String> {
    let (l, r) =
        (p.left.book().await.map_err(|e| e.to_string())?, p.right.book().await.map_err(|e| e.to_string())?);
    if l != r {
        return Err(format!("the replicas of the ledger differ: {l:?} / {r:?}"));
    }
    let want: BTreeMap<String, f64> = refs.iter().map(|r| ((*r).to_owned(), 1.0)).collect();
    if l != want {
        return Err(format!("the ledger is {l:?}, expected each of {refs:?} once"));
    }
    let (lc, rc) =
        (p.left.count().await.map_err(|e| e.to_string())?, p.right.count().await.map_err(|e| e.to_string())?);
    if lc != blocks || rc != blocks {
        return Err(format!("blocks counted {lc} / {rc}, expected {blocks}"));
    }
    // Each side was signalled each transfer once (the partner's signals run when the commit
    // reaches it: wait a moment for them).
    let mut want: Vec<&str> = refs.to_vec();
    want.sort_unstable();
    for (side, log) in ["Left", "Right"].iter().zip(&p.signalled) {
        let got = || {
            let mut got = log.lock().expect("the log").clone();
            got.sort_unstable();
            got
        };
        let waited = std::time::Instant::now();
        while got().len() < want.len() && waited.elapsed() < Duration::from_secs(2) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if got() != want {
            return Err(format!("the {side} was signalled {:?}, expected each of {want:?} once", got()));
        }
    }
    Ok(())
}

const REFS: [&str; 5] = ["t1", "t2", "t3", "t4", "t5"];

/// Waits (a little) until `proxy` made at least `cuts` cuts, each was resumed, and `left`
/// is connected.
async fn resumed(left: &Left, proxy: &CutProxy, cuts: usize) {
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while proxy.cuts() < cuts || proxy.connections() < 1 + proxy.cuts() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let mut state = left.watch_connection();
        let _ = state.wait_for(|s| *s == ConnectionState::Connected).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_after_any_frame_of_two_and_seven_block_sequences_is_resumed() {
    // The frames of the script in each direction, uncut.
    let whole = pair(Duration::from_secs(10), None).await;
    script(&whole).await.expect("the script, uncut");
    agree(&whole, &REFS, SCRIPT_BLOCKS).await.expect("uncut");
    let frames = [whole.proxy.frames(Dir::ToListener), whole.proxy.frames(Dir::ToConnector)];
    assert!(frames[0] >= 12 && frames[1] >= 12, "the script crosses the proxy: {frames:?} frames");
    let mut failures = Vec::new();
    let mut cases = 0;
    for dir in [Dir::ToListener, Dir::ToConnector] {
        for k in 1..=frames[dir as usize] {
            cases += 1;
            let p = pair(Duration::from_secs(10), Some((dir, k))).await;
            let outcome = tokio::time::timeout(Duration::from_secs(20), async {
                script(&p).await?;
                resumed(&p.left, &p.proxy, 1).await;
                agree(&p, &REFS, SCRIPT_BLOCKS).await
            })
            .await
            .unwrap_or_else(|_| Err("the script did not finish within 20 s".into()));
            if let Err(e) = outcome {
                failures.push(format!("cut after frame {k} {dir:?}: {e}"));
            } else if p.proxy.cuts() != 1 || p.proxy.connections() < 2 {
                // (A resume that comes before the listener's side of the pair has started is
                // told to try again: more than one redial is fine.)
                failures.push(format!(
                    "cut after frame {k} {dir:?}: {} cuts and {} connections (expected 1 cut, then a resume)",
                    p.proxy.cuts(),
                    p.proxy.connections()
                ));
            }
            let state = p.left.connection_state();
            if state != ConnectionState::Connected {
                failures.push(format!("cut after frame {k} {dir:?}: the Left is {state:?} at the end"));
            }
        }
    }
    assert!(failures.is_empty(), "{} of {cases} cuts failed:\n{}", failures.len(), failures.join("\n"));
}

/// Three relay pairs joined by endpoint calls (one transaction over all three), the middle
/// one through the proxy.
struct Chain {
    first: Sender,
    senders: Vec<Sender>,
    receivers: Vec<Receiver>,
    proxy: CutProxy,
    _listeners: Vec<waldo_e2e::corpus_relay::relay::ReceiverListener>,
}

async fn chain(cut: Option<(Dir, u64)>) -> Chain {
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    let mut listeners = Vec::new();
    let mut middle = None;
    for i in 0..3 {
        let opts = options(Duration::from_secs(10));
        let listener = Receiver::listen("127.0.0.1:0").with_options(opts.clone()).await.expect("listen");
        let mut addr = listener.local_addr();
        if i == 1 {
            let proxy = CutProxy::start(addr).await;
            if let Some((dir, k)) = cut {
                proxy.cut_after(dir, k);
            }
            addr = proxy.addr();
            middle = Some(proxy);
        }
        let (s, r) = tokio::try_join!(
            Sender::connect(addr).with_options(opts),
            listener.accept(format!("r{}", i + 1))
        )
        .expect("a pair");
        senders.push(s);
        receivers.push(r);
        listeners.push(listener);
    }
    receivers[0].follow(senders[1].endpoint()).await.expect("follow");
    receivers[1].follow(senders[2].endpoint()).await.expect("follow");
    Chain {
        first: senders.remove(0),
        senders,
        receivers,
        proxy: middle.expect("the middle pair's proxy"),
        _listeners: listeners,
    }
}

async fn relays(c: &Chain) -> Result<(), String> {
    for (note, want) in [("a", "a>r1>r2>r3"), ("b", "b>r1>r2>r3"), ("c", "c>r1>r2>r3")] {
        match c.first.relay(note.into(), 2.0).await {
            Ok(trail) if trail == want => {}
            other => return Err(format!("relay {note}: {other:?}, expected {want}")),
        }
    }
    let mut counts = vec![c.first.count().await.map_err(|e| e.to_string())?];
    for s in &c.senders {
        counts.push(s.count().await.map_err(|e| e.to_string())?);
    }
    for r in &c.receivers {
        counts.push(r.count().await.map_err(|e| e.to_string())?);
    }
    if counts.iter().any(|&n| n != 3.0) {
        return Err(format!(
            "each side of each pair counts 3 relays; counts (senders, then receivers): {counts:?}"
        ));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_after_any_frame_inside_a_commit_tree_of_three_pairs_is_resumed() {
    let whole = chain(None).await;
    relays(&whole).await.expect("uncut");
    let frames = [whole.proxy.frames(Dir::ToListener), whole.proxy.frames(Dir::ToConnector)];
    assert!(frames[0] >= 3 && frames[1] >= 3, "the relays cross the middle pair: {frames:?} frames");
    let mut failures = Vec::new();
    let mut unreached = Vec::new();
    for dir in [Dir::ToListener, Dir::ToConnector] {
        for k in 1..=frames[dir as usize] {
            let c = chain(Some((dir, k))).await;
            let outcome = tokio::time::timeout(Duration::from_secs(20), relays(&c))
                .await
                .unwrap_or_else(|_| Err("the relays did not finish within 20 s".into()));
            if let Err(e) = outcome {
                failures.push(format!("cut after frame {k} {dir:?}: {e}"));
            } else if c.proxy.cuts() == 0 && c.proxy.frames(dir) < k {
                // Frames that carry only confirmations go out when the timing says so: this
                // run sent fewer than the uncut one, and never the k-th.
                unreached.push((dir, k));
            } else if c.proxy.cuts() != 1 {
                failures.push(format!("cut after frame {k} {dir:?}: {} cuts", c.proxy.cuts()));
            }
        }
    }
    assert!(failures.is_empty(), "{} cuts failed:\n{}", failures.len(), failures.join("\n"));
    // Only the last frames of a direction can go unsent.
    assert!(unreached.len() <= 4, "runs that never sent the frame to cut after: {unreached:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_in_flight_at_a_cut_all_return_ok() {
    let p = pair(Duration::from_secs(10), None).await;
    let p = Arc::new(p);
    let mut callers = Vec::new();
    for c in 0..4 {
        let p = p.clone();
        callers.push(tokio::spawn(async move {
            let mut refs = Vec::new();
            for i in 0..40 {
                let r = format!("c{c}-{i}");
                let got = if i % 3 == 0 {
                    p.left.seven(r.clone(), f64::from(i)).await.map(|v| v == f64::from(i) + 6.0)
                } else {
                    p.left.two(r.clone(), f64::from(i)).await.map(|v| v == (f64::from(i) + 1.0) * 2.0)
                };
                assert_eq!(got, Ok(true), "call {r}");
                refs.push(r);
            }
            refs
        }));
    }
    // Cut every connection a few times while the callers run.
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(15)).await;
        p.proxy.cut_now();
    }
    let mut all = Vec::new();
    for c in callers {
        all.extend(c.await.expect("a caller"));
    }
    resumed(&p.left, &p.proxy, 1).await;
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    let blocks = (0..40).map(|i| if i % 3 == 0 { 7.0 } else { 2.0 }).sum::<f64>() * 4.0;
    agree(&p, &refs, blocks).await.expect("the replicas after the cuts");
    assert!(p.proxy.cuts() >= 1, "the proxy cut the connection");
    assert!(p.proxy.connections() > p.proxy.cuts(), "each cut was resumed");
}

/// Far more than goes out with a resume's handshake, and than a socket takes at once: what
/// does not fit follows through the writers, in order, while both sides also read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn megabytes_waiting_on_both_sides_at_a_cut_all_arrive_once_and_in_order() {
    let p = pair(Duration::from_secs(10), None).await;
    let pads = |tag: &str| (0..40).map(|i| format!("{tag}{i}:{}", "x".repeat(64 * 1024))).collect::<Vec<_>>();
    let echo_all = |pads: Vec<String>| {
        let calls: Vec<_> = pads
            .into_iter()
            .map(|pad| {
                let left = p.left.clone();
                tokio::spawn(async move { (left.echo(pad.clone()).await, pad) })
            })
            .collect();
        async move {
            for call in calls {
                let (got, pad) = call.await.expect("a call");
                assert_eq!(got.as_deref(), Ok(format!("{pad}!").as_str()), "the echo of {}", &pad[..4]);
            }
        }
    };
    // 2.6 MB queued on the connecting side while the partner is unreachable.
    p.proxy.refuse(true);
    p.proxy.cut_now();
    let mut state = p.left.watch_connection();
    let _ = state.wait_for(|s| matches!(s, ConnectionState::Reconnecting { .. })).await;
    let queued = echo_all(pads("a"));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(p.left.backlog() > 2_000_000, "the calls' messages wait: {} bytes", p.left.backlog());
    p.proxy.refuse(false);
    tokio::time::timeout(Duration::from_secs(20), queued).await.expect("every queued call returns");
    // A cut in the middle of a stream of large answers: both sides hold frames the other has
    // not confirmed.
    p.proxy.cut_after(Dir::ToConnector, 1);
    let (connections, cuts) = (p.proxy.connections(), p.proxy.cuts());
    p.proxy.cut_now();
    tokio::time::timeout(Duration::from_secs(20), echo_all(pads("b"))).await.expect("every call returns");
    assert!(p.proxy.cuts() >= cuts + 2, "the connection was cut inside the answers");
    assert!(p.proxy.connections() >= connections + 2, "and resumed");
    agree(&p, &[], 0.0).await.expect("the replicas after the cuts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_gone_for_good_is_given_up_after_the_resume_window() {
    let window = Duration::from_millis(600);
    // Cut during the 7-block sequence (after the Right ran its first block there, before any
    // vote), then never let the Left back in.
    let p = pair(window, Some((Dir::ToConnector, 3))).await;
    p.left.two("t1".into(), 1.0).await.expect("a transfer before the cut");
    p.proxy.refuse(true);
    let started = std::time::Instant::now();
    let mut states = p.left.watch_connection();
    let failed = p.left.seven("t2".into(), 10.0).await;
    let waited = started.elapsed();
    match &failed {
        Err(Error::Network { message }) => {
            assert!(message.contains("resume window"), "the error says the resume window passed: {message}");
        }
        other => panic!("the call in flight fails with a network error, got {other:?}"),
    }
    assert!(waited >= window - Duration::from_millis(50), "given up only after the window: {waited:?}");
    assert!(waited < window * 5, "given up soon after the window: {waited:?}");
    assert!(matches!(states.borrow_and_update().clone(), ConnectionState::Closed { .. }));
    let right_closed = tokio::time::timeout(Duration::from_secs(5), async {
        let mut s = p.right.watch_connection();
        let _ = s.wait_for(|s| matches!(s, ConnectionState::Closed { .. })).await;
    })
    .await;
    assert!(right_closed.is_ok(), "the Right gives the session up too");
    // Rolled back on both sides: only t1 is there, and the blocks of its sequence.
    let only_t1: BTreeMap<String, f64> = [("t1".to_owned(), 1.0)].into();
    assert_eq!(p.left.book().await, Ok(only_t1.clone()), "the Left rolled back");
    assert_eq!(p.right.book().await, Ok(only_t1), "the Right rolled back");
    assert_eq!((p.left.count().await, p.right.count().await), (Ok(2.0), Ok(2.0)));
    assert_eq!(p.proxy.cuts(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_sees_the_connection_state_change() {
    let p = pair(Duration::from_secs(10), None).await;
    assert_eq!(p.left.connection_state(), ConnectionState::Connected);
    let mut seen = p.left.watch_connection();
    p.proxy.refuse(true);
    p.proxy.cut_now();
    let reconnecting = tokio::time::timeout(
        Duration::from_secs(5),
        seen.wait_for(|s| matches!(s, ConnectionState::Reconnecting { attempt } if *attempt >= 2)),
    )
    .await
    .is_ok();
    assert!(reconnecting, "the Left counts its redials: {:?}", p.left.connection_state());
    assert!(matches!(p.right.connection_state(), ConnectionState::Reconnecting { attempt: 0 }));
    p.proxy.refuse(false);
    let back =
        tokio::time::timeout(Duration::from_secs(5), seen.wait_for(|s| *s == ConnectionState::Connected))
            .await;
    assert!(back.is_ok(), "connected again: {:?}", p.left.connection_state());
    assert_eq!(p.left.two("t1".into(), 1.0).await, Ok(4.0));
    // In process: always connected.
    let (l, _r) = resume::in_process_pair(|_| (), |_| ()).await.expect("a pair");
    assert_eq!(l.connection_state(), ConnectionState::Connected);
    // Without a partner: closed, with the reason.
    let solo = Left::without_partner(|_| ()).await.expect("solo");
    assert!(
        matches!(solo.connection_state(), ConnectionState::Closed { reason } if reason.contains("no partner"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_connection_still_ends_with_its_socket() {
    let listener = Right::listen("127.0.0.1:0").await.expect("listen");
    let proxy = CutProxy::start(listener.local_addr()).await;
    let (left, _right) =
        tokio::try_join!(Left::connect(proxy.addr(), |_| ()), listener.accept(|_| ())).expect("a pair");
    proxy.cut_now();
    let mut state = left.watch_connection();
    let closed = tokio::time::timeout(
        Duration::from_secs(5),
        state.wait_for(|s| matches!(s, ConnectionState::Closed { .. })),
    )
    .await;
    assert!(closed.is_ok(), "no reconnect policy: the pair ends");
    assert!(matches!(left.two("t".into(), 1.0).await, Err(Error::Network { .. })));
    assert_eq!(proxy.connections(), 1, "nobody redialed");
}

// ---------------------------------------------------------------- refusals, by hand

/// A session's id and token, as the listener granted them.
#[derive(Clone, Copy, Debug)]
struct Keys([u64; 4]);

/// What a raw Left offers: resumable, or resuming `keys`.
enum RawOffer {
    Resumable,
    /// A resume of a session, re-sending from frame `first` (1 for a real partner).
    Resume(Keys, u64),
}

/// A Left by hand: preamble, Hello with `offer`, the Ack of the listener's nonce (a real
/// resuming side sends none; every resume here is refused before the listener would read
/// one). Returns the socket and the listener's answer (its Ack's session part, or its
/// refusal).
async fn raw_left(addr: std::net::SocketAddr, offer: RawOffer) -> (TcpStream, Result<Option<Keys>, String>) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let mut hello = vec![kind::HELLO];
    raw::text(&mut hello, "Resume");
    raw::varint(&mut hello, resume::FINGERPRINT);
    raw::varint(&mut hello, 0);
    raw::text(&mut hello, "Left");
    raw::varint(&mut hello, 7);
    match offer {
        RawOffer::Resumable => hello.push(1),
        RawOffer::Resume(Keys(k), first) => {
            hello.push(2);
            for part in k {
                hello.extend_from_slice(&part.to_le_bytes());
            }
            raw::varint(&mut hello, 0); // frames received
            raw::varint(&mut hello, first); // the first frame re-sent
        }
    }
    let mut first = raw::preamble();
    first.extend(raw::frame(&hello));
    s.write_all(&first).await.expect("write the hello");
    let mut pre = [0u8; 8];
    s.read_exact(&mut pre).await.expect("the preamble");
    let theirs = raw::read_frame(&mut s).await.expect("the listener's hello");
    assert_eq!(theirs[0], kind::HELLO);
    s.write_all(&raw::ack(raw::hello_nonce(&theirs))).await.expect("write the ack");
    let answer = raw::read_frame(&mut s).await.expect("the listener's answer");
    let result = match answer[0] {
        k if k == kind::ACK => {
            let mut i = 1;
            raw::read_varint(&answer, &mut i);
            if answer.len() > i && answer[i] == 1 {
                let mut k = [0u64; 4];
                for (n, part) in k.iter_mut().enumerate() {
                    let at = i + 1 + n * 8;
                    *part = u64::from_le_bytes(answer[at..at + 8].try_into().expect("8 bytes"));
                }
                Ok(Some(Keys(k)))
            } else {
                Ok(None)
            }
        }
        k if k == kind::REFUSE => Err(raw::frame_text(&answer)),
        other => panic!("an Ack or a Refuse, got kind {other:#04x}"),
    };
    (s, result)
}

/// Like [`raw_left`], trying again (as the refusal says to) while the session it resumes is
/// still starting on the listener.
async fn raw_left_settled(
    addr: std::net::SocketAddr,
    offer: impl Fn() -> RawOffer,
) -> (TcpStream, Result<Option<Keys>, String>) {
    for _ in 0..200 {
        let (s, result) = raw_left(addr, offer()).await;
        match &result {
            Err(reason) if reason.contains("is still starting on the listener; try again") => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            _ => return (s, result),
        }
    }
    panic!("the session was still starting after 200 tries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_with_a_wrong_token_an_unknown_or_an_expired_session_are_refused() {
    let window = Duration::from_millis(300);
    let listener = Right::listen("127.0.0.1:0").with_options(options(window)).await.expect("listen");
    let addr = listener.local_addr();
    // A real partner, served throughout.
    let (left, right) =
        tokio::try_join!(Left::connect(addr, |_| ()).with_options(options(window)), listener.accept(|_| ()))
            .expect("a pair");
    assert_eq!(left.two("real-1".into(), 1.0).await, Ok(4.0));

    // A raw Left gets a session...
    let (first, granted) = raw_left(addr, RawOffer::Resumable).await;
    let keys = granted.expect("accepted").expect("the listener grants a session");
    // ...which nobody else can take with a wrong token.
    let mut wrong = keys;
    wrong.0[3] ^= 1;
    let (_s, refused) = raw_left_settled(addr, || RawOffer::Resume(wrong, 1)).await;
    let reason = refused.expect_err("a wrong token is refused");
    assert!(reason.contains("wrong resume token for session"), "{reason}");
    // An id the listener never gave.
    let (_s, refused) = raw_left(addr, RawOffer::Resume(Keys([1, 2, 3, 4]), 1)).await;
    let reason = refused.expect_err("an unknown session is refused");
    assert!(reason.contains("unknown session"), "{reason}");
    // A frame number that cannot be, even with the right token.
    let (_s, refused) = raw_left_settled(addr, || RawOffer::Resume(keys, 0)).await;
    let reason = refused.expect_err("a resume from frame 0 is refused");
    assert!(reason.contains("re-sends from frame 0, but frames are numbered from 1"), "{reason}");
    // The raw Left vanishes; its session expires after the window; then even the right
    // token is refused.
    drop(first);
    tokio::time::sleep(window * 3).await;
    let (_s, refused) = raw_left(addr, RawOffer::Resume(keys, 1)).await;
    let reason = refused.expect_err("an expired session is refused");
    assert!(reason.contains("has expired"), "{reason}");
    // The real partner was not disturbed.
    assert_eq!(left.two("real-2".into(), 2.0).await, Ok(6.0));
    assert_eq!(right.back("real-3".into(), 1.0).await, Ok(3.0));
    // The raw Left's own connection made an endpoint, given up with its session; the
    // resumes (refused or not) made none.
    let raw = tokio::time::timeout(Duration::from_secs(1), listener.accept(|_| ())).await;
    assert!(matches!(raw, Ok(Err(Error::Network { .. }))), "the raw Left's endpoint, given up: {raw:?}");
    let none = tokio::time::timeout(Duration::from_millis(100), listener.accept(|_| ())).await;
    assert!(none.is_err(), "a resume (refused or not) is not a new partner");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_that_restarted_refuses_the_resume_and_the_pair_ends_at_once() {
    let window = Duration::from_secs(30);
    let listener = Right::listen("127.0.0.1:0").with_options(options(window)).await.expect("listen");
    let addr = listener.local_addr();
    let proxy = CutProxy::start(addr).await;
    let (left, right) = tokio::try_join!(
        Left::connect(proxy.addr(), |_| ()).with_options(options(window)),
        listener.accept(|_| ())
    )
    .expect("a pair");
    // The Right's host "restarts": its endpoint and listener are gone; a new listener
    // takes the port.
    drop(right);
    drop(listener);
    // (The old listener's socket closes when its task ends: try for a moment.)
    let mut again = None;
    for _ in 0..100 {
        match Right::listen(addr).with_options(options(window)).await {
            Ok(l) => {
                again = Some(l);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    let _again = again.expect("listen again at the same address");
    proxy.cut_now();
    let started = std::time::Instant::now();
    let mut state = left.watch_connection();
    let closed = tokio::time::timeout(
        Duration::from_secs(10),
        state.wait_for(|s| matches!(s, ConnectionState::Closed { .. })),
    )
    .await;
    assert!(closed.is_ok(), "the pair ends");
    assert!(started.elapsed() < Duration::from_secs(5), "without waiting for the 30 s window");
    let error = left.two("t".into(), 1.0).await.expect_err("the pair is over");
    assert!(matches!(error, Error::Network { .. } | Error::Stopped), "{error}");
}

// ANCHOR: reconnect
/// The book's example: a pair whose connection is cut in the middle of a call, and a host
/// that watches its connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_books_example() {
    // Both sides enable resumable sessions; each gives its pair up 30 s after a break.
    let policy = ReconnectPolicy::default().with_resume_window(Duration::from_secs(30));
    let options = TcpOptions::default().with_reconnect(policy);
    let listener = Right::listen("127.0.0.1:0").with_options(options.clone()).await.expect("listen");
    let proxy = CutProxy::start(listener.local_addr()).await; // a proxy that cuts on command
    let (left, right) =
        tokio::try_join!(Left::connect(proxy.addr(), |_| ()).with_options(options), listener.accept(|_| ()))
            .expect("a pair");

    // Watch the connection: log every change.
    let mut changes = left.watch_connection();
    let log = tokio::spawn(async move {
        let mut seen = Vec::new();
        while changes.changed().await.is_ok() {
            let state = changes.borrow_and_update().clone();
            let connected = state == ConnectionState::Connected;
            seen.push(state);
            if connected {
                break;
            }
        }
        seen
    });

    // A 7-block transfer, with the connection cut while it runs: the call just takes a
    // little longer.
    let call = tokio::spawn({
        let left = left.clone();
        async move { left.seven("t1".into(), 10.0).await }
    });
    proxy.cut_now();
    assert_eq!(call.await.expect("the call"), Ok(16.0));
    // The watcher saw the connection come back (a watch keeps the latest state, so it may
    // not see every step in between).
    let seen = log.await.expect("the log");
    assert_eq!(seen.last(), Some(&ConnectionState::Connected));
    assert_eq!(proxy.cuts(), 1);
    assert!(proxy.connections() >= 2, "resumed over a new connection");
    // Applied once, on both sides.
    let once: BTreeMap<String, f64> = [("t1".to_owned(), 1.0)].into();
    assert_eq!(left.book().await, Ok(once.clone()));
    assert_eq!(right.book().await, Ok(once));
}
// ANCHOR_END: reconnect

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_waits_for_an_unreachable_partner_is_bounded() {
    const BOUND: usize = 4096;
    let options = || {
        TcpOptions::default()
            .with_heartbeat(Duration::from_secs(1), Duration::from_secs(3))
            .with_reconnect(policy(Duration::from_secs(20)).with_max_backlog(BOUND))
    };
    let listener = Right::listen("127.0.0.1:0").with_options(options()).await.expect("listen");
    let proxy = CutProxy::start(listener.local_addr()).await;
    let (left, _right) = tokio::try_join!(
        Left::connect(proxy.addr(), |_| ()).with_options(options()),
        listener.accept(|_| ())
    )
    .expect("a pair");
    assert_eq!(left.echo("x".into()).await, Ok("x!".to_owned()));
    // The partner becomes unreachable.
    proxy.refuse(true);
    proxy.cut_now();
    let mut state = left.watch_connection();
    let _ = state.wait_for(|s| matches!(s, ConnectionState::Reconnecting { .. })).await;
    // 300 calls of about 130 bytes each: about ten times the bound, if nothing held them.
    let pad = "p".repeat(100);
    let calls: Vec<_> = (0..300)
        .map(|i| {
            let (left, pad) = (left.clone(), format!("{i}:{pad}"));
            tokio::spawn(async move { (left.echo(pad.clone()).await, pad) })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let waiting = left.backlog();
    assert!(waiting > 0, "some calls queued their messages");
    assert!(waiting <= BOUND + 256, "at most the bound and one message wait: {waiting} bytes");
    assert!(calls.iter().all(|c| !c.is_finished()), "the calls beyond the bound wait");
    // The partner comes back: every call completes.
    proxy.refuse(false);
    for call in calls {
        let (got, pad) = call.await.expect("a call");
        assert_eq!(got, Ok(format!("{pad}!")));
    }
}

/// Every event logged in this process, as (level, message); installed once.
fn events() -> &'static Mutex<Vec<(tracing::Level, String)>> {
    static EVENTS: std::sync::OnceLock<&'static Mutex<Vec<(tracing::Level, String)>>> =
        std::sync::OnceLock::new();
    EVENTS.get_or_init(|| {
        let log: &'static Mutex<Vec<_>> = Box::leak(Box::default());
        let _ = tracing::subscriber::set_global_default(Collect(log));
        log
    })
}

/// A subscriber that keeps every event's level and message.
struct Collect(&'static Mutex<Vec<(tracing::Level, String)>>);

struct Message(String);

impl tracing::field::Visit for Message {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl tracing::Subscriber for Collect {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut message = Message(String::new());
        event.record(&mut message);
        self.0.lock().expect("the events").push((*event.metadata().level(), message.0));
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_transition_is_a_tracing_event() {
    let log = events();
    let p = pair(Duration::from_millis(400), None).await;
    p.proxy.cut_now();
    assert_eq!(p.left.two("t1".into(), 1.0).await, Ok(4.0));
    p.proxy.refuse(true);
    p.proxy.cut_now();
    let mut state = p.left.watch_connection();
    let _ = tokio::time::timeout(
        Duration::from_secs(5),
        state.wait_for(|s| matches!(s, ConnectionState::Closed { .. })),
    )
    .await;
    let seen = log.lock().expect("the events").clone();
    let has = |level: tracing::Level, text: &str| seen.iter().any(|(l, m)| *l == level && m.contains(text));
    assert!(has(tracing::Level::WARN, "the connection broke; resuming the session"), "{seen:?}");
    assert!(has(tracing::Level::INFO, "redialing the partner"), "{seen:?}");
    assert!(has(tracing::Level::INFO, "the session resumed"), "{seen:?}");
    assert!(has(tracing::Level::INFO, "the connection closed"), "{seen:?}");
}
