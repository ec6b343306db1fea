//! Properties of the engine (TLS handshake and echo over rustls's unbuffered API), over an
//! in-memory duplex pipe with a real TLS client: whatever the client's record boundaries and
//! however the server's reads and writes are cut (down to single bytes, with writes that must
//! wait), the echo and the ending are exactly those of a reference model of the protocol
//! applied to the whole input at once.

use std::collections::VecDeque;
use std::path::Path;
use std::pin::{Pin, pin};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use proptest::prelude::*;
use rustls::pki_types::ServerName;
use tls_echo::echo::Mode;
use tls_echo::echo::line::{Violation, check_line, check_prefix};
use tls_echo::echo::{EchoLimits, Ending, Stop, Tally};
use tls_echo::engine;
use tls_echo::tls::{self, Identity, TlsMaterial, TlsSettings};
use tls_echo::tools::certs::{Ca, Validity};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio_rustls::TlsConnector;

/// Small enough that long lines and the too-long rule are cheap to reach.
const MAX_LINE: usize = 64;

/// The server's material and a client that trusts it, made once per test process.
fn pki() -> &'static (TlsMaterial, Arc<rustls::ClientConfig>, tempfile::TempDir) {
    static PKI: OnceLock<(TlsMaterial, Arc<rustls::ClientConfig>, tempfile::TempDir)> =
        OnceLock::new();
    PKI.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = Ca::new("engine props CA", Validity::days(30)).expect("ca");
        let leaf = ca
            .server(&["localhost".to_string()], &[], Validity::days(30))
            .expect("leaf");
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            tls_echo::tools::certs::write_new(&path, text, 0o600, true).expect("write");
            path
        };
        let settings = TlsSettings {
            identities: vec![Identity {
                cert: write("server.pem", &leaf.cert_pem),
                key: write("server.key", &leaf.key_pem),
            }],
            strict_sni: false,
            alpn: Vec::new(),
            client_crls: Vec::new(),
            ocsp_responses: Vec::new(),
            ticket_keys: None,
            client_ca: None,
            allow_client: Vec::new(),
            tls13_only: false,
        };
        let material = tls::load(&settings).expect("material");
        let ca_path = write("ca.pem", &ca.pair.cert_pem);
        let client = client_config(&ca_path);
        (material, client, dir)
    })
}

