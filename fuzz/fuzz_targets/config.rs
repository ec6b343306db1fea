//! The TOML config file: any text -> `Options` -> `Config::resolve` never panics, and a
//! configuration that resolves keeps the invariants the server relies on. Resolving is pure
//! (start-up creates the `--dev` material), so `dev` is fuzzed like any other key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tls_echo::config::{Config, Options, defaults};

fuzz_target!(|text: &str| {
    let Ok(args) = toml::from_str::<Options>(text) else {
        return;
    };
    let dev = args.dev;
    let (allow, proxy_protocol) = (args.allow.clone(), args.proxy_protocol);
    let Ok(config) = Config::resolve(args) else {
        return;
    };
    assert!(!config.listen.is_empty());
    assert!((2..=defaults::MAX_LINE_CEILING).contains(&config.echo.max_line));
    assert!(config.rate_per_ip.is_finite() && config.rate_per_ip > 0.0);
    assert!(config.max_conns >= 1);
    assert!(proxy_protocol != config.trusted_proxies.is_empty());
    assert_eq!(config.allow, allow);
    assert!(!dev || config.listen.iter().all(|a| a.ip().is_loopback()));
});
