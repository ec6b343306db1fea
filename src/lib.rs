//! tls-echo: a TLS echo server with an allowlist firewall in front of the handshake.
//!
//! One connection's path; each step hands a value forward and nothing calls back:
//!
//! ```text
//! accept (server) -> [PROXY header (proxy), trusted proxies only]
//!   -> firewall: allowlist, global cap, per-peer limits   (refused: close, no TLS byte)
//!   -> spawn task -> TLS handshake under a deadline (connection, tls)
//!   -> echo loop over one buffer: validate (line), echo, ERR on violation (echo)
//!   -> close_notify -> one close event {duration, lines, bytes, reason} -> limits freed
//! ```
//!
//! SIGHUP swaps TLS material and allowlist atomically (server::State::reload); SIGTERM/SIGINT
//! stop accepting and drain (lifecycle).
//!
//! Start-up ends with one handshake and echo in memory (selftest), then READY=1 to systemd,
//! which may also have passed the listening sockets (systemd); `--metrics-listen` serves the
//! counters (metrics) over a small HTTP responder (scrape).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod allowlist;
pub mod bench;
pub mod certinfo;
pub mod certs;
pub mod check;
pub mod cli;
pub mod client;
pub mod config;
pub mod connection;
pub mod echo;
pub mod engine;
pub mod firewall;
pub mod lifecycle;
pub mod limits;
pub mod line;
pub mod metrics;
pub mod proxy;
pub mod scrape;
pub mod selftest;
pub mod server;
pub mod startup;
pub mod systemd;
pub mod tls;
