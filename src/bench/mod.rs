//! `tls-echo bench`: a load generator for any TLS echo server, ours or not.
//!
//! Every mode opens its connections first, then runs a warm-up, then a measured window of
//! `--duration`; only the window counts. With `--server-pid` the server's CPU time (utime +
//! stime from /proc) is sampled at the window's edges, so each rate is also given per server
//! CPU-second, and its resident memory is sampled for the idle mode. Errors are counted by kind
//! and shown, never dropped.

mod idle;
mod modes;
mod payload;
mod report;
mod target;

use std::net::IpAddr;
use std::str::FromStr;

use clap::{Args, ValueEnum};

use crate::config::Seconds;

/// `tls-echo bench` options.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// What to measure.
    #[arg(value_enum)]
    pub mode: BenchMode,
    /// The server (its address is resolved once).
    #[command(flatten)]
    pub endpoint: crate::tools::client::Endpoint,
    /// Concurrent connections (idle: connections to open and hold) [default: handshake 32,
    /// pingpong 16, bulk 4, idle 1000].
    #[arg(long, value_name = "N")]
    pub conns: Option<usize>,
    /// Length of the measured window (idle: how long to hold).
    #[arg(long, default_value = "10s", value_name = "DURATION")]
    pub duration: Seconds,
    /// Unmeasured run before the window, so caches, JITs and allocators settle.
    #[arg(long, default_value = "1s", value_name = "DURATION")]
    pub warmup: Seconds,
    /// Bytes per message, newline included (pingpong), or per write (bulk) [default: pingpong
    /// 64, bulk 16384].
    #[arg(long, value_name = "BYTES")]
    pub size: Option<usize>,
    /// Source addresses to spread connections over, as ADDR or FIRST-LAST ranges,
    /// comma-separated (one address has ~28,000 ephemeral ports; use 127.0.0.x on loopback).
    #[arg(long, value_name = "RANGE", value_delimiter = ',')]
    pub source_ip: Vec<SourceRange>,
    /// Key exchange group to offer (one, so every server negotiates the same).
    #[arg(long, value_enum, default_value_t = Kx::X25519)]
    pub kx: Kx,
    /// TLS 1.3 cipher suite to offer (one, so every server negotiates the same).
    #[arg(long, value_enum, default_value_t = Cipher::Aes128Gcm)]
    pub cipher: Cipher,
    /// Pingpong: total messages per second over all connections, each connection paced to its
    /// share, so that every server is measured at the same load [default: as fast as echoes
    /// come back].
    #[arg(long, value_name = "MSGS_PER_S")]
    pub rate: Option<f64>,
    /// Handshake mode: resume with session tickets instead of full handshakes.
    #[arg(long)]
    pub resume: bool,
    /// Idle mode: each connection echoes one line before it goes quiet, so the memory sampled
    /// is that of used connections, not only of fresh ones.
    #[arg(long)]
    pub echo_first: bool,
    /// Server process to sample CPU time and resident memory from (/proc/PID).
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,
    /// Handshakes in flight at once while opening connections.
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub ramp: usize,
    /// Deadline for each connect, handshake, read and write.
    #[arg(long, default_value = "10s", value_name = "DURATION")]
    pub io_timeout: Seconds,
    /// Print one JSON result line on stdout (the table goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Label for the result (e.g. the server's name), carried into the JSON line.
    #[arg(long, value_name = "TEXT")]
    pub label: Option<String>,
}

/// The measurements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchMode {
    /// New TLS handshakes per second (connect, handshake, close_notify, wait for the close).
    Handshake,
    /// Request/echo round trips of one line per connection.
    Pingpong,
    /// Stream and read back concurrently; every byte verified.
    Bulk,
    /// Open and hold established connections; check each still echoes at the end.
    Idle,
}

impl BenchMode {
    fn name(self) -> &'static str {
        match self {
            BenchMode::Handshake => "handshake",
            BenchMode::Pingpong => "pingpong",
            BenchMode::Bulk => "bulk",
            BenchMode::Idle => "idle",
        }
    }
}

/// Key exchange groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kx {
    /// X25519 (every peer supports it).
    X25519,
    /// P-256.
    P256,
    /// The post-quantum hybrid X25519MLKEM768.
    X25519mlkem768,
}

/// TLS 1.3 cipher suites.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Cipher {
    /// TLS13_AES_128_GCM_SHA256.
    Aes128Gcm,
    /// TLS13_AES_256_GCM_SHA384.
    Aes256Gcm,
    /// TLS13_CHACHA20_POLY1305_SHA256.
    Chacha20,
}

/// An inclusive range of source addresses, `A` or `A-B` (same family).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceRange {
    first: IpAddr,
    last: IpAddr,
}

/// Most source addresses one run may spread over.
const MAX_SOURCES: u128 = 65_536;

impl SourceRange {
    /// Every address in the range.
    fn addrs(self) -> Vec<IpAddr> {
        let (lo, hi) = (key(self.first), key(self.last));
        (lo..=hi)
            .map(|k| match self.first {
                IpAddr::V4(_) => IpAddr::from((k as u32).to_be_bytes()),
                IpAddr::V6(_) => IpAddr::from(k.to_be_bytes()),
            })
            .collect()
    }
}

fn key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

impl FromStr for SourceRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parse = |t: &str| {
            t.trim().parse::<IpAddr>().map_err(|_| {
                format!("'{t}' is not an IP address (write e.g. 127.0.0.1-127.0.0.40)")
            })
        };
        let (first, last) = match s.split_once('-') {
            Some((a, b)) => (parse(a)?, parse(b)?),
            None => (parse(s)?, parse(s)?),
        };
        if first.is_ipv4() != last.is_ipv4() {
            return Err(format!("'{s}': both ends must be the same address family"));
        }
        if key(first) > key(last) {
            return Err(format!("'{s}': the first address is above the last"));
        }
        if key(last) - key(first) >= MAX_SOURCES {
            return Err(format!("'{s}': at most {MAX_SOURCES} addresses per range"));
        }
        Ok(SourceRange { first, last })
    }
}

/// Runs a benchmark and prints its result.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let target = target::Target::new(&args).await?;
    let result = modes::run(&args, target).await?;
    report::print(&args, &result);
    if result.ok() {
        Ok(())
    } else {
        anyhow::bail!("{} errors (see the table)", result.meter.errors.total())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_ranges_parse_and_expand() {
        let r: SourceRange = "127.0.0.1-127.0.0.3".parse().unwrap();
        assert_eq!(r.addrs().len(), 3);
        assert_eq!(r.addrs()[2], "127.0.0.3".parse::<IpAddr>().unwrap());
        let one: SourceRange = "::1".parse().unwrap();
        assert_eq!(one.addrs(), vec!["::1".parse::<IpAddr>().unwrap()]);
        assert!("127.0.0.3-127.0.0.1".parse::<SourceRange>().is_err());
        assert!("127.0.0.1-::1".parse::<SourceRange>().is_err());
        assert!("localhost".parse::<SourceRange>().is_err());
    }
}
