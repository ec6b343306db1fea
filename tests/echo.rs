//! The line protocol and raw mode, end to end over real TLS.

mod common;

use common::*;
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn echoes_lines_byte_for_byte_then_closes_cleanly_at_eof() {
    let (pki, s) = served(&[]).await;
    let mut c = connect(s.addr(), &pki.ca).await;
    let sent = "hello\r\ntab\there\nüñíçødé ✓\n\n";
    assert_eq!(
        roundtrip(&mut c, sent.as_bytes(), sent.len()).await,
        sent.as_bytes()
    );
    c.write_all(b"partial, no terminator").await.unwrap();
    c.shutdown().await.unwrap();
    assert_eq!(
        read_to_close(&mut c).await.expect("close_notify"),
        b"partial, no terminator"
    );
    assert!(
        s.log
            .wait_for(|l| l.contains("closed") && l.contains("lines=5"))
            .await
            .is_some(),
        "{}",
        s.log.text()
    );
}

#[tokio::test]
async fn two_hundred_concurrent_clients_each_get_their_own_echo() {
    let (pki, s) = served(&[]).await;
    let config = client_config(&pki.ca, None);
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let config = config.clone();
            let addr = s.addr();
            tokio::spawn(async move {
                let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
                let mut c = tls_with(config, tcp).await.unwrap();
                let msg = format!("client {i} line one\nclient {i} line two\n");
                let got = roundtrip(&mut c, msg.as_bytes(), msg.len()).await;
                assert_eq!(got, msg.as_bytes());
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

/// Sends `input`, expects the echo of the valid lines, one ERR line, close_notify.
async fn expect_err(extra: &[&str], input: &[u8], echoed: &[u8], code: &str) {
    let (pki, s) = served(extra).await;
    let mut c = connect(s.addr(), &pki.ca).await;
    c.write_all(input).await.unwrap();
    c.flush().await.unwrap();
    let got = read_to_close(&mut c)
        .await
        .expect("the server ends with close_notify");
    let text = String::from_utf8_lossy(&got);
    let (before, err) = got.split_at(echoed.len().min(got.len()));
    assert_eq!(before, echoed, "{text}");
    let err = String::from_utf8_lossy(err);
    assert!(
        err.starts_with(&format!("ERR {code} ")) && err.ends_with('\n'),
        "{text}"
    );
    assert_eq!(err.matches('\n').count(), 1, "exactly one ERR line: {text}");
    // Other clients are still served.
    let mut other = connect(s.addr(), &pki.ca).await;
    assert_eq!(
        roundtrip(&mut other, b"still here\n", 11).await,
        b"still here\n"
    );
}

#[tokio::test]
async fn control_character_is_refused_after_earlier_lines_are_echoed() {
    expect_err(
        &[],
        b"fine\nbell\x07\nnever\n",
        b"fine\n",
        "control-character",
    )
    .await;
}

#[tokio::test]
async fn escape_sequences_and_bare_cr_are_refused() {
    expect_err(&[], b"\x1b[2Jclear\n", b"", "control-character").await;
    expect_err(&[], b"ok\r\nover\rwrite\n", b"ok\r\n", "control-character").await;
}

#[tokio::test]
async fn invalid_utf8_is_refused() {
    expect_err(&[], b"good\nbad \xc3\x28 utf8\n", b"good\n", "invalid-utf8").await;
}

#[tokio::test]
async fn invalid_bytes_are_refused_before_the_line_ends() {
    expect_err(&[], b"ok\nno end \xff", b"ok\n", "invalid-utf8").await;
}

#[tokio::test]
async fn line_too_long_counts_the_terminator() {
    // 16 bytes including LF is the most --max-line 16 allows.
    let fits = b"123456789012345\n";
    expect_err(
        &["--max-line", "16"],
        b"123456789012345\n1234567890123456\n",
        fits,
        "line-too-long",
    )
    .await;
}

#[tokio::test]
async fn invalid_partial_line_at_eof_gets_an_error() {
    let (pki, s) = served(&[]).await;
    let mut c = connect(s.addr(), &pki.ca).await;
    c.write_all(b"ok\nend\x01").await.unwrap();
    c.shutdown().await.unwrap();
    let got = read_to_close(&mut c).await.unwrap();
    assert!(
        got.starts_with(b"ok\nERR control-character "),
        "{}",
        String::from_utf8_lossy(&got)
    );
}

#[tokio::test]
async fn raw_mode_echoes_any_bytes() {
    let (pki, s) = served(&["--mode", "raw"]).await;
    let mut c = connect(s.addr(), &pki.ca).await;
    let data: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    assert_eq!(roundtrip(&mut c, &data, data.len()).await, data);
}

#[tokio::test]
async fn serves_ipv6_loopback() {
    let (pki, s) = served(&["--listen", "[::1]:0", "--listen", "127.0.0.1:0"]).await;
    let v6 = s
        .addrs
        .iter()
        .find(|a| a.is_ipv6())
        .copied()
        .expect("v6 listener");
    let mut c = connect(v6, &pki.ca).await;
    assert_eq!(roundtrip(&mut c, b"over v6\n", 8).await, b"over v6\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn client_subcommand_verifies_and_echoes() {
    let (pki, s) = served(&[]).await;
    let out = std::process::Command::new(bin())
        .args(["client", "--connect", &s.addr().to_string(), "--ca"])
        .arg(&pki.ca)
        .stdin(std::fs::File::open(pki.write("in.txt", "one\ntwo\n")).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"one\ntwo\n");

    let other = Pki::new();
    let out = std::process::Command::new(bin())
        .args(["client", "--connect", &s.addr().to_string(), "--ca"])
        .arg(&other.ca)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("invalid peer certificate"),
        "{err}"
    );
}
