//! A listener under a flood of idle sockets: what it holds stays bounded, the excess is
//! refused, and a real partner is served once the idle ones are cleared away. In a test
//! binary of its own, so that nothing else runs in the process while its resident memory is
//! measured.

use std::time::Duration;

use tokio::net::TcpStream;
use waldo::{Error, TcpOptions};
use waldo_e2e::corpus_bank::bank::{Branch, Vault, VaultListener};

/// The process's resident memory, in KiB (Linux).
fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmRSS line")
}

/// A Branch connects (retrying while the listener is full) and commits a transfer.
async fn served(listener: &VaultListener, patience: Duration) {
    let addr = listener.local_addr();
    let start = std::time::Instant::now();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), async {
            // Admitted behind up to a thousand silent sockets that are evicted half a second at
            // a time (64 places), a partner may wait several seconds for the listener's first
            // bytes: it is patient for 10 s, not the default 2 s.
            let patient = TcpOptions::default().with_handshake_idle(Duration::from_secs(10));
            tokio::try_join!(Branch::connect(addr).with_options(patient), listener.accept())
        })
        .await
        .expect("a connection attempt ends")
        {
            Ok((branch, vault)) => {
                branch.open("a".into(), 10.0).await.expect("open");
                assert!(branch.send("a".into(), "b".into(), 4.0).await.expect("send"));
                assert_eq!(vault.holding("b".into()).await.expect("holding"), 4.0);
                return;
            }
            Err(Error::HandshakeRefused { reason }) if reason.contains("maximum of") => {}
            Err(e) => panic!("only the connection limit may refuse a real partner: {e}"),
        }
        assert!(start.elapsed() < patience, "a real partner was not served within {patience:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_idle_sockets_leave_memory_bounded_and_a_partner_served() {
    // The default limits (1,024 connections, 64 handshakes), and idle sockets allowed to stay
    // silent for longer than the test: only the limits and eviction can clear them.
    let options = TcpOptions::default().with_handshake_idle(Duration::from_secs(120));
    let listener = Vault::listen("127.0.0.1:0").with_options(options).await.expect("listen");
    let addr = listener.local_addr();
    served(&listener, Duration::from_secs(5)).await; // the runtime's own allocations first
    let before = resident_kib();
    let mut idle = Vec::with_capacity(5000);
    for _ in 0..5000 {
        idle.push(TcpStream::connect(addr).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let grown = resident_kib().saturating_sub(before);
    eprintln!("resident memory grew by {grown} KiB with 5,000 idle sockets");
    // The bound: the listener admits at most 1,024 of them; each holds a waiting task, and
    // the 64 running handshakes a 4 KiB read buffer besides (well under 16 KiB each: 16 MiB);
    // this process's own 5,000 client sockets take about 1 KiB each (5 MiB). 32 MiB leaves
    // room for the allocator, and is far below what 5,000 unbounded handshakes would take.
    assert!(grown < 32 * 1024, "resident memory grew by {grown} KiB with 5,000 idle sockets");
    // Idle sockets that never said anything are closed to make room, so a real partner gets
    // in while the flood's sockets are all still open on this side.
    served(&listener, Duration::from_secs(30)).await;
    drop(idle);
}
