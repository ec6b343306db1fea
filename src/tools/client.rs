//! `tls-echo client`: verifies the server, sends stdin line by line, prints what comes back.
//! Stdin EOF sends close_notify; the client then waits for the server to finish and close.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use clap::Args;

use crate::tls;

/// Which server a client tool talks to, and what it verifies.
#[derive(Debug, Clone, Args)]
pub struct Endpoint {
    /// Server address (host:port).
    #[arg(long, default_value = "127.0.0.1:4433")]
    pub connect: String,
    /// PEM CA bundle to verify the server against [default: the system trust store].
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Name to verify the server certificate for [default: the host part of --connect].
    #[arg(long, value_name = "NAME")]
    pub server_name: Option<String>,
}

/// `tls-echo client`.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// The server.
    #[command(flatten)]
    pub endpoint: Endpoint,
    /// Client certificate chain for mutual TLS.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// Client private key for mutual TLS.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
}

/// Runs the client to completion.
pub async fn run(args: ClientArgs) -> anyhow::Result<()> {
    let connector = connector(&args)?;
    let (host, name) = server_name(&args.endpoint)?;
    let tcp = TcpStream::connect(&args.endpoint.connect)
        .await
        .with_context(|| format!("cannot connect to {}", args.endpoint.connect))?;
    tcp.set_nodelay(true)?;
    let tls = connector.connect(name, tcp).await.map_err(|e| {
        let trust = args.endpoint.ca.as_ref().map_or("the system trust store".to_string(), |p| p.display().to_string());
        anyhow::anyhow!("TLS handshake with {} failed: {e} (the server certificate must chain to {trust} and name '{host}')", args.endpoint.connect)
    })?;
    let (mut rd, mut wr) = tokio::io::split(tls);
    let printer = tokio::spawn(async move {
        let mut out = tokio::io::stdout();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) => return Ok(()),
                Ok(n) => {
                    out.write_all(&buf[..n]).await?;
                    out.flush().await?;
                }
                Err(e) => return Err(e),
            }
        }
    });
    let mut stdin = BufReader::new(tokio::io::stdin());
    let mut line = Vec::new();
    loop {
        line.clear();
        if stdin.read_until(b'\n', &mut line).await? == 0 {
            break;
        }
        if wr.write_all(&line).await.and(wr.flush().await).is_err() {
            break; // the server closed; the printer reports what it said
        }
    }
    let _ = wr.shutdown().await;
    match printer.await? {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            bail!("the server closed the connection without close_notify")
        }
        Err(e) => Err(e).context("reading from the server"),
    }
}

fn connector(args: &ClientArgs) -> anyhow::Result<TlsConnector> {
    let roots = trust_roots(args.endpoint.ca.as_deref())?;
    let builder = ClientConfig::builder_with_provider(tls::provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let config = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => builder.with_client_auth_cert(
            tls::read_certs(cert, "client certificate")?,
            tls::read_key(key)?,
        )?,
        _ => builder.with_no_client_auth(),
    };
    Ok(TlsConnector::from(Arc::new(config)))
}

/// The CAs a client verifies servers against: `ca`, else the system trust store.
pub fn trust_roots(ca: Option<&Path>) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    match ca {
        Some(ca) => {
            for cert in tls::read_certs(ca, "CA")? {
                roots
                    .add(cert)
                    .with_context(|| format!("{}: unusable CA certificate", ca.display()))?;
            }
        }
        None => {
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            if roots.is_empty() {
                bail!("no system trust store found; pass --ca FILE");
            }
        }
    }
    Ok(roots)
}

/// The name the server's certificate must carry: `--server-name`, else the host of
/// `--connect`; as text and as a rustls name.
pub fn server_name(e: &Endpoint) -> anyhow::Result<(String, ServerName<'static>)> {
    let host = e.server_name.clone().unwrap_or_else(|| host_of(&e.connect));
    let name = ServerName::try_from(host.clone())
        .with_context(|| format!("'{host}' is not a valid server name"))?;
    Ok((host, name))
}

/// The host part of `host:port` or `[v6]:port`.
fn host_of(addr: &str) -> String {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn host_of_strips_port_and_brackets() {
        assert_eq!(super::host_of("127.0.0.1:4433"), "127.0.0.1");
        assert_eq!(super::host_of("[::1]:4433"), "::1");
        assert_eq!(super::host_of("localhost:1"), "localhost");
    }
}
