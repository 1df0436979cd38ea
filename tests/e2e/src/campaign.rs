//! The fault campaign's scenario (the `sim_campaign` test runs it per seed; `waldo-bench`
//! times it; the book's "Testing a protocol under faults" describes it): per seed, the
//! campaign bank (`protocols/sim_bank.wld`) runs on a simulated network — a Branch host
//! and a Vault host, several concurrent callers on each side moving money under unique
//! transfer ids, in 2-block and 7-block sequences — while a random schedule changes latencies, partitions and heals the
//! link, holds and releases traffic, cuts connections and crashes and restarts the Vault.
//! Connections resume their sessions after a cut or a partition (within a window longer
//! than any partition); the Branch connects anew when a pair ends (its Vault crashed). When the faults stop and the network heals,
//! every pair is checked: every call ended (`Ok`, or a documented error) within its
//! deadline; both replicas of the peered ledger are identical; money is conserved; each
//! transfer id was applied once or not at all, and every one that returned `true` was
//! (except on a Vault that crashed before its partner heard the decision: it took the
//! decision with it, and its caller too).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use crate::corpus_sim_bank::sim_bank::{Branch, Vault};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use waldo::sim::{self, Builder, SimError};
use waldo::{CallOptions, Error, ReconnectPolicy, TcpOptions};

/// Accounts opened on the Branch of every pair, and the money in each.
const ACCOUNTS: [&str; 3] = ["a", "b", "c"];
const OPENED: f64 = 100.0;
/// Callers per side.
const CALLERS: usize = 2;
/// Faults happen during this much simulated time; then the network heals.
pub const FAULT_PHASE: Duration = Duration::from_secs(3);
/// The deadline of every host call.
pub const DEADLINE: Duration = Duration::from_secs(2);

/// How long a broken pair may take to resume: longer than any partition of the schedule.
const RESUME_WINDOW: Duration = Duration::from_secs(10);

/// How the connections of the campaign behave: the simulated network, heartbeats that find
/// a silent partner within a second, and (unless `resume` is off) resumable sessions.
pub fn options(resume: bool) -> TcpOptions {
    let options = sim::options().with_heartbeat(Duration::from_millis(200), Duration::from_secs(1));
    if !resume {
        return options;
    }
    options.with_reconnect(
        ReconnectPolicy::default()
            .with_backoff(Duration::ZERO, Duration::from_millis(50), Duration::from_millis(500), 2.0)
            .with_resume_window(RESUME_WINDOW),
    )
}

/// The per-call options of the campaign: a deadline.
pub fn call_options() -> CallOptions {
    CallOptions::default().with_deadline(DEADLINE)
}

