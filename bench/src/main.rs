//! Waldo against raw TCP and the other baselines, side by side in one run.
//!
//! `cargo run --release -p waldo-bench` (full, about a minute) or `-- --quick` (a few
//! seconds). Every figure is measured in this run on this machine: the baselines (a raw tokio
//! TCP ping-pong, a tokio channel round trip) and Waldo (2- and 7-block sequence transactions
//! over loopback TCP and on an in-process pair, a local transaction, throughput with 1, 8
//! and 32 callers on one connection, four clients contending for one peered counter, and the
//! compiler). Prints a table, then one `name: value` line per figure, and writes an SVG chart
//! of the latency distributions (`--svg PATH`, default `target/waldo-bench/latency.svg`).
//!
//! Each side of a TCP connection runs on its own thread with a current-thread tokio runtime,
//! for the baseline and for Waldo alike.

use std::future::Future;
use std::hint::black_box;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod chart;

waldo::include_protocol!("bench");
waldo::include_protocol!("solo");

/// The fault campaign's bank, under the name the campaign's code expects (the campaign
/// uses part of what is generated).
#[allow(dead_code, unused_imports)]
pub mod corpus_sim_bank {
    waldo::include_protocol!("sim_bank");
}

/// The fault campaign's scenario, shared with `waldo-e2e`'s `sim_campaign` test (which
/// also uses what the benchmark does not).
#[allow(dead_code)]
#[path = "../../tests/e2e/src/campaign.rs"]
pub mod campaign;

use bench::{Client, Server};

/// How much to measure.
struct Plan {
    latency_samples: usize,
    seven_samples: usize,
    throughput_for: Duration,
    contention_for: Duration,
    compiler_runs: usize,
    sim_round_trips: usize,
    sim_seeds: u64,
    resumes: usize,
    cut_rounds: usize,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                latency_samples: 3_000,
                seven_samples: 1_000,
                throughput_for: Duration::from_millis(300),
                contention_for: Duration::from_millis(500),
                compiler_runs: 5,
                sim_round_trips: 2_000,
                sim_seeds: 20,
                resumes: 15,
                cut_rounds: 5,
            }
        } else {
            Plan {
                latency_samples: 30_000,
                seven_samples: 10_000,
                throughput_for: Duration::from_secs(2),
                contention_for: Duration::from_secs(3),
                compiler_runs: 21,
                sim_round_trips: 20_000,
                sim_seeds: 100,
                resumes: 60,
                cut_rounds: 30,
            }
        }
    }
}

/// A latency distribution, in nanoseconds, sorted.
struct Dist {
    name: &'static str,
    ns: Vec<f64>,
}

impl Dist {
    fn new(name: &'static str, mut ns: Vec<f64>) -> Dist {
        ns.sort_by(f64::total_cmp);
        Dist { name, ns }
    }

    fn pct(&self, p: f64) -> f64 {
        let i = ((self.ns.len() - 1) as f64 * p).round() as usize;
        self.ns[i]
    }

    fn p50(&self) -> f64 {
        self.pct(0.5)
    }

    fn p99(&self) -> f64 {
        self.pct(0.99)
    }
}

/// The raw baseline's server: accepts one connection and echoes 64-byte messages.
async fn echo(listener: tokio::net::TcpListener) {
    let (mut s, _) = listener.accept().await.expect("accept");
    s.set_nodelay(true).expect("nodelay");
    let mut buf = [0u8; 64];
    while s.read_exact(&mut buf).await.is_ok() {
        if s.write_all(&buf).await.is_err() {
            break;
        }
    }
}

/// One raw 64-byte round trip on `s` (to an [`echo`] server).
async fn ping(s: &mut tokio::net::TcpStream, tag: u8) {
    let mut buf = [tag; 64];
    s.write_all(&buf).await.expect("write");
    s.read_exact(&mut buf).await.expect("read");
    black_box(buf);
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime")
}

/// Times `n` runs of `op` after `n / 10` unmeasured ones.
async fn sample<F, Fut>(n: usize, mut op: F) -> Vec<f64>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = ()>,
{
    for i in 0..n / 10 {
        op(i).await;
    }
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let start = Instant::now();
        op(i).await;
        out.push(start.elapsed().as_nanos() as f64);
    }
    out
}

// ---------------------------------------------------------------- baselines

/// A tokio channel round trip between two tasks.
fn channel_rtt(plan: &Plan) -> Dist {
    let rt = runtime();
    let ns = rt.block_on(async {
        let (to_server, mut requests) =
            tokio::sync::mpsc::unbounded_channel::<(u64, tokio::sync::oneshot::Sender<u64>)>();
        tokio::spawn(async move {
            while let Some((n, answer)) = requests.recv().await {
                let _ = answer.send(n + 1);
            }
        });
        sample(plan.latency_samples, |i| {
            let (tx, rx) = tokio::sync::oneshot::channel();
            to_server.send((i as u64, tx)).expect("server");
            async move {
                black_box(rx.await.expect("answer"));
            }
        })
        .await
    });
    Dist::new("channel round trip", ns)
}

/// A 64-byte ping-pong over loopback TCP, each side on its own thread.
fn raw_tcp(plan: &Plan) -> Dist {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr");
    let server = std::thread::spawn(move || {
        runtime().block_on(async move {
            echo(tokio::net::TcpListener::from_std(listener).expect("listener")).await;
        });
    });
    let n = plan.latency_samples;
    let rt = runtime();
    let ns = rt
        .block_on(rt.spawn(async move {
            let s = tokio::net::TcpStream::connect(addr).await.expect("connect");
            s.set_nodelay(true).expect("nodelay");
            let s = tokio::sync::Mutex::new(s);
            sample(n, |i| {
                let s = &s;
                async move { ping(&mut *s.lock().await, i as u8).await }
            })
            .await
        }))
        .expect("the measuring task");
    server.join().expect("the server thread");
    Dist::new("raw TCP round trip", ns)
}

