//! The gate between `accept()` and TLS: may this address connect now? It applies the allowlist,
//! the global connection cap and the per-peer limits, in that order, before a single TLS byte
//! is read or written. Refusals are counted and logged at warn, rate-limited so that a flood
//! cannot flood the logs.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::allowlist::Allowlist;
use crate::cli::FirewallMode;
use crate::limits::{LimitExceeded, PeerLimits, PeerSlot};
use crate::metrics::Metrics;

/// Refusal log lines written per second at most; the rest are summarised.
const LOG_BURST_PER_SECOND: u32 = 10;

/// Why a connection was closed before TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The address is not on the allowlist.
    NotAllowed,
    /// `--max-conns` connections are open.
    MaxConns,
    /// `--max-conns-per-ip` connections from this peer are open.
    PerIpConns,
    /// The peer opens connections faster than `--rate-per-ip`.
    Rate,
    /// A trusted proxy sent no valid PROXY header.
    ProxyHeader,
}

impl Refusal {
    /// A stable label for logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::NotAllowed => "not-allowed",
            Refusal::MaxConns => "max-conns",
            Refusal::PerIpConns => "max-conns-per-ip",
            Refusal::Rate => "rate-per-ip",
            Refusal::ProxyHeader => "proxy-header",
        }
    }
}

impl From<LimitExceeded> for Refusal {
    fn from(e: LimitExceeded) -> Refusal {
        match e {
            LimitExceeded::Connections => Refusal::PerIpConns,
            LimitExceeded::Rate => Refusal::Rate,
        }
    }
}

/// An admitted connection's share of the limits; dropping it frees them.
#[derive(Debug)]
pub struct Pass {
    _permit: OwnedSemaphorePermit,
    _slot: Option<PeerSlot>,
}

/// A place under the global connection cap, taken at accept; dropping it frees the place.
#[derive(Debug)]
pub struct Seat(OwnedSemaphorePermit);

/// The firewall layer.
pub struct Firewall {
    allow: watch::Sender<Arc<Allowlist>>,
    mode: FirewallMode,
    conns: Arc<Semaphore>,
    peers: Arc<PeerLimits>,
    metrics: Arc<Metrics>,
    log: RefusalLog,
}

impl Firewall {
    /// A firewall enforcing (or auditing) `allow` and the limits.
    pub fn new(
        allow: Allowlist,
        mode: FirewallMode,
        max_conns: usize,
        peers: PeerLimits,
        metrics: Arc<Metrics>,
    ) -> Firewall {
        Firewall {
            allow: watch::Sender::new(Arc::new(allow)),
            mode,
            conns: Arc::new(Semaphore::new(max_conns)),
            peers: Arc::new(peers),
            metrics,
            log: RefusalLog::default(),
        }
    }

    /// Decides on a new connection from `ip`. In audit mode only the global cap refuses: it
    /// protects the process, not the policy.
    pub fn admit(&self, ip: IpAddr) -> Result<Pass, Refusal> {
        self.admit_seated(ip, None)
    }

    /// Takes a place under `--max-conns` for a connection whose client is not known yet (one
    /// from a trusted proxy, before its PROXY header): the cap holds from accept onwards.
    pub fn seat(&self, ip: IpAddr) -> Result<Seat, Refusal> {
        Arc::clone(&self.conns)
            .try_acquire_owned()
            .map(Seat)
            .map_err(|_| self.refuse(Refusal::MaxConns, ip.to_canonical()))
    }

    /// [`Firewall::admit`] for a connection that may already hold its place under the cap.
    pub fn admit_seated(&self, ip: IpAddr, seat: Option<Seat>) -> Result<Pass, Refusal> {
        let ip = ip.to_canonical();
        let enforce = self.mode == FirewallMode::Enforce;
        if !self.allow.borrow().allows(ip) {
            self.check(Refusal::NotAllowed, ip, enforce)?;
        }
        let permit = match seat {
            Some(Seat(permit)) => permit,
            None => Arc::clone(&self.conns)
                .try_acquire_owned()
                .map_err(|_| self.refuse(Refusal::MaxConns, ip))?,
        };
        let (slot, exceeded) = self.peers.enter(ip, enforce);
        if let Some(e) = exceeded {
            self.check(e.into(), ip, enforce)?;
        }
        Ok(Pass {
            _permit: permit,
            _slot: slot,
        })
    }

    /// Counts and logs a refusal; the caller closes the connection.
    pub fn refuse(&self, why: Refusal, ip: IpAddr) -> Refusal {
        self.metrics.refused(why.label());
        self.log.warn(
            || tracing::warn!(peer = %ip, reason = why.label(), "connection refused before TLS"),
        );
        why
    }

    /// Refuses when enforcing; in audit mode counts and logs what enforcement would do.
    fn check(&self, why: Refusal, ip: IpAddr, enforce: bool) -> Result<(), Refusal> {
        if enforce {
            return Err(self.refuse(why, ip));
        }
        self.metrics.audited(why.label());
        self.log.warn(|| tracing::warn!(peer = %ip, reason = why.label(), "audit: enforcement would refuse this connection"));
        Ok(())
    }

    /// The allowlist in force.
    pub fn allowlist(&self) -> Arc<Allowlist> {
        Arc::clone(&self.allow.borrow())
    }

    /// Puts a new allowlist in force for new connections and for the revocation watchers.
    pub fn replace_allowlist(&self, list: Allowlist) {
        self.allow.send_replace(Arc::new(list));
    }

    /// Resolves when a reload removes `ip` from the allowlist (never in audit mode, where it
    /// only logs).
    pub fn revoked(&self, ip: IpAddr) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.allow.subscribe();
        let enforce = self.mode == FirewallMode::Enforce;
        async move {
            loop {
                if rx.changed().await.is_err() {
                    return std::future::pending().await;
                }
                if !rx.borrow_and_update().allows(ip) {
                    if enforce {
                        return;
                    }
                    tracing::warn!(peer = %ip, "audit: enforcement would close this connection after the reload");
                }
            }
        }
    }
}

/// Lets through a burst of log lines per second and summarises the rest.
#[derive(Default)]
struct RefusalLog {
    window: Mutex<Option<(Instant, u32, u64)>>,
}

impl RefusalLog {
    fn warn(&self, log: impl FnOnce()) {
        let now = Instant::now();
        let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        let (start, logged, suppressed) = w.get_or_insert((now, 0, 0));
        if now.duration_since(*start) >= Duration::from_secs(1) {
            if *suppressed > 0 {
                tracing::warn!(
                    suppressed = *suppressed,
                    "refusal log lines suppressed in the last window"
                );
            }
            (*start, *logged, *suppressed) = (now, 0, 0);
        }
        if *logged < LOG_BURST_PER_SECOND {
            *logged += 1;
            drop(w);
            log();
        } else {
            *suppressed += 1;
        }
    }
}
