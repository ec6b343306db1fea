//! Signals: SIGHUP reloads, the first SIGTERM/SIGINT starts a graceful shutdown, a second one
//! exits at once.

use std::sync::Arc;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::systemd;
use crate::server::{LoadError, Server};

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

    /// Handles signals for the life of the process: reloads `server`, cancels `shutdown`.
    pub async fn handle(mut self, server: Arc<Server>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = self.hup.recv() => {
                    systemd::reloading();
                    // Reading files and parsing certificates blocks: off the runtime, so
                    // that with one worker no echo waits for a reload.
                    let loader = Arc::clone(&server);
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
                _ = self.term.recv() => stop(&shutdown, "SIGTERM"),
                _ = self.int.recv() => stop(&shutdown, "SIGINT"),
            }
        }
    }
}

fn stop(shutdown: &CancellationToken, signal: &str) {
    if shutdown.is_cancelled() {
        warn!(signal, "second signal: exiting now");
        std::process::exit(1);
    }
    info!(
        signal,
        "shutting down: no new connections; echoing what has arrived, then close_notify"
    );
    systemd::stopping();
    shutdown.cancel();
}
