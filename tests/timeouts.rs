//! Deadlines and per-connection limits: the handshake timeout, the write timeout, the idle
//! timeout, the connection lifetime and byte limits. In-process under paused time: tokio
//! advances the clock only when every task waits, so each deadline fires as soon as nothing
//! else can happen, and the virtual clock says when it fired. Real loopback I/O throughout.
//! The server process's memory under a client that never reads, and running out of
//! descriptors, are in tests/resources.rs.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// How long after a deadline (virtual time) its effect may be seen: timer resolution.
const SLACK: Duration = Duration::from_millis(10);

/// TCP sockets whose local end is `addr` (the server's side of its connections, not the
/// listener) that some process still holds open: the kernel lists a socket nobody holds any
/// more (closed, in FIN_WAIT, LAST_ACK or TIME_WAIT) with inode 0. In-process this stands
/// for the server's descriptor count, which would also count the clients' sockets and those
/// of tests running alongside.
fn held_server_sockets(addr: SocketAddr) -> usize {
    let SocketAddr::V4(v4) = addr else {
        panic!("IPv4 only: {addr}")
    };
    let local = format!(
        "{:08X}:{:04X}",
        u32::from_le_bytes(v4.ip().octets()),
        v4.port()
    );
    std::fs::read_to_string("/proc/net/tcp")
        .expect("/proc/net/tcp")
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f[1] == local && f[3] != "0A" && f[9] != "0")
        .count()
}

#[tokio::test(start_paused = true)]
async fn stalled_handshakes_do_not_starve_others_and_are_dropped_at_the_deadline() {
    let (pki, s) = served(&["--handshake-timeout", "2s"]).await;
    let timeout = Duration::from_secs(2);
    let start = Instant::now();
    let mut stalled = Vec::new();
    for i in 0..500u32 {
        let src: IpAddr = [127, 0, 1, (i % 5) as u8 + 10].into();
        let mut tcp = tcp_from(src, s.addr()).await.unwrap();
        tcp.write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01")
            .await
            .unwrap(); // a ClientHello that never ends
        stalled.push(tcp);
    }
    let mut good = connect(s.addr(), &pki.ca).await;
    assert_eq!(
        roundtrip(&mut good, b"served meanwhile\n", 17).await,
        b"served meanwhile\n"
    );
    // Served while every stalled handshake was still pending, not after their deadline.
    assert!(start.elapsed() < timeout, "{:?}", start.elapsed());
    assert_eq!(
        s.metric("tls_echo_handshake_failures_total{reason=\"timeout\"}"),
        0.0
    );
    assert_eq!(
        held_server_sockets(s.addr()),
        501,
        "the server holds the stalled sockets and the good one"
    );
    for mut tcp in stalled {
        let mut rest = Vec::new();
        let r = tokio::time::timeout(DEADLINE, tcp.read_to_end(&mut rest))
            .await
            .expect("dropped at the handshake timeout");
        assert!(
            r.is_err() || rest.is_empty(),
            "no handshake bytes for a stalled ClientHello"
        );
    }
    let waited = start.elapsed();
    assert!(
        waited >= timeout && waited < timeout + SLACK,
        "dropped at the deadline, not before or long after: {waited:?}"
    );
    assert!(
        s.log.wait_count("reason=\"timeout\"", 1).await,
        "{}",
        s.log.text()
    );
    assert_eq!(
        s.metric("tls_echo_handshake_failures_total{reason=\"timeout\"}"),
        500.0
    );
    drop(good);
    assert!(s.log.wait_count("closed duration_ms", 1).await);
    assert_eq!(held_server_sockets(s.addr()), 0, "stalled sockets are gone");
}

#[tokio::test(start_paused = true)]
async fn a_client_that_never_reads_is_dropped_at_the_write_timeout_with_bounded_buffering() {
    let (pki, s) = served(&["--write-timeout", "2s"]).await;
    let mut hog = connect(s.addr(), &pki.ca).await;
    let line = [b'x'; 1023]
        .iter()
        .copied()
        .chain([b'\n'])
        .collect::<Vec<u8>>();
    // Far above what the socket buffers on both sides and the server's one buffer can take:
    // a server that went on reading without writing would take it all.
    const UNBOUNDED: usize = 64 << 20;
    let mut written = 0usize;
    let outcome = tokio::time::timeout(DEADLINE, async {
        while written < UNBOUNDED {
            if let Err(e) = hog.write_all(&line).await {
                return Some(e);
            }
            written += line.len();
        }
        None
    })
    .await
    .expect("the server drops the connection instead of buffering without bound");
    assert!(
        outcome.is_some(),
        "the server took {written} bytes from a client that reads nothing"
    );
    assert!(
        s.log
            .wait_for(|l| l.contains("reason=\"write-timeout\""))
            .await
            .is_some(),
        "{}",
        s.log.text()
    );
    assert_eq!(
        s.metric("tls_echo_connections_closed_total{reason=\"write-timeout\"}"),
        1.0
    );
    let mut other = connect(s.addr(), &pki.ca).await;
    assert_eq!(
        roundtrip(&mut other, b"unaffected\n", 11).await,
        b"unaffected\n"
    );
}

/// Serves with `extra`, sends `input`, and returns all the server sent up to close_notify
/// and how long (virtual time) that took.
async fn until_close(pki: &Pki, extra: &[&str], input: &[u8]) -> (String, Duration, Served) {
    let s = pki.served(extra).await;
    let start = Instant::now();
    let mut c = connect(s.addr(), &pki.ca).await;
    c.write_all(input).await.unwrap();
    let got = read_to_close(&mut c).await.expect("close_notify");
    let took = start.elapsed();
    drop(c);
    (String::from_utf8(got).unwrap(), took, s)
}

#[tokio::test(start_paused = true)]
async fn idle_and_lifetime_and_byte_limits_end_with_an_err_line() {
    let pki = Pki::new();
    let second = Duration::from_secs(1);
    // (options, what the client sends, what it reads back first, when the close must come)
    type Case = (
        &'static [&'static str],
        &'static [u8],
        &'static str,
        Option<Duration>,
    );
    let cases: [Case; 3] = [
        (
            &["--idle-timeout", "1s"],
            b"a partial line that never ends",
            "ERR idle-timeout ",
            Some(second),
        ),
        (
            &["--max-conn-lifetime", "1s"],
            b"early\n",
            "early\nERR max-conn-lifetime ",
            Some(second),
        ),
        (
            &["--max-conn-bytes", "10"],
            b"12345\n67890\n",
            "12345\nERR max-conn-bytes ",
            None,
        ),
    ];
    for (extra, input, want, after) in cases {
        let (got, took, s) = until_close(&pki, extra, input).await;
        assert!(got.starts_with(want), "{extra:?}: {got}");
        if let Some(after) = after {
            assert!(
                took >= after && took < after + SLACK,
                "{extra:?}: at the limit, not before or long after: {took:?}"
            );
        }
        // The close is counted once the lingering close after the ERR line ends.
        let reason = want.split('\n').next_back().unwrap()["ERR ".len()..].trim_end();
        let closed = format!("reason=\"{reason}\"");
        assert!(
            s.log
                .wait_for(|l| l.contains(" closed ") && l.contains(&closed))
                .await
                .is_some(),
            "{}",
            s.log.text()
        );
        assert_eq!(
            s.metric(&format!(
                "tls_echo_connections_closed_total{{reason=\"{reason}\"}}"
            )),
            1.0,
            "{extra:?}"
        );
    }
}
