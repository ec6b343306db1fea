//! Throwaway certificate material made with rcgen: for `gen-certs`, for `--dev`, and for tests.
//! Keys are ECDSA P-256 and are written with mode 0600.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use clap::Args;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

/// `tls-echo gen-certs`.
#[derive(Debug, Args)]
pub struct GenCertsArgs {
    /// Directory to write into.
    #[arg(long, default_value = "certs")]
    pub out: PathBuf,
    /// DNS name for the server certificate; repeatable [default: localhost].
    #[arg(long = "name", value_name = "DNS")]
    pub names: Vec<String>,
    /// IP address for the server certificate; repeatable [default: 127.0.0.1 and ::1].
    #[arg(long = "ip", value_name = "IP")]
    pub ips: Vec<IpAddr>,
    /// Also write a client certificate with this name (for mutual TLS).
    #[arg(long, value_name = "NAME")]
    pub client: Option<String>,
    /// Validity of the server and client certificates in days.
    #[arg(long, default_value_t = 90)]
    pub days: u32,
    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
}

/// A PEM certificate and its PEM private key.
#[derive(Debug, Clone)]
pub struct Pair {
    /// Certificate, PEM.
    pub cert_pem: String,
    /// PKCS#8 private key, PEM.
    pub key_pem: String,
}

/// A certificate authority that can issue server and client certificates.
pub struct Ca {
    /// The CA's own certificate and key.
    pub pair: Pair,
    issuer: Issuer<'static, KeyPair>,
}

/// The validity window of a new certificate.
#[derive(Debug, Clone, Copy)]
pub struct Validity {
    /// Start.
    pub not_before: OffsetDateTime,
    /// End.
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// From a minute ago (clock skew) for `days` days.
    pub fn days(days: u32) -> Validity {
        let now = OffsetDateTime::now_utc();
        Validity {
            not_before: now - Duration::minutes(1),
            not_after: now + Duration::days(i64::from(days)),
        }
    }
}

impl Ca {
    /// A new self-signed CA named `cn`.
    pub fn new(cn: &str, validity: Validity) -> Result<Ca, rcgen::Error> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = validity.not_before;
        params.not_after = validity.not_after;
        let cert = params.self_signed(&key)?;
        let pair = Pair {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        Ok(Ca {
            pair,
            issuer: Issuer::new(params, key),
        })
    }

    /// A server certificate for these DNS names and addresses.
    pub fn server(
        &self,
        names: &[String],
        ips: &[IpAddr],
        validity: Validity,
    ) -> Result<Pair, rcgen::Error> {
        let mut params = CertificateParams::new(names.to_vec())?;
        params
            .subject_alt_names
            .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
        let cn = names.first().cloned().unwrap_or_else(|| "tls-echo".into());
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.leaf(params, validity)
    }

    /// A client certificate whose CN and DNS SAN are `name`.
    pub fn client(&self, name: &str, validity: Validity) -> Result<Pair, rcgen::Error> {
        let mut params = CertificateParams::new(vec![name.to_string()])?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.leaf(params, validity)
    }

