//! ALPN (`--alpn`, `TLS_ECHO_ALPN`) against `openssl s_client` (issue 13).

mod common;
mod tls_pki;

use std::process::Command;

use common::*;
use tls_pki::*;

#[tokio::test]
async fn alpn_follows_server_preference_and_refuses_no_overlap() {
    let pki = OpensslPki::new();
    let s = start(with(
        pki.sni_args(),
        &["--alpn", "h2", "--alpn", "http/1.1"],
    ))
    .await;
    let seen = s_client(&pki, s.addr(), &["-alpn", "http/1.1,h2"]).await;
    assert!(
        seen.echoed && seen.text.contains("ALPN protocol: h2"),
        "{}",
        seen.text
    );
    assert!(
        s.log
            .wait_for(|l| l.contains("connected") && l.contains("alpn=\"h2\""))
            .await
            .is_some(),
        "{}",
        s.log.text()
    );
    let seen = s_client(&pki, s.addr(), &["-alpn", "http/1.1"]).await;
    assert!(
        seen.echoed && seen.text.contains("ALPN protocol: http/1.1"),
        "{}",
        seen.text
    );
    let seen = s_client(&pki, s.addr(), &["-alpn", "spdy/1"]).await;
    assert!(!seen.echoed, "{}", seen.text);
    assert!(
        seen.text.contains("no application protocol"),
        "{}",
        seen.text
    );
    let seen = s_client(&pki, s.addr(), &[]).await;
    assert!(
        seen.echoed && seen.text.contains("No ALPN negotiated"),
        "{}",
        seen.text
    );
}

/// A subprocess: the process environment is the subject (setting a variable in this test
/// process would race with every other test that parses options).
#[tokio::test]
async fn alpn_from_the_environment() {
    let pki = OpensslPki::new();
    let mut cmd = Command::new(bin());
    cmd.args(pki.sni_args())
        .args(["--listen", "127.0.0.1:0"])
        .env("TLS_ECHO_ALPN", "echo/1,h2")
        .env("RUST_LOG", "info");
    let s = Server::from_command(cmd, 1);
    let seen = s_client(&pki, s.addr(), &["-alpn", "h2,echo/1"]).await;
    assert!(
        seen.echoed && seen.text.contains("ALPN protocol: echo/1"),
        "{}",
        seen.text
    );
}
