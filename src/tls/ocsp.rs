//! `--ocsp-response`: DER OCSP responses (as `openssl ocsp -respout` writes them), each stapled
//! to the served certificate its CertID names.
//!
//! The few fields needed (response status, and per SingleResponse the CertID, certificate
//! status, thisUpdate and nextUpdate; RFC 6960 section 4.2.1) are read with asn1-rs, which
//! x509-parser already brings, rather than adding a second ASN.1 stack (the RustCrypto
//! `x509-ocsp`/`der`/`x509-cert` family) for one structure. The response's signature is not
//! checked here: the client verifies it against the issuer, and the operator chose the file.

use std::path::{Path, PathBuf};

use aws_lc_rs::digest;
use rustls::pki_types::CertificateDer;
use x509_parser::asn1_rs::{Any, Class, FromDer, GeneralizedTime, Tag};
use x509_parser::prelude::X509Certificate;

use super::TlsError;

/// id-pkix-ocsp-basic, 1.3.6.1.5.5.7.48.1.1 (content octets).
const OID_OCSP_BASIC: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x01];

/// What a stapled response says, for logs and `check`.
#[derive(Debug, Clone)]
pub struct OcspInfo {
    /// The response file.
    pub path: PathBuf,
    /// The certificate file it is stapled to.
    pub cert: PathBuf,
    /// `good`, `revoked` or `unknown`.
    pub status: &'static str,
    /// When the responder produced this status, seconds since the Unix epoch.
    pub this_update: i64,
    /// When it stops being valid, if it says.
    pub next_update: Option<i64>,
}

impl OcspInfo {
    /// Whether `next_update` has passed: clients that check will refuse the staple.
    pub fn expired(&self) -> bool {
        self.next_update.is_some_and(|t| t < super::now())
    }
}

/// One SingleResponse.
struct Single {
    hash: &'static digest::Algorithm,
    name_hash: Vec<u8>,
    key_hash: Vec<u8>,
    serial: Vec<u8>,
    status: &'static str,
    this_update: i64,
    next_update: Option<i64>,
}

