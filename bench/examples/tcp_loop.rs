//! Runs 2-block transactions in a loop for a profiler to look at:
//! `cargo run --release -p waldo-bench --example tcp_loop -- SECONDS [CALLERS] [raw|inproc|local]`.
//!
//! By default over loopback TCP, each side on its own thread; `raw` runs the baseline
//! ping-pong instead, `inproc` an in-process pair (one caller), and `local` a local
//! transaction (an endpoint with no partner). Under
//! `valgrind --tool=callgrind` the instruction count per transaction is a measure that the
//! noise of a shared machine does not blur.

waldo::include_protocol!("bench");
waldo::include_protocol!("solo");

use std::time::{Duration, Instant};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime")
}

fn main() {
    let mut args = std::env::args().skip(1);
    let seconds: f64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(5.0);
    let callers: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    match args.next().as_deref() {
        Some("raw") => return raw(seconds),
        Some("inproc") => return inproc(seconds),
        Some("local") => return local(seconds),
        _ => {}
    }
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        runtime().block_on(async move {
            let listener = bench::Server::listen("127.0.0.1:0").await.expect("listen");
            addr_tx.send(listener.local_addr()).expect("send");
            let _server = listener.accept().await.expect("accept");
            std::future::pending::<()>().await;
        });
    });
    let addr = addr_rx.recv().expect("address");
    runtime().block_on(async move {
        let client = bench::Client::connect(addr).await.expect("connect");
        let until = Instant::now() + Duration::from_secs_f64(seconds);
        let tasks: Vec<_> = (0..callers)
            .map(|_| {
                let client = client.clone();
                tokio::spawn(async move {
                    let mut n = 0u64;
                    while Instant::now() < until {
                        client.two(1.0).await.expect("two");
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        let mut total = 0;
        for t in tasks {
            total += t.await.expect("caller");
        }
        println!(
            "{total} transactions in {seconds} s: {:.0}/s, {:.2} µs each",
            total as f64 / seconds,
            seconds * 1e6 / total as f64
        );
    });
}

/// The baseline: a 64-byte ping-pong, the same threads and runtimes.
fn raw(seconds: f64) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        runtime().block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            let (mut s, _) = listener.accept().await.expect("accept");
            s.set_nodelay(true).expect("nodelay");
            let mut buf = [0u8; 64];
            while s.read_exact(&mut buf).await.is_ok() {
                if s.write_all(&buf).await.is_err() {
                    break;
                }
            }
        });
    });
    let rt = runtime();
    rt.block_on(rt.spawn(async move {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.set_nodelay(true).expect("nodelay");
        let until = Instant::now() + Duration::from_secs_f64(seconds);
        let mut n = 0u64;
        let mut buf = [0u8; 64];
        while Instant::now() < until {
            s.write_all(&buf).await.expect("write");
            s.read_exact(&mut buf).await.expect("read");
            n += 1;
        }
        println!("{n} round trips in {seconds} s: {:.2} µs each", seconds * 1e6 / n as f64);
    }))
    .expect("the client");
}

/// 2-block transactions on an in-process pair, one caller, one current-thread runtime.
fn local(seconds: f64) {
    let rt = runtime();
    rt.block_on(rt.spawn(async move {
        let counter = solo::Counter::new().await.expect("a Counter");
        let until = Instant::now() + Duration::from_secs_f64(seconds);
        let mut n = 0u64;
        while Instant::now() < until {
            for _ in 0..100 {
                counter.tick().await.expect("tick");
            }
            n += 100;
        }
        println!("{n} local transactions in {seconds} s: {:.2} µs each", seconds * 1e6 / n as f64);
    }))
    .expect("the loop");
}

fn inproc(seconds: f64) {
    let rt = runtime();
    rt.block_on(rt.spawn(async move {
        let (client, _server) = bench::in_process_pair().await.expect("a pair");
        let until = Instant::now() + Duration::from_secs_f64(seconds);
        let mut n = 0u64;
        while Instant::now() < until {
            for _ in 0..100 {
                client.two(1.0).await.expect("two");
            }
            n += 100;
        }
        println!("{n} in-process transactions in {seconds} s: {:.2} µs each", seconds * 1e6 / n as f64);
    }))
    .expect("the loop");
}
