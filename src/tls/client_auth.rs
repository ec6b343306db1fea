//! Client-certificate policy (mutual TLS): chain verification by webpki against `--client-ca`
//! with its CRLs, then the `--allow-client` name check.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme,
};

use super::certinfo::CertInfo;
use super::{TlsError, read_certs};

pub fn client_verifier(
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