/// Reads each response and finds the certificate (index into `certs`: file and chain, leaf
/// first) it covers; any response that is unusable or covers none stops loading.
pub(crate) fn load(
    paths: &[PathBuf],
    certs: &[(&Path, &[CertificateDer<'static>])],
) -> Result<Vec<(usize, Vec<u8>, OcspInfo)>, TlsError> {
    let mut out: Vec<(usize, Vec<u8>, OcspInfo)> = Vec::new();
    for path in paths {
        let fail = |detail: String| TlsError::Ocsp {
            path: path.clone(),
            detail,
        };
        let der = super::read(path, "OCSP response")?;
        let singles = parse(&der).map_err(fail)?;
        let found = singles.iter().find_map(|s| {
            certs
                .iter()
                .position(|(_, chain)| covers(s, chain))
                .map(|i| (i, s))
        });
        let Some((index, single)) = found else {
            let serials: Vec<String> = singles.iter().map(|s| hex(&s.serial)).collect();
            return Err(fail(format!(
                "covers none of the certificates (response for serial {}; served: {}); pass the response the issuer gave for one of them",
                serials.join(", "),
                certs
                    .iter()
                    .map(|(p, _)| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        if let Some((_, _, other)) = out.iter().find(|(i, _, _)| *i == index) {
            return Err(fail(format!(
                "{} already has the OCSP response {}; give one response per certificate",
                certs[index].0.display(),
                other.path.display()
            )));
        }
        let info = OcspInfo {
            path: path.clone(),
            cert: certs[index].0.to_owned(),
            status: single.status,
            this_update: single.this_update,
            next_update: single.next_update,
        };
        if info.expired() {
            tracing::warn!(ocsp = %path.display(), cert = %info.cert.display(), "OCSP response is past its nextUpdate: stapled anyway, but clients that check will refuse it");
        }
        if info.status != "good" {
            tracing::warn!(ocsp = %path.display(), status = info.status, "OCSP response does not say 'good'");
        }
        out.push((index, der, info));
    }
    Ok(out)
}

/// Whether `s`'s CertID names the leaf of `chain`: serial and issuer-name hash always; the
/// issuer-key hash too when the chain carries the issuer (a leaf-only file cannot tell).
fn covers(s: &Single, chain: &[CertificateDer<'static>]) -> bool {
    let Ok((_, leaf)) = X509Certificate::from_der(&chain[0]) else {
        return false;
    };
    if trim(leaf.raw_serial()) != trim(&s.serial)
        || digest::digest(s.hash, leaf.issuer().as_raw()).as_ref() != s.name_hash
    {
        return false;
    }
    match chain.get(1).and_then(|c| X509Certificate::from_der(c).ok()) {
        Some((_, issuer)) => {
            digest::digest(s.hash, &issuer.public_key().subject_public_key.data).as_ref()
                == s.key_hash
        }
        None => true,
    }
}

fn trim(serial: &[u8]) -> &[u8] {
    let zeros = serial.iter().take_while(|b| **b == 0).count();
    &serial[zeros..]
}

fn hex(b: &[u8]) -> String {
    trim(b).iter().map(|b| format!("{b:02x}")).collect()
}

fn next<'a>(i: &'a [u8], what: &str) -> Result<(&'a [u8], Any<'a>), String> {
    Any::from_der(i).map_err(|e| format!("not a DER OCSP response: cannot read {what}: {e}"))
}

fn is_context(a: &Any<'_>, n: u32) -> bool {
    a.header.class() == Class::ContextSpecific && a.header.tag() == Tag(n)
}

fn time(a: Any<'_>, what: &str) -> Result<i64, String> {
    GeneralizedTime::try_from(a)
        .and_then(|t| t.utc_datetime())
        .map(|t| t.unix_timestamp())
        .map_err(|e| format!("bad {what}: {e}"))
}

fn hash_algorithm(oid: &[u8]) -> Result<&'static digest::Algorithm, String> {
    const SHA2: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02];
    match oid {
        [0x2b, 0x0e, 0x03, 0x02, 0x1a] => Ok(&digest::SHA1_FOR_LEGACY_USE_ONLY),
        [p @ .., 1] if p == SHA2 => Ok(&digest::SHA256),
        [p @ .., 2] if p == SHA2 => Ok(&digest::SHA384),
        [p @ .., 3] if p == SHA2 => Ok(&digest::SHA512),
        _ => Err("CertID uses a hash other than SHA-1 or SHA-2".into()),
    }
}

fn parse(der: &[u8]) -> Result<Vec<Single>, String> {
    let (_, response) = next(der, "OCSPResponse")?;
    let (rest, status) = next(response.data, "responseStatus")?;
    if status.header.tag() != Tag::Enumerated {
        return Err("not a DER OCSP response: responseStatus is not an ENUMERATED".into());
    }
    let code = status.data.last().copied().unwrap_or(0xff);
    if code != 0 {
        let name = match code {
            1 => "malformedRequest",
            2 => "internalError",
            3 => "tryLater",
            5 => "sigRequired",
            6 => "unauthorized",
            _ => "unknown status",
        };
        return Err(format!(
            "not a successful OCSP response (responseStatus {code}, {name}): it carries no certificate status to staple"
        ));
    }
    let (_, bytes) = next(rest, "responseBytes")?;
    let (_, bytes) = next(bytes.data, "ResponseBytes")?;
    let (rest, kind) = next(bytes.data, "responseType")?;
    if kind.data != OID_OCSP_BASIC {
        return Err("responseType is not id-pkix-ocsp-basic".into());
    }
    let (_, octets) = next(rest, "response")?;
    let (_, basic) = next(octets.data, "BasicOCSPResponse")?;
    let (_, tbs) = next(basic.data, "ResponseData")?;
    let (mut i, mut field) = next(tbs.data, "ResponseData")?;
    if is_context(&field, 0) {
        (i, field) = next(i, "responderID")?;
    }
    let _responder = field;
    let (i, _produced_at) = next(i, "producedAt")?;
    let (_, responses) = next(i, "responses")?;
    let mut singles = Vec::new();
    let mut list = responses.data;
    while !list.is_empty() {
        let (rest, single) = next(list, "SingleResponse")?;
        list = rest;
        let (i, cert_id) = next(single.data, "CertID")?;
        let (c, alg) = next(cert_id.data, "hashAlgorithm")?;
        let (_, oid) = next(alg.data, "hashAlgorithm OID")?;
        let (c, name_hash) = next(c, "issuerNameHash")?;
        let (c, key_hash) = next(c, "issuerKeyHash")?;
        let (_, serial) = next(c, "serialNumber")?;
        let (i, status) = next(i, "certStatus")?;
        let status = match (status.header.class(), status.header.tag().0) {
            (Class::ContextSpecific, 0) => "good",
            (Class::ContextSpecific, 1) => "revoked",
            _ => "unknown",
        };
        let (i, this_update) = next(i, "thisUpdate")?;
        let next_update = match next(i, "nextUpdate") {
            Ok((_, wrapped)) if is_context(&wrapped, 0) => {
                let (_, t) = next(wrapped.data, "nextUpdate")?;
                Some(time(t, "nextUpdate")?)
            }
            _ => None,
        };
        singles.push(Single {
            hash: hash_algorithm(oid.data)?,
            name_hash: name_hash.data.to_vec(),
            key_hash: key_hash.data.to_vec(),
            serial: serial.data.to_vec(),
            status,
            this_update: time(this_update, "thisUpdate")?,
            next_update,
        });
    }
    if singles.is_empty() {
        return Err("the response holds no certificate status".into());
    }
    Ok(singles)
}
