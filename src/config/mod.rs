//! Validated settings: flags and `TLS_ECHO_*` variables (via clap) over the `--config` TOML
//! file over defaults, checked once at start-up and passed down read-only. Pure: start-up reads
//! the files and creates the `--dev` material; this module only parses and checks.

mod duration;
mod options;

pub use duration::Seconds;
pub use options::{LogFormat, Options};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::echo::EchoLimits;
use crate::firewall::FirewallMode;
use crate::firewall::allowlist::{AllowEntry, Cidr};
use crate::tls::{Identity, TlsSettings};

/// Every default in one place, with why.
pub mod defaults {
    use std::time::Duration;

    /// Loopback, on the port `openssl s_client` tries first.
    pub const LISTEN: &str = "127.0.0.1:4433";
    /// Room for any sensible line while bounding memory per connection.
    pub const MAX_LINE: usize = 4096;
    /// Upper bound for `--max-line`: the line buffer is allocated per connection.
    pub const MAX_LINE_CEILING: usize = 1 << 20;
    /// A real client needs one or two round trips; slowloris peers are cut off.
    pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
    /// Long enough for interactive use with a human typing.
    pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
    /// A client that leaves its echo unread this long is stuck or hostile.
    pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
    /// Below systemd's default stop timeout (90 s), above any sane echo drain.
    pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
    /// Within the file-descriptor limit the systemd unit sets.
    pub const MAX_CONNS: usize = 10_000;
    /// Generous for a host, small against one host hogging the server.
    pub const MAX_CONNS_PER_IP: u32 = 256;
    /// New connections per second per peer: load tests from one host fit with the burst.
    pub const RATE_PER_IP: f64 = 100.0;
    /// Connections a peer may open at once above the rate.
    pub const RATE_BURST: u32 = 200;
    /// Where `--dev` keeps its throwaway CA and certificate.
    pub const DEV_DIR: &str = "certs/dev";
}

/// A configuration problem, naming the file or option and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file cannot be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The config file does not parse or has an unknown key or bad value.
    #[error("config file {path}: {message}")]
    Parse {
        path: PathBuf,
        /// toml's message, with line, column and key.
        message: String,
    },
    /// A required option is missing.
    #[error("{0}")]
    Missing(&'static str),
    /// An option has a value that cannot work.
    #[error("--{option}: {why}")]
    Invalid {
        /// The option (also the config key).
        option: &'static str,
        /// Why, and what would work.
        why: String,
    },
    /// `--dev` with a non-loopback address.
    #[error(
        "--dev refuses to listen on {0}: development certificates are for loopback only; use 127.0.0.1 or [::1], or serve real certificates with --cert/--key"
    )]
    DevNotLoopback(SocketAddr),
}

/// The settings the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Addresses to listen on.
    pub listen: Vec<SocketAddr>,
    /// TLS material files and policy.
    pub tls: TlsSettings,
    /// Echo-phase limits.
    pub echo: EchoLimits,
    /// Handshake deadline (also for a PROXY header).
    pub handshake_timeout: Duration,
    /// Drain time after SIGTERM/SIGINT.
    pub shutdown_timeout: Duration,
    /// Longest connection life.
    pub max_conn_lifetime: Option<Duration>,
    /// `--allow` entries.
    pub allow: Vec<AllowEntry>,
    /// `--allow-file`.
    pub allow_file: Option<PathBuf>,
    /// Enforce or audit.
    pub firewall_mode: FirewallMode,
    /// Global connection cap.
    pub max_conns: usize,
    /// Per-peer connection cap.
    pub max_conns_per_ip: u32,
    /// Per-peer new connections per second.
    pub rate_per_ip: f64,
    /// Per-peer burst.
    pub rate_burst: u32,
    /// Networks whose PROXY headers are believed; empty without `--proxy-protocol`.
    pub trusted_proxies: Vec<Cidr>,
    /// Log format.
    pub log_format: LogFormat,
    /// Started with `--dev`.
    pub dev: bool,
    /// Where to serve Prometheus metrics, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    /// SO_REUSEPORT on the listeners.
    pub reuse_port: bool,
    /// Where to write the bound addresses once serving.
    pub ready_file: Option<PathBuf>,
}