/// Raw requests and responses over one TCP connection with 32 outstanding at a time (64-byte
/// messages; the server on its own thread echoes whatever arrives, in one write per read):
/// the ceiling for 32 callers on one connection. Requests per second.
fn raw_pipelined(plan: &Plan) -> f64 {
    const OUTSTANDING: usize = 32;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr");
    let server = std::thread::spawn(move || {
        runtime().block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            let (mut s, _) = listener.accept().await.expect("accept");
            s.set_nodelay(true).expect("nodelay");
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = s.read(&mut buf).await {
                if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        });
    });
    let stop = stop_after(plan.throughput_for);
    let per_s = runtime().block_on(async move {
        let s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.set_nodelay(true).expect("nodelay");
        let (mut r, mut w) = s.into_split();
        // A permit per request that may be sent: its answer came back.
        let permits = Arc::new(tokio::sync::Semaphore::new(OUTSTANDING));
        let writer = {
            let (permits, stop) = (permits.clone(), stop.clone());
            tokio::spawn(async move {
                let requests = [7u8; 64 * OUTSTANDING];
                while !stop.load(Ordering::Relaxed) {
                    let Ok(first) = permits.acquire().await else { break };
                    first.forget();
                    // Every request that may go goes now, in one write.
                    let more = permits.available_permits();
                    if let Ok(rest) = permits.try_acquire_many(more as u32) {
                        rest.forget();
                    }
                    if w.write_all(&requests[..64 * (1 + more)]).await.is_err() {
                        break;
                    }
                }
            })
        };
        let start = Instant::now();
        let mut buf = vec![0u8; 64 * 1024];
        let mut bytes = 0usize;
        while !stop.load(Ordering::Relaxed) {
            let n = match tokio::time::timeout(Duration::from_millis(100), r.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => n,
                _ => break,
            };
            let answered = (bytes + n) / 64 - bytes / 64;
            bytes += n;
            permits.add_permits(answered);
        }
        let per_s = (bytes / 64) as f64 / start.elapsed().as_secs_f64();
        writer.abort();
        per_s
    });
    server.join().expect("the server thread");
    per_s
}

/// A mutex-protected update of one number, in the same harness as the local transaction:
/// what a local transaction is compared with.
fn mutex_update(plan: &Plan) -> Dist {
    let n = plan.latency_samples;
    let rt = runtime();
    let ns = rt
        .block_on(rt.spawn(async move {
            let counter = std::sync::Mutex::new(0.0f64);
            let ns = sample(n, |_| {
                let counter = &counter;
                async move {
                    let mut c = counter.lock().expect("the counter");
                    *c += 1.0;
                    black_box(*c);
                }
            })
            .await;
            assert_eq!(*counter.lock().expect("the counter"), (n + n / 10) as f64, "every update once");
            ns
        }))
        .expect("the measuring task");
    Dist::new("mutex-protected update", ns)
}

// ---------------------------------------------------------------- Waldo over TCP

/// What the server thread is asked to do.
enum Job {
    /// Run `callers` tasks calling `bump` until the flag is set; answer with their counts.
    Bump { callers: usize, stop: Arc<AtomicBool>, done: tokio::sync::oneshot::Sender<Vec<u64>> },
    /// The server's committed counter.
    Count(tokio::sync::oneshot::Sender<f64>),
}

/// A Server on a thread of its own, and a Client connected to it.
struct TcpPair {
    client_rt: tokio::runtime::Runtime,
    client: Client,
    jobs: tokio::sync::mpsc::UnboundedSender<Job>,
    server: Option<std::thread::JoinHandle<()>>,
}

impl TcpPair {
    fn new() -> TcpPair {
        TcpPair::with_options(waldo::TcpOptions::default(), waldo::TcpOptions::default())
    }

    /// Connected with `connecting` and `listening` options (TLS, say).
    fn with_options(connecting: waldo::TcpOptions, listening: waldo::TcpOptions) -> TcpPair {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel::<SocketAddr>();
        let (jobs, mut job_rx) = tokio::sync::mpsc::unbounded_channel::<Job>();
        let server = std::thread::spawn(move || {
            runtime().block_on(async move {
                let listener = Server::listen("127.0.0.1:0").with_options(listening).await.expect("listen");
                addr_tx.send(listener.local_addr()).expect("send the address");
                let server = listener.accept().await.expect("accept");
                while let Some(job) = job_rx.recv().await {
                    match job {
                        Job::Bump { callers, stop, done } => {
                            let server = server.clone();
                            let counts = self::callers(callers, stop, move || {
                                let server = server.clone();
                                async move { server.bump().await.is_ok() }
                            })
                            .await;
                            let _ = done.send(counts);
                        }
                        Job::Count(answer) => {
                            let _ = answer.send(server.count().await.expect("count"));
                        }
                    }
                }
                server.stop().await;
            });
        });
        let addr = addr_rx.recv().expect("the server's address");
        let client_rt = runtime();
        let client = client_rt.block_on(Client::connect(addr).with_options(connecting)).expect("connect");
        TcpPair { client_rt, client, jobs, server: Some(server) }
    }
}

impl Drop for TcpPair {
    fn drop(&mut self) {
        self.client_rt.block_on(self.client.stop());
        if let Some(server) = self.server.take() {
            let (jobs, _) = tokio::sync::mpsc::unbounded_channel();
            drop(std::mem::replace(&mut self.jobs, jobs));
            server.join().expect("the server thread");
        }
    }
}

