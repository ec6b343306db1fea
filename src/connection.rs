//! One admitted peer's life: TLS handshake under a deadline -> echo -> close_notify -> one
//! close event with duration, lines, bytes and reason. It is handed what it needs (settings,
//! the TLS material in force, a stop signal) and knows nothing of the stages before it.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tracing::{debug, info};

use crate::echo::{self, EchoLimits, Stop, Tally};
use crate::metrics::Metrics;
use crate::tls::{self, TlsMaterial, handshake_failure_reason};

/// What every connection is given when the server is built.
pub(crate) struct Settings {
    pub(crate) echo: EchoLimits,
    pub(crate) handshake_timeout: Duration,
    pub(crate) metrics: Arc<Metrics>,
}

/// Runs the connection until the client leaves, breaks a rule or `stop` fires (shutdown,
/// revocation, lifetime: whichever comes first, from before the handshake on).
pub(crate) async fn run(
    settings: &Settings,
    material: &TlsMaterial,
    stream: TcpStream,
    stop: impl Future<Output = Stop>,
) {
    let started = Instant::now();
    // Small echoes must not wait for Nagle and delayed ACKs.
    let _ = stream.set_nodelay(true);
    tokio::pin!(stop);
    let handshake = tokio::select! {
        _ = stop.as_mut() => return,
        r = tokio::time::timeout(settings.handshake_timeout, tls::accept(material, stream)) => r,
    };
    let metrics = &settings.metrics;
    let mut tls = match handshake {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => return handshake_failed(metrics, handshake_failure_reason(&e), &e),
        Err(_) => {
            return handshake_failed(
                metrics,
                "timeout",
                &"no handshake within --handshake-timeout",
            );
        }
    };
    metrics.handshake_done(started.elapsed());
    {
        let (_, session) = tls.get_ref();
        info!(
            version = session
                .protocol_version()
                .and_then(|v| v.as_str())
                .unwrap_or("?"),
            suite = session
                .negotiated_cipher_suite()
                .and_then(|s| s.suite().as_str())
                .unwrap_or("?"),
            group = session
                .negotiated_key_exchange_group()
                .and_then(|g| g.name().as_str())
                .unwrap_or("?"),
            sni = session.server_name().unwrap_or(""),
            alpn = session
                .alpn_protocol()
                .map(String::from_utf8_lossy)
                .unwrap_or_default()
                .as_ref(),
            "connected"
        );
    }
    let mut tally = Tally::default();
    let ending = echo::run(&mut tls, &settings.echo, stop, &mut tally).await;
    metrics.closed(ending, &tally);
    info!(
        duration_ms = started.elapsed().as_millis() as u64,
        lines = tally.lines,
        bytes = tally.bytes,
        linger_ms = tally.lingered.as_millis() as u64,
        reason = ending.label(),
        "closed"
    );
}

fn handshake_failed(metrics: &Metrics, reason: &'static str, detail: &dyn std::fmt::Display) {
    if metrics.handshake_failed(reason) {
        info!(reason, %detail, "TLS handshake failed (first of its kind; later ones log at debug)");
    } else {
        debug!(reason, %detail, "TLS handshake failed");
    }
}
