//! The host-facing API of generated endpoints, end to end (the book's tooling and runtime
//! chapters): handles (`Clone + Send + Sync`, clones share one endpoint, many tasks calling at
//! once), `stop()` and stop listeners (from either side, twice, at once, during a running
//! call, on a broken pair), dropping every handle of one side, per-call options (a deadline
//! on a call waiting for a lock, an attempt limit, options per handle), `id()` and
//! `endpoint()`, listeners (several clients accepted at once with state per connection,
//! `local_addr`, a stopped or dropped listener, a busy port, a closed port, the handshake time
//! limit, an idle connection kept by heartbeats), a no-partner endpoint, the same scenario on
//! an in-process pair, over TCP and over TCP with the roles reversed, and the messages of
//! errors.
//!
//! The protocols are `protocols/host_pair.wld` (a pair whose `Slow` sequence waits inside
//! the Server's host function `pause` for as long as a test likes, so a transaction can be
//! held open on purpose) and `protocols/host_solo.wld` (one endpoint). Every wait is
//! bounded: a hang fails the test with a message saying what did not happen.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use waldo::{CallOptions, EndpointRef, Error, External, TcpOptions};
use waldo_e2e::app_error;
use waldo_e2e::corpus_host_pair::host_pair::{self, Client, ClientListener, Server, ServerListener};
use waldo_e2e::corpus_host_solo::host_solo::Counter;
use waldo_e2e::corpus_ping_pong::ping_pong::Pinger;

const WAIT: Duration = Duration::from_secs(10);

async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f).await.unwrap_or_else(|_| panic!("{what} took more than {WAIT:?}"))
}

// ---------------------------------------------------------------- compile-time guarantees

const _: () = {
    /// Handles and the host's values: cloned freely and shared between tasks and threads.
    const fn host_value<T: Clone + Send + Sync + 'static>() {}
    /// Listeners: shared between tasks (behind an `Arc`).
    const fn shared<T: Send + Sync + 'static>() {}
    /// The error type works with `?` into `Box<dyn Error + Send + Sync>`, anyhow and the like.
    const fn error<T: std::error::Error + Clone + PartialEq + Send + Sync + 'static>() {}
    host_value::<Client>();
    host_value::<Server>();
    host_value::<Counter>();
    host_value::<EndpointRef>();
    host_value::<CallOptions>();
    host_value::<TcpOptions>();
    host_value::<External<f64>>();
    shared::<ClientListener>();
    shared::<ServerListener>();
    error::<Error>();
};

fn send<T: Send>(_: &T) {}

/// The futures of every kind of call can be spawned on a multi-threaded runtime.
fn futures_are_send(c: &Client, s: &Server, listener: &ServerListener, counter: &Counter) {
    send(&c.inc());
    send(&c.ask(String::new()));
    send(&c.me_of(s.endpoint()));
    send(&c.stop());
    send(&s.peek());
    send(&listener.accept(String::new(), || ()));
    send(&listener.next_failure());
    send(&Client::connect("127.0.0.1:1", String::new()));
    send(&Server::listen("127.0.0.1:0"));
    send(&host_pair::in_process_pair(String::new(), String::new(), || ()));
    send(&counter.inc());
    send(&Counter::new(String::new(), 0.0, || ()));
}

// ---------------------------------------------------------------- helpers

/// The Server's `pause` host function (or the Counter's `hold`), under the test's control:
/// unarmed it returns at once; armed, its next run says it was entered and blocks its thread
/// (telling tokio so) until released, or for at most [`WAIT`].
#[derive(Clone)]
struct Pause(Arc<PauseState>);

struct PauseState {
    armed: AtomicBool,
    released: Mutex<bool>,
    wake: Condvar,
    entered: tokio::sync::Semaphore,
}

impl Pause {
    fn new() -> Pause {
        Pause(Arc::new(PauseState {
            armed: AtomicBool::new(false),
            released: Mutex::new(false),
            wake: Condvar::new(),
            entered: tokio::sync::Semaphore::new(0),
        }))
    }

    /// The next run of the host function waits for [`Pause::release`].
    fn arm(&self) {
        *self.0.released.lock().expect("pause") = false;
        self.0.armed.store(true, Ordering::SeqCst);
    }

    fn release(&self) {
        *self.0.released.lock().expect("pause") = true;
        self.0.wake.notify_all();
    }

    /// Waits until an armed run of the host function has begun.
    async fn entered(&self) {
        within("the paused host function to be entered", self.0.entered.acquire())
            .await
            .expect("the semaphore is never closed")
            .forget();
    }

