//! Counters of what the server did, kept in a prometheus-client registry so that the optional
//! `--metrics-listen` endpoint can serve them in the Prometheus text format.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::echo::{Ending, Tally};

type Labeled = Family<[(&'static str, &'static str); 1], Counter>;

/// Every metric the server exports.
pub struct Metrics {
    registry: Registry,
    accepted: Counter,
    refused: Labeled,
    audited: Labeled,
    handshake_failures: Labeled,
    handshake_seconds: Histogram,
    closed: Labeled,
    protocol_errors: Labeled,
    lines: Counter,
    bytes: Counter,
    reloads: Labeled,
    active: Gauge,
    cert_expiry: Gauge,
    cert_not_after: AtomicI64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric at zero.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("tls_echo");
        let m = Metrics {
            accepted: Counter::default(),
            refused: Labeled::default(),
            audited: Labeled::default(),
            handshake_failures: Labeled::default(),
            handshake_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            closed: Labeled::default(),
            protocol_errors: Labeled::default(),
            lines: Counter::default(),
            bytes: Counter::default(),
            reloads: Labeled::default(),
            active: Gauge::default(),
            cert_expiry: Gauge::default(),
            cert_not_after: AtomicI64::new(0),
            registry: Registry::default(),
        };
        registry.register(
            "connections_accepted",
            "TCP connections accepted",
            m.accepted.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections closed before TLS, by reason",
            m.refused.clone(),
        );
        registry.register(
            "connections_audit_refusals",
            "Connections admitted in audit mode that enforcement would have refused, by reason",
            m.audited.clone(),
        );
        registry.register(
            "handshake_failures",
            "Failed TLS handshakes, by reason",
            m.handshake_failures.clone(),
        );
        registry.register(
            "handshake_duration_seconds",
            "Successful TLS handshake duration",
            m.handshake_seconds.clone(),
        );
        registry.register(
            "connections_closed",
            "Connections closed after the handshake, by reason",
            m.closed.clone(),
        );
        registry.register(
            "protocol_errors",
            "Line protocol violations, by code",
            m.protocol_errors.clone(),
        );
        registry.register("lines_echoed", "Lines echoed", m.lines.clone());
        registry.register("bytes_echoed", "Bytes echoed", m.bytes.clone());
        registry.register(
            "reloads",
            "Configuration reloads, by outcome",
            m.reloads.clone(),
        );
        registry.register(
            "connections_active",
            "Connections open now",
            m.active.clone(),
        );
        registry.register(
            "certificate_expiry_seconds",
            "Seconds until the serving certificate expires",
            m.cert_expiry.clone(),
        );
        Metrics { registry, ..m }
    }

    /// A TCP connection was accepted.
    pub fn accepted(&self) {
        self.accepted.inc();
    }

    /// A connection was closed before TLS.
    pub fn refused(&self, reason: &'static str) {
        self.refused.get_or_create(&[("reason", reason)]).inc();
    }

    /// Audit mode admitted a connection enforcement would have refused.
    pub fn audited(&self, reason: &'static str) {
        self.audited.get_or_create(&[("reason", reason)]).inc();
    }

    /// A handshake failed; returns whether it is the first failure with this reason.
    pub fn handshake_failed(&self, reason: &'static str) -> bool {
        self.handshake_failures
            .get_or_create(&[("reason", reason)])
            .inc()
            == 0
    }

    /// A handshake succeeded after `took`; the connection is now active.
    pub fn handshake_done(&self, took: Duration) {
        self.handshake_seconds.observe(took.as_secs_f64());
        self.active.inc();
    }

    /// An established connection ended.
    pub fn closed(&self, ending: Ending, tally: &Tally) {
        self.active.dec();
        self.closed
            .get_or_create(&[("reason", ending.label())])
            .inc();
        if let Ending::Violation(v) = ending {
            self.protocol_errors
                .get_or_create(&[("code", v.code())])
                .inc();
        }
        self.lines.inc_by(tally.lines);
        self.bytes.inc_by(tally.bytes);
    }

    /// A reload finished.
    pub fn reloaded(&self, ok: bool) {
        let outcome = if ok { "success" } else { "failure" };
        self.reloads.get_or_create(&[("outcome", outcome)]).inc();
    }

    /// The serving certificate is valid until `not_after` (Unix seconds).
    pub fn set_cert_not_after(&self, not_after: i64) {
        self.cert_not_after.store(not_after, Ordering::Relaxed);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        // Computed at scrape time so the figure never goes stale between reloads.
        self.cert_expiry
            .set(self.cert_not_after.load(Ordering::Relaxed) - unix_now());
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
