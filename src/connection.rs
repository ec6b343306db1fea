//! One peer's life: (PROXY header) -> handshake under a deadline -> echo -> close_notify ->
//! one close event with duration, lines, bytes and reason.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::TcpStream;
use tracing::{Span, debug, info};

use crate::echo::{Stop, Tally};
use crate::engine;
use crate::firewall::{Pass, Refusal, Seat};
use crate::proxy::{self, Origin};
use crate::server::State;

/// A connection from a trusted proxy: reads the PROXY header, then applies the firewall to the
/// client it names (a LOCAL header, e.g. a health check, stands for the proxy itself).
pub async fn proxied(state: Arc<State>, mut stream: TcpStream, proxy_addr: SocketAddr, seat: Seat) {
    let header =
        tokio::time::timeout(state.config.handshake_timeout, proxy::read(&mut stream)).await;
    let client = match header {
        Ok(Ok(Origin::Client(addr))) => SocketAddr::new(addr.ip().to_canonical(), addr.port()),
        Ok(Ok(Origin::Local)) => {
            debug!("PROXY LOCAL header: the proxy's own connection (a health check)");
            proxy_addr
        }
        Ok(Err(e)) => {
            state.firewall.refuse(Refusal::ProxyHeader, proxy_addr.ip());
            debug!(error = %e, "PROXY header refused");
            return;
        }
        Err(_) => {
            state.firewall.refuse(Refusal::ProxyHeader, proxy_addr.ip());
            debug!("no PROXY header within the handshake timeout");
            return;
        }
    };
    Span::current().record("peer", tracing::field::display(client));
    if let Ok(pass) = state.firewall.admit_seated(client.ip(), Some(seat)) {
        run(state, stream, client, pass).await;
    }
}

/// An admitted connection: TLS, then echo until one side ends it.
pub async fn run(state: Arc<State>, stream: TcpStream, peer: SocketAddr, pass: Pass) {
    let _pass = pass;
    let started = Instant::now();
    // Small echoes must not wait for Nagle and delayed ACKs.
    let _ = stream.set_nodelay(true);
    let material = state.tls.load_full();
    let handshake = tokio::select! {
        () = state.shutdown.cancelled() => return,
        r = tokio::time::timeout(state.config.handshake_timeout, engine::accept(&material, stream)) => r,
    };
    let session = match handshake {
        Ok(Ok(session)) => session,
        Ok(Err(e)) => return handshake_failed(&state, e.reason(), &e),
        Err(_) => {
            return handshake_failed(
                &state,
                "timeout",
                &"no handshake within --handshake-timeout",
            );
        }
    };
    state.metrics.handshake_done(started.elapsed());
    {
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
    }
    let lifetime = state.config.max_conn_lifetime;
    let revoked = state.firewall.revoked(peer.ip());
    let shutdown = state.shutdown.clone();
    let stop = async move {
        tokio::select! {
            () = shutdown.cancelled() => Stop::Shutdown,
            () = revoked => Stop::Revoked,
            // Boxed: only with --max-conn-lifetime does a connection pay for the timer.
            () = async { match lifetime {
                Some(d) => Box::pin(tokio::time::sleep(d)).await,
                None => std::future::pending().await,
            } } => Stop::Lifetime,
        }
    };
    tokio::pin!(stop);
    let mut tally = Tally::default();
    let ending = session.echo(&state.config.echo, stop, &mut tally).await;
    state.metrics.closed(ending, &tally);
    info!(
        duration_ms = started.elapsed().as_millis() as u64,
        lines = tally.lines,
        bytes = tally.bytes,
        linger_ms = tally.lingered.as_millis() as u64,
        reason = ending.label(),
        "closed"
    );
}

fn handshake_failed(state: &State, reason: &'static str, detail: &dyn std::fmt::Display) {
    state.metrics.handshake_failed(reason);
    if state.first_failure(reason) {
        info!(reason, %detail, "TLS handshake failed (first of its kind; later ones log at debug)");
    } else {
        debug!(reason, %detail, "TLS handshake failed");
    }
}
