//! Test harness: real server processes on ephemeral loopback ports, rcgen-made certificates in
//! temporary directories, and real TLS clients. Waits are on events (log lines, exits), each
//! with a generous deadline so that a broken server fails the test instead of hanging it.
#![allow(dead_code)]

mod inproc;
#[allow(unused_imports)]
pub use inproc::{Events, Served};

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use tls_echo::tools::certs::{Ca, Pair, Validity};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// How long any single wait in a test may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// The binary under test; `TLS_ECHO_TEST_BIN` overrides it (in a target directory shared by
/// several checkouts, `target/debug/tls-echo` is whichever checkout built last).
pub fn bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var("TLS_ECHO_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_tls-echo").into())
    })
}

/// A throwaway PKI in a temporary directory.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    authority: Ca,
}

impl Pki {
    /// A CA and a server certificate for localhost, 127.0.0.1 and ::1.
    pub fn new() -> Pki {
        Self::with_validity(Validity::days(30))
    }

    /// Same, with the server certificate valid over `validity`.
    pub fn with_validity(validity: Validity) -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let authority = Ca::new("test CA", Validity::days(365)).expect("ca");
        let (names, ips) = tls_echo::tools::certs::loopback_names();
        let server = authority
            .server(&names, &ips, validity)
            .expect("server cert");
        let mut pki = Pki {
            ca: PathBuf::new(),
            cert: PathBuf::new(),
            key: PathBuf::new(),
            dir,
            authority,
        };
        pki.ca = pki.write("ca.pem", &pki.authority.pair.cert_pem.clone());
        pki.cert = pki.write("server.pem", &server.cert_pem);
        pki.key = pki.write("server.key", &server.key_pem);
        pki
    }

    /// Writes `text` to `name` in the directory (mode 0600) and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        let _ = std::fs::remove_file(&path);
        tls_echo::tools::certs::write_new(&path, text, 0o600, true).expect("write");
        path
    }

    /// A client certificate for `name`, written as NAME.pem / NAME.key.
    pub fn client(&self, name: &str) -> (PathBuf, PathBuf) {
        let pair = self
            .authority
            .client(name, Validity::days(30))
            .expect("client cert");
        self.write_pair(name, &pair)
    }

    /// Another server certificate from this CA (for reload tests).
    pub fn another_server(&self, tag: &str) -> (PathBuf, PathBuf) {
        let (names, ips) = tls_echo::tools::certs::loopback_names();
        let pair = self
            .authority
            .server(&names, &ips, Validity::days(30))
            .expect("server cert");
        self.write_pair(tag, &pair)
    }

    fn write_pair(&self, name: &str, pair: &Pair) -> (PathBuf, PathBuf) {
        (
            self.write(&format!("{name}.pem"), &pair.cert_pem),
            self.write(&format!("{name}.key"), &pair.key_pem),
        )
    }

    /// Starts a server with this PKI's certificate and key plus `extra` arguments.
    pub fn serve(&self, extra: &[&str]) -> Server {
        let mut a = self.args();
        a.extend(args(extra));
        Server::start(&a)
    }

    /// Serves this PKI's certificate and key plus `extra` arguments in-process.
    pub async fn served(&self, extra: &[&str]) -> Served {
        let mut a = self.args();
        a.extend(args(extra));
        Served::start(&a).await
    }

    /// The standard server arguments for this PKI.
    pub fn args(&self) -> Vec<String> {
        vec![
            "--cert".into(),
            self.cert.display().to_string(),
            "--key".into(),
            self.key.display().to_string(),
        ]
    }
}

/// Collected stderr lines of a child, with a condition variable for waiting on them.
#[derive(Clone, Default)]
pub struct Log(Arc<(Mutex<Vec<String>>, Condvar)>);

