//! `tls-echo check`: the configuration report and its exit status (0 clean or warnings only,
//! 1 on any error), run as the command it is.

mod common;

use common::*;
use tls_echo::tools::certs::Validity;

fn check(pki: &Pki, extra: &[&str]) -> (i32, String) {
    let mut a = args(&["check"]);
    a.extend(pki.args());
    a.extend(args(extra));
    run_to_end(&a, None)
}

#[test]
fn good_configuration_passes_with_a_readable_report() {
    let pki = Pki::new();
    let (code, out) = check(&pki, &["--allow", "10.0.0.0/8", "--peer", "10.1.2.3"]);
    assert_eq!(code, 0, "{out}");
    for needle in [
        "match",
        "valid for",
        "localhost, 127.0.0.1, ::1",
        "peer 10.1.2.3 is admitted by 10.0.0.0/8 (--allow)",
        "0 error(s)",
    ] {
        assert!(out.contains(needle), "{needle}: {out}");
    }
}

#[test]
fn expiry_permissions_and_files_are_reported() {
    let now = time::OffsetDateTime::now_utc();
    let soon = Pki::with_validity(Validity {
        not_before: now - time::Duration::days(1),
        not_after: now + time::Duration::days(5),
    });
    let (code, out) = check(&soon, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("warn  certificate expires in"), "{out}");

    let expired = Pki::with_validity(Validity {
        not_before: now - time::Duration::days(9),
        not_after: now - time::Duration::days(2),
    });
    let (code, out) = check(&expired, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAIL  certificate expired"), "{out}");

    use std::os::unix::fs::PermissionsExt;
    let pki = Pki::new();
    std::fs::set_permissions(&pki.key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let (code, out) = check(&pki, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("group-readable"), "{out}");
    std::fs::set_permissions(&pki.key, std::fs::Permissions::from_mode(0o604)).unwrap();
    let (code, out) = check(&pki, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("readable by every user"), "{out}");

    let file = pki.write("allow.txt", "10.0.0.0/8\nexample.org\n");
    std::fs::set_permissions(&pki.key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, out) = check(&pki, &["--allow-file", &file.display().to_string()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("allow.txt:2"), "{out}");
}
