//! The line validator against a reference model built on std's UTF-8 decoder and
//! `char::is_control`, and `check_prefix` against `check_line`: a prefix passes exactly when
//! some continuation can still make it a valid line, and a refused prefix refuses every line
//! that starts with it, with the same violation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tls_echo::echo::line::{Violation, check_line, check_prefix};

/// Bytes that complete any cut UTF-8 sequence that has a valid, non-control completion
/// (E0 needs A0.., ED ..9F, F0 90.., F4 ..8F, and C2 must not become a C1 control).
const CONTINUATIONS: [u8; 3] = [0x80, 0x90, 0xa0];

fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(0, |&b| usize::from(b));
    let data = data.get(1..).unwrap_or_default();
    assert_eq!(check_line(data), model(data), "check_line({data:?})");

    let (prefix, suffix) = data.split_at(split.min(data.len()));
    if prefix.contains(&b'\n') {
        return;
    }
    let verdict = check_prefix(prefix);
    assert_eq!(
        verdict.is_ok(),
        completions(prefix).any(|line| check_line(&line).is_ok()),
        "check_prefix({prefix:?}) = {verdict:?}, but completions say otherwise"
    );
    if let Err(v) = verdict {
        let line = [prefix, suffix, b"\n"].concat();
        assert_eq!(check_line(&line), Err(v), "{prefix:?} then {suffix:?}");
    }
});

/// The specification, written the obvious way: LF ends a line, a CR directly before it belongs
/// to the terminator, every other control except TAB is refused, and the earliest offending
/// byte decides between an encoding and a control-character violation.
fn model(line: &[u8]) -> Result<(), Violation> {
    let content = match line.strip_suffix(b"\n") {
        Some(l) => l.strip_suffix(b"\r").unwrap_or(l),
        None => line,
    };
    let bad = |s: &str| s.chars().any(|c| c.is_control() && c != '\t');
    match std::str::from_utf8(content) {
        Ok(s) if bad(s) => Err(Violation::ControlCharacter),
        Ok(_) => Ok(()),
        Err(e) => match std::str::from_utf8(&content[..e.valid_up_to()]) {
            Ok(head) if bad(head) => Err(Violation::ControlCharacter),
            _ => Err(Violation::InvalidUtf8),
        },
    }
}

/// `prefix` followed by every continuation of up to three bytes from [`CONTINUATIONS`], then LF.
fn completions(prefix: &[u8]) -> impl Iterator<Item = Vec<u8>> + '_ {
    (0..=3u32).flat_map(move |len| {
        (0..3usize.pow(len)).map(move |mut n| {
            let mut line = prefix.to_vec();
            for _ in 0..len {
                line.push(CONTINUATIONS[n % 3]);
                n /= 3;
            }
            line.push(b'\n');
            line
        })
    })
}