impl Log {
    pub fn follow(&self, stream: impl std::io::Read + Send + 'static) {
        let log = self.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let (lines, cv) = &*log.0;
                lines.lock().unwrap().push(line);
                cv.notify_all();
            }
        });
    }

    /// Waits until some line satisfies `pred`; returns it.
    pub fn wait_for(&self, pred: impl Fn(&str) -> bool) -> Option<String> {
        let (lines, cv) = &*self.0;
        let until = Instant::now() + DEADLINE;
        let mut guard = lines.lock().unwrap();
        loop {
            if let Some(l) = guard.iter().find(|l| pred(l)) {
                return Some(l.clone());
            }
            let left = until.checked_duration_since(Instant::now())?;
            guard = cv.wait_timeout(guard, left).unwrap().0;
        }
    }

    /// Waits until `n` lines contain `needle`.
    pub fn wait_count(&self, needle: &str, n: usize) -> bool {
        let (lines, cv) = &*self.0;
        let until = Instant::now() + DEADLINE;
        let mut guard = lines.lock().unwrap();
        loop {
            if guard.iter().filter(|l| l.contains(needle)).count() >= n {
                return true;
            }
            let Some(left) = until.checked_duration_since(Instant::now()) else {
                return false;
            };
            guard = cv.wait_timeout(guard, left).unwrap().0;
        }
    }

    /// Every line so far.
    pub fn text(&self) -> String {
        self.0.0.lock().unwrap().join("\n")
    }
}

/// A running `tls-echo` process.
pub struct Server {
    pub child: Child,
    pub addrs: Vec<SocketAddr>,
    pub log: Log,
}

impl Server {
    /// Starts `tls-echo ARGS` (adding `--listen 127.0.0.1:0` when ARGS has no --listen) and
    /// waits until every listener is bound.
    pub fn start(args: &[String]) -> Server {
        Self::start_in(args, None)
    }

    /// Same, in working directory `cwd`.
    pub fn start_in(args: &[String], cwd: Option<&Path>) -> Server {
        let mut args = args.to_vec();
        let listeners = args.iter().filter(|a| *a == "--listen").count().max(1);
        if !args.iter().any(|a| a == "--listen") {
            args.extend(["--listen".into(), "127.0.0.1:0".into()]);
        }
        let mut cmd = Command::new(bin());
        cmd.args(&args).env(
            "RUST_LOG",
            std::env::var("TEST_SERVER_LOG").unwrap_or_else(|_| "debug".into()),
        );
        if let Some(dir) = cwd {
            cmd.current_dir(dir);
        }
        Self::from_command(cmd, listeners)
    }

    /// Spawns `cmd` (a tls-echo, possibly behind a wrapper such as prlimit) with a
    /// `--ready-file` and waits until the file names `listeners` bound addresses.
    pub fn from_command(mut cmd: Command, listeners: usize) -> Server {
        let ready = tempfile::NamedTempFile::new()
            .expect("ready file")
            .into_temp_path();
        std::fs::remove_file(&ready).expect("remove ready file");
        cmd.arg("--ready-file").arg(&ready);
        let mut server = Server::spawn(cmd);
        let until = Instant::now() + DEADLINE;
        let text = loop {
            if let Ok(text) = std::fs::read_to_string(&ready) {
                break text;
            }
            if let Some(status) = server.child.try_wait().expect("try_wait") {
                panic!("server exited with {status}; log:\n{}", server.log.text());
            }
            assert!(
                Instant::now() < until,
                "server did not start; log:\n{}",
                server.log.text()
            );
            std::thread::sleep(Duration::from_millis(10)); // polling for a file, not synchronising
        };
        server.addrs = text.lines().map(|l| l.parse().expect("address")).collect();
        assert_eq!(server.addrs.len(), listeners, "log:\n{}", server.log.text());
        server
    }

    /// Spawns `cmd` and follows its stderr, without waiting for anything (a server behind
    /// `systemd-socket-activate` starts only at the first connection).
    pub fn spawn(mut cmd: Command) -> Server {
        cmd.env_remove("TLS_ECHO_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn tls-echo");
        let log = Log::default();
        log.follow(child.stderr.take().expect("stderr"));
        Server {
            child,
            addrs: vec![],
            log,
        }
    }

