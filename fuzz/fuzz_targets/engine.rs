//! The connection engine (TLS over rustls's unbuffered API, then the echo) driven with
//! arbitrary input over an in-memory pipe, time auto-advancing so every deadline can fire,
//! against a server whose `--strict-sni` and client authentication the input chooses (see `pki`):
//!
//! - `Hello`: arbitrary bytes as the client's first flight (ClientHello parsing, the replay
//!   into the unbuffered connection, handshake failures and their alerts);
//! - `Session`: a real TLS client, sending the server's name, another or none, with a trusted
//!   certificate, an untrusted one or none, does the handshake; if the server accepts, the input
//!   is then a script of application data (records cut where the input says), raw bytes
//!   injected into the TLS stream (forged or cut records), key updates, close_notify or a bare
//!   TCP close; the server's reads are cut where the input says.
//!
//! The engine must never panic and must always end. A pairing the server must refuse ends in
//! `engine::accept`'s error with the expected reason and no echo; one it must accept completes
//! the handshake. When the script is only application data followed by close_notify, the echo
//! and the ending must equal a reference model of the protocol applied to the whole input at
//! once.
#![no_main]

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{Read as _, Write as _};
use std::pin::{Pin, pin};
use std::task::{Context, Poll};
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tls_echo::echo::Mode;
use tls_echo::echo::line::{Violation, check_line, check_prefix};
use tls_echo::echo::{EchoLimits, Ending, Stop, Tally};
use tls_echo::engine;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};

#[path = "engine/pki.rs"]
mod pki;
use pki::{ClientSetup, ServerSetup};

const MAX_LINE: usize = 32;

#[derive(Debug, Arbitrary)]
enum Input {
    Hello {
        server: ServerSetup,
        bytes: Vec<u8>,
        reads: Vec<u16>,
        close: bool,
    },
    Session {
        server: ServerSetup,
        client: ClientSetup,
        raw: bool,
        max_bytes: Option<u16>,
        /// Whether the server stops (shutdown) once the script is sent.
        shutdown: bool,
        script: Vec<Op>,
        reads: Vec<u16>,
    },
}

#[derive(Debug, Arbitrary)]
enum Op {
    Data(Vec<u8>),
    Raw(Vec<u8>),
    KeyUpdate,
    CloseNotify,
    TcpClose,
}

fuzz_target!(|input: Input| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    runtime.block_on(async {
        // Every path is bounded by the engine's own deadlines; time is virtual.
        tokio::time::timeout(Duration::from_secs(3600), drive(input))
            .await
            .expect("the engine always ends");
    });
});

/// The server's end, each read cut to the next given size.
struct Cuts {
    inner: DuplexStream,
    reads: VecDeque<usize>,
}

impl AsyncRead for Cuts {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let limit = self.reads.pop_front().unwrap_or(usize::MAX).max(1);
        let mut scratch = vec![0; limit.min(buf.remaining())];
        let mut part = ReadBuf::new(&mut scratch);
        let ready = Pin::new(&mut self.inner).poll_read(cx, &mut part);
        match ready {
            Poll::Ready(Ok(())) => buf.put_slice(part.filled()),
            Poll::Pending => self.reads.push_front(limit),
            Poll::Ready(Err(_)) => {}
        }
        ready
    }
}

