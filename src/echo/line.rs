//! Pure validation of protocol lines: no I/O, so it is tested and fuzzed on its own.
//!
//! A line is valid UTF-8 with no control character (Unicode category Cc: C0, DEL and C1) other
//! than TAB, and a CR only directly before the terminating LF. C1 codes are refused too because
//! some terminals act on U+009B (CSI) as they do on ESC `[`.

/// Why a line was refused. [`Violation::code`] is the stable token clients see after `ERR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Violation {
    /// The line (terminator included) is longer than `--max-line`.
    LineTooLong,
    /// The bytes are not UTF-8.
    InvalidUtf8,
    /// A control character other than TAB, or a CR not followed by LF.
    ControlCharacter,
}

impl Violation {
    /// Every violation, for metrics and documentation.
    pub const ALL: [Violation; 3] = [
        Violation::LineTooLong,
        Violation::InvalidUtf8,
        Violation::ControlCharacter,
    ];

    /// The machine-readable code written after `ERR`.
    pub fn code(self) -> &'static str {
        match self {
            Violation::LineTooLong => "line-too-long",
            Violation::InvalidUtf8 => "invalid-utf8",
            Violation::ControlCharacter => "control-character",
        }
    }

    /// The human-readable text that follows the code.
    pub fn message(self) -> &'static str {
        match self {
            Violation::LineTooLong => "line exceeds the maximum length (terminator included)",
            Violation::InvalidUtf8 => "line is not valid UTF-8",
            Violation::ControlCharacter => "line contains a control character other than TAB",
        }
    }
}

/// Checks one whole line: with its LF when it has one (a line cut short by EOF has none).
pub fn check_line(line: &[u8]) -> Result<(), Violation> {
    let content = match line {
        [rest @ .., b'\r', b'\n'] | [rest @ .., b'\n'] => rest,
        _ => line,
    };
    check(content, false)
}

/// Checks the start of a line whose end has not arrived: a UTF-8 sequence cut at the end, or a
/// final CR that an LF may still follow, is not an error yet.
pub fn check_prefix(prefix: &[u8]) -> Result<(), Violation> {
    match prefix.strip_suffix(b"\r") {
        // Before a final CR the text must be complete: no UTF-8 sequence continues past a CR.
        Some(content) => check(content, false),
        None => check(prefix, true),
    }
}

/// The first violation in `content`, which holds no terminator. The earliest offending byte
/// decides between an encoding and a control-character violation.
fn check(content: &[u8], open_end: bool) -> Result<(), Violation> {
    let valid_up_to = match simdutf8::compat::from_utf8(content) {
        Ok(_) => content.len(),
        Err(e) if open_end && e.error_len().is_none() => e.valid_up_to(),
        Err(e) => {
            return if has_control(&content[..e.valid_up_to()]) {
                Err(Violation::ControlCharacter)
            } else {
                Err(Violation::InvalidUtf8)
            };
        }
    };
    if has_control(&content[..valid_up_to]) {
        return Err(Violation::ControlCharacter);
    }
    Ok(())
}

/// Whether valid UTF-8 `text` holds a C0 control other than TAB, DEL, or a C1 control.
fn has_control(text: &[u8]) -> bool {
    // C1 controls are U+0080..=U+009F, encoded as 0xC2 0x80..=0x9F.
    has_c0_or_del(text)
        || memchr::memchr_iter(0xc2, text).any(|i| matches!(text.get(i + 1), Some(0x80..=0x9f)))
}

