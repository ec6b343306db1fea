//! The handshake and the echo phase of one connection.

use std::future::{Future, poll_fn};
use std::io::Write as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use rustls::server::{Acceptor, UnbufferedServerConnection};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, timeout, timeout_at};

use super::io::{Conn, PassEnd, Step, poll_read_append};
use super::lines::{Early, Lines, Send};
use crate::echo::Mode;
use crate::echo::{
    DRAIN_MAX, DRAIN_QUIET, EchoLimits, Ending, LINGER_BYTES, LINGER_MAX, LINGER_QUIET, Stop, Tally,
};
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
    conn: Conn<S>,
    /// The SNI the client sent, lower case.
    sni: Option<Box<str>>,
    /// Application data that arrived with the end of the handshake.
    early: Vec<u8>,
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
        poll_fn(|cx| conn.poll_flush_out(cx)).await?;
        match step.end {
            PassEnd::Established => {
                return Ok(Session {
                    conn,
                    sni: name,
                    early: early.0,
                });
            }
            _ if step.eof || conn.peer_closed => return Err(handshake_eof()),
            _ => {}
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

    /// Echoes until the client leaves, breaks a rule, or `stop` fires; then sends the `ERR`
    /// line if any and close_notify (lingering after an `ERR` line). Returns why it ended.
    pub async fn echo<F>(self, limits: &EchoLimits, stop: Pin<&mut F>, tally: &mut Tally) -> Ending
    where
        F: Future<Output = Stop>,
    {
        let Session { conn, early, .. } = self;
        let mut echo = Echo {
            conn,
            limits,
            lines: Lines::new(limits, tally.bytes, early),
            tally,
        };
        let mut stop = stop;
        let mut fired = false;
        let ending = echo.serve(stop.as_mut(), &mut fired).await;
        // A stop that has fired must not be polled again (also when the shutdown drain ended
        // otherwise, e.g. on a bad line: the old loop polled it again there and panicked); one
        // still pending cuts the linger.
        let stop = (!fired).then_some(stop);
        // Boxed, as the drain and the end of stream: allocated once, at the end, instead of
        // being part of every connection task's size for its whole life.
        Box::pin(echo.close(ending, stop)).await;
        ending
    }
}

struct Echo<'a, S> {
    conn: Conn<S>,
    limits: &'a EchoLimits,
    lines: Lines<'a>,
    tally: &'a mut Tally,
}

/// What to do after a step.
enum After {
    /// Keep reading; `true` when the idle deadline moves (a line echoed, raw data).
    Go(bool),
    End(Ending),
}

