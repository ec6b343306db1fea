//! Client-certificate revocation (`--client-crl`), CRLs and OCSP responses re-read on reload,
//! and `tls-echo check` on the lot, with a PKI made by `openssl ca` (issue 13).

mod common;
mod tls_pki;

use common::*;
use tls_pki::*;

#[tokio::test]
async fn a_revoked_client_certificate_fails_with_its_own_reason() {
    let pki = OpensslPki::new();
    for crl in ["crl.pem", "crl.der"] {
        let s = start(with(
            pki.sni_args(),
            &["--client-ca", &pki.p("ca.pem"), "--client-crl", &pki.p(crl)],
        ))
        .await;
        let good = s_client(
            &pki,
            s.addr(),
            &["-cert", &pki.p("good.pem"), "-key", &pki.p("good.key")],
        )
        .await;
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
        )
        .await;
        assert!(!bad.echoed, "{crl}: {}", bad.text);
        assert!(
            bad.text.contains("certificate revoked"),
            "{crl}: {}",
            bad.text
        );
        assert!(
            s.log
                .wait_for(|l| l.contains("client-cert-revoked"))
                .await
                .is_some(),
            "{}",
            s.log.text()
        );
    }
}

/// The reload SIGHUP runs, called directly (tests/lifecycle.rs proves the signal wiring).
#[tokio::test]
async fn crls_and_ocsp_responses_are_reread_on_reload() {
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
    ))
    .await;
    let revoked = [
        "-cert",
        &pki.p("revoked.pem"),
        "-key",
        &pki.p("revoked.key"),
    ];
    assert!(
        s_client(&pki, s.addr(), &revoked).await.echoed,
        "not yet on the CRL"
    );
    std::fs::copy(pki.path("crl.pem"), &crl).unwrap();
    s.server.reload().expect("reload");
    assert!(
        s.log.wait_count("reload applied", 1).await,
        "{}",
        s.log.text()
    );
    assert!(
        !s_client(&pki, s.addr(), &revoked).await.echoed,
        "revoked after the reload"
    );
    // A response that is no longer usable fails the reload and keeps the old staple.
    std::fs::copy(pki.path("unauthorized.ocsp"), &ocsp).unwrap();
    let err = s
        .server
        .reload()
        .expect_err("an unusable OCSP response fails the reload");
    assert!(err.to_string().contains("live.ocsp"), "{err}");
    assert_eq!(
        s.metric("tls_echo_reloads_total{outcome=\"failure\"}"),
        1.0,
        "{}",
        s.server.metrics().render()
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
    let seen = s_client(&pki, s.addr(), &good).await;
    assert!(
        seen.echoed && seen.text.contains("Cert Status: good"),
        "{}",
        seen.text
    );
}

/// A subprocess: the `check` subcommand's output and exit code are the subject.
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
