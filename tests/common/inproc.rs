//! The server in-process: the real `Server::serve` on `127.0.0.1:0` in the test's own runtime,
//! with its own shutdown token. Its logs go to a buffer through a subscriber that is the
//! default on this thread only, so each test sees its own server's events; run it under
//! `#[tokio::test]` (current-thread), with `start_paused = true` where timeouts are the subject.
//! A test that blocks its thread (a child process's `output()`, a blocking client) runs with
//! `flavor = "multi_thread"` instead, so the server keeps running; its events are then not on
//! this thread, so it asserts on what the client sees and on `metric`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use clap::Parser;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::subscriber::DefaultGuard;

use tls_echo::config::{Config, Options};
use tls_echo::process::startup;
use tls_echo::server::{self, Server};

use super::DEADLINE;

#[derive(Parser)]
struct Argv {
    #[command(flatten)]
    options: Options,
}

/// Log lines written by the server under test, and a wake-up for each new one.
#[derive(Clone, Default)]
pub struct Events(Arc<(Mutex<Vec<String>>, Notify)>);

impl Events {
    /// Waits (without blocking the runtime) until some line satisfies `pred`; returns it.
    pub async fn wait_for(&self, pred: impl Fn(&str) -> bool) -> Option<String> {
        let wait = async {
            loop {
                let notified = self.0.1.notified();
                if let Some(l) = self.0.0.lock().unwrap().iter().find(|l| pred(l)) {
                    return l.clone();
                }
                notified.await;
            }
        };
        tokio::time::timeout(DEADLINE, wait).await.ok()
    }

    /// Waits until `n` lines contain `needle`.
    pub async fn wait_count(&self, needle: &str, n: usize) -> bool {
        let wait = async {
            loop {
                let notified = self.0.1.notified();
                if self.count(needle) >= n {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(DEADLINE, wait).await.is_ok()
    }

    /// How many lines so far contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.0
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Every line so far.
    pub fn text(&self) -> String {
        self.0.0.lock().unwrap().join("\n")
    }
}

impl std::io::Write for Events {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0
            .0
            .lock()
            .unwrap()
            .extend(text.lines().map(String::from));
        self.0.1.notify_waiters();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A server running in this test's runtime.
pub struct Served {
    pub addr: SocketAddr,
    pub addrs: Vec<SocketAddr>,
    pub server: Arc<Server>,
    pub log: Events,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<bool>,
    _logging: DefaultGuard,
}

impl Served {
    /// Serves with these command-line options (`--listen` defaults to `127.0.0.1:0`).
    pub async fn start(args: &[String]) -> Served {
        Self::try_start(args)
            .await
            .unwrap_or_else(|e| panic!("start-up failed: {e}"))
    }

    /// Same, returning the start-up error instead of panicking.
    pub async fn try_start(args: &[String]) -> Result<Served, String> {
        let log = Events::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(std::env::var("TEST_SERVER_LOG").unwrap_or_else(|_| "debug".into()))
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let logging = tracing::subscriber::set_default(subscriber);
        let argv = std::iter::once("tls-echo".to_string()).chain(args.iter().cloned());
        let options = Argv::try_parse_from(argv)
            .map_err(|e| e.to_string())?
            .options;
        let mut options = startup::options(options).map_err(|e| e.to_string())?;
        if options.listen.is_empty() {
            options.listen = vec!["127.0.0.1:0".parse().unwrap()];
        }
        let config = Config::resolve(options).map_err(|e| e.to_string())?;
        let listeners =
            server::bind(&config.listen, config.reuse_port).map_err(|e| e.to_string())?;
        let addrs: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
        let addr = addrs[0];
        let server = Arc::new(Server::new(config).map_err(|e| e.to_string())?);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(Arc::clone(&server).serve(listeners, shutdown.clone()));
        Ok(Served {
            addr,
            addrs,
            server,
            log,
            shutdown,
            task,
            _logging: logging,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Starts a graceful shutdown, as SIGTERM does.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Shuts down and waits: whether every connection drained in time.
    pub async fn stop(self) -> bool {
        self.shutdown.cancel();
        tokio::time::timeout(DEADLINE * 3, self.task)
            .await
            .expect("server did not stop")
            .expect("serve task")
    }

    /// The value of one metric line of the Prometheus text, e.g.
    /// `tls_echo_closed_total{reason="idle-timeout"}`; 0 when absent.
    pub fn metric(&self, series: &str) -> f64 {
        let text = self.server.metrics().render();
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or(0.0)
    }
}
