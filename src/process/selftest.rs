//! The start-up self-test: one TLS handshake and one echo through the server's own acceptor
//! and echo loop, in memory, before the server tells systemd it is ready. A unit that reports
//! "active" has then served at least once with exactly the material it loaded.

use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_rustls::TlsConnector;
use tracing::info;

use crate::echo::{EchoLimits, Ending, Tally};
use crate::engine;
use crate::tls::{self, TlsMaterial};

/// The line sent through the echo path (its tail, if `--max-line` is shorter).
const PROBE: &[u8] = b"tls-echo self-test\n";
/// The whole self-test must finish within this; it runs in memory and takes milliseconds.
const DEADLINE: Duration = Duration::from_secs(10);
/// In-memory pipe capacity between the test client and the server side.
const PIPE_BYTES: usize = 64 * 1024;

/// What went wrong in the self-test; any of these stops start-up.
#[derive(Debug, thiserror::Error)]
pub enum SelfTestError {
    /// The client side could not be set up.
    #[error("self-test: cannot build the test client: {0}")]
    Client(#[from] rustls::Error),
    /// The handshake failed; each side's view of why.
    #[error(
        "self-test: TLS handshake through the server's own acceptor failed (server side: {server}; test client pinning the loaded certificate: {client})"
    )]
    Handshake {
        /// The acceptor's error.
        server: std::io::Error,
        /// The client's view, if it failed too.
        client: String,
    },
    /// The echo came back different or not at all.
    #[error("self-test: echo mismatch: sent {sent:?}, got back {got:?}")]
    Echo { sent: String, got: String },
    /// The echo loop ended other than by the client closing.
    #[error("self-test: the echo loop ended with '{0}' instead of client-closed")]
    Ending(&'static str),
    /// The transport failed.
    #[error("self-test: I/O error on the in-memory connection: {0}")]
    Io(std::io::Error),
    /// Nothing finished in time.
    #[error("self-test: no result within {0:?}: the handshake or echo path hangs")]
    Timeout(Duration),
}

/// How far the self-test could go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Handshake, echo and close_notify all worked.
    Echoed,
    /// Mutual TLS is required and the test client has no certificate: the server's half of
    /// the handshake worked up to asking for one; the echo was not exercised.
    StoppedAtClientAuth,
}

/// Runs the self-test against the TLS material and echo limits about to be served (`mtls`:
/// client certificates are required); logs a pass.
pub async fn run(
    material: &TlsMaterial,
    limits: &EchoLimits,
    mtls: bool,
) -> Result<Outcome, SelfTestError> {
    let outcome = tokio::time::timeout(DEADLINE, exercise(material, limits, mtls))
        .await
        .map_err(|_| SelfTestError::Timeout(DEADLINE))??;
    match outcome {
        Outcome::Echoed => info!("self-test passed: TLS handshake and echo in memory"),
        Outcome::StoppedAtClientAuth => {
            info!("self-test passed up to client authentication (mutual TLS): echo not exercised")
        }
    }
    Ok(outcome)
}

async fn exercise(
    material: &TlsMaterial,
    limits: &EchoLimits,
    mtls: bool,
) -> Result<Outcome, SelfTestError> {
    let material = Arc::new(material.clone());
    let probe = probe(limits);
    let limits = limits.clone();
    let (client_io, server_io) = tokio::io::duplex(PIPE_BYTES);
    // A name the default certificate covers, so that --strict-sni admits the probe too.
    let name = material
        .default_name()
        .unwrap_or_else(|| "tls-echo.self-test".into());
    let served = Arc::clone(&material);
    let server = tokio::spawn(async move {
        let session = engine::accept(&served, server_io)
            .await
            .map_err(engine::HandshakeError::into_io)?;
        let mut tally = Tally::default();
        let stop = std::pin::pin!(std::future::pending());
        Ok::<_, std::io::Error>(session.echo(&limits, stop, &mut tally).await)
    });
    let client = client_side(
        own_leaf_only_client(&material.leaf_der)?,
        &name,
        client_io,
        probe,
    )
    .await;
    let served = server
        .await
        .map_err(|e| SelfTestError::Io(std::io::Error::other(e)))?;
    match (served, client) {
        (Err(e), _) if mtls && is_missing_client_cert(&e) => Ok(Outcome::StoppedAtClientAuth),
        (Err(server), client) => Err(SelfTestError::Handshake {
            server,
            client: match client {
                Ok(()) => "ok".into(),
                Err(SelfTestError::Io(e)) => e.to_string(),
                Err(e) => e.to_string(),
            },
        }),
        (Ok(_), Err(e)) => Err(e),
        (Ok(Ending::Eof), Ok(())) => Ok(Outcome::Echoed),
        (Ok(ending), Ok(())) => Err(SelfTestError::Ending(ending.label())),
    }
}

