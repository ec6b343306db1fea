//! The `tls-echo` binary: parse, set up logging, dispatch, map errors to exit codes
//! (2 for anything that stops start-up).

use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use tracing::{error, info};

use tls_echo::check;
use tls_echo::cli::{Cli, Command, GenCertsArgs, LogFormat, ManArgs};
use tls_echo::config::{self, Config};
use tls_echo::systemd::{self, Passed};
use tls_echo::{bench, certs, client, lifecycle, scrape, selftest, server, startup};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Taken while the process has one thread: this unsets LISTEN_FDS.
    let passed = match cli.command {
        None => Passed::take(),
        Some(_) => Passed::default(),
    };
    // Each connection holds a descriptor: the soft limit (often 1024) would cap the server
    // long before --max-conns, and the hard limit is what the administrator allows.
    let nofile = rlimit::increase_nofile_limit(u64::MAX);
    // One worker per CPU the process may run on (tokio reads the affinity mask). The
    // single-threaded scheduler at one CPU measured no better (BENCHMARKS.md).
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
        None => runtime.block_on(serve(cli.serve, passed, nofile)),
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
        Some(Command::Completions(args)) => {
            let mut cmd = Cli::command();
            clap_complete::generate(args.shell, &mut cmd, "tls-echo", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Some(Command::Man(args)) => exit_on(man_pages(args)),
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

async fn serve(
    args: tls_echo::cli::ServeArgs,
    mut passed: Passed,
    nofile: std::io::Result<u64>,
) -> ExitCode {
    let args = match config::with_file(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(args.log_format.unwrap_or_default(), "info");
    let config = or_exit!(Config::resolve(args));
    startup::descriptor_budget(nofile, config.max_conns);
    for id in &config.tls.identities {
        or_exit!(startup::key_permissions(&id.key));
    }
    let signals = or_exit!(lifecycle::Signals::install());
    let state = or_exit!(server::State::new(config));
    let listeners = or_exit!(passed.echo_listeners(&state.config.listen, state.config.reuse_port));
    let metrics_listener = or_exit!(passed.metrics_listener(state.config.metrics_listen));
    startup::announce(&state, &listeners);
    or_exit!(selftest::run(&state).await);
    let scrapes = metrics_listener.map(|l| scrape::spawn(l, &state));
    let signals = tokio::spawn(signals.handle(std::sync::Arc::clone(&state)));
    let _watchdog = systemd::Watchdog::start();
    systemd::ready();
    let drained = server::serve(std::sync::Arc::clone(&state), listeners).await;
    if let Some(scrapes) = scrapes {
        let _ = scrapes.await;
    }
    signals.abort();
    info!(drained, "stopped");
    ExitCode::SUCCESS
}

fn gen_certs(a: GenCertsArgs) -> anyhow::Result<()> {
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
    let request = certs::Request {
        names,
        ips,
        client: a.client,
        days: a.days,
    };
    for path in certs::write_set(&a.out, &request, a.force)? {
        println!("wrote {}", path.display());
    }
    let d = a.out.display();
    println!("\nServe:    tls-echo --cert {d}/server.pem --key {d}/server.key");
    println!("Connect:  tls-echo client --connect 127.0.0.1:4433 --ca {d}/ca.pem");
    println!(
        "          openssl s_client -connect 127.0.0.1:4433 -CAfile {d}/ca.pem -verify_return_error -brief"
    );
    if request.client.is_some() {
        println!(
            "mTLS:     tls-echo --cert {d}/server.pem --key {d}/server.key --client-ca {d}/ca.pem"
        );
        println!(
            "          tls-echo client --ca {d}/ca.pem --cert {d}/client.pem --key {d}/client.key"
        );
    }
    Ok(())
}

fn man_pages(a: ManArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    match a.out {
        None => clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?,
        Some(dir) => clap_mangen::generate_to(Cli::command(), &dir)
            .with_context(|| format!("cannot write man pages into {}", dir.display()))?,
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
