//! Start-up refuses bad material with one precise message and exit status 2.

mod common;

use common::*;
use tls_echo::tools::certs::Validity;

fn fails_with(a: Vec<String>, needles: &[&str]) {
    let (code, out) = run_to_end(&a, None);
    assert_eq!(code, 2, "exit status; output:\n{out}");
    for n in needles {
        assert!(out.contains(n), "missing {n:?} in:\n{out}");
    }
}

fn with(pki: &Pki, cert: &std::path::Path, key: &std::path::Path) -> Vec<String> {
    let _ = pki;
    args(&[
        "--listen",
        "127.0.0.1:0",
        "--cert",
        &cert.display().to_string(),
        "--key",
        &key.display().to_string(),
    ])
}

#[test]
fn missing_files_are_named() {
    let pki = Pki::new();
    let gone = pki.dir.path().join("nope.pem");
    fails_with(
        with(&pki, &gone, &pki.key),
        &["cannot read certificate", "nope.pem"],
    );
    fails_with(
        with(&pki, &pki.cert, &gone),
        &["cannot read key", "nope.pem"],
    );
    fails_with(
        args(&["--listen", "127.0.0.1:0"]),
        &["no certificate", "--cert FILE --key FILE", "--dev"],
    );
}

#[test]
fn file_without_certificate_or_key() {
    let pki = Pki::new();
    let empty = pki.write("empty.pem", "just text\n");
    fails_with(
        with(&pki, &empty, &pki.key),
        &["empty.pem: no certificate found", "BEGIN CERTIFICATE"],
    );
    fails_with(
        with(&pki, &pki.cert, &pki.cert),
        &["server.pem: no private key found", "PKCS#8"],
    );
}

#[test]
fn key_that_does_not_match_the_certificate() {
    let pki = Pki::new();
    let (_, other_key) = pki.another_server("other");
    fails_with(
        with(&pki, &pki.cert, &other_key),
        &["other.key does not match the certificate in", "server.pem"],
    );
}

#[test]
fn encrypted_key_explains_how_to_decrypt() {
    let pki = Pki::new();
    let enc = pki.dir.path().join("enc.key");
    let status = std::process::Command::new("openssl")
        .args([
            "pkcs8",
            "-topk8",
            "-v2",
            "aes-256-cbc",
            "-passout",
            "pass:secret",
            "-in",
        ])
        .arg(&pki.key)
        .arg("-out")
        .arg(&enc)
        .status()
        .expect("openssl");
    assert!(status.success());
    fails_with(
        with(&pki, &pki.cert, &enc),
        &["enc.key: the private key is encrypted", "openssl pkey -in"],
    );
}

#[test]
fn world_readable_key_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let pki = Pki::new();
    std::fs::set_permissions(&pki.key, std::fs::Permissions::from_mode(0o644)).unwrap();
    fails_with(
        with(&pki, &pki.cert, &pki.key),
        &["readable by every user", "chmod 600"],
    );
}

#[test]
fn address_in_use_is_explained() {
    let pki = Pki::new();
    let s = Server::start(&pki.args());
    let mut a = with(&pki, &pki.cert, &pki.key);
    a[1] = s.addr().to_string();
    fails_with(a, &[&format!("cannot listen on {}", s.addr()), "in use"]);
}

#[test]
fn expired_certificate_warns_but_serves() {
    let now = time::OffsetDateTime::now_utc();
    let pki = Pki::with_validity(Validity {
        not_before: now - time::Duration::days(10),
        not_after: now - time::Duration::days(1),
    });
    let s = Server::start(&pki.args());
    assert!(
        s.log
            .wait_for(|l| l.contains("certificate has EXPIRED"))
            .is_some(),
        "{}",
        s.log.text()
    );
}

#[test]
fn bad_values_name_the_option() {
    let pki = Pki::new();
    let mut a = pki.args();
    a.extend(args(&["--max-line", "1"]));
    fails_with(a, &["--max-line: 1 is out of range"]);
    let mut a = pki.args();
    a.extend(args(&["--allow-client", "alice"]));
    fails_with(a, &["--allow-client needs --client-ca"]);
}

#[test]
fn dev_mode_creates_once_refuses_public_addresses_and_prints_the_openssl_command() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_in(&args(&["--dev"]), Some(dir.path()));
    let port = s.addr().port();
    assert!(s.log.wait_for(|l| l.contains(&format!("openssl s_client -connect 127.0.0.1:{port} -CAfile certs/dev/ca.pem -verify_return_error"))).is_some(), "{}", s.log.text());
    let key = dir.path().join("certs/dev/server.key");
    let first = std::fs::read(&key).unwrap();
    drop(s);
    let _again = Server::start_in(&args(&["--dev"]), Some(dir.path()));
    assert_eq!(
        std::fs::read(&key).unwrap(),
        first,
        "development material is reused"
    );
    let (code, out) = run_to_end(&args(&["--dev", "--listen", "0.0.0.0:0"]), Some(dir.path()));
    assert_eq!(code, 2);
    assert!(
        out.contains("--dev refuses to listen on 0.0.0.0:0"),
        "{out}"
    );
}

#[test]
fn gen_certs_writes_private_keys_and_refuses_to_overwrite() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pki");
    let generate = |extra: &[&str]| {
        let mut a = args(&[
            "gen-certs",
            "--out",
            &out.display().to_string(),
            "--client",
            "alice",
        ]);
        a.extend(args(extra));
        run_to_end(&a, None)
    };
    let (code, text) = generate(&[]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("tls-echo --cert") && text.contains("openssl s_client"),
        "{text}"
    );
    for key in ["ca.key", "server.key", "client.key"] {
        let mode = std::fs::metadata(out.join(key))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{key}");
    }
    let (code, text) = generate(&[]);
    assert_eq!(code, 1);
    assert!(text.contains("exists; pass --force"), "{text}");
    assert_eq!(generate(&["--force"]).0, 0);
}
