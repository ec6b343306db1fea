//! One admitted peer's life: TLS handshake under a deadline -> echo -> close_notify -> one
//! close event with duration, lines, bytes and reason. Both phases run on our own I/O engine
//! ([`crate::engine`]). It is handed what it needs (settings,
//! the TLS material in force, a stop signal) and knows nothing of the stages before it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tracing::{debug, info};

use crate::echo::{EchoLimits, Stop, Tally};
use crate::engine;
use crate::metrics::Metrics;
use crate::tls::TlsMaterial;

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
    mut stop: Pin<&mut impl Future<Output = Stop>>,
) {
    let started = Instant::now();
    // Small echoes must not wait for Nagle and delayed ACKs.
    let _ = stream.set_nodelay(true);
    let metrics = &settings.metrics;
    // The handshake is boxed, and its result matched inside this block, so that none of its
    // state is laid out in the task beside the echo's for the connection's whole life.
    let session = {
        let accept =
            tokio::time::timeout(settings.handshake_timeout, engine::accept(material, stream));
        let handshake = tokio::select! {
            _ = stop.as_mut() => return,
            r = Box::pin(accept) => r,
        };
        match handshake {
            Ok(Ok(session)) => session,
            Ok(Err(e)) => return handshake_failed(metrics, e.reason(), &e),
            Err(_) => {
                return handshake_failed(
                    metrics,
                    "timeout",
                    &"no handshake within --handshake-timeout",
                );
            }
        }
    };
    metrics.handshake_done(started.elapsed());
    let facts = session.facts();
    info!(
        version = facts.version,
        suite = facts.suite,
        group = facts.group,
        sni = facts.sni,
        alpn = facts
            .alpn
            .map(String::from_utf8_lossy)
            .unwrap_or_default()
            .as_ref(),
        "connected"
    );
    let mut tally = Tally::default();
    let ending = session.echo(&settings.echo, stop, &mut tally).await;
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
