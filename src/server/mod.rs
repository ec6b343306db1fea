//! Bind, accept, spawn, drain. The accept loop only accepts, takes the connection's seat under
//! `--max-conns` and spawns; each connection's task then runs the stages in order:
//! (PROXY header, trusted proxies only) -> admit -> [`connection::run`]. Accept errors are not
//! fatal: the loop backs off and goes on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, Span, debug, info, info_span, warn};

use crate::config::Config;
use crate::connection::{self, Settings};
use crate::echo::Stop;
use crate::firewall::allowlist::{self, AllowFileError, Allowlist};
use crate::firewall::limits::PeerLimits;
use crate::firewall::{Firewall, Refusal, Seat};
use crate::metrics::Metrics;
use crate::proxy::{self, Origin};
use crate::tls::{self, TlsError, TlsMaterial};

mod listen;

pub use listen::{BindError, bind};

/// First and longest pause after a failed accept (EMFILE and the like).
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(2));

/// A start-up or reload failure.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// TLS material.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The allow-file.
    #[error(transparent)]
    Allow(#[from] AllowFileError),
    /// The reload task itself failed (a bug): nothing was swapped.
    #[error("reload task failed: {0}")]
    Panicked(String),
}

/// What a reload replaces, read from files as one value and swapped in whole: new connections
/// and the revocation check never see certificates of one reload with the allowlist of another.
#[derive(Debug)]
pub struct Live {
    /// Certificates, keys and TLS policy.
    pub tls: TlsMaterial,
    /// Who may connect.
    pub allow: Allowlist,
    /// Cancelled when a reload puts the next value in force (open connections then check their
    /// peer against the new allowlist) and when the server stops; a child of `Server::stopping`.
    replaced: CancellationToken,
}

impl Live {
    /// Reads and checks every file `config` names. Blocking: call it off the runtime.
    pub fn load(config: &Config) -> Result<Live, LoadError> {
        Ok(Live {
            tls: tls::load(&config.tls)?,
            allow: allowlist::load(&config.allow, config.allow_file.as_deref())?,
            replaced: CancellationToken::new(),
        })
    }

    fn under(self, stopping: &CancellationToken) -> Arc<Live> {
        Arc::new(Live {
            replaced: stopping.child_token(),
            ..self
        })
    }
}

/// The server: its settings, the firewall, the reloadable material and its open connections.
pub struct Server {
    config: Config,
    live: watch::Sender<Arc<Live>>,
    firewall: Firewall,
    settings: Settings,
    metrics: Arc<Metrics>,
    tracker: TaskTracker,
    next_id: AtomicU64,
    /// Cancelled once the accept loops have stopped: every open connection drains and closes.
    stopping: CancellationToken,
}

impl Server {
    /// Loads TLS material and the allowlist; any error stops start-up.
    pub fn new(config: Config) -> Result<Server, LoadError> {
        let live = Live::load(&config)?;
        let stopping = CancellationToken::new();
        let metrics = Arc::new(Metrics::new());
        metrics.set_cert_not_after(live.tls.soonest_not_after());
        let peers = PeerLimits::new(
            config.max_conns_per_ip,
            config.rate_per_ip,
            config.rate_burst,
            config.max_conns,
        );
        let firewall = Firewall::new(
            config.firewall_mode,
            config.max_conns,
            peers,
            Arc::clone(&metrics),
        );
        let settings = Settings {
            echo: config.echo.clone(),
            handshake_timeout: config.handshake_timeout,
            metrics: Arc::clone(&metrics),
        };
        Ok(Server {
            live: watch::Sender::new(live.under(&stopping)),
            firewall,
            settings,
            metrics,
            tracker: TaskTracker::new(),
            next_id: AtomicU64::new(1),
            stopping,
            config,
        })
    }

    /// The settings it runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The material in force.
    pub fn live(&self) -> Arc<Live> {
        Arc::clone(&self.live.borrow())
    }

    /// Its counters.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Re-reads certificates, keys, CRLs, OCSP responses and the allow-file, and swaps them in
    /// as one value. On any error nothing changes. Blocking: call it off the runtime.
    pub fn reload(&self) -> Result<(), LoadError> {
        let result = Live::load(&self.config);
        self.metrics.reloaded(result.is_ok());
        let live = result?;
        self.metrics
            .set_cert_not_after(live.tls.soonest_not_after());
        let (days_left, allow_entries) = (live.tls.leaf.seconds_left() / 86_400, live.allow.len());
        // Swapped before it is logged: a client that acts on the log line gets the new material.
        self.live
            .send_replace(live.under(&self.stopping))
            .replaced
            .cancel();
        info!(
            cert_expires_in_days = days_left,
            allow_entries, "reload applied"
        );
        Ok(())
    }

