//! Several certificates, chosen per ClientHello by SNI and by the signature schemes the client
//! supports; `--strict-sni` refuses a missing or unknown name with `unrecognized_name`.
//!
//! Order of choice: certificates whose DNS SANs name the host exactly, then those whose
//! wildcard covers it (one label, as RFC 6125 and HAProxy's crt-list do), each group in
//! configuration order; within the group the first whose key can sign with a scheme the client
//! offers (an ECDSA and an RSA certificate for one name). No SNI, or a name no certificate
//! covers: the first pair, the default, unless `--strict-sni`.

use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use rustls::crypto::CryptoProvider;

use super::{Identity, TlsError, read_certs, read_key};
use crate::tls::certinfo::CertInfo;

/// A fatal `unrecognized_name` (112) alert in a TLS 1.2-versioned plaintext record: what the
/// server sends before any ServerHello, so the record needs no keys (`engine::accept` sends it
/// under `--strict-sni`).
pub(crate) const UNRECOGNIZED_NAME_ALERT: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x70];

/// One served certificate and the DNS names it answers for.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) key: Arc<CertifiedKey>,
    /// Lower-case DNS SANs, wildcards included as written (`*.example.com`).
    pub(crate) names: Vec<String>,
}

/// The certificate resolver: immutable, rebuilt whole on reload.
#[derive(Debug)]
pub(crate) struct Resolver {
    entries: Vec<Entry>,
    pub(crate) strict: bool,
}

impl Resolver {
    pub(crate) fn new(entries: Vec<Entry>, strict: bool) -> Resolver {
        Resolver { entries, strict }
    }

    /// Whether some certificate covers `host`.
    pub(crate) fn covers(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        self.entries
            .iter()
            .any(|e| e.names.iter().any(|n| matches(n, &host)))
    }

    /// A host name the default certificate answers for (the self-test sends it as SNI).
    pub(crate) fn default_name(&self) -> Option<String> {
        let names = &self.entries.first()?.names;
        names
            .iter()
            .find(|n| !n.starts_with("*."))
            .cloned()
            .or_else(|| {
                names.iter().find_map(|n| {
                    n.strip_prefix("*.")
                        .map(|d| format!("tls-echo-self-test.{d}"))
                })
            })
    }

    fn choose(
        &self,
        host: Option<&str>,
        schemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        let host = host.map(str::to_ascii_lowercase);
        let exact: Vec<&Entry> = host.as_deref().map_or_else(Vec::new, |h| {
            self.entries
                .iter()
                .filter(|e| e.names.iter().any(|n| n == h))
                .collect()
        });
        let candidates = if !exact.is_empty() {
            exact
        } else {
            let wild: Vec<&Entry> = host.as_deref().map_or_else(Vec::new, |h| {
                self.entries
                    .iter()
                    .filter(|e| e.names.iter().any(|n| n.starts_with("*.") && matches(n, h)))
                    .collect()
            });
            if !wild.is_empty() {
                wild
            } else if self.strict {
                return None;
            } else {
                self.entries.iter().collect()
            }
        };
        candidates
            .iter()
            .find(|e| e.key.key.choose_scheme(schemes).is_some())
            .or(candidates.first())
            .map(|e| Arc::clone(&e.key))
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.choose(hello.server_name(), hello.signature_schemes())
    }
}

/// Whether SAN `pattern` (lower case) covers `host` (lower case): equal, or a `*.` wildcard
/// standing for exactly one leftmost label.
fn matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(domain) => host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == domain),
        None => pattern == host,
    }
}

/// One pair: chain and key that match, the leaf's facts and its DNS names for SNI.
pub(crate) fn load_identity(
    id: &Identity,
    provider: &CryptoProvider,
) -> Result<(Identity, CertifiedKey, CertInfo, Vec<String>), TlsError> {
    let chain = read_certs(&id.cert, "certificate")?;
    let key = read_key(&id.key)?;
    let bad = |detail| TlsError::BadCertificate {
        path: id.cert.clone(),
        detail,
    };
    let info = CertInfo::parse(&chain[0]).map_err(bad)?;
    let names = dns_names(&chain[0]).map_err(bad)?;
    let signer =
        provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| TlsError::UnsupportedKey {
                path: id.key.clone(),
                detail: e.to_string(),
            })?;
    let certified = CertifiedKey::new(chain, signer);
    if certified.keys_match().is_err() {
        return Err(TlsError::KeyMismatch {
            cert: id.cert.clone(),
            key: id.key.clone(),
        });
    }
    Ok((id.clone(), certified, info, names))
}

/// The leaf's DNS SANs in lower case: what SNI is matched against (not the CN, as webpki).
fn dns_names(der: &[u8]) -> Result<Vec<String>, String> {
    use x509_parser::extensions::GeneralName;
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
    let san = cert.subject_alternative_name().map_err(|e| e.to_string())?;
    Ok(san
        .into_iter()
        .flat_map(|s| s.value.general_names.iter())
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
            _ => None,
        })
        .collect())
}

/// The ClientHello named no certificate under `--strict-sni`.
#[derive(Debug, thiserror::Error)]
#[error("--strict-sni: no certificate covers the requested name ({0}); sent unrecognized_name")]
pub struct UnrecognizedName(pub String);

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn wildcards_cover_one_label() {
        assert!(matches("a.example.com", "a.example.com"));
        assert!(matches("*.example.com", "a.example.com"));
        assert!(!matches("*.example.com", "example.com"));
        assert!(!matches("*.example.com", "a.b.example.com"));
        assert!(!matches("*.example.com", ".example.com"));
        assert!(!matches("a.example.com", "b.example.com"));
    }
}
