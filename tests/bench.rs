//! `tls-echo bench` end to end: every mode against a real server, in line and raw mode, each
//! for a fraction of a second. Asserts the JSON result line (no errors, work done), never a
//! rate.

mod common;

use std::process::Command;

use common::*;

/// The limits a load test from one address needs (the defaults allow 100 new connections/s).
const LIFTED: [&str; 8] = [
    "--max-conns-per-ip",
    "100000",
    "--rate-per-ip",
    "1000000",
    "--rate-burst",
    "1000000",
    "--max-conns",
    "1000",
];

fn bench(s: &Server, pki: &Pki, mode_args: &[&str]) -> serde_json::Value {
    let out = Command::new(bin())
        .arg("bench")
        .args(mode_args)
        .args(["--connect", &s.addr().to_string(), "--ca"])
        .arg(&pki.ca)
        .args(["--duration", "300ms", "--warmup", "100ms", "--json"])
        .args(["--source-ip", "127.0.0.1-127.0.0.3"])
        .args(["--server-pid", &s.child.id().to_string()])
        .env("RUST_LOG", "warn")
        .output()
        .expect("run tls-echo bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{mode_args:?}: {stdout}\n{stderr}");
    assert!(
        stderr.contains("errors             none"),
        "table: {stderr}"
    );
    serde_json::from_str(stdout.trim()).expect("one JSON line on stdout")
}

#[test]
fn every_mode_runs_clean_against_line_and_raw_mode() {
    for mode in ["line", "raw"] {
        let pki = Pki::new();
        let mut a = pki.args();
        a.extend(args(&LIFTED));
        a.extend(args(&["--mode", mode]));
        let s = Server::start(&a);
        let r = bench(&s, &pki, &["handshake", "--conns", "4"]);
        assert!(r["ops"].as_u64().unwrap() > 0, "{r}");
        assert!(r["server_cpu_s"].is_number(), "{r}");
        let r = bench(&s, &pki, &["pingpong", "--conns", "8", "--size", "100"]);
        assert!(
            r["ops"].as_u64().unwrap() > 0 && r["p99_us"].is_u64(),
            "{r}"
        );
        let r = bench(&s, &pki, &["bulk", "--conns", "2", "--size", "5000"]);
        assert!(r["mb_per_s"].as_f64().unwrap() > 0.0, "{r}");
        let r = bench(&s, &pki, &["idle", "--conns", "50"]);
        assert_eq!(r["alive"], 50, "{r}");
        assert!(r["kib_per_conn"].is_number(), "{r}");
        let r = bench(&s, &pki, &["handshake", "--conns", "2", "--resume"]);
        assert!(r["ops"].as_u64().unwrap() > 0, "{r}");
    }
}

#[test]
fn connection_failures_are_counted_and_fail_the_run() {
    let pki = Pki::new();
    // Nothing listens on this port once the listener is dropped.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = Command::new(bin())
        .args(["bench", "pingpong", "--conns", "3", "--json"])
        .args(["--connect", &format!("127.0.0.1:{port}"), "--ca"])
        .arg(&pki.ca)
        .args(["--duration", "100ms", "--warmup", "0s"])
        .output()
        .expect("run tls-echo bench");
    assert!(!out.status.success());
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON line");
    assert_eq!(r["errors"]["connect"], 3, "{r}");
    assert_eq!(r["established"], 0, "{r}");
}
