//! Timeouts, abuse, graceful shutdown, hot reload, the config file and `check`. Loopback only,
//! bounded in count and time; timeouts are set short so the tests stay quick.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn open_fds(s: &Server) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", s.child.id()))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn rss_kib(s: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", s.child.id())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn stalled_handshakes_do_not_starve_others_and_are_dropped_at_the_deadline() {
    let pki = Pki::new();
    let s = pki.serve(&["--handshake-timeout", "2s"]);
    let before = open_fds(&s);
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
    assert!(
        s.log.wait_count("reason=\"timeout\"", 1),
        "{}",
        s.log.text()
    );
    drop(good);
    assert!(s.log.wait_count("closed duration_ms", 1));
    assert!(
        open_fds(&s) <= before + 1,
        "stalled sockets are gone: {} > {}",
        open_fds(&s),
        before
    );
}

#[tokio::test]
async fn a_client_that_never_reads_is_dropped_at_the_write_timeout_with_bounded_memory() {
    let pki = Pki::new();
    let s = pki.serve(&["--write-timeout", "2s"]);
    let rss_before = rss_kib(&s);
    let mut hog = connect(s.addr(), &pki.ca).await;
    let line = [b'x'; 1023]
        .iter()
        .copied()
        .chain([b'\n'])
        .collect::<Vec<u8>>();
    let mut written = 0usize;
    let outcome = tokio::time::timeout(DEADLINE, async {
        loop {
            if let Err(e) = hog.write_all(&line).await {
                return e;
            }
            written += line.len();
        }
    })
    .await
    .expect("the server drops the connection instead of buffering without bound");
    assert!(
        s.log
            .wait_for(|l| l.contains("reason=\"write-timeout\""))
            .is_some(),
        "{}",
        s.log.text()
    );
    let grown = rss_kib(&s).saturating_sub(rss_before);
    assert!(
        grown < 16 * 1024,
        "server grew by {grown} KiB while {written} bytes were pushed ({outcome})"
    );
    let mut other = connect(s.addr(), &pki.ca).await;
    assert_eq!(
        roundtrip(&mut other, b"unaffected\n", 11).await,
        b"unaffected\n"
    );
}

/// Starts a server with `extra`, sends `input`, and returns all it sent up to close_notify.
async fn until_close(pki: &Pki, extra: &[&str], input: &[u8]) -> String {
    let s = pki.serve(extra);
    let mut c = connect(s.addr(), &pki.ca).await;
    c.write_all(input).await.unwrap();
    let got = read_to_close(&mut c).await.expect("close_notify");
    String::from_utf8(got).unwrap()
}

#[tokio::test]
async fn idle_and_lifetime_and_byte_limits_end_with_an_err_line() {
    let pki = Pki::new();
    let cases: [(&[&str], &[u8], &str); 3] = [
        (
            &["--idle-timeout", "1s"],
            b"a partial line that never ends",
            "ERR idle-timeout ",
        ),
        (
            &["--max-conn-lifetime", "1s"],
            b"early\n",
            "early\nERR max-conn-lifetime ",
        ),
        (
            &["--max-conn-bytes", "10"],
            b"12345\n67890\n",
            "12345\nERR max-conn-bytes ",
        ),
    ];
    for (extra, input, want) in cases {
        let got = until_close(&pki, extra, input).await;
        assert!(got.starts_with(want), "{extra:?}: {got}");
    }
}