impl AsyncWrite for Cuts {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

async fn drive(input: Input) {
    let (mut client_io, server_io) = tokio::io::duplex(1 << 16);
    match input {
        Input::Hello {
            server,
            bytes,
            reads,
            close,
        } => {
            let server_io = Cuts {
                inner: server_io,
                reads: reads.into_iter().map(usize::from).collect(),
            };
            let serve = async {
                let handshake = tokio::time::timeout(
                    Duration::from_secs(10),
                    engine::accept(pki::material(server), server_io),
                );
                if let Ok(Err(e)) = handshake.await {
                    assert!(!e.reason().is_empty());
                }
            };
            let talk = async {
                let _ = client_io.write_all(&bytes).await;
                if close {
                    let _ = client_io.shutdown().await;
                }
                let mut sink = Vec::new();
                let _ = client_io.read_to_end(&mut sink).await;
            };
            let _ = tokio::join!(serve, async {
                // The client side must not hold the server forever: drop it when time is up.
                let _ = tokio::time::timeout(Duration::from_secs(20), talk).await;
            });
        }
        Input::Session {
            server,
            client: setup,
            raw,
            max_bytes,
            shutdown,
            script,
            reads,
        } => {
            let mode = if raw { Mode::Raw } else { Mode::Line };
            let max_bytes = max_bytes.map(u64::from);
            let server_io = Cuts {
                inner: server_io,
                reads: reads.into_iter().map(usize::from).collect(),
            };
            let limits = EchoLimits {
                mode,
                max_line: MAX_LINE,
                idle_timeout: Duration::from_secs(30),
                write_timeout: Duration::from_secs(5),
                max_bytes,
            };
            let refusal = pki::refusal(server, setup);
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
            let serve = async {
                let session = match engine::accept(pki::material(server), server_io).await {
                    Ok(session) => session,
                    Err(e) => {
                        assert_eq!(Some(e.reason()), refusal, "{setup:?} to {server:?}: {e}");
                        return None;
                    }
                };
                assert_eq!(refusal, None, "{setup:?} to {server:?} accepted");
                let mut tally = Tally::default();
                let stop = pin!(async {
                    let _ = stop_rx.await;
                    if shutdown {
                        Stop::Shutdown
                    } else {
                        std::future::pending().await
                    }
                });
                let ending = session.echo(&limits, stop, &mut tally).await;
                Some((ending, tally))
            };
            let clean = script.iter().all(|op| matches!(op, Op::Data(_))) && !shutdown;
            let script = &script;
            let sent: Vec<u8> = script
                .iter()
                .filter_map(|op| match op {
                    Op::Data(d) => Some(&d[..]),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .concat();
            let talk = client(client_io, setup, &script, clean, stop_tx);
            let (served, got) = tokio::join!(serve, talk);
            let Some((ending, tally)) = served else {
                assert!(got.is_empty(), "echo after a refused handshake: {got:?}");
                return;
            };
            if clean {
                let (echoed, want) = model(&sent, mode, max_bytes);
                assert_eq!(ending, want, "ending for {sent:?}");
                assert_eq!(&got[..echoed.min(got.len())], &sent[..echoed]);
                assert_eq!(tally.bytes, echoed as u64);
            }
        }
    }
}

/// A rustls client driven by hand over the pipe, so that raw bytes, key updates and a bare
/// close can be interleaved with its records. Returns the decrypted bytes it received.
async fn client(
    io: DuplexStream,
    setup: ClientSetup,
    script: &[Op],
    clean: bool,
    stop: tokio::sync::oneshot::Sender<()>,
) -> Vec<u8> {
    let conn = rustls::ClientConnection::new(pki::client_config(setup), pki::server_name(setup))
        .expect("client");
    let conn = RefCell::new(conn);
    let (mut rd, mut wr) = tokio::io::split(io);
    let mut got = Vec::new();
    // Handshake.
    let mut buf = vec![0u8; 1 << 16];
    loop {
        if flush(&conn, &mut wr).await.is_err() {
            return got;
        }
        if !conn.borrow().is_handshaking() {
            break;
        }
        match rd.read(&mut buf).await {
            Ok(0) | Err(_) => return got,
            Ok(n) => {
                if receive(&conn, &buf[..n], &mut got).is_err() {
                    return got;
                }
            }
        }
    }
    let send = async {
        for op in script {
            match op {
                Op::Data(d) => {
                    let _ = conn.borrow_mut().writer().write_all(d);
                }
                Op::Raw(bytes) => {
                    if flush(&conn, &mut wr).await.is_err() || wr.write_all(bytes).await.is_err() {
                        break;
                    }
                }
                Op::KeyUpdate => {
                    let _ = conn.borrow_mut().refresh_traffic_keys();
                }
                Op::CloseNotify => {
                    conn.borrow_mut().send_close_notify();
                    break;
                }
                Op::TcpClose => {
                    let _ = flush(&conn, &mut wr).await;
                    let _ = wr.shutdown().await;
                    break;
                }
            }
            if flush(&conn, &mut wr).await.is_err() {
                break;
            }
        }
        if clean {
            conn.borrow_mut().send_close_notify();
        }
        let _ = flush(&conn, &mut wr).await;
        let _ = stop.send(());
        wr
    };
    let recv = async {
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if receive(&conn, &buf[..n], &mut got).is_err() {
                        break;
                    }
                }
            }
        }
    };
    // The writer half is kept until the reader is done: dropping both closes the pipe.
    let (_wr, ()) = tokio::join!(send, recv);
    got
}

/// Writes what the client has queued.
async fn flush(
    conn: &RefCell<rustls::ClientConnection>,
    wr: &mut tokio::io::WriteHalf<DuplexStream>,
) -> std::io::Result<()> {
    let mut out = Vec::new();
    while conn.borrow().wants_write() {
        conn.borrow_mut().write_tls(&mut out)?;
    }
    wr.write_all(&out).await
}

/// Feeds received bytes to the client and collects the plaintext.
fn receive(
    conn: &RefCell<rustls::ClientConnection>,
    mut bytes: &[u8],
    got: &mut Vec<u8>,
) -> Result<(), ()> {
    let mut conn = conn.borrow_mut();
    while !bytes.is_empty() {
        conn.read_tls(&mut bytes).map_err(|_| ())?;
        conn.process_new_packets().map_err(|_| ())?;
        let mut chunk = [0u8; 4096];
        loop {
            match conn.reader().read(&mut chunk) {
                Ok(0) => return Ok(()),
                Ok(n) => got.extend_from_slice(&chunk[..n]),
                Err(_) => break,
            }
        }
    }
    Ok(())
}

fn too_long(head: &[u8]) -> Violation {
    check_prefix(head).err().unwrap_or(Violation::LineTooLong)
}

/// The protocol applied to the whole input at once: how many leading bytes are echoed, and the
/// ending, for a client that sends `input` then close_notify.
fn model(input: &[u8], mode: Mode, max_bytes: Option<u64>) -> (usize, Ending) {
    let budget = max_bytes.map_or(usize::MAX, |b| b as usize);
    if mode == Mode::Raw {
        return if input.len() > budget {
            (budget, Ending::ByteLimit)
        } else {
            (input.len(), Ending::Eof)
        };
    }
    let mut start = 0;
    while let Some(i) = input[start..].iter().position(|&b| b == b'\n') {
        let end = start + i + 1;
        let line = &input[start..end];
        if line.len() > MAX_LINE {
            return (start, Ending::Violation(too_long(&line[..MAX_LINE])));
        }
        if let Err(v) = check_line(line) {
            return (start, Ending::Violation(v));
        }
        if end > budget {
            return (start, Ending::ByteLimit);
        }
        start = end;
    }
    let tail = &input[start..];
    if tail.len() >= MAX_LINE {
        return (start, Ending::Violation(too_long(&tail[..MAX_LINE])));
    }
    if tail.is_empty() {
        return (start, Ending::Eof);
    }
    if let Err(v) = check_line(tail) {
        return (start, Ending::Violation(v));
    }
    if input.len() > budget {
        return (start, Ending::ByteLimit);
    }
    (input.len(), Ending::Eof)
}