/// Runs `n` tasks, each calling `op` until `stop` is set; how many calls each got through.
async fn callers<F, Fut>(n: usize, stop: Arc<AtomicBool>, op: F) -> Vec<u64>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = bool> + Send + 'static,
{
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let (op, stop) = (op.clone(), stop.clone());
            tokio::spawn(async move {
                let mut done = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if op().await {
                        done += 1;
                    }
                }
                done
            })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for h in handles {
        out.push(h.await.expect("a caller"));
    }
    out
}

/// Sets `stop` after `d`.
fn stop_after(d: Duration) -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        std::thread::sleep(d);
        flag.store(true, Ordering::Relaxed);
    });
    stop
}

/// The latency of `two` over mutually authenticated TLS (on an established connection).
fn waldo_tls(plan: &Plan) -> Dist {
    let (connecting, listening) = waldo_dev_certs::mutual();
    let pair = TcpPair::with_options(connecting, listening);
    let client = pair.client.clone();
    let n = plan.latency_samples;
    let task = pair.client_rt.spawn(async move {
        sample(n, |i| {
            let client = &client;
            async move {
                assert_eq!(client.two(i as f64).await.expect("two"), (i as f64 + 1.0) * 2.0);
            }
        })
        .await
    });
    Dist::new("Waldo 2-block, mutual TLS", pair.client_rt.block_on(task).expect("the measuring task"))
}

/// Latencies of `two` and `seven` over TCP, and throughput.
struct TcpFigures {
    two: Dist,
    seven: Dist,
    /// (callers, transactions per second)
    throughput: Vec<(usize, f64)>,
}

fn waldo_tcp(plan: &Plan) -> TcpFigures {
    let pair = TcpPair::new();
    let client = pair.client.clone();
    let samples = (plan.latency_samples, plan.seven_samples);
    // The calls run in a task, as in a server; the raw baseline reads in its own task too.
    let task = pair.client_rt.spawn(async move {
        let (latency_samples, seven_samples) = samples;
        let two = sample(latency_samples, |i| {
            let client = &client;
            async move {
                let y = client.two(i as f64).await.expect("two");
                assert_eq!(y, (i as f64 + 1.0) * 2.0);
            }
        })
        .await;
        let seven = sample(seven_samples, |i| {
            let client = &client;
            async move {
                assert_eq!(client.seven(i as f64).await.expect("seven"), i as f64 + 6.0);
            }
        })
        .await;
        (two, seven)
    });
    let (two, seven) = pair.client_rt.block_on(task).expect("the measuring task");
    let client = pair.client.clone();
    let mut throughput = Vec::new();
    for n in [1, 8, 32] {
        let client = client.clone();
        let start = Instant::now();
        let stop = stop_after(plan.throughput_for);
        let counts = pair.client_rt.block_on(callers(n, stop, move || {
            let client = client.clone();
            async move { client.two(1.0).await.is_ok() }
        }));
        let total: u64 = counts.iter().sum();
        throughput.push((n, total as f64 / start.elapsed().as_secs_f64()));
    }
    TcpFigures {
        two: Dist::new("Waldo 2-block, TCP", two),
        seven: Dist::new("Waldo 7-block, TCP", seven),
        throughput,
    }
}

/// Four clients, two per side, incrementing one peered counter over TCP.
struct Contention {
    commits_per_s: f64,
    retries_per_commit: f64,
    /// Commits of the least and the most successful client.
    spread: (u64, u64),
    exact: bool,
}

fn contention(plan: &Plan) -> Contention {
    let pair = TcpPair::new();
    let before = waldo::counters();
    let start = Instant::now();
    let stop = stop_after(plan.contention_for);
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let _ = pair.jobs.send(Job::Bump { callers: 2, stop: stop.clone(), done: done_tx });
    let client = pair.client.clone();
    let mut counts = pair.client_rt.block_on(callers(2, stop, move || {
        let client = client.clone();
        async move { client.bump().await.is_ok() }
    }));
    counts.extend(pair.client_rt.block_on(done_rx).expect("the server's counts"));
    let elapsed = start.elapsed().as_secs_f64();
    let after = waldo::counters();
    let total: u64 = counts.iter().sum();
    let (count_tx, count_rx) = tokio::sync::oneshot::channel();
    let _ = pair.jobs.send(Job::Count(count_tx));
    let server_count = pair.client_rt.block_on(count_rx).expect("the server's count");
    let client_count = pair.client_rt.block_on(pair.client.count()).expect("count");
    Contention {
        commits_per_s: total as f64 / elapsed,
        retries_per_commit: (after.retried - before.retried) as f64 / total.max(1) as f64,
        spread: (*counts.iter().min().unwrap_or(&0), *counts.iter().max().unwrap_or(&0)),
        exact: server_count == total as f64 && client_count == total as f64,
    }
}

// ---------------------------------------------------------------- in process

fn in_process(plan: &Plan) -> (Dist, Dist) {
    let samples = (plan.latency_samples, plan.seven_samples);
    let rt = runtime();
    rt.block_on(rt.spawn(async move {
        let (latency_samples, seven_samples) = samples;
        let (client, _server) = bench::in_process_pair().await.expect("a pair");
        let two = sample(latency_samples, |i| {
            let client = &client;
            async move {
                black_box(client.two(i as f64).await.expect("two"));
            }
        })
        .await;
        let seven = sample(seven_samples, |i| {
            let client = &client;
            async move {
                black_box(client.seven(i as f64).await.expect("seven"));
            }
        })
        .await;
        (Dist::new("Waldo 2-block, in process", two), Dist::new("Waldo 7-block, in process", seven))
    }))
    .expect("the measuring task")
}

