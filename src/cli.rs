//! The command line: the serving options ([`crate::config::Options`], also the TOML schema) and
//! the helper tools, each of whose arguments live beside the tool.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::Options;
use crate::process::check::CheckArgs;
use crate::tools::{certs::GenCertsArgs, client::ClientArgs};

/// A TLS echo server with an allowlist firewall in front of the handshake.
#[derive(Debug, Parser)]
#[command(
    name = "tls-echo",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// A helper tool; without one, tls-echo serves.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Serving options.
    #[command(flatten)]
    pub serve: Options,
}

/// Helper tools beside the server.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a throwaway CA, a server certificate and optionally a client certificate.
    GenCerts(GenCertsArgs),
    /// Verify a server, send stdin line by line and print what comes back.
    Client(ClientArgs),
    /// Validate the configuration without serving; optionally ask whether a peer is admitted.
    Check(Box<CheckArgs>),
    /// Load-test any TLS echo server: handshakes, ping-pong, bulk, idle connections.
    #[cfg(feature = "bench")]
    Bench(crate::bench::BenchArgs),
    /// Print the shell completion script, generated from these definitions.
    Completions(CompletionsArgs),
    /// Print the man page (roff), generated from these definitions.
    #[command(hide = true)]
    Man(ManArgs),
}

/// `tls-echo man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write tls-echo.1 and one page per subcommand (tls-echo-check.1, ...) into this directory
    /// instead of printing tls-echo.1.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// `tls-echo completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for, e.g. bash (/usr/share/bash-completion/completions/tls-echo),
    /// zsh (a `_tls-echo` file on $fpath) or fish (~/.config/fish/completions/tls-echo.fish).
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
