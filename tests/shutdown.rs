//! Graceful shutdown: no new connections, every line that arrived before the signal is echoed,
//! then close_notify. The drain itself in-process; SIGTERM's wiring and the exit status with
//! the process.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[tokio::test]
async fn graceful_shutdown_echoes_every_line_sent_before_the_signal() {
    let (pki, s) = served(&[]).await;
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
    // Let every client get some lines through, then shut down.
    while sent.iter().any(|n| n.load(Ordering::SeqCst) < 50) {
        tokio::task::yield_now().await;
    }
    let before: Vec<usize> = sent.iter().map(|n| n.load(Ordering::SeqCst)).collect();
    s.shutdown();
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
        s.log.wait_count("reason=\"shutdown\"", 8).await,
        "every connection ended by the shutdown; log:\n{}",
        s.log.text()
    );
    let log = s.log.clone();
    assert!(
        s.stop().await,
        "serve returns with every connection drained; log:\n{}",
        log.text()
    );
}

#[tokio::test]
async fn sigterm_drains_and_exits_with_status_zero() {
    let pki = Pki::new();
    let mut s = pki.serve(&[]);
    let mut c = connect(s.addr(), &pki.ca).await;
    assert_eq!(roundtrip(&mut c, b"before\n", 7).await, b"before\n");
    c.write_all(b"in flight\n").await.unwrap();
    c.flush().await.unwrap();
    s.signal("TERM");
    assert_eq!(
        read_to_close(&mut c)
            .await
            .expect("close_notify after the drain"),
        b"in flight\n"
    );
    assert!(
        s.wait_exit().success(),
        "exit status 0; log:\n{}",
        s.log.text()
    );
    assert!(
        s.log
            .wait_for(|l| l.contains("shutting down") && l.contains("SIGTERM"))
            .is_some(),
        "{}",
        s.log.text()
    );
}
