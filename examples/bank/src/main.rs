//! The Bank protocol end to end: a Branch and a Vault, each transfer one transaction that
//! debits on one side and credits on the other, or does neither.

waldo::include_protocol!("bank");

use bank::{Branch, Vault};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), waldo::Error> {
    let (branch, vault): (Branch, Vault) = bank::in_process_pair().await?;
    println!("Branch {} and Vault {} are paired", branch.id(), vault.id());

    branch.open("alice".into(), 100.0).await?;
    println!("open(alice, 100)");
    let ok = branch.send("alice".into(), "bob".into(), 30.0).await?;
    println!("send(alice -> bob, 30) = {ok}");
    let ok = branch.send("alice".into(), "bob".into(), 500.0).await?;
    println!("send(alice -> bob, 500) = {ok}  (not enough money: nothing moves)");
    println!("balance(alice) = {}", branch.balance("alice".into()).await?);
    println!("holding(bob) = {}", vault.holding("bob".into()).await?);

    match branch.balance("carol".into()).await {
        Err(e) => println!("balance(carol) fails: {e}"),
        Ok(n) => println!("balance(carol) = {n}"),
    }
    Ok(())
}
