//! The echo phase's vocabulary: its limits, why it stops and ends, what it counted, and the
//! line scanner that finds the complete valid lines in received data. The loop itself is
//! `crate::engine` (TLS and echo over rustls's unbuffered API): while an echo cannot be written
//! it does not read (back-pressure), and every read and write has a deadline.

use std::time::Duration;

pub mod line;
mod scan;

use line::Violation;
pub(crate) use scan::scan;

/// On shutdown, a connection is drained until its client pauses this long...
pub(crate) const DRAIN_QUIET: Duration = Duration::from_millis(50);
/// ...or for this long at most, so that a client streaming without pause cannot delay exit.
pub(crate) const DRAIN_MAX: Duration = Duration::from_millis(500);

/// Lingering close after an `ERR` line (nginx: 30 s in all, 5 s between reads). Shorter here:
/// enough for a client to finish a write in flight on any sane link, while a lingering
/// connection holds its place under the caps.
pub(crate) const LINGER_MAX: Duration = Duration::from_secs(10);
pub(crate) const LINGER_QUIET: Duration = Duration::from_secs(2);
/// Beyond this much discarded data the client is not going to stop; close.
pub(crate) const LINGER_BYTES: usize = 64 << 20;

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
    pub(crate) fn err_text(self) -> Option<&'static str> {
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
