//! Bind, accept, gate, spawn, drain. Each listener has an accept loop that never ends on an
//! error: it backs off and goes on. The firewall decides before the connection task exists, so
//! a refused peer costs one accept and one close.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, info, info_span, warn};

use crate::allowlist::AllowFileError;
use crate::config::Config;
use crate::connection;
use crate::firewall::Firewall;
use crate::limits::PeerLimits;
use crate::metrics::Metrics;
use crate::tls::{self, TlsError, TlsMaterial};

/// Pending connections the kernel queues per listener.
const BACKLOG: u32 = 1024;
/// First and longest pause after a failed accept (EMFILE and the like).
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(2));

/// A start-up or reload failure.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// TLS material.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The allow-file.
    #[error(transparent)]
    Allow(#[from] AllowFileError),
    /// The reload task itself failed (a bug): nothing was swapped.
    #[error("reload task failed: {0}")]
    Panicked(String),
}

/// A listen address that cannot be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}{hint}")]
pub struct BindError {
    /// The address.
    pub addr: SocketAddr,
    /// Why.
    pub source: std::io::Error,
    hint: &'static str,
}

/// Everything the connection tasks share.
pub struct State {
    /// Start-up settings.
    pub config: Config,
    /// TLS material, swapped whole on reload.
    pub tls: ArcSwap<TlsMaterial>,
    /// The gate in front of TLS.
    pub firewall: Firewall,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Cancelled on SIGTERM/SIGINT.
    pub shutdown: CancellationToken,
    /// Every connection task, so shutdown can wait for them.
    pub tracker: TaskTracker,
    next_id: AtomicU64,
    seen_failures: Mutex<HashSet<&'static str>>,
}

impl State {
    /// Loads TLS material and the allowlist; any error stops start-up.
    pub fn new(config: Config) -> Result<Arc<State>, LoadError> {
        let material = tls::load(&config.tls)?;
        let allowlist = config.allowlist()?;
        let metrics = Arc::new(Metrics::new());
        metrics.set_cert_not_after(material.soonest_not_after());
        let peers = PeerLimits::new(
            config.max_conns_per_ip,
            config.rate_per_ip,
            config.rate_burst,
            config.max_conns,
        );
        let firewall = Firewall::new(
            allowlist,
            config.firewall_mode,
            config.max_conns,
            peers,
            Arc::clone(&metrics),
        );
        Ok(Arc::new(State {
            tls: ArcSwap::from_pointee(material),
            firewall,
            metrics,
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
            next_id: AtomicU64::new(1),
            seen_failures: Mutex::new(HashSet::new()),
            config,
        }))
    }

    /// Re-reads certificate, key, client CA and allow-file, validates them together and swaps
    /// them in. On any error nothing changes.
    pub fn reload(&self) -> Result<(), LoadError> {
        let result = tls::load(&self.config.tls)
            .map_err(LoadError::from)
            .and_then(|m| Ok((m, self.config.allowlist()?)));
        self.metrics.reloaded(result.is_ok());
        let (material, allowlist) = result?;
        self.metrics
            .set_cert_not_after(material.soonest_not_after());
        info!(
            cert_expires_in_days = material.leaf.seconds_left() / 86_400,
            allow_entries = allowlist.len(),
            "reload applied"
        );
        self.tls.store(Arc::new(material));
        self.firewall.replace_allowlist(allowlist);
        Ok(())
    }

    /// Whether this is the first handshake failure with `reason` (logged louder).
    pub fn first_failure(&self, reason: &'static str) -> bool {
        self.seen_failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(reason)
    }
}

/// Binds every address (SO_REUSEADDR, so a restart does not wait for TIME_WAIT).
pub fn bind(addrs: &[SocketAddr], reuse_port: bool) -> Result<Vec<TcpListener>, BindError> {
    addrs
        .iter()
        .map(|&addr| {
            let fail = |source: std::io::Error| {
                let hint = match source.kind() {
                    std::io::ErrorKind::AddrInUse => " (another process holds this port: find it with `ss -ltnp`, or choose another --listen)",
                    std::io::ErrorKind::PermissionDenied => " (ports below 1024 need CAP_NET_BIND_SERVICE or systemd socket activation)",
                    std::io::ErrorKind::AddrNotAvailable => " (no local interface has this address)",
                    _ => "",
                };
                BindError { addr, source, hint }
            };
            let socket = if addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }.map_err(fail)?;
            socket.set_reuseaddr(true).map_err(fail)?;
            if reuse_port {
                socket.set_reuseport(true).map_err(fail)?;
            }
            socket.bind(addr).map_err(fail)?;
            socket.listen(BACKLOG).map_err(fail)
        })
        .collect()
}

/// Serves on `listeners` until `state.shutdown` is cancelled, then waits for open connections
/// to finish, at most `--shutdown-timeout`. Returns whether every connection finished in time.
pub async fn serve(state: Arc<State>, listeners: Vec<TcpListener>) -> bool {
    let loops = TaskTracker::new();
    for listener in listeners {
        loops.spawn(accept_loop(Arc::clone(&state), listener));
    }
    loops.close();
    loops.wait().await;
    state.tracker.close();
    let open = state.tracker.len();
    info!(
        open,
        timeout_s = state.config.shutdown_timeout.as_secs_f64(),
        "stopped accepting; draining connections"
    );
    let drained = tokio::time::timeout(state.config.shutdown_timeout, state.tracker.wait())
        .await
        .is_ok();
    if !drained {
        warn!(
            left = state.tracker.len(),
            "shutdown timeout passed with connections still open"
        );
    }
    drained
}

async fn accept_loop(state: Arc<State>, listener: TcpListener) {
    let mut backoff = ACCEPT_BACKOFF.0;
    loop {
        let accepted = tokio::select! {
            () = state.shutdown.cancelled() => return,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = ACCEPT_BACKOFF.0;
                on_accept(&state, stream, peer);
            }
            Err(e) => {
                warn!(error = %e, pause_ms = backoff.as_millis() as u64, "accept failed; backing off");
                tokio::select! {
                    () = state.shutdown.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF.1);
            }
        }
    }
}

fn on_accept(state: &Arc<State>, stream: TcpStream, peer: SocketAddr) {
    state.metrics.accepted();
    let id = state.next_id.fetch_add(1, Ordering::Relaxed);
    let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
    if state.config.is_trusted_proxy(peer.ip()) {
        let Ok(seat) = state.firewall.seat(peer.ip()) else {
            return; // at --max-conns: closed before its header is read
        };
        let span = info_span!("conn", id, peer = tracing::field::Empty, via = %peer);
        state
            .tracker
            .spawn(connection::proxied(Arc::clone(state), stream, peer, seat).instrument(span));
        return;
    }
    let Ok(pass) = state.firewall.admit(peer.ip()) else {
        return; // dropping the stream closes it: no TLS byte was sent
    };
    let span = info_span!("conn", id, peer = %peer);
    state
        .tracker
        .spawn(connection::run(Arc::clone(state), stream, peer, pass).instrument(span));
}
