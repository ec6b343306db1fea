//! The echo loops over one buffer per connection: read into its tail, echo the complete valid
//! lines in one write, move the rest to the front. No allocation per message; the buffer is
//! allocated when the first data arrives (an idle connection holds none) and is the larger of
//! `--max-line` and 16 KiB whatever the client sends: while an echo cannot be written the loop
//! does not read (back-pressure), and every read and write has a deadline.

use std::future::Future;
use std::io::Write as _;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, timeout, timeout_at};

pub mod line;
mod scan;

use line::Violation;
use scan::scan;

/// On shutdown, a connection is drained until its client pauses this long...
const DRAIN_QUIET: Duration = Duration::from_millis(50);
/// ...or for this long at most, so that a client streaming without pause cannot delay exit.
const DRAIN_MAX: Duration = Duration::from_millis(500);

/// Lingering close after an `ERR` line (nginx: 30 s in all, 5 s between reads). Shorter here:
/// enough for a client to finish a write in flight on any sane link, while a lingering
/// connection holds its place under the caps.
const LINGER_MAX: Duration = Duration::from_secs(10);
const LINGER_QUIET: Duration = Duration::from_secs(2);
/// Beyond this much discarded data the client is not going to stop; close.
const LINGER_BYTES: usize = 64 << 20;

/// The buffer when `--max-line` is smaller: a whole TLS record's plaintext, so a stream of
/// lines is echoed in full-size records (a 4 KiB buffer halved bulk throughput per CPU).
const MIN_BUFFER: usize = 16 * 1024;

/// How each line of the stream is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Validate LF-terminated lines and echo each valid one.
    #[default]
    Line,
    /// Echo bytes exactly as received (RFC 862 over TLS).
    Raw,
}

impl Mode {
    /// The name used on the command line and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Line => "line",
            Mode::Raw => "raw",
        }
    }
}

/// Per-connection limits of the echo phase.
#[derive(Debug, Clone)]
pub struct EchoLimits {
    /// Line or raw echo.
    pub mode: Mode,
    /// Longest line, terminator included.
    pub max_line: usize,
    /// Longest wait for the next complete line (raw mode: the next byte).
    pub idle_timeout: Duration,
    /// Longest wait for the client to take pending echo data.
    pub write_timeout: Duration,
    /// Most bytes one connection may send.
    pub max_bytes: Option<u64>,
}

/// Why the echo phase must end early, decided outside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The server is shutting down: echo what has arrived, then close.
    Shutdown,
    /// The peer is no longer on the allowlist: close now.
    Revoked,
    /// `--max-conn-lifetime` has passed: close at the next line boundary.
    Lifetime,
}

/// How a connection's echo phase ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The client closed cleanly.
    Eof,
    /// The client broke the line protocol.
    Violation(Violation),
    /// No complete line within `--idle-timeout`.
    IdleTimeout,
    /// The client did not take its echo within `--write-timeout`.
    WriteTimeout,
    /// `--max-conn-bytes` reached.
    ByteLimit,
    /// Ended from outside.
    Stopped(Stop),
    /// The client closed TCP without close_notify (the stream may be truncated).
    Truncated,
    /// The transport failed (reset, TLS error).
    IoError,
}

impl Ending {
    /// A stable label for logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Ending::Eof => "client-closed",
            Ending::Violation(v) => v.code(),
            Ending::IdleTimeout => "idle-timeout",
            Ending::WriteTimeout => "write-timeout",
            Ending::ByteLimit => "max-conn-bytes",
            Ending::Stopped(Stop::Shutdown) => "shutdown",
            Ending::Stopped(Stop::Revoked) => "access-revoked",
            Ending::Stopped(Stop::Lifetime) => "max-conn-lifetime",
            Ending::Truncated => "closed-without-close-notify",
            Ending::IoError => "io-error",
        }
    }

    /// The `ERR` line sent before closing, if this ending has one.
    fn err_text(self) -> Option<&'static str> {
        Some(match self {
            Ending::Violation(v) => v.message(),
            Ending::IdleTimeout => "no complete line within the idle timeout",
            Ending::ByteLimit => "connection byte limit reached",
            Ending::Stopped(Stop::Lifetime) => "connection lifetime limit reached",
            _ => return None,
        })
    }
}

