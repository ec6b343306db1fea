//! The `openssl ca`-made PKI and the `openssl s_client` runner that the TLS feature tests share
//! (tests/sni.rs, alpn.rs, crl.rs, ocsp.rs, tickets.rs, tls_config_file.rs): certificates by
//! SNI and key type, client certificates, a CRL and OCSP responses, made at test time in a
//! temporary directory.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::common::*;

/// A CA run by `openssl ca` in a temporary directory, with server certificates for `a.test`
/// (chain file with the CA), `*.b.test`, and `mixed.test` twice (ECDSA and RSA), client
/// certificates `good` and `revoked` (revoked, in `crl.pem`/`crl.der`), and an OCSP responder.
pub struct OpensslPki {
    pub dir: tempfile::TempDir,
}

const SETUP: &str = r#"
set -eu
mkdir db; : > db/index.txt; echo 1000 > db/serial; echo 1000 > db/crlnumber
cat > ca.cnf <<'EOF'
[ca]
default_ca = test
[test]
database = db/index.txt
serial = db/serial
crlnumber = db/crlnumber
new_certs_dir = db
certificate = ca.pem
private_key = ca.key
default_md = sha256
default_days = 30
default_crl_days = 7
policy = any
unique_subject = no
copy_extensions = copy
[any]
commonName = supplied
[server]
basicConstraints = CA:FALSE
extendedKeyUsage = serverAuth
[client]
basicConstraints = CA:FALSE
extendedKeyUsage = clientAuth
[responder]
basicConstraints = CA:FALSE
extendedKeyUsage = OCSPSigning
EOF
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem \
  -days 30 -subj /CN=test-ca -addext basicConstraints=critical,CA:TRUE \
  -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
issue() { # name kind keyspec [san]
  openssl req -newkey "$3" -nodes -keyout "$1.key" -out "$1.csr" -subj "/CN=$1" \
    ${4:+-addext "subjectAltName=$4"} 2>/dev/null
  openssl ca -batch -notext -config ca.cnf -extensions "$2" -in "$1.csr" -out "$1.pem" 2>/dev/null
}
EC="ec:ca.pem"
issue a server "$EC" DNS:a.test
issue b-wild server "$EC" DNS:*.b.test
issue mixed-ec server "$EC" DNS:mixed.test
issue mixed-rsa server rsa:2048 DNS:mixed.test
issue good client "$EC" DNS:good.client
issue revoked client "$EC" DNS:revoked.client
issue responder responder "$EC"
cat a.pem ca.pem > a-chain.pem
openssl ca -config ca.cnf -gencrl -out crl-before.pem 2>/dev/null
openssl ca -config ca.cnf -revoke revoked.pem 2>/dev/null
openssl ca -config ca.cnf -gencrl -out crl.pem 2>/dev/null
openssl crl -in crl.pem -outform DER -out crl.der
for c in a b-wild; do
  openssl ocsp -issuer ca.pem -cert "$c.pem" -no_nonce -reqout "$c.req" 2>/dev/null
  openssl ocsp -index db/index.txt -CA ca.pem -rsigner responder.pem -rkey responder.key \
    -reqin "$c.req" -respout "$c.ocsp" -ndays 1 2>/dev/null
done
printf '\x30\x03\x0a\x01\x06' > unauthorized.ocsp
chmod 600 *.key
"#;

impl OpensslPki {
    /// Runs the set-up script. Blocking: call it before an in-process server starts.
    pub fn new() -> OpensslPki {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = Command::new("bash")
            .args(["-c", SETUP])
            .current_dir(dir.path())
            .output()
            .expect("bash");
        assert!(
            out.status.success(),
            "PKI setup failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        OpensslPki { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn p(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    /// `--cert`/`--key` for `a.test` (default, with its chain), `*.b.test` and both `mixed.test`.
    pub fn sni_args(&self) -> Vec<String> {
        let mut a = Vec::new();
        for (cert, key) in [
            ("a-chain.pem", "a.key"),
            ("b-wild.pem", "b-wild.key"),
            ("mixed-ec.pem", "mixed-ec.key"),
            ("mixed-rsa.pem", "mixed-rsa.key"),
        ] {
            a.extend(["--cert".into(), self.p(cert), "--key".into(), self.p(key)]);
        }
        a
    }

    /// A line of random ticket keys with file mode `mode`; returns its path. Blocking: call it
    /// before an in-process server starts.
    pub fn ticket_keys(&self, name: &str, mode: u32) -> PathBuf {
        let path = self.path(name);
        let out = Command::new("bash")
            .args(["-c", "openssl rand 80 | base64 -w0; echo"])
            .output()
            .expect("openssl rand");
        std::fs::write(&path, &out.stdout).expect("write keys");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        path
    }
}

/// What one `openssl s_client` run saw: whether its line came back, and everything it printed.
pub struct Seen {
    pub echoed: bool,
    pub text: String,
}

/// Runs `openssl s_client -connect ADDR -CAfile ca.pem ARGS`, sends one line and waits for its
/// echo (or for s_client to end). The child and the blocking reads of its output run on tokio's
/// blocking pool: an in-process server on this (current-thread) runtime keeps serving
/// meanwhile, and its log lines are still captured on this thread.
pub async fn s_client(pki: &OpensslPki, addr: SocketAddr, args: &[&str]) -> Seen {
    let ca = pki.path("ca.pem");
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let run = tokio::task::spawn_blocking(move || s_client_blocking(ca, addr, &args));
    tokio::time::timeout(DEADLINE * 2, run)
        .await
        .expect("s_client did not finish within the deadline")
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

fn s_client_blocking(ca: PathBuf, addr: SocketAddr, args: &[String]) -> Seen {
    let mut child = Command::new("openssl")
        .args(["s_client", "-connect", &addr.to_string(), "-CAfile"])
        .arg(ca)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl s_client (bash .ci/setup.sh installs it)");
    let line = "hello tls features\n";
    let _ = child.stdin.as_mut().unwrap().write_all(line.as_bytes());
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut text = String::new();
    let mut echoed = false;
    loop {
        let mut l = String::new();
        match stdout.read_line(&mut l) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                text.push_str(&l);
                // s_client prints session details on the same stream, sometimes mid-line.
                if l.ends_with(line) {
                    echoed = true;
                    break;
                }
            }
        }
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("s_client");
    text.push_str(&String::from_utf8_lossy(&out.stdout));
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Seen { echoed, text }
}

/// An in-process server with `args`, and an idle timeout short enough that a client that
/// missed its echo fails the test quickly.
pub async fn start(args: Vec<String>) -> Served {
    Served::start(&with(args, &["--idle-timeout", "10s"])).await
}

pub fn with(mut base: Vec<String>, extra: &[&str]) -> Vec<String> {
    base.extend(args(extra));
    base
}