fn client_config(ca: &Path) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in tls::read_certs(ca, "CA").expect("ca") {
        roots.add(cert).expect("root");
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(tls::provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// The server's end of the pipe: each read takes at most the next of `reads` bytes, each
/// write at most the next of `writes` bytes, and a write whose size is 0 first reports
/// "not now" (waking itself), so the engine's unsent-output path runs.
struct Cuts {
    inner: DuplexStream,
    reads: VecDeque<usize>,
    writes: VecDeque<usize>,
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
        match self.writes.pop_front() {
            Some(0) => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Some(n) => Pin::new(&mut self.inner).poll_write(cx, &data[..n.min(data.len())]),
            None => Pin::new(&mut self.inner).poll_write(cx, data),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// How the input travels.
#[derive(Debug, Clone)]
struct Plan {
    /// The client's writes (each becomes at least one record).
    sends: Vec<usize>,
    /// The server's reads of raw TLS bytes.
    reads: Vec<usize>,
    /// The server's writes (0: must wait once).
    writes: Vec<usize>,
}

fn plan(len: usize) -> impl Strategy<Value = Plan> {
    (
        prop::collection::vec(1..=len.max(1), 0..=16),
        prop::collection::vec(1usize..2000, 0..=64),
        prop::collection::vec(0usize..600, 0..=32),
    )
        .prop_map(|(sends, reads, writes)| Plan {
            sends,
            reads,
            writes,
        })
}

/// The echo limits of these tests: short lines, deadlines that never fire.
fn limits(mode: Mode, max_bytes: Option<u64>) -> EchoLimits {
    EchoLimits {
        mode,
        max_line: MAX_LINE,
        idle_timeout: Duration::from_secs(60),
        write_timeout: Duration::from_secs(60),
        max_bytes,
    }
}

/// The client's side of the handshake, as `localhost`.
async fn connect(
    config: &Arc<rustls::ClientConfig>,
    io: DuplexStream,
) -> tokio_rustls::client::TlsStream<DuplexStream> {
    let name = ServerName::try_from("localhost").expect("name");
    TlsConnector::from(Arc::clone(config))
        .connect(name, io)
        .await
        .expect("client handshake")
}

/// Handshake, then `input` in the client's writes and close_notify; returns what the client
/// got back, how the echo ended, and the tally.
fn run(input: &[u8], plan: &Plan, mode: Mode, max_bytes: Option<u64>) -> (Vec<u8>, Ending, Tally) {
    let (material, client_config, _) = pki();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let (client_io, server_io) = tokio::io::duplex(1 << 16);
        let server_io = Cuts {
            inner: server_io,
            reads: plan.reads.iter().copied().collect(),
            writes: plan.writes.iter().copied().collect(),
        };
        let limits = limits(mode, max_bytes);
        let serve = async {
            let session = engine::accept(material, server_io)
                .await
                .expect("handshake");
            let mut tally = Tally::default();
            let stop = pin!(std::future::pending::<Stop>());
            let ending = session.echo(&limits, stop, &mut tally).await;
            (ending, tally)
        };
        let talk = async {
            let tls = connect(client_config, client_io).await;
            let (mut rd, mut wr) = tokio::io::split(tls);
            let send = async {
                let mut rest = input;
                let mut sizes = plan.sends.iter();
                while !rest.is_empty() {
                    let n = sizes.next().copied().unwrap_or(rest.len()).min(rest.len());
                    // The server may close early (after ERR): then the rest cannot go.
                    if wr.write_all(&rest[..n]).await.is_err() || wr.flush().await.is_err() {
                        return;
                    }
                    rest = &rest[n..];
                }
                let _ = wr.shutdown().await;
            };
            let recv = async {
                let mut got = Vec::new();
                let _ = rd.read_to_end(&mut got).await;
                got
            };
            tokio::join!(send, recv).1
        };
        let bounded =
            tokio::time::timeout(Duration::from_secs(20), async { tokio::join!(serve, talk) });
        let ((ending, tally), got) = bounded.await.expect("finished within 20 s");
        (got, ending, tally)
    })
}

/// Why a line with no terminator in its first `MAX_LINE` bytes is refused.
fn too_long(head: &[u8]) -> Violation {
    check_prefix(head).err().unwrap_or(Violation::LineTooLong)
}

/// The protocol applied to the whole input at once: how many leading bytes are echoed (and as
/// how many lines), and the ending, for a client that sends `input` then close_notify.
fn model(input: &[u8], mode: Mode, max_bytes: Option<u64>) -> (usize, u64, Ending) {
    let budget = max_bytes.map_or(usize::MAX, |b| b as usize);
    if mode == Mode::Raw {
        return if input.len() > budget {
            (budget, 0, Ending::ByteLimit)
        } else {
            (input.len(), 0, Ending::Eof)
        };
    }
    let mut start = 0;
    let mut lines = 0;
    while let Some(i) = input[start..].iter().position(|&b| b == b'\n') {
        let end = start + i + 1;
        let line = &input[start..end];
        if line.len() > MAX_LINE {
            return (start, lines, Ending::Violation(too_long(&line[..MAX_LINE])));
        }
        if let Err(v) = check_line(line) {
            return (start, lines, Ending::Violation(v));
        }
        if end > budget {
            return (start, lines, Ending::ByteLimit);
        }
        lines += 1;
        start = end;
    }
    let tail = &input[start..];
    if tail.len() >= MAX_LINE {
        return (start, lines, Ending::Violation(too_long(&tail[..MAX_LINE])));
    }
    if tail.is_empty() {
        return (start, lines, Ending::Eof);
    }
    if let Err(v) = check_line(tail) {
        return (start, lines, Ending::Violation(v));
    }
    if input.len() > budget {
        return (start, lines, Ending::ByteLimit);
    }
    (input.len(), lines + 1, Ending::Eof)
}

/// The `ERR` line the server sends for `ending`, if any.
fn err_line(ending: Ending) -> Option<String> {
    let text = match ending {
        Ending::Violation(v) => v.message(),
        Ending::ByteLimit => "connection byte limit reached",
        _ => return None,
    };
    Some(format!("ERR {} {}\n", ending.label(), text))
}

/// Text without any control character other than TAB.
fn text(max_chars: usize) -> impl Strategy<Value = String> {
    let ch = any::<char>().prop_filter("controls", |c| !c.is_control() || *c == '\t');
    prop::collection::vec(ch, 0..=max_chars).prop_map(|v| v.into_iter().collect())
}

/// One valid line with its terminator (LF or CRLF); at most 20 chars, so within MAX_LINE.
fn line() -> impl Strategy<Value = Vec<u8>> {
    (text(12), any::<bool>()).prop_map(|(t, crlf)| {
        let mut l = t.into_bytes();
        l.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
        l
    })
}

/// Mostly valid lines with, sometimes, a long line or arbitrary bytes among them.
fn stream() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        8 => line(),
        1 => prop::collection::vec(any::<u8>(), 0..8),
        1 => text(80).prop_map(|t| { let mut l = t.into_bytes(); l.push(b'\n'); l }),
        1 => prop::sample::select(vec![b"\r".to_vec(), b"\xe2\x9c".to_vec(), b"\x00".to_vec()]),
    ];
    prop::collection::vec(piece, 0..24).prop_map(|p| p.concat())
}

