//! PEM files -> rustls `ServerConfig`, with start-up errors that name the file and the fix.
//!
//! Policy: TLS 1.3 and 1.2 only (1.3 only with `--tls13-only`), aws-lc-rs suites, all of them
//! forward-secret AEAD, X25519MLKEM768 preferred with classical groups as fallback. rustls has
//! no renegotiation and no compression to turn off.
//!
//! The features beside the policy each have a file: [`sni`] (several certificates by SNI and
//! key type, `--strict-sni`), [`crl`] (client-certificate revocation), [`ocsp`] (stapling) and
//! [`tickets`] (`--ticket-keys`, resumption across instances).

pub mod crl;
pub mod ocsp;
pub mod sni;
mod tickets;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, aws_lc_rs};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme,
};

use crate::certinfo::CertInfo;

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

/// A TLS material problem, worded for the operator who must fix it.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file is missing or unreadable.
    #[error("cannot read {what} {path}: {source} (check the path and that this user may read it)")]
    Read {
        /// certificate, key, client CA.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The PEM text is damaged.
    #[error("{path}: not valid PEM: {detail}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        detail: String,
    },
    /// No CERTIFICATE block in the file.
    #[error(
        "{path}: no certificate found; expected PEM blocks starting '-----BEGIN CERTIFICATE-----' (leaf first, then intermediates)"
    )]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// No key block in the file.
    #[error(
        "{path}: no private key found; expected an unencrypted PEM 'PRIVATE KEY' (PKCS#8), 'EC PRIVATE KEY' (SEC1) or 'RSA PRIVATE KEY' (PKCS#1) block"
    )]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// The key is password-protected.
    #[error(
        "{path}: the private key is encrypted, which is not supported (the server cannot prompt for a passphrase); decrypt it once with: openssl pkey -in {path} -out server.key && chmod 600 server.key"
    )]
    EncryptedKey {
        /// The file.
        path: PathBuf,
    },
    /// The key type is not usable.
    #[error(
        "{path}: unsupported private key: {detail} (use ECDSA P-256/P-384, Ed25519 or RSA >= 2048)"
    )]
    UnsupportedKey {
        /// The file.
        path: PathBuf,
        /// What rustls said.
        detail: String,
    },
    /// The key does not belong to the leaf certificate.
    #[error(
        "{key} does not match the certificate in {cert}: the key's public half differs from the leaf's; pass the key that was used to create this certificate"
    )]
    KeyMismatch {
        /// Certificate file.
        cert: PathBuf,
        /// Key file.
        key: PathBuf,
    },
    /// The leaf cannot be parsed as X.509.
    #[error("{path}: the first certificate is not valid X.509: {detail}")]
    BadCertificate {
        /// The file.
        path: PathBuf,
        /// Parser message.
        detail: String,
    },
    /// The client CA bundle cannot be used.
    #[error("{path}: unusable client CA bundle: {detail}")]
    ClientCa {
        /// The file.
        path: PathBuf,
        /// Why.
        detail: String,
    },
    /// A `--client-crl` file cannot be used.
    #[error("{path}: unusable client CRL: {detail}")]
    Crl {
        /// The file.
        path: PathBuf,
        /// Why.
        detail: String,
    },
    /// An `--ocsp-response` file cannot be stapled.
    #[error("{path}: unusable OCSP response: {detail}")]
    Ocsp {
        /// The file.
        path: PathBuf,
        /// Why.
        detail: String,
    },
    /// The `--ticket-keys` file cannot be used.
    #[error("{path}: unusable ticket key file: {detail}")]
    TicketKeys {
        /// The file.
        path: PathBuf,
        /// Why.
        detail: String,
    },
    /// `--strict-sni` with a default certificate that names no host.
    #[error(
        "{path}: --strict-sni needs DNS names in the first (default) certificate, and it has none (the start-up self-test connects with one of them)"
    )]
    StrictSniWithoutNames {
        /// The certificate file.
        path: PathBuf,
    },
    /// Anything else rustls refused.
    #[error("TLS configuration refused: {0}")]
    Rustls(#[from] rustls::Error),
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

/// Reads a PEM certificate chain.
pub fn read_certs(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path, what)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_owned(),
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// Reads a PEM private key, refusing encrypted ones with a precise message (the PEM API would
/// silently skip them and report "no key").
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path, "key")?;
    let text = String::from_utf8_lossy(&pem);
    // PKCS#8 "ENCRYPTED PRIVATE KEY" blocks, and legacy OpenSSL PEM encryption headers.
    if text.contains("ENCRYPTED PRIVATE KEY-----") || text.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(TlsError::EncryptedKey {
            path: path.to_owned(),
        });
    }
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
            path: path.to_owned(),
        },
        e => TlsError::Pem {
            path: path.to_owned(),
            detail: e.to_string(),
        },
    })
}

