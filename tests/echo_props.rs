//! Properties of the echo path, over an in-memory duplex pipe and `echo::run`: valid lines split
//! into reads at arbitrary points come back exactly, and the first invalid byte produces exactly
//! one ERR line and a close.

use std::collections::VecDeque;
use std::pin::{Pin, pin};
use std::task::{Context, Poll};
use std::time::Duration;

use proptest::prelude::*;
use tls_echo::echo::Mode;
use tls_echo::echo::line::Violation;
use tls_echo::echo::{self, EchoLimits, Ending, Stop, Tally};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};

/// Small enough that a run of long lines exercises the buffer's move-to-front.
const MAX_LINE: usize = 256;

/// The server's end of the pipe, handing each read at most the next of the given sizes, so
/// that the echo loop sees the input cut exactly where the test says.
struct Cuts {
    inner: DuplexStream,
    sizes: VecDeque<usize>,
}

impl AsyncRead for Cuts {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let limit = self.sizes.front().copied().unwrap_or(usize::MAX);
        let mut scratch = vec![0; limit.min(buf.remaining())];
        let mut part = ReadBuf::new(&mut scratch);
        let ready = Pin::new(&mut self.inner).poll_read(cx, &mut part);
        if let Poll::Ready(Ok(())) = ready {
            let n = part.filled().len();
            buf.put_slice(part.filled());
            if let Some(front) = self.sizes.front_mut() {
                *front -= n;
                if *front == 0 {
                    self.sizes.pop_front();
                }
            }
        }
        ready
    }
}

impl AsyncWrite for Cuts {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Sends `input` (then EOF) to `echo::run`, the server reading it in pieces of `cuts` bytes;
/// returns everything the client got back before the close, how the echo ended, and the tally.
fn echo(input: &[u8], cuts: &[usize]) -> (Vec<u8>, Ending, Tally) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let mut server = Cuts {
            inner: server,
            sizes: cuts.iter().copied().collect(),
        };
        let limits = EchoLimits {
            mode: Mode::Line,
            max_line: MAX_LINE,
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(60),
            max_bytes: None,
        };
        let mut tally = Tally::default();
        let stop = pin!(std::future::pending::<Stop>());
        let serve = echo::run(&mut server, &limits, stop, &mut tally);
        let talk = async {
            // The server may close early (after ERR): then the rest of the input cannot go.
            let _ = client.write_all(input).await;
            let _ = client.shutdown().await;
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.expect("read echo");
            got
        };
        let bounded =
            tokio::time::timeout(Duration::from_secs(10), async { tokio::join!(serve, talk) });
        let (ending, got) = bounded.await.expect("echo finished within 10 s");
        (got, ending, tally)
    })
}

/// Text without any control character other than TAB.
fn text(max_chars: usize) -> impl Strategy<Value = String> {
    let ch = any::<char>().prop_filter("controls", |c| !c.is_control() || *c == '\t');
    prop::collection::vec(ch, 0..=max_chars).prop_map(|v| v.into_iter().collect())
}

/// One valid line with its terminator (LF or CRLF); at most 40 chars, so within MAX_LINE.
fn line() -> impl Strategy<Value = Vec<u8>> {
    (text(40), any::<bool>()).prop_map(|(t, crlf)| {
        let mut l = t.into_bytes();
        l.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
        l
    })
}

/// Read sizes covering `len` bytes: each piece 1..=`len`, so a cut can fall anywhere,
/// including inside a UTF-8 sequence or between CR and LF.
fn cuts(len: usize) -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1..=len.max(1), 0..=len.min(64))
}

/// An offending byte sequence, what must follow it so that it stays offending, and the
/// violation it must produce.
fn offence() -> impl Strategy<Value = (Vec<u8>, Violation)> {
    let c0 = (0u8..0x20)
        .prop_filter("TAB, LF allowed; CR below", |b| {
            !matches!(b, b'\t' | b'\n' | b'\r')
        })
        .prop_map(|b| vec![b]);
    let c1 = (0x80u8..=0x9f).prop_map(|b| vec![0xc2, b]);
    let control = prop_oneof![
        c0,
        Just(vec![0x7f]),
        c1,
        Just(b"\rX".to_vec()), // CR not followed by LF
    ]
    .prop_map(|b| (b, Violation::ControlCharacter));
    let invalid = prop_oneof![
        prop::sample::select(vec![0xc0u8, 0xc1, 0xf5, 0xf8, 0xfe, 0xff]).prop_map(|b| vec![b]),
        (0x80u8..=0xbf).prop_map(|b| vec![b]), // a lone continuation byte
        Just(b"\xe2\x9cX".to_vec()),           // a sequence cut short by ASCII
        Just(b"\xed\xa0\x80".to_vec()),        // a UTF-16 surrogate
        Just(b"\xe0\x80\xaf".to_vec()),        // an overlong encoding
    ]
    .prop_map(|b| (b, Violation::InvalidUtf8));
    prop_oneof![control, invalid]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn valid_lines_come_back_exactly(
        (input, lines, cuts) in (prop::collection::vec(line(), 0..24), text(30))
            .prop_flat_map(|(lines, tail)| {
                let n = lines.len() as u64 + u64::from(!tail.is_empty());
                let mut input = lines.concat();
                input.extend_from_slice(tail.as_bytes());
                let len = input.len();
                (Just(input), Just(n), cuts(len))
            })
    ) {
        let (got, ending, tally) = echo(&input, &cuts);
        prop_assert_eq!(ending, Ending::Eof);
        prop_assert_eq!(&got, &input);
        prop_assert_eq!(tally.lines, lines);
        prop_assert_eq!(tally.bytes, input.len() as u64);
    }

    #[test]
    fn an_invalid_byte_gets_one_err_line_and_a_close(
        (good, input, want, cuts) in (
            prop::collection::vec(line(), 0..8),
            text(20),
            offence(),
            prop::collection::vec(any::<u8>(), 0..64),
        ).prop_flat_map(|(lines, head, (bad, want), after)| {
            let good = lines.concat();
            let input = [&good[..], head.as_bytes(), &bad, &after].concat();
            let len = input.len();
            (Just(good), Just(input), Just(want), cuts(len))
        })
    ) {
        let (got, ending, _) = echo(&input, &cuts);
        prop_assert_eq!(ending, Ending::Violation(want));
        prop_assert!(got.starts_with(&good), "echo of the valid lines first");
        let err = String::from_utf8(got[good.len()..].to_vec()).expect("ERR line is UTF-8");
        prop_assert!(err.starts_with(&format!("ERR {} ", want.code())), "{:?}", err);
        prop_assert_eq!(err.find('\n'), Some(err.len() - 1), "exactly one line, then the close");
    }
}
