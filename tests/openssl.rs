//! Interop with the real `openssl s_client`, verifying the chain and the IP SAN.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use common::*;

/// The in-process server on this (current-thread) runtime; s_client and the blocking reads of
/// its output on tokio's blocking pool, so the server keeps serving meanwhile.
async fn s_client_echo(version: &'static str) {
    let pki = Pki::new();
    let s = pki.served(&[]).await;
    let (addr, ca) = (s.addr(), pki.ca.clone());
    let run = tokio::task::spawn_blocking(move || s_client_run(addr, &ca, version));
    tokio::time::timeout(DEADLINE * 2, run)
        .await
        .expect("s_client did not finish within the deadline")
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
}

fn s_client_run(addr: std::net::SocketAddr, ca: &std::path::Path, version: &str) {
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &addr.to_string(),
            version,
            "-brief",
            "-verify_return_error",
            "-verify_ip",
            "127.0.0.1",
            "-CAfile",
        ])
        .arg(ca)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl s_client (bash .ci/setup.sh installs it)");
    let line = format!("hello from s_client {version}\n");
    child
        .stdin
        .as_mut()
        .unwrap()
        .write_all(line.as_bytes())
        .unwrap();
    let mut echoed = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut echoed)
        .unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    let info = String::from_utf8_lossy(&out.stderr);
    assert_eq!(echoed, line, "s_client said:\n{info}");
    assert!(info.contains("Verification: OK"), "{info}");
    let want = if version == "-tls1_3" {
        "TLSv1.3"
    } else {
        "TLSv1.2"
    };
    assert!(
        info.contains(&format!("Protocol version: {want}")),
        "{info}"
    );
}

#[tokio::test]
async fn openssl_s_client_tls13_verifies_and_gets_its_echo() {
    s_client_echo("-tls1_3").await;
}

#[tokio::test]
async fn openssl_s_client_tls12_verifies_and_gets_its_echo() {
    s_client_echo("-tls1_2").await;
}
