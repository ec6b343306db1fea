//! Signals: SIGHUP reloads, the first SIGTERM/SIGINT starts a graceful shutdown, a second one
//! exits at once.

use std::sync::Arc;

use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info, warn};

use crate::server::State;

/// Handles signals for the life of the process.
pub async fn handle_signals(state: Arc<State>) -> std::io::Result<()> {
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            _ = hup.recv() => match state.reload() {
                Ok(()) => {}
                Err(e) => error!(error = %e, "reload failed; the previous configuration stays in force"),
            },
            _ = term.recv() => stop(&state, "SIGTERM"),
            _ = int.recv() => stop(&state, "SIGINT"),
        }
    }
}

fn stop(state: &State, signal: &str) {
    if state.shutdown.is_cancelled() {
        warn!(signal, "second signal: exiting now");
        std::process::exit(1);
    }
    info!(
        signal,
        "shutting down: no new connections; echoing what has arrived, then close_notify"
    );
    state.shutdown.cancel();
}
