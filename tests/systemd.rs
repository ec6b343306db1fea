//! The systemd protocols without systemd: sd_notify messages on a datagram socket the test
//! owns (READY, RELOADING with MONOTONIC_USEC, STOPPING, WATCHDOG), and socket activation
//! through `systemd-socket-activate` (LISTEN_FDS, with a second socket named "metrics").
//! The units under a real systemd are checked by .ci/checks/40-nspawn.sh.

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::Command;

use common::*;
use tokio::io::AsyncWriteExt;

/// The next notification that is not a watchdog ping.
fn next_state(sock: &UnixDatagram, log: &Log) -> String {
    let mut buf = [0u8; 4096];
    loop {
        let n = sock
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no notification ({e}); log:\n{}", log.text()));
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        if msg != "WATCHDOG=1\n" {
            return msg;
        }
    }
}

#[test]
fn notifies_ready_reloading_stopping_and_pings_the_watchdog() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).expect("bind notify socket");
    sock.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let mut cmd = Command::new(bin());
    cmd.args(pki.args())
        .args(["--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "200000");
    let s = Server::from_command(cmd, 1);

    assert_eq!(next_state(&sock, &s.log), "READY=1\n");
    // Logged before READY=1 was sent; the log reader may lag behind the datagram.
    for line in [" listening ", "self-test passed"] {
        assert!(
            s.log.wait_for(|l| l.contains(line)).is_some(),
            "{}",
            s.log.text()
        );
    }
    let mut buf = [0u8; 64];
    let n = sock.recv(&mut buf).expect("a watchdog ping every 100 ms");
    assert_eq!(&buf[..n], b"WATCHDOG=1\n");

    s.signal("HUP");
    let reloading = next_state(&sock, &s.log);
    let mut lines = reloading.lines();
    assert_eq!(lines.next(), Some("RELOADING=1"), "{reloading}");
    let usec = lines.next().and_then(|l| l.strip_prefix("MONOTONIC_USEC="));
    assert!(
        usec.is_some_and(|u| u.parse::<u64>().is_ok()),
        "{reloading}"
    );
    assert_eq!(
        next_state(&sock, &s.log),
        "READY=1\nSTATUS=serving; last reload applied\n"
    );

    s.signal("TERM");
    assert_eq!(next_state(&sock, &s.log), "STOPPING=1\n");
}

#[tokio::test]
async fn serves_on_sockets_passed_by_socket_activation() {
    let pki = Pki::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let metrics = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let mut cmd = Command::new("systemd-socket-activate");
    cmd.arg(format!("--listen={port}"))
        .arg(format!("--listen={metrics}"))
        .arg("--fdname=echo:metrics")
        .arg(bin())
        .args(pki.args())
        // Must be ignored in favour of the passed socket.
        .args(["--listen", "127.0.0.1:1"])
        .env("RUST_LOG", "info");
    let s = Server::spawn(cmd);
    let ready = s
        .log
        .wait_for(|l| l.contains("Listening on") && l.contains(&metrics.to_string()));
    assert!(
        ready.is_some(),
        "systemd-socket-activate did not start (it comes with the systemd package: `bash .ci/setup.sh`); log:\n{}",
        s.log.text()
    );

    let mut c = connect(port, &pki.ca).await;
    assert_eq!(roundtrip(&mut c, b"activated\n", 10).await, b"activated\n");
    c.shutdown().await.unwrap();
    assert!(
        s.log
            .wait_for(|l| l.contains("socket activation: serving on the sockets systemd passed"))
            .is_some(),
        "{}",
        s.log.text()
    );
    assert!(
        s.log.wait_for(|l| l.contains("metrics_addr=")).is_some(),
        "{}",
        s.log.text()
    );

    let mut tcp = tokio::net::TcpStream::connect(metrics)
        .await
        .expect("metrics");
    tcp.write_all(b"GET /metrics HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    let body = String::from_utf8(read_n(&mut tcp, usize::MAX).await).unwrap();
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
    assert!(
        body.contains("tls_echo_connections_accepted_total 1"),
        "{body}"
    );
}
