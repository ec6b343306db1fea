//! The negotiated TLS policy, asserted from the client side against the real server: versions,
//! cipher suites and key-exchange groups, with rustls clients restricted on purpose and with
//! OpenSSL's s_client as the classical peer.

mod common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;

use common::*;
use rustls::crypto::{SupportedKxGroup, aws_lc_rs};
use rustls::{CipherSuite, NamedGroup, ProtocolVersion, SupportedCipherSuite};
use rustls::{SupportedProtocolVersion, version};

/// A rustls client trusting `pki`'s CA, restricted to `versions`, and to `suites` / `groups`
/// when given (otherwise aws-lc-rs's defaults: X25519MLKEM768 first).
fn client(
    pki: &Pki,
    versions: &[&'static SupportedProtocolVersion],
    suites: Option<Vec<SupportedCipherSuite>>,
    groups: Option<Vec<&'static dyn SupportedKxGroup>>,
) -> Arc<rustls::ClientConfig> {
    let mut provider = aws_lc_rs::default_provider();
    if let Some(s) = suites {
        provider.cipher_suites = s;
    }
    if let Some(g) = groups {
        provider.kx_groups = g;
    }
    let mut roots = rustls::RootCertStore::empty();
    for cert in tls_echo::tls::read_certs(&pki.ca, "CA").expect("ca") {
        roots.add(cert).expect("root");
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(versions)
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// What a handshake negotiated.
#[derive(Debug, PartialEq, Eq)]
struct Negotiated {
    version: ProtocolVersion,
    suite: CipherSuite,
    group: NamedGroup,
}

/// Handshakes with `config`, checks the echo, returns what was negotiated, or the error.
async fn negotiate(
    addr: std::net::SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<Negotiated> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let mut tls = tls_with(config, tcp).await?;
    assert_eq!(roundtrip(&mut tls, b"policy\n", 7).await, b"policy\n");
    let conn = tls.get_ref().1;
    Ok(Negotiated {
        version: conn.protocol_version().expect("version"),
        suite: conn.negotiated_cipher_suite().expect("suite").suite(),
        group: conn.negotiated_key_exchange_group().expect("group").name(),
    })
}

#[tokio::test]
async fn default_client_gets_tls13_with_the_post_quantum_hybrid() {
    let (pki, s) = served(&[]).await;
    let n = negotiate(
        s.addr(),
        client(&pki, &[&version::TLS13, &version::TLS12], None, None),
    )
    .await
    .expect("handshake");
    assert_eq!(n.version, ProtocolVersion::TLSv1_3);
    assert_eq!(n.group, NamedGroup::X25519MLKEM768);
}

#[tokio::test]
async fn classical_only_clients_fall_back_to_x25519_or_p256() {
    let (pki, s) = served(&[]).await;
    for (group, name) in [
        (aws_lc_rs::kx_group::X25519, NamedGroup::X25519),
        (aws_lc_rs::kx_group::SECP256R1, NamedGroup::secp256r1),
    ] {
        for v in [&version::TLS13, &version::TLS12] {
            let n = negotiate(s.addr(), client(&pki, &[v], None, Some(vec![group])))
                .await
                .unwrap_or_else(|e| panic!("{name:?} over {:?}: {e}", v.version));
            assert_eq!((n.version, n.group), (v.version, name));
        }
    }
}

#[tokio::test]
async fn every_tls13_suite_is_available() {
    let (pki, s) = served(&[]).await;
    for suite in aws_lc_rs::ALL_CIPHER_SUITES
        .iter()
        .filter(|s| s.version() == &version::TLS13)
    {
        let n = negotiate(
            s.addr(),
            client(&pki, &[&version::TLS13], Some(vec![*suite]), None),
        )
        .await
        .unwrap_or_else(|e| panic!("{:?}: {e}", suite.suite()));
        assert_eq!(n.suite, suite.suite());
    }
}

#[tokio::test]
async fn tls12_offers_only_ecdhe_aead_suites() {
    let (pki, s) = served(&[]).await;
    let mut accepted = Vec::new();
    for suite in aws_lc_rs::ALL_CIPHER_SUITES
        .iter()
        .filter(|s| s.version() == &version::TLS12)
    {
        let config = client(&pki, &[&version::TLS12], Some(vec![*suite]), None);
        if let Ok(n) = negotiate(s.addr(), config).await {
            assert_eq!(
                (n.version, n.suite),
                (ProtocolVersion::TLSv1_2, suite.suite())
            );
            accepted.push(n.suite);
        }
    }
    // The leaf is ECDSA P-256, so the ECDSA-authenticated suites are the ones that can work.
    assert_eq!(
        accepted,
        [
            CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        ]
    );
    // Whatever else OpenSSL can offer (CBC, RSA or DHE key exchange, CCM, ARIA, ...) is refused.
    let out = s_client(
        s.addr(),
        &pki,
        &[
            "-tls1_2",
            "-cipher",
            "ALL:COMPLEMENTOFALL:!ECDHE+AESGCM:!ECDHE+CHACHA20:@SECLEVEL=0",
        ],
        None,
    )
    .await;
    assert!(
        !out.status.success()
            && (out.text.contains("Cipher is (NONE)") || out.text.contains("handshake failure")),
        "{}",
        out.text
    );
}

#[tokio::test]
async fn tls13_only_refuses_tls12() {
    let (pki, s) = served(&["--tls13-only"]).await;
    let err = negotiate(s.addr(), client(&pki, &[&version::TLS12], None, None))
        .await
        .expect_err("TLS 1.2 must be refused");
    assert!(
        err.to_string().contains("PeerIncompatible") || err.to_string().contains("alert"),
        "{err}"
    );
    let n = negotiate(s.addr(), client(&pki, &[&version::TLS13], None, None))
        .await
        .expect("TLS 1.3 still works");
    assert_eq!(n.version, ProtocolVersion::TLSv1_3);
}

#[tokio::test]
async fn openssl_3_0_negotiates_x25519() {
    let version = Command::new("openssl")
        .arg("version")
        .output()
        .expect("openssl");
    let version = String::from_utf8_lossy(&version.stdout).into_owned();
    let (pki, s) = served(&[]).await;
    for v in ["-tls1_3", "-tls1_2"] {
        let out = s_client(s.addr(), &pki, &[v, "-brief"], Some(b"group\n")).await;
        assert!(out.status.success(), "{v}: {}", out.text);
        assert!(out.text.contains("Verification: OK"), "{v}: {}", out.text);
        let group = out
            .text
            .lines()
            .find_map(|l| l.trim().strip_prefix("Server Temp Key: "))
            .unwrap_or_else(|| panic!("{v}: no 'Server Temp Key' in {}", out.text));
        if version.starts_with("OpenSSL 3.0") {
            // OpenSSL 3.0 has no ML-KEM: the server must settle on its classical first choice.
            assert!(group.starts_with("X25519,"), "{v} with {version}: {group}");
        } else {
            assert!(group.starts_with("X25519"), "{v} with {version}: {group}");
        }
    }
}

/// Output of one s_client run.
struct SClient {
    status: std::process::ExitStatus,
    text: String,
}

/// Runs `openssl s_client` with chain and IP verification against `addr`. With `echo`, sends
/// it and keeps stdin open until it comes back (so the session is not cut short), then closes.
/// The child and the blocking reads run on tokio's blocking pool, so the in-process server on
/// the test's (current-thread) runtime keeps serving meanwhile.
async fn s_client(
    addr: std::net::SocketAddr,
    pki: &Pki,
    extra: &[&str],
    echo: Option<&[u8]>,
) -> SClient {
    let ca = pki.ca.clone();
    let extra: Vec<String> = extra.iter().map(|a| a.to_string()).collect();
    let echo = echo.map(<[u8]>::to_vec);
    let run = tokio::task::spawn_blocking(move || s_client_blocking(addr, ca, &extra, echo));
    tokio::time::timeout(DEADLINE * 3, run)
        .await
        .expect("s_client did not finish within the deadline")
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

fn s_client_blocking(
    addr: std::net::SocketAddr,
    ca: std::path::PathBuf,
    extra: &[String],
    echo: Option<Vec<u8>>,
) -> SClient {
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &addr.to_string(),
            "-verify_return_error",
        ])
        .arg("-CAfile")
        .arg(ca)
        .args(["-verify_ip", &addr.ip().to_string()])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl s_client");
    let mut stdin = child.stdin.take().expect("stdin");
    let (tx, rx) = mpsc::channel();
    for mut pipe in [
        Box::new(child.stdout.take().expect("stdout")) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().expect("stderr")),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut buf) {
                if tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
    let mut got = Vec::new();
    if let Some(msg) = echo.as_deref() {
        stdin.write_all(msg).expect("write to s_client");
        let until = std::time::Instant::now() + DEADLINE;
        while !got.windows(msg.len()).any(|w| w == msg) {
            let left = until.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(chunk) => got.extend(chunk),
                Err(_) => break,
            }
        }
    }
    drop(stdin);
    while let Ok(chunk) = rx.recv_timeout(DEADLINE) {
        got.extend(chunk);
    }
    let status = child.wait().expect("s_client exit");
    SClient {
        status,
        text: String::from_utf8_lossy(&got).into_owned(),
    }
}