/// What one connection echoed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tally {
    /// Lines echoed (line mode).
    pub lines: u64,
    /// Bytes echoed.
    pub bytes: u64,
    /// Time spent discarding what the client still sent after an `ERR` line.
    pub lingered: Duration,
}

/// Echoes until the client leaves, breaks a rule, or `stop` fires; then sends the `ERR` line if
/// any and close_notify. Returns why it ended.
pub async fn run<S, F>(
    stream: &mut S,
    limits: &EchoLimits,
    stop: Pin<&mut F>,
    tally: &mut Tally,
) -> Ending
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: Future<Output = Stop>,
{
    let mut echo = Echo {
        stream,
        limits,
        buf: Box::default(),
        filled: 0,
        checked: 0,
        tally,
    };
    let mut stop = stop;
    let ending = echo.serve(stop.as_mut()).await;
    // A stop that has fired must not be polled again; one still pending cuts the linger.
    let stop = (!matches!(ending, Ending::Stopped(_))).then_some(stop);
    echo.close(ending, stop).await;
    ending
}

struct Echo<'a, S> {
    stream: &'a mut S,
    limits: &'a EchoLimits,
    /// Empty until the first data arrives: an idle connection holds no echo buffer.
    buf: Box<[u8]>,
    /// Bytes in `buf`: the start of a line whose end has not arrived (raw mode: nothing).
    filled: usize,
    /// How much of that partial line is already validated.
    checked: usize,
    tally: &'a mut Tally,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Echo<'_, S> {
    async fn serve<F: Future<Output = Stop>>(&mut self, mut stop: Pin<&mut F>) -> Ending {
        // One timer for the connection's life, moved forward per line: moving a tokio timer
        // later is a store, where a timeout per read is a timer-wheel insert and removal.
        let idle = tokio::time::sleep(self.limits.idle_timeout);
        tokio::pin!(idle);
        loop {
            // With no buffer yet this is a zero-length read: it resolves once data (or EOF)
            // is there, and only then is the buffer allocated.
            let read = tokio::select! {
                biased;
                why = stop.as_mut() => return self.stopped(why).await,
                r = self.stream.read(&mut self.buf[self.filled..]) => r,
                () = &mut idle => return Ending::IdleTimeout,
            };
            let n = match read {
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return Ending::Truncated;
                }
                Err(_) => return Ending::IoError,
                Ok(0) if self.buf.is_empty() => {
                    self.allocate();
                    continue;
                }
                Ok(0) => return self.at_eof().await,
                Ok(n) => n,
            };
            let before = self.tally.lines;
            if let Err(ending) = self.consume(n).await {
                return ending;
            }
            if self.limits.mode == Mode::Raw || self.tally.lines > before {
                idle.as_mut()
                    .reset(Instant::now() + self.limits.idle_timeout);
            }
        }
    }

    fn allocate(&mut self) {
        self.buf = vec![0; self.limits.max_line.max(MIN_BUFFER)].into_boxed_slice();
    }

    /// Handles `n` new bytes at `buf[filled..]`: echoes what is complete and valid.
    async fn consume(&mut self, n: usize) -> Result<(), Ending> {
        let budget = self.limits.max_bytes.map_or(usize::MAX, |m| {
            m.saturating_sub(self.tally.bytes)
                .try_into()
                .unwrap_or(usize::MAX)
        });
        self.filled += n;
        if self.limits.mode == Mode::Raw {
            let end = self.filled.min(budget);
            self.write(end, 0).await?;
            self.filled = 0;
            return if end < n {
                Err(Ending::ByteLimit)
            } else {
                Ok(())
            };
        }
        let scan = scan(
            &self.buf[..self.filled],
            self.checked,
            budget,
            self.limits.max_line,
        );
        self.write(scan.end, scan.lines).await?;
        self.buf.copy_within(scan.end..self.filled, 0);
        self.filled -= scan.end;
        self.checked = self.filled;
        match scan.stop {
            Some(ending) => Err(ending),
            None if self.filled == self.buf.len() => Err(Ending::Violation(Violation::LineTooLong)),
            None => Ok(()),
        }
    }

    async fn at_eof(&mut self) -> Ending {
        let tail = &self.buf[..self.filled];
        if tail.is_empty() || self.limits.mode == Mode::Raw {
            return Ending::Eof;
        }
        if let Err(v) = line::check_line(tail) {
            return Ending::Violation(v);
        }
        if self.tally.bytes + tail.len() as u64 > self.limits.max_bytes.unwrap_or(u64::MAX) {
            return Ending::ByteLimit;
        }
        match self.write(self.filled, 1).await {
            Ok(()) => Ending::Eof,
            Err(e) => e,
        }
    }

    /// On shutdown, echoes every complete line that has arrived or is still in flight (until
    /// the client pauses for `DRAIN_QUIET`, within `DRAIN_MAX`); otherwise ends at once.
    async fn stopped(&mut self, why: Stop) -> Ending {
        if why == Stop::Shutdown {
            if self.buf.is_empty() {
                self.allocate();
            }
            let until = Instant::now() + DRAIN_MAX;
            loop {
                let quiet = (Instant::now() + DRAIN_QUIET).min(until);
                match timeout_at(quiet, self.stream.read(&mut self.buf[self.filled..])).await {
                    Ok(Ok(n)) if n > 0 => {
                        if let Err(ending) = self.consume(n).await {
                            return ending;
                        }
                    }
                    _ => break,
                }
            }
        }
        Ending::Stopped(why)
    }

    /// Writes `buf[..end]` and flushes it to the socket within the write deadline.
    async fn write(&mut self, end: usize, lines: u64) -> Result<(), Ending> {
        if end == 0 {
            return Ok(());
        }
        let stream = &mut *self.stream;
        let data = &self.buf[..end];
        let io = async {
            stream.write_all(data).await?;
            stream.flush().await
        };
        tokio::pin!(io);
        // Most writes complete at once; only one that must wait starts the write deadline
        // (a timer and a clock read per echo otherwise).
        let first = std::future::poll_fn(|cx| Poll::Ready(io.as_mut().poll(cx))).await;
        let done = match first {
            Poll::Ready(r) => Ok(r),
            Poll::Pending => timeout(self.limits.write_timeout, io).await,
        };
        match done {
            Err(_) => Err(Ending::WriteTimeout),
            Ok(Err(_)) => Err(Ending::IoError),
            Ok(Ok(())) => {
                self.tally.lines += lines;
                self.tally.bytes += end as u64;
                Ok(())
            }
        }
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
        let sent = timeout(self.limits.write_timeout, async {
            if let Some(text) = text {
                let mut line = [0u8; 160];
                let mut cursor = &mut line[..];
                let _ = writeln!(cursor, "ERR {} {}", ending.label(), text);
                let len = 160 - cursor.len();
                self.stream.write_all(&line[..len]).await?;
            }
            self.stream.shutdown().await
        })
        .await;
        if text.is_some() && matches!(sent, Ok(Ok(()))) {
            self.linger(stop).await;
        }
    }

    /// After an `ERR` line the client may still be sending (the rest of a long line, a large
    /// write). Closing with its data unread makes the kernel answer with a reset, which can
    /// destroy the `ERR` line before the client reads it. So, as nginx's lingering close does,
    /// read and discard (into the connection's own buffer) until the client closes, pauses for
    /// `LINGER_QUIET`, or a bound is hit: `LINGER_MAX` in all, `LINGER_BYTES`, or shutdown.
    async fn linger<F: Future<Output = Stop>>(&mut self, mut stop: Option<Pin<&mut F>>) {
        if self.buf.is_empty() {
            self.allocate();
        }
        let started = Instant::now();
        let until = started + LINGER_MAX;
        let mut discarded = 0;
        while discarded < LINGER_BYTES {
            let quiet = (Instant::now() + LINGER_QUIET).min(until);
            let read = timeout_at(quiet, self.stream.read(&mut self.buf));
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