    /// The first bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Sends a signal (HUP, TERM, INT) with kill(1).
    pub fn signal(&self, sig: &str) {
        signal(self.child.id(), sig);
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let until = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < until,
                "server did not exit; log:\n{}",
                self.log.text()
            );
            std::thread::sleep(Duration::from_millis(20)); // polling a child's exit, not synchronising with it
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends signal `sig` (HUP, TERM, INT) to process `pid` with kill(1).
pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("kill");
    assert!(ok.success(), "kill -{sig} {pid}");
}

/// Runs `tls-echo ARGS` to completion and returns (exit code, stderr+stdout).
pub fn run_to_end(args: &[String], cwd: Option<&Path>) -> (i32, String) {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .env("RUST_LOG", "info")
        .env_remove("TLS_ECHO_CONFIG")
        .stdin(Stdio::null());
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    let out = cmd.output().expect("run tls-echo");
    let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stdout));
    (out.status.code().unwrap_or(-1), text)
}

/// A rustls client configuration trusting `ca`, optionally with a client certificate.
pub fn client_config(ca: &Path, identity: Option<(&Path, &Path)>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in tls_echo::tls::read_certs(ca, "CA").expect("ca") {
        roots.add(cert).expect("root");
    }
    let builder = rustls::ClientConfig::builder_with_provider(tls_echo::tls::provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    Arc::new(match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                tls_echo::tls::read_certs(cert, "cert").expect("cert"),
                tls_echo::tls::read_key(key).expect("key"),
            )
            .expect("client auth"),
        None => builder.with_no_client_auth(),
    })
}

/// Opens a TCP connection to `addr` from source address `src` (any 127.0.0.0/8 address works
/// on loopback without set-up).
pub async fn tcp_from(src: IpAddr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = if src.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.bind(SocketAddr::new(src, 0))?;
    socket.connect(addr).await
}

/// A verified TLS connection to `addr` with `config`.
pub async fn tls_with(
    config: Arc<rustls::ClientConfig>,
    tcp: TcpStream,
) -> std::io::Result<TlsStream<TcpStream>> {
    let name = ServerName::try_from("localhost").expect("name");
    TlsConnector::from(config).connect(name, tcp).await
}

/// A verified TLS connection to `addr`, trusting `ca`.
pub async fn connect(addr: SocketAddr, ca: &Path) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.expect("tcp connect");
    tls_with(client_config(ca, None), tcp)
        .await
        .expect("tls handshake")
}

/// Sends `data` and reads until `want` bytes came back (or EOF / deadline).
pub async fn roundtrip<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    s: &mut S,
    data: &[u8],
    want: usize,
) -> Vec<u8> {
    s.write_all(data).await.expect("write");
    s.flush().await.expect("flush");
    read_n(s, want).await
}

/// Reads until `want` bytes (or EOF / deadline).
pub async fn read_n<S: tokio::io::AsyncRead + Unpin>(s: &mut S, want: usize) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.len() < want {
        match tokio::time::timeout(DEADLINE, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "no data within the deadline; got {:?}",
                String::from_utf8_lossy(&got)
            ),
        }
    }
    got
}

/// Reads everything until the peer closes; Ok(bytes) on a clean close_notify, Err on a close
/// without it.
pub async fn read_to_close<S: tokio::io::AsyncRead + Unpin>(
    s: &mut S,
) -> Result<Vec<u8>, (Vec<u8>, std::io::Error)> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(DEADLINE, s.read(&mut buf))
            .await
            .expect("peer did not close within the deadline")
        {
            Ok(0) => return Ok(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => return Err((got, e)),
        }
    }
}

/// A fresh PKI and a server using it with `extra` arguments.
pub fn server(extra: &[&str]) -> (Pki, Server) {
    let pki = Pki::new();
    let s = pki.serve(extra);
    (pki, s)
}

/// A fresh PKI and an in-process server using it with `extra` arguments.
pub async fn served(extra: &[&str]) -> (Pki, Served) {
    let pki = Pki::new();
    let s = pki.served(extra).await;
    (pki, s)
}

/// Strings as owned args.
pub fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}
