//! The allowlist firewall, per-peer limits, mutual TLS and PROXY protocol, end to end. Source
//! addresses anywhere in 127.0.0.0/8 are local, so tests bind clients to 127.0.0.2, .3, ...
//!
//! The server runs in-process (current-thread, so its log lines are captured per test); a
//! reload is `Server::reload`, what SIGHUP runs. Only start-up errors and the `check`
//! subcommand, whose exit code and wording are the subject, run the binary.

mod common;

use std::net::{IpAddr, SocketAddr};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Echo over TLS from source `src`.
async fn echo_from(pki: &Pki, src: &str, addr: SocketAddr) -> std::io::Result<Vec<u8>> {
    let tcp = tcp_from(ip(src), addr).await?;
    let mut c = tls_with(client_config(&pki.ca, None), tcp).await?;
    Ok(roundtrip(&mut c, b"ping\n", 5).await)
}

/// Connects from `src`, sends the start of a ClientHello, and returns every byte the server
/// sent before closing: a refused peer must get none (no ServerHello, no alert).
async fn bytes_before_close(src: &str, addr: SocketAddr) -> Vec<u8> {
    let mut tcp = tcp_from(ip(src), addr)
        .await
        .expect("the TCP connect itself succeeds");
    let _ = tcp
        .write_all(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03")
        .await;
    let mut got = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, tcp.read_to_end(&mut got))
        .await
        .expect("server closes at once");
    got
}

#[tokio::test]
async fn default_admits_loopback_only_and_says_so() {
    let pki = Pki::new();
    let s = pki.served(&[]).await;
    // What start-up announces (main calls this with the bound listeners).
    tls_echo::process::startup::announce(&s.server, &[]);
    assert!(
        s.log
            .wait_for(|l| l.contains("only loopback peers"))
            .await
            .is_some(),
        "{}",
        s.log.text()
    );
    assert_eq!(
        echo_from(&pki, "127.0.0.9", s.addr()).await.unwrap(),
        b"ping\n"
    );
}

/// `check --peer` exits 1 for a peer the default allowlist refuses.
#[test]
fn check_says_a_remote_peer_is_refused_by_default() {
    let pki = Pki::new();
    let mut a = pki.args();
    a.insert(0, "check".into());
    a.extend(args(&["--peer", "192.0.2.1"]));
    let (code, out) = run_to_end(&a, None);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("peer 192.0.2.1 is refused"), "{out}");
}

#[tokio::test]
async fn refused_peer_gets_no_tls_byte_and_others_are_served() {
    let pki = Pki::new();
    let s = pki
        .served(&["--allow", "127.0.0.2", "--allow", "10.0.0.0/8"])
        .await;
    assert_eq!(bytes_before_close("127.0.0.3", s.addr()).await, b"");
    assert!(echo_from(&pki, "127.0.0.3", s.addr()).await.is_err());
    assert_eq!(
        echo_from(&pki, "127.0.0.2", s.addr()).await.unwrap(),
        b"ping\n"
    );
    assert!(
        s.log
            .wait_for(|l| l.contains("connection refused before TLS")
                && l.contains("peer=127.0.0.3")
                && l.contains("not-allowed"))
            .await
            .is_some()
    );
}

#[tokio::test]
async fn cidr_ranges_and_any() {
    let pki = Pki::new();
    let s = pki.served(&["--allow", "127.0.0.0/30"]).await;
    assert!(echo_from(&pki, "127.0.0.3", s.addr()).await.is_ok());
    assert_eq!(bytes_before_close("127.0.0.4", s.addr()).await, b"");
    assert!(s.stop().await);
    let s = pki.served(&["--allow", "any"]).await;
    assert!(echo_from(&pki, "127.0.0.200", s.addr()).await.is_ok());
}

#[test]
fn host_names_and_bad_entries_stop_start_up() {
    let pki = Pki::new();
    let mut a = pki.args();
    a.extend(args(&["--allow", "localhost"]));
    let (code, out) = run_to_end(&a, None);
    assert_eq!(code, 2);
    assert!(out.contains("access control never consults DNS"), "{out}");

    let file = pki.write(
        "allow.txt",
        "# trusted\n127.0.0.2\n\n10.0.0.0/8  # lan\n10.1.2.3/8\n",
    );
    let mut a = pki.args();
    a.extend(args(&[
        "--allow-file",
        &file.display().to_string(),
        "--listen",
        "127.0.0.1:0",
    ]));
    let (code, out) = run_to_end(&a, None);
    assert_eq!(code, 2);
    assert!(
        out.contains("allow.txt:5: '10.1.2.3/8' has host bits set; did you mean 10.0.0.0/8?"),
        "{out}"
    );
}

