//! Every serving option, as one clap struct that doubles as the TOML schema, so a flag and its
//! config-file key can never drift apart. Values are parsed into their types here; the parent
//! module applies precedence, defaults and cross-field checks. Nothing here reads a file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use serde::Deserialize;

use super::{ConfigError, Seconds};
use crate::echo::Mode;
use crate::firewall::FirewallMode;
use crate::firewall::allowlist::{AllowEntry, Cidr};

/// The format of log lines on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// Every serving option. Each is also a key of the `--config` TOML file and a `TLS_ECHO_*`
/// environment variable; precedence is flag, environment, file, default.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Options {
    /// TOML file carrying any of these options under the same names.
    #[arg(long, env = "TLS_ECHO_CONFIG", value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// PEM certificate chain, leaf first; repeatable, paired with --key in order, chosen by
    /// SNI; the first is the default.
    #[arg(
        long,
        env = "TLS_ECHO_CERT",
        value_name = "FILE",
        value_delimiter = ','
    )]
    #[serde(default, deserialize_with = "one_or_many")]
    pub cert: Vec<PathBuf>,
    /// PEM private key (PKCS#8, SEC1 or PKCS#1, unencrypted); one per --cert, same order.
    #[arg(long, env = "TLS_ECHO_KEY", value_name = "FILE", value_delimiter = ',')]
    #[serde(default, deserialize_with = "one_or_many")]
    pub key: Vec<PathBuf>,
    /// Refuse a ClientHello without SNI or naming no certificate (unrecognized_name alert).
    #[arg(long, env = "TLS_ECHO_STRICT_SNI")]
    #[serde(default)]
    pub strict_sni: bool,
    /// ALPN protocol offered, repeatable, in server preference order (e.g. h2, http/1.1).
    #[arg(
        long,
        env = "TLS_ECHO_ALPN",
        value_name = "PROTO",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub alpn: Vec<String>,
    /// DER OCSP response to staple to the certificate it covers; repeatable; re-read on SIGHUP.
    #[arg(
        long,
        env = "TLS_ECHO_OCSP_RESPONSE",
        value_name = "FILE",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub ocsp_response: Vec<PathBuf>,
    /// Session-ticket keys shared between instances (base64 of 80 bytes a line, first
    /// encrypts) [default: per-process rotating keys].
    #[arg(long, env = "TLS_ECHO_TICKET_KEYS", value_name = "FILE")]
    pub ticket_keys: Option<PathBuf>,
    /// Address to listen on; repeatable [default: 127.0.0.1:4433].
    #[arg(
        long,
        env = "TLS_ECHO_LISTEN",
        value_name = "ADDR",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub listen: Vec<SocketAddr>,
    /// Development default: throwaway CA and certificate under certs/dev/, loopback only.
    #[arg(long, env = "TLS_ECHO_DEV")]
    #[serde(default)]
    pub dev: bool,
    /// Echo validated lines, or raw bytes.
    #[arg(long, env = "TLS_ECHO_MODE", value_enum)]
    pub mode: Option<Mode>,
    /// Longest accepted line in bytes, terminator included [default: 4096].
    #[arg(long, env = "TLS_ECHO_MAX_LINE", value_name = "BYTES")]
    pub max_line: Option<usize>,
    /// Log line format; RUST_LOG filters.
    #[arg(long, env = "TLS_ECHO_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,

    /// Allowed peer network (CIDR or address), or `any`; repeatable [default: loopback only].
    #[arg(
        long,
        env = "TLS_ECHO_ALLOW",
        value_name = "CIDR",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub allow: Vec<AllowEntry>,
    /// File of allowed networks, one a line, `#` comments; re-read on SIGHUP.
    #[arg(long, env = "TLS_ECHO_ALLOW_FILE", value_name = "PATH")]
    pub allow_file: Option<PathBuf>,
    /// Refuse what the policy refuses, or only log and count it.
    #[arg(long, env = "TLS_ECHO_FIREWALL_MODE", value_enum)]
    pub firewall_mode: Option<FirewallMode>,
    /// Most connections open at once; more are closed before TLS [default: 10000].
    #[arg(long, env = "TLS_ECHO_MAX_CONNS", value_name = "N")]
    pub max_conns: Option<usize>,
    /// Most connections open at once per IPv4 address or IPv6 /64 [default: 256].
    #[arg(long, env = "TLS_ECHO_MAX_CONNS_PER_IP", value_name = "N")]
    pub max_conns_per_ip: Option<u32>,
    /// New connections per second per IPv4 address or IPv6 /64 [default: 100].
    #[arg(long, env = "TLS_ECHO_RATE_PER_IP", value_name = "R")]
    pub rate_per_ip: Option<f64>,
    /// Burst of new connections allowed above the rate [default: 200].
    #[arg(long, env = "TLS_ECHO_RATE_BURST", value_name = "N")]
    pub rate_burst: Option<u32>,
    /// Require client certificates chaining to this PEM CA bundle (mutual TLS).
    #[arg(long, env = "TLS_ECHO_CLIENT_CA", value_name = "FILE")]
    pub client_ca: Option<PathBuf>,
    /// Admit only client certificates with this SAN (DNS or URI) or CN; repeatable.
    #[arg(
        long,
        env = "TLS_ECHO_ALLOW_CLIENT",
        value_name = "NAME",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub allow_client: Vec<String>,
    /// CRL (PEM or DER) for the --client-ca chain; repeatable; re-read on SIGHUP.
    #[arg(
        long,
        env = "TLS_ECHO_CLIENT_CRL",
        value_name = "FILE",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub client_crl: Vec<PathBuf>,
    /// Expect a PROXY protocol v1/v2 header from trusted proxies.
    #[arg(long, env = "TLS_ECHO_PROXY_PROTOCOL", requires = "trusted_proxy")]
    #[serde(default)]
    pub proxy_protocol: bool,
    /// Proxy network whose PROXY headers are believed; repeatable.
    #[arg(
        long,
        env = "TLS_ECHO_TRUSTED_PROXY",
        value_name = "CIDR",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub trusted_proxy: Vec<Cidr>,

    /// Time a peer has to complete the TLS handshake [default: 10s].
    #[arg(long, env = "TLS_ECHO_HANDSHAKE_TIMEOUT", value_name = "DURATION")]
    pub handshake_timeout: Option<Seconds>,
    /// Time without a complete line before the connection is closed [default: 300s].
    #[arg(long, env = "TLS_ECHO_IDLE_TIMEOUT", value_name = "DURATION")]
    pub idle_timeout: Option<Seconds>,
    /// Time a client may leave pending echo data unread [default: 30s].
    #[arg(long, env = "TLS_ECHO_WRITE_TIMEOUT", value_name = "DURATION")]
    pub write_timeout: Option<Seconds>,
    /// Time open connections get to finish after SIGTERM/SIGINT [default: 10s].
    #[arg(long, env = "TLS_ECHO_SHUTDOWN_TIMEOUT", value_name = "DURATION")]
    pub shutdown_timeout: Option<Seconds>,
    /// Longest life of one connection [default: unlimited].
    #[arg(long, env = "TLS_ECHO_MAX_CONN_LIFETIME", value_name = "DURATION")]
    pub max_conn_lifetime: Option<Seconds>,
    /// Most bytes one connection may send [default: unlimited].
    #[arg(long, env = "TLS_ECHO_MAX_CONN_BYTES", value_name = "BYTES")]
    pub max_conn_bytes: Option<u64>,
    /// Offer TLS 1.3 only (Mozilla "modern").
    #[arg(long, env = "TLS_ECHO_TLS13_ONLY")]
    #[serde(default)]
    pub tls13_only: bool,

    /// Serve Prometheus metrics over plain HTTP on this address (keep it on loopback).
    #[arg(long, env = "TLS_ECHO_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// Once serving, write the bound addresses to this file, one a line (for scripts that
    /// listen on port 0); replaced atomically, so a reader never sees half of it.
    #[arg(long, env = "TLS_ECHO_READY_FILE", value_name = "FILE")]
    pub ready_file: Option<PathBuf>,
    /// Set SO_REUSEPORT so several processes can share a port.
    #[arg(long, env = "TLS_ECHO_REUSE_PORT")]
    #[serde(default)]
    pub reuse_port: bool,
}

