//! `--metrics-listen`: scrape /metrics over real HTTP and watch the counters move after an
//! echo, a refusal and a protocol error; the responder's bounds and 404.
//!
//! The server and its metrics endpoint run in-process, bound and served by the same calls the
//! binary makes; one test runs the binary, where SIGTERM and the process exit are the subject.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use common::*;
use tls_echo::process::scrape;
use tls_echo::process::systemd::Passed;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// Serves in-process with `--metrics-listen 127.0.0.1:0` plus `extra`, and serves /metrics as
/// the binary does (the listener bound from the configuration by `Passed::metrics_listener`,
/// `scrape::serve` on it with the server's counters); returns the server and the metrics
/// address.
async fn served_with_metrics(extra: &[&str]) -> (Pki, Served, SocketAddr) {
    let pki = Pki::new();
    let mut a = vec!["--metrics-listen", "127.0.0.1:0"];
    a.extend_from_slice(extra);
    let s = pki.served(&a).await;
    let listener = Passed::default()
        .metrics_listener(s.server.config().metrics_listen)
        .expect("bind --metrics-listen")
        .expect("a metrics listener");
    let addr = listener.local_addr().unwrap();
    // Dropped with the test's runtime; the binary stops it with the server's shutdown token.
    tokio::spawn(scrape::serve(
        listener,
        Arc::clone(s.server.metrics()),
        CancellationToken::new(),
    ));
    (pki, s, addr)
}

/// Starts the binary with metrics on an ephemeral loopback port; returns it and that port
/// (which only its log names).
fn server_with_metrics(extra: &[&str]) -> (Pki, Server, SocketAddr) {
    let pki = Pki::new();
    let mut a = pki.args();
    a.extend(args(&["--metrics-listen", "127.0.0.1:0"]));
    a.extend(args(extra));
    let s = Server::start(&a);
    let line = s
        .log
        .wait_for(|l| l.contains("metrics_addr="))
        .unwrap_or_else(|| panic!("no metrics endpoint; log:\n{}", s.log.text()));
    let addr = line
        .split("metrics_addr=")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .and_then(|t| t.parse().ok())
        .expect("metrics_addr=ADDR");
    (pki, s, addr)
}

/// Sends `request` and returns the whole response (the server closes after one).
async fn http(addr: SocketAddr, request: &[u8]) -> String {
    let mut tcp = TcpStream::connect(addr).await.expect("connect to metrics");
    tcp.write_all(request).await.expect("write request");
    let mut out = Vec::new();
    tokio::time::timeout(DEADLINE, tcp.read_to_end(&mut out))
        .await
        .expect("metrics response within the deadline")
        .expect("read response");
    String::from_utf8(out).expect("UTF-8 response")
}

