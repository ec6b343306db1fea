//! What the load generator sends: lines stamped with a sequence number, and the bulk pattern of
//! valid lines. Each is a valid line for tls-echo's line mode (checked by the test below).

/// Length of each line of the bulk stream, newline included (below tls-echo's default
/// `--max-line`, so line mode echoes it).
const BULK_LINE: usize = 1000;
/// Lines in one period of the bulk pattern.
const BULK_LINES: usize = 61;

/// A printable line of `size` bytes ending in a newline, distinct per connection.
pub(super) fn line(size: usize, id: usize) -> Vec<u8> {
    let mut msg: Vec<u8> = (0..size).map(|i| b'a' + ((i + id) % 26) as u8).collect();
    msg[size - 1] = b'\n';
    msg
}

/// Writes `seq` in decimal over the start of the line (as much of it as fits).
pub(super) fn stamp(msg: &mut [u8], mut seq: u64) {
    let room = (msg.len() - 1).min(20);
    for b in msg[..room].iter_mut().rev() {
        *b = b'0' + (seq % 10) as u8;
        seq /= 10;
    }
}

/// One period of printable lines, followed by its first `size` bytes again so any write of
/// `size` bytes starting inside the period is one slice.
pub(super) fn bulk_pattern(size: usize) -> Vec<u8> {
    let mut p: Vec<u8> = (0..BULK_LINES * BULK_LINE)
        .map(|i| {
            if i % BULK_LINE == BULK_LINE - 1 {
                b'\n'
            } else {
                b' ' + ((i * 7 + i / BULK_LINE) % 95) as u8
            }
        })
        .collect();
    let period = p.len();
    for i in 0..size {
        let b = p[i % period];
        p.push(b);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_valid_lines() {
        for size in [2, 5, 64, 4096] {
            let mut m = line(size, 3);
            stamp(&mut m, 1234567);
            assert_eq!(m.len(), size);
            assert_eq!(crate::echo::line::check_line(&m), Ok(()));
            assert_eq!(m.iter().filter(|&&b| b == b'\n').count(), 1);
        }
        let p = bulk_pattern(16_384);
        for l in p[..BULK_LINES * BULK_LINE].split_inclusive(|&b| b == b'\n') {
            assert_eq!(crate::echo::line::check_line(l), Ok(()));
        }
    }
}
