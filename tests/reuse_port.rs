//! `--reuse-port`: two server processes share one port and the kernel spreads connections
//! over both (without the flag the second bind fails: tests/startup.rs).

mod common;

use common::*;
use tokio::io::AsyncWriteExt;

/// Connections made; the kernel hashes each client port to one of the two processes, so the
/// chance that one process gets none is 2^-31.
const CONNECTIONS: usize = 32;

#[tokio::test]
async fn two_processes_share_a_port_with_reuse_port() {
    let pki = Pki::new();
    let mut a = pki.args();
    a.push("--reuse-port".into());
    let first = Server::start(&a);
    let port = first.addr();
    let mut b = a.clone();
    b.extend(["--listen".into(), port.to_string()]);
    let second = Server::start(&b);
    assert_eq!(second.addr(), port);

    let client = client_config(&pki.ca, None);
    for _ in 0..CONNECTIONS {
        let tcp = tokio::net::TcpStream::connect(port).await.expect("connect");
        let mut tls = tls_with(client.clone(), tcp).await.expect("handshake");
        assert_eq!(roundtrip(&mut tls, b"shared\n", 7).await, b"shared\n");
        tls.shutdown().await.expect("close");
    }
    for (name, s) in [("first", &first), ("second", &second)] {
        assert!(
            s.log.wait_count(" connected ", 1),
            "{CONNECTIONS} connections never reached the {name} process; its log:\n{}",
            s.log.text()
        );
    }
}
