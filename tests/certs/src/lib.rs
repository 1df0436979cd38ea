//! Certificates for Waldo's TLS examples, tests and benchmark, made at start-up with rcgen
//! (real deployments bring their own, from their own authority): a certificate authority, the
//! certificates it signs (also expired ones), and the rustls configurations built from them.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use waldo::TcpOptions;
use waldo::tls::rustls;
use waldo::tls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

/// A certificate authority.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate signed by a [`Ca`], with its key.
pub struct Leaf {
    /// The certificate chain (the certificate alone).
    pub chain: Vec<CertificateDer<'static>>,
    key: Vec<u8>,
}

impl Leaf {
    /// The private key.
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.clone()))
    }
}

impl Ca {
    /// A new authority named `name`.
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("a CA key");
        Ca { issuer: CertifiedIssuer::self_signed(params, key).expect("a CA certificate") }
    }

    /// A certificate for `name` (its common name and its one DNS name), valid now.
    pub fn leaf(&self, name: &str) -> Leaf {
        self.leaf_with(name, |_| {})
    }

    /// A certificate for `name` that expired in 2001.
    pub fn expired_leaf(&self, name: &str) -> Leaf {
        self.leaf_with(name, |p| {
            p.not_before = rcgen::date_time_ymd(2000, 1, 1);
            p.not_after = rcgen::date_time_ymd(2001, 1, 1);
        })
    }

    fn leaf_with(&self, name: &str, change: impl FnOnce(&mut CertificateParams)) -> Leaf {
        let mut params = CertificateParams::new(vec![name.to_owned()]).expect("parameters");
        params.distinguished_name.push(DnType::CommonName, name);
        change(&mut params);
        let key = KeyPair::generate().expect("a key");
        let cert = params.signed_by(&key, &self.issuer).expect("a certificate");
        Leaf { chain: vec![cert.der().clone()], key: key.serialize_der() }
    }

    /// The authority as the only trusted root.
    pub fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.issuer.der().clone()).expect("a root");
        roots
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A listener's TLS configuration: its certificate `leaf`, and when `clients` is given, client
/// certificates required and verified against that authority.
pub fn server_config(leaf: &Leaf, clients: Option<&Ca>) -> Arc<rustls::ServerConfig> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("TLS versions");
    let builder = match clients {
        Some(ca) => builder.with_client_cert_verifier(
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(ca.roots()), provider())
                .build()
                .expect("a client verifier"),
        ),
        None => builder.with_no_client_auth(),
    };
    Arc::new(builder.with_single_cert(leaf.chain.clone(), leaf.key()).expect("a server config"))
}

/// A connecting side's TLS configuration: it trusts `roots`, and presents `leaf` if given.
pub fn client_config(roots: &Ca, leaf: Option<&Leaf>) -> Arc<rustls::ClientConfig> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots.roots());
    Arc::new(match leaf {
        Some(leaf) => builder.with_client_auth_cert(leaf.chain.clone(), leaf.key()).expect("a client config"),
        None => builder.with_no_client_auth(),
    })
}

/// `name` as a server name.
pub fn name(name: &str) -> ServerName<'static> {
    ServerName::try_from(name.to_owned()).expect("a server name")
}

/// The options of a mutually authenticated pair under one new authority: the connecting
/// side's (certificate `client.test`, expecting `server.test`) and the listener's
/// (certificate `server.test`, requiring a client certificate).
pub fn mutual() -> (TcpOptions, TcpOptions) {
    let ca = Ca::new("Waldo test CA");
    let (server, client) = (ca.leaf("server.test"), ca.leaf("client.test"));
    (
        TcpOptions::default().with_tls_client(client_config(&ca, Some(&client)), name("server.test")),
        TcpOptions::default().with_tls_server(server_config(&server, Some(&ca))),
    )
}
