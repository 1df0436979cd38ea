//! A note relayed along three pairs on one host, each connected over loopback TCP: every
//! Receiver hands the note to the next Sender with an endpoint call, in one transaction.

use waldo_examples::relay::{Receiver, Sender};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), waldo::Error> {
    let mut pairs: Vec<(Sender, Receiver)> = Vec::new();
    for name in ["r1", "r2", "r3"] {
        let listener = Receiver::listen("127.0.0.1:0").await?;
        pairs.push(tokio::try_join!(Sender::connect(listener.local_addr()), listener.accept(name.into()))?);
    }
    // Each Receiver hands on to the Sender of the pair after it.
    for i in 0..pairs.len() - 1 {
        pairs[i].1.follow(pairs[i + 1].0.endpoint()).await?;
    }
    println!("relay(hi, 2) = {}", pairs[0].0.relay("hi".into(), 2.0).await?);
    for (sender, receiver) in &pairs {
        println!(
            "pair {} - {}: count() = {} and {}",
            sender.id(),
            receiver.id(),
            sender.count().await?,
            receiver.count().await?
        );
    }
    Ok(())
}
