//! The fault campaign's commit tree (the `sim_campaign` test runs it per seed beside the
//! bank): three pairs of the relay example (`examples/protocols/relay.wld`) on four
//! simulated hosts, joined by endpoint calls — host `a` holds the first Sender, `b` the
//! first Receiver and the second Sender, `c` the second Receiver and the third Sender, `d`
//! the third Receiver — so each relay is one transaction over all three pairs. A caller on
//! `a` relays notes while a random schedule changes latencies, partitions and heals the
//! links, holds and releases traffic and cuts connections, between any two neighbours.
//! Connections resume their sessions. When the faults stop and the network heals: every
//! relay ended (`Ok`, or a documented error) within its deadline; every relay that returned
//! `Ok` returned the whole trail; both replicas of each pair agree; and all three pairs
//! count the same relays, the ones that returned `Ok` — a relay committed on every pair or
//! on none.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use crate::campaign::{DEADLINE, FAULT_PHASE, Faults, Report, call_options, documented, options};
use crate::corpus_relay::relay::{Receiver, Sender};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use waldo::sim::{self, Builder, SimError};

/// The hosts, in chain order, and the port each one's listener uses.
const HOSTS: [&str; 4] = ["a", "b", "c", "d"];
const PORT: u16 = 7100;

#[derive(Default)]
struct World {
    /// The Sender and the Receiver of each pair, once connected.
    senders: [Option<Sender>; 3],
    receivers: [Option<Receiver>; 3],
    /// Every relay: its note and outcome (`None` while running).
    calls: Vec<(String, Option<Result<String, String>>)>,
    violations: Vec<String>,
    trace: Vec<String>,
}

type Shared = Rc<RefCell<World>>;

/// The middle hosts (`b`, `c`) and the last (`d`): accept the Sender before them as
/// Receiver number `i`; the middle ones also connect their own Sender to the next host
/// and follow it.
async fn link_host(world: Shared, i: usize, resume: bool) -> sim::HostResult {
    let listener =
        Receiver::listen(format!("0.0.0.0:{}", PORT + i as u16)).with_options(options(resume)).await?;
    let next = if i + 1 < 3 { Some(connect(i + 1, resume).await) } else { None };
    let receiver = listener.accept(format!("r{}", i + 1)).await?.with_options(call_options());
    if let Some(sender) = &next {
        receiver.follow(sender.endpoint()).await?;
    }
    {
        let mut w = world.borrow_mut();
        w.receivers[i] = Some(receiver);
        if let Some(sender) = next {
            w.senders[i + 1] = Some(sender);
        }
    }
    // Serve until the simulation ends.
    std::future::pending::<()>().await;
    Ok(())
}

/// Sender number `i`, connected to the host after it (retrying until that host listens).
async fn connect(i: usize, resume: bool) -> Sender {
    let addr = format!("{}:{}", HOSTS[i + 1], PORT + i as u16);
    loop {
        match Sender::connect(addr.as_str()).with_options(options(resume)).await {
            Ok(s) => return s.with_options(call_options()),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Host `a`: connects the first Sender and relays notes until the fault phase ends; then
/// checks.
async fn root(world: Shared, seed: u64, resume: bool) -> sim::HostResult {
    let first = connect(0, resume).await;
    world.borrow_mut().senders[0] = Some(first.clone());
    // Until every Receiver follows its next Sender.
    while world.borrow().receivers.iter().any(Option::is_none) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x7e1a);
    let start = tokio::time::Instant::now();
    let mut n = 0;
    while start.elapsed() < FAULT_PHASE {
        n += 1;
        let note = format!("n{n}");
        let index = {
            let mut w = world.borrow_mut();
            w.calls.push((note.clone(), None));
            w.calls.len() - 1
        };
        let began = tokio::time::Instant::now();
        let result = first.relay(note.clone(), 2.0).await;
        let took = began.elapsed();
        {
            let mut w = world.borrow_mut();
            if took > DEADLINE + Duration::from_secs(1) {
                w.violations.push(format!("relay {note} took {took:?}, past its deadline of {DEADLINE:?}"));
            }
            let outcome = match result {
                Ok(trail) => {
                    let want = format!("{note}>r1>r2>r3");
                    if trail != want {
                        w.violations.push(format!("relay {note} returned {trail:?}, expected {want:?}"));
                    }
                    Ok(trail)
                }
                Err(e) => {
                    if !documented(&e) {
                        w.violations.push(format!("relay {note} failed with an undocumented error: {e}"));
                    }
                    Err(e.to_string())
                }
            };
            let line = format!("{:?} {note} {outcome:?}", sim::elapsed().unwrap_or_default());
            w.trace.push(line);
            w.calls[index].1 = Some(outcome);
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..30))).await;
    }
    // The network has healed: give the decisions in flight a moment, then check.
    tokio::time::sleep(DEADLINE).await;
    check(&world).await;
    Ok(())
}

