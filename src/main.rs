//! The `tls-echo` binary: parse, set up logging, dispatch, map errors to exit codes
//! (2 for anything that stops start-up).

use std::process::ExitCode;
use std::sync::Arc;

use clap::{CommandFactory, Parser};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use tls_echo::cli::{Cli, Command, ManArgs};
use tls_echo::config::{Config, LogFormat, Options};
use tls_echo::process::systemd::{self, Passed};
use tls_echo::process::{check, scrape, selftest, signals, startup};
use tls_echo::server::Server;
use tls_echo::tools::{certs, client};

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
            init_logging(LogFormat::Text, "warn");
            if check::run(*args) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Some(Command::GenCerts(args)) => exit_on(certs::gen_certs(args)),
        Some(Command::Client(args)) => {
            init_logging(LogFormat::Text, "warn");
            exit_on(runtime.block_on(client::run(args)))
        }
        #[cfg(feature = "bench")]
        Some(Command::Bench(args)) => {
            init_logging(LogFormat::Text, "warn");
            exit_on(runtime.block_on(tls_echo::bench::run(args)))
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

async fn serve(flags: Options, mut passed: Passed, nofile: std::io::Result<u64>) -> ExitCode {
    let options = match startup::options(flags) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(options.log_format.unwrap_or_default(), "info");
    let config = or_exit!(Config::resolve(options));
    or_exit!(startup::dev_material(&config));
    startup::descriptor_budget(nofile, config.max_conns);
    for id in &config.tls.identities {
        or_exit!(startup::key_permissions(&id.key));
    }
    let signals = or_exit!(signals::Signals::install());
    let server = Arc::new(or_exit!(Server::new(config)));
    let cfg = server.config();
    let listeners = or_exit!(passed.echo_listeners(&cfg.listen, cfg.reuse_port));
    let metrics_listener = or_exit!(passed.metrics_listener(cfg.metrics_listen));
    startup::announce(&server, &listeners);
    let live = server.live();
    or_exit!(selftest::run(&live.tls, &cfg.echo, cfg.tls.client_ca.is_some()).await);
    if let Some(path) = &cfg.ready_file {
        or_exit!(startup::write_ready_file(path, &listeners));
    }
    let shutdown = CancellationToken::new();
    let scrapes = metrics_listener.map(|l| {
        tokio::spawn(scrape::serve(
            l,
            Arc::clone(server.metrics()),
            shutdown.clone(),
        ))
    });
    let signals = tokio::spawn(signals.handle(Arc::clone(&server), shutdown.clone()));
    let _watchdog = systemd::Watchdog::start();
    systemd::ready();
    let drained = Arc::clone(&server).serve(listeners, shutdown).await;
    if let Some(scrapes) = scrapes {
        let _ = scrapes.await;
    }
    signals.abort();
    info!(drained, "stopped");
    ExitCode::SUCCESS
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
