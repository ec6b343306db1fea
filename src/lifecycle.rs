//! Signals: SIGHUP reloads, the first SIGTERM/SIGINT starts a graceful shutdown, a second one
//! exits at once.

use std::sync::Arc;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tracing::{error, info, warn};

use crate::server::{LoadError, State};
use crate::systemd;

/// The signals the server acts on, registered before the listeners are announced so that a
/// SIGHUP sent right after start-up reloads instead of killing the process.
pub struct Signals {
    hup: Signal,
    term: Signal,
    int: Signal,
}

impl Signals {
    /// Registers the handlers (needs the runtime).
    pub fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            hup: signal(SignalKind::hangup())?,
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Handles signals for the life of the process.
    pub async fn handle(mut self, state: Arc<State>) {
        loop {
            tokio::select! {
                _ = self.hup.recv() => {
                    systemd::reloading();
                    // Reading files and parsing certificates blocks: off the runtime, so
                    // that with one worker no echo waits for a reload.
                    let loader = Arc::clone(&state);
                    let outcome = tokio::task::spawn_blocking(move || loader.reload())
                        .await
                        .unwrap_or_else(|e| Err(LoadError::Panicked(e.to_string())));
                    match outcome {
                        Ok(()) => systemd::reloaded(Ok(())),
                        Err(e) => {
                            error!(error = %e, "reload failed; the previous configuration stays in force");
                            systemd::reloaded(Err(&e));
                        }
                    }
                }
                _ = self.term.recv() => stop(&state, "SIGTERM"),
                _ = self.int.recv() => stop(&state, "SIGINT"),
            }
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
    systemd::stopping();
    state.shutdown.cancel();
}
