//! Generated endpoints on a simulated network (`waldo::sim`): the book's example (the bank
//! under held traffic and a cut connection), replays, and bad input.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use waldo::Error;
use waldo::sim::{self, Sim, SimError};
use waldo_e2e::corpus_bank::bank::{Branch, Vault};

// ANCHOR: example
/// The bank on a simulated network: held traffic delays a transfer, which then commits; a
/// cut connection fails the next one with a network error, and both sides still agree.
#[test]
fn the_bank_under_held_traffic_and_a_cut_connection() -> Result<(), Box<dyn std::error::Error>> {
    // `WALDO_SIM_SEED=N` replays seed N.
    let seed = sim::seed_from_env("WALDO_SIM_SEED", 1)?;
    let mut sim = Sim::new(seed);

    // The Vault host listens; the Vaults it accepts are kept where the test can read them.
    let vaults: Rc<RefCell<Vec<Vault>>> = Rc::default();
    let kept = vaults.clone();
    sim.host("vault", move || {
        let kept = kept.clone();
        async move {
            let listener = Vault::listen("0.0.0.0:7000").with_options(sim::options()).await?;
            loop {
                let vault = listener.accept().await?;
                kept.borrow_mut().push(vault);
            }
        }
    })?;

    // The test's code: a Branch that connects and moves money, on simulated time.
    let read = vaults;
    sim.client("branch", async move {
        let branch = Branch::connect("vault:7000").with_options(sim::options()).await?;
        branch.open("a".into(), 100.0).await?;
        assert!(branch.send("a".into(), "b".into(), 30.0).await?);

        // From 1 s to 2 s the network holds every message: this transfer waits, then commits.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let started = tokio::time::Instant::now();
        assert!(branch.send("a".into(), "b".into(), 30.0).await?);
        assert!(started.elapsed() >= Duration::from_millis(700), "held for {:?}", started.elapsed());

        // At 3 s the connection is cut: the next transfer fails, and changes nothing.
        tokio::time::sleep_until(started + Duration::from_secs(2)).await;
        let cut = branch.send("a".into(), "b".into(), 30.0).await;
        assert!(matches!(cut, Err(Error::Network { .. })), "{cut:?}");

        let vault = read.borrow()[0].clone();
        assert_eq!(branch.balance("a".into()).await?, 40.0);
        assert_eq!(vault.holding("b".into()).await?, 60.0);
        Ok(())
    })?;

    // The faults, on the simulation's clock.
    sim.run_for(Duration::from_secs(1))?;
    sim.hold("branch", "vault")?;
    sim.run_for(Duration::from_secs(1))?;
    sim.release("branch", "vault")?;
    sim.run_for(Duration::from_secs(1))?;
    assert_eq!(sim.cut("branch", "vault")?, 2, "both ends of the one connection");
    sim.run()?;
    Ok(())
}
// ANCHOR_END: example

#[test]
fn faults_naming_unknown_hosts_and_bad_seeds_are_clear_errors() {
    let mut sim = Sim::new(1);
    sim.host("vault", || async { Ok(()) }).expect("a host");
    assert_eq!(
        sim.cut("vault", "bank"),
        Err(SimError::UnknownHost { name: "bank".into(), known: vec!["vault".into()] })
    );
    assert_eq!(
        sim.hold("vaults", "vault").expect_err("unknown").to_string(),
        "the simulation has no host `vaults` (it has: vault)"
    );
    let bad = SimError::BadSeed { var: "WALDO_SIM_SEED".into(), value: "forty".into() };
    assert_eq!(
        bad.to_string(),
        "WALDO_SIM_SEED=`forty` is not a seed: expected a whole number such as WALDO_SIM_SEED=42"
    );
}

#[test]
fn a_client_that_never_finishes_is_reported_at_the_time_limit() {
    let mut sim = sim::Builder::new(5).time_limit(Duration::from_secs(30)).build();
    sim.host("vault", || async {
        let listener = Vault::listen("0.0.0.0:7000").with_options(sim::options()).await?;
        let _vault = listener.accept().await?;
        std::future::pending::<()>().await;
        Ok(())
    })
    .expect("a host");
    sim.client("branch", async {
        let branch = Branch::connect("vault:7000").with_options(sim::options()).await?;
        // A transfer that waits forever: the partner holds its traffic.
        let _ = branch.send("a".into(), "b".into(), 1.0).await;
        std::future::pending::<()>().await;
        Ok(())
    })
    .expect("a client");
    match sim.run() {
        Err(SimError::TimeLimit { limit, running }) => {
            assert_eq!(limit, Duration::from_secs(30));
            assert_eq!(running, ["branch"]);
        }
        other => panic!("expected the time limit, got {other:?}"),
    }
}

#[test]
fn the_replay_command_names_the_seed_and_the_test() {
    let command = sim::replay_command(42);
    assert!(command.starts_with("WALDO_SIM_SEED=42 cargo test"), "{command}");
    assert!(command.contains("--test sim"), "{command}");
    assert!(command.ends_with("-- the_replay_command_names_the_seed_and_the_test --exact"), "{command}");
}
