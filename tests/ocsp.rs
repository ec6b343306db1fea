//! OCSP stapling (`--ocsp-response`) against `openssl s_client`, and the start-up refusal of
//! responses that cannot be stapled (issue 13).

mod common;
mod tls_pki;

use common::*;
use tls_pki::*;

#[tokio::test]
async fn the_ocsp_response_is_stapled_to_the_certificate_it_covers() {
    let pki = OpensslPki::new();
    let s = start(with(
        pki.sni_args(),
        &[
            "--ocsp-response",
            &pki.p("b-wild.ocsp"),
            "--ocsp-response",
            &pki.p("a.ocsp"),
        ],
    ))
    .await;
    for name in ["a.test", "z.b.test"] {
        let seen = s_client(&pki, s.addr(), &["-servername", name, "-status"]).await;
        assert!(seen.echoed, "{}", seen.text);
        assert!(
            seen.text.contains("OCSP Response Status: successful (0x0)")
                && seen.text.contains("Cert Status: good"),
            "{name}: {}",
            seen.text
        );
    }
    // No response covers mixed.test: nothing is stapled.
    let seen = s_client(&pki, s.addr(), &["-servername", "mixed.test", "-status"]).await;
    assert!(
        seen.echoed && seen.text.contains("OCSP response: no response sent"),
        "{}",
        seen.text
    );
}

/// A subprocess: the exit code and the start-up error are the subject.
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