/// What one call returned.
#[derive(Clone, Debug)]
enum Outcome {
    Applied(bool),
    /// A documented error (network, timeout, retries exhausted, stopped).
    Failed(#[allow(dead_code, reason = "read in violation reports (Debug)")] String),
}

/// One pair (one connection) of the campaign, as both sides recorded it.
#[derive(Clone, Default)]
struct PairLog {
    branch: Option<Branch>,
    vaults: Vec<(Vault, u64)>,
    /// Transfers started on each side: id and outcome (`None` while running).
    calls: Vec<(String, Option<Outcome>)>,
}

#[derive(Default)]
struct World {
    pairs: BTreeMap<String, PairLog>,
    /// Vaults accepted whose pair tag was not yet read.
    untagged: Vec<(Vault, u64)>,
    /// The Vault host's current incarnation, and those that crashed.
    incarnation: u64,
    crashed: Vec<u64>,
    violations: Vec<String>,
    done: bool,
    trace: Vec<String>,
}

type Shared = Rc<RefCell<World>>;

/// Whether `e` is one of the errors a call may end with under faults.
pub fn documented(e: &Error) -> bool {
    matches!(
        e,
        Error::Network { .. } | Error::Timeout | Error::ConflictRetriesExhausted { .. } | Error::Stopped
    )
}

/// The Vault host: accepts Branches; on each, callers withdraw until the pair ends.
async fn vault_host(world: Shared, incarnation: u64, resume: bool) -> sim::HostResult {
    world.borrow_mut().incarnation = incarnation;
    let listener = Vault::listen("0.0.0.0:7000").with_options(options(resume)).await?;
    let mut accepted = 0u64;
    loop {
        let Ok(vault) = listener.accept().await else { continue };
        accepted += 1;
        let vault = vault.with_options(call_options());
        world.borrow_mut().untagged.push((vault.clone(), incarnation));
        for caller in 0..CALLERS {
            let (world, vault) = (world.clone(), vault.clone());
            let prefix = format!("v{incarnation}.{accepted}.{caller}");
            tokio::task::spawn_local(async move { withdraw_loop(world, vault, prefix).await });
        }
    }
}

async fn withdraw_loop(world: Shared, vault: Vault, prefix: String) {
    // The pair's tag arrives with the Branch's first transaction.
    let tag = loop {
        match vault.pair().await {
            Ok(tag) if !tag.is_empty() => break tag,
            Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(_) => return,
        }
    };
    {
        let mut w = world.borrow_mut();
        if let Some(i) = w.untagged.iter().position(|(v, _)| v.id() == vault.id()) {
            let (v, inc) = w.untagged.remove(i);
            w.pairs.entry(tag.clone()).or_default().vaults.push((v, inc));
        }
    }
    let mut rng =
        SmallRng::seed_from_u64(prefix.bytes().fold(7u64, |h, b| h.wrapping_mul(31) ^ u64::from(b)));
    for i in 0.. {
        if world.borrow().done {
            return;
        }
        let id = format!("{prefix}.{i}");
        let acct = ACCOUNTS[rng.random_range(0..ACCOUNTS.len())];
        let amount = f64::from(rng.random_range(1..20));
        let ended =
            run_call(&world, &tag, id, vault.withdraw(format!("{prefix}.{i}"), acct.into(), amount)).await;
        if ended {
            return;
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..40))).await;
    }
}

/// Records a call's outcome; `true` when the pair is over (a network error).
async fn run_call(
    world: &Shared,
    tag: &str,
    id: String,
    call: impl Future<Output = Result<bool, Error>>,
) -> bool {
    let index = {
        let mut w = world.borrow_mut();
        let log = w.pairs.entry(tag.to_owned()).or_default();
        log.calls.push((id.clone(), None));
        log.calls.len() - 1
    };
    let started = tokio::time::Instant::now();
    let result = call.await;
    let took = started.elapsed();
    let mut w = world.borrow_mut();
    if took > DEADLINE + Duration::from_secs(1) {
        w.violations.push(format!("transfer {id} took {took:?}, past its deadline of {DEADLINE:?}"));
    }
    let outcome = match &result {
        Ok(applied) => Outcome::Applied(*applied),
        Err(e) if documented(e) => Outcome::Failed(e.to_string()),
        Err(e) => {
            w.violations.push(format!("transfer {id} failed with an undocumented error: {e}"));
            Outcome::Failed(e.to_string())
        }
    };
    let line = format!("{:?} {id} {outcome:?}", sim::elapsed().unwrap_or_default());
    w.trace.push(line);
    w.pairs.get_mut(tag).expect("logged").calls[index].1 = Some(outcome);
    matches!(result, Err(Error::Network { .. } | Error::Stopped))
}

