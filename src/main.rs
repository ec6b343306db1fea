//! The `tls-echo` binary: parse, set up logging, dispatch, map errors to exit codes
//! (2 for anything that stops start-up).

use std::process::ExitCode;

use clap::Parser;
use tracing::{error, info, warn};

use tls_echo::check::{self, KeyMode};
use tls_echo::cli::{Cli, Command, GenCertsArgs, LogFormat};
use tls_echo::config::{self, Config};
use tls_echo::{bench, certs, client, lifecycle, server};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        None => runtime.block_on(serve(cli.serve)),
        Some(Command::Check(args)) => {
            let args = *args;
            init_logging(LogFormat::Text, "warn");
            if check::run(args) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Some(Command::GenCerts(args)) => exit_on(gen_certs(args)),
        Some(Command::Client(args)) => {
            init_logging(LogFormat::Text, "warn");
            exit_on(runtime.block_on(client::run(args)))
        }
        Some(Command::Bench(args)) => {
            init_logging(LogFormat::Text, "warn");
            exit_on(runtime.block_on(bench::run(args)))
        }
    }
}

fn exit_on(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Start-up failures print one precise line and exit 2.
macro_rules! or_exit {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => {
                error!("{e}");
                return ExitCode::from(2);
            }
        }
    };
}

async fn serve(args: tls_echo::cli::ServeArgs) -> ExitCode {
    let args = match config::with_file(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(args.log_format.unwrap_or_default(), "info");
    let config = or_exit!(Config::resolve(args));
    match or_exit!(
        check::key_mode(&config.tls.key)
            .map_err(|e| format!("cannot read key {}: {e}", config.tls.key.display()))
    ) {
        KeyMode::Private => {}
        KeyMode::GroupReadable(m) => {
            warn!(key = %config.tls.key.display(), mode = format!("{m:o}"), "private key is group-readable; chmod 600 it")
        }
        KeyMode::WorldReadable(m) => {
            error!(
                "private key {} is readable by every user (mode {m:o}); refusing to start: chmod 600 {}",
                config.tls.key.display(),
                config.tls.key.display()
            );
            return ExitCode::from(2);
        }
    }
    let state = or_exit!(server::State::new(config));
    let cfg = &state.config;
    let leaf = &state.tls.load().leaf;
    if leaf.seconds_left() <= 0 {
        warn!(cert = %cfg.tls.cert.display(), subject = %leaf.subject, "certificate has EXPIRED: clients will refuse it");
    } else if leaf.seconds_left() < check::EXPIRY_WARNING_DAYS * 86_400 {
        warn!(
            days_left = leaf.seconds_left() / 86_400,
            "certificate expires soon"
        );
    }
    let allow = state.firewall.allowlist();
    if allow.is_loopback_default() {
        info!("no --allow/--allow-file: only loopback peers (127.0.0.0/8, ::1) are admitted");
    } else {
        info!(entries = allow.len(), mode = ?cfg.firewall_mode, "allowlist loaded");
    }
    let listeners = or_exit!(server::bind(&cfg.listen, cfg.reuse_port));
    for l in &listeners {
        if let Ok(addr) = l.local_addr() {
            info!(%addr, mode = ?cfg.echo.mode, "listening");
        }
    }
    if cfg.dev {
        let port = listeners
            .first()
            .and_then(|l| l.local_addr().ok())
            .map_or(4433, |a| a.port());
        let ca = std::path::Path::new(config::defaults::DEV_DIR).join("ca.pem");
        eprintln!(
            "\nDevelopment server ready. Talk to it, verifying against the throwaway CA, with:\n\n  \
             openssl s_client -connect 127.0.0.1:{port} -CAfile {} -verify_return_error -verify_ip 127.0.0.1 -brief\n",
            ca.display()
        );
    }
    let signals = tokio::spawn(lifecycle::handle_signals(std::sync::Arc::clone(&state)));
    let drained = server::serve(std::sync::Arc::clone(&state), listeners).await;
    signals.abort();
    info!(drained, "stopped");
    ExitCode::SUCCESS
}

fn gen_certs(a: GenCertsArgs) -> anyhow::Result<()> {
    use certs::{Ca, Layout, Validity};
    let (default_names, default_ips) = certs::loopback_names();
    let names = if a.names.is_empty() && a.ips.is_empty() {
        default_names
    } else {
        a.names
    };
    let ips = if a.ips.is_empty() && names == ["localhost"] {
        default_ips
    } else {
        a.ips
    };
    let ca = Ca::new(
        "tls-echo CA (generated by tls-echo gen-certs)",
        Validity::days(a.days.max(3650)),
    )?;
    let server = ca.server(&names, &ips, Validity::days(a.days))?;
    let layout = Layout::in_dir(&a.out);
    std::fs::create_dir_all(&a.out)?;
    let mut files = vec![
        (layout.ca.clone(), ca.pair.cert_pem.clone(), 0o644),
        (layout.ca_key.clone(), ca.pair.key_pem.clone(), 0o600),
        (layout.cert.clone(), server.cert_pem, 0o644),
        (layout.key.clone(), server.key_pem, 0o600),
    ];
    if let Some(name) = &a.client {
        let client = ca.client(name, Validity::days(a.days))?;
        files.push((a.out.join("client.pem"), client.cert_pem, 0o644));
        files.push((a.out.join("client.key"), client.key_pem, 0o600));
    }
    if !a.force {
        if let Some((p, ..)) = files.iter().find(|(p, ..)| p.exists()) {
            anyhow::bail!(
                "{} exists; pass --force to overwrite the whole set",
                p.display()
            );
        }
    }
    for (path, text, mode) in &files {
        certs::write_new(path, text, *mode, a.force)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        println!("wrote {}", path.display());
    }
    let d = a.out.display();
    println!("\nServe:    tls-echo --cert {d}/server.pem --key {d}/server.key");
    println!("Connect:  tls-echo client --connect 127.0.0.1:4433 --ca {d}/ca.pem");
    println!(
        "          openssl s_client -connect 127.0.0.1:4433 -CAfile {d}/ca.pem -verify_return_error -brief"
    );
    if a.client.is_some() {
        println!(
            "mTLS:     tls-echo --cert {d}/server.pem --key {d}/server.key --client-ca {d}/ca.pem"
        );
        println!(
            "          tls-echo client --ca {d}/ca.pem --cert {d}/client.pem --key {d}/client.key"
        );
    }
    Ok(())
}

fn init_logging(format: LogFormat, default: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}
