//! The gate between `accept()` and TLS: may this address connect now? The global connection cap
//! is taken at accept ([`Firewall::seat`]); then the allowlist and the per-peer limits decide
//! ([`Firewall::admit`]), all before a single TLS byte is read or written. Refusals are counted
//! and logged at warn, rate-limited so that a flood cannot flood the logs.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub mod allowlist;
mod cidr;
pub mod limits;

use crate::metrics::Metrics;
use allowlist::Allowlist;
use limits::{LimitExceeded, PeerLimits, PeerSlot};

/// Refusal log lines written per second at most; the rest are summarised.
const LOG_BURST_PER_SECOND: u32 = 10;

/// Whether the firewall refuses or only reports what it would refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum FirewallMode {
    /// Close connections the policy refuses.
    #[default]
    Enforce,
    /// Admit everyone, but log and count what enforcement would refuse.
    Audit,
}

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
    _seat: Seat,
    _slot: Option<PeerSlot>,
}

/// A place under the global connection cap, taken at accept; dropping it frees the place.
#[derive(Debug)]
pub struct Seat {
    _permit: OwnedSemaphorePermit,
}

/// The firewall layer. The allowlist in force is passed in with each decision: it is part of
/// what a reload swaps (see `server::Live`).
pub struct Firewall {
    mode: FirewallMode,
    conns: Arc<Semaphore>,
    peers: Arc<PeerLimits>,
    metrics: Arc<Metrics>,
    log: RefusalLog,
}

impl Firewall {
    /// A firewall enforcing (or auditing) the policy and the limits.
    pub fn new(
        mode: FirewallMode,
        max_conns: usize,
        peers: PeerLimits,
        metrics: Arc<Metrics>,
    ) -> Firewall {
        Firewall {
            mode,
            conns: Arc::new(Semaphore::new(max_conns)),
            peers: Arc::new(peers),
            metrics,
            log: RefusalLog::default(),
        }
    }

    /// Takes a place under `--max-conns` for a connection just accepted from `ip` (for a
    /// trusted proxy's, before its PROXY header names the client): the cap holds from accept
    /// onwards, in audit mode too (it protects the process, not the policy).
    pub fn seat(&self, ip: IpAddr) -> Result<Seat, Refusal> {
        Arc::clone(&self.conns)
            .try_acquire_owned()
            .map(|permit| Seat { _permit: permit })
            .map_err(|_| self.refuse(Refusal::MaxConns, ip.to_canonical()))
    }

    /// Decides on a seated connection from `ip`: the allowlist, then the per-peer limits. In
    /// audit mode it only counts and logs what enforcement would refuse.
    pub fn admit(&self, allow: &Allowlist, ip: IpAddr, seat: Seat) -> Result<Pass, Refusal> {
        let ip = ip.to_canonical();
        let enforce = self.mode == FirewallMode::Enforce;
        if !allow.allows(ip) {
            self.check(Refusal::NotAllowed, ip, enforce)?;
        }
        let (slot, exceeded) = self.peers.enter(ip, enforce);
        if let Some(e) = exceeded {
            self.check(e.into(), ip, enforce)?;
        }
        Ok(Pass {
            _seat: seat,
            _slot: slot,
        })
    }

    /// Whether an open connection from `ip` may stay after a reload put `allow` in force (in
    /// audit mode always, with a log line when enforcement would close it).
    pub fn keeps(&self, allow: &Allowlist, ip: IpAddr) -> bool {
        if allow.allows(ip) {
            return true;
        }
        if self.mode == FirewallMode::Enforce {
            return false;
        }
        tracing::warn!(peer = %ip, "audit: enforcement would close this connection after the reload");
        true
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
