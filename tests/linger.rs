//! Lingering close: an `ERR` line reaches a client that is still sending when it is decided,
//! and a client that never stops sending is closed at the linger bound.

mod common;

use common::*;
use tls_echo::echo::line::Violation;
use tokio::io::AsyncWriteExt;

/// Sends `payload` in one write, then reads to the close: the reply is `echoed` followed by
/// exactly the `ERR` line for `code` and close_notify, never a reset.
async fn err_arrives(pki: &Pki, s: &Served, payload: &[u8], echoed: &[u8], err: &str) {
    let mut c = connect(s.addr(), &pki.ca).await;
    c.write_all(payload)
        .await
        .expect("the whole write is taken, not reset");
    c.flush().await.expect("flush");
    let got = read_to_close(&mut c)
        .await
        .map_err(|(got, e)| format!("{e} after {:?}", String::from_utf8_lossy(&got)))
        .expect("ERR line, then close_notify");
    let mut want = echoed.to_vec();
    want.extend_from_slice(err.as_bytes());
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&want)
    );
}

/// The close event of a line-too-long connection says how long it lingered.
async fn assert_close_event_has_linger_time(s: &Served) {
    let closed = s
        .log
        .wait_for(|l| l.contains("reason=\"line-too-long\"") && l.contains("linger_ms="))
        .await;
    assert!(closed.is_some(), "{}", s.log.text());
}

fn err_line(code: &str, message: &str) -> String {
    format!("ERR {code} {message}\n")
}

#[tokio::test]
async fn streaming_past_max_line_still_gets_the_err_line() {
    let (pki, s) = served(&["--max-line", "1024"]).await;
    let too_long = err_line("line-too-long", Violation::LineTooLong.message());
    for size in [100_000, 1_000_000] {
        for _ in 0..5 {
            err_arrives(&pki, &s, &vec![b'a'; size], b"", &too_long).await;
        }
    }
    assert_close_event_has_linger_time(&s).await;
}

#[tokio::test]
async fn every_err_cause_mid_stream_reaches_the_client() {
    let (pki, s) = served(&["--max-conn-bytes", "1000"]).await;
    let mut bad_utf8 = b"ok\n\xff".to_vec();
    bad_utf8.resize(1_000_000, b'a');
    let mut control = b"ok\n\x07".to_vec();
    control.resize(1_000_000, b'a');
    let lines: Vec<u8> = std::iter::repeat_n(&[b'x'; 99][..], 10_000)
        .flat_map(|l| l.iter().copied().chain([b'\n']))
        .collect();
    let first_ten = &lines[..1000];
    for _ in 0..3 {
        let utf8 = err_line("invalid-utf8", Violation::InvalidUtf8.message());
        err_arrives(&pki, &s, &bad_utf8, b"ok\n", &utf8).await;
        let ctl = err_line("control-character", Violation::ControlCharacter.message());
        err_arrives(&pki, &s, &control, b"ok\n", &ctl).await;
        let limit = err_line("max-conn-bytes", "connection byte limit reached");
        err_arrives(&pki, &s, &lines, first_ten, &limit).await;
    }
}

#[tokio::test]
async fn a_client_that_never_stops_sending_is_closed_at_the_linger_bound() {
    let (pki, s) = served(&["--max-line", "1024"]).await;
    let c = connect(s.addr(), &pki.ca).await;
    let (mut rd, mut wr) = tokio::io::split(c);
    let reader = tokio::spawn(async move { read_to_close(&mut rd).await });
    // Bounded: 1 GiB at most, far beyond the server's 64 MiB linger budget.
    let chunk = vec![b'a'; 64 * 1024];
    let mut written = 0usize;
    let mut ended = false;
    while written < 1 << 30 {
        if wr.write_all(&chunk).await.is_err() || wr.flush().await.is_err() {
            ended = true;
            break;
        }
        written += chunk.len();
    }
    assert!(ended, "the server never closed a client that kept sending");
    assert!(written >= 64 << 20, "closed after only {written} bytes");
    let got = match reader.await.unwrap() {
        Ok(got) | Err((got, _)) => got,
    };
    let want = err_line("line-too-long", Violation::LineTooLong.message());
    assert_eq!(String::from_utf8_lossy(&got), want);
    assert_close_event_has_linger_time(&s).await;
}