    /// Serves on `listeners` until `shutdown` is cancelled, then waits for open connections to
    /// finish, at most `--shutdown-timeout`. Returns whether every connection finished in time.
    pub async fn serve(
        self: Arc<Self>,
        listeners: Vec<TcpListener>,
        shutdown: CancellationToken,
    ) -> bool {
        let loops = TaskTracker::new();
        for listener in listeners {
            loops.spawn(Arc::clone(&self).accept_loop(listener, shutdown.clone()));
        }
        loops.close();
        loops.wait().await;
        self.stopping.cancel();
        self.tracker.close();
        let timeout = self.config.shutdown_timeout;
        info!(
            open = self.tracker.len(),
            timeout_s = timeout.as_secs_f64(),
            "stopped accepting; draining connections"
        );
        let drained = tokio::time::timeout(timeout, self.tracker.wait())
            .await
            .is_ok();
        if !drained {
            warn!(
                left = self.tracker.len(),
                "shutdown timeout passed with connections still open"
            );
        }
        drained
    }

    async fn accept_loop(self: Arc<Self>, listener: TcpListener, shutdown: CancellationToken) {
        let mut backoff = ACCEPT_BACKOFF.0;
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => return,
                r = listener.accept() => r,
            };
            match accepted {
                Ok((stream, peer)) => {
                    backoff = ACCEPT_BACKOFF.0;
                    self.spawn(stream, peer);
                }
                Err(e) => {
                    warn!(error = %e, pause_ms = backoff.as_millis() as u64, "accept failed; backing off");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF.1);
                }
            }
        }
    }

    /// Every accepted connection counts against `--max-conns` from here on; past it, it is
    /// closed at once (no TLS byte sent).
    fn spawn(self: &Arc<Self>, stream: TcpStream, peer: SocketAddr) {
        self.metrics.accepted();
        let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
        let Ok(seat) = self.firewall.seat(peer.ip()) else {
            return;
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let proxied = self.config.is_trusted_proxy(peer.ip());
        let span = if proxied {
            info_span!("conn", id, peer = tracing::field::Empty, via = %peer)
        } else {
            info_span!("conn", id, peer = %peer)
        };
        let task = Arc::clone(self).connection(stream, peer, proxied, seat);
        self.tracker.spawn(task.instrument(span));
    }

    /// One connection's stages, in order; each hands the next what it needs.
    async fn connection(
        self: Arc<Self>,
        mut stream: TcpStream,
        peer: SocketAddr,
        proxied: bool,
        seat: Seat,
    ) {
        let client = if proxied {
            // Boxed: the header buffer (1 KiB) would otherwise be part of every connection
            // task for its whole life, proxied or not.
            match Box::pin(self.origin(&mut stream, peer)).await {
                Some(client) => client,
                None => return,
            }
        } else {
            peer
        };
        let live = self.live();
        let Ok(pass) = self.firewall.admit(&live.allow, client.ip(), seat) else {
            return; // dropping the stream closes it: no TLS byte was sent
        };
        // The stop signal is built in the call, not kept in a local: a local would be laid out
        // in this task beside the copy that `run` holds.
        let stop = std::pin::pin!(self.stop(client, &live));
        connection::run(&self.settings, &live.tls, stream, stop).await;
        drop(pass);
    }

    /// Why an admitted connection must end early: shutdown, revocation by a reload, or
    /// `--max-conn-lifetime`, whichever comes first.
    async fn stop(&self, client: SocketAddr, admitted: &Live) -> Stop {
        let lifetime = self.config.max_conn_lifetime;
        tokio::select! {
            why = self.replaced(client, admitted) => why,
            // Boxed: only with --max-conn-lifetime does a connection pay for the timer.
            () = async { match lifetime {
                Some(d) => Box::pin(tokio::time::sleep(d)).await,
                None => std::future::pending().await,
            } } => Stop::Lifetime,
        }
    }

    /// Waits on the token of the material the connection was admitted under (so no reload is
    /// missed), then on each newer one: resolves at shutdown, or when a reload takes `peer` off
    /// the allowlist (never in audit mode). One token for both keeps the connection task small.
    async fn replaced(&self, peer: SocketAddr, admitted: &Live) -> Stop {
        admitted.replaced.cancelled().await;
        loop {
            if self.stopping.is_cancelled() {
                return Stop::Shutdown;
            }
            let live = self.live();
            if !self.firewall.keeps(&live.allow, peer.ip()) {
                return Stop::Revoked;
            }
            live.replaced.cancelled().await;
        }
    }

    /// Reads a trusted proxy's PROXY header: the client it names (a LOCAL header, e.g. a
    /// health check, stands for the proxy itself). `None`: refused and counted.
    async fn origin(&self, stream: &mut TcpStream, proxy_addr: SocketAddr) -> Option<SocketAddr> {
        let header = tokio::time::timeout(self.config.handshake_timeout, proxy::read(stream)).await;
        let client = match header {
            Ok(Ok(Origin::Client(addr))) => SocketAddr::new(addr.ip().to_canonical(), addr.port()),
            Ok(Ok(Origin::Local)) => {
                debug!("PROXY LOCAL header: the proxy's own connection (a health check)");
                proxy_addr
            }
            Ok(Err(e)) => {
                self.firewall.refuse(Refusal::ProxyHeader, proxy_addr.ip());
                debug!(error = %e, "PROXY header refused");
                return None;
            }
            Err(_) => {
                self.firewall.refuse(Refusal::ProxyHeader, proxy_addr.ip());
                debug!("no PROXY header within the handshake timeout");
                return None;
            }
        };
        Span::current().record("peer", tracing::field::display(client));
        Some(client)
    }
}