/// The Branch client: connects, opens the accounts, pays from several callers until the
/// pair ends, and connects again, until the fault phase is over; then checks.
async fn branch_client(world: Shared, seed: u64, resume: bool) -> sim::HostResult {
    let mut rng = SmallRng::seed_from_u64(seed ^ 0xb7a2);
    let mut pair = 0;
    let start = tokio::time::Instant::now();
    while start.elapsed() < FAULT_PHASE {
        let branch = match Branch::connect("vault:7000").with_options(options(resume)).await {
            Ok(b) => b.with_options(call_options()),
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        pair += 1;
        let tag = format!("p{pair}");
        world.borrow_mut().pairs.entry(tag.clone()).or_default().branch = Some(branch.clone());
        let mut opened = true;
        for acct in ACCOUNTS {
            if branch.open(acct.into(), OPENED, tag.clone()).await.is_err() {
                opened = false;
                break;
            }
        }
        if !opened {
            world.borrow_mut().pairs.get_mut(&tag).expect("logged").branch = None;
            continue;
        }
        let mut callers = Vec::new();
        for caller in 0..CALLERS {
            let (world, branch, tag) = (world.clone(), branch.clone(), tag.clone());
            let seed = rng.random::<u64>();
            callers.push(tokio::task::spawn_local(async move {
                let mut rng = SmallRng::seed_from_u64(seed);
                for i in 0.. {
                    if world.borrow().done || start.elapsed() >= FAULT_PHASE {
                        return;
                    }
                    let id = format!("{tag}.b{caller}.{i}");
                    let acct = ACCOUNTS[rng.random_range(0..ACCOUNTS.len())];
                    let amount = f64::from(rng.random_range(1..20));
                    // Every third transfer is a 7-block one.
                    let call: std::pin::Pin<Box<dyn Future<Output = Result<bool, Error>>>> = if i % 3 == 2 {
                        Box::pin(branch.shuttle(id.clone(), acct.into(), amount))
                    } else {
                        Box::pin(branch.pay(id.clone(), acct.into(), amount))
                    };
                    if run_call(&world, &tag, id, call).await {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(rng.random_range(0..40))).await;
                }
            }));
        }
        for caller in callers {
            caller.await?;
        }
    }
    // The network has healed (the driver repairs it at the end of the fault phase): let
    // the Vault's callers see the end, then check every pair.
    world.borrow_mut().done = true;
    let waited = tokio::time::Instant::now();
    while waited.elapsed() < DEADLINE + Duration::from_secs(1) && running(&world) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check(&world).await;
    Ok(())
}

/// Whether a call is still running (on a host that did not crash).
fn running(world: &Shared) -> bool {
    let w = world.borrow();
    w.pairs.values().flat_map(|p| &p.calls).any(|(id, outcome)| {
        outcome.is_none() && !w.crashed.iter().any(|inc| id.starts_with(&format!("v{inc}.")))
    })
}

/// The invariants, for every pair.
async fn check(world: &Shared) {
    let pairs: Vec<(String, PairLog)> =
        world.borrow().pairs.iter().map(|(t, p)| (t.clone(), p.clone())).collect();
    let crashed = world.borrow().crashed.clone();
    let mut violations = Vec::new();
    for (tag, PairLog { branch, vaults, calls }) in pairs {
        for (id, outcome) in &calls {
            // A Vault caller whose host crashed ends with it.
            let on_crashed = crashed.iter().any(|inc| id.starts_with(&format!("v{inc}.")));
            if outcome.is_none() && !on_crashed {
                violations.push(format!("{tag}: transfer {id} never ended"));
            }
        }
        let Some(branch) = branch else { continue };
        let read = |what: &str, e: Error| format!("{tag}: reading the {what} failed: {e}");
        let branch_book = match branch.book().await {
            Ok(b) => b,
            Err(e) => {
                violations.push(read("Branch's ledger", e));
                continue;
            }
        };
        for (id, n) in &branch_book {
            if *n != 1.0 {
                violations.push(format!("{tag}: transfer {id} applied {n} times on the Branch"));
            }
        }
        for (id, outcome) in &calls {
            // A Vault that committed and crashed before its decision reached the Branch took
            // the decision with it (nothing is written to disk): the Branch, prepared, rolls
            // the transfer back when the Vault's new incarnation refuses to resume the
            // session. Its caller's `true` died with the host.
            let on_crashed = crashed.iter().any(|inc| id.starts_with(&format!("v{inc}.")));
            if matches!(outcome, Some(Outcome::Applied(true))) && !on_crashed && !branch_book.contains_key(id)
            {
                violations
                    .push(format!("{tag}: transfer {id} returned true but is not in the Branch's ledger"));
            }
        }
        // The Vault's replica, unless its host crashed (its memory is gone).
        let [(vault, incarnation)] = vaults.as_slice() else {
            if vaults.len() > 1 {
                violations.push(format!("{tag}: {} Vaults claim the pair", vaults.len()));
            }
            continue;
        };
        if crashed.contains(incarnation) {
            continue;
        }
        let vault_book = match vault.book().await {
            Ok(b) => b,
            Err(e) => {
                violations.push(read("Vault's ledger", e));
                continue;
            }
        };
        if vault_book != branch_book {
            let only_branch: Vec<_> = branch_book.keys().filter(|k| !vault_book.contains_key(*k)).collect();
            let only_vault: Vec<_> = vault_book.keys().filter(|k| !branch_book.contains_key(*k)).collect();
            violations.push(format!(
                "{tag}: the replicas of the ledger differ (only on the Branch: {only_branch:?}; only on the Vault: {only_vault:?})"
            ));
        }
        match (branch.count().await, vault.count().await) {
            (Ok(a), Ok(b)) if a == b => {}
            (a, b) => violations.push(format!("{tag}: the replicas of `transfers` differ: {a:?} and {b:?}")),
        }
        match (branch.hopped().await, vault.hopped().await) {
            (Ok(a), Ok(b)) if a == b => {}
            (a, b) => violations.push(format!("{tag}: the replicas of `hops` differ: {a:?} and {b:?}")),
        }
        match (branch.money().await, vault.money().await) {
            (Ok(a), Ok(b)) if a + b == OPENED * ACCOUNTS.len() as f64 => {}
            (a, b) => violations.push(format!(
                "{tag}: money is not conserved: Branch {a:?} + Vault {b:?} != {}",
                OPENED * ACCOUNTS.len() as f64
            )),
        }
    }
    world.borrow_mut().violations.extend(violations);
}

/// A fault of the schedule, at a time of the fault phase.
#[derive(Debug, Clone, Copy)]
enum Fault {
    Latency(Duration),
    Partition(Duration),
    Hold(Duration),
    Cut,
    Crash(Duration),
}

/// Which faults a campaign's schedules draw from, and whether its connections resume.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Faults {
    /// Also partitions and cut connections (otherwise only latency changes, held traffic
    /// and crashed and restarted hosts: faults that lose no message on a connection that
    /// lives on).
    pub all: bool,
    /// Connections resume their sessions ([`waldo::ReconnectPolicy`]). Without that, a pair
    /// whose connection is lost while a commit decision is in flight can end with
    /// different replicas (ARCHITECTURE.md, "Losing the parent while prepared presumes
    /// abort"), which partitions and cuts find.
    pub resume: bool,
}