/// A TOML value that is one path or an array of them (`cert = "a.pem"` keeps working).
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<PathBuf>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        One(PathBuf),
        Many(Vec<PathBuf>),
    }
    Ok(match Raw::deserialize(d)? {
        Raw::One(p) => vec![p],
        Raw::Many(v) => v,
    })
}

impl Options {
    /// Parses the text of the `--config` file at `path`; relative paths in it become relative
    /// to the file, wherever the server is started.
    pub fn from_toml(text: &str, path: &Path) -> Result<Options, ConfigError> {
        let mut file: Options = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let lists = [
            &mut file.cert,
            &mut file.key,
            &mut file.client_crl,
            &mut file.ocsp_response,
        ];
        let singles = [
            &mut file.allow_file,
            &mut file.client_ca,
            &mut file.ticket_keys,
            &mut file.ready_file,
        ];
        for rel in lists
            .into_iter()
            .flatten()
            .chain(singles.into_iter().flatten())
            .filter(|p| p.is_relative())
        {
            *rel = base.join(&*rel);
        }
        Ok(file)
    }

    /// `self` (flags and environment) wins where it has a value; `file` fills the rest.
    pub fn over(self, file: Options) -> Options {
        let (over, under) = (self, file);
        macro_rules! pick {
            (opt: $($o:ident),*; list: $($l:ident),*; flag: $($f:ident),*) => {
                Options {
                    $($o: over.$o.or(under.$o),)*
                    $($l: if over.$l.is_empty() { under.$l } else { over.$l },)*
                    $($f: over.$f || under.$f,)*
                }
            };
        }
        pick!(
            opt: config, ticket_keys, mode, max_line, log_format, allow_file, firewall_mode,
                max_conns, max_conns_per_ip, rate_per_ip, rate_burst, client_ca, handshake_timeout,
                idle_timeout, write_timeout, shutdown_timeout, max_conn_lifetime, max_conn_bytes,
                metrics_listen, ready_file;
            list: listen, allow, allow_client, trusted_proxy, cert, key, alpn, client_crl,
                ocsp_response;
            flag: dev, proxy_protocol, tls13_only, reuse_port, strict_sni
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file_and_lists_replace() {
        let flags = Options {
            max_line: Some(100),
            ..Default::default()
        };
        let file = Options::from_toml(
            "max-line = 50\nidle-timeout = \"5m\"\nallow = [\"10.0.0.0/8\"]\nlisten = [\"127.0.0.1:0\"]\ncert = \"a.pem\"",
            Path::new("/etc/tls-echo/tls-echo.toml"),
        )
        .unwrap();
        let m = flags.over(file);
        assert_eq!(m.max_line, Some(100));
        let five_minutes = std::time::Duration::from_secs(300);
        assert_eq!(m.idle_timeout, Some(Seconds(five_minutes)));
        assert_eq!(m.allow.len(), 1);
        assert_eq!(m.cert, [PathBuf::from("/etc/tls-echo/a.pem")]);
    }

    #[test]
    fn cert_and_key_take_one_path_or_an_array() {
        let one: Options = toml::from_str("cert = \"a.pem\"\nkey = \"a.key\"").unwrap();
        assert_eq!(one.cert, [PathBuf::from("a.pem")]);
        let many: Options =
            toml::from_str("cert = [\"a.pem\", \"b.pem\"]\nkey = [\"a.key\", \"b.key\"]").unwrap();
        assert_eq!(many.key.len(), 2);
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = toml::from_str::<Options>("max-lines = 5\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("max-lines"), "{err}");
    }
}