#[tokio::test]
async fn garbage_and_old_protocols_are_counted_once_loudly_and_disturb_nobody() {
    let pki = Pki::new();
    let s = pki.serve(&[]);
    let mut keep = connect(s.addr(), &pki.ca).await;
    for _ in 0..3 {
        let mut tcp = TcpStream::connect(s.addr()).await.unwrap();
        tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut rest = Vec::new();
        let _ = tcp.read_to_end(&mut rest).await;
    }
    let out = std::process::Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &s.addr().to_string(),
            "-tls1",
            "-cipher",
            "DEFAULT@SECLEVEL=0",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        !out.status.success() || String::from_utf8_lossy(&out.stdout).contains("Cipher is (NONE)")
    );
    assert!(
        s.log
            .wait_for(|l| l.contains("INFO")
                && l.contains("not-tls-or-malformed")
                && l.contains("first of its kind"))
            .is_some(),
        "{}",
        s.log.text()
    );
    assert!(
        s.log
            .wait_for(|l| l.contains("DEBUG") && l.contains("not-tls-or-malformed"))
            .is_some()
    );
    assert!(
        s.log
            .wait_for(|l| l.contains("protocol-version-or-suite"))
            .is_some(),
        "{}",
        s.log.text()
    );
    assert_eq!(roundtrip(&mut keep, b"fine\n", 5).await, b"fine\n");
}

#[test]
fn accept_errors_back_off_and_recover() {
    let pki = Pki::new();
    let mut a = args(&["--nofile=40:40", common::bin()]);
    a.extend(pki.args());
    a.extend(args(&["--listen", "127.0.0.1:0"]));
    let mut cmd = std::process::Command::new("prlimit");
    cmd.args(&a).env("RUST_LOG", "info");
    let s = Server::from_command(cmd, 1);
    let (addr, log) = (s.addr(), &s.log);
    let held: Vec<_> = (0..60)
        .filter_map(|_| std::net::TcpStream::connect(addr).ok())
        .collect();
    assert!(
        log.wait_for(|l| l.contains("accept failed; backing off"))
            .is_some(),
        "{}",
        log.text()
    );
    drop(held);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = connect(addr, &pki.ca).await;
        assert_eq!(roundtrip(&mut c, b"recovered\n", 10).await, b"recovered\n");
    });
}

