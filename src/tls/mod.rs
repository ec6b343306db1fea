//! PEM files -> rustls `ServerConfig`, with start-up errors that name the file and the fix.
//!
//! Policy: TLS 1.3 and 1.2 only (1.3 only with `--tls13-only`), aws-lc-rs suites, all of them
//! forward-secret AEAD, X25519MLKEM768 preferred with classical groups as fallback. rustls has
//! no renegotiation and no compression to turn off.
//!
//! The features beside the policy each have a file: [`sni`] (several certificates by SNI and
//! key type, `--strict-sni`), [`crl`] (client-certificate revocation), [`ocsp`] (stapling) and
//! [`tickets`] (`--ticket-keys`, resumption across instances).

pub mod certinfo;
mod client_auth;
pub mod crl;
mod error;
pub mod ocsp;
mod pem;
pub mod sni;
mod tickets;

pub use client_auth::client_verifier;
pub use error::{TlsError, handshake_failure_reason};
pub(crate) use pem::read;
pub use pem::{KeyMode, key_mode, read_certs, read_key};

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::crypto::{CryptoProvider, aws_lc_rs};
use rustls::pki_types::{CertificateDer, UnixTime};

use certinfo::CertInfo;

/// One `--cert`/`--key` pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
}

/// Where the TLS material comes from; re-read as a whole on reload.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// Certificate/key pairs, at least one; the first is the default.
    pub identities: Vec<Identity>,
    /// Refuse a ClientHello without SNI or with a name no certificate covers.
    pub strict_sni: bool,
    /// ALPN protocols in server preference order (empty: no ALPN).
    pub alpn: Vec<String>,
    /// CRLs for the client CA chain.
    pub client_crls: Vec<PathBuf>,
    /// DER OCSP responses to staple.
    pub ocsp_responses: Vec<PathBuf>,
    /// Shared session-ticket keys (default: rustls's own rotating keys).
    pub ticket_keys: Option<PathBuf>,
    /// CA bundle for client certificates (mutual TLS), if required.
    pub client_ca: Option<PathBuf>,
    /// Client certificate names admitted (empty: any chaining to `client_ca`).
    pub allow_client: Vec<String>,
    /// Offer TLS 1.3 only.
    pub tls13_only: bool,
}

/// A ready server configuration and facts about what it serves.
#[derive(Debug, Clone)]
pub struct TlsMaterial {
    /// What the acceptor uses.
    pub config: Arc<ServerConfig>,
    /// Validity and names of the default (first) certificate's leaf.
    pub leaf: CertInfo,
    /// The default leaf itself, so the start-up self-test can pin exactly what is served.
    pub leaf_der: CertificateDer<'static>,
    /// Every served certificate, in configuration order.
    pub certs: Vec<ServedCert>,
    /// The `--client-crl` lists.
    pub crls: Vec<crl::CrlInfo>,
    pub(crate) sni: Arc<sni::Resolver>,
}

/// One served certificate, for `check` and the start-up log.
#[derive(Debug, Clone)]
pub struct ServedCert {
    /// Its files.
    pub identity: Identity,
    /// Names and validity of its leaf.
    pub info: CertInfo,
    /// The OCSP response stapled to it, if any.
    pub ocsp: Option<ocsp::OcspInfo>,
}

impl TlsMaterial {
    /// The soonest expiry among the served certificates, seconds since the Unix epoch.
    pub fn soonest_not_after(&self) -> i64 {
        self.certs
            .iter()
            .map(|c| c.info.not_after)
            .min()
            .unwrap_or(self.leaf.not_after)
    }

    /// A host name the default certificate covers: the SNI the self-test sends.
    pub fn default_name(&self) -> Option<String> {
        self.sni.default_name()
    }
}

/// The one crypto provider: aws-lc-rs (see the README for why).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(aws_lc_rs::default_provider())
}

/// Reads every file and builds the server configuration. Nothing is half-applied: either all
/// material is valid together or an error says what to fix.
pub fn load(s: &TlsSettings) -> Result<TlsMaterial, TlsError> {
    let provider = provider();
    let mut loaded = s
        .identities
        .iter()
        .map(|id| sni::load_identity(id, &provider))
        .collect::<Result<Vec<_>, _>>()?;
    let targets: Vec<(&Path, &[CertificateDer<'static>])> = loaded
        .iter()
        .map(|(id, key, _, _)| (id.cert.as_path(), key.cert.as_slice()))
        .collect();
    let mut staples: Vec<Option<ocsp::OcspInfo>> = vec![None; loaded.len()];
    for (index, der, info) in ocsp::load(&s.ocsp_responses, &targets)? {
        loaded[index].1.ocsp = Some(der);
        staples[index] = Some(info);
    }
    let leaf_der = loaded[0].1.cert[0].clone();
    let leaf = loaded[0].2.clone();
    let mut certs = Vec::new();
    let mut entries = Vec::new();
    for ((identity, key, info, names), ocsp) in loaded.into_iter().zip(staples) {
        entries.push(sni::Entry {
            key: Arc::new(key),
            names,
        });
        certs.push(ServedCert {
            identity,
            info,
            ocsp,
        });
    }
    let resolver = Arc::new(sni::Resolver::new(entries, s.strict_sni));
    if s.strict_sni && resolver.default_name().is_none() {
        return Err(TlsError::StrictSniWithoutNames {
            path: s.identities[0].cert.clone(),
        });
    }
    let versions: &[&rustls::SupportedProtocolVersion] = if s.tls13_only {
        &[&rustls::version::TLS13]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let builder =
        ServerConfig::builder_with_provider(provider.clone()).with_protocol_versions(versions)?;
    let (crl_ders, crls) = crl::load(&s.client_crls)?;
    let builder = match &s.client_ca {
        Some(path) => builder.with_client_cert_verifier(client_verifier(
            path,
            &s.allow_client,
            crl_ders,
            provider,
        )?),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::clone(&resolver) as _);
    // With protocols set, rustls refuses a client whose offer shares none with
    // no_application_protocol (RFC 7301) and serves a client that offers none.
    config.alpn_protocols = s.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    // One TLS 1.3 ticket per handshake instead of rustls's two: a client resumes with one,
    // and each ticket costs an encryption and 200-odd bytes on the wire.
    config.send_tls13_tickets = 1;
    // Stateless tickets let returning clients resume without server-side session memory.
    config.ticketer = match &s.ticket_keys {
        Some(path) => Arc::new(tickets::load(path)?),
        None => aws_lc_rs::Ticketer::new()?,
    };
    Ok(TlsMaterial {
        config: Arc::new(config),
        leaf,
        leaf_der,
        certs,
        crls,
        sni: resolver,
    })
}

pub(crate) fn now() -> i64 {
    UnixTime::now().as_secs() as i64
}
