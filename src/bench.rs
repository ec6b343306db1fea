//! `tls-echo bench`: a load generator for any TLS echo server (placeholder until issue 6).

use clap::Args;

/// `tls-echo bench` options.
#[derive(Debug, Args)]
pub struct BenchArgs {}

/// Runs a benchmark.
pub async fn run(_args: BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("tls-echo bench is not implemented yet")
}
