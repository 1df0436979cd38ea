//! Observing a running protocol (the book's "Observing a running protocol"): the `tracing`
//! spans of host calls, sequences and connections, with their fields, as a subscriber sees
//! them; and the per-endpoint counters of `stats()`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use waldo::{Error, Stats};
use waldo_e2e::corpus_bank::bank::{Branch, Vault};

/// A span as the subscriber saw it: its name and its fields, as text.
#[derive(Clone, Debug)]
struct Seen {
    name: &'static str,
    fields: HashMap<&'static str, String>,
}

/// Every span opened in this process, by id; the subscriber is installed once.
fn spans() -> &'static Mutex<HashMap<u64, Seen>> {
    static SPANS: OnceLock<&'static Mutex<HashMap<u64, Seen>>> = OnceLock::new();
    SPANS.get_or_init(|| {
        let spans: &'static Mutex<HashMap<u64, Seen>> = Box::leak(Box::default());
        tracing::subscriber::set_global_default(Spans { spans, next: AtomicU64::new(1) })
            .expect("the only subscriber of this test binary");
        spans
    })
}

/// The spans named `name` whose field `field` is `value`.
fn find(name: &str, field: &str, value: &str) -> Vec<Seen> {
    let spans = spans().lock().expect("the spans");
    spans
        .values()
        .filter(|s| s.name == name && s.fields.get(field).is_some_and(|v| v == value))
        .cloned()
        .collect()
}

struct Spans {
    spans: &'static Mutex<HashMap<u64, Seen>>,
    next: AtomicU64,
}

struct Fields<'a>(&'a mut HashMap<&'static str, String>);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name(), value.to_owned());
    }
}

impl tracing::Subscriber for Spans {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, attrs: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut fields = HashMap::new();
        attrs.record(&mut Fields(&mut fields));
        self.spans.lock().expect("the spans").insert(id, Seen { name: attrs.metadata().name(), fields });
        tracing::span::Id::from_u64(id)
    }

    fn record(&self, span: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        if let Some(seen) = self.spans.lock().expect("the spans").get_mut(&span.into_u64()) {
            values.record(&mut Fields(&mut seen.fields));
        }
    }

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, _: &tracing::Event<'_>) {}

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}

