//! Runs 2-block transactions on a simulated network (`waldo::sim`, no latency) in a loop
//! for a profiler to look at: `cargo run --release -p waldo-bench --example sim_loop -- N`.
//! Prints the wall time per transaction (each is one simulated round trip).

waldo::include_protocol!("bench");

use std::time::Instant;

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let mut sim =
        waldo::sim::Builder::new(1).latency(std::time::Duration::ZERO, std::time::Duration::ZERO).build();
    sim.host("server", || async {
        let listener = bench::Server::listen("0.0.0.0:7000").with_options(waldo::sim::options()).await?;
        let _server = listener.accept().await?;
        std::future::pending::<()>().await;
        Ok(())
    })
    .expect("a host");
    sim.client("client", async move {
        let client = bench::Client::connect("server:7000").with_options(waldo::sim::options()).await?;
        let start = Instant::now();
        for i in 0..n {
            client.two(i as f64).await?;
        }
        println!("{:.3} µs per simulated round trip", start.elapsed().as_nanos() as f64 / n as f64 / 1e3);
        Ok(())
    })
    .expect("a client");
    sim.run().expect("the simulation runs");
}