/// The in-process 2-block transaction with the runtime's spans on (and no subscriber, as
/// here) and off, in alternating rounds: medians of each. What the spans cost when nobody
/// listens.
fn span_overhead(plan: &Plan) -> (Dist, Dist) {
    let rounds = 10;
    let per_round = plan.latency_samples / rounds;
    let rt = runtime();
    let (on, off) = rt
        .block_on(rt.spawn(async move {
            let (client, _server) = bench::in_process_pair().await.expect("a pair");
            let (mut on, mut off) = (Vec::new(), Vec::new());
            for round in 0..2 * rounds {
                let spans = round % 2 == 0;
                waldo::__rt::set_spans(spans);
                let ns = sample(per_round, |i| {
                    let client = &client;
                    async move {
                        black_box(client.two(i as f64).await.expect("two"));
                    }
                })
                .await;
                if spans { on.extend(ns) } else { off.extend(ns) }
            }
            waldo::__rt::set_spans(true);
            (on, off)
        }))
        .expect("the measuring task");
    (Dist::new("2-block in process, spans on", on), Dist::new("2-block in process, spans off", off))
}

/// A local transaction on an endpoint with no partner (`solo.wld`).
fn local(plan: &Plan) -> Dist {
    let n = plan.latency_samples;
    let rt = runtime();
    let ns = rt
        .block_on(rt.spawn(async move {
            let counter = solo::Counter::new().await.expect("a Counter");
            let ns = sample(n, |_| {
                let counter = &counter;
                async move {
                    black_box(counter.tick().await.expect("tick"));
                }
            })
            .await;
            assert_eq!(
                counter.tick().await.expect("tick"),
                (n + n / 10 + 1) as f64,
                "every tick committed once"
            );
            ns
        }))
        .expect("the measuring task");
    Dist::new("Waldo local transaction", ns)
}

// ---------------------------------------------------------------- the compiler

/// How many lines of Rust `source` becomes.
fn generated_lines(source: &str) -> usize {
    generated_code(source).lines().count()
}

/// Median milliseconds to parse, check and generate `source`.
fn compile_ms(source: &str, runs: usize) -> (f64, f64, f64) {
    let mut times = [Vec::new(), Vec::new(), Vec::new()];
    for _ in 0..runs {
        let start = Instant::now();
        let (tree, errors) = waldo_grammar::parse(source, waldo_grammar::FileId(0));
        let parsed = start.elapsed();
        assert!(errors.is_empty(), "the protocol parses");
        let start = Instant::now();
        let (protocol, diagnostics) = waldo_compiler::check::check(&tree);
        let protocol = protocol.with_source(source);
        let checked = start.elapsed();
        assert!(
            diagnostics.iter().all(|d| d.severity != waldo_compiler::Severity::Error),
            "the protocol checks"
        );
        let start = Instant::now();
        let code = waldo_compiler::codegen::generate(&protocol, &codegen_options()).expect("generates");
        let generated = start.elapsed();
        black_box(code);
        for (t, d) in times.iter_mut().zip([parsed, checked, generated]) {
            t.push(d.as_secs_f64() * 1e3);
        }
    }
    let median = |t: &mut Vec<f64>| {
        t.sort_by(f64::total_cmp);
        t[t.len() / 2]
    };
    let [a, b, c] = &mut times;
    (median(a), median(b), median(c))
}

/// The generated code of `source`.
fn generated_code(source: &str) -> String {
    let (tree, _) = waldo_grammar::parse(source, waldo_grammar::FileId(0));
    let (protocol, _) = waldo_compiler::check::check(&tree);
    waldo_compiler::codegen::generate(&protocol.with_source(source), &codegen_options()).expect("generates")
}

/// What the benchmark generates with: the options `build.rs` uses, for a protocol checked
/// with its source (so the code notes the lines that exceptions name).
fn codegen_options() -> waldo_compiler::codegen::Options {
    waldo_compiler::codegen::Options { source_name: "protocol.wld".into(), ..Default::default() }
}

