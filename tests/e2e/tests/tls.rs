//! Connections over TLS (rustls) and mutual TLS, on `protocols/host_endpoints.wld`: every way
//! a TLS handshake is refused, named on both sides; a listener that goes on serving after
//! each refusal; and the partner's verified identity. (The conformance and semantics suites
//! run every scenario over mutual TLS as well: the `scenarios!` macro.)

use std::time::Duration;

use waldo::{Error, TcpOptions};
use waldo_e2e::certs::{Ca, client_config, name, server_config};
use waldo_e2e::corpus_host_endpoints::host_endpoints::{Agent, AgentListener, Registry};

const WAIT: Duration = Duration::from_secs(10);

async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f).await.unwrap_or_else(|_| panic!("{what} took more than {WAIT:?}"))
}

/// The reason of a refused handshake.
fn refusal<T: std::fmt::Debug>(result: Result<T, Error>) -> String {
    match result {
        Err(Error::HandshakeRefused { reason }) => reason,
        other => panic!("expected a refused handshake, got {other:?}"),
    }
}

/// Connects a Registry with `options` to `listener`; returns the reasons both sides give.
async fn refused_both_sides(listener: &AgentListener, options: TcpOptions) -> (String, String) {
    let client =
        within("a refused connection", Registry::connect(listener.local_addr()).with_options(options)).await;
    let server = within("the listener's failure", listener.next_failure()).await.expect("a failure");
    (refusal(client), refusal::<()>(Err(server)))
}

fn assert_contains(text: &str, needle: &str) {
    assert!(text.contains(needle), "{text:?} lacks {needle:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mutual_tls_listener_refuses_every_bad_peer_by_name_then_serves_a_good_one() {
    let ca = Ca::new("Bank CA");
    let other_ca = Ca::new("Another CA");
    let listening = TcpOptions::default().with_tls_server(server_config(&ca.leaf("server.test"), Some(&ca)));
    let listener =
        within("listen", Agent::listen("127.0.0.1:0").with_options(listening)).await.expect("listen");
    let good_client = ca.leaf("client.test");
    let tls = |roots: &Ca, leaf: Option<&waldo_e2e::certs::Leaf>, server: &str| {
        TcpOptions::default().with_tls_client(client_config(roots, leaf), name(server))
    };

    // The client does not trust the listener's authority.
    let (client, server) =
        refused_both_sides(&listener, tls(&other_ca, Some(&good_client), "server.test")).await;
    assert_contains(&client, "the listener's certificate is not signed by a root this side trusts");
    assert_contains(&server, "the peer does not trust this listener's certificate");

    // The listener's certificate is for another name.
    let (client, server) = refused_both_sides(&listener, tls(&ca, Some(&good_client), "vault.test")).await;
    assert_contains(&client, "the listener's certificate is not valid for the name this side expects");
    assert_contains(&server, "the peer refused this listener's certificate");

    // No client certificate.
    let (client, server) = refused_both_sides(&listener, tls(&ca, None, "server.test")).await;
    assert_contains(&client, "the listener requires a client certificate, and this side presented none");
    assert_contains(&server, "the peer presented no client certificate, and this listener requires one");

    // A client certificate from another authority.
    let stranger = other_ca.leaf("client.test");
    let (client, server) = refused_both_sides(&listener, tls(&ca, Some(&stranger), "server.test")).await;
    assert_contains(&client, "the peer does not trust this side's client certificate");
    assert_contains(&server, "the peer's client certificate is not signed by a root this side trusts");

    // An expired client certificate.
    let expired = ca.expired_leaf("client.test");
    let (client, server) = refused_both_sides(&listener, tls(&ca, Some(&expired), "server.test")).await;
    assert_contains(&client, "the peer refused this side's client certificate");
    assert_contains(&server, "the peer's client certificate has expired");

    // Plain TCP.
    let (client, server) = refused_both_sides(&listener, TcpOptions::default()).await;
    assert_contains(&client, "this listener requires TLS, and the peer connected with plain TCP");
    assert_contains(&server, "this listener requires TLS, and the peer connected with plain TCP");

    // After all that, a good client is served, and each side knows who the other is.
    let (registry, agent) = within("a good pair", async {
        tokio::try_join!(
            Registry::connect(listener.local_addr()).with_options(tls(
                &ca,
                Some(&good_client),
                "server.test"
            )),
            listener.accept()
        )
    })
    .await
    .expect("a pair");
    assert_eq!(registry.ping(1.0).await, Ok(2.0));
    let server_id = registry.peer_identity().expect("the listener's identity");
    assert_eq!(server_id.names, ["server.test"]);
    assert_eq!(server_id.subject, "CN=server.test");
    let client_id = agent.peer_identity().expect("the client's identity");
    assert_eq!(client_id.names, ["client.test"]);
    assert_eq!(client_id.subject, "CN=client.test");
    assert_eq!(client_id.certificate, good_client.chain[0].as_ref());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_listener_certificate_is_refused_by_name() {
    let ca = Ca::new("Bank CA");
    let listening =
        TcpOptions::default().with_tls_server(server_config(&ca.expired_leaf("server.test"), None));
    let listener =
        within("listen", Agent::listen("127.0.0.1:0").with_options(listening)).await.expect("listen");
    let connecting = TcpOptions::default().with_tls_client(client_config(&ca, None), name("server.test"));
    let (client, server) = refused_both_sides(&listener, connecting.clone()).await;
    assert_contains(&client, "the listener's certificate has expired");
    assert_contains(&server, "the peer refused this listener's certificate: it has expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_a_plain_listener_is_refused_by_name_on_both_sides() {
    let ca = Ca::new("Bank CA");
    let listener = within("listen", Agent::listen("127.0.0.1:0")).await.expect("listen");
    let connecting = TcpOptions::default().with_tls_client(client_config(&ca, None), name("server.test"));
    let (client, server) = refused_both_sides(&listener, connecting).await;
    assert_contains(&client, "the listener does not speak TLS");
    assert_contains(&server, "the peer speaks TLS, and this listener plain TCP");
    // The listener goes on serving plain partners.
    let (registry, _agent) = within("a plain pair", async {
        tokio::try_join!(Registry::connect(listener.local_addr()), listener.accept())
    })
    .await
    .expect("a pair");
    assert_eq!(registry.ping(2.0).await, Ok(3.0));
    assert!(registry.peer_identity().is_none(), "plain TCP says nothing of who the partner is");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_only_tls_encrypts_without_client_certificates() {
    let ca = Ca::new("Bank CA");
    let listening = TcpOptions::default().with_tls_server(server_config(&ca.leaf("server.test"), None));
    let listener =
        within("listen", Agent::listen("127.0.0.1:0").with_options(listening)).await.expect("listen");
    let connecting = TcpOptions::default().with_tls_client(client_config(&ca, None), name("server.test"));
    let (registry, agent) = within("a pair", async {
        tokio::try_join!(Registry::connect(listener.local_addr()).with_options(connecting), listener.accept())
    })
    .await
    .expect("a pair");
    assert_eq!(registry.ping(5.0).await, Ok(6.0));
    assert_eq!(registry.peer_identity().map(|p| p.names.clone()), Some(vec!["server.test".to_owned()]));
    assert!(agent.peer_identity().is_none(), "no client certificate was asked for");
}
