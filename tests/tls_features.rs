//! Issue 13 with real clients: several certificates by SNI and key type (`--strict-sni`), ALPN,
//! client-certificate revocation, OCSP stapling and resumption across instances sharing
//! `--ticket-keys`. The PKI is made by `openssl ca` at test time (index, CRL, OCSP responder).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::*;

/// A CA run by `openssl ca` in a temporary directory, with server certificates for `a.test`
/// (chain file with the CA), `*.b.test`, and `mixed.test` twice (ECDSA and RSA), client
/// certificates `good` and `revoked` (revoked, in `crl.pem`/`crl.der`), and an OCSP responder.
struct OpensslPki {
    dir: tempfile::TempDir,
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
    fn new() -> OpensslPki {
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

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn p(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    /// `--cert`/`--key` for `a.test` (default, with its chain), `*.b.test` and both `mixed.test`.
    fn sni_args(&self) -> Vec<String> {
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

    /// A line of random ticket keys, mode 0600; returns its path.
    fn ticket_keys(&self, name: &str, mode: u32) -> PathBuf {
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

/// What one `openssl s_client` run saw: the echo of one line (empty if none) and everything it
/// printed.
struct Seen {
    echoed: bool,
    text: String,
}

/// Runs `openssl s_client -connect ADDR -CAfile ca.pem ARGS`, sends one line and waits for its
/// echo (or for s_client to end).
fn s_client(pki: &OpensslPki, addr: std::net::SocketAddr, args: &[&str]) -> Seen {
    let mut child = Command::new("openssl")
        .args(["s_client", "-connect", &addr.to_string(), "-CAfile"])
        .arg(pki.path("ca.pem"))
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

/// A server with `args`, and an idle timeout short enough that a client that missed its echo
/// fails the test quickly.
fn start(args: Vec<String>) -> Server {
    Server::start(&with(args, &["--idle-timeout", "10s"]))
}

fn with(mut base: Vec<String>, extra: &[&str]) -> Vec<String> {
    base.extend(args(extra));
    base
}

#[test]
fn each_certificate_is_served_for_its_names_and_the_first_is_the_default() {
    let pki = OpensslPki::new();
    let s = start(pki.sni_args());
    for (name, cn) in [
        ("a.test", "CN = a"),
        ("x.b.test", "CN = b-wild"),
        ("mixed.test", "CN = mixed-ec"),
        ("unknown.test", "CN = a"),
    ] {
        let seen = s_client(
            &pki,
            s.addr(),
            &["-servername", name, "-verify_return_error"],
        );
        assert!(seen.echoed, "{name}: {}", seen.text);
        assert!(
            seen.text.contains(&format!("subject={cn}\n")),
            "{name} should get {cn}: {}",
            seen.text
        );
    }
    // Without SNI: the default; the names are on the certificate, not the IP.
    let seen = s_client(&pki, s.addr(), &["-noservername"]);
    assert!(
        seen.echoed && seen.text.contains("subject=CN = a\n"),
        "{}",
        seen.text
    );
}

#[test]
fn the_key_type_follows_what_the_client_can_verify() {
    let pki = OpensslPki::new();
    let s = start(pki.sni_args());
    for (sigalgs, cn) in [
        ("rsa_pss_rsae_sha256:rsa_pkcs1_sha256", "CN = mixed-rsa"),
        ("ecdsa_secp256r1_sha256", "CN = mixed-ec"),
    ] {
        for version in ["-tls1_3", "-tls1_2"] {
            let seen = s_client(
                &pki,
                s.addr(),
                &["-servername", "mixed.test", "-sigalgs", sigalgs, version],
            );
            assert!(seen.echoed, "{sigalgs} {version}: {}", seen.text);
            assert!(
                seen.text.contains(&format!("subject={cn}\n")),
                "{sigalgs} {version} should get {cn}: {}",
                seen.text
            );
        }
    }
}

#[test]
fn strict_sni_refuses_unknown_and_missing_names_with_unrecognized_name() {
    let pki = OpensslPki::new();
    let s = start(with(pki.sni_args(), &["--strict-sni"]));
    for name in ["a.test", "y.b.test"] {
        let seen = s_client(&pki, s.addr(), &["-servername", name]);
        assert!(seen.echoed, "{name}: {}", seen.text);
    }
    for extra in [
        &["-servername", "unknown.test"][..],
        &["-noservername"],
        &["-servername", "b.test"],
    ] {
        let seen = s_client(&pki, s.addr(), extra);
        assert!(!seen.echoed, "{extra:?}: {}", seen.text);
        assert!(
            seen.text.contains("unrecognized name") && seen.text.contains("alert number 112"),
            "{extra:?}: {}",
            seen.text
        );
    }
    assert!(s.log.wait_for(|l| l.contains("sni-unrecognized")).is_some());
}

#[test]
fn alpn_follows_server_preference_and_refuses_no_overlap() {
    let pki = OpensslPki::new();
    let s = start(with(
        pki.sni_args(),
        &["--alpn", "h2", "--alpn", "http/1.1"],
    ));
    let seen = s_client(&pki, s.addr(), &["-alpn", "http/1.1,h2"]);
    assert!(
        seen.echoed && seen.text.contains("ALPN protocol: h2"),
        "{}",
        seen.text
    );
    assert!(
        s.log
            .wait_for(|l| l.contains("connected") && l.contains("alpn=\"h2\""))
            .is_some(),
        "{}",
        s.log.text()
    );
    let seen = s_client(&pki, s.addr(), &["-alpn", "http/1.1"]);
    assert!(
        seen.echoed && seen.text.contains("ALPN protocol: http/1.1"),
        "{}",
        seen.text
    );
    let seen = s_client(&pki, s.addr(), &["-alpn", "spdy/1"]);
    assert!(!seen.echoed, "{}", seen.text);
    assert!(
        seen.text.contains("no application protocol"),
        "{}",
        seen.text
    );
    let seen = s_client(&pki, s.addr(), &[]);
    assert!(
        seen.echoed && seen.text.contains("No ALPN negotiated"),
        "{}",
        seen.text
    );
}

#[test]
fn alpn_from_the_environment() {
    let pki = OpensslPki::new();
    let mut cmd = Command::new(bin());
    cmd.args(pki.sni_args())
        .args(["--listen", "127.0.0.1:0"])
        .env("TLS_ECHO_ALPN", "echo/1,h2")
        .env("RUST_LOG", "info");
    let s = Server::from_command(cmd, 1);
    let seen = s_client(&pki, s.addr(), &["-alpn", "h2,echo/1"]);
    assert!(
        seen.echoed && seen.text.contains("ALPN protocol: echo/1"),
        "{}",
        seen.text
    );
}

#[test]
fn a_revoked_client_certificate_fails_with_its_own_reason() {
    let pki = OpensslPki::new();
    for crl in ["crl.pem", "crl.der"] {
        let s = start(with(
            pki.sni_args(),
            &["--client-ca", &pki.p("ca.pem"), "--client-crl", &pki.p(crl)],
        ));
        let good = s_client(
            &pki,
            s.addr(),
            &["-cert", &pki.p("good.pem"), "-key", &pki.p("good.key")],
        );
        assert!(good.echoed, "{crl}: {}", good.text);
        let bad = s_client(
            &pki,
            s.addr(),
            &[
                "-cert",
                &pki.p("revoked.pem"),
                "-key",
                &pki.p("revoked.key"),
            ],
        );
        assert!(!bad.echoed, "{crl}: {}", bad.text);
        assert!(
            bad.text.contains("certificate revoked"),
            "{crl}: {}",
            bad.text
        );
        assert!(
            s.log
                .wait_for(|l| l.contains("client-cert-revoked"))
                .is_some(),
            "{}",
            s.log.text()
        );
    }
}

#[test]
fn crls_and_ocsp_responses_are_reread_on_sighup() {
    let pki = OpensslPki::new();
    let (crl, ocsp) = (pki.path("live.crl"), pki.path("live.ocsp"));
    std::fs::copy(pki.path("crl-before.pem"), &crl).unwrap();
    std::fs::copy(pki.path("a.ocsp"), &ocsp).unwrap();
    let s = start(with(
        pki.sni_args(),
        &[
            "--client-ca",
            &pki.p("ca.pem"),
            "--client-crl",
            &crl.display().to_string(),
            "--ocsp-response",
            &ocsp.display().to_string(),
        ],
    ));
    let revoked = [
        "-cert",
        &pki.p("revoked.pem"),
        "-key",
        &pki.p("revoked.key"),
    ];
    assert!(
        s_client(&pki, s.addr(), &revoked).echoed,
        "not yet on the CRL"
    );
    std::fs::copy(pki.path("crl.pem"), &crl).unwrap();
    s.signal("HUP");
    assert!(s.log.wait_count("reload applied", 1), "{}", s.log.text());
    assert!(
        !s_client(&pki, s.addr(), &revoked).echoed,
        "revoked after the reload"
    );
    // A response that is no longer usable fails the reload and keeps the old staple.
    std::fs::copy(pki.path("unauthorized.ocsp"), &ocsp).unwrap();
    s.signal("HUP");
    assert!(
        s.log
            .wait_for(|l| l.contains("reload failed") && l.contains("live.ocsp"))
            .is_some(),
        "{}",
        s.log.text()
    );
    let good = [
        "-cert",
        &pki.p("good.pem"),
        "-key",
        &pki.p("good.key"),
        "-servername",
        "a.test",
        "-status",
    ];
    let seen = s_client(&pki, s.addr(), &good);
    assert!(
        seen.echoed && seen.text.contains("Cert Status: good"),
        "{}",
        seen.text
    );
}

#[test]
fn check_reports_certificates_crls_and_whether_a_client_is_revoked() {
    let pki = OpensslPki::new();
    let base = with(
        pki.sni_args(),
        &[
            "--client-ca",
            &pki.p("ca.pem"),
            "--client-crl",
            &pki.p("crl.pem"),
            "--ocsp-response",
            &pki.p("a.ocsp"),
            "--peer",
            "127.0.0.1",
            "--client-cert",
        ],
    );
    let run = |client: &str| {
        let mut a = vec!["check".to_string()];
        a.extend(base.clone());
        a.push(pki.p(client));
        run_to_end(&a, None)
    };
    let (code, out) = run("good.pem");
    assert_eq!(code, 0, "{out}");
    for want in [
        "a-chain.pem (default) and key",
        "names: a.test, a",
        "names: *.b.test, b-wild",
        "names: mixed.test, mixed-rsa",
        "issuer CN=test-ca, 1 revoked, next update 20",
        "a.ocsp for",
        ": good, next update 20",
        "good.pem would be admitted (not revoked)",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    assert!(out.matches("more days, until 20").count() >= 4, "{out}");
    let (code, out) = run("revoked.pem");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("revoked.pem is REVOKED"), "{out}");
}

#[test]
fn the_ocsp_response_is_stapled_to_the_certificate_it_covers() {
    let pki = OpensslPki::new();
    let s = start(with(
        pki.sni_args(),
        &[
            "--ocsp-response",
            &pki.p("b-wild.ocsp"),
            "--ocsp-response",
            &pki.p("a.ocsp"),
        ],
    ));
    for name in ["a.test", "z.b.test"] {
        let seen = s_client(&pki, s.addr(), &["-servername", name, "-status"]);
        assert!(seen.echoed, "{}", seen.text);
        assert!(
            seen.text.contains("OCSP Response Status: successful (0x0)")
                && seen.text.contains("Cert Status: good"),
            "{name}: {}",
            seen.text
        );
    }
    // No response covers mixed.test: nothing is stapled.
    let seen = s_client(&pki, s.addr(), &["-servername", "mixed.test", "-status"]);
    assert!(
        seen.echoed && seen.text.contains("OCSP response: no response sent"),
        "{}",
        seen.text
    );
}

#[test]
fn unusable_ocsp_responses_stop_start_up_naming_the_file() {
    let pki = OpensslPki::new();
    let cases = [
        (
            "unauthorized.ocsp",
            "not a successful OCSP response (responseStatus 6, unauthorized)",
        ),
        // b-wild's response with only a.test served.
        ("b-wild.ocsp", "covers none of the certificates"),
    ];
    for (file, why) in cases {
        let a = args(&[
            "--cert",
            &pki.p("a-chain.pem"),
            "--key",
            &pki.p("a.key"),
            "--ocsp-response",
            &pki.p(file),
            "--listen",
            "127.0.0.1:0",
        ]);
        let (code, out) = run_to_end(&a, None);
        assert_eq!(code, 2, "{out}");
        assert!(
            out.contains(&pki.p(file)) && out.contains(why),
            "{file}: {out}"
        );
    }
}

/// Saves a session from `first` and offers it to `second`; returns s_client's report of the
/// second handshake.
fn resume(pki: &OpensslPki, first: &Server, second: &Server, version: &str) -> String {
    let sess = pki.path(&format!("session{version}.pem"));
    let _ = std::fs::remove_file(&sess);
    let sess = sess.display().to_string();
    let one = s_client(pki, first.addr(), &[version, "-sess_out", &sess]);
    assert!(one.echoed && one.text.contains("New, "), "{}", one.text);
    let two = s_client(pki, second.addr(), &[version, "-sess_in", &sess]);
    assert!(two.echoed, "{}", two.text);
    two.text
}

#[test]
fn instances_sharing_ticket_keys_resume_each_others_sessions() {
    let pki = OpensslPki::new();
    let keys = pki.ticket_keys("tickets.keys", 0o600);
    let shared = with(
        pki.sni_args(),
        &["--ticket-keys", &keys.display().to_string()],
    );
    let (one, two) = (start(shared.clone()), start(shared));
    for version in ["-tls1_3", "-tls1_2"] {
        let text = resume(&pki, &one, &two, version);
        assert!(text.contains("Reused, "), "{version}: {text}");
    }
    let (one, two) = (start(pki.sni_args()), start(pki.sni_args()));
    for version in ["-tls1_3", "-tls1_2"] {
        let text = resume(&pki, &one, &two, version);
        assert!(
            text.contains("New, ") && !text.contains("Reused, "),
            "{version}: {text}"
        );
    }
}

#[test]
fn ticket_keys_are_held_to_the_private_key_rules_and_reread_on_sighup() {
    let pki = OpensslPki::new();
    let open = pki.ticket_keys("open.keys", 0o644);
    let mut a = pki.sni_args();
    a.extend(args(&[
        "--ticket-keys",
        &open.display().to_string(),
        "--listen",
        "127.0.0.1:0",
    ]));
    let (code, out) = run_to_end(&a, None);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("readable by every user") && out.contains("open.keys"),
        "{out}"
    );

    // Rotation: the second instance starts with key A; after prepending B and a reload, the
    // first instance's new tickets (under B) resume on it.
    let a_keys = pki.ticket_keys("a.keys", 0o600);
    let b_keys = pki.ticket_keys("b.keys", 0o600);
    let rotated = pki.path("rotated.keys");
    let both = [
        std::fs::read(&b_keys).unwrap(),
        std::fs::read(&a_keys).unwrap(),
    ]
    .concat();
    std::fs::write(&rotated, both).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&rotated, std::fs::Permissions::from_mode(0o600)).unwrap();
    let live = pki.path("live.keys");
    std::fs::copy(&a_keys, &live).unwrap();
    let first = start(with(
        pki.sni_args(),
        &["--ticket-keys", &rotated.display().to_string()],
    ));
    let second = start(with(
        pki.sni_args(),
        &["--ticket-keys", &live.display().to_string()],
    ));
    assert!(resume(&pki, &first, &second, "-tls1_3").contains("New, "));
    std::fs::copy(&rotated, &live).unwrap();
    second.signal("HUP");
    assert!(
        second
            .log
            .wait_for(|l| l.contains("reload applied"))
            .is_some(),
        "{}",
        second.log.text()
    );
    assert!(resume(&pki, &first, &second, "-tls1_3").contains("Reused, "));
}

#[test]
fn every_option_works_from_the_config_file_with_paths_relative_to_it() {
    let pki = OpensslPki::new();
    pki.ticket_keys("tickets.keys", 0o600);
    let toml = r#"
cert = ["a-chain.pem", "b-wild.pem"]
key = ["a.key", "b-wild.key"]
strict-sni = true
alpn = ["h2"]
client-ca = "ca.pem"
client-crl = ["crl.der"]
ocsp-response = ["a.ocsp"]
ticket-keys = "tickets.keys"
listen = ["127.0.0.1:0"]
"#;
    std::fs::write(pki.path("tls-echo.toml"), toml).unwrap();
    let s = Server::start_in(&args(&["--config", "tls-echo.toml"]), Some(pki.dir.path()));
    let good = ["-cert", &pki.p("good.pem"), "-key", &pki.p("good.key")];
    let seen = s_client(
        &pki,
        s.addr(),
        &[&["-servername", "q.b.test", "-alpn", "h2"][..], &good].concat(),
    );
    assert!(
        seen.echoed && seen.text.contains("ALPN protocol: h2"),
        "{}",
        seen.text
    );
    let seen = s_client(
        &pki,
        s.addr(),
        &[&["-servername", "a.test", "-status"][..], &good].concat(),
    );
    assert!(
        seen.echoed && seen.text.contains("Cert Status: good"),
        "{}",
        seen.text
    );
    let seen = s_client(
        &pki,
        s.addr(),
        &[&["-servername", "c.test"][..], &good].concat(),
    );
    assert!(
        !seen.echoed && seen.text.contains("unrecognized name"),
        "{}",
        seen.text
    );
    let revoked = [
        "-servername",
        "a.test",
        "-cert",
        &pki.p("revoked.pem"),
        "-key",
        &pki.p("revoked.key"),
    ];
    assert!(!s_client(&pki, s.addr(), &revoked).echoed);
    assert!(
        s.log
            .wait_for(|l| l.contains("client-cert-revoked"))
            .is_some()
    );
    // One path, not an array, still reads.
    let single = "cert = \"a-chain.pem\"\nkey = \"a.key\"\nlisten = [\"127.0.0.1:0\"]\n";
    std::fs::write(pki.path("single.toml"), single).unwrap();
    let s = Server::start_in(&args(&["--config", "single.toml"]), Some(pki.dir.path()));
    assert!(s_client(&pki, s.addr(), &["-servername", "a.test"]).echoed);
}