/// Seconds `cargo check` takes on a crate holding only `code` (the generated code of one
/// protocol), once the crate's dependencies are built. The crate lives in the workspace's
/// `target/codegen-check`, with the workspace's lock file, so that its dependencies are the
/// ones already built and downloaded.
fn cargo_check_s(code: &str) -> Result<f64, String> {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = workspace.join("target/codegen-check");
    let src = dir.join("src");
    std::fs::create_dir_all(&src).map_err(|e| format!("cannot create {}: {e}", src.display()))?;
    let runtime = workspace.join("runtime").canonicalize().map_err(|e| format!("the runtime crate: {e}"))?;
    let manifest = format!(
        "[package]\nname = \"waldo-codegen-check\"\nversion = \"0.0.0\"\nedition = \"2024\"\npublish = false\n\n\
         [dependencies]\nwaldo = {{ path = {:?} }}\n\n[workspace]\n",
        runtime.display().to_string()
    );
    let write = |path: PathBuf, text: &str| {
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    write(dir.join("Cargo.toml"), &manifest)?;
    let lock =
        std::fs::read_to_string(workspace.join("Cargo.lock")).map_err(|e| format!("Cargo.lock: {e}"))?;
    write(dir.join("Cargo.lock"), &lock)?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let check = || -> Result<f64, String> {
        let start = Instant::now();
        let out = std::process::Command::new(&cargo)
            .args(["check", "--offline", "--quiet", "--lib"])
            .current_dir(&dir)
            .env("CARGO_TARGET_DIR", dir.join("target"))
            .output()
            .map_err(|e| format!("cannot run {cargo}: {e}"))?;
        if !out.status.success() {
            return Err(format!("cargo check failed:\n{}", String::from_utf8_lossy(&out.stderr)));
        }
        Ok(start.elapsed().as_secs_f64())
    };
    // The dependencies first, with an empty crate.
    write(src.join("lib.rs"), "")?;
    check()?;
    write(src.join("lib.rs"), code)?;
    check()
}

// ---------------------------------------------------------------- simulation

/// What the simulation costs in wall time.
struct SimFigures {
    /// Wall time per simulated 2-block transaction (one round trip), median of 5 runs, µs;
    /// and the simulated ticks each took.
    rtt_wall_us: (f64, f64),
    /// Wall time per simulated raw TCP round trip (turmoil's own cost), median of 5 runs, µs;
    /// and the simulated ticks each took.
    raw_rtt_wall_us: (f64, f64),
    /// Campaign seeds per second.
    seeds_per_s: f64,
    /// Violations the campaign's seeds found.
    violations: usize,
}

/// Runs `client` as the only client of a simulation with no latency (each message arrives
/// on the next tick) beside `server`; what it reports (wall µs and ticks per round trip).
fn sim_run<S, SF, C>(server: S, client: C) -> (f64, f64)
where
    S: Fn() -> SF + 'static,
    SF: Future<Output = waldo::sim::HostResult> + 'static,
    C: Future<Output = Result<(f64, f64), Box<dyn std::error::Error>>> + 'static,
{
    let mut sim = waldo::sim::Builder::new(1).latency(Duration::ZERO, Duration::ZERO).build();
    let out = std::rc::Rc::new(std::cell::Cell::new((0.0, 0.0)));
    let result = out.clone();
    sim.host("server", server).expect("a host");
    sim.client("client", async move {
        result.set(client.await?);
        Ok(())
    })
    .expect("a client");
    sim.run().expect("the simulation runs");
    out.get()
}

/// Wall µs and simulated ticks (of 1 ms) per round trip, for `n` round trips since `start`
/// (wall) and `ticks` (simulated time).
fn per_round_trip(start: Instant, ticks: Duration, n: usize) -> (f64, f64) {
    let simulated = waldo::sim::elapsed().unwrap_or_default().saturating_sub(ticks);
    (start.elapsed().as_nanos() as f64 / n as f64 / 1e3, simulated.as_secs_f64() * 1e3 / n as f64)
}

fn simulation(plan: &Plan) -> SimFigures {
    let n = plan.sim_round_trips;
    let median = |v: Vec<(f64, f64)>| {
        let mut v = v;
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        v[v.len() / 2]
    };
    let waldo = (0..5)
        .map(|_| {
            sim_run(
                || async {
                    let listener = Server::listen("0.0.0.0:7000").with_options(waldo::sim::options()).await?;
                    let _server = listener.accept().await?;
                    std::future::pending::<()>().await;
                    Ok(())
                },
                async move {
                    let client = Client::connect("server:7000").with_options(waldo::sim::options()).await?;
                    client.two(0.0).await?;
                    let (start, ticks) = (Instant::now(), waldo::sim::elapsed().unwrap_or_default());
                    for i in 0..n {
                        black_box(client.two(i as f64).await?);
                    }
                    Ok(per_round_trip(start, ticks, n))
                },
            )
        })
        .collect();
    let raw = (0..5)
        .map(|_| {
            sim_run(
                || async {
                    let listener = turmoil::net::TcpListener::bind("0.0.0.0:7000").await?;
                    let (mut s, _) = listener.accept().await?;
                    let mut buf = [0u8; 64];
                    loop {
                        s.read_exact(&mut buf).await?;
                        s.write_all(&buf).await?;
                    }
                },
                async move {
                    let mut s = turmoil::net::TcpStream::connect("server:7000").await?;
                    let mut buf = [0u8; 64];
                    let (start, ticks) = (Instant::now(), waldo::sim::elapsed().unwrap_or_default());
                    for _ in 0..n {
                        s.write_all(&buf).await?;
                        s.read_exact(&mut buf).await?;
                    }
                    Ok(per_round_trip(start, ticks, n))
                },
            )
        })
        .collect();
    let start = Instant::now();
    let mut violations = 0;
    for seed in 0..plan.sim_seeds {
        let report = campaign::run_seed(seed, campaign::Faults::ALL).expect("the campaign's seed runs");
        black_box((report.trace_hash, report.transfers));
        violations += report.violations.len();
    }
    let seeds_per_s = plan.sim_seeds as f64 / start.elapsed().as_secs_f64();
    SimFigures { rtt_wall_us: median(waldo), raw_rtt_wall_us: median(raw), seeds_per_s, violations }
}

// ---------------------------------------------------------------- reconnection

/// What the reconnection benchmark measured.
struct ReconnectFigures {
    /// Median ms from a cut to the first committed transaction after the resume.
    resume_ms: f64,
    /// Median µs of a raw 64-byte round trip between the same two threads.
    raw_rtt_us: f64,
    /// Calls in flight at a cut, and how many of them returned `Ok`.
    in_flight: usize,
    ok: usize,
}

/// The system's TCP, keeping a handle on every socket it connects, so that [`Cuttable::cut`]
/// can break the connections from outside: both ends see them end at once, as when a NAT or
/// a middlebox forgets them.
#[derive(Clone, Debug, Default)]
struct Cuttable {
    sockets: Arc<parking_lot::Mutex<Vec<socket2::Socket>>>,
}

impl Cuttable {
    /// Shuts every connection made so far down; returns when it did.
    fn cut(&self) -> Instant {
        for socket in self.sockets.lock().drain(..) {
            let _ = socket.shutdown(std::net::Shutdown::Both);
        }
        Instant::now()
    }
}

impl waldo::net::Network for Cuttable {
    fn connect(&self, addr: waldo::net::Address) -> waldo::net::NetFuture<'static, waldo::net::Socket> {
        let sockets = self.sockets.clone();
        Box::pin(async move {
            let stream = match addr {
                waldo::net::Address::Socket(a) => tokio::net::TcpStream::connect(a).await?,
                other => tokio::net::TcpStream::connect(other.to_string()).await?,
            };
            sockets.lock().push(socket2::SockRef::from(&stream).try_clone()?);
            Ok(stream.into())
        })
    }

    fn bind(
        &self,
        addr: waldo::net::Address,
    ) -> waldo::net::NetFuture<'static, Box<dyn waldo::net::Acceptor>> {
        waldo::net::SystemTcp.bind(addr)
    }
}

