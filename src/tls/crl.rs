//! `--client-crl`: certificate revocation lists for the `--client-ca` chain, PEM or DER, with
//! the facts `check` reports (issuer, next update).

use std::path::{Path, PathBuf};

use rustls::pki_types::CertificateRevocationListDer;
use rustls::pki_types::pem::PemObject;
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

use super::TlsError;

/// What one CRL file says about itself.
#[derive(Debug, Clone)]
pub struct CrlInfo {
    pub path: PathBuf,
    /// Issuer distinguished name, as text.
    pub issuer: String,
    /// When the issuer promises the next CRL, seconds since the Unix epoch.
    pub next_update: Option<i64>,
    /// How many certificates it revokes.
    pub revoked: usize,
}

/// Reads every file: each may hold one DER CRL or any number of PEM `X509 CRL` blocks.
pub(crate) fn load(
    paths: &[PathBuf],
) -> Result<(Vec<CertificateRevocationListDer<'static>>, Vec<CrlInfo>), TlsError> {
    let mut ders = Vec::new();
    let mut infos = Vec::new();
    for path in paths {
        for der in read(path)? {
            infos.push(info(path, &der)?);
            ders.push(der);
        }
    }
    Ok((ders, infos))
}

fn read(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let bytes = super::read(path, "client CRL")?;
    let fail = |detail: String| TlsError::Crl {
        path: path.to_owned(),
        detail,
    };
    // DER starts with a SEQUENCE tag; PEM with text.
    if bytes.first() == Some(&0x30) {
        return Ok(vec![CertificateRevocationListDer::from(bytes)]);
    }
    let crls = CertificateRevocationListDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(format!("not valid PEM: {e}")))?;
    if crls.is_empty() {
        return Err(fail(
            "no CRL found; expected DER or PEM blocks starting '-----BEGIN X509 CRL-----'".into(),
        ));
    }
    Ok(crls)
}

fn info(path: &Path, der: &[u8]) -> Result<CrlInfo, TlsError> {
    let (_, crl) = CertificateRevocationList::from_der(der).map_err(|e| TlsError::Crl {
        path: path.to_owned(),
        detail: format!("not a valid X.509 CRL: {e}"),
    })?;
    Ok(CrlInfo {
        path: path.to_owned(),
        issuer: crl.issuer().to_string(),
        next_update: crl.next_update().map(|t| t.timestamp()),
        revoked: crl.iter_revoked_certificates().count(),
    })
}
