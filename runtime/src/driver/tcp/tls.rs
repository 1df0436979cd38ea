//! TLS over a connection's TCP socket: rustls through tokio-rustls, with the `ring` crypto
//! provider. The connecting side is the TLS client and verifies the listener's certificate
//! and name; a listener may require client certificates, verified against its roots. Waldo's
//! own handshake then runs inside the TLS session, unchanged.
//!
//! Every way a TLS handshake fails is a named [`Error::HandshakeRefused`] on the side that
//! sees it, and the other side is told what it can be told (an alert, or, for plain TCP
//! speaking to a TLS listener, a plain refusal frame).

use std::io;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{AlertDescription, CertificateError};

use crate::core::error::Error;

/// TLS for connecting sides: the rustls client configuration (roots, and a client
/// certificate for a listener that requires one) and the name the listener's certificate
/// must be valid for.
#[derive(Clone, Debug)]
pub struct TlsClient {
    /// The rustls configuration.
    pub config: Arc<rustls::ClientConfig>,
    /// The name the listener's certificate must carry (a DNS name or an IP address).
    pub server_name: ServerName<'static>,
}

/// Who the partner of a TLS connection is: its verified certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The certificate's subject, as text (`CN=vault.example, O=Bank`).
    pub subject: String,
    /// Its subject alternative names: DNS names, and IP addresses as text.
    pub names: Vec<String>,
    /// The certificate itself (DER).
    pub certificate: Vec<u8>,
}

impl PeerIdentity {
    /// The identity in certificate `der` (the first of the chain the peer presented).
    pub(crate) fn from_der(der: &[u8]) -> PeerIdentity {
        let mut identity =
            PeerIdentity { subject: String::new(), names: Vec::new(), certificate: der.to_vec() };
        if let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) {
            identity.subject = cert.subject().to_string();
            if let Ok(Some(san)) = cert.subject_alternative_name() {
                for name in &san.value.general_names {
                    match name {
                        x509_parser::extensions::GeneralName::DNSName(n) => {
                            identity.names.push((*n).to_owned());
                        }
                        x509_parser::extensions::GeneralName::IPAddress(ip) => {
                            let text = match ip.len() {
                                4 => <[u8; 4]>::try_from(*ip)
                                    .map(|b| std::net::IpAddr::from(b).to_string())
                                    .ok(),
                                16 => <[u8; 16]>::try_from(*ip)
                                    .map(|b| std::net::IpAddr::from(b).to_string())
                                    .ok(),
                                _ => None,
                            };
                            identity.names.extend(text);
                        }
                        _ => {}
                    }
                }
            }
        }
        identity
    }
}

/// Which side of a TLS session this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Role {
    /// The connecting side (the TLS client).
    Connecting,
    /// The listening side (the TLS server).
    Listening,
}

/// The named error for an I/O error of a TLS session (its handshake, or a read right after
/// it, where TLS 1.3 reports a refused client certificate), or `None` when it is no TLS
/// error.
pub(super) fn tls_error(e: &io::Error, role: Role) -> Option<Error> {
    let tls = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>())?;
    let (peer, this) = match role {
        Role::Connecting => ("the listener's certificate", "this side's client certificate"),
        Role::Listening => ("the peer's client certificate", "this listener's certificate"),
    };
    let reason = match tls {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => {
                format!("{peer} is not signed by a root this side trusts (unknown issuer)")
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!("{peer} is not valid for the name this side expects (wrong server name)")
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                format!("{peer} has expired")
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                format!("{peer} is not valid yet")
            }
            CertificateError::Revoked => format!("{peer} is revoked"),
            other => format!("{peer} is not acceptable: {other:?}"),
        },
        rustls::Error::NoCertificatesPresented => {
            "the peer presented no client certificate, and this listener requires one".to_owned()
        }
        rustls::Error::AlertReceived(alert) => match alert {
            AlertDescription::CertificateRequired => {
                "the listener requires a client certificate, and this side presented none".to_owned()
            }
            AlertDescription::UnknownCA => format!("the peer does not trust {this} (unknown CA)"),
            AlertDescription::BadCertificate | AlertDescription::CertificateUnknown => {
                format!("the peer refused {this} ({alert:?})")
            }
            AlertDescription::CertificateExpired => format!("the peer refused {this}: it has expired"),
            other => format!("the peer ended the TLS handshake ({other:?})"),
        },
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => match role {
            Role::Connecting => {
                "the listener does not speak TLS: it answered in plain TCP (give both sides TLS options)"
                    .to_owned()
            }
            Role::Listening => {
                "the peer does not speak TLS: this listener requires TLS (give both sides TLS options)"
                    .to_owned()
            }
        },
        other => format!("the TLS handshake failed: {other}"),
    };
    Some(Error::HandshakeRefused { reason })
}

/// The refusal a TLS listener sends, in plain TCP, to a peer that sent the Waldo magic in
/// plain TCP; and the error on its own side.
pub(super) const PLAIN_TO_TLS: &str =
    "this listener requires TLS, and the peer connected with plain TCP (give both sides TLS options)";

/// The refusal a plain listener sends to a peer that started a TLS handshake.
pub(super) const TLS_TO_PLAIN: &str =
    "the peer speaks TLS, and this listener plain TCP (give both sides the same TLS options)";

/// Whether `bytes` start a TLS record (a handshake or an alert, any TLS version).
pub(super) fn looks_like_tls(bytes: &[u8]) -> bool {
    matches!(bytes, [0x15 | 0x16, 0x03, ..])
}
