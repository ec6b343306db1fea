//! What the server reads, checks and says before it serves: the `--config` file, the `--dev`
//! material, the key's file mode, the descriptor budget, certificate expiry, the allowlist in
//! force, the listening addresses and, with `--dev`, how to talk to it.

use std::path::Path;

use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::config::defaults::DEV_DIR;
use crate::config::{Config, ConfigError, Options};
use crate::server::Server;
use crate::tls::certinfo::EXPIRY_WARNING_DAYS;
use crate::tls::{KeyMode, key_mode};
use crate::tools::certs;

/// The options as the server takes them: flags and environment over the `--config` file.
pub fn options(flags: Options) -> Result<Options, ConfigError> {
    let Some(path) = flags.config.clone() else {
        return Ok(flags);
    };
    let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
        path: path.clone(),
        source,
    })?;
    Ok(flags.over(Options::from_toml(&text, &path)?))
}

/// With `--dev` and no `--cert`, creates the throwaway CA and certificate the settings name,
/// on first use.
pub fn dev_material(config: &Config) -> Result<(), String> {
    if !config.dev || config.tls.identities[0].cert != Path::new(DEV_DIR).join("server.pem") {
        return Ok(());
    }
    certs::ensure_dev(Path::new(DEV_DIR))
        .map(|_| ())
        .map_err(|e| format!("--dev: cannot create development certificates in {DEV_DIR}: {e}"))
}

/// Refuses a private key every user can read (as ssh does); warns when the group can.
pub fn key_permissions(key: &Path) -> Result<(), String> {
    match key_mode(key).map_err(|e| format!("cannot read key {}: {e}", key.display()))? {
        KeyMode::Private => Ok(()),
        KeyMode::GroupReadable(m) => {
            warn!(key = %key.display(), mode = format!("{m:o}"), "private key is group-readable; chmod 600 it");
            Ok(())
        }
        KeyMode::WorldReadable(m) => Err(format!(
            "private key {} is readable by every user (mode {m:o}); refusing to start: chmod 600 {}",
            key.display(),
            key.display()
        )),
    }
}

/// Warns when the open-file limit (raised to the hard limit at start) cannot hold
/// `max_conns` connections: accepts would fail with EMFILE first.
pub fn descriptor_budget(nofile: std::io::Result<u64>, max_conns: usize) {
    match nofile {
        Ok(limit) if limit < max_conns as u64 + 64 => warn!(
            limit,
            max_conns,
            "the open-file limit is below --max-conns: accepts will fail with EMFILE first (raise LimitNOFILE or lower --max-conns)"
        ),
        Ok(_) => {}
        Err(e) => warn!(error = %e, "cannot raise the open-file limit"),
    }
}

/// Logs what is about to be served, and prints the `--dev` hint.
pub fn announce(server: &Server, listeners: &[TcpListener]) {
    let cfg = server.config();
    let live = server.live();
    for served in &live.tls.certs {
        let (cert, leaf) = (served.identity.cert.display(), &served.info);
        if leaf.seconds_left() <= 0 {
            warn!(%cert, subject = %leaf.subject, "certificate has EXPIRED: clients will refuse it");
        } else if leaf.seconds_left() < EXPIRY_WARNING_DAYS * 86_400 {
            warn!(%cert, days_left = leaf.seconds_left() / 86_400, "certificate expires soon");
        }
    }
    let allow = &live.allow;
    if allow.is_loopback_default() {
        info!("no --allow/--allow-file: only loopback peers (127.0.0.0/8, ::1) are admitted");
    } else {
        info!(entries = allow.len(), mode = ?cfg.firewall_mode, "allowlist loaded");
    }
    let addrs: Vec<_> = listeners
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .collect();
    for addr in &addrs {
        info!(%addr, mode = cfg.echo.mode.as_str(), "listening");
    }
    if cfg.dev {
        let port = addrs.first().map_or(4433, |a| a.port());
        eprintln!(
            "\nDevelopment server ready. Talk to it, verifying against the throwaway CA, with:\n\n  \
             openssl s_client -connect 127.0.0.1:{port} -CAfile {DEV_DIR}/ca.pem -verify_return_error -verify_ip 127.0.0.1 -brief\n"
        );
    }
}

/// Writes the bound addresses to `--ready-file`, through a temporary file and a rename.
pub fn write_ready_file(path: &Path, listeners: &[TcpListener]) -> Result<(), String> {
    let text: String = listeners
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .map(|a| format!("{a}\n"))
        .collect();
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| format!("--ready-file {}: cannot write it: {e}", path.display()))
}