impl<S: AsyncRead + AsyncWrite + Unpin> Echo<'_, S> {
    async fn serve<F: Future<Output = Stop>>(
        &mut self,
        mut stop: Pin<&mut F>,
        fired: &mut bool,
    ) -> Ending {
        // One timer for the connection's life, moved forward per line.
        let idle = tokio::time::sleep(self.limits.idle_timeout);
        tokio::pin!(idle);
        // First what arrived with the end of the handshake, without reading.
        let mut read = false;
        loop {
            let step = if read {
                let conn = &mut self.conn;
                let lines = &mut self.lines;
                tokio::select! {
                    biased;
                    why = stop.as_mut() => {
                        *fired = true;
                        return Box::pin(self.stopped(why)).await;
                    }
                    s = poll_fn(|cx| conn.step(cx, true, lines)) => s,
                    () = &mut idle => return Ending::IdleTimeout,
                }
            } else {
                poll_fn(|cx| self.conn.step(cx, false, &mut self.lines)).await
            };
            read = true;
            match self.settle(step).await {
                After::End(ending) => return ending,
                After::Go(true) => idle
                    .as_mut()
                    .reset(Instant::now() + self.limits.idle_timeout),
                After::Go(false) => {}
            }
        }
    }

    /// After a step: write what it produced (under the write deadline if it must wait), count
    /// it, and decide.
    async fn settle(&mut self, step: Step) -> After {
        if let Some(e) = &step.read_error {
            return After::End(if e.kind() == std::io::ErrorKind::UnexpectedEof {
                Ending::Truncated
            } else {
                Ending::IoError
            });
        }
        if matches!(step.end, PassEnd::Error(_)) {
            return After::End(Ending::IoError);
        }
        if let Err(ending) = self.flush().await {
            return After::End(ending);
        }
        let progressed = match self.limits.mode {
            Mode::Raw => std::mem::take(&mut self.lines.raw_progress),
            Mode::Line => self.lines.queued_lines > 0,
        };
        self.commit();
        self.lines.trim();
        if let Some(ending) = self.lines.verdict {
            return After::End(ending);
        }
        if self.conn.peer_closed {
            return After::End(Box::pin(self.at_eof()).await);
        }
        if step.eof {
            return After::End(Ending::Truncated);
        }
        After::Go(progressed)
    }

    /// Counts what the transport has taken.
    fn commit(&mut self) {
        self.tally.lines += std::mem::take(&mut self.lines.queued_lines);
        self.tally.bytes += std::mem::take(&mut self.lines.queued_bytes);
    }

    /// Writes the unsent output; only a write that must wait starts the write deadline.
    async fn flush(&mut self) -> Result<(), Ending> {
        if !self.conn.has_unsent() {
            return if self.conn.broken {
                Err(Ending::IoError)
            } else {
                Ok(())
            };
        }
        let conn = &mut self.conn;
        let first = poll_fn(|cx| Poll::Ready(conn.poll_flush_out(cx))).await;
        let done = match first {
            Poll::Ready(r) => Ok(r),
            // Boxed: rare, and its timer would otherwise be part of every connection's size.
            Poll::Pending => {
                Box::pin(timeout(
                    self.limits.write_timeout,
                    poll_fn(|cx| conn.poll_flush_out(cx)),
                ))
                .await
            }
        };
        match done {
            Err(_) => Err(Ending::WriteTimeout),
            Ok(Err(_)) => Err(Ending::IoError),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// The client's close_notify: echo a last line that has no terminator, if it is valid.
    async fn at_eof(&mut self) -> Ending {
        let tail = self.lines.tail();
        if tail.is_empty() || self.limits.mode == Mode::Raw {
            return Ending::Eof;
        }
        if let Err(v) = crate::echo::line::check_line(tail) {
            return Ending::Violation(v);
        }
        let len = tail.len() as u64;
        if self.tally.bytes + len > self.limits.max_bytes.unwrap_or(u64::MAX) {
            return Ending::ByteLimit;
        }
        let tail = tail.to_vec();
        let mut send = Send {
            data: &tail,
            close: false,
        };
        let step = poll_fn(|cx| self.conn.step(cx, false, &mut send)).await;
        if matches!(step.end, PassEnd::Error(_)) {
            return Ending::IoError;
        }
        match self.flush().await {
            Ok(()) => {
                self.tally.lines += 1;
                self.tally.bytes += len;
                Ending::Eof
            }
            Err(e) => e,
        }
    }

    /// On shutdown, echoes every complete line that has arrived or is still in flight (until
    /// the client pauses for `DRAIN_QUIET`, within `DRAIN_MAX`); otherwise ends at once.
    async fn stopped(&mut self, why: Stop) -> Ending {
        if why == Stop::Shutdown {
            let until = Instant::now() + DRAIN_MAX;
            loop {
                let quiet = (Instant::now() + DRAIN_QUIET).min(until);
                let conn = &mut self.conn;
                let lines = &mut self.lines;
                let step = match timeout_at(quiet, poll_fn(|cx| conn.step(cx, true, lines))).await {
                    Ok(step) => step,
                    Err(_) => break,
                };
                if step.read_error.is_some() || matches!(step.end, PassEnd::Error(_)) {
                    break;
                }
                if let Err(ending) = self.flush().await {
                    return ending;
                }
                self.commit();
                self.lines.trim();
                if let Some(ending) = self.lines.verdict {
                    return ending;
                }
                if step.eof || self.conn.peer_closed {
                    break;
                }
            }
        }
        Ending::Stopped(why)
    }

    /// Sends the `ERR` line for `ending`, if it has one, then close_notify, each under the write
    /// deadline; after an `ERR` line, lingers. A client that is gone or stuck is simply dropped.
    async fn close<F: Future<Output = Stop>>(&mut self, ending: Ending, stop: Option<Pin<&mut F>>) {
        if matches!(
            ending,
            Ending::WriteTimeout | Ending::IoError | Ending::Truncated
        ) {
            return;
        }
        let text = ending.err_text();
        let mut line = [0u8; 160];
        let len = match text {
            Some(text) => {
                let mut cursor = &mut line[..];
                let _ = writeln!(cursor, "ERR {} {}", ending.label(), text);
                160 - cursor.len()
            }
            None => 0,
        };
        let conn = &mut self.conn;
        let sent = timeout(self.limits.write_timeout, async {
            let mut send = Send {
                data: &line[..len],
                close: true,
            };
            let step = poll_fn(|cx| conn.step(cx, false, &mut send)).await;
            if matches!(step.end, PassEnd::Error(_)) {
                return Err(std::io::Error::other("TLS error"));
            }
            poll_fn(|cx| conn.poll_flush_out(cx)).await?;
            poll_fn(|cx| Pin::new(&mut conn.io).poll_shutdown(cx)).await
        })
        .await;
        if text.is_some() && matches!(sent, Ok(Ok(()))) {
            self.linger(stop).await;
        }
    }

    /// After an `ERR` line the client may still be sending (the rest of a long line, a large
    /// write). Closing with its data unread makes the kernel answer with a reset, which can
    /// destroy the `ERR` line before the client reads it. So, as nginx's lingering close does,
    /// read and discard until the client closes, pauses for `LINGER_QUIET`, or a bound is hit:
    /// `LINGER_MAX` in all, `LINGER_BYTES`, or shutdown.
    ///
    /// The bytes are discarded raw, not through rustls: after our close_notify there is
    /// nothing to learn from them, and rustls would answer a bad record with a second alert
    /// after the close (a debug assertion in rustls, which the fuzz target reached).
    async fn linger<F: Future<Output = Stop>>(&mut self, mut stop: Option<Pin<&mut F>>) {
        let started = Instant::now();
        let until = started + LINGER_MAX;
        let mut discarded = 0;
        while discarded < LINGER_BYTES {
            let quiet = (Instant::now() + LINGER_QUIET).min(until);
            let conn = &mut self.conn;
            let read = timeout_at(quiet, poll_fn(|cx| conn.poll_discard(cx)));
            let watch = async {
                match stop.as_mut() {
                    Some(stop) => stop.await,
                    None => std::future::pending().await,
                }
            };
            let n = tokio::select! {
                biased;
                _ = watch => break,
                r = read => r,
            };
            match n {
                Ok(Ok(n)) if n > 0 => discarded += n,
                _ => break,
            }
        }
        self.tally.lingered = started.elapsed();
    }
}
