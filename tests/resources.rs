//! What abusive clients cost the server process: its memory (VmRSS) while a client never
//! reads, and running out of descriptors (EMFILE under prlimit). These measure or limit the
//! process, so the server runs as one. The deadlines themselves are in tests/timeouts.rs.

mod common;

use common::*;
use tokio::io::AsyncWriteExt;

fn rss_kib(s: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", s.child.id())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn a_client_that_never_reads_is_dropped_with_bounded_memory() {
    let pki = Pki::new();
    let s = pki.serve(&["--write-timeout", "500ms"]);
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