/// A resumable pair whose connection is cut from outside: the time from a cut to the first
/// committed transaction after it (the backoff's first delay zero), and the share of calls
/// in flight at a cut that still return `Ok` (8 callers, the resume window longer than any
/// outage). Like the other TCP figures, each side runs on a thread of its own: the
/// connecting side on this one, the listening side (and the raw baseline's echo server) on
/// another.
fn reconnection(plan: &Plan) -> ReconnectFigures {
    let (resumes, rounds, samples) = (plan.resumes, plan.cut_rounds, plan.latency_samples / 10);
    let policy = waldo::ReconnectPolicy::default()
        .with_backoff(Duration::ZERO, Duration::from_millis(5), Duration::from_millis(50), 2.0)
        .with_resume_window(Duration::from_secs(30));
    let options = waldo::TcpOptions::default().with_reconnect(policy);
    let (addrs_tx, addrs) = std::sync::mpsc::channel::<(SocketAddr, SocketAddr)>();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let listening = options.clone();
    let server = std::thread::spawn(move || {
        runtime().block_on(async move {
            let echo_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let echo_addr = echo_listener.local_addr().expect("addr");
            tokio::spawn(echo(echo_listener));
            let listener = Server::listen("127.0.0.1:0").with_options(listening).await.expect("listen");
            addrs_tx.send((echo_addr, listener.local_addr())).expect("send the addresses");
            let _server = listener.accept().await.expect("accept");
            let _ = stopped.await;
        });
    });
    let (echo_addr, listener_addr) = addrs.recv().expect("the addresses");
    let figures = runtime().block_on(async move {
        // The raw baseline between the same two threads, sampled before and after the cuts.
        let mut s = tokio::net::TcpStream::connect(echo_addr).await.expect("connect");
        s.set_nodelay(true).expect("nodelay");
        let mut raw = Vec::with_capacity(2 * samples);
        let mut raw_round_trips = async |n: usize, out: Option<&mut Vec<f64>>| {
            let mut times = Vec::with_capacity(n);
            for i in 0..n {
                let start = Instant::now();
                ping(&mut s, i as u8).await;
                times.push(start.elapsed().as_nanos() as f64);
            }
            if let Some(out) = out {
                out.extend(times);
            }
        };
        raw_round_trips(samples / 10, None).await;
        raw_round_trips(samples, Some(&mut raw)).await;

        let network = Cuttable::default();
        let options = options.with_network(network.clone());
        let client = Client::connect(listener_addr).with_options(options).await.expect("a pair");
        client.two(0.0).await.expect("a first call");
        let mut resume_ms = Vec::with_capacity(resumes);
        for i in 0..resumes {
            let cut = network.cut();
            let y = client.two(i as f64).await.expect("a call after the cut");
            assert_eq!(y, (i as f64 + 1.0) * 2.0);
            resume_ms.push(cut.elapsed().as_secs_f64() * 1e3);
            // Back to the steady state before the next cut.
            client.two(0.0).await.expect("a call");
        }
        let resumed = client.connection_state();
        assert_eq!(resumed, waldo::ConnectionState::Connected, "the pair resumed each cut");

        // Calls in flight at cuts.
        let cuts: Arc<parking_lot::Mutex<Vec<Instant>>> = Default::default();
        let stop = Arc::new(AtomicBool::new(false));
        let mut callers = Vec::new();
        for c in 0..8 {
            let (client, stop) = (client.clone(), stop.clone());
            callers.push(tokio::spawn(async move {
                let mut calls = Vec::new();
                let mut i = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let x = f64::from(c * 100_000 + i);
                    let start = Instant::now();
                    let ok = client.two(x).await == Ok((x + 1.0) * 2.0);
                    calls.push((start, Instant::now(), ok));
                    i += 1;
                }
                calls
            }));
        }
        for _ in 0..rounds {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let cut = network.cut();
            cuts.lock().push(cut);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        stop.store(true, Ordering::Relaxed);
        let cuts = cuts.lock().clone();
        let (mut in_flight, mut ok) = (0, 0);
        for caller in callers {
            for (start, end, good) in caller.await.expect("a caller") {
                if cuts.iter().any(|c| start <= *c && *c <= end) {
                    in_flight += 1;
                    ok += usize::from(good);
                }
            }
        }
        client.stop().await;
        raw_round_trips(samples, Some(&mut raw)).await;
        let (resume, raw) = (Dist::new("resume", resume_ms), Dist::new("raw", raw));
        ReconnectFigures { resume_ms: resume.p50(), raw_rtt_us: raw.p50() / 1e3, in_flight, ok }
    });
    let _ = stop.send(());
    server.join().expect("the listening side's thread");
    figures
}

