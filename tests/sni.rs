//! Several certificates by SNI and key type, and `--strict-sni`, against `openssl s_client`
//! (issue 13). The server runs in-process; s_client runs on the blocking pool.

mod common;
mod tls_pki;

use tls_pki::*;

#[tokio::test]
async fn each_certificate_is_served_for_its_names_and_the_first_is_the_default() {
    let pki = OpensslPki::new();
    let s = start(pki.sni_args()).await;
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
        )
        .await;
        assert!(seen.echoed, "{name}: {}", seen.text);
        assert!(
            seen.text.contains(&format!("subject={cn}\n")),
            "{name} should get {cn}: {}",
            seen.text
        );
    }
    // Without SNI: the default; the names are on the certificate, not the IP.
    let seen = s_client(&pki, s.addr(), &["-noservername"]).await;
    assert!(
        seen.echoed && seen.text.contains("subject=CN = a\n"),
        "{}",
        seen.text
    );
}

#[tokio::test]
async fn the_key_type_follows_what_the_client_can_verify() {
    let pki = OpensslPki::new();
    let s = start(pki.sni_args()).await;
    for (sigalgs, cn) in [
        ("rsa_pss_rsae_sha256:rsa_pkcs1_sha256", "CN = mixed-rsa"),
        ("ecdsa_secp256r1_sha256", "CN = mixed-ec"),
    ] {
        for version in ["-tls1_3", "-tls1_2"] {
            let seen = s_client(
                &pki,
                s.addr(),
                &["-servername", "mixed.test", "-sigalgs", sigalgs, version],
            )
            .await;
            assert!(seen.echoed, "{sigalgs} {version}: {}", seen.text);
            assert!(
                seen.text.contains(&format!("subject={cn}\n")),
                "{sigalgs} {version} should get {cn}: {}",
                seen.text
            );
        }
    }
}

#[tokio::test]
async fn strict_sni_refuses_unknown_and_missing_names_with_unrecognized_name() {
    let pki = OpensslPki::new();
    let s = start(with(pki.sni_args(), &["--strict-sni"])).await;
    for name in ["a.test", "y.b.test"] {
        let seen = s_client(&pki, s.addr(), &["-servername", name]).await;
        assert!(seen.echoed, "{name}: {}", seen.text);
    }
    for extra in [
        &["-servername", "unknown.test"][..],
        &["-noservername"],
        &["-servername", "b.test"],
    ] {
        let seen = s_client(&pki, s.addr(), extra).await;
        assert!(!seen.echoed, "{extra:?}: {}", seen.text);
        assert!(
            seen.text.contains("unrecognized name") && seen.text.contains("alert number 112"),
            "{extra:?}: {}",
            seen.text
        );
    }
    assert!(
        s.log
            .wait_for(|l| l.contains("sni-unrecognized"))
            .await
            .is_some(),
        "{}",
        s.log.text()
    );
}
