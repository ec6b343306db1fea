//! Signals: SIGHUP reloads, the first SIGTERM/SIGINT starts a graceful shutdown, a second one
//! exits at once.

use std::sync::Arc;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tracing::{error, info, warn};

use crate::server::State;
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
                    match state.reload() {
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