// ---------------------------------------------------------------- report

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let svg = args
        .iter()
        .position(|a| a == "--svg")
        .and_then(|i| args.get(i + 1))
        .map_or_else(|| PathBuf::from("target/waldo-bench/latency.svg"), PathBuf::from);
    let plan = Plan::new(quick);
    let run_started = Instant::now();

    let chan = channel_rtt(&plan);
    let raw = raw_tcp(&plan);
    let pipelined = raw_pipelined(&plan);
    let mutex = mutex_update(&plan);
    let tcp = waldo_tcp(&plan);
    let tls = waldo_tls(&plan);
    let (in_two, in_seven) = in_process(&plan);
    let local = local(&plan);
    let (spans_on, spans_off) = span_overhead(&plan);
    let fight = contention(&plan);
    let sim = simulation(&plan);
    let resume = reconnection(&plan);
    let examples: Vec<(&str, &str)> = vec![
        ("bank", include_str!("../../examples/protocols/bank.wld")),
        ("chat", include_str!("../../examples/protocols/chat.wld")),
        ("ping_pong", include_str!("../../examples/protocols/ping_pong.wld")),
        ("inventory", include_str!("../../examples/protocols/inventory.wld")),
        ("gossip", include_str!("../../examples/protocols/gossip.wld")),
        ("relay", include_str!("../../examples/protocols/relay.wld")),
    ];
    // Name, lines of Waldo, lines of Rust generated, median parse/check/generate ms.
    type Compiled = (String, usize, usize, (f64, f64, f64));
    let mut compiled: Vec<Compiled> = examples
        .iter()
        .map(|(name, src)| {
            (
                (*name).to_owned(),
                src.lines().count(),
                generated_lines(src),
                compile_ms(src, plan.compiler_runs),
            )
        })
        .collect();
    let big = waldo_compiler::sample::protocol(10_000);
    let big_code = generated_code(&big);
    let big_lines = big_code.lines().count();
    // A full run also times `cargo check` of the sample's code (a minute or two the first
    // time, to build the runtime's dependencies for it).
    let big_check = if quick {
        None
    } else {
        Some(cargo_check_s(&big_code).unwrap_or_else(|e| {
            eprintln!("codegen.sample_cargo_check_s not measured: {e}");
            f64::NAN
        }))
    };
    compiled.push((
        "generated".into(),
        big.lines().count(),
        big_lines,
        compile_ms(&big, plan.compiler_runs.min(7)),
    ));

    let us = |ns: f64| ns / 1e3;
    println!("waldo-bench{}: every figure measured in this run", if quick { " --quick" } else { "" });
    println!();
    println!("{:<30} {:>10} {:>10} {:>12}", "latency", "p50 µs", "p99 µs", "p50 ratio");
    let rows: [(&Dist, f64, &str); 9] = [
        (&raw, raw.p50(), "raw RTT"),
        (&tcp.two, raw.p50(), "raw RTT"),
        (&tls, tcp.two.p50(), "TCP 2-block"),
        (&tcp.seven, 4.0 * raw.p50(), "4 raw RTT"),
        (&chan, chan.p50(), "chan RTT"),
        (&in_two, chan.p50(), "chan RTT"),
        (&in_seven, chan.p50(), "chan RTT"),
        (&local, mutex.p50(), "mutex update"),
        (&mutex, chan.p50(), "chan RTT"),
    ];
    for (d, base, of) in rows {
        println!("{:<30} {:>10.2} {:>10.2} {:>7.2}× {of}", d.name, us(d.p50()), us(d.p99()), d.p50() / base);
    }
    println!();
    println!("{:<30} {:>14}", "throughput, one TCP connection", "tx/s");
    for (n, tps) in &tcp.throughput {
        println!("{:<30} {:>14.0}", format!("{n} concurrent callers"), tps);
    }
    println!("{:<30} {:>14.0}", "raw, 32 outstanding requests", pipelined);
    println!();
    println!(
        "contention, 4 clients on one peered counter: {:.0} commits/s, {:.3} retries per commit;\n\
         commits per client from {} to {}; every increment exactly once: {}",
        fight.commits_per_s, fight.retries_per_commit, fight.spread.0, fight.spread.1, fight.exact
    );
    println!();
    println!(
        "{:<30} {:>8} {:>10} {:>10} {:>10}",
        "compiler (median ms)", "lines", "parse", "check", "generate"
    );
    for (name, lines, _, (p, c, g)) in &compiled {
        println!("{name:<30} {lines:>8} {p:>10.3} {c:>10.3} {g:>10.3}");
    }
    println!();

    let line = |name: &str, value: f64| println!("{name}: {value:.3}");
    line("baseline.tcp_rtt_p50_us", us(raw.p50()));
    line("baseline.tcp_rtt_p99_us", us(raw.p99()));
    line("baseline.chan_rtt_p50_us", us(chan.p50()));
    line("tcp.2block_p50_us", us(tcp.two.p50()));
    line("tcp.2block_p99_us", us(tcp.two.p99()));
    line("tcp.7block_p50_us", us(tcp.seven.p50()));
    line("tcp.7block_p99_us", us(tcp.seven.p99()));
    line("inproc.2block_p50_us", us(in_two.p50()));
    line("inproc.2block_p99_us", us(in_two.p99()));
    line("inproc.7block_p50_us", us(in_seven.p50()));
    line("inproc.7block_p99_us", us(in_seven.p99()));
    line("local.tx_p50_us", us(local.p50()));
    line("baseline.mutex_update_p50_us", us(mutex.p50()));
    line("ratio.local_tx_p50_vs_mutex", local.p50() / mutex.p50());
    // The 32-caller line comes once, with the ratio lines below.
    for (n, tps) in tcp.throughput.iter().filter(|(n, _)| *n != 32) {
        line(&format!("throughput.tcp_{n}_callers_tx_per_s"), *tps);
    }
    line("contention.commits_per_s", fight.commits_per_s);
    line("contention.retries_per_commit", fight.retries_per_commit);
    line("contention.min_client_commits", fight.spread.0 as f64);
    line("contention.max_client_commits", fight.spread.1 as f64);
    // Budgets: about one commit per raw round trip (the lock crosses the link), the least
    // successful client at least 0.7 of the most.
    line("contention.commits_per_rtt", fight.commits_per_s * raw.p50() / 1e9);
    line("contention.fairness_min_over_max", fight.spread.0 as f64 / fight.spread.1.max(1) as f64);
    println!("contention.exactly_once: {}", fight.exact);
    for (name, lines, rust, (p, c, g)) in &compiled {
        line(&format!("compiler.{name}.lines"), *lines as f64);
        // Budgets: bank.wld within 400 lines of Rust (the codegen tests check it too).
        line(&format!("compiler.{name}.rust_lines"), *rust as f64);
        line(&format!("compiler.{name}.parse_ms"), *p);
        line(&format!("compiler.{name}.check_ms"), *c);
        line(&format!("compiler.{name}.generate_ms"), *g);
    }
    // Budgets: at most 2,000,000 bytes and 4 lines of Rust per line of the 10,000-line sample,
    // generated in at most 150 ms; `cargo check` of that code within 8 s.
    line("codegen.sample_bytes", big_code.len() as f64);
    line("codegen.sample_lines", big_lines as f64);
    line("codegen.sample_lines_per_source_line", big_lines as f64 / big.lines().count() as f64);
    if let Some((_, _, _, (_, _, g))) = compiled.iter().find(|(name, ..)| name == "generated") {
        line("codegen.sample_generate_ms", *g);
    }
    if let Some(s) = big_check {
        line("codegen.sample_cargo_check_s", s);
    }
    line("ratio.tcp_2block_p50_vs_raw_rtt", tcp.two.p50() / raw.p50());
    line("ratio.tcp_7block_p50_vs_raw_4rtt", tcp.seven.p50() / (4.0 * raw.p50()));
    // Six messages: three round trips (the last block's Commit leaves without a wait).
    line("ratio.tcp_7block_p50_vs_raw_3rtt", tcp.seven.p50() / (3.0 * raw.p50()));
    line("ratio.inproc_2block_p50_vs_chan_rtt", in_two.p50() / chan.p50());
    // Budget: 1.02 (the spans cost at most 2 % when no subscriber listens).
    line("observe.inproc_2block_spans_on_p50_us", us(spans_on.p50()));
    line("observe.inproc_2block_spans_off_p50_us", us(spans_off.p50()));
    line("ratio.inproc_2block_spans_on_vs_off", spans_on.p50() / spans_off.p50());
    line("tls.2block_p50_us", us(tls.p50()));
    line("tls.2block_p99_us", us(tls.p99()));
    // Budget: 1.2 (TLS costs at most a fifth more than plain TCP on an established connection).
    line("ratio.tls_2block_p50_vs_tcp_2block", tls.p50() / tcp.two.p50());
    // Budget: 8 µs of wall time per simulated round trip of a 2-block transaction.
    line("sim.rtt_wall_us", sim.rtt_wall_us.0);
    line("sim.rtt_ticks", sim.rtt_wall_us.1);
    line("sim.raw_rtt_wall_us", sim.raw_rtt_wall_us.0);
    line("sim.raw_rtt_ticks", sim.raw_rtt_wall_us.1);
    line("ratio.sim_rtt_wall_vs_raw", sim.rtt_wall_us.0 / sim.raw_rtt_wall_us.0);
    line("sim.seeds_per_s", sim.seeds_per_s);
    println!("sim.campaign_violations: {}", sim.violations);
    // Budgets: a resume within 5 raw round trips plus the first delay (zero here); every call
    // in flight at a cut returns Ok.
    line("reconnect.resume_ms", resume.resume_ms);
    line("reconnect.raw_rtt_us", resume.raw_rtt_us);
    line("ratio.reconnect_resume_vs_raw_rtt", resume.resume_ms * 1e3 / resume.raw_rtt_us);
    line("reconnect.cut_calls_in_flight", resume.in_flight as f64);
    line(
        "reconnect.cut_calls_ok_pct",
        if resume.in_flight == 0 { 100.0 } else { 100.0 * resume.ok as f64 / resume.in_flight as f64 },
    );
    let t32 = tcp.throughput.iter().find(|(n, _)| *n == 32).map_or(0.0, |(_, t)| *t);
    line("throughput.tcp_32_callers_tx_per_s", t32);
    line("baseline.raw_pipelined_32_tx_per_s", pipelined);
    // Budget: 32 callers on one connection reach at least 0.4 of raw pipelined requests.
    line("ratio.tcp_32_callers_vs_raw_pipelined", t32 / pipelined);
    println!("goal.tcp_2block_within_1.3x_raw: {}", tcp.two.p50() <= 1.3 * raw.p50());
    println!("goal.tcp_7block_within_1.3x_4raw: {}", tcp.seven.p50() <= 1.3 * 4.0 * raw.p50());
    println!("goal.tcp_7block_within_1.1x_3raw: {}", tcp.seven.p50() <= 1.1 * 3.0 * raw.p50());
    println!("goal.inproc_2block_under_3us: {}", in_two.p50() <= 3_000.0);
    println!("goal.tcp_32_callers_300k: {}", t32 >= 300_000.0);

    let chart = chart::latency_svg(&[&raw, &tcp.two, &tcp.seven, &chan, &in_two, &in_seven]);
    if let Some(dir) = svg.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match std::fs::write(&svg, chart) {
        Ok(()) => println!("chart: {}", svg.display()),
        Err(e) => eprintln!("could not write the chart to {}: {e}", svg.display()),
    }
    println!("run.seconds: {:.1}", run_started.elapsed().as_secs_f64());
}