    fn leaf(
        &self,
        mut params: CertificateParams,
        validity: Validity,
    ) -> Result<Pair, rcgen::Error> {
        let key = KeyPair::generate()?;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        params.not_before = validity.not_before;
        params.not_after = validity.not_after;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Pair {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// What `gen-certs` and `--dev` write, in one directory.
#[derive(Debug, Clone)]
pub struct Layout {
    /// CA certificate (give it to clients).
    pub ca: PathBuf,
    /// CA key (keep it to issue more).
    pub ca_key: PathBuf,
    /// Server certificate.
    pub cert: PathBuf,
    /// Server key.
    pub key: PathBuf,
}

impl Layout {
    /// The standard file names under `dir`.
    pub fn in_dir(dir: &Path) -> Layout {
        Layout {
            ca: dir.join("ca.pem"),
            ca_key: dir.join("ca.key"),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
        }
    }
}

/// The names a development certificate covers.
pub fn loopback_names() -> (Vec<String>, Vec<IpAddr>) {
    (
        vec!["localhost".into()],
        vec![
            IpAddr::from([127, 0, 0, 1]),
            IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
        ],
    )
}

/// What `gen-certs` (and `--dev`) issue: a CA, a server certificate, optionally a client one.
#[derive(Debug, Clone)]
pub struct Request {
    /// DNS names of the server certificate.
    pub names: Vec<String>,
    /// IP addresses of the server certificate.
    pub ips: Vec<IpAddr>,
    /// Name of a client certificate to issue too.
    pub client: Option<String>,
    /// Validity of the leaf certificates (the CA lives at least ten years).
    pub days: u32,
}

/// Issues `req` and writes it under `dir` (keys mode 0600). Unless `force`, refuses to replace
/// any existing file, before writing anything. Returns the files written.
pub fn write_set(dir: &Path, req: &Request, force: bool) -> anyhow::Result<Vec<PathBuf>> {
    let ca = Ca::new(
        "tls-echo CA (throwaway, made by tls-echo)",
        Validity::days(req.days.max(3650)),
    )?;
    let server = ca.server(&req.names, &req.ips, Validity::days(req.days))?;
    let layout = Layout::in_dir(dir);
    let mut files = vec![
        (layout.ca, ca.pair.cert_pem.clone(), 0o644),
        (layout.ca_key, ca.pair.key_pem.clone(), 0o600),
        (layout.cert, server.cert_pem, 0o644),
        (layout.key, server.key_pem, 0o600),
    ];
    if let Some(name) = &req.client {
        let client = ca.client(name, Validity::days(req.days))?;
        files.push((dir.join("client.pem"), client.cert_pem, 0o644));
        files.push((dir.join("client.key"), client.key_pem, 0o600));
    }
    if let Some((existing, ..)) = files.iter().find(|(p, ..)| p.exists() && !force) {
        anyhow::bail!(
            "{} exists; pass --force to overwrite the whole set",
            existing.display()
        );
    }
    fs::create_dir_all(dir)?;
    for (path, text, mode) in &files {
        write_new(path, text, *mode, force)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    }
    Ok(files.into_iter().map(|(p, ..)| p).collect())
}

/// Makes `--dev` material under `dir` once and reuses it afterwards.
pub fn ensure_dev(dir: &Path) -> anyhow::Result<Layout> {
    let layout = Layout::in_dir(dir);
    if layout.cert.exists() && layout.key.exists() && layout.ca.exists() {
        return Ok(layout);
    }
    let (names, ips) = loopback_names();
    write_set(
        dir,
        &Request {
            names,
            ips,
            client: None,
            days: 365,
        },
        true,
    )?;
    tracing::info!(dir = %dir.display(), "created development CA and server certificate");
    Ok(layout)
}

/// Writes `text` to `path` with `mode`, refusing to replace an existing file unless `force`.
pub fn write_new(path: &Path, text: &str, mode: u32, force: bool) -> std::io::Result<()> {
    if force && path.exists() {
        fs::remove_file(path)?;
    }
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    f.write_all(text.as_bytes())
}

/// `tls-echo gen-certs`: writes the set and prints how to serve and connect with it.
pub fn gen_certs(a: GenCertsArgs) -> anyhow::Result<()> {
    let (default_names, default_ips) = loopback_names();
    let names = if a.names.is_empty() && a.ips.is_empty() {
        default_names
    } else {
        a.names
    };
    let ips = if a.ips.is_empty() && names == ["localhost"] {
        default_ips
    } else {
        a.ips
    };
    let request = Request {
        names,
        ips,
        client: a.client,
        days: a.days,
    };
    for path in write_set(&a.out, &request, a.force)? {
        println!("wrote {}", path.display());
    }
    let d = a.out.display();
    println!("\nServe:    tls-echo --cert {d}/server.pem --key {d}/server.key");
    println!("Connect:  tls-echo client --connect 127.0.0.1:4433 --ca {d}/ca.pem");
    println!(
        "          openssl s_client -connect 127.0.0.1:4433 -CAfile {d}/ca.pem -verify_return_error -brief"
    );
    if request.client.is_some() {
        println!(
            "mTLS:     tls-echo --cert {d}/server.pem --key {d}/server.key --client-ca {d}/ca.pem"
        );
        println!(
            "          tls-echo client --ca {d}/ca.pem --cert {d}/client.pem --key {d}/client.key"
        );
    }
    Ok(())
}
