//! Facts about a certificate that operators and policies need: names and validity.

use std::time::{SystemTime, UNIX_EPOCH};

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Days of validity under which start-up and `check` warn that a certificate expires soon.
pub const EXPIRY_WARNING_DAYS: i64 = 14;

/// Names and validity of one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Subject distinguished name, as text.
    pub subject: String,
    /// SAN DNS names, URIs and IP addresses, then the subject CN(s).
    pub names: Vec<String>,
    /// Start of validity, seconds since the Unix epoch.
    pub not_before: i64,
    /// End of validity, seconds since the Unix epoch.
    pub not_after: i64,
}

impl CertInfo {
    /// Parses a DER certificate.
    pub fn parse(der: &[u8]) -> Result<CertInfo, String> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
        let mut names = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(n) | GeneralName::URI(n) => names.push((*n).to_string()),
                    GeneralName::IPAddress(b) => {
                        if let Some(ip) = ip_from_bytes(b) {
                            names.push(ip.to_string());
                        }
                    }
                    _ => {}
                }
            }
        }
        // SANs first; a CN that repeats a SAN (the usual case) is listed once.
        for cn in cert.subject().iter_common_name() {
            if let Ok(cn) = cn.as_str() {
                if !names.iter().any(|n| n == cn) {
                    names.push(cn.to_string());
                }
            }
        }
        let validity = cert.validity();
        Ok(CertInfo {
            subject: cert.subject().to_string(),
            names,
            not_before: validity.not_before.timestamp(),
            not_after: validity.not_after.timestamp(),
        })
    }

    /// Seconds until the certificate expires (negative once it has).
    pub fn seconds_left(&self) -> i64 {
        self.not_after - now()
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn ip_from_bytes(b: &[u8]) -> Option<std::net::IpAddr> {
    match b.len() {
        4 => Some(<[u8; 4]>::try_from(b).ok()?.into()),
        16 => Some(<[u8; 16]>::try_from(b).ok()?.into()),
        _ => None,
    }
}
