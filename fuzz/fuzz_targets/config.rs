//! The TOML config file: any text -> `ServeArgs` -> `Config::resolve` never panics, and a
//! configuration that resolves keeps the invariants the server relies on. `dev` is cleared
//! before resolving because it writes certificates to disk.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tls_echo::cli::ServeArgs;
use tls_echo::config::{Config, defaults};

fuzz_target!(|text: &str| {
    let Ok(mut args) = toml::from_str::<ServeArgs>(text) else {
        return;
    };
    args.dev = false;
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
    assert!(!config.dev);
});