fn check(
    input: &[u8],
    plan: &Plan,
    mode: Mode,
    max_bytes: Option<u64>,
) -> Result<(), TestCaseError> {
    let (got, ending, tally) = run(input, plan, mode, max_bytes);
    let (echoed, lines, want) = model(input, mode, max_bytes);
    prop_assert_eq!(ending, want);
    prop_assert_eq!(&got[..echoed.min(got.len())], &input[..echoed]);
    let rest = String::from_utf8_lossy(&got[echoed.min(got.len())..]).into_owned();
    prop_assert_eq!(Some(rest), err_line(want).or(Some(String::new())));
    prop_assert_eq!(tally.bytes, echoed as u64);
    if mode == Mode::Line {
        prop_assert_eq!(tally.lines, lines);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn valid_lines_come_back_exactly(
        (input, plan) in (prop::collection::vec(line(), 0..24), text(30))
            .prop_flat_map(|(lines, tail)| {
                let mut input = lines.concat();
                input.extend_from_slice(tail.as_bytes());
                let len = input.len();
                (Just(input), plan(len))
            })
    ) {
        check(&input, &plan, Mode::Line, None)?;
    }

    #[test]
    fn any_stream_gets_the_model_echo_and_ending(
        (input, plan, limit) in stream().prop_flat_map(|input| {
            let len = input.len();
            (Just(input), plan(len), prop::option::of(0u64..400))
        })
    ) {
        check(&input, &plan, Mode::Line, limit)?;
    }

    #[test]
    fn raw_mode_echoes_every_byte_within_the_budget(
        (input, plan, limit) in prop::collection::vec(any::<u8>(), 0..3000)
            .prop_flat_map(|input| {
                let len = input.len();
                (Just(input), plan(len), prop::option::of(0u64..4000))
            })
    ) {
        check(&input, &plan, Mode::Raw, limit)?;
    }
}

/// A bulk stream larger than one read and one record, in lines and raw.
#[test]
fn bulk_crosses_reads_and_records() {
    let line: Vec<u8> = b"0123456789abcdef0123456789abcdef0123456789abcdef012345678\n".to_vec();
    let input = line.repeat(5000);
    let plan = Plan {
        sends: vec![40_000, 1, 70_000, 3],
        reads: Vec::new(),
        writes: vec![0, 100, 0, 17_000],
    };
    check(&input, &plan, Mode::Line, None).expect("line mode");
    check(&input, &plan, Mode::Raw, None).expect("raw mode");
}

/// A shutdown drain that meets a bad line ends with the violation, its ERR line and a close;
/// the stop future, which has fired, is not polled again (an async block panics if it is).
#[test]
fn a_bad_line_in_the_shutdown_drain_ends_the_drain() {
    let (material, client_config, _) = pki();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let (client_io, server_io) = tokio::io::duplex(1 << 16);
        let limits = limits(Mode::Line, None);
        let (go, went) = tokio::sync::oneshot::channel::<()>();
        let serve = async {
            let session = engine::accept(material, server_io)
                .await
                .expect("handshake");
            let mut tally = Tally::default();
            let stop = pin!(async {
                let _ = went.await;
                Stop::Shutdown
            });
            session.echo(&limits, stop, &mut tally).await
        };
        let talk = async {
            let mut tls = connect(client_config, client_io).await;
            tls.write_all(b"ok\n").await.expect("write");
            tls.flush().await.expect("flush");
            let mut echo = [0u8; 3];
            tls.read_exact(&mut echo).await.expect("echo");
            let _ = go.send(());
            tls.write_all(b"bad\x00\n").await.expect("write");
            tls.flush().await.expect("flush");
            let mut got = Vec::new();
            let _ = tls.read_to_end(&mut got).await;
            got
        };
        let (ending, got) =
            tokio::time::timeout(Duration::from_secs(20), async { tokio::join!(serve, talk) })
                .await
                .expect("finished");
        assert_eq!(ending, Ending::Violation(Violation::ControlCharacter));
        assert!(
            String::from_utf8_lossy(&got).starts_with("ERR control-character "),
            "{got:?}"
        );
    });
}

