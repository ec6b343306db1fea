//! Session resumption across instances sharing `--ticket-keys`, the keys' file-mode rule and
//! their rotation on reload, against `openssl s_client` (issue 13).

mod common;
mod tls_pki;

use std::os::unix::fs::PermissionsExt;

use common::*;
use tls_pki::*;

/// Saves a session from `first` and offers it to `second`; returns s_client's report of the
/// second handshake.
async fn resume(pki: &OpensslPki, first: &Served, second: &Served, version: &str) -> String {
    let sess = pki.path(&format!("session{version}.pem"));
    let _ = std::fs::remove_file(&sess);
    let sess = sess.display().to_string();
    let one = s_client(pki, first.addr(), &[version, "-sess_out", &sess]).await;
    assert!(one.echoed && one.text.contains("New, "), "{}", one.text);
    let two = s_client(pki, second.addr(), &[version, "-sess_in", &sess]).await;
    assert!(two.echoed, "{}", two.text);
    two.text
}

#[tokio::test]
async fn instances_sharing_ticket_keys_resume_each_others_sessions() {
    let pki = OpensslPki::new();
    let keys = pki.ticket_keys("tickets.keys", 0o600);
    let shared = with(
        pki.sni_args(),
        &["--ticket-keys", &keys.display().to_string()],
    );
    let (one, two) = (start(shared.clone()).await, start(shared).await);
    for version in ["-tls1_3", "-tls1_2"] {
        let text = resume(&pki, &one, &two, version).await;
        assert!(text.contains("Reused, "), "{version}: {text}");
    }
    let (one, two) = (start(pki.sni_args()).await, start(pki.sni_args()).await);
    for version in ["-tls1_3", "-tls1_2"] {
        let text = resume(&pki, &one, &two, version).await;
        assert!(
            text.contains("New, ") && !text.contains("Reused, "),
            "{version}: {text}"
        );
    }
}

/// A subprocess: the exit code and the start-up error are the subject.
#[test]
fn ticket_keys_every_user_can_read_stop_start_up() {
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
}

/// Rotation: the second instance starts with key A; after prepending B and a reload (the one
/// SIGHUP runs; tests/lifecycle.rs proves the signal wiring), the first instance's new tickets
/// (under B) resume on it.
#[tokio::test]
async fn ticket_keys_are_reread_on_reload() {
    let pki = OpensslPki::new();
    let a_keys = pki.ticket_keys("a.keys", 0o600);
    let b_keys = pki.ticket_keys("b.keys", 0o600);
    let rotated = pki.path("rotated.keys");
    let both = [
        std::fs::read(&b_keys).unwrap(),
        std::fs::read(&a_keys).unwrap(),
    ]
    .concat();
    std::fs::write(&rotated, both).unwrap();
    std::fs::set_permissions(&rotated, std::fs::Permissions::from_mode(0o600)).unwrap();
    let live = pki.path("live.keys");
    std::fs::copy(&a_keys, &live).unwrap();
    let first = start(with(
        pki.sni_args(),
        &["--ticket-keys", &rotated.display().to_string()],
    ))
    .await;
    let second = start(with(
        pki.sni_args(),
        &["--ticket-keys", &live.display().to_string()],
    ))
    .await;
    assert!(
        resume(&pki, &first, &second, "-tls1_3")
            .await
            .contains("New, ")
    );
    std::fs::copy(&rotated, &live).unwrap();
    second.server.reload().expect("reload");
    // The reload ran on this thread, whose log capture is the last server started: `second`.
    assert!(
        second
            .log
            .wait_for(|l| l.contains("reload applied"))
            .await
            .is_some(),
        "{}",
        second.log.text()
    );
    assert!(
        resume(&pki, &first, &second, "-tls1_3")
            .await
            .contains("Reused, ")
    );
}