#[tokio::test]
async fn graceful_shutdown_echoes_every_line_sent_before_the_signal() {
    let pki = Pki::new();
    let mut s = pki.serve(&[]);
    let config = client_config(&pki.ca, None);
    let sent: Arc<Vec<AtomicUsize>> = Arc::new((0..8).map(|_| AtomicUsize::new(0)).collect());
    let mut clients = Vec::new();
    for i in 0..8 {
        let tcp = TcpStream::connect(s.addr()).await.unwrap();
        let tls = tls_with(config.clone(), tcp).await.unwrap();
        let (mut rd, mut wr) = tokio::io::split(tls);
        let sent = Arc::clone(&sent);
        let writer = tokio::spawn(async move {
            for k in 0.. {
                let line = format!("client {i} line {k}\n");
                if wr.write_all(line.as_bytes()).await.is_err() || wr.flush().await.is_err() {
                    break;
                }
                sent[i].store(k + 1, Ordering::SeqCst);
                if k % 16 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        });
        let reader = tokio::spawn(async move { read_to_close(&mut rd).await });
        clients.push((writer, reader));
    }
    // Let every client get some lines through, then signal.
    while sent.iter().any(|n| n.load(Ordering::SeqCst) < 50) {
        tokio::task::yield_now().await;
    }
    let before: Vec<usize> = sent.iter().map(|n| n.load(Ordering::SeqCst)).collect();
    s.signal("TERM");
    for (i, (writer, reader)) in clients.into_iter().enumerate() {
        let echoed = reader.await.unwrap().expect("close_notify after the drain");
        writer.abort();
        let text = String::from_utf8(echoed).unwrap();
        assert!(text.is_empty() || text.ends_with('\n'), "whole lines only");
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines.len() >= before[i],
            "client {i}: {} echoed < {} sent before the signal",
            lines.len(),
            before[i]
        );
        for (k, l) in lines.iter().enumerate() {
            assert_eq!(*l, format!("client {i} line {k}"), "in order, nothing lost");
        }
    }
    assert!(
        s.wait_exit().success(),
        "exit status 0; log:\n{}",
        s.log.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_swaps_certificates_without_failing_a_handshake_and_keeps_them_on_error() {
    let pki = Pki::new();
    let s = pki.serve(&[]);
    let original = std::fs::read(&pki.cert).unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let successes = Arc::new(AtomicUsize::new(0));
    let hammer = {
        let (stop, failures, successes, ca, addr) = (
            stop.clone(),
            failures.clone(),
            successes.clone(),
            pki.ca.clone(),
            s.addr(),
        );
        tokio::spawn(async move {
            let config = client_config(&ca, None);
            while !stop.load(Ordering::SeqCst) {
                let ok = async {
                    let tcp = TcpStream::connect(addr).await.ok()?;
                    let mut c = tls_with(config.clone(), tcp).await.ok()?;
                    (roundtrip(&mut c, b"r\n", 2).await == b"r\n").then_some(())
                }
                .await;
                let counter = if ok.is_some() { &successes } else { &failures };
                counter.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    let mut last = Vec::new();
    for round in 1..=4 {
        let (cert, key) = pki.another_server(&format!("round{round}"));
        std::fs::copy(&cert, &pki.cert).unwrap();
        std::fs::copy(&key, &pki.key).unwrap();
        s.signal("HUP");
        assert!(
            s.log.wait_count("reload applied", round),
            "{}",
            s.log.text()
        );
        last = std::fs::read(&cert).unwrap();
        // Let handshakes run against the new material before the next swap.
        let seen = successes.load(Ordering::SeqCst);
        tokio::time::timeout(DEADLINE, async {
            while successes.load(Ordering::SeqCst) < seen + 20 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("handshakes go on after the reload");
    }
    stop.store(true, Ordering::SeqCst);
    hammer.await.unwrap();
    assert_eq!(
        failures.load(Ordering::SeqCst),
        0,
        "failed handshakes across reloads"
    );
    assert!(successes.load(Ordering::SeqCst) > 0);

    let served = served_cert_pem(s.addr(), &pki.ca).await;
    assert_eq!(
        served,
        pem_body(&last),
        "new connections see the new certificate"
    );
    assert_ne!(served, pem_body(&original));

    pki.write("server.key", "a key file damaged mid-rotation\n");
    s.signal("HUP");
    assert!(
        s.log
            .wait_for(|l| l.contains("reload failed") && l.contains("server.key"))
            .is_some(),
        "{}",
        s.log.text()
    );
    assert_eq!(
        served_cert_pem(s.addr(), &pki.ca).await,
        pem_body(&last),
        "a broken key changes nothing"
    );
}

fn pem_body(pem: &[u8]) -> Vec<u8> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem).unwrap().to_vec()
}

async fn served_cert_pem(addr: SocketAddr, ca: &std::path::Path) -> Vec<u8> {
    let c = connect(addr, ca).await;
    c.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

mod config_file {
    use super::*;

    /// Whether a line of `len` bytes (LF included) is echoed by a server with `extra` args
    /// and environment `env`.
    async fn accepts(pki: &Pki, extra: &[&str], env: &[(&str, &str)], len: usize) -> bool {
        let mut a = pki.args();
        a.extend(args(extra));
        a.extend(args(&["--listen", "127.0.0.1:0"]));
        let mut cmd = std::process::Command::new(bin());
        cmd.args(&a).env("RUST_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let s = Server::from_command(cmd, 1);
        let mut c = connect(s.addr(), &pki.ca).await;
        let msg: Vec<u8> = std::iter::repeat_n(b'a', len - 1).chain([b'\n']).collect();
        roundtrip(&mut c, &msg, msg.len()).await == msg
    }

    #[tokio::test]
    async fn flags_then_environment_then_file_then_defaults() {
        let pki = Pki::new();
        let file = pki.write(
            "tls-echo.toml",
            "# comment\nmax-line = 10\nidle-timeout = \"5m\"\n",
        );
        let cfg = file.display().to_string();
        assert!(
            !accepts(&pki, &["--config", &cfg], &[], 12).await,
            "file: 10"
        );
        assert!(
            accepts(
                &pki,
                &["--config", &cfg],
                &[("TLS_ECHO_MAX_LINE", "20")],
                12
            )
            .await,
            "env over file"
        );
        assert!(
            !accepts(
                &pki,
                &["--config", &cfg],
                &[("TLS_ECHO_MAX_LINE", "20")],
                25
            )
            .await,
            "env: 20"
        );
        assert!(
            accepts(
                &pki,
                &["--config", &cfg, "--max-line", "30"],
                &[("TLS_ECHO_MAX_LINE", "20")],
                25
            )
            .await,
            "flag over env"
        );
        assert!(accepts(&pki, &[], &[], 4000).await, "default 4096");
    }

    #[tokio::test]
    async fn relative_paths_in_the_file_are_relative_to_the_file() {
        let pki = Pki::new();
        let file = pki.write(
            "tls-echo.toml",
            "cert = \"server.pem\"\nkey = \"server.key\"\nlisten = [\"127.0.0.1:0\"]\n",
        );
        let elsewhere = tempfile::tempdir().unwrap();
        let s = Server::start_in(
            &args(&["--config", &file.display().to_string()]),
            Some(elsewhere.path()),
        );
        let mut c = connect(s.addr(), &pki.ca).await;
        assert_eq!(
            roundtrip(&mut c, b"via config\n", 11).await,
            b"via config\n"
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key_and_the_file() {
        let pki = Pki::new();
        for (text, needle) in [
            ("max-lines = 5\n", "max-lines"),
            ("idle-timeout = \"soon\"\n", "idle-timeout"),
            ("allow = [\"example.com\"]\n", "never consults DNS"),
        ] {
            let file = pki.write("bad.toml", text);
            let mut a = pki.args();
            a.extend(args(&["--config", &file.display().to_string()]));
            let (code, out) = run_to_end(&a, None);
            assert_eq!(code, 2, "{out}");
            assert!(
                out.contains("bad.toml") && out.contains(needle),
                "{needle}: {out}"
            );
        }
    }
}

mod check_command {
    use super::*;
    use tls_echo::tools::certs::Validity;

    fn check(pki: &Pki, extra: &[&str]) -> (i32, String) {
        let mut a = args(&["check"]);
        a.extend(pki.args());
        a.extend(args(extra));
        run_to_end(&a, None)
    }

    #[test]
    fn good_configuration_passes_with_a_readable_report() {
        let pki = Pki::new();
        let (code, out) = check(&pki, &["--allow", "10.0.0.0/8", "--peer", "10.1.2.3"]);
        assert_eq!(code, 0, "{out}");
        for needle in [
            "match",
            "valid for",
            "localhost, 127.0.0.1, ::1",
            "peer 10.1.2.3 is admitted by 10.0.0.0/8 (--allow)",
            "0 error(s)",
        ] {
            assert!(out.contains(needle), "{needle}: {out}");
        }
    }

    #[test]
    fn expiry_permissions_and_files_are_reported() {
        let now = time::OffsetDateTime::now_utc();
        let soon = Pki::with_validity(Validity {
            not_before: now - time::Duration::days(1),
            not_after: now + time::Duration::days(5),
        });
        let (code, out) = check(&soon, &[]);
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("warn  certificate expires in"), "{out}");

        let expired = Pki::with_validity(Validity {
            not_before: now - time::Duration::days(9),
            not_after: now - time::Duration::days(2),
        });
        let (code, out) = check(&expired, &[]);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("FAIL  certificate expired"), "{out}");

        use std::os::unix::fs::PermissionsExt;
        let pki = Pki::new();
        std::fs::set_permissions(&pki.key, std::fs::Permissions::from_mode(0o640)).unwrap();
        let (code, out) = check(&pki, &[]);
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("group-readable"), "{out}");
        std::fs::set_permissions(&pki.key, std::fs::Permissions::from_mode(0o604)).unwrap();
        let (code, out) = check(&pki, &[]);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("readable by every user"), "{out}");

        let file = pki.write("allow.txt", "10.0.0.0/8\nexample.org\n");
        std::fs::set_permissions(&pki.key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let (code, out) = check(&pki, &["--allow-file", &file.display().to_string()]);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("allow.txt:2"), "{out}");
    }
}