/// A client's key update (which asks for the server's too) in the middle of the echo: lines
/// before and after it come back, and the server's own key update goes out before the echo it
/// protects (the client could not decrypt it otherwise).
#[test]
fn key_updates_in_both_directions_keep_the_echo_going() {
    let (material, client_config, _) = pki();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let (client_io, server_io) = tokio::io::duplex(1 << 16);
        let limits = limits(Mode::Line, None);
        let serve = async {
            let session = engine::accept(material, server_io)
                .await
                .expect("handshake");
            let mut tally = Tally::default();
            let stop = pin!(std::future::pending::<Stop>());
            let ending = session.echo(&limits, stop, &mut tally).await;
            (ending, tally)
        };
        let talk = async {
            let mut tls = connect(client_config, client_io).await;
            let mut got = Vec::new();
            for round in 0..3 {
                let line = format!("line {round}\n");
                tls.write_all(line.as_bytes()).await.expect("write");
                tls.flush().await.expect("flush");
                let mut back = vec![0u8; line.len()];
                tls.read_exact(&mut back).await.expect("echo");
                got.extend_from_slice(&back);
                tls.get_mut().1.refresh_traffic_keys().expect("key update");
            }
            tls.shutdown().await.expect("close_notify");
            let _ = tls.read_to_end(&mut got).await;
            got
        };
        let ((ending, tally), got) =
            tokio::time::timeout(Duration::from_secs(20), async { tokio::join!(serve, talk) })
                .await
                .expect("finished");
        assert_eq!(ending, Ending::Eof);
        assert_eq!(got, b"line 0\nline 1\nline 2\n");
        assert_eq!(tally.lines, 3);
    });
}

/// A bad line and, in the same read, a malformed record after it: the verdict stands and the
/// client gets the `ERR` line for the bad line, not a TLS error about what followed it.
#[test]
fn a_malformed_record_after_a_bad_line_does_not_hide_the_err_line() {
    let (material, client_config, _) = pki();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let (client_io, server_io) = tokio::io::duplex(1 << 16);
        let limits = limits(Mode::Line, None);
        let serve = async {
            let session = engine::accept(material, server_io)
                .await
                .expect("handshake");
            let mut tally = Tally::default();
            let stop = pin!(std::future::pending::<Stop>());
            session.echo(&limits, stop, &mut tally).await
        };
        let talk = async {
            let mut tls = connect(client_config, client_io).await;
            // Neither write yields to the server: both are in its next read.
            tls.write_all(b"ok\nbad\x00\n").await.expect("write");
            tls.flush().await.expect("flush");
            // An application-data header claiming 65,535 bytes: rustls refuses it on sight.
            tls.get_mut()
                .0
                .write_all(&[0x17, 0x03, 0x03, 0xff, 0xff, 0x00])
                .await
                .expect("raw write");
            let mut got = Vec::new();
            let _ = tls.read_to_end(&mut got).await;
            got
        };
        let (ending, got) =
            tokio::time::timeout(Duration::from_secs(20), async { tokio::join!(serve, talk) })
                .await
                .expect("finished");
        assert_eq!(ending, Ending::Violation(Violation::ControlCharacter));
        let got = String::from_utf8_lossy(&got);
        assert!(got.starts_with("ok\nERR control-character "), "{got:?}");
    });
}