async fn check(world: &Shared) {
    let (senders, receivers, calls) = {
        let w = world.borrow();
        (w.senders.clone(), w.receivers.clone(), w.calls.clone())
    };
    let mut violations = Vec::new();
    let ok = calls.iter().filter(|(_, o)| matches!(o, Some(Ok(_)))).count() as f64;
    for (note, outcome) in &calls {
        if outcome.is_none() {
            violations.push(format!("relay {note} never ended"));
        }
    }
    for i in 0..3 {
        let (Some(s), Some(r)) = (&senders[i], &receivers[i]) else {
            violations.push(format!("pair {} never formed", i + 1));
            continue;
        };
        match (s.count().await, r.count().await) {
            (Ok(a), Ok(b)) if a == b && a == ok => {}
            (a, b) => violations.push(format!(
                "pair {}: the Sender counts {a:?} relays and the Receiver {b:?}; {ok} returned Ok",
                i + 1
            )),
        }
    }
    world.borrow_mut().violations.extend(violations);
}

/// A fault between two neighbours of the chain.
#[derive(Debug, Clone, Copy)]
enum Fault {
    Latency(usize, Duration),
    Partition(usize, Duration),
    Hold(usize, Duration),
    Cut(usize),
}

/// Runs seed `seed` of the commit-tree campaign. Crashes are left out (the bank covers
/// them): a crashed middle host would take a replica of two pairs with it.
pub fn run_seed(seed: u64, faults: Faults) -> Result<Report, SimError> {
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x5eed_7e1a);
    let min = Duration::from_micros(rng.random_range(100..2000));
    let max = min + Duration::from_micros(rng.random_range(0..5000));
    let mut sim = Builder::new(seed).latency(min, max).time_limit(Duration::from_secs(60)).build();
    let world: Shared = Rc::default();
    for i in (0..3).rev() {
        let world = world.clone();
        sim.host(HOSTS[i + 1], move || link_host(world.clone(), i, faults.resume))?;
    }
    sim.client("a", root(world.clone(), seed, faults.resume))?;
    let n = rng.random_range(1..6);
    let mut schedule: Vec<(Duration, Fault)> = (0..n)
        .map(|_| {
            let at = Duration::from_millis(rng.random_range(300..FAULT_PHASE.as_millis() as u64 - 500));
            let link = rng.random_range(0..3);
            let kinds = if faults.all { 4 } else { 2 };
            let fault = match rng.random_range(0..kinds) {
                0 => Fault::Latency(link, Duration::from_millis(rng.random_range(1..40))),
                1 => Fault::Hold(link, Duration::from_millis(rng.random_range(50..800))),
                2 => Fault::Partition(link, Duration::from_millis(rng.random_range(50..2000))),
                _ => Fault::Cut(link),
            };
            (at, fault)
        })
        .collect();
    schedule.sort_by_key(|(at, _)| *at);
    let mut pending: Vec<(Duration, usize, bool)> = Vec::new();
    let mut next = 0;
    let mut healed = false;
    let outcome = loop {
        let now = sim.elapsed();
        while next < schedule.len() && schedule[next].0 <= now {
            let fault = schedule[next].1;
            world.borrow_mut().trace.push(format!("{now:?} fault {fault:?}"));
            let pair = |link: usize| (HOSTS[link], HOSTS[link + 1]);
            match fault {
                Fault::Latency(l, d) => sim.set_latency(pair(l).0, pair(l).1, d)?,
                Fault::Partition(l, d) => {
                    sim.partition(pair(l).0, pair(l).1)?;
                    pending.push((now + d, l, true));
                }
                Fault::Hold(l, d) => {
                    sim.hold(pair(l).0, pair(l).1)?;
                    pending.push((now + d, l, false));
                }
                Fault::Cut(l) => {
                    sim.cut(pair(l).0, pair(l).1)?;
                }
            }
            next += 1;
        }
        pending.sort_by_key(|(at, ..)| *at);
        while let Some(&(at, l, partition)) = pending.first() {
            if at > now && now < FAULT_PHASE {
                break;
            }
            pending.remove(0);
            if partition {
                sim.repair(HOSTS[l], HOSTS[l + 1])?;
            } else {
                sim.release(HOSTS[l], HOSTS[l + 1])?;
            }
        }
        if !healed && now >= FAULT_PHASE {
            healed = true;
            for l in 0..3 {
                sim.repair(HOSTS[l], HOSTS[l + 1])?;
                sim.release(HOSTS[l], HOSTS[l + 1])?;
            }
        }
        match sim.step() {
            Ok(true) => break Ok(()),
            Ok(false) => {}
            Err(e) => break Err(e),
        }
    };
    let world = world.borrow();
    Ok(Report::new(&world.violations, outcome, &world.trace, world.calls.len()))
}
