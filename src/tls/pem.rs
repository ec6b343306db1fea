//! Reading PEM files: certificate chains, private keys (refusing encrypted ones precisely, since
//! the PEM API silently skips them) and the file-mode rules for anything secret.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::TlsError;

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

/// What is wrong with a private key file's mode, if anything.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyMode {
    /// Only the owner can read it.
    Private,
    /// The group can read it: allowed, with a warning.
    GroupReadable(u32),
    /// Anyone can read it: refused, as ssh refuses such keys.
    WorldReadable(u32),
}

/// Classifies the mode of the key file at `path`.
pub fn key_mode(path: &Path) -> std::io::Result<KeyMode> {
    let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
    Ok(if mode & 0o004 != 0 {
        KeyMode::WorldReadable(mode)
    } else if mode & 0o040 != 0 {
        KeyMode::GroupReadable(mode)
    } else {
        KeyMode::Private
    })
}