impl Config {
    /// Applies defaults and checks the options together. `--dev` without `--cert` means the
    /// development material under [`defaults::DEV_DIR`], which start-up creates on first use.
    pub fn resolve(a: Options) -> Result<Config, ConfigError> {
        let listen = if a.listen.is_empty() {
            vec![defaults::LISTEN.parse().expect("literal")]
        } else {
            a.listen
        };
        let identities = match (a.cert.len(), a.key.len(), a.dev) {
            (0, 0, true) => {
                let dir = Path::new(defaults::DEV_DIR);
                vec![Identity {
                    cert: dir.join("server.pem"),
                    key: dir.join("server.key"),
                }]
            }
            (0, 0, false) => {
                return Err(ConfigError::Missing(
                    "no certificate: pass --cert FILE --key FILE (see `tls-echo gen-certs`), or --dev for a throwaway loopback setup",
                ));
            }
            (_, 0, _) => return Err(ConfigError::Missing("--cert needs --key FILE too")),
            (0, _, _) => return Err(ConfigError::Missing("--key needs --cert FILE too")),
            (c, k, _) if c != k => {
                return Err(ConfigError::Invalid {
                    option: "key",
                    why: format!(
                        "{c} --cert but {k} --key: give one key per certificate, in the same order"
                    ),
                });
            }
            _ => a
                .cert
                .into_iter()
                .zip(a.key)
                .map(|(cert, key)| Identity { cert, key })
                .collect(),
        };
        if let Some(bad) = a.alpn.iter().find(|p| p.is_empty() || p.len() > 255) {
            return Err(ConfigError::Invalid {
                option: "alpn",
                why: format!("'{bad}': a protocol name is 1 to 255 bytes (RFC 7301)"),
            });
        }
        if !a.client_crl.is_empty() && a.client_ca.is_none() {
            return Err(ConfigError::Missing(
                "--client-crl needs --client-ca FILE: revocation applies to client certificates",
            ));
        }
        if a.dev {
            if let Some(addr) = listen.iter().find(|a| !a.ip().is_loopback()) {
                return Err(ConfigError::DevNotLoopback(*addr));
            }
        }
        let max_line = a.max_line.unwrap_or(defaults::MAX_LINE);
        if !(2..=defaults::MAX_LINE_CEILING).contains(&max_line) {
            return Err(ConfigError::Invalid {
                option: "max-line",
                why: format!(
                    "{max_line} is out of range; use 2 to {}",
                    defaults::MAX_LINE_CEILING
                ),
            });
        }
        let rate_per_ip = a.rate_per_ip.unwrap_or(defaults::RATE_PER_IP);
        if !(rate_per_ip.is_finite() && rate_per_ip > 0.0) {
            return Err(ConfigError::Invalid {
                option: "rate-per-ip",
                why: format!("{rate_per_ip} must be a positive number of connections per second"),
            });
        }
        let max_conns = a.max_conns.unwrap_or(defaults::MAX_CONNS);
        if max_conns == 0 {
            return Err(ConfigError::Invalid {
                option: "max-conns",
                why: "must be at least 1".into(),
            });
        }
        if !a.allow_client.is_empty() && a.client_ca.is_none() {
            return Err(ConfigError::Missing(
                "--allow-client needs --client-ca FILE to verify client certificates against",
            ));
        }
        if a.proxy_protocol && a.trusted_proxy.is_empty() {
            return Err(ConfigError::Missing(
                "--proxy-protocol needs --trusted-proxy CIDR: only headers from your load balancers are believed",
            ));
        }
        let secs = |v: Option<Seconds>, d: Duration| v.map_or(d, |s| s.0);
        Ok(Config {
            listen,
            tls: TlsSettings {
                identities,
                strict_sni: a.strict_sni,
                alpn: a.alpn,
                client_crls: a.client_crl,
                ocsp_responses: a.ocsp_response,
                ticket_keys: a.ticket_keys,
                client_ca: a.client_ca,
                allow_client: a.allow_client,
                tls13_only: a.tls13_only,
            },
            echo: EchoLimits {
                mode: a.mode.unwrap_or_default(),
                max_line,
                idle_timeout: secs(a.idle_timeout, defaults::IDLE_TIMEOUT),
                write_timeout: secs(a.write_timeout, defaults::WRITE_TIMEOUT),
                max_bytes: a.max_conn_bytes,
            },
            handshake_timeout: secs(a.handshake_timeout, defaults::HANDSHAKE_TIMEOUT),
            shutdown_timeout: secs(a.shutdown_timeout, defaults::SHUTDOWN_TIMEOUT),
            max_conn_lifetime: a.max_conn_lifetime.map(|s| s.0),
            allow: a.allow,
            allow_file: a.allow_file,
            firewall_mode: a.firewall_mode.unwrap_or_default(),
            max_conns,
            max_conns_per_ip: a.max_conns_per_ip.unwrap_or(defaults::MAX_CONNS_PER_IP),
            rate_per_ip,
            rate_burst: a.rate_burst.unwrap_or(defaults::RATE_BURST),
            trusted_proxies: if a.proxy_protocol {
                a.trusted_proxy
            } else {
                Vec::new()
            },
            log_format: a.log_format.unwrap_or_default(),
            dev: a.dev,
            metrics_listen: a.metrics_listen,
            reuse_port: a.reuse_port,
            ready_file: a.ready_file,
        })
    }

    /// Whether PROXY headers from `peer` are believed.
    pub fn is_trusted_proxy(&self, peer: std::net::IpAddr) -> bool {
        self.trusted_proxies.iter().any(|c| c.contains(peer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uneven_cert_and_key_lists_are_refused() {
        let uneven = Options {
            cert: vec!["a.pem".into(), "b.pem".into()],
            key: vec!["a.key".into()],
            ..Default::default()
        };
        assert!(
            Config::resolve(uneven)
                .unwrap_err()
                .to_string()
                .contains("one key per certificate")
        );
    }
}