pub(crate) fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

pub(crate) fn client_verifier(
    ca: &Path,
    allow: &[String],
    crls: Vec<rustls::pki_types::CertificateRevocationListDer<'static>>,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(ca, "client CA")? {
        roots.add(cert).map_err(|e| TlsError::ClientCa {
            path: ca.to_owned(),
            detail: e.to_string(),
        })?;
    }
    // webpki's defaults with CRLs: the whole chain is checked, and a certificate whose
    // issuer has no CRL among them is refused (as nginx does with ssl_crl).
    let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .with_crls(crls)
        .build()
        .map_err(|e| TlsError::ClientCa {
            path: ca.to_owned(),
            detail: e.to_string(),
        })?;
    if allow.is_empty() {
        return Ok(inner);
    }
    Ok(Arc::new(NameAllowlist {
        inner,
        names: allow.to_vec(),
    }))
}

/// Chain verification by webpki, then the `--allow-client` name check.
#[derive(Debug)]
struct NameAllowlist {
    inner: Arc<dyn ClientCertVerifier>,
    names: Vec<String>,
}

impl ClientCertVerifier for NameAllowlist {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let names = CertInfo::parse(end_entity)
            .map(|i| i.names)
            .unwrap_or_default();
        if names.iter().any(|n| self.names.contains(n)) {
            Ok(verified)
        } else {
            tracing::info!(
                ?names,
                "client certificate refused: name not in --allow-client"
            );
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Why a handshake failed, as a stable label for logs and metrics.
pub fn handshake_failure_reason(e: &std::io::Error) -> &'static str {
    use rustls::Error as E;
    if e.get_ref().is_some_and(|i| i.is::<sni::UnrecognizedName>()) {
        return "sni-unrecognized";
    }
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return match e.kind() {
            std::io::ErrorKind::UnexpectedEof => "client-closed",
            std::io::ErrorKind::ConnectionReset => "connection-reset",
            _ => "io-error",
        };
    };
    match tls {
        E::NoCertificatesPresented => "client-cert-missing",
        E::InvalidCertificate(CertificateError::UnknownIssuer) => "client-cert-unknown-ca",
        E::InvalidCertificate(CertificateError::ApplicationVerificationFailure) => {
            "client-name-not-allowed"
        }
        E::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => "client-cert-expired",
        E::InvalidCertificate(CertificateError::Revoked) => "client-cert-revoked",
        E::InvalidCertificate(CertificateError::UnknownRevocationStatus) => {
            "client-cert-revocation-unknown"
        }
        E::InvalidCertificate(_) => "client-cert-invalid",
        E::NoApplicationProtocol => "alpn-no-common-protocol",
        E::PeerIncompatible(_) => "protocol-version-or-suite",
        E::InvalidMessage(_)
        | E::InappropriateHandshakeMessage { .. }
        | E::InappropriateMessage { .. } => "not-tls-or-malformed",
        E::AlertReceived(_) => "client-alert",
        E::PeerMisbehaved(_) => "peer-misbehaved",
        _ => "other",
    }
}
