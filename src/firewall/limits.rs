//! Per-peer limits: open connections and a token bucket of new connections per second. A peer
//! is an IPv4 address or an IPv6 /64 (one host usually owns a whole /64). The table is bounded:
//! when full, peers with no open connection are forgotten first.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// Peers tracked at most (entries with open connections are never evicted, and there are at
/// most `--max-conns` of those).
pub const MAX_TRACKED_PEERS: usize = 65_536;

/// The unit the limits apply to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerKey {
    /// One IPv4 address.
    V4(u32),
    /// One IPv6 /64 (the upper 64 bits).
    V6(u64),
}

impl PeerKey {
    /// The key of an address (IPv4-mapped IPv6 counts as IPv4).
    pub fn of(ip: IpAddr) -> PeerKey {
        match ip.to_canonical() {
            IpAddr::V4(a) => PeerKey::V4(a.into()),
            IpAddr::V6(a) => PeerKey::V6((u128::from(a) >> 64) as u64),
        }
    }
}

/// Which per-peer limit a connection is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitExceeded {
    /// `--max-conns-per-ip`.
    Connections,
    /// `--rate-per-ip` / `--rate-burst`.
    Rate,
}

#[derive(Debug)]
struct PeerState {
    active: u32,
    tokens: f64,
    stamp: Instant,
}

/// The per-peer table.
#[derive(Debug)]
pub struct PeerLimits {
    max_active: u32,
    rate: f64,
    burst: f64,
    cap: usize,
    peers: Mutex<HashMap<PeerKey, PeerState>>,
}

/// One open connection counted against its peer; dropping it releases the count.
#[derive(Debug)]
pub struct PeerSlot {
    limits: Arc<PeerLimits>,
    key: PeerKey,
}

impl PeerLimits {
    /// Limits of `max_active` open connections and `rate`/s new ones with `burst` extra.
    pub fn new(max_active: u32, rate: f64, burst: u32, max_conns: usize) -> PeerLimits {
        PeerLimits {
            max_active,
            rate,
            burst: f64::from(burst.max(1)),
            cap: MAX_TRACKED_PEERS.max(max_conns.saturating_mul(2)),
            peers: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a new connection from `ip`. When a limit is exceeded the connection is counted
    /// anyway if `enforce` is false (audit mode), and the excess is reported either way.
    pub fn enter(
        self: &Arc<Self>,
        ip: IpAddr,
        enforce: bool,
    ) -> (Option<PeerSlot>, Option<LimitExceeded>) {
        let key = PeerKey::of(ip);
        let now = Instant::now();
        let mut peers = self.table();
        if peers.len() >= self.cap && !peers.contains_key(&key) {
            self.evict(&mut peers, now);
        }
        let st = peers.entry(key).or_insert(PeerState {
            active: 0,
            tokens: self.burst,
            stamp: now,
        });
        st.tokens =
            (st.tokens + now.duration_since(st.stamp).as_secs_f64() * self.rate).min(self.burst);
        st.stamp = now;
        let exceeded = if st.active >= self.max_active {
            Some(LimitExceeded::Connections)
        } else if st.tokens < 1.0 {
            Some(LimitExceeded::Rate)
        } else {
            None
        };
        if exceeded.is_some() && enforce {
            return (None, exceeded);
        }
        st.tokens = (st.tokens - 1.0).max(0.0);
        st.active += 1;
        let slot = PeerSlot {
            limits: Arc::clone(self),
            key,
        };
        (Some(slot), exceeded)
    }

    /// Peers tracked now.
    pub fn tracked(&self) -> usize {
        self.table().len()
    }

    fn evict(&self, peers: &mut HashMap<PeerKey, PeerState>, now: Instant) {
        let (rate, burst) = (self.rate, self.burst);
        peers.retain(|_, st| {
            st.active > 0 || st.tokens + now.duration_since(st.stamp).as_secs_f64() * rate < burst
        });
        if peers.len() >= self.cap {
            peers.retain(|_, st| st.active > 0);
        }
    }

    fn table(&self) -> MutexGuard<'_, HashMap<PeerKey, PeerState>> {
        // A panic while holding the lock cannot leave the counts inconsistent beyond one peer.
        self.peers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut peers = self.limits.table();
        if let Some(st) = peers.get_mut(&self.key) {
            st.active = st.active.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv6_groups_by_64_and_mapped_is_ipv4() {
        assert_eq!(
            PeerKey::of(ip("2001:db8::1")),
            PeerKey::of(ip("2001:db8::ffff:1"))
        );
        assert_ne!(
            PeerKey::of(ip("2001:db8::1")),
            PeerKey::of(ip("2001:db8:0:1::1"))
        );
        assert_eq!(
            PeerKey::of(ip("::ffff:10.0.0.1")),
            PeerKey::of(ip("10.0.0.1"))
        );
    }

    #[test]
    fn caps_open_connections_and_releases_on_drop() {
        let l = Arc::new(PeerLimits::new(2, 1000.0, 1000, 10));
        let a = l.enter(ip("10.0.0.1"), true).0.unwrap();
        let _b = l.enter(ip("10.0.0.1"), true).0.unwrap();
        let (slot, exceeded) = l.enter(ip("10.0.0.1"), true);
        assert!(slot.is_none() && exceeded == Some(LimitExceeded::Connections));
        assert!(
            l.enter(ip("10.0.0.2"), true).0.is_some(),
            "other peers unaffected"
        );
        drop(a);
        assert!(l.enter(ip("10.0.0.1"), true).0.is_some());
    }

    #[test]
    fn rate_limits_with_burst_and_audit_admits() {
        let l = Arc::new(PeerLimits::new(100, 0.0001, 3, 10));
        let held: Vec<_> = (0..3)
            .map(|_| l.enter(ip("10.0.0.1"), true).0.unwrap())
            .collect();
        assert_eq!(l.enter(ip("10.0.0.1"), true).1, Some(LimitExceeded::Rate));
        let (slot, exceeded) = l.enter(ip("10.0.0.1"), false);
        assert!(slot.is_some() && exceeded == Some(LimitExceeded::Rate));
        drop(held);
    }

    #[test]
    fn table_stays_bounded() {
        let l = Arc::new(PeerLimits::new(10, 1e9, 1, 10));
        for i in 0..(MAX_TRACKED_PEERS as u32 + 1000) {
            drop(l.enter(IpAddr::from((0x0a00_0000u32 + i).to_be_bytes()), true));
        }
        assert!(l.tracked() <= MAX_TRACKED_PEERS);
    }
}
