//! The pure line scanner: finds the complete, valid lines at the front of a buffer that starts at
//! a line boundary. No I/O; the echo loop and its tests call it.

use super::Ending;
use super::line::{self, Violation};

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