#[tokio::test]
async fn ipv4_mapped_peers_on_a_dual_stack_listener_match_as_ipv4() {
    let pki = Pki::new();
    let s = pki
        .served(&["--listen", "[::]:0", "--allow", "127.0.0.2"])
        .await;
    let v4 = SocketAddr::new(ip("127.0.0.1"), s.addr().port());
    assert!(echo_from(&pki, "127.0.0.2", v4).await.is_ok());
    assert_eq!(bytes_before_close("127.0.0.3", v4).await, b"");
    assert!(
        s.log
            .wait_for(|l| l.contains("peer=127.0.0.3"))
            .await
            .is_some(),
        "logged as IPv4: {}",
        s.log.text()
    );
}

#[tokio::test]
async fn reload_tightening_closes_open_connections_and_a_broken_file_changes_nothing() {
    let pki = Pki::new();
    let file = pki.write("allow.txt", "127.0.0.2\n127.0.0.3\n");
    let s = pki
        .served(&["--allow-file", &file.display().to_string()])
        .await;
    let config = client_config(&pki.ca, None);
    let mut keep = tls_with(
        config.clone(),
        tcp_from(ip("127.0.0.2"), s.addr()).await.unwrap(),
    )
    .await
    .unwrap();
    let mut cut = tls_with(
        config.clone(),
        tcp_from(ip("127.0.0.3"), s.addr()).await.unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(roundtrip(&mut cut, b"before\n", 7).await, b"before\n");

    pki.write("allow.txt", "127.0.0.2\n");
    s.server.reload().expect("reload");
    assert_eq!(read_to_close(&mut cut).await.expect("close_notify"), b"");
    assert!(
        s.log
            .wait_for(|l| l.contains("closed") && l.contains("access-revoked"))
            .await
            .is_some(),
        "{}",
        s.log.text()
    );
    assert_eq!(roundtrip(&mut keep, b"still\n", 6).await, b"still\n");

    pki.write("allow.txt", "127.0.0.2\nnot-an-address!\n");
    // What SIGHUP logs as "reload failed; ..." is this error.
    let failed = s
        .server
        .reload()
        .expect_err("a broken allow-file fails the reload");
    assert!(failed.to_string().contains("allow.txt:2"), "{failed}");
    assert_eq!(s.metric("tls_echo_reloads_total{outcome=\"failure\"}"), 1.0);
    assert_eq!(roundtrip(&mut keep, b"kept\n", 5).await, b"kept\n");
    assert_eq!(
        echo_from(&pki, "127.0.0.2", s.addr()).await.unwrap(),
        b"ping\n"
    );
    assert_eq!(bytes_before_close("127.0.0.3", s.addr()).await, b"");
}

#[tokio::test]
async fn per_ip_and_global_connection_caps() {
    let pki = Pki::new();
    let s = pki
        .served(&["--max-conns-per-ip", "2", "--max-conns", "3"])
        .await;
    let config = client_config(&pki.ca, None);
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = tls_with(
            config.clone(),
            tcp_from(ip("127.0.0.2"), s.addr()).await.unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(roundtrip(&mut c, b"x\n", 2).await, b"x\n"); // established, counted
        held.push(c);
    }
    assert_eq!(bytes_before_close("127.0.0.2", s.addr()).await, b"");
    assert!(
        s.log
            .wait_for(|l| l.contains("max-conns-per-ip"))
            .await
            .is_some()
    );
    let mut third = tls_with(
        config.clone(),
        tcp_from(ip("127.0.0.3"), s.addr()).await.unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(roundtrip(&mut third, b"y\n", 2).await, b"y\n");
    assert_eq!(bytes_before_close("127.0.0.4", s.addr()).await, b"");
    assert!(
        s.log
            .wait_for(|l| l.contains("reason=\"max-conns\"") || l.contains("reason=max-conns "))
            .await
            .is_some(),
        "{}",
        s.log.text()
    );
    drop(held);
    assert!(s.log.wait_count("closed duration_ms", 2).await);
    assert!(
        echo_from(&pki, "127.0.0.2", s.addr()).await.is_ok(),
        "slots are released on close"
    );
}

#[tokio::test]
async fn rate_limit_with_burst() {
    let pki = Pki::new();
    let s = pki
        .served(&["--rate-per-ip", "0.001", "--rate-burst", "3"])
        .await;
    for _ in 0..3 {
        assert!(echo_from(&pki, "127.0.0.2", s.addr()).await.is_ok());
    }
    assert_eq!(bytes_before_close("127.0.0.2", s.addr()).await, b"");
    assert!(
        s.log
            .wait_for(|l| l.contains("rate-per-ip"))
            .await
            .is_some()
    );
    assert!(
        echo_from(&pki, "127.0.0.3", s.addr()).await.is_ok(),
        "other peers have their own bucket"
    );
}

#[tokio::test]
async fn audit_mode_admits_but_reports() {
    let pki = Pki::new();
    let s = pki
        .served(&["--allow", "127.0.0.2", "--firewall-mode", "audit"])
        .await;
    assert_eq!(
        echo_from(&pki, "127.0.0.3", s.addr()).await.unwrap(),
        b"ping\n"
    );
    assert!(
        s.log
            .wait_for(|l| l.contains("audit: enforcement would refuse") && l.contains("127.0.0.3"))
            .await
            .is_some()
    );
}

#[tokio::test]
async fn refusal_logs_are_rate_limited() {
    let pki = Pki::new();
    let s = pki.served(&["--allow", "127.0.0.2"]).await;
    for _ in 0..60 {
        let _ = bytes_before_close("127.0.0.3", s.addr()).await;
    }
    // Each refusal is logged (or suppressed) before the server closes that connection, which
    // bytes_before_close waited for; and one accept loop handles connections in order.
    assert_eq!(
        s.metric("tls_echo_connections_refused_total{reason=\"not-allowed\"}"),
        60.0
    );
    assert!(echo_from(&pki, "127.0.0.2", s.addr()).await.is_ok());
    assert!(
        s.log
            .wait_for(|l| l.contains("peer=127.0.0.2") && l.contains("connected"))
            .await
            .is_some()
    );
    let logged = s
        .log
        .text()
        .matches("connection refused before TLS")
        .count();
    // 10 a second are logged; the flood may straddle one window boundary.
    assert!(
        (1..=20).contains(&logged),
        "{logged} refusal lines for 60 refusals"
    );
}

mod mutual_tls {
    use super::*;

    async fn handshake(
        pki: &Pki,
        s: &Served,
        identity: Option<(&std::path::Path, &std::path::Path)>,
    ) -> std::io::Result<Vec<u8>> {
        let tcp = TcpStream::connect(s.addr()).await?;
        let mut c = tls_with(client_config(&pki.ca, identity), tcp).await?;
        // TLS 1.3: a refused client certificate surfaces on the first read.
        c.write_all(b"hi\n").await?;
        let mut buf = [0u8; 16];
        let n = c.read(&mut buf).await?;
        Ok(buf[..n].to_vec())
    }

    #[tokio::test]
    async fn each_outcome_is_enforced_and_logged() {
        let pki = Pki::new();
        let (alice, alice_key) = pki.client("alice");
        let (mallory, mallory_key) = pki.client("mallory");
        let stranger = Pki::new();
        let (eve, eve_key) = stranger.client("alice");
        let ca = pki.ca.display().to_string();
        let s = pki
            .served(&["--client-ca", &ca, "--allow-client", "alice"])
            .await;

        assert_eq!(
            handshake(&pki, &s, Some((&alice, &alice_key)))
                .await
                .unwrap(),
            b"hi\n"
        );
        assert!(handshake(&pki, &s, None).await.is_err());
        assert!(
            s.log
                .wait_for(|l| l.contains("client-cert-missing"))
                .await
                .is_some(),
            "{}",
            s.log.text()
        );
        assert!(
            handshake(&pki, &s, Some((&mallory, &mallory_key)))
                .await
                .is_err()
        );
        assert!(
            s.log
                .wait_for(|l| l.contains("client-name-not-allowed"))
                .await
                .is_some(),
            "{}",
            s.log.text()
        );
        assert!(handshake(&pki, &s, Some((&eve, &eve_key))).await.is_err());
        assert!(
            s.log
                .wait_for(|l| l.contains("reason=\"client-cert-") && !l.contains("missing"))
                .await
                .is_some(),
            "{}",
            s.log.text()
        );
    }

    /// `check --client-cert` exits 1 for a certificate whose name is not allowed.
    #[test]
    fn check_says_a_client_name_would_be_refused() {
        let pki = Pki::new();
        let (mallory, _) = pki.client("mallory");
        let ca = pki.ca.display().to_string();
        let mut a = pki.args();
        a.insert(0, "check".into());
        a.extend(args(&[
            "--client-ca",
            &ca,
            "--allow-client",
            "alice",
            "--peer",
            "127.0.0.1",
            "--client-cert",
            &mallory.display().to_string(),
        ]));
        let (code, out) = run_to_end(&a, None);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("would be refused"), "{out}");
    }
}

mod proxy_protocol {
    use super::*;

    fn v1(src: &str) -> String {
        format!("PROXY TCP4 {src} 127.0.0.1 40000 443\r\n")
    }

    async fn via_proxy(
        pki: &Pki,
        s: &Served,
        from: &str,
        header: &[u8],
    ) -> std::io::Result<Vec<u8>> {
        let mut tcp = tcp_from(ip(from), s.addr()).await?;
        tcp.write_all(header).await?;
        let mut c = tls_with(client_config(&pki.ca, None), tcp).await?;
        Ok(roundtrip(&mut c, b"ping\n", 5).await)
    }

    #[tokio::test]
    async fn trusted_proxies_name_the_client_and_others_are_not_believed() {
        let pki = Pki::new();
        let s = pki
            .served(&[
                "--proxy-protocol",
                "--trusted-proxy",
                "127.0.0.1/32",
                "--allow",
                "192.0.2.7",
                "--allow",
                "127.0.0.5",
            ])
            .await;
        assert_eq!(
            via_proxy(&pki, &s, "127.0.0.1", v1("192.0.2.7").as_bytes())
                .await
                .unwrap(),
            b"ping\n"
        );
        assert!(
            s.log
                .wait_for(|l| l.contains("peer=192.0.2.7") && l.contains("via=127.0.0.1"))
                .await
                .is_some(),
            "{}",
            s.log.text()
        );
        assert!(
            via_proxy(&pki, &s, "127.0.0.1", v1("192.0.2.8").as_bytes())
                .await
                .is_err()
        );
        assert!(
            s.log
                .wait_for(|l| l.contains("peer=192.0.2.8") && l.contains("not-allowed"))
                .await
                .is_some()
        );
        // An untrusted peer's header is not believed: it is not TLS, so the handshake fails.
        assert!(
            via_proxy(&pki, &s, "127.0.0.5", v1("192.0.2.7").as_bytes())
                .await
                .is_err()
        );
        // A trusted proxy that sends no header is cut off and counted.
        assert!(via_proxy(&pki, &s, "127.0.0.1", b"").await.is_err());
        assert!(
            s.log
                .wait_for(|l| l.contains("proxy-header"))
                .await
                .is_some(),
            "{}",
            s.log.text()
        );
    }

    /// A balancer that opens connections and is slow to speak holds places under --max-conns
    /// from accept: past the cap a silent connection is closed at once, not at the handshake
    /// timeout, and a place frees when a held connection closes.
    #[tokio::test]
    async fn silent_proxy_connections_count_against_max_conns_from_accept() {
        let pki = Pki::new();
        let s = pki
            .served(&[
                "--proxy-protocol",
                "--trusted-proxy",
                "127.0.0.1/32",
                "--max-conns",
                "2",
                "--handshake-timeout",
                "60s",
            ])
            .await;
        let mut held = Vec::new();
        for _ in 0..2 {
            held.push(tcp_from(ip("127.0.0.1"), s.addr()).await.unwrap());
        }
        let mut third = tcp_from(ip("127.0.0.1"), s.addr()).await.unwrap();
        let mut byte = [0u8; 1];
        let closed = tokio::time::timeout(DEADLINE, third.read(&mut byte)).await;
        assert!(
            matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
            "the third silent connection must be closed at once: {closed:?}\n{}",
            s.log.text()
        );
        assert!(
            s.log.wait_for(|l| l.contains("max-conns")).await.is_some(),
            "{}",
            s.log.text()
        );
        drop(held.pop());
        // Its end is seen as a missing header; the place is freed as that task returns, in the
        // same poll that logged it (the server's tasks run on this thread), so the next
        // connection gets it at the first attempt.
        assert!(
            s.log
                .wait_for(|l| l.contains("\"proxy-header\""))
                .await
                .is_some(),
            "{}",
            s.log.text()
        );
        let echo = via_proxy(&pki, &s, "127.0.0.1", v1("127.0.0.1").as_bytes()).await;
        assert_eq!(
            echo.ok().as_deref(),
            Some(&b"ping\n"[..]),
            "{}",
            s.log.text()
        );
    }

    #[test]
    fn proxy_protocol_requires_trusted_proxies() {
        let pki = Pki::new();
        let mut a = pki.args();
        a.push("--proxy-protocol".into());
        let (code, out) = run_to_end(&a, None);
        assert_eq!(code, 2, "{out}");
        assert!(out.contains("--trusted-proxy"), "{out}");
    }
}
