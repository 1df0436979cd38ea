//! A local read-modify-write transaction of one Number, against baselines measured in the
//! same run: a plain mutex-protected increment (the floor for shared mutable state) and the
//! same increment as an awaited async function.
//!
//! Run with `cargo bench -p waldo --bench local` (`-- --quick` for a short run). Prints a table
//! and `name: value` lines; figures are medians over batches (nanoseconds per operation).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use waldo::__rt::{EndpointCore, Value, transact};
use waldo::CallOptions;

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (batches, per_batch) = if quick { (20, 1_000) } else { (200, 5_000) };
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("a tokio runtime");

    // Baseline 1: a mutex-protected increment.
    let cell = parking_lot::Mutex::new(0.0_f64);
    let mutex_ns = median(
        (0..batches)
            .map(|_| {
                let start = Instant::now();
                for _ in 0..per_batch {
                    *black_box(&cell).lock() += 1.0;
                }
                start.elapsed().as_nanos() as f64 / per_batch as f64
            })
            .collect(),
    );

    // Baseline 2: the same increment behind an awaited async function.
    async fn bump(cell: &parking_lot::Mutex<f64>) -> f64 {
        let mut c = cell.lock();
        *c += 1.0;
        *c
    }
    let async_ns = median(
        (0..batches)
            .map(|_| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..per_batch {
                        black_box(bump(black_box(&cell)).await);
                    }
                    start.elapsed().as_nanos() as f64 / per_batch as f64
                })
            })
            .collect(),
    );

    // Waldo: `count += 1` as a transaction (begin, read, write, commit).
    let core: Arc<EndpointCore> = EndpointCore::new("Counter", vec![Value::Number(0.0)]);
    let options = CallOptions::default();
    let tx_ns = median(
        (0..batches)
            .map(|_| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..per_batch {
                        let out = transact("Counter.increment", &core, &options, |tx| {
                            let core = &core;
                            async move {
                                let n = tx.read(core, 0).await?.as_number()? + 1.0;
                                tx.write(core, 0, Value::Number(n)).await?;
                                Ok(n)
                            }
                        })
                        .await;
                        black_box(out.expect("commits"));
                    }
                    start.elapsed().as_nanos() as f64 / per_batch as f64
                })
            })
            .collect(),
    );

    println!("local transactions: {batches} batches of {per_batch}, median ns per operation");
    println!("{:<28} {:>10}", "mutex increment", format!("{mutex_ns:.1}"));
    println!("{:<28} {:>10}", "async mutex increment", format!("{async_ns:.1}"));
    println!("{:<28} {:>10}", "Waldo transaction", format!("{tx_ns:.1}"));
    println!("local.mutex_increment_ns: {mutex_ns:.1}");
    println!("local.async_increment_ns: {async_ns:.1}");
    println!("local.rmw_tx_ns: {tx_ns:.1}");
    println!("ratio.local_tx_vs_mutex: {:.1}", tx_ns / mutex_ns);
    println!("goal.local_tx_under_1us: {}", tx_ns < 1000.0);
}
