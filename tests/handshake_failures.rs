//! Clients that do not speak TLS, or speak a version the server refuses: each failed handshake
//! is counted by reason, the first of each reason logged at INFO and later ones at DEBUG, and
//! nobody else is disturbed. In-process; `openssl s_client` runs on a blocking thread so that
//! the server keeps running on this thread and its log is captured.

mod common;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn garbage_and_old_protocols_are_counted_once_loudly_and_disturb_nobody() {
    let (pki, s) = served(&[]).await;
    let mut keep = connect(s.addr(), &pki.ca).await;
    for _ in 0..3 {
        let mut tcp = TcpStream::connect(s.addr()).await.unwrap();
        tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut rest = Vec::new();
        let _ = tcp.read_to_end(&mut rest).await;
    }
    let addr = s.addr().to_string();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &addr,
                "-tls1",
                "-cipher",
                "DEFAULT@SECLEVEL=0",
            ])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        !out.status.success() || String::from_utf8_lossy(&out.stdout).contains("Cipher is (NONE)")
    );
    assert!(
        s.log
            .wait_for(|l| l.contains("INFO")
                && l.contains("not-tls-or-malformed")
                && l.contains("first of its kind"))
            .await
            .is_some(),
        "{}",
        s.log.text()
    );
    assert!(
        s.log
            .wait_for(|l| l.contains("DEBUG") && l.contains("not-tls-or-malformed"))
            .await
            .is_some()
    );
    assert!(
        s.log
            .wait_for(|l| l.contains("protocol-version-or-suite"))
            .await
            .is_some(),
        "{}",
        s.log.text()
    );
    assert_eq!(
        s.log.count("first of its kind"),
        2,
        "one INFO line per reason; log:\n{}",
        s.log.text()
    );
    assert_eq!(
        s.metric("tls_echo_handshake_failures_total{reason=\"not-tls-or-malformed\"}"),
        3.0
    );
    assert_eq!(
        s.metric("tls_echo_handshake_failures_total{reason=\"protocol-version-or-suite\"}"),
        1.0
    );
    assert_eq!(roundtrip(&mut keep, b"fine\n", 5).await, b"fine\n");
}
