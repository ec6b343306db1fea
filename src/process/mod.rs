//! The process around the server: start-up (files, checks, announcements), signals and reload,
//! systemd integration, the start-up self-test, the metrics endpoint and `tls-echo check`.
//! Nothing on the connection path imports this module.

pub mod check;
pub mod scrape;
pub mod selftest;
pub mod signals;
pub mod startup;
pub mod systemd;
