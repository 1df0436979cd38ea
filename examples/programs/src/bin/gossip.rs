//! A symmetric protocol: a Peer and an Other run the same code; either side tells rumours
//! into a list both replicas share.

use waldo_examples::gossip::{Other, Peer};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), waldo::Error> {
    let listener = Other::listen("127.0.0.1:0").await?;
    let (ann, bob) =
        tokio::try_join!(Peer::connect(listener.local_addr(), "ann".into()), listener.accept("bob".into()))?;
    println!("ann.tell(rain) = {}", ann.tell("rain".into()).await?);
    println!("bob.tell(sun) = {}", bob.tell("sun".into()).await?);
    println!("ann heard: {}", ann.heard().await?);
    println!("bob heard: {}", bob.heard().await?);
    ann.stop().await;
    Ok(())
}
