//! PROXY protocol v1/v2: `parse` never panics on any bytes; `read` never panics either, and over
//! a complete header followed by anything it consumes exactly the header and agrees with
//! `parse` (or refuses a header larger than its bound).
#![no_main]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use libfuzzer_sys::fuzz_target;
use tls_echo::proxy::{self, HeaderError, Origin};

/// The longest v1 header, CRLF included (the specification's bound, which `read` enforces).
const V1_MAX: usize = 107;

fuzz_target!(|data: &[u8]| {
    let split = match data {
        [a, b, ..] => usize::from(u16::from_le_bytes([*a, *b])),
        _ => return,
    };
    let data = &data[2..];
    let (header, rest) = data.split_at(split.min(data.len()));

    let (read, left) = read_from(data);
    if let Ok(origin) = read {
        let used = data.len() - left.len();
        assert_eq!(
            proxy::parse(&data[..used]),
            Ok(origin),
            "{:?}",
            &data[..used]
        );
    }

    if let Ok(origin) = proxy::parse(header) {
        let (read, left) = read_from(data);
        match read {
            Ok(o) => {
                assert_eq!(o, origin, "{header:?}");
                assert_eq!(
                    left, rest,
                    "read did not consume exactly the header {header:?}"
                );
            }
            Err(HeaderError::TooLarge) => {
                let bound = if header.starts_with(b"PROXY ") {
                    V1_MAX
                } else {
                    16 + proxy::V2_MAX_PAYLOAD
                };
                assert!(
                    header.len() > bound,
                    "{header:?} is within the bound but refused as too large"
                );
            }
            Err(e) => panic!("parse accepts {header:?} as {origin:?}, read says {e}"),
        }
    }
});

/// Runs `proxy::read` over `input`; a byte slice never makes it wait, so one poll finishes it.
/// Returns the result and what was left unread.
fn read_from(mut input: &[u8]) -> (Result<Origin, HeaderError>, &[u8]) {
    let result = {
        let mut fut = pin!(proxy::read(&mut input));
        match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(r) => r,
            Poll::Pending => panic!("reading from a slice never waits"),
        }
    };
    (result, input)
}
