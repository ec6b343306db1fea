//! Certificate reload: the new material is swapped in whole while handshakes go on, and a
//! broken file changes nothing. The swap in-process (`Server::reload`, what SIGHUP runs); the
//! signal's wiring and its log lines with the process.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use common::*;
use tokio::net::TcpStream;

/// Multi-threaded so that handshakes run on the workers while a reload reads files on a
/// blocking thread, as under SIGHUP; the server's log is then not captured: the outcome of
/// `reload` and the metrics stand for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_swaps_certificates_without_failing_a_handshake_and_keeps_them_on_error() {
    // The hammer opens connections from one address as fast as it can: out of reach of the
    // per-address rate limit, which is not the subject here.
    let (pki, s) = served(&["--rate-per-ip", "1000000", "--rate-burst", "1000000"]).await;
    let original = std::fs::read(&pki.cert).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
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
    let reload = |server: Arc<tls_echo::server::Server>| async move {
        tokio::task::spawn_blocking(move || server.reload().map_err(|e| e.to_string()))
            .await
            .expect("reload task")
    };
    let mut last = Vec::new();
    for round in 1..=4 {
        let (cert, key) = pki.another_server(&format!("round{round}"));
        std::fs::copy(&cert, &pki.cert).unwrap();
        std::fs::copy(&key, &pki.key).unwrap();
        reload(Arc::clone(&s.server)).await.expect("reload applied");
        assert_eq!(
            s.metric("tls_echo_reloads_total{outcome=\"success\"}"),
            round as f64
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

    let served = served_cert(s.addr(), &pki.ca).await;
    assert_eq!(
        served,
        pem_body(&last),
        "new connections see the new certificate"
    );
    assert_ne!(served, pem_body(&original));

    pki.write("server.key", "a key file damaged mid-rotation\n");
    let err = reload(Arc::clone(&s.server))
        .await
        .expect_err("a broken key is refused");
    assert!(err.contains("server.key"), "names the file: {err}");
    assert_eq!(s.metric("tls_echo_reloads_total{outcome=\"failure\"}"), 1.0);
    assert_eq!(
        served_cert(s.addr(), &pki.ca).await,
        pem_body(&last),
        "a broken key changes nothing"
    );
}

#[tokio::test]
async fn sighup_reloads_and_logs_a_failed_reload_naming_the_file() {
    let pki = Pki::new();
    let s = pki.serve(&[]);
    let original = std::fs::read(&pki.cert).unwrap();
    let (cert, key) = pki.another_server("rotated");
    std::fs::copy(&cert, &pki.cert).unwrap();
    std::fs::copy(&key, &pki.key).unwrap();
    s.signal("HUP");
    assert!(s.log.wait_count("reload applied", 1), "{}", s.log.text());
    let rotated = std::fs::read(&cert).unwrap();
    // Not asked yet which certificate is served: the server logs "reload applied" just before
    // the swap. Once the next reload has failed, the first one is complete.

    pki.write("server.key", "a key file damaged mid-rotation\n");
    s.signal("HUP");
    assert!(
        s.log
            .wait_for(|l| l.contains("reload failed") && l.contains("server.key"))
            .is_some(),
        "{}",
        s.log.text()
    );
    let served = served_cert(s.addr(), &pki.ca).await;
    assert_eq!(
        served,
        pem_body(&rotated),
        "the first SIGHUP swapped the certificate, the second (a broken key) changed nothing"
    );
    assert_ne!(served, pem_body(&original));
}

fn pem_body(pem: &[u8]) -> Vec<u8> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem).unwrap().to_vec()
}

/// The certificate a new connection to `addr` is served (DER).
async fn served_cert(addr: SocketAddr, ca: &std::path::Path) -> Vec<u8> {
    let c = connect(addr, ca).await;
    c.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}