/// Whether `text` holds a C0 control other than TAB, or DEL. A chunk at a time with no branch
/// inside it, which the compiler turns into SIMD compares: a byte-wise `any` ran at 0.5 GB/s
/// and halved line-mode bulk throughput (benches/line.rs).
fn has_c0_or_del(text: &[u8]) -> bool {
    let bad = |b: u8| u8::from(b < 0x20) & u8::from(b != b'\t') | u8::from(b == 0x7f);
    let mut chunks = text.chunks_exact(64);
    for chunk in &mut chunks {
        if chunk.iter().fold(0, |acc, &b| acc | bad(b)) != 0 {
            return true;
        }
    }
    chunks.remainder().iter().any(|&b| bad(b) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference model the fast implementation must agree with.
    fn model(line: &[u8]) -> Result<(), Violation> {
        let content = line
            .strip_suffix(b"\n")
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .unwrap_or(line);
        match std::str::from_utf8(content) {
            Ok(s) if s.chars().any(|c| c.is_control() && c != '\t') => {
                Err(Violation::ControlCharacter)
            }
            Ok(_) => Ok(()),
            Err(e) => {
                let head = std::str::from_utf8(&content[..e.valid_up_to()]).unwrap_or("");
                if head.chars().any(|c| c.is_control() && c != '\t') {
                    Err(Violation::ControlCharacter)
                } else {
                    Err(Violation::InvalidUtf8)
                }
            }
        }
    }

    #[test]
    fn accepts_text_tab_and_crlf() {
        for line in [
            &b"hello\n"[..],
            b"tab\there\r\n",
            b"gr\xc3\xbc\xc3\x9fe \xe2\x9c\x93\n",
            b"no terminator",
            b"\n",
            b"",
        ] {
            assert_eq!(check_line(line), Ok(()), "{line:?}");
            assert_eq!(check_line(line), model(line));
        }
    }

    #[test]
    fn refuses_controls_bad_utf8_and_bare_cr() {
        let cases: [(&[u8], Violation); 8] = [
            (b"nul\0\n", Violation::ControlCharacter),
            (b"esc\x1b[31m\n", Violation::ControlCharacter),
            (b"del\x7f\n", Violation::ControlCharacter),
            (b"csi\xc2\x9b\n", Violation::ControlCharacter),
            (b"bare\rcr\n", Violation::ControlCharacter),
            (b"cr at eof\r", Violation::ControlCharacter),
            (b"bad\xff\n", Violation::InvalidUtf8),
            (b"cut\xe2\x9c\n", Violation::InvalidUtf8),
        ];
        for (line, want) in cases {
            assert_eq!(check_line(line), Err(want), "{line:?}");
            assert_eq!(model(line), Err(want), "{line:?}");
        }
    }

    #[test]
    fn finds_a_control_at_any_offset_of_a_long_line() {
        // The control check works 64 bytes at a time: cover every chunk position and the tail.
        for len in [63, 64, 65, 130, 200] {
            for at in 0..len {
                for bad in [0x00, 0x07, 0x1b, 0x7f] {
                    let mut line = vec![b'a'; len];
                    line[at] = bad;
                    line.push(b'\n');
                    assert_eq!(
                        check_line(&line),
                        Err(Violation::ControlCharacter),
                        "{len} {at}"
                    );
                    assert_eq!(model(&line), Err(Violation::ControlCharacter));
                }
                let mut tab = vec![b'a'; len];
                tab[at] = b'\t';
                assert_eq!(check_line(&tab), Ok(()));
            }
        }
    }

    #[test]
    fn earliest_offence_decides() {
        assert_eq!(check_line(b"\x01\xff\n"), Err(Violation::ControlCharacter));
        assert_eq!(check_line(b"\xff\x01\n"), Err(Violation::InvalidUtf8));
    }

    #[test]
    fn prefix_tolerates_open_end_only() {
        assert_eq!(check_prefix(b"half \xe2\x9c"), Ok(()));
        assert_eq!(check_prefix(b"waiting for lf\r"), Ok(()));
        assert_eq!(check_prefix(b"cut \xe2\r"), Err(Violation::InvalidUtf8));
        assert_eq!(check_prefix(b"bad \xff more"), Err(Violation::InvalidUtf8));
        assert_eq!(check_prefix(b"\x07"), Err(Violation::ControlCharacter));
    }
}