/// The probe line, cut to fit `--max-line` and `--max-conn-bytes`.
fn probe(limits: &EchoLimits) -> &'static [u8] {
    let fit = limits
        .max_bytes
        .map_or(usize::MAX, |b| usize::try_from(b).unwrap_or(usize::MAX))
        .min(limits.max_line)
        .min(PROBE.len());
    &PROBE[PROBE.len() - fit..]
}

async fn client_side(
    config: rustls::ClientConfig,
    name: &str,
    io: DuplexStream,
    probe: &[u8],
) -> Result<(), SelfTestError> {
    let name = ServerName::try_from(name.to_owned())
        .unwrap_or_else(|_| ServerName::try_from("tls-echo.self-test").expect("literal DNS name"));
    let mut tls = TlsConnector::from(Arc::new(config))
        .connect(name, io)
        .await
        .map_err(SelfTestError::Io)?;
    tls.write_all(probe).await.map_err(SelfTestError::Io)?;
    tls.flush().await.map_err(SelfTestError::Io)?;
    let mut got = vec![0; probe.len()];
    let read = tls.read_exact(&mut got).await;
    if read.is_err() || got != probe {
        return Err(SelfTestError::Echo {
            sent: String::from_utf8_lossy(probe).into_owned(),
            got: String::from_utf8_lossy(&got).into_owned(),
        });
    }
    tls.shutdown().await.map_err(SelfTestError::Io)
}

fn is_missing_client_cert(e: &std::io::Error) -> bool {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|e| matches!(e, rustls::Error::NoCertificatesPresented))
}

/// A client that trusts exactly one certificate, `leaf`, the one the server loaded, and no
/// other: not a general no-verify client. Handshake signatures are still checked.
fn own_leaf_only_client(
    leaf: &CertificateDer<'static>,
) -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = tls::provider();
    let verifier = Arc::new(OwnLeafOnly {
        leaf: leaf.clone(),
        provider: Arc::clone(&provider),
    });
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// The self-test client's one reason to refuse a certificate.
#[derive(Debug, thiserror::Error)]
#[error("the served certificate is not the one the server loaded")]
struct NotTheLoadedLeaf;

#[derive(Debug)]
struct OwnLeafOnly {
    leaf: CertificateDer<'static>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for OwnLeafOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.leaf.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                rustls::OtherError(Arc::new(NotTheLoadedLeaf)),
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Options};
    use crate::tools::certs::{Ca, Validity};

    /// The material and settings for a fresh certificate in `dir`, with `extra` applied.
    fn served(dir: &std::path::Path, extra: impl FnOnce(&mut Options)) -> (TlsMaterial, Config) {
        let ca = Ca::new("self-test CA", Validity::days(30)).unwrap();
        let (names, ips) = crate::tools::certs::loopback_names();
        let leaf = ca.server(&names, &ips, Validity::days(30)).unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            crate::tools::certs::write_new(&path, text, 0o600, true).unwrap();
            path
        };
        let mut options = Options {
            cert: vec![write("server.pem", &leaf.cert_pem)],
            key: vec![write("server.key", &leaf.key_pem)],
            ..Default::default()
        };
        write("ca.pem", &ca.pair.cert_pem);
        extra(&mut options);
        let config = Config::resolve(options).unwrap();
        (tls::load(&config.tls).unwrap(), config)
    }

    async fn check(material: &TlsMaterial, config: &Config) -> Result<Outcome, SelfTestError> {
        run(material, &config.echo, config.tls.client_ca.is_some()).await
    }

    #[tokio::test]
    async fn echoes_through_the_loaded_material() {
        let dir = tempfile::tempdir().unwrap();
        let (material, config) = served(dir.path(), |_| {});
        assert_eq!(check(&material, &config).await.unwrap(), Outcome::Echoed);
        let (material, tiny) = served(dir.path(), |a| a.max_line = Some(2));
        assert_eq!(check(&material, &tiny).await.unwrap(), Outcome::Echoed);
    }

    #[tokio::test]
    async fn fails_when_the_served_certificate_is_not_the_loaded_one() {
        let dir = tempfile::tempdir().unwrap();
        let (mut mixed, config) = served(dir.path(), |_| {});
        let other = tempfile::tempdir().unwrap();
        mixed.leaf_der = served(other.path(), |_| {}).0.leaf_der;
        let err = check(&mixed, &config).await.unwrap_err().to_string();
        assert!(err.starts_with("self-test: TLS handshake"), "{err}");
        assert!(err.contains("NotTheLoadedLeaf"), "{err}");
    }

    #[tokio::test]
    async fn with_mutual_tls_stops_at_client_authentication() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        let (material, config) = served(dir.path(), |a| a.client_ca = Some(ca));
        assert_eq!(
            check(&material, &config).await.unwrap(),
            Outcome::StoppedAtClientAuth
        );
    }
}
