//! What can go wrong with TLS: material problems worded for the operator who must fix them, and
//! handshake failures as stable labels for logs and metrics.

use std::path::PathBuf;

use rustls::CertificateError;

use super::sni;

/// A TLS material problem, worded for the operator who must fix it.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file is missing or unreadable.
    #[error("cannot read {what} {path}: {source} (check the path and that this user may read it)")]
    Read {
        /// certificate, key, client CA.
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// The PEM text is damaged.
    #[error("{path}: not valid PEM: {detail}")]
    Pem { path: PathBuf, detail: String },
    /// No CERTIFICATE block in the file.
    #[error(
        "{path}: no certificate found; expected PEM blocks starting '-----BEGIN CERTIFICATE-----' (leaf first, then intermediates)"
    )]
    NoCertificate { path: PathBuf },
    /// No key block in the file.
    #[error(
        "{path}: no private key found; expected an unencrypted PEM 'PRIVATE KEY' (PKCS#8), 'EC PRIVATE KEY' (SEC1) or 'RSA PRIVATE KEY' (PKCS#1) block"
    )]
    NoKey { path: PathBuf },
    /// The key is password-protected.
    #[error(
        "{path}: the private key is encrypted, which is not supported (the server cannot prompt for a passphrase); decrypt it once with: openssl pkey -in {path} -out server.key && chmod 600 server.key"
    )]
    EncryptedKey { path: PathBuf },
    /// The key type is not usable.
    #[error(
        "{path}: unsupported private key: {detail} (use ECDSA P-256/P-384, Ed25519 or RSA >= 2048)"
    )]
    UnsupportedKey { path: PathBuf, detail: String },
    /// The key does not belong to the leaf certificate.
    #[error(
        "{key} does not match the certificate in {cert}: the key's public half differs from the leaf's; pass the key that was used to create this certificate"
    )]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    /// The leaf cannot be parsed as X.509.
    #[error("{path}: the first certificate is not valid X.509: {detail}")]
    BadCertificate { path: PathBuf, detail: String },
    /// The client CA bundle cannot be used.
    #[error("{path}: unusable client CA bundle: {detail}")]
    ClientCa { path: PathBuf, detail: String },
    /// A `--client-crl` file cannot be used.
    #[error("{path}: unusable client CRL: {detail}")]
    Crl { path: PathBuf, detail: String },
    /// An `--ocsp-response` file cannot be stapled.
    #[error("{path}: unusable OCSP response: {detail}")]
    Ocsp { path: PathBuf, detail: String },
    /// The `--ticket-keys` file cannot be used.
    #[error("{path}: unusable ticket key file: {detail}")]
    TicketKeys { path: PathBuf, detail: String },
    /// `--strict-sni` with a default certificate that names no host.
    #[error(
        "{path}: --strict-sni needs DNS names in the first (default) certificate, and it has none (the start-up self-test connects with one of them)"
    )]
    StrictSniWithoutNames { path: PathBuf },
    /// Anything else rustls refused.
    #[error("TLS configuration refused: {0}")]
    Rustls(#[from] rustls::Error),
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
