//! The Bank protocol end to end over TCP: a Branch and a Vault, each transfer one transaction
//! that debits on the Branch and credits on the Vault, or does neither.
//!
//! With no arguments both sides run in this process, joined by a loopback TCP connection;
//! with `--tls`, by a mutually authenticated TLS connection. To run them in two terminals:
//!
//! ```text
//! cargo run -p bank-example -- vault 127.0.0.1:7878     # waits for a Branch
//! cargo run -p bank-example -- branch 127.0.0.1:7878    # connects, runs the transfers
//! ```

// ANCHOR: include
waldo::include_protocol!("bank");

use bank::{Branch, Vault};
// ANCHOR_END: include

// ANCHOR: calls
/// The Branch's part: opens an account and moves money to the Vault.
async fn run_branch(branch: &Branch) -> Result<(), waldo::Error> {
    branch.open("alice".into(), 100.0).await?;
    println!("open(alice, 100)");
    let ok = branch.send("alice".into(), "bob".into(), 30.0).await?;
    println!("send(alice -> bob, 30) = {ok}");
    let ok = branch.send("alice".into(), "bob".into(), 500.0).await?;
    println!("send(alice -> bob, 500) = {ok}  (not enough money: nothing moves)");
    println!("balance(alice) = {}", branch.balance("alice".into()).await?);
    match branch.balance("carol".into()).await {
        Err(e) => println!("balance(carol) fails: {e}"),
        Ok(n) => println!("balance(carol) = {n}"),
    }
    Ok(())
}
// ANCHOR_END: calls

// ANCHOR: both
async fn both_sides() -> Result<(), waldo::Error> {
    let listener = Vault::listen("127.0.0.1:0").await?;
    let addr = listener.local_addr();
    println!("Vault listening on {addr}");
    let (branch, vault) = tokio::try_join!(Branch::connect(addr), listener.accept())?;
    println!("Branch {} and Vault {} are connected over TCP", branch.id(), vault.id());

    run_branch(&branch).await?;
    println!("holding(bob) = {}  (read on the Vault)", vault.holding("bob".into()).await?);

    branch.stop().await;
    println!("stopped; a later call returns: {}", vault.holding("bob".into()).await.unwrap_err());
    Ok(())
}
// ANCHOR_END: both

// ANCHOR: tls
async fn both_sides_over_tls() -> Result<(), Box<dyn std::error::Error>> {
    use std::sync::Arc;
    use waldo::TcpOptions;
    use waldo::tls::rustls::{self, pki_types::ServerName, server::WebPkiClientVerifier};

    // Certificates made at start-up for the demonstration; a deployment brings its own:
    // a CA's root, and each side's certificate chain and private key.
    let ca = waldo_dev_certs::Ca::new("Bank demo CA");
    let (vault_cert, branch_cert) = (ca.leaf("vault.bank.test"), ca.leaf("branch.bank.test"));
    let roots = ca.roots();

    // The Vault shows its certificate and requires one signed by the CA from each Branch.
    let verifier = WebPkiClientVerifier::builder(Arc::new(roots.clone())).build()?;
    let server = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier) // or .with_no_client_auth()
        .with_single_cert(vault_cert.chain.clone(), vault_cert.key())?;
    let listening = TcpOptions::default().with_tls_server(Arc::new(server));

    // The Branch trusts the CA, expects the name `vault.bank.test`, and shows its own.
    let client = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_client_auth_cert(branch_cert.chain.clone(), branch_cert.key())?; // or .with_no_client_auth()
    let connecting =
        TcpOptions::default().with_tls_client(Arc::new(client), ServerName::try_from("vault.bank.test")?);

    let listener = Vault::listen("127.0.0.1:0").with_options(listening).await?;
    let (branch, vault) =
        tokio::try_join!(Branch::connect(listener.local_addr()).with_options(connecting), listener.accept())?;
    let who = |e: Option<&waldo::tls::PeerIdentity>| e.map(|p| p.subject.clone()).unwrap_or_default();
    println!("the Branch talks to {}", who(branch.peer_identity()));
    println!("the Vault talks to {}", who(vault.peer_identity()));
    run_branch(&branch).await?;
    branch.stop().await;
    Ok(())
}
// ANCHOR_END: tls

// ANCHOR: sides
async fn vault_side(addr: &str) -> Result<(), waldo::Error> {
    let listener = Vault::listen(addr).await?;
    let at = listener.local_addr();
    println!("Vault listening on {at}; run `cargo run -p bank-example -- branch {at}`");
    let vault = listener.accept().await?;
    // ANCHOR: on_stop
    let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel();
    vault.on_stop(move || {
        let _ = stopped_tx.send(());
    });
    println!("a Branch connected; serving until it stops");
    let _ = stopped_rx.await;
    // ANCHOR_END: on_stop
    println!("the Branch stopped, and the Vault with it");
    Ok(())
}

async fn branch_side(addr: &str) -> Result<(), waldo::Error> {
    let branch = Branch::connect(addr).await?;
    println!("connected to the Vault at {addr}");
    run_branch(&branch).await?;
    branch.stop().await;
    println!("stopped");
    Ok(())
}
// ANCHOR_END: sides

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        [] => both_sides().await.map_err(Into::into),
        ["--tls"] => both_sides_over_tls().await,
        ["vault", addr] => vault_side(addr).await.map_err(Into::into),
        ["branch", addr] => branch_side(addr).await.map_err(Into::into),
        _ => {
            eprintln!("usage: bank-example [--tls | vault ADDR | branch ADDR]");
            std::process::exit(2);
        }
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

// ANCHOR: tests
#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_branch_alone_keeps_accounts_but_cannot_transfer() {
        let branch = Branch::without_partner().await.expect("a Branch with no Vault");
        branch.open("alice".into(), 100.0).await.expect("open");
        assert_eq!(branch.balance("alice".into()).await, Ok(100.0));
        // A transfer is a sequence: it needs the Vault, and leaves no trace without it.
        let sent = branch.send("alice".into(), "bob".into(), 30.0).await;
        assert!(matches!(sent, Err(waldo::Error::Network { .. })), "{sent:?}");
        assert_eq!(branch.balance("alice".into()).await, Ok(100.0));
    }

    #[tokio::test]
    async fn a_transfer_over_loopback_tcp() {
        let (branch, vault) = bank::loopback_pair().await.expect("a Branch and a Vault");
        branch.open("alice".into(), 100.0).await.expect("open");
        assert_eq!(branch.send("alice".into(), "bob".into(), 30.0).await, Ok(true));
        assert_eq!(branch.balance("alice".into()).await, Ok(70.0));
        assert_eq!(vault.holding("bob".into()).await, Ok(30.0));
    }
}
// ANCHOR_END: tests