async fn bank() -> (Branch, Vault, waldo_e2e::corpus_bank::bank::VaultListener) {
    let listener = Vault::listen("127.0.0.1:0").await.expect("listen");
    let addr = listener.local_addr();
    let pair = async { tokio::try_join!(Branch::connect(addr), listener.accept()) };
    let (branch, vault) =
        tokio::time::timeout(Duration::from_secs(10), pair).await.expect("a pair in time").expect("a pair");
    (branch, vault, listener)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_calls_sequences_and_connections_are_spans_with_their_outcomes() {
    spans();
    let (branch, _vault, _listener) = bank().await;
    let account = "spans-a";
    branch.open(account.into(), 100.0).await.expect("open");
    assert_eq!(branch.send(account.into(), "spans-b".into(), 30.0).await, Ok(true));
    let missing = branch.balance("spans-nobody".into()).await;
    assert!(matches!(missing, Err(Error::Application { .. })), "{missing:?}");

    let calls = |function: &str| find("waldo.call", "function", function);
    let open = calls("Branch.open");
    assert!(
        open.iter().any(|s| s.fields.get("outcome").map(String::as_str) == Some("committed")
            && s.fields.get("attempts").map(String::as_str) == Some("1")
            && s.fields.get("endpoint").is_some_and(|e| e.starts_with("Branch-"))),
        "a committed call of open, on the first attempt: {open:?}"
    );
    let balance = calls("Branch.balance");
    assert!(
        balance.iter().any(|s| s.fields.get("outcome").map(String::as_str) == Some("aborted: exception")
            && s.fields.get("error").is_some_and(|e| e.contains("application exception"))),
        "a call of balance that raised: {balance:?}"
    );
    let transfer = find("waldo.sequence", "sequence", "Transfer");
    assert!(
        transfer.iter().any(|s| s.fields.get("blocks").map(String::as_str) == Some("2")),
        "the sequence send started: {transfer:?}"
    );
    let connections = find("waldo.connection", "protocol", "Bank");
    let ends: Vec<&str> =
        connections.iter().filter_map(|s| s.fields.get("endpoint").map(String::as_str)).collect();
    assert!(ends.contains(&"Branch") && ends.contains(&"Vault"), "a span per side's connection: {ends:?}");
}

/// What happened between two snapshots.
fn since(before: Stats, after: Stats) -> (u64, u64, u64, u64) {
    (
        after.commits - before.commits,
        after.aborts.exception - before.aborts.exception,
        after.sequences - before.sequences,
        after.aborts.total() - before.aborts.total(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_count_what_an_endpoint_did() {
    let (branch, vault, _listener) = bank().await;
    let (b0, v0) = (branch.stats(), vault.stats());
    branch.open("stats-a".into(), 100.0).await.expect("open");
    for _ in 0..3 {
        assert_eq!(branch.send("stats-a".into(), "stats-b".into(), 10.0).await, Ok(true));
    }
    assert!(branch.balance("stats-nobody".into()).await.is_err());
    assert_eq!(vault.holding("stats-b".into()).await, Ok(30.0));
    let (b1, v1) = (branch.stats(), vault.stats());

    // The Branch: open and three sends committed; balance raised.
    assert_eq!(since(b0, b1), (4, 1, 3, 1), "{b0:?} → {b1:?}");
    assert_eq!((b1.retries, b1.reconnects), (0, 0));
    // The Vault: one host call of its own; the sequences it served are the Branch's.
    assert_eq!(since(v0, v1), (1, 0, 0, 0), "{v0:?} → {v1:?}");
    // Both connections carried the transfers: what one side wrote, the other read.
    assert!(b1.bytes_out > b0.bytes_out && v1.bytes_in > v0.bytes_in);
    let settle = std::time::Instant::now();
    while branch.stats().bytes_out != vault.stats().bytes_in && settle.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(branch.stats().bytes_out, vault.stats().bytes_in, "every byte written arrived");
}

/// Where the book's example subscriber writes: a buffer the test reads.
#[derive(Clone, Default)]
struct Buffer(std::sync::Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("the buffer").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The book's example: `tracing-subscriber`'s formatter shows each host call's span when it
/// closes, with how it ended; `stats()` counts. (One thread: the subscriber is this
/// thread's, as the test binary has another for the whole process.)
#[tokio::test(flavor = "current_thread")]
async fn the_books_example() -> Result<(), Error> {
    spans();
    let buffer = Buffer::default();
    let writer = buffer.clone();
    // ANCHOR: observe
    use tracing_subscriber::fmt::format::FmtSpan;

    // Print the runtime's spans (level DEBUG) as they close, with their fields and times.
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_span_events(FmtSpan::CLOSE)
        // (An application writes to stderr, the default: leave this line out.)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let (branch, vault, _listener) = bank().await;
    branch.open("book-a".into(), 100.0).await?;
    branch.send("book-a".into(), "book-b".into(), 30.0).await?;
    let stats = branch.stats();
    println!("{} commits, {} bytes sent, {} aborted", stats.commits, stats.bytes_out, stats.aborts.total());
    // ANCHOR_END: observe
    drop(vault);
    let printed = String::from_utf8(buffer.0.lock().expect("the buffer").clone()).expect("text");
    let send = printed
        .lines()
        .find(|l| {
            l.contains("waldo.call{") && l.contains("function=Branch.send attempts=") && l.contains("close")
        })
        .unwrap_or_else(|| panic!("the send call's span closed:\n{printed}"));
    assert!(send.contains("attempts=1") && send.contains("outcome=\"committed\""), "{send}");
    assert!(printed.contains("waldo.sequence{sequence=\"Transfer\" blocks=2}"), "{printed}");
    assert!(stats.commits >= 2 && stats.bytes_out > 0, "{stats:?}");
    Ok(())
}