impl Faults {
    /// Every fault, resumable connections: the campaign's default.
    pub const ALL: Faults = Faults { all: true, resume: true };

    /// `WALDO_SIM_FAULTS` (`all`, the default, or `delays`) and `WALDO_SIM_RESUME` (`on`,
    /// the default, or `off`).
    pub fn from_env() -> Result<Faults, String> {
        let all = match std::env::var("WALDO_SIM_FAULTS").as_deref() {
            Err(_) | Ok("all") => true,
            Ok("delays") => false,
            Ok(other) => return Err(format!("WALDO_SIM_FAULTS=`{other}`: expected `all` or `delays`")),
        };
        let resume = match std::env::var("WALDO_SIM_RESUME").as_deref() {
            Err(_) | Ok("on") => true,
            Ok("off") => false,
            Ok(other) => return Err(format!("WALDO_SIM_RESUME=`{other}`: expected `on` or `off`")),
        };
        Ok(Faults { all, resume })
    }
}

fn schedule(rng: &mut SmallRng, faults: Faults) -> Vec<(Duration, Fault)> {
    let n = rng.random_range(1..6);
    let mut faults: Vec<(Duration, Fault)> = (0..n)
        .map(|_| {
            let at = Duration::from_millis(rng.random_range(200..FAULT_PHASE.as_millis() as u64 - 500));
            let kinds = if faults.all { 5 } else { 3 };
            let fault = match rng.random_range(0..kinds) {
                0 => Fault::Latency(Duration::from_millis(rng.random_range(1..40))),
                1 => Fault::Hold(Duration::from_millis(rng.random_range(50..800))),
                2 => Fault::Crash(Duration::from_millis(rng.random_range(100..1000))),
                3 => Fault::Partition(Duration::from_millis(rng.random_range(50..2000))),
                _ => Fault::Cut,
            };
            (at, fault)
        })
        .collect();
    faults.sort_by_key(|(at, _)| *at);
    faults
}

