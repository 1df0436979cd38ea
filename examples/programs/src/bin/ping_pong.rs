//! A rally of four hits between a Pinger and a Ponger over loopback TCP.

use waldo_examples::ping_pong::{Pinger, Ponger};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), waldo::Error> {
    let listener = Ponger::listen("127.0.0.1:0").await?;
    let (pinger, ponger) = tokio::try_join!(Pinger::connect(listener.local_addr()), listener.accept())?;
    println!("Pinger {} and Ponger {} connected on {}", pinger.id(), ponger.id(), listener.local_addr());
    let (in_rally, hits) = pinger.play("alice".into()).await?;
    println!("play(alice) = ({in_rally}, {hits})");
    let (in_rally, hits) = pinger.play("bob".into()).await?;
    println!("play(bob) = ({in_rally}, {hits})");
    println!("ponger: total_hits() = {}, server() = {}", ponger.total_hits().await?, ponger.server().await?);
    pinger.stop().await;
    Ok(())
}
