//! The handshake: the ClientHello read first (for the SNI and `--strict-sni`), then rustls's
//! unbuffered server connection driven over the transport until the session is established.

use std::future::poll_fn;
use std::sync::Arc;

use rustls::server::{Acceptor, UnbufferedServerConnection};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::io::{Conn, PassEnd, poll_read_append};
use super::lines::Early;
use crate::tls::{TlsMaterial, handshake_failure_reason, sni};

/// A failed handshake: the transport's or rustls's error, as `tls::handshake_failure_reason`
/// classifies it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HandshakeError(std::io::Error);

impl HandshakeError {
    /// The stable label for logs and metrics (`sni-unrecognized`, `alpn-no-common-protocol`,
    /// `client-cert-missing`, `client-closed`, ...).
    pub fn reason(&self) -> &'static str {
        handshake_failure_reason(&self.0)
    }

    /// The underlying error (rustls's error is its inner error when TLS refused the peer).
    pub fn into_io(self) -> std::io::Error {
        self.0
    }
}

impl From<std::io::Error> for HandshakeError {
    fn from(e: std::io::Error) -> Self {
        HandshakeError(e)
    }
}

fn tls_error(e: rustls::Error) -> HandshakeError {
    HandshakeError(std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

fn handshake_eof() -> HandshakeError {
    HandshakeError(std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "tls handshake eof",
    ))
}

/// An established TLS session over `S`, ready to echo.
pub struct Session<S> {
    pub(super) conn: Conn<S>,
    /// The SNI the client sent, lower case.
    sni: Option<Box<str>>,
    /// Application data that arrived with the end of the handshake.
    pub(super) early: Vec<u8>,
}

/// What the handshake negotiated, for the `connected` log line.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// `TLSv1_3`, `TLSv1_2`.
    pub version: &'static str,
    /// The cipher suite's name.
    pub suite: &'static str,
    /// The key exchange group's name.
    pub group: &'static str,
    /// The requested server name ("" without SNI).
    pub sni: &'a str,
    /// The negotiated ALPN protocol, if any.
    pub alpn: Option<&'a [u8]>,
}

/// The server side of the handshake with `material` on `io`; the caller bounds it with
/// `--handshake-timeout`. The ClientHello is read first (rustls's `Acceptor`): under
/// `--strict-sni` a missing or unknown name gets `unrecognized_name` (112) and the error
/// `sni-unrecognized`; its bytes are then replayed into the unbuffered connection.
pub async fn accept<S>(material: &TlsMaterial, mut io: S) -> Result<Session<S>, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut hello = Vec::new();
    // Boxed for the handshake only: inline, the ClientHello reader (about 1.5 KiB) would be
    // part of every connection task's allocation for the connection's whole life.
    let name = Box::pin(read_client_hello(&mut io, &mut hello)).await?;
    if material.sni.strict && !name.as_deref().is_some_and(|n| material.sni.covers(n)) {
        let _ = io.write_all(&sni::UNRECOGNIZED_NAME_ALERT).await;
        let _ = io.flush().await;
        return Err(std::io::Error::other(sni::UnrecognizedName(
            name.map_or_else(|| "no SNI".into(), String::from),
        ))
        .into());
    }
    let tls = UnbufferedServerConnection::new(Arc::clone(&material.config))
        .map_err(std::io::Error::other)?;
    let mut conn = Conn::new(io, tls, hello);
    let mut early = Early::default();
    let mut read = false;
    loop {
        let step = poll_fn(|cx| conn.step(cx, read, &mut early)).await;
        read = true;
        if let Some(e) = step.read_error {
            return Err(e.into());
        }
        if let PassEnd::Error(e) = step.end {
            // The alert, if any, went out with the step's write.
            let _ = poll_fn(|cx| conn.poll_flush_out(cx)).await;
            return Err(tls_error(*e));
        }
        if let PassEnd::Established = step.end {
            // Its output is unsent: the echo's first step writes it (see `Conn::step`).
            return Ok(Session {
                conn,
                sni: name,
                early: early.0,
            });
        }
        poll_fn(|cx| conn.poll_flush_out(cx)).await?;
        if step.eof || conn.peer_closed {
            return Err(handshake_eof());
        }
    }
}

/// Reads until rustls's `Acceptor` has a whole ClientHello; returns the SNI it names (lower
/// case). Every byte read stays in `hello`, to be replayed into the connection. Its own
/// function so that the `Accepted` value is not part of the connection task's size.
async fn read_client_hello<S>(
    io: &mut S,
    hello: &mut Vec<u8>,
) -> Result<Option<Box<str>>, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut acceptor = Acceptor::default();
    let accepted = loop {
        let start = hello.len();
        let n = poll_fn(|cx| poll_read_append(&mut *io, cx, &mut *hello)).await?;
        if n == 0 {
            return Err(handshake_eof());
        }
        let mut fresh = &hello[start..];
        while !fresh.is_empty() {
            if acceptor.read_tls(&mut fresh)? == 0 {
                return Err(std::io::Error::other("ClientHello buffer full").into());
            }
        }
        match acceptor.accept() {
            Ok(None) => continue,
            Ok(Some(accepted)) => break accepted,
            Err((e, mut alert)) => {
                let mut bytes = Vec::new();
                let _ = alert.write_all(&mut bytes);
                let _ = io.write_all(&bytes).await;
                let _ = io.flush().await;
                return Err(tls_error(e));
            }
        }
    };
    Ok(accepted
        .client_hello()
        .server_name()
        .map(|n| n.to_ascii_lowercase().into_boxed_str()))
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// What was negotiated.
    pub fn facts(&self) -> Facts<'_> {
        let tls = &self.conn.tls;
        Facts {
            version: tls
                .protocol_version()
                .and_then(|v| v.as_str())
                .unwrap_or("?"),
            suite: tls
                .negotiated_cipher_suite()
                .and_then(|s| s.suite().as_str())
                .unwrap_or("?"),
            group: tls
                .negotiated_key_exchange_group()
                .and_then(|g| g.name().as_str())
                .unwrap_or("?"),
            sni: self.sni.as_deref().unwrap_or(""),
            alpn: tls.alpn_protocol(),
        }
    }
}