/// What one seed did.
#[derive(Debug)]
pub struct Report {
    /// Every invariant that did not hold, in words.
    pub violations: Vec<String>,
    /// A hash of the run's trace (every call's outcome and every fault, with simulated
    /// times): the same seed gives the same hash.
    pub trace_hash: u64,
    /// How many transfers were started.
    pub transfers: usize,
    /// The trace: every fault and every call's outcome, in order, with simulated times.
    pub trace: Vec<String>,
}

/// Runs seed `seed` of the campaign.
pub fn run_seed(seed: u64, faults: Faults) -> Result<Report, SimError> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let min = Duration::from_micros(rng.random_range(100..2000));
    let max = min + Duration::from_micros(rng.random_range(0..5000));
    let mut sim = Builder::new(seed).latency(min, max).time_limit(Duration::from_secs(60)).build();
    let world: Shared = Rc::default();
    let incarnations = Rc::new(std::cell::Cell::new(0u64));
    {
        let world = world.clone();
        sim.host("vault", move || {
            let n = incarnations.get();
            incarnations.set(n + 1);
            vault_host(world.clone(), n, faults.resume)
        })?;
    }
    sim.client("branch", branch_client(world.clone(), seed, faults.resume))?;
    let faults = schedule(&mut rng, faults);
    let mut pending: Vec<(Duration, &str)> = Vec::new();
    let mut next = 0;
    let mut healed = false;
    let mut down = false;
    let outcome = loop {
        let now = sim.elapsed();
        while next < faults.len() && faults[next].0 <= now {
            let fault = faults[next].1;
            world.borrow_mut().trace.push(format!("{now:?} fault {fault:?}"));
            match fault {
                Fault::Latency(d) => sim.set_latency("branch", "vault", d)?,
                Fault::Partition(d) => {
                    sim.partition("branch", "vault")?;
                    pending.push((now + d, "repair"));
                }
                Fault::Hold(d) => {
                    sim.hold("branch", "vault")?;
                    pending.push((now + d, "release"));
                }
                Fault::Cut => {
                    sim.cut("branch", "vault")?;
                }
                // A crash while the host is down already changes nothing.
                Fault::Crash(_) if down => {}
                Fault::Crash(d) => {
                    down = true;
                    let current = world.borrow().incarnation;
                    world.borrow_mut().crashed.push(current);
                    sim.crash("vault")?;
                    pending.push((now + d, "restart"));
                }
            }
            next += 1;
        }
        pending.sort();
        while let Some(&(at, what)) = pending.first() {
            if at > now && now < FAULT_PHASE {
                break;
            }
            pending.remove(0);
            match what {
                "repair" => sim.repair("branch", "vault")?,
                "release" => sim.release("branch", "vault")?,
                _ => {
                    down = false;
                    sim.bounce("vault")?;
                }
            }
        }
        if !healed && now >= FAULT_PHASE {
            healed = true;
            sim.repair("branch", "vault")?;
            sim.release("branch", "vault")?;
        }
        match sim.step() {
            Ok(true) => break Ok(()),
            Ok(false) => {}
            Err(e) => break Err(e),
        }
    };
    let world = world.borrow();
    let transfers = world.pairs.values().map(|p| p.calls.len()).sum();
    Ok(Report::new(&world.violations, outcome, &world.trace, transfers))
}

impl Report {
    /// What a seed did: the `violations` found, and the simulation's `outcome` (an error is
    /// one more), its `trace` and how many `transfers` it started.
    pub fn new(
        violations: &[String],
        outcome: Result<(), SimError>,
        trace: &[String],
        transfers: usize,
    ) -> Report {
        let mut violations = violations.to_vec();
        if let Err(e) = outcome {
            violations.push(e.to_string());
        }
        Report { violations, trace_hash: trace_hash(trace), transfers, trace: trace.to_vec() }
    }
}

/// A hash of a run's trace (FNV-1a over its lines).
pub fn trace_hash(trace: &[String]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for line in trace {
        for b in line.bytes().chain([b'\n']) {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}
