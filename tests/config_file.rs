//! The `--config` TOML file: precedence (flag, environment, file, default), paths relative to
//! the file, and the start-up error naming a bad key and the file. The environment, the
//! working directory and the exit status belong to the process, so the server runs as one.

mod common;

use common::*;

/// Whether a line of `len` bytes (LF included) is echoed by a server with `extra` args
/// and environment `env`.
async fn accepts(pki: &Pki, extra: &[&str], env: &[(&str, &str)], len: usize) -> bool {
    let mut a = pki.args();
    a.extend(args(extra));
    a.extend(args(&["--listen", "127.0.0.1:0"]));
    let mut cmd = std::process::Command::new(bin());
    cmd.args(&a).env("RUST_LOG", "info");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let s = Server::from_command(cmd, 1);
    let mut c = connect(s.addr(), &pki.ca).await;
    let msg: Vec<u8> = std::iter::repeat_n(b'a', len - 1).chain([b'\n']).collect();
    roundtrip(&mut c, &msg, msg.len()).await == msg
}

#[tokio::test]
async fn flags_then_environment_then_file_then_defaults() {
    let pki = Pki::new();
    let file = pki.write(
        "tls-echo.toml",
        "# comment\nmax-line = 10\nidle-timeout = \"5m\"\n",
    );
    let cfg = file.display().to_string();
    assert!(
        !accepts(&pki, &["--config", &cfg], &[], 12).await,
        "file: 10"
    );
    assert!(
        accepts(
            &pki,
            &["--config", &cfg],
            &[("TLS_ECHO_MAX_LINE", "20")],
            12
        )
        .await,
        "env over file"
    );
    assert!(
        !accepts(
            &pki,
            &["--config", &cfg],
            &[("TLS_ECHO_MAX_LINE", "20")],
            25
        )
        .await,
        "env: 20"
    );
    assert!(
        accepts(
            &pki,
            &["--config", &cfg, "--max-line", "30"],
            &[("TLS_ECHO_MAX_LINE", "20")],
            25
        )
        .await,
        "flag over env"
    );
    assert!(accepts(&pki, &[], &[], 4000).await, "default 4096");
}

#[tokio::test]
async fn relative_paths_in_the_file_are_relative_to_the_file() {
    let pki = Pki::new();
    let file = pki.write(
        "tls-echo.toml",
        "cert = \"server.pem\"\nkey = \"server.key\"\nlisten = [\"127.0.0.1:0\"]\n",
    );
    let elsewhere = tempfile::tempdir().unwrap();
    let s = Server::start_in(
        &args(&["--config", &file.display().to_string()]),
        Some(elsewhere.path()),
    );
    let mut c = connect(s.addr(), &pki.ca).await;
    assert_eq!(
        roundtrip(&mut c, b"via config\n", 11).await,
        b"via config\n"
    );
}

#[test]
fn unknown_keys_and_bad_values_name_the_key_and_the_file() {
    let pki = Pki::new();
    for (text, needle) in [
        ("max-lines = 5\n", "max-lines"),
        ("idle-timeout = \"soon\"\n", "idle-timeout"),
        ("allow = [\"example.com\"]\n", "never consults DNS"),
    ] {
        let file = pki.write("bad.toml", text);
        let mut a = pki.args();
        a.extend(args(&["--config", &file.display().to_string()]));
        let (code, out) = run_to_end(&a, None);
        assert_eq!(code, 2, "{out}");
        assert!(
            out.contains("bad.toml") && out.contains(needle),
            "{needle}: {out}"
        );
    }
}
