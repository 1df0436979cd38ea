//! A 2-block sequence transaction on an in-process pair, against a baseline measured in the
//! same run: a round trip between two tasks over tokio channels (the floor for handing work
//! to another task and back).
//!
//! The transaction is `Sequence Inc() { A.start { counter += 1; } B.seen { n = counter; } }`:
//! the starter writes a peered Number, the partner reads it; three messages (Work, Done with
//! the partner's vote, Commit).
//!
//! Run with `cargo bench -p waldo --bench pair` (`-- --quick` for a short run). Prints a table
//! and `name: value` lines; figures are medians over batches (nanoseconds per transaction).

use std::hint::black_box;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use waldo::__rt::*;
use waldo::CallOptions;

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

struct End {
    core: Arc<EndpointCore>,
    link: OnceLock<Link>,
}

impl Program for End {
    fn run_block<'a>(
        &'a self,
        tx: &'a Tx,
        _seq: u32,
        block: u32,
        locals: &'a mut Vec<Value>,
    ) -> BlockFuture<'a> {
        Box::pin(async move {
            if block == 0 {
                let n = tx.read(&self.core, 0).await?.as_number()? + 1.0;
                tx.write(&self.core, 0, Value::Number(n)).await?;
            } else {
                locals[0] = tx.read(&self.core, 0).await?;
            }
            Ok(())
        })
    }
}

fn end(name: &str) -> Arc<End> {
    let core = EndpointCore::new(name, vec![Value::Number(0.0)]);
    core.set_peered(1);
    Arc::new(End { core, link: OnceLock::new() })
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (batches, per_batch) = if quick { (15, 1_000) } else { (100, 5_000) };
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("a tokio runtime");

    // Baseline: a request and its answer between two tasks.
    let chan_ns = rt.block_on(async {
        let (to_server, mut requests) =
            tokio::sync::mpsc::unbounded_channel::<(u64, tokio::sync::oneshot::Sender<u64>)>();
        tokio::spawn(async move {
            while let Some((n, answer)) = requests.recv().await {
                let _ = answer.send(n + 1);
            }
        });
        let mut samples = Vec::new();
        for _ in 0..batches {
            let start = Instant::now();
            for i in 0..per_batch {
                let (tx, rx) = tokio::sync::oneshot::channel();
                to_server.send((i, tx)).expect("server");
                black_box(rx.await.expect("answer"));
            }
            samples.push(start.elapsed().as_nanos() as f64 / per_batch as f64);
        }
        median(samples)
    });

    let (a, b) = (end("A"), end("B"));
    let seqs = vec![SequenceInfo { name: "Inc", blocks: 2, locals: 1, starters: [true, false] }];
    let (la, lb) = in_process_pair(
        (a.core.clone(), a.clone() as Arc<dyn Program>),
        (b.core.clone(), b.clone() as Arc<dyn Program>),
        seqs,
    );
    a.link.set(la.clone()).ok();
    b.link.set(lb).ok();
    let options = CallOptions::default();
    let pair_ns = rt.block_on(async {
        let mut samples = Vec::new();
        for _ in 0..batches {
            let start = Instant::now();
            for _ in 0..per_batch {
                let out = transact("A.inc", &a.core, &options, |tx| {
                    let la = &la;
                    async move { la.sequence_data(&tx, 0, vec![Value::Nothing]).await }
                })
                .await;
                black_box(out.expect("commits"));
            }
            samples.push(start.elapsed().as_nanos() as f64 / per_batch as f64);
        }
        median(samples)
    });
    let count = a.core.committed_value(0).and_then(|v| v.as_number().ok()).unwrap_or(0.0);
    assert_eq!(count, (batches * per_batch) as f64, "every transaction committed once");

    println!("in-process pair: {batches} batches of {per_batch}, median ns per operation");
    println!("{:<34} {:>10}", "channel round trip (baseline)", format!("{chan_ns:.0}"));
    println!("{:<34} {:>10}", "Waldo 2-block transaction", format!("{pair_ns:.0}"));
    println!("inproc.chan_rtt_ns: {chan_ns:.0}");
    println!("inproc.2block_p50_ns: {pair_ns:.0}");
    println!("ratio.inproc_2block_p50_vs_chan_rtt: {:.2}", pair_ns / chan_ns);
    println!("goal.inproc_2block_under_3us: {}", pair_ns < 3000.0);
}
