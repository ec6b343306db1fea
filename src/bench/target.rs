//! The server under test: its address and name, the TLS client configuration every connection
//! shares, source-address spreading, and /proc sampling of the server process.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use rustls::ClientConfig;
use rustls::client::Resumption;
use rustls::crypto::aws_lc_rs::{self, cipher_suite, kx_group};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::timeout;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::report::{Failure, Meter, bar};
use super::{BenchArgs, Cipher, Kx};

/// Where and how to connect.
pub struct Target {
    /// The server.
    pub addr: SocketAddr,
    name: ServerName<'static>,
    connector: TlsConnector,
    sources: Vec<IpAddr>,
    next_source: AtomicUsize,
    /// Deadline of each connect, handshake, read and write.
    pub io_timeout: Duration,
}

/// A client connection.
pub type Conn = TlsStream<TcpStream>;

impl Target {
    /// Resolves the address and builds the client configuration.
    pub async fn new(args: &BenchArgs) -> anyhow::Result<Arc<Target>> {
        let addr = tokio::net::lookup_host(&args.endpoint.connect)
            .await
            .with_context(|| format!("cannot resolve {}", args.endpoint.connect))?
            .next()
            .with_context(|| format!("{} resolves to no address", args.endpoint.connect))?;
        let (_, name) = crate::tools::client::server_name(&args.endpoint)?;
        let sources: Vec<IpAddr> = args.source_ip.iter().flat_map(|r| r.addrs()).collect();
        if let Some(s) = sources.iter().find(|s| s.is_ipv4() != addr.is_ipv4()) {
            bail!("--source-ip {s} is not of the same address family as {addr}");
        }
        Ok(Arc::new(Target {
            addr,
            name,
            connector: TlsConnector::from(client_config(args)?),
            sources,
            next_source: AtomicUsize::new(0),
            io_timeout: args.io_timeout.0,
        }))
    }

    /// A TCP connection (TCP_NODELAY, next source address) and a verified TLS handshake.
    pub async fn connect(&self) -> Result<Conn, Failure> {
        let tcp = timeout(self.io_timeout, self.tcp())
            .await
            .map_err(|_| Failure::Timeout)?
            .map_err(Failure::Connect)?;
        let _ = tcp.set_nodelay(true);
        timeout(
            self.io_timeout,
            self.connector.connect(self.name.clone(), tcp),
        )
        .await
        .map_err(|_| Failure::Timeout)?
        .map_err(Failure::Handshake)
    }

    async fn tcp(&self) -> std::io::Result<TcpStream> {
        if self.sources.is_empty() {
            return TcpStream::connect(self.addr).await;
        }
        let i = self.next_source.fetch_add(1, Ordering::Relaxed) % self.sources.len();
        let socket = if self.addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.bind(SocketAddr::new(self.sources[i], 0))?;
        socket.connect(self.addr).await
    }

    /// Sends close_notify and waits for the server to close (its close_notify or EOF), so the
    /// server has finished with the connection when this returns.
    pub async fn close(&self, mut conn: Conn) -> Result<(), Failure> {
        timeout(self.io_timeout, async {
            conn.shutdown().await.map_err(Failure::Io)?;
            let mut sink = [0u8; 1024];
            loop {
                match conn.read(&mut sink).await {
                    Ok(0) => return Ok(()),
                    Ok(_) => {}
                    // A server that closes without close_notify has still closed.
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                    Err(e) => return Err(Failure::Io(e)),
                }
            }
        })
        .await
        .map_err(|_| Failure::Timeout)?
    }
}

/// TLS 1.3 with one key exchange group and one cipher suite, so that every server negotiates
/// the same handshake and record protection.
fn client_config(args: &BenchArgs) -> anyhow::Result<Arc<ClientConfig>> {
    let roots = crate::tools::client::trust_roots(args.endpoint.ca.as_deref())?;
    let mut provider = aws_lc_rs::default_provider();
    provider.kx_groups = vec![match args.kx {
        Kx::X25519 => kx_group::X25519,
        Kx::P256 => kx_group::SECP256R1,
        Kx::X25519mlkem768 => kx_group::X25519MLKEM768,
    }];
    provider.cipher_suites = vec![match args.cipher {
        Cipher::Aes128Gcm => cipher_suite::TLS13_AES_128_GCM_SHA256,
        Cipher::Aes256Gcm => cipher_suite::TLS13_AES_256_GCM_SHA384,
        Cipher::Chacha20 => cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
    }];
    let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    if !args.resume {
        config.resumption = Resumption::disabled();
    }
    Ok(Arc::new(config))
}

/// Linux's USER_HZ, the unit of utime and stime in /proc/PID/stat.
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// CPU seconds (user + system, all threads) the process has used so far.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / CLOCK_TICKS_PER_SECOND)
}

/// The machine's CPU time so far, in ticks: (stolen by the hypervisor, all).
pub fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    Some((*ticks.get(7)?, ticks.iter().take(8).sum()))
}

/// The share of the machine's CPU time stolen by the hypervisor between two samples, percent.
pub fn steal_percent(before: (u64, u64), after: (u64, u64)) -> Option<f64> {
    let total = after.1.checked_sub(before.1).filter(|&t| t > 0)?;
    Some(after.0.saturating_sub(before.0) as f64 * 100.0 / total as f64)
}

/// The process's resident memory in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Opens `n` connections, `ramp` handshakes at a time; failures are counted.
pub(super) async fn open_all(
    target: &Arc<Target>,
    meter: &Arc<Meter>,
    n: usize,
    ramp: usize,
) -> Vec<Conn> {
    let bar = bar(n as u64, "connecting");
    let gate = Arc::new(Semaphore::new(ramp.max(1)));
    let mut tasks = JoinSet::new();
    for _ in 0..n {
        let (target, gate) = (Arc::clone(target), Arc::clone(&gate));
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await;
            target.connect().await
        });
    }
    let mut open = Vec::with_capacity(n);
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(Ok(conn)) => open.push(conn),
            Ok(Err(f)) => meter.errors.add(&f),
            Err(_) => {}
        }
        bar.inc(1);
        bar.set_message(format!("errors {}", meter.errors.total()));
    }
    bar.finish_and_clear();
    open
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_its_own_cpu_and_memory() {
        let me = std::process::id();
        assert!(super::cpu_seconds(me).is_some());
        assert!(super::rss_kib(me).is_some_and(|k| k > 0));
        let (steal, total) = super::machine_ticks().expect("/proc/stat");
        assert!(steal <= total && total > 0);
    }

    #[test]
    fn steal_is_a_share_of_the_ticks_between_samples() {
        assert_eq!(super::steal_percent((10, 1000), (30, 1200)), Some(10.0));
        assert_eq!(super::steal_percent((10, 1000), (10, 1000)), None);
    }
}
