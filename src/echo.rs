//! The echo phase's vocabulary: its limits, why it stops and ends, what it counted, and the
//! line scanner that finds the complete valid lines in received data. The loop itself is
//! `crate::engine` (TLS and echo over rustls's unbuffered API): while an echo cannot be written
//! it does not read (back-pressure), and every read and write has a deadline.

use std::time::Duration;

use crate::cli::Mode;
use crate::line::{self, Violation};

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

/// The result of scanning a buffer that starts at a line boundary.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Scan {
    /// Bytes at the front that are complete, valid lines within the byte budget.
    pub(crate) end: usize,
    /// How many lines that is.
    pub(crate) lines: u64,
    /// Why scanning stopped before the partial line at the end, if it did.
    pub(crate) stop: Option<Ending>,
}

/// Finds the complete valid lines at the front of `buf`. The first `checked` bytes are a line
/// prefix validated earlier, so a line arriving in many small reads is validated in linear time.
///
/// A line longer than `max_line` is judged on its first `max_line` bytes, as if the buffer
/// held no more: a violation there wins, otherwise it is too long.
pub(crate) fn scan(buf: &[u8], checked: usize, budget: usize, max_line: usize) -> Scan {
    let mut start = 0;
    let mut lines = 0;
    let mut from = checked;
    while let Some(i) = memchr::memchr(b'\n', &buf[from..]) {
        let end = from + i + 1;
        let verdict = if end - start > max_line {
            Err(too_long(&buf[start..start + max_line]))
        } else {
            line::check_line(&buf[start..end])
        };
        if let Err(v) = verdict {
            return Scan {
                end: start,
                lines,
                stop: Some(Ending::Violation(v)),
            };
        }
        if end > budget {
            return Scan {
                end: start,
                lines,
                stop: Some(Ending::ByteLimit),
            };
        }
        lines += 1;
        start = end;
        from = end;
    }
    let tail = &buf[start..];
    let stop = if tail.len() >= max_line {
        Some(Ending::Violation(too_long(&tail[..max_line])))
    } else {
        let known_good = if start == 0 { checked } else { 0 };
        let resume = char_start_before(tail, known_good.saturating_sub(1));
        line::check_prefix(&tail[resume..])
            .err()
            .map(Ending::Violation)
    };
    Scan {
        end: start,
        lines,
        stop,
    }
}

/// Why a line with no terminator in its first `max_line` bytes (`head`) is refused.
fn too_long(head: &[u8]) -> Violation {
    line::check_prefix(head)
        .err()
        .unwrap_or(Violation::LineTooLong)
}

/// The start of the UTF-8 character at or before `i` in text that is valid up to `i`.
fn char_start_before(text: &[u8], mut i: usize) -> usize {
    while i > 0 && text.get(i).is_some_and(|b| b & 0xc0 == 0x80) {
        i -= 1;
    }
    i.min(text.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_splits_lines_and_keeps_the_tail() {
        let s = scan(b"one\ntwo\r\nthr", 0, usize::MAX, 4096);
        assert_eq!(
            s,
            Scan {
                end: 9,
                lines: 2,
                stop: None
            }
        );
    }

    #[test]
    fn scan_stops_before_a_bad_line() {
        let s = scan(b"ok\nbad\x00\nnever\n", 0, usize::MAX, 4096);
        assert_eq!(s.end, 3);
        assert_eq!(s.stop, Some(Ending::Violation(Violation::ControlCharacter)));
    }

    #[test]
    fn scan_catches_bad_bytes_before_the_terminator() {
        let s = scan(b"ok\nhalf\xff", 0, usize::MAX, 4096);
        assert_eq!(
            (s.end, s.stop),
            (3, Some(Ending::Violation(Violation::InvalidUtf8)))
        );
    }

    #[test]
    fn scan_resumes_inside_a_character() {
        // "\xe2\x9c\x93" arrives split: the prefix was checked up to the cut.
        let buf = b"ab\xe2\x9c\x93cd";
        assert_eq!(scan(buf, 4, usize::MAX, 4096).stop, None);
        let bad = b"ab\rX";
        assert_eq!(
            scan(bad, 3, usize::MAX, 4096).stop,
            Some(Ending::Violation(Violation::ControlCharacter))
        );
    }

    #[test]
    fn scan_judges_long_lines_on_their_first_max_line_bytes() {
        // Complete but one byte over: too long, and the lines before it are echoed.
        let s = scan(b"ok\n12345\n", 0, usize::MAX, 5);
        assert_eq!(
            (s.end, s.lines, s.stop),
            (3, 1, Some(Ending::Violation(Violation::LineTooLong)))
        );
        assert_eq!(scan(b"1234\n", 0, usize::MAX, 5).stop, None);
        // A violation within the first max_line bytes wins; one past them is not reached.
        let s = scan(b"12\x0045678\n", 0, usize::MAX, 5);
        assert_eq!(s.stop, Some(Ending::Violation(Violation::ControlCharacter)));
        let s = scan(b"12345\x00\n", 0, usize::MAX, 5);
        assert_eq!(s.stop, Some(Ending::Violation(Violation::LineTooLong)));
        // The same for a partial line that reaches max_line.
        let s = scan(b"ok\n12345", 0, usize::MAX, 5);
        assert_eq!(
            (s.end, s.stop),
            (3, Some(Ending::Violation(Violation::LineTooLong)))
        );
        assert_eq!(scan(b"ok\n1234", 0, usize::MAX, 5).stop, None);
    }

    #[test]
    fn scan_honours_the_byte_budget_at_a_line_boundary() {
        let s = scan(b"aa\nbb\ncc\n", 0, 7, 4096);
        assert_eq!((s.end, s.lines, s.stop), (6, 2, Some(Ending::ByteLimit)));
    }
}
