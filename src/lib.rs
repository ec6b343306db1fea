//! tls-echo: a TLS echo server with an allowlist firewall in front of the handshake.
//!
//! One connection's path, one module per stage; each hands a value forward and nothing calls
//! back up:
//!
//! ```text
//! server      accept -> seat under --max-conns (full: close) -> spawn one task
//! proxy         -> PROXY header (trusted proxies only) names the client
//! firewall      -> allowlist, per-peer limits           (refused: close, no TLS byte)
//! connection    -> TLS handshake under a deadline (material from tls)
//!               -> echo: validate (echo), echo, ERR on violation, lingering close
//!               -> close_notify -> one close event {duration, lines, bytes, reason}
//! ```
//!
//! Both phases of a connection run on `engine`, our own I/O loop over rustls's unbuffered
//! API: large reads into a per-thread buffer, records decrypted in place, each batch of echo
//! encrypted into one write; a quiet connection holds almost no memory.
//!
//! Beside the path: `config` (options -> validated settings, pure), `metrics` (the counters
//! every stage is handed), `process` (start-up, signals and reload, systemd, self-test, the
//! metrics endpoint, `check`), `tools` (certificate generation, the client) and, behind the
//! default `bench` feature, the load generator. `cli` assembles the command line for the binary.
#![forbid(unsafe_code)]

#[cfg(feature = "bench")]
pub mod bench;
pub mod cli;
pub mod config;
mod connection;
pub mod echo;
pub mod engine;
pub mod firewall;
pub mod metrics;
pub mod process;
pub mod proxy;
pub mod server;
pub mod tls;
pub mod tools;