    fn hook(&self) -> impl Fn() + Send + Sync + 'static {
        let state = self.0.clone();
        move || {
            if !state.armed.swap(false, Ordering::SeqCst) {
                return;
            }
            state.entered.add_permits(1);
            tokio::task::block_in_place(|| {
                let released = state.released.lock().expect("pause");
                let _unused = state.wake.wait_timeout_while(released, WAIT, |r| !*r).expect("pause");
            });
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    InProcess,
    Tcp,
}

const BOTH: [Via; 2] = [Via::InProcess, Via::Tcp];

/// A Client named `cli` and a Server labelled `srv` whose `pause` is `pause`, joined `via`.
async fn pair(via: Via, pause: &Pause) -> (Client, Server) {
    match via {
        Via::InProcess => {
            within("an in-process pair", host_pair::in_process_pair("cli".into(), "srv".into(), pause.hook()))
                .await
                .expect("an in-process pair")
        }
        Via::Tcp => {
            let listener = Server::listen("127.0.0.1:0").await.expect("listen");
            let addr = listener.local_addr();
            within("a TCP pair", async {
                tokio::try_join!(
                    Client::connect(addr, "cli".into()),
                    listener.accept("srv".into(), pause.hook())
                )
            })
            .await
            .expect("a TCP pair")
        }
    }
}

/// A stop listener that counts its runs, and a receiver told at its first run.
fn counting_listener()
-> (Arc<AtomicUsize>, impl FnOnce() + Send + 'static, tokio::sync::oneshot::Receiver<()>) {
    let runs = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = tokio::sync::oneshot::channel();
    let counted = runs.clone();
    let listener = move || {
        counted.fetch_add(1, Ordering::SeqCst);
        let _ = tx.send(());
    };
    (runs, listener, rx)
}

fn is_network(result: &Result<impl std::fmt::Debug, Error>) -> bool {
    matches!(result, Err(Error::Network { .. }))
}

/// Calls `c.add(1)` until it fails with a network error (the lost partner noticed).
async fn until_broken(c: &Client) -> Error {
    within("the partner's loss to be noticed", async {
        loop {
            match c.add(1.0).await {
                Err(e @ Error::Network { .. }) => return e,
                Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                Err(other) => panic!("expected a network error, got {other:?}"),
            }
        }
    })
    .await
}

// ---------------------------------------------------------------- handles

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clones_share_one_endpoint_and_many_tasks_call_them_at_once() {
    for via in BOTH {
        let pause = Pause::new();
        let (c, s) = pair(via, &pause).await;
        let counter = Counter::new("solo".into(), 0.0, || ()).await.expect("a counter");
        let listener = Server::listen("127.0.0.1:0").await.expect("listen");
        futures_are_send(&c, &s, &listener, &counter);

        let c2 = c.clone();
        assert_eq!(c2.id(), c.id(), "{via:?}");
        assert_eq!(c2.inc().await, Ok(1.0), "{via:?}");
        assert_eq!(c.inc().await, Ok(2.0), "{via:?}: the original sees the clone's write");
        drop(c2);
        assert_eq!(c.inc().await, Ok(3.0), "{via:?}: dropping a clone changes nothing");
        assert_eq!(c.peek().await, Ok(("cli".to_owned(), 3.0, 0.0)), "{via:?}");

        const TASKS: usize = 8;
        const EACH: usize = 25;
        let mut incs = Vec::new();
        for _ in 0..TASKS {
            let c = c.clone();
            incs.push(tokio::spawn(async move {
                let mut seen = Vec::new();
                for _ in 0..EACH {
                    seen.push(c.inc().await.expect("inc"));
                }
                seen
            }));
        }
        let mut hits = Vec::new();
        for _ in 0..2 {
            let s = s.clone();
            hits.push(tokio::spawn(async move {
                let mut seen = Vec::new();
                for _ in 0..EACH {
                    seen.push(s.inc().await.expect("inc"));
                }
                seen
            }));
        }
        // The peered counter, from both sides at once.
        let mut adds = Vec::new();
        for k in 0..4 {
            let (c, s) = (c.clone(), s.clone());
            adds.push(tokio::spawn(async move {
                let mut seen = Vec::new();
                for _ in 0..EACH {
                    seen.push(if k % 2 == 0 { c.add(1.0).await } else { s.add(1.0).await }.expect("add"));
                }
                seen
            }));
        }
        let all = |tasks: Vec<tokio::task::JoinHandle<Vec<f64>>>| async move {
            let mut seen = Vec::new();
            for t in tasks {
                seen.extend(within("a calling task", t).await.expect("a calling task"));
            }
            seen.sort_by(f64::total_cmp);
            seen
        };
        let upto = |from: usize, n: usize| (from..from + n).map(|i| i as f64).collect::<Vec<_>>();
        assert_eq!(all(incs).await, upto(4, TASKS * EACH), "{via:?}: each inc saw a distinct count");
        assert_eq!(all(hits).await, upto(1, 2 * EACH), "{via:?}");
        assert_eq!(all(adds).await, upto(1, 4 * EACH), "{via:?}: each add saw a distinct sum");
        let total = (4 * EACH) as f64;
        assert_eq!(c.peek().await, Ok(("cli".to_owned(), (3 + TASKS * EACH) as f64, total)), "{via:?}");
        assert_eq!(s.peek().await, Ok(("srv".to_owned(), 0.0, (2 * EACH) as f64, total)), "{via:?}");
    }
}

// ---------------------------------------------------------------- stop

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_refuses_every_later_call_on_both_sides_and_runs_each_listener_exactly_once() {
    for via in BOTH {
        let pause = Pause::new();
        let (c, s) = pair(via, &pause).await;
        let (c_runs, c_listener, _) = counting_listener();
        let (c_runs2, c_listener2, _) = counting_listener();
        let (s_runs, s_listener, s_stopped) = counting_listener();
        c.on_stop(c_listener);
        c.clone().on_stop(c_listener2);
        s.on_stop(s_listener);
        assert_eq!(c.add(1.0).await, Ok(1.0), "{via:?}");

        within("stop", c.stop()).await;
        assert_eq!(
            c_runs.load(Ordering::SeqCst),
            1,
            "{via:?}: this side's listeners ran before stop returned"
        );
        assert_eq!(c_runs2.load(Ordering::SeqCst), 1, "{via:?}: a listener added on a clone ran too");
        within("the partner's stop listener", s_stopped).await.expect("the Server's listener ran");
        assert_eq!(s_runs.load(Ordering::SeqCst), 1, "{via:?}");

        let hurried = c.with_options(CallOptions::default().with_deadline(Duration::from_secs(1)));
        assert_eq!(c.inc().await, Err(Error::Stopped), "{via:?}");
        assert_eq!(c.clone().inc().await, Err(Error::Stopped), "{via:?}");
        assert_eq!(hurried.inc().await, Err(Error::Stopped), "{via:?}");
        assert_eq!(c.add(1.0).await, Err(Error::Stopped), "{via:?}");
        assert_eq!(c.peek().await, Err(Error::Stopped), "{via:?}");
        assert_eq!(c.slow().await, Err(Error::Stopped), "{via:?}");
        assert_eq!(c.ask("q".into()).await, Err(Error::Stopped), "{via:?}");
        assert_eq!(c.me().await, Err(Error::Stopped), "{via:?}");
        assert_eq!(s.inc().await, Err(Error::Stopped), "{via:?}");
        assert_eq!(s.add(1.0).await, Err(Error::Stopped), "{via:?}");
        assert_eq!(s.peek().await, Err(Error::Stopped), "{via:?}");
        assert_eq!(s.me().await, Err(Error::Stopped), "{via:?}");

        // Stopping again, on either side or through a clone, returns at once and runs nothing.
        within("a second stop", c.stop()).await;
        within("a stop of the partner", s.stop()).await;
        within("a stop through a clone", c.clone().stop()).await;
        assert_eq!(
            [c_runs.load(Ordering::SeqCst), c_runs2.load(Ordering::SeqCst), s_runs.load(Ordering::SeqCst)],
            [1, 1, 1],
            "{via:?}"
        );

        // A listener added after the stop runs at once, on the caller's thread, once.
        for side in ["client", "server"] {
            let (late, listener, _) = counting_listener();
            if side == "client" {
                c.on_stop(listener);
            } else {
                s.on_stop(listener);
            }
            assert_eq!(late.load(Ordering::SeqCst), 1, "{via:?}: a late listener on the {side}");
        }
        assert_eq!(c.inc().await, Err(Error::Stopped), "{via:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_partner_stops_this_side_too() {
    for via in BOTH {
        let pause = Pause::new();
        let (c, s) = pair(via, &pause).await;
        let (c_runs, c_listener, c_stopped) = counting_listener();
        let (s_runs, s_listener, _) = counting_listener();
        c.on_stop(c_listener);
        s.on_stop(s_listener);
        assert_eq!(s.add(2.0).await, Ok(2.0), "{via:?}");
        within("the Server's stop", s.stop()).await;
        assert_eq!(s_runs.load(Ordering::SeqCst), 1, "{via:?}");
        within("the Client's stop listener", c_stopped).await.expect("the Client's listener ran");
        assert_eq!(c.inc().await, Err(Error::Stopped), "{via:?}");
        assert_eq!(c.peek().await, Err(Error::Stopped), "{via:?}");
        within("a stop of a side the partner already stopped", c.stop()).await;
        assert_eq!([c_runs.load(Ordering::SeqCst), s_runs.load(Ordering::SeqCst)], [1, 1], "{via:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_sides_and_a_clone_stopping_at_once_all_return_and_listeners_run_once() {
    for via in BOTH {
        let pause = Pause::new();
        let (c, s) = pair(via, &pause).await;
        let (c_runs, c_listener, _) = counting_listener();
        let (s_runs, s_listener, _) = counting_listener();
        c.on_stop(c_listener);
        s.on_stop(s_listener);
        let c2 = c.clone();
        within("three stops at once", async { tokio::join!(c.stop(), c2.stop(), s.stop()) }).await;
        assert_eq!([c_runs.load(Ordering::SeqCst), s_runs.load(Ordering::SeqCst)], [1, 1], "{via:?}");
        assert_eq!(c.inc().await, Err(Error::Stopped), "{via:?}");
        assert_eq!(s.inc().await, Err(Error::Stopped), "{via:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_running_during_stop_finishes_while_new_calls_are_refused() {
    for via in BOTH {
        let pause = Pause::new();
        let (c, s) = pair(via, &pause).await;
        let (c_runs, c_listener, _) = counting_listener();
        let (s_runs, s_listener, s_stopped) = counting_listener();
        c.on_stop(c_listener);
        s.on_stop(s_listener);
        pause.arm();
        let slow = tokio::spawn({
            let c = c.clone();
            async move { c.slow().await }
        });
        pause.entered().await;
        let stopping = tokio::spawn({
            let c = c.clone();
            async move { c.stop().await }
        });
        // (A probe that entered before the stop began may wait behind the running call: it
        // has a deadline, and the stop waits for it too.)
        let probe = c.with_options(CallOptions::default().with_deadline(Duration::from_millis(20)));
        within("the stop to refuse new calls", async {
            while probe.inc().await != Err(Error::Stopped) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        assert_eq!(c.inc().await, Err(Error::Stopped), "{via:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!stopping.is_finished(), "{via:?}: the stop waits for the running call");
        assert!(!slow.is_finished(), "{via:?}");
        assert_eq!(c_runs.load(Ordering::SeqCst), 0, "{via:?}: no listener runs before the stop is done");
        pause.release();
        assert_eq!(within("the running call", slow).await.expect("join"), Ok(11.0), "{via:?}");
        within("the stop", stopping).await.expect("join");
        assert_eq!(c_runs.load(Ordering::SeqCst), 1, "{via:?}");
        within("the partner's stop", s_stopped).await.expect("the Server's listener ran");
        assert_eq!(s_runs.load(Ordering::SeqCst), 1, "{via:?}");
        assert_eq!(s.peek().await, Err(Error::Stopped), "{via:?}");
        assert_eq!(c.peek().await, Err(Error::Stopped), "{via:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_of_the_partner_waits_for_a_running_call_that_involves_it() {
    for via in BOTH {
        let pause = Pause::new();
        let (c, s) = pair(via, &pause).await;
        pause.arm();
        let slow = tokio::spawn({
            let c = c.clone();
            async move { c.slow().await }
        });
        pause.entered().await;
        let stopping = tokio::spawn({
            let s = s.clone();
            async move { s.stop().await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!stopping.is_finished(), "{via:?}: the Server's stop waits for the Client's running call");
        pause.release();
        assert_eq!(within("the running call", slow).await.expect("join"), Ok(11.0), "{via:?}");
        within("the stop", stopping).await.expect("join");
        assert_eq!(c.inc().await, Err(Error::Stopped), "{via:?}");
        assert_eq!(s.inc().await, Err(Error::Stopped), "{via:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_lets_calls_waiting_for_locks_on_either_side_finish() {
    for via in BOTH {
        let pause = Pause::new();
        let (c, s) = pair(via, &pause).await;
        pause.arm();
        let slow = tokio::spawn({
            let c = c.clone();
            async move { c.slow().await }
        });
        pause.entered().await;
        // Both wait for `shared`, which `slow()` holds on both replicas.
        let reader = tokio::spawn({
            let c = c.clone();
            async move { c.touch_then_read().await }
        });
        let writer = tokio::spawn({
            let s = s.clone();
            async move { s.add(1.0).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let stopping = tokio::spawn({
            let c = c.clone();
            async move { c.stop().await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!stopping.is_finished(), "{via:?}");
        assert!(!reader.is_finished() && !writer.is_finished(), "{via:?}: both still wait");
        pause.release();
        assert_eq!(within("slow", slow).await.expect("join"), Ok(11.0), "{via:?}");
        let read = within("the waiting reader", reader).await.expect("join");
        assert!(read == Ok(111.0) || read == Ok(112.0), "{via:?}: {read:?}");
        assert_eq!(within("the waiting writer", writer).await.expect("join"), Ok(112.0), "{via:?}");
        within("the stop", stopping).await.expect("join");
        assert_eq!(s.add(1.0).await, Err(Error::Stopped), "{via:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_racing_a_stop_either_commit_or_are_stopped() {
    for via in BOTH {
        let pause = Pause::new();
        let (c, s) = pair(via, &pause).await;
        let mut tasks = Vec::new();
        for k in 0..4 {
            let (c, s) = (c.clone(), s.clone());
            tasks.push(tokio::spawn(async move {
                let mut seen = Vec::new();
                for _ in 0..200 {
                    seen.push(if k % 2 == 0 { c.add(1.0).await } else { s.add(1.0).await });
                }
                seen
            }));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        within("a stop under load", c.stop()).await;
        let (mut committed, mut stopped) = (Vec::new(), 0usize);
        for t in tasks {
            for r in within("a calling task", t).await.expect("join") {
                match r {
                    Ok(v) => committed.push(v),
                    Err(Error::Stopped) => stopped += 1,
                    Err(other) => panic!("{via:?}: a call racing a stop failed with {other:?}"),
                }
            }
        }
        committed.sort_by(f64::total_cmp);
        let n = committed.len();
        assert_eq!(committed, (1..=n).map(|i| i as f64).collect::<Vec<_>>(), "{via:?}: each committed once");
        assert_eq!(n + stopped, 800, "{via:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_stop_listener_does_not_keep_the_others_from_running() {
    let counter = Counter::new("solo".into(), 0.0, || ()).await.expect("a counter");
    let (runs, listener, _) = counting_listener();
    counter.on_stop(|| panic!("this stop listener panics (on purpose)"));
    counter.on_stop(listener);
    within("stop", counter.stop()).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(counter.inc().await, Err(Error::Stopped));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_an_endpoint_whose_partner_is_gone_returns_at_once() {
    for via in BOTH {
        let pause = Pause::new();
        let (c, s) = pair(via, &pause).await;
        let (c_runs, c_listener, _) = counting_listener();
        c.on_stop(c_listener);
        drop(s);
        until_broken(&c).await;
        let started = Instant::now();
        within("a stop on a broken pair", c.stop()).await;
        assert!(started.elapsed() < Duration::from_secs(2), "{via:?}: stopped after {:?}", started.elapsed());
        assert_eq!(c_runs.load(Ordering::SeqCst), 1, "{via:?}");
        assert_eq!(c.inc().await, Err(Error::Stopped), "{via:?}");
    }
}

// ---------------------------------------------------------------- dropping handles

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_every_handle_of_one_side_fails_the_partners_next_call_with_a_network_error() {
    for via in BOTH {
        let pause = Pause::new();
        let (c, s) = pair(via, &pause).await;
        assert_eq!(c.add(3.0).await, Ok(3.0), "{via:?}");
        let (s2, as_value) = (s.clone(), s.endpoint());
        drop(s);
        drop(s2);
        // An `Endpoint` value the host still holds keeps the endpoint, and the pair, alive.
        assert_eq!(c.add(1.0).await, Ok(4.0), "{via:?}");
        drop(as_value);

        let started = Instant::now();
        let next = within("the call after the partner went", c.add(1.0)).await;
        assert!(started.elapsed() < Duration::from_secs(2), "{via:?}: failed after {:?}", started.elapsed());
        match &next {
            Err(Error::Network { message }) => {
                assert!(message.contains("the partner endpoint was dropped"), "{via:?}: {message}");
            }
            other => panic!("{via:?}: expected a network error, got {other:?}"),
        }
        assert!(is_network(&c.slow().await), "{via:?}: sequences fail");
        assert!(is_network(&c.ask("q".into()).await), "{via:?}");
        // Local work goes on, and the peered data stays readable with its last committed value.
        assert_eq!(c.touch_then_read().await, Ok(4.0), "{via:?}");
        assert_eq!(c.inc().await, Ok(2.0), "{via:?}");
        assert_eq!(c.peek().await, Ok(("cli".to_owned(), 2.0, 4.0)), "{via:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_client_fails_the_servers_next_peered_write() {
    for via in BOTH {
        let pause = Pause::new();
        let (c, s) = pair(via, &pause).await;
        assert_eq!(s.add(5.0).await, Ok(5.0), "{via:?}");
        drop(c);
        let next = within("the Server's call after the Client went", s.add(1.0)).await;
        assert!(is_network(&next), "{via:?}: {next:?}");
        assert_eq!(s.inc().await, Ok(1.0), "{via:?}");
        assert_eq!(s.peek().await, Ok(("srv".to_owned(), 0.0, 1.0, 5.0)), "{via:?}");
    }
}

// ---------------------------------------------------------------- call options

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_on_a_call_waiting_for_a_lock_times_out_and_leaves_no_trace() {
    for via in BOTH {
        let pause = Pause::new();
        let (c, s) = pair(via, &pause).await;
        let deadline = Duration::from_millis(100);
        let hurried = c.with_options(CallOptions::default().with_deadline(deadline));
        assert_eq!(hurried.options().deadline, Some(deadline), "{via:?}");
        assert_eq!(hurried.clone().options().deadline, Some(deadline), "{via:?}: clones keep their options");
        assert_eq!(c.options().deadline, None, "{via:?}: with_options leaves the original handle alone");
        assert_eq!(hurried.id(), c.id(), "{via:?}: the same endpoint");

        // `slow()` holds `shared` while the Server's block waits in `pause`.
        pause.arm();
        let slow = tokio::spawn({
            let c = c.clone();
            async move { c.slow().await }
        });
        pause.entered().await;
        // A call without a deadline waits as long as it takes.
        let patient = tokio::spawn({
            let c = c.clone();
            async move { c.touch_then_read().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;

        let started = Instant::now();
        assert_eq!(
            within("the hurried call", hurried.touch_then_read()).await,
            Err(Error::Timeout),
            "{via:?}"
        );
        let waited = started.elapsed();
        assert!(waited >= deadline && waited < Duration::from_secs(2), "{via:?}: timed out after {waited:?}");
        assert_eq!(within("a hurried add", hurried.add(1.0)).await, Err(Error::Timeout), "{via:?}");
        assert!(!patient.is_finished(), "{via:?}: the handle without a deadline still waits");
        assert!(!slow.is_finished(), "{via:?}");

        pause.release();
        assert_eq!(within("slow", slow).await.expect("join"), Ok(11.0), "{via:?}");
        assert_eq!(within("the patient call", patient).await.expect("join"), Ok(111.0), "{via:?}");
        // Only the patient call's `calls += 1` committed: the timed-out ones left no trace.
        assert_eq!(c.peek().await, Ok(("cli".to_owned(), 1.0, 111.0)), "{via:?}");
        assert_eq!(s.peek().await, Ok(("srv".to_owned(), 0.0, 0.0, 111.0)), "{via:?}");
        // With nothing in its way, the hurried handle's calls commit.
        assert_eq!(hurried.inc().await, Ok(2.0), "{via:?}");
        assert_eq!(hurried.slow().await, Ok(122.0), "{via:?}");
        assert_eq!(s.peek().await, Ok(("srv".to_owned(), 0.0, 0.0, 222.0)), "{via:?}");
        // A deadline too far away to represent is no deadline.
        let forever = c.with_options(CallOptions::default().with_deadline(Duration::MAX));
        assert_eq!(forever.inc().await, Ok(3.0), "{via:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_limit_of_one_gives_up_on_the_first_conflict_and_leaves_no_trace() {
    for via in BOTH {
        let pause = Pause::new();
        let (c, s) = pair(via, &pause).await;
        let once = CallOptions::default().with_max_attempts(1);
        let (c1, s1) = (c.with_options(once.clone()), s.with_options(once));
        assert_eq!(c.options().max_attempts, CallOptions::default().max_attempts, "{via:?}");
        let (mut committed, mut gave_up) = (Vec::new(), 0usize);
        for _round in 0..50 {
            let mut tasks = Vec::new();
            for k in 0..4 {
                let (c1, s1) = (c1.clone(), s1.clone());
                tasks.push(tokio::spawn(async move {
                    let mut seen = Vec::new();
                    for _ in 0..20 {
                        seen.push(if k % 2 == 0 { c1.add(1.0).await } else { s1.add(1.0).await });
                    }
                    seen
                }));
            }
            for t in tasks {
                for r in within("a contending task", t).await.expect("join") {
                    match r {
                        Ok(v) => committed.push(v),
                        Err(Error::ConflictRetriesExhausted { attempts: 1 }) => gave_up += 1,
                        Err(other) => panic!("{via:?}: unexpected {other:?}"),
                    }
                }
            }
            if gave_up > 0 {
                break;
            }
        }
        assert!(gave_up > 0, "{via:?}: 4000 contending calls met no conflict");
        committed.sort_by(f64::total_cmp);
        let n = committed.len();
        assert_eq!(committed, (1..=n).map(|i| i as f64).collect::<Vec<_>>(), "{via:?}");
        // The calls that gave up added nothing, on either replica.
        assert_eq!(c.peek().await.expect("peek").2, n as f64, "{via:?}");
        assert_eq!(s.peek().await.expect("peek").3, n as f64, "{via:?}");
    }
}

// ---------------------------------------------------------------- ids and endpoint values

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_are_unique_per_endpoint_and_are_what_waldo_code_sees() {
    let pause = Pause::new();
    let mut pairs = Vec::new();
    for via in [Via::InProcess, Via::InProcess, Via::Tcp, Via::Tcp] {
        pairs.push(pair(via, &pause).await);
    }
    let mut counters = Vec::new();
    for i in 0..3 {
        counters.push(Counter::new(format!("solo{i}"), 0.0, || ()).await.expect("a counter"));
    }
    let mut ids = BTreeSet::new();
    for (c, s) in &pairs {
        assert!(ids.insert(c.id().to_owned()), "{} repeats", c.id());
        assert!(ids.insert(s.id().to_owned()), "{} repeats", s.id());
        assert_eq!(c.me().await.expect("me"), c.id());
        assert_eq!(s.me().await.expect("me"), s.id());
        assert_eq!(c.id_of(s.endpoint()).await.expect("id_of"), s.id());
        assert_eq!(c.id_of(c.endpoint()).await.expect("id_of"), c.id());
        assert_eq!(c.me_of(s.endpoint()).await.expect("me_of"), s.id());
        assert_eq!(s.endpoint().id(), s.id());
        assert_eq!(c.clone().id(), c.id());
        assert_eq!(c.with_options(CallOptions::default()).id(), c.id());
        assert!(format!("{c:?}").contains(c.id()), "{c:?}");
        assert!(format!("{:?}", s.endpoint()).contains(s.id()), "{:?}", s.endpoint());
    }
    for k in &counters {
        assert!(ids.insert(k.id().to_owned()), "{} repeats", k.id());
        assert_eq!(k.me().await.expect("me"), k.id());
        assert_eq!(k.endpoint().id(), k.id());
        assert_eq!(pairs[0].0.id_of(k.endpoint()).await.expect("id_of"), k.id());
    }
    assert_eq!(ids.len(), 2 * pairs.len() + counters.len());
    // An endpoint's id does not change with its life.
    let (c, _) = &pairs[0];
    let before = c.id().to_owned();
    c.stop().await;
    assert_eq!(c.id(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_values_from_the_host_are_called_inside_the_callers_transaction() {
    let pause = Pause::new();
    let (c1, s1) = pair(Via::InProcess, &pause).await;
    let (c2, s2) = pair(Via::Tcp, &pause).await;
    let hold = Pause::new();
    let solo = Counter::new("solo".into(), 10.0, hold.hook()).await.expect("a counter");

    // Across pairs and transports: any endpoint on the host can be called.
    assert_eq!(c1.me_of(s2.endpoint()).await.expect("me_of"), s2.id());
    assert_eq!(c2.me_of(s1.endpoint()).await.expect("me_of"), s1.id());
    assert_eq!(c1.inc_of(s1.endpoint()).await, Ok(1.0));
    assert_eq!(c1.inc_of(s2.endpoint()).await, Ok(1.0));
    assert_eq!(c1.inc_of(s2.endpoint()).await, Ok(2.0));
    assert_eq!(c1.inc_of(c1.endpoint()).await, Ok(1.0), "a call on itself");
    assert_eq!(c1.inc_of(c2.endpoint()).await, Ok(1.0));
    assert_eq!(c1.inc_of(solo.endpoint()).await, Ok(11.0), "a no-partner endpoint");
    assert_eq!(solo.inc_of(s1.endpoint()).await, Ok(2.0), "from a no-partner endpoint");
    // A value passed twice names the same endpoint.
    let value = s1.endpoint();
    assert_eq!(c2.inc_of(value.clone()).await, Ok(3.0));
    assert_eq!(c2.inc_of(value).await, Ok(4.0));

    // The caller raising after the callee's write undoes the write.
    app_error(c1.inc_then_fail(s1.endpoint()).await, "division by zero");
    app_error(c2.inc_then_fail(solo.endpoint()).await, "division by zero");
    assert_eq!(s1.peek().await, Ok(("srv".to_owned(), 0.0, 4.0, 0.0)));
    assert_eq!(s2.peek().await, Ok(("srv".to_owned(), 0.0, 2.0, 0.0)));
    assert_eq!(solo.get().await, Ok(("solo".to_owned(), 11.0)));
    assert_eq!(c1.peek().await, Ok(("cli".to_owned(), 1.0, 0.0)));
    assert_eq!(c2.peek().await, Ok(("cli".to_owned(), 1.0, 0.0)));

    // The caller's deadline covers the endpoints it calls: here one held by another call.
    hold.arm();
    let held = tokio::spawn({
        let solo = solo.clone();
        async move { solo.held_inc().await }
    });
    hold.entered().await;
    let hurried = c1.with_options(CallOptions::default().with_deadline(Duration::from_millis(100)));
    assert_eq!(within("a hurried endpoint call", hurried.inc_of(solo.endpoint())).await, Err(Error::Timeout));
    hold.release();
    assert_eq!(within("the held call", held).await.expect("join"), Ok(12.0));
    assert_eq!(solo.get().await, Ok(("solo".to_owned(), 12.0)), "the timed-out call left no trace");
    assert_eq!(hurried.inc_of(solo.endpoint()).await, Ok(13.0));
}

// ---------------------------------------------------------------- listeners

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_clients_of_one_listener_are_served_independently() {
    const N: usize = 4;
    let listener = Arc::new(Server::listen("127.0.0.1:0").await.expect("listen"));
    let addr = listener.local_addr();
    // N tasks accept at once through one shared listener.
    let accepting: Vec<_> = (0..N)
        .map(|i| {
            let listener = listener.clone();
            tokio::spawn(async move { listener.accept(format!("s{i}"), || ()).await })
        })
        .collect();
    let mut connecting = Vec::new();
    for i in 0..N {
        connecting.push(tokio::spawn(Client::connect(addr, format!("c{i}"))));
    }
    let mut clients = Vec::new();
    for c in connecting {
        clients.push(within("a client to connect", c).await.expect("join").expect("connect"));
    }
    let mut servers = Vec::new();
    for a in accepting {
        servers.push(within("an accept", a).await.expect("join").expect("accept"));
    }

    // Each client works at once with its own partner.
    let mut working = Vec::new();
    for (i, c) in clients.iter().enumerate() {
        let c = c.clone();
        working.push(tokio::spawn(async move {
            let answer = c.ask("hi".into()).await.expect("ask");
            for _ in 0..=i {
                c.inc().await.expect("inc");
            }
            assert_eq!(c.add((i + 1) as f64).await, Ok((i + 1) as f64), "client {i}: a sum of its own");
            answer
        }));
    }
    let mut answers = Vec::new();
    for w in working {
        answers.push(within("a client's work", w).await.expect("join"));
    }
    let mut by_label = std::collections::BTreeMap::new();
    for s in &servers {
        let (label, ..) = s.peek().await.expect("peek");
        assert!(by_label.insert(label.clone(), s).is_none(), "two servers labelled {label}");
    }
    let mut labels = BTreeSet::new();
    for (i, answer) in answers.iter().enumerate() {
        let label = answer.strip_prefix("hi@").and_then(|a| a.strip_suffix("#1")).expect("hi@<label>#1");
        assert!(labels.insert(label.to_owned()), "two clients were answered by {label}");
        assert_eq!(
            by_label[label].peek().await,
            Ok((label.to_owned(), 1.0, 0.0, (i + 1) as f64)),
            "client {i}'s partner: its own globals and its own replica of the peered data"
        );
        assert_eq!(clients[i].peek().await, Ok((format!("c{i}"), (i + 1) as f64, (i + 1) as f64)));
    }
    assert_eq!(labels, (0..N).map(|i| format!("s{i}")).collect::<BTreeSet<_>>());
    for s in &servers {
        assert_eq!(s.inc().await, Ok(1.0), "each accepted endpoint has its own globals");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_addr_is_the_bound_address_and_a_busy_port_is_a_network_error() {
    let listener = Server::listen("127.0.0.1:0").await.expect("listen");
    let addr = listener.local_addr();
    assert_eq!(addr.ip(), std::net::Ipv4Addr::LOCALHOST);
    assert_ne!(addr.port(), 0, "the port the system chose");
    assert!(format!("{listener:?}").contains(&addr.to_string()), "{listener:?}");
    // Any `ToSocketAddrs` will do: here a `String`.
    let (c, s) = within("a pair through a textual address", async {
        tokio::try_join!(
            Client::connect(format!("127.0.0.1:{}", addr.port()), "cli".into()),
            listener.accept("srv".into(), || ())
        )
    })
    .await
    .expect("a pair");
    assert_eq!(c.ask("q".into()).await, Ok("q@srv#1".to_owned()));
    assert_eq!(s.peek().await, Ok(("srv".to_owned(), 1.0, 0.0, 0.0)));

    // The same port again, whichever endpoint listens.
    for err in [
        Server::listen(addr).await.expect_err("the port is taken"),
        Client::listen(addr).await.expect_err("the port is taken"),
    ] {
        match &err {
            Error::Network { message } => {
                assert!(message.starts_with("could not listen at "), "{message}");
                assert!(message.to_lowercase().contains("in use"), "{message}");
            }
            other => panic!("expected a network error, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_listener_refuses_new_connections_while_accepted_endpoints_go_on() {
    let listener = Server::listen("127.0.0.1:0").await.expect("listen");
    let addr = listener.local_addr();
    let (c, s) = within("a pair", async {
        tokio::try_join!(Client::connect(addr, "cli".into()), listener.accept("srv".into(), || ()))
    })
    .await
    .expect("a pair");
    listener.stop();
    assert_eq!(
        within("accept after stop", listener.accept("late".into(), || ())).await.err(),
        Some(Error::Stopped)
    );
    assert_eq!(within("next_failure after stop", listener.next_failure()).await, None);
    let started = Instant::now();
    let refused = within("a connect to a stopped listener", Client::connect(addr, "late".into())).await;
    assert!(
        matches!(&refused, Err(Error::Network { message }) if message.starts_with("could not connect to the partner at ")),
        "{refused:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2), "refused after {:?}", started.elapsed());

    // The endpoint accepted before the stop goes on, with its partner.
    assert_eq!(c.add(2.0).await, Ok(2.0));
    assert_eq!(c.ask("q".into()).await, Ok("q@srv#1".to_owned()));
    assert_eq!(s.add(1.0).await, Ok(3.0));
    drop(listener);
    assert_eq!(c.slow().await, Ok(14.0));
    assert_eq!(s.peek().await, Ok(("srv".to_owned(), 1.0, 0.0, 114.0)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_queued_before_the_listener_stopped_can_still_be_accepted() {
    let listener = Server::listen("127.0.0.1:0").await.expect("listen");
    let waiting = tokio::spawn(Client::connect(listener.local_addr(), "cli".into()));
    // Let the handshake finish: the connection now waits in the listener for `accept`.
    tokio::time::sleep(Duration::from_millis(200)).await;
    listener.stop();
    let s = within("accepting the queued connection", listener.accept("srv".into(), || ()))
        .await
        .expect("accept");
    let c = within("the queued connect", waiting).await.expect("join").expect("connect");
    assert_eq!(c.ask("q".into()).await, Ok("q@srv#1".to_owned()));
    assert_eq!(s.peek().await, Ok(("srv".to_owned(), 1.0, 0.0, 0.0)));
    assert_eq!(
        within("accept once the queue is empty", listener.accept("x".into(), || ())).await.err(),
        Some(Error::Stopped)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_waiting_to_be_accepted_fails_when_the_listener_is_dropped() {
    let listener = Server::listen("127.0.0.1:0").await.expect("listen");
    let waiting = tokio::spawn(Client::connect(listener.local_addr(), "cli".into()));
    // Let the handshake finish: the connection now waits in the listener for `accept`.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "connect returns only once the partner is ready");
    drop(listener);
    let result = within("the waiting connect", waiting).await.expect("join");
    assert!(is_network(&result), "{result:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_to_a_closed_port_is_a_quick_network_error_that_says_so() {
    let addr = {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        taken.local_addr().expect("addr")
    };
    let started = Instant::now();
    let errors = [
        within("connect", Client::connect(addr, "cli".into())).await.expect_err("nobody listens"),
        within("connect", Server::connect(addr, "srv".into(), || ())).await.expect_err("nobody listens"),
        within("connect", Client::connect(addr, "cli".into())).await.expect_err("nobody listens"),
    ];
    assert!(started.elapsed() < Duration::from_secs(2), "refused after {:?}", started.elapsed());
    for err in errors {
        match &err {
            Error::Network { message } => {
                assert!(message.starts_with("could not connect to the partner at "), "{message}");
                assert!(message.to_lowercase().contains("refused"), "{message}");
            }
            other => panic!("expected a network error, got {other:?}"),
        }
        assert!(err.to_string().starts_with("network error: could not connect to the partner at "), "{err}");
    }
    let err =
        within("connect", Client::connect("no such address", "cli".into())).await.expect_err("no address");
    assert!(
        matches!(&err, Error::Network { message } if message.starts_with("could not connect to the partner at ")),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_options_have_the_documented_defaults_and_bound_the_handshake() {
    let defaults = TcpOptions::default();
    assert_eq!(defaults.max_frame, 16 * 1024 * 1024);
    assert_eq!(defaults.heartbeat, Duration::from_secs(1));
    assert_eq!(defaults.partner_timeout, Duration::from_secs(5));
    assert_eq!(defaults.handshake_timeout, Duration::from_secs(10));
    let quick = TcpOptions::default().with_handshake_timeout(Duration::from_millis(200));
    assert_eq!(quick.handshake_timeout, Duration::from_millis(200));
    assert_eq!(quick.max_frame, defaults.max_frame, "the other options stay");

    // A listener whose peer says nothing gives up on it after the time limit.
    let listener = Server::listen("127.0.0.1:0").with_options(quick.clone()).await.expect("listen");
    let silent = tokio::net::TcpStream::connect(listener.local_addr()).await.expect("connect");
    let started = Instant::now();
    let failure = within("the silent peer's failure", listener.next_failure()).await.expect("a failure");
    assert_eq!(
        failure,
        Error::HandshakeRefused { reason: "the peer did not complete the handshake within 200ms".into() }
    );
    assert!(started.elapsed() < Duration::from_secs(2), "gave up after {:?}", started.elapsed());
    drop(silent);

    // So does a connecting side whose listener says nothing.
    let mute = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let started = Instant::now();
    let err = within(
        "connect to a mute listener",
        Client::connect(mute.local_addr().expect("addr"), "cli".into()).with_options(quick.clone()),
    )
    .await
    .expect_err("no handshake");
    assert_eq!(
        err,
        Error::HandshakeRefused { reason: "the peer did not complete the handshake within 200ms".into() }
    );
    assert!(started.elapsed() < Duration::from_secs(2), "gave up after {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_outlives_its_partner_timeout_by_heartbeats() {
    let quick = TcpOptions::default().with_heartbeat(Duration::from_millis(100), Duration::from_secs(1));
    let listener = Server::listen("127.0.0.1:0").with_options(quick.clone()).await.expect("listen");
    let addr = listener.local_addr();
    let (c, s) = within("a pair", async {
        tokio::try_join!(
            Client::connect(addr, "cli".into()).with_options(quick.clone()),
            listener.accept("srv".into(), || ())
        )
    })
    .await
    .expect("a pair");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(c.ask("q".into()).await, Ok("q@srv#1".to_owned()));
    assert_eq!(s.add(1.0).await, Ok(1.0));
    assert_eq!(c.slow().await, Ok(12.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_function_blocking_past_the_partner_timeout_does_not_lose_the_partner() {
    // The Server's block blocks its reader for 1 s in `pause`, three times its partner
    // timeout; the Client heartbeats all along, so the Server must not give it up.
    let quick = TcpOptions::default().with_heartbeat(Duration::from_millis(50), Duration::from_millis(300));
    let listener = Server::listen("127.0.0.1:0").with_options(quick.clone()).await.expect("listen");
    let addr = listener.local_addr();
    let slow_pause = || tokio::task::block_in_place(|| std::thread::sleep(Duration::from_secs(1)));
    let (c, s) = within("a pair", async {
        tokio::try_join!(
            Client::connect(addr, "cli".into()).with_options(quick.clone()),
            listener.accept("srv".into(), slow_pause)
        )
    })
    .await
    .expect("a pair");
    assert_eq!(within("slow", c.slow()).await, Ok(11.0));
    assert_eq!(c.peek().await, Ok(("cli".to_owned(), 0.0, 111.0)));
    assert_eq!(s.add(1.0).await, Ok(112.0), "the pair is not broken");
    assert_eq!(c.ask("q".into()).await, Ok("q@srv#1".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_call_into_a_stopped_endpoint_is_refused_with_a_network_exception() {
    let pause = Pause::new();
    let (c, _s) = pair(Via::InProcess, &pause).await;
    let solo = within("new", Counter::new("solo".into(), 0.0, || ())).await.expect("a counter");
    assert_eq!(c.inc_of(solo.endpoint()).await, Ok(1.0));
    let id = solo.id().to_owned();
    let target = solo.endpoint();
    within("stop", solo.stop()).await;
    for _ in 0..2 {
        let err = c.inc_of(target.clone()).await.expect_err("a stopped endpoint takes no calls");
        assert_eq!(err, Error::Network { message: format!("cannot call `inc`: endpoint `{id}` is stopped") });
    }
    assert_eq!(solo.inc().await, Err(Error::Stopped));
    assert_eq!(c.inc().await, Ok(1.0), "the caller goes on");
}

// ---------------------------------------------------------------- no partner

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_no_partner_endpoint_is_a_local_transactional_object() {
    let hold = Pause::new();
    let counter = within("new", Counter::new("solo".into(), 5.0, hold.hook())).await.expect("a counter");
    assert_eq!(counter.get().await, Ok(("solo".to_owned(), 5.0)));
    assert_eq!(counter.inc().await, Ok(6.0));
    app_error(counter.fail(3.0).await, "division by zero");
    assert_eq!(counter.get().await, Ok(("solo".to_owned(), 6.0)), "the failed call left no trace");
    assert_eq!(counter.me().await.expect("me"), counter.id());

    let mut tasks = Vec::new();
    for _ in 0..4 {
        let counter = counter.clone();
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..50 {
                seen.push(counter.inc().await.expect("inc"));
            }
            seen
        }));
    }
    let mut seen = Vec::new();
    for t in tasks {
        seen.extend(within("a calling task", t).await.expect("join"));
    }
    seen.sort_by(f64::total_cmp);
    assert_eq!(seen, (7..=206).map(f64::from).collect::<Vec<_>>());
    assert_eq!(counter.get().await, Ok(("solo".to_owned(), 206.0)));

    // A deadline on a call that waits for a call holding the endpoint.
    hold.arm();
    let held = tokio::spawn({
        let counter = counter.clone();
        async move { counter.held_inc().await }
    });
    hold.entered().await;
    let hurried = counter.with_options(CallOptions::default().with_deadline(Duration::from_millis(100)));
    assert_eq!(within("a hurried inc", hurried.inc()).await, Err(Error::Timeout));
    assert_eq!(within("a hurried get", hurried.get()).await, Err(Error::Timeout));
    hold.release();
    assert_eq!(within("the held call", held).await.expect("join"), Ok(207.0));
    assert_eq!(counter.get().await, Ok(("solo".to_owned(), 207.0)), "the timed-out inc left no trace");
    assert_eq!(hurried.inc().await, Ok(208.0));

    // Stop: a running call finishes, later ones are refused, listeners run once.
    let (runs, listener, _) = counting_listener();
    counter.on_stop(listener);
    hold.arm();
    let held = tokio::spawn({
        let counter = counter.clone();
        async move { counter.held_inc().await }
    });
    hold.entered().await;
    let stopping = tokio::spawn({
        let counter = counter.clone();
        async move { counter.stop().await }
    });
    let probe = counter.with_options(CallOptions::default().with_deadline(Duration::from_millis(20)));
    within("the stop to refuse new calls", async {
        while probe.get().await != Err(Error::Stopped) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert_eq!(counter.get().await, Err(Error::Stopped));
    assert!(!stopping.is_finished(), "the stop waits for the running call");
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    hold.release();
    assert_eq!(within("the held call", held).await.expect("join"), Ok(209.0));
    within("the stop", stopping).await.expect("join");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(counter.inc().await, Err(Error::Stopped));
    assert_eq!(counter.clone().fail(1.0).await, Err(Error::Stopped));
    within("a second stop", counter.stop()).await;
    let (late, listener, _) = counting_listener();
    counter.on_stop(listener);
    assert_eq!([runs.load(Ordering::SeqCst), late.load(Ordering::SeqCst)], [1, 1]);

    // A fresh one stops at once.
    let other = Counter::new("other".into(), 0.0, || ()).await.expect("a counter");
    let (runs, listener, _) = counting_listener();
    other.on_stop(listener);
    within("a stop", other.stop()).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(other.get().await, Err(Error::Stopped));
}

// ---------------------------------------------------------------- same results either way

/// One scenario on a fresh pair: every result, as text.
async fn transcript(c: &Client, s: &Server) -> Vec<String> {
    let mut out = Vec::new();
    macro_rules! record {
        ($($call:expr),* $(,)?) => { $( out.push(format!("{} = {:?}", stringify!($call), $call.await)); )* };
    }
    record!(
        c.peek(),
        s.peek(),
        c.inc(),
        c.inc(),
        c.add(5.0),
        s.add(2.0),
        c.slow(),
        c.ask("q".into()),
        c.ask("r".into()),
        c.inc_of(s.endpoint()),
        c.inc_then_fail(s.endpoint()),
        c.divide(1.0, 4.0),
        c.divide(1.0, 0.0),
        c.touch_then_read(),
        s.peek(),
        c.peek(),
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_process_pair_and_a_tcp_pair_give_the_same_results() {
    let pause = Pause::new();
    let (c, s) = pair(Via::InProcess, &pause).await;
    let in_process = within("the in-process scenario", transcript(&c, &s)).await;
    let (c, s) = pair(Via::Tcp, &pause).await;
    let over_tcp = within("the TCP scenario", transcript(&c, &s)).await;
    // The Client may listen and the Server connect, too.
    let listener = Client::listen("127.0.0.1:0").await.expect("listen");
    let addr = listener.local_addr();
    let (s, c) = within("a reversed TCP pair", async {
        tokio::try_join!(Server::connect(addr, "srv".into(), pause.hook()), listener.accept("cli".into()))
    })
    .await
    .expect("a reversed TCP pair");
    let reversed = within("the reversed TCP scenario", transcript(&c, &s)).await;
    assert_eq!(in_process, over_tcp);
    assert_eq!(in_process, reversed);
    // The place that raised: a function of this endpoint, or one of the endpoint it called.
    let zero =
        |line: u32| format!(r#"Err(Application {{ message: "division by zero at host_pair.wld:{line}" }})"#);
    let expected = [
        r#"c.peek() = Ok(("cli", 0.0, 0.0))"#.to_owned(),
        r#"s.peek() = Ok(("srv", 0.0, 0.0, 0.0))"#.to_owned(),
        "c.inc() = Ok(1.0)".to_owned(),
        "c.inc() = Ok(2.0)".to_owned(),
        "c.add(5.0) = Ok(5.0)".to_owned(),
        "s.add(2.0) = Ok(7.0)".to_owned(),
        "c.slow() = Ok(18.0)".to_owned(),
        r#"c.ask("q".into()) = Ok("q@srv#1")"#.to_owned(),
        r#"c.ask("r".into()) = Ok("r@srv#2")"#.to_owned(),
        "c.inc_of(s.endpoint()) = Ok(1.0)".to_owned(),
        format!("c.inc_then_fail(s.endpoint()) = {}", zero(56)),
        "c.divide(1.0, 4.0) = Ok(0.25)".to_owned(),
        format!("c.divide(1.0, 0.0) = {}", zero(58)),
        "c.touch_then_read() = Ok(118.0)".to_owned(),
        r#"s.peek() = Ok(("srv", 2.0, 1.0, 118.0))"#.to_owned(),
        r#"c.peek() = Ok(("cli", 3.0, 118.0))"#.to_owned(),
    ];
    assert_eq!(in_process, expected);
}

// ---------------------------------------------------------------- error messages

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_says_what_went_wrong() {
    let pause = Pause::new();
    let (c, s) = pair(Via::Tcp, &pause).await;

    let app = c.divide(1.0, 0.0).await.expect_err("division by zero");
    assert_eq!(app, Error::Application { message: "division by zero at host_pair.wld:58".into() });
    assert_eq!(app.to_string(), "application exception: division by zero at host_pair.wld:58");

    // A deadline.
    pause.arm();
    let slow = tokio::spawn({
        let c = c.clone();
        async move { c.slow().await }
    });
    pause.entered().await;
    let timeout = c
        .with_options(CallOptions::default().with_deadline(Duration::from_millis(50)))
        .add(1.0)
        .await
        .expect_err("timeout");
    pause.release();
    assert_eq!(within("slow", slow).await.expect("join"), Ok(11.0));
    assert_eq!(timeout, Error::Timeout);
    assert_eq!(timeout.to_string(), "the call's deadline passed before it could commit");

    // A refused handshake: another protocol at the listener.
    let listener = Server::listen("127.0.0.1:0").await.expect("listen");
    let refused =
        within("a ping-pong client", Pinger::connect(listener.local_addr())).await.expect_err("refused");
    assert_eq!(
        refused.to_string(),
        "handshake refused: different protocols: the peer speaks `HostPair`, this side `PingPong`"
    );
    let theirs = within("the listener's failure", listener.next_failure()).await.expect("a failure");
    assert_eq!(
        theirs.to_string(),
        "handshake refused: different protocols: the peer speaks `PingPong`, this side `HostPair`"
    );

    // A lost partner.
    drop(s);
    let lost = until_broken(&c).await;
    assert!(lost.to_string().starts_with("network error: "), "{lost}");
    assert!(lost.to_string().contains("the partner endpoint was dropped"), "{lost}");

    // Stopped.
    c.stop().await;
    let stopped = c.inc().await.expect_err("stopped");
    assert_eq!(stopped.to_string(), "the endpoint is stopped");

    // The others, as the runtime builds them.
    let gave_up = |attempts| Error::ConflictRetriesExhausted { attempts }.to_string();
    assert_eq!(gave_up(1), "gave up after 1 attempt aborted by conflicting transactions");
    assert_eq!(gave_up(3), "gave up after 3 attempts aborted by conflicting transactions");
    assert_eq!(
        Error::ProtocolDeviation { message: "a frame of unknown kind 0x77".into() }.to_string(),
        "protocol deviation: a frame of unknown kind 0x77"
    );

    // Through `Box<dyn Error>`, as `?` in a host program carries it.
    fn host_program(e: Error) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        Err(e)?
    }
    let boxed = host_program(app).expect_err("an error");
    assert_eq!(boxed.to_string(), "application exception: division by zero at host_pair.wld:58");
    assert!(boxed.source().is_none());
    assert_eq!(
        boxed.downcast_ref::<Error>(),
        Some(&Error::Application { message: "division by zero at host_pair.wld:58".into() })
    );
}

// ---------------------------------------------------------------- the shell's conveniences
//
// On `protocols/host_endpoints.wld`: Endpoint values that may be unbound, typed recovery of
// a handle, Number-keyed maps with `f64` keys, one side created alone, stop listeners taken
// back, the options' builders, and a pair over loopback TCP in one call.

use waldo_e2e::corpus_host_endpoints::host_endpoints::{self, Agent, Registry};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_argument_or_result_may_be_unbound() {
    let (registry, agent) = host_endpoints::in_process_pair().await.expect("a pair");
    // Nothing held yet: the result is `None`, and using it is an application exception.
    assert_eq!(registry.kept().await.expect("kept").map(|e| e.id().to_owned()), None);
    assert!(matches!(registry.kept_id().await, Err(Error::Application { .. })));
    // An endpoint handle's reference, passed without `Some`.
    registry.keep(agent.endpoint()).await.expect("keep");
    let held = registry.kept().await.expect("kept").expect("an endpoint");
    assert_eq!(held.id(), agent.id());
    assert_eq!(registry.kept_id().await.expect("kept_id"), agent.id());
    assert_eq!(registry.call_kept(21.0).await.expect("through the reference"), 42.0);
    // `None` unbinds it again.
    registry.keep(None).await.expect("keep(None)");
    assert!(registry.kept().await.expect("kept").is_none());
    // An endpoint's `self`, returned to the host.
    let me = agent.me().await.expect("me").expect("self is bound");
    assert_eq!(me.id(), agent.id());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reference_gives_back_its_typed_handle_and_only_of_its_own_type() {
    let (registry, agent) = host_endpoints::in_process_pair().await.expect("a pair");
    let reference = agent.endpoint();
    let typed: Agent = reference.downcast::<Agent>().expect("an Agent");
    assert_eq!(typed.id(), agent.id());
    assert_eq!(typed.double(4.0).await.expect("a call through the recovered handle"), 8.0);
    assert!(reference.downcast::<Registry>().is_none(), "an Agent is not a Registry");
    // An endpoint of another protocol with an endpoint of the same name is another type.
    let (pinger, _ponger) = waldo_e2e::corpus_ping_pong::ping_pong::in_process_pair().await.expect("a pair");
    assert!(pinger.endpoint().downcast::<Agent>().is_none());
    assert!(registry.endpoint().downcast::<Registry>().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn number_keyed_maps_take_and_give_f64_keys() {
    let (registry, _agent) = host_endpoints::in_process_pair().await.expect("a pair");
    let names = waldo::NumberMap::from([(1.5, "one and a half".to_owned()), (-2.0, "minus two".to_owned())]);
    assert_eq!(registry.lookup(names.clone(), 1.5).await.expect("lookup"), "one and a half");
    assert_eq!(registry.lookup(names, -2.0).await.expect("lookup"), "minus two");
    let squares = registry.squares(3.0).await.expect("squares");
    assert_eq!(squares.keys().collect::<Vec<_>>(), [0.5, 1.5, 2.5]);
    assert_eq!(squares.get(1.5), Some(&2.25));
    assert_eq!(squares[2.5], 6.25);
    assert_eq!(squares.get(3.5), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_side_of_a_pair_runs_alone_and_its_sequences_raise_a_network_exception() {
    let registry = Registry::without_partner().await.expect("a Registry alone");
    // Its own data and functions work as in a pair.
    assert_eq!(
        registry.lookup(waldo::NumberMap::from([(1.0, "a".to_owned())]), 1.0).await,
        Ok("a".to_owned())
    );
    // A sequence needs the partner.
    match registry.ping(1.0).await {
        Err(Error::Network { message }) => assert_eq!(message, "this endpoint has no partner"),
        other => panic!("expected a network error, got {other:?}"),
    }
    let agent = Agent::without_partner().await.expect("an Agent alone");
    assert_eq!(agent.double(3.0).await, Ok(6.0));
    // The same protocol paired: the sequence runs.
    let (registry, _agent) = host_endpoints::in_process_pair().await.expect("a pair");
    assert_eq!(registry.ping(1.0).await, Ok(2.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_listener_can_be_taken_back() {
    let (registry, agent) = host_endpoints::in_process_pair().await.expect("a pair");
    let (kept, removed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let k = kept.clone();
    let _kept = registry.on_stop(move || {
        k.fetch_add(1, Ordering::SeqCst);
    });
    let r = removed.clone();
    let taken_back = agent.on_stop(move || {
        r.fetch_add(1, Ordering::SeqCst);
    });
    assert!(taken_back.remove(), "the listener was still waiting");
    within("stop", registry.stop()).await;
    within("the partner's stop", async {
        while !agent.is_stopped() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    assert_eq!(kept.load(Ordering::SeqCst), 1);
    assert_eq!(removed.load(Ordering::SeqCst), 0, "a removed listener does not run");
    // Once a listener has run, there is nothing to take back.
    let late = registry.on_stop(|| {});
    assert!(!late.remove());
}

#[test]
fn every_option_has_a_builder() {
    let call = CallOptions::default()
        .with_deadline(Duration::from_secs(3))
        .with_max_attempts(7)
        .with_immediate_retries(0)
        .with_backoff_base(Duration::from_micros(5))
        .with_backoff_cap(Duration::from_millis(9));
    assert_eq!(call.deadline, Some(Duration::from_secs(3)));
    assert_eq!(call.max_attempts, 7);
    assert_eq!(call.immediate_retries, 0);
    assert_eq!(call.backoff_base, Duration::from_micros(5));
    assert_eq!(call.backoff_cap, Duration::from_millis(9));
    assert_eq!(call.without_deadline().deadline, None);
    let tcp = TcpOptions::default()
        .with_heartbeat(Duration::from_millis(100), Duration::from_secs(2))
        .with_partner_timeout(Duration::from_secs(3))
        .with_max_frame(1 << 20)
        .with_handshake_timeout(Duration::from_secs(4))
        .with_handshake_idle(Duration::from_secs(5))
        .with_max_connections(6)
        .with_max_handshakes(7);
    assert_eq!(tcp.heartbeat, Duration::from_millis(100));
    assert_eq!(tcp.partner_timeout, Duration::from_secs(3));
    assert_eq!(tcp.max_frame, 1 << 20);
    assert_eq!(tcp.handshake_timeout, Duration::from_secs(4));
    assert_eq!(tcp.handshake_idle, Duration::from_secs(5));
    assert_eq!(tcp.max_connections, 6);
    assert_eq!(tcp.max_handshakes, 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_and_listen_take_their_options_the_same_way() {
    // A listener that serves one connection at a time refuses the second with the reason.
    let one = TcpOptions::default().with_max_connections(1);
    let listener =
        within("listen", Agent::listen("127.0.0.1:0").with_options(one.clone())).await.expect("listen");
    let addr = listener.local_addr();
    let (registry, agent) = within("a pair", async {
        tokio::try_join!(Registry::connect(addr).with_options(one.clone()), listener.accept())
    })
    .await
    .expect("a pair");
    assert_eq!(registry.ping(2.0).await, Ok(3.0));
    match within("a second client", Registry::connect(addr).with_options(one)).await {
        Err(Error::HandshakeRefused { reason }) => assert!(reason.contains("connections"), "{reason}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    drop(agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loopback_pair_is_two_endpoints_connected_over_tcp() {
    let (registry, agent) = within("a loopback pair", host_endpoints::loopback_pair()).await.expect("a pair");
    assert_eq!(registry.ping(41.0).await, Ok(42.0));
    // Stopping one side over the connection stops the other.
    within("stop", agent.stop()).await;
    within("the partner's stop", async {
        while !registry.is_stopped() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    assert_eq!(registry.ping(1.0).await, Err(Error::Stopped));
}