/// GET /metrics; returns the body after checking the status.
async fn scrape(addr: SocketAddr) -> String {
    let response = http(addr, b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n").await;
    let (head, body) = response.split_once("\r\n\r\n").expect("head and body");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(head.contains("openmetrics-text"), "{head}");
    body.to_string()
}

/// The value of the sample named exactly `series` (name with labels), 0 when absent.
fn value(body: &str, series: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn counters_move_after_an_echo_a_refusal_and_a_protocol_error() {
    let (pki, s, metrics) = served_with_metrics(&["--allow", "127.0.0.1"]).await;
    let before = scrape(metrics).await;
    assert_eq!(value(&before, "tls_echo_connections_accepted_total"), 0.0);
    assert!(
        before.contains("tls_echo_certificate_expiry_seconds"),
        "{before}"
    );
    assert!(value(&before, "tls_echo_certificate_expiry_seconds") > 29.0 * 86_400.0);

    // An echo.
    let mut c = connect(s.addr(), &pki.ca).await;
    assert_eq!(roundtrip(&mut c, b"one\ntwo\n", 8).await, b"one\ntwo\n");
    c.shutdown().await.unwrap();
    let _ = read_to_close(&mut c).await;
    assert!(
        s.log.wait_count("reason=\"client-closed\"", 1).await,
        "{}",
        s.log.text()
    );

    // A refusal: 127.0.0.2 is not on the allowlist.
    let src: IpAddr = "127.0.0.2".parse().unwrap();
    let mut refused = tcp_from(src, s.addr()).await.expect("tcp connect");
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(DEADLINE, refused.read(&mut buf)).await;
    assert!(matches!(n, Ok(Ok(0)) | Ok(Err(_))), "refused peer got data");
    assert!(
        s.log
            .wait_for(|l| l.contains("refused") && l.contains("127.0.0.2"))
            .await
            .is_some(),
        "{}",
        s.log.text()
    );

    // A protocol error: a control character.
    let mut bad = connect(s.addr(), &pki.ca).await;
    bad.write_all(b"ok\nbad\x01line\n").await.unwrap();
    bad.flush().await.unwrap();
    let _ = read_to_close(&mut bad).await;
    // Having read the ERR line and close_notify, the client closes: that ends the server's
    // linger at once, instead of after its quiet period.
    drop(bad);
    assert!(
        s.log.wait_count("reason=\"control-character\"", 1).await,
        "{}",
        s.log.text()
    );

    let after = scrape(metrics).await;
    assert_eq!(value(&after, "tls_echo_connections_accepted_total"), 3.0);
    assert_eq!(
        value(
            &after,
            "tls_echo_connections_refused_total{reason=\"not-allowed\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            "tls_echo_protocol_errors_total{code=\"control-character\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            "tls_echo_connections_closed_total{reason=\"client-closed\"}"
        ),
        1.0
    );
    assert_eq!(value(&after, "tls_echo_lines_echoed_total"), 3.0);
    assert_eq!(value(&after, "tls_echo_bytes_echoed_total"), 11.0);
    assert_eq!(
        value(&after, "tls_echo_handshake_duration_seconds_count"),
        2.0
    );
    assert_eq!(value(&after, "tls_echo_connections_active"), 0.0);
}

/// The reload SIGHUP runs (`Server::reload`), once with good files and once with a broken
/// certificate.
#[tokio::test]
async fn reloads_are_counted_by_outcome() {
    let (pki, s, metrics) = served_with_metrics(&[]).await;
    s.server.reload().expect("reload");
    assert!(
        s.log.wait_count("reload applied", 1).await,
        "{}",
        s.log.text()
    );
    let body = scrape(metrics).await;
    assert_eq!(
        value(&body, "tls_echo_reloads_total{outcome=\"success\"}"),
        1.0
    );
    assert_eq!(
        value(&body, "tls_echo_reloads_total{outcome=\"failure\"}"),
        0.0
    );

    pki.write("server.pem", "not a certificate\n");
    assert!(s.server.reload().is_err());
    let body = scrape(metrics).await;
    assert_eq!(
        value(&body, "tls_echo_reloads_total{outcome=\"success\"}"),
        1.0
    );
    assert_eq!(
        value(&body, "tls_echo_reloads_total{outcome=\"failure\"}"),
        1.0
    );
}

#[tokio::test]
async fn anything_but_get_metrics_is_refused_and_the_head_is_bounded() {
    let (_pki, _s, metrics) = served_with_metrics(&[]).await;
    let r = http(metrics, b"GET / HTTP/1.1\r\n\r\n").await;
    assert!(r.starts_with("HTTP/1.1 404 "), "{r}");
    let r = http(metrics, b"POST /metrics HTTP/1.1\r\n\r\n").await;
    assert!(r.starts_with("HTTP/1.1 405 "), "{r}");
    // Exactly the 8 KiB bound with no blank line: all of it is read, so the close is clean.
    let mut huge = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
    huge.resize(8 * 1024, b'x');
    let r = http(metrics, &huge).await;
    assert!(r.starts_with("HTTP/1.1 431 "), "{r}");
}

/// The binary: SIGTERM stops the echo server and the metrics endpoint together, and the
/// process exits.
#[tokio::test]
async fn the_metrics_endpoint_does_not_hold_up_shutdown() {
    let (_pki, mut s, metrics) = server_with_metrics(&[]);
    let _ = scrape(metrics).await;
    s.signal("TERM");
    assert!(s.wait_exit().success(), "{}", s.log.text());
    assert!(s.log.text().contains("drained=true"), "{}", s.log.text());
}
