//! Every TLS feature of issue 13 (SNI, ALPN, client CRLs, OCSP, ticket keys) from the
//! `--config` file, with paths relative to it. A subprocess: reading the config file and
//! resolving its paths is what the binary does at start-up, not what `Served` does.

mod common;
mod tls_pki;

use common::*;
use tls_pki::*;

#[tokio::test]
async fn every_option_works_from_the_config_file_with_paths_relative_to_it() {
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
    )
    .await;
    assert!(
        seen.echoed && seen.text.contains("ALPN protocol: h2"),
        "{}",
        seen.text
    );
    let seen = s_client(
        &pki,
        s.addr(),
        &[&["-servername", "a.test", "-status"][..], &good].concat(),
    )
    .await;
    assert!(
        seen.echoed && seen.text.contains("Cert Status: good"),
        "{}",
        seen.text
    );
    let seen = s_client(
        &pki,
        s.addr(),
        &[&["-servername", "c.test"][..], &good].concat(),
    )
    .await;
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
    assert!(!s_client(&pki, s.addr(), &revoked).await.echoed);
    assert!(
        s.log
            .wait_for(|l| l.contains("client-cert-revoked"))
            .is_some()
    );
    // One path, not an array, still reads.
    let single = "cert = \"a-chain.pem\"\nkey = \"a.key\"\nlisten = [\"127.0.0.1:0\"]\n";
    std::fs::write(pki.path("single.toml"), single).unwrap();
    let s = Server::start_in(&args(&["--config", "single.toml"]), Some(pki.dir.path()));
    assert!(
        s_client(&pki, s.addr(), &["-servername", "a.test"])
            .await
            .echoed
    );
}
