//! Behind a real HAProxy on loopback (TCP mode, PROXY protocol v2, health checks with
//! check-send-proxy): the allowlist applies to the client address in the PROXY header, and
//! two instances share the load and survive one of them stopping. Uses deploy/haproxy/.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::*;
use tokio::io::AsyncWriteExt;

/// A foreground HAProxy, killed on drop.
struct Haproxy {
    child: Child,
    log: Log,
    frontend: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    /// Runs `haproxy -db -f CONFIG` with `env`; `frontend` is the address it binds.
    fn start(config: &Path, env: &[(&str, String)], frontend: SocketAddr) -> Haproxy {
        let dir = tempfile::tempdir().expect("tempdir");
        let check = Command::new("haproxy")
            .arg("-c")
            .arg("-f")
            .arg(config)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .output();
        let check = match check {
            Ok(out) => out,
            Err(e) => panic!(
                "cannot run haproxy ({e}): it is not installed; `bash .ci/setup.sh` installs it (Debian package haproxy)"
            ),
        };
        assert!(
            check.status.success(),
            "haproxy -c refused {}:\n{}",
            config.display(),
            String::from_utf8_lossy(&check.stderr)
        );
        let mut child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(config)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn haproxy");
        let log = Log::default();
        log.follow(child.stdout.take().expect("stdout"));
        log.follow(child.stderr.take().expect("stderr"));
        Haproxy {
            child,
            log,
            frontend,
            _dir: dir,
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nothing listens on right now (HAProxy cannot report a port-0 bind).
fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr")
}

fn shipped_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/haproxy/haproxy.cfg")
}

/// Waits until HAProxy's health checks reach `server` (so HAProxy is up and bound).
fn wait_for_checks(server: &Server, proxy: &Haproxy) {
    assert!(
        server.log.wait_count("PROXY LOCAL header", 1),
        "no health check reached the server; haproxy log:\n{}\nserver log:\n{}",
        proxy.log.text(),
        server.log.text()
    );
}

/// Connects from `src` through the proxy and echoes one line; Err if the TLS handshake fails.
async fn echo_from(src: IpAddr, proxy: &Haproxy, pki: &Pki, line: &str) -> std::io::Result<()> {
    let tcp = tcp_from(src, proxy.frontend).await?;
    let mut tls = tls_with(client_config(&pki.ca, None), tcp).await?;
    let got = roundtrip(&mut tls, line.as_bytes(), line.len()).await;
    assert_eq!(got, line.as_bytes());
    tls.shutdown().await
}

fn count(log: &Log, needle: &str) -> usize {
    log.text().lines().filter(|l| l.contains(needle)).count()
}

#[tokio::test]
async fn the_allowlist_sees_the_client_address_from_the_proxy_header() {
    let pki = Pki::new();
    let s = pki.serve(&[
        "--proxy-protocol",
        "--trusted-proxy",
        "127.0.0.1/32",
        "--allow",
        "127.0.0.2",
    ]);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("haproxy.cfg");
    std::fs::write(
        &config,
        "global\n    log stdout format raw local0 info\n\
         defaults\n    mode tcp\n    log global\n    option tcplog\n    timeout connect 3s\n    timeout client 30s\n    timeout server 30s\n\
         frontend fe\n    bind \"${FRONTEND}\"\n    default_backend be\n\
         backend be\n    server echo \"${BACKEND}\" send-proxy-v2 check check-send-proxy inter 1s\n",
    )
    .expect("write haproxy.cfg");
    let frontend = free_port();
    let proxy = Haproxy::start(
        &config,
        &[
            ("FRONTEND", frontend.to_string()),
            ("BACKEND", s.addr().to_string()),
        ],
        frontend,
    );
    wait_for_checks(&s, &proxy);

    let allowed: IpAddr = "127.0.0.2".parse().unwrap();
    echo_from(allowed, &proxy, &pki, "through the proxy\n")
        .await
        .unwrap_or_else(|e| panic!("allowed client refused: {e}\n{}", s.log.text()));
    assert!(
        s.log
            .wait_for(|l| l.contains("connected") && l.contains("peer=127.0.0.2:"))
            .is_some(),
        "{}",
        s.log.text()
    );

    let refused: IpAddr = "127.0.0.3".parse().unwrap();
    assert!(
        echo_from(refused, &proxy, &pki, "must not pass\n")
            .await
            .is_err(),
        "client 127.0.0.3 got through; log:\n{}",
        s.log.text()
    );
    assert!(
        s.log
            .wait_for(|l| l.contains("refused") && l.contains("127.0.0.3"))
            .is_some(),
        "{}",
        s.log.text()
    );
}

#[tokio::test]
async fn two_instances_share_the_load_and_survive_one_stopping() {
    let pki = Pki::new();
    let mut a = pki.args();
    a.extend(args(&[
        "--proxy-protocol",
        "--trusted-proxy",
        "127.0.0.1/32",
    ]));
    let mut one = Server::start(&a);
    let two = Server::start(&a);
    let frontend = free_port();
    let proxy = Haproxy::start(
        &shipped_config(),
        &[
            ("TLS_ECHO_FRONTEND", frontend.to_string()),
            ("TLS_ECHO_BACKEND1", one.addr().to_string()),
            ("TLS_ECHO_BACKEND2", two.addr().to_string()),
        ],
        frontend,
    );
    wait_for_checks(&one, &proxy);
    wait_for_checks(&two, &proxy);

    // Four connections held open at once: leastconn puts two on each instance.
    let client = client_config(&pki.ca, None);
    let mut held = Vec::new();
    for i in 0..4 {
        let tcp = tokio::net::TcpStream::connect(frontend)
            .await
            .expect("connect to haproxy");
        let mut tls = tls_with(client.clone(), tcp).await.expect("handshake");
        let line = format!("held {i}\n");
        assert_eq!(
            roundtrip(&mut tls, line.as_bytes(), line.len()).await,
            line.as_bytes()
        );
        held.push(tls);
    }
    let on_one = count(&one.log, " connected ");
    let on_two = count(&two.log, " connected ");
    assert!(
        on_one >= 1 && on_two >= 1 && on_one + on_two == 4,
        "not spread: {on_one} on one, {on_two} on two\nhaproxy:\n{}",
        proxy.log.text()
    );
    for mut tls in held {
        tls.shutdown().await.expect("close");
    }

    one.signal("TERM");
    assert!(one.wait_exit().success(), "{}", one.log.text());
    let before = count(&two.log, " connected ");
    for i in 0..4 {
        let line = format!("after one stopped {i}\n");
        echo_from("127.0.0.1".parse().unwrap(), &proxy, &pki, &line)
            .await
            .unwrap_or_else(|e| panic!("lost a connection: {e}\nhaproxy:\n{}", proxy.log.text()));
    }
    assert!(
        two.log.wait_count(" connected ", before + 4),
        "{}",
        two.log.text()
    );
    assert!(
        proxy
            .log
            .wait_for(|l| l.contains("echo1 is DOWN"))
            .is_some(),
        "haproxy never marked the stopped instance down:\n{}",
        proxy.log.text()
    );
}
