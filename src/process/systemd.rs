//! The systemd side of the process: readiness, reload and stop notifications, the watchdog,
//! and listeners passed by socket activation. Outside systemd every call is a no-op.
//!
//! Notifications go through `sd-notify`; passed sockets are turned into listeners by
//! `listenfd`, so this crate needs no `unsafe` for the fd conversion.

use std::net::SocketAddr;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::net::TcpListener;
use tracing::{debug, info, warn};

use crate::server::{self, BindError};

/// The name a `.socket` unit gives (`FileDescriptorName=`) to the socket for `/metrics`.
pub const METRICS_FD_NAME: &str = "metrics";

/// Listening sockets systemd passed in (`LISTEN_FDS`), taken before any thread exists.
#[derive(Debug, Default)]
pub struct Passed {
    echo: Vec<(usize, std::net::TcpListener)>,
    metrics: Option<(usize, std::net::TcpListener)>,
    error: Option<ActivationError>,
}

/// A passed file descriptor that cannot serve.
#[derive(Debug, thiserror::Error)]
#[error(
    "socket activation: file descriptor {index} from systemd is not a listening TCP socket: {source} (use ListenStream= in the .socket unit)"
)]
pub struct ActivationError {
    /// Position in `LISTEN_FDS`, counted from 0 (fd 3).
    pub index: usize,
    pub source: std::io::Error,
}

impl Passed {
    /// Takes every socket systemd passed to this process. Call it first thing in `main`: it
    /// unsets `LISTEN_FDS`/`LISTEN_PID`, which is only sound while the process has one thread.
    pub fn take() -> Passed {
        // LISTEN_FDNAMES is left alone by listenfd; read it before anything else.
        let names: Vec<String> = std::env::var("LISTEN_FDNAMES")
            .map(|v| v.split(':').map(str::to_owned).collect())
            .unwrap_or_default();
        let mut fds = listenfd::ListenFd::from_env();
        let mut passed = Passed::default();
        for index in 0..fds.len() {
            match fds.take_tcp_listener(index) {
                Ok(Some(l)) if names.get(index).map(String::as_str) == Some(METRICS_FD_NAME) => {
                    passed.metrics = Some((index, l));
                }
                Ok(Some(l)) => passed.echo.push((index, l)),
                Ok(None) => {}
                Err(source) => {
                    passed.error = Some(ActivationError { index, source });
                    break;
                }
            }
        }
        passed
    }

    /// The echo listeners: those systemd passed, or else `addrs` bound here.
    pub fn echo_listeners(
        &mut self,
        addrs: &[SocketAddr],
        reuse_port: bool,
    ) -> Result<Vec<TcpListener>, ListenError> {
        if let Some(e) = self.error.take() {
            return Err(ListenError::Activation(e));
        }
        if self.echo.is_empty() {
            return Ok(server::bind(addrs, reuse_port)?);
        }
        info!(
            sockets = self.echo.len(),
            "socket activation: serving on the sockets systemd passed; --listen is not used"
        );
        std::mem::take(&mut self.echo)
            .into_iter()
            .map(|(index, l)| into_tokio(index, l))
            .collect()
    }

    /// The metrics listener: the one systemd passed under [`METRICS_FD_NAME`], or `addr` bound
    /// here, or none.
    pub fn metrics_listener(
        &mut self,
        addr: Option<SocketAddr>,
    ) -> Result<Option<TcpListener>, ListenError> {
        if let Some((index, l)) = self.metrics.take() {
            return into_tokio(index, l).map(Some);
        }
        let Some(addr) = addr else { return Ok(None) };
        Ok(server::bind(&[addr], false)?.pop())
    }
}

/// Why the server has nothing to listen on.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// Binding `--listen` or `--metrics-listen` failed.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// A passed socket is unusable.
    #[error(transparent)]
    Activation(#[from] ActivationError),
}

fn into_tokio(index: usize, l: std::net::TcpListener) -> Result<TcpListener, ListenError> {
    l.set_nonblocking(true)
        .and_then(|()| TcpListener::from_std(l))
        .map_err(|source| ListenError::Activation(ActivationError { index, source }))
}

/// Tells systemd the service is serving (`Type=notify` units become "active" now).
pub fn ready() {
    send(&[NotifyState::Ready]);
}

/// Tells systemd a reload has begun; [`reloaded`] ends it.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// Tells systemd a reload is over, with its outcome in the unit's status line.
pub fn reloaded(outcome: Result<(), &dyn std::fmt::Display>) {
    let status = match outcome {
        Ok(()) => "serving; last reload applied".to_string(),
        Err(e) => format!("serving; last reload FAILED, previous configuration kept: {e}"),
    };
    send(&[NotifyState::Ready, NotifyState::Status(&status)]);
}

/// Tells systemd the service is shutting down.
pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        warn!(error = %e, "cannot notify systemd (NOTIFY_SOCKET)");
    }
}

/// Pings systemd's watchdog from a task on the runtime, so a wedged event loop stops the
/// pings and systemd restarts the service. Stops pinging when dropped.
pub struct Watchdog(Option<tokio::task::JoinHandle<()>>);

impl Watchdog {
    /// Starts pinging every half `WatchdogSec=` if the unit sets it; otherwise does nothing.
    pub fn start() -> Watchdog {
        let Some(timeout) = sd_notify::watchdog_enabled() else {
            return Watchdog(None);
        };
        let every = (timeout / 2).max(Duration::from_millis(100));
        debug!(
            every_ms = every.as_millis() as u64,
            "systemd watchdog enabled"
        );
        Watchdog(Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                send(&[NotifyState::Watchdog]);
            }
        })))
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}
