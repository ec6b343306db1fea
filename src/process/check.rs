//! `tls-echo check`: validates a configuration without serving, as systemd's `ExecStartPre`
//! does, and answers offline whether a peer would be admitted and by which entry.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use clap::Args;
use rustls::pki_types::UnixTime;

use super::startup;
use crate::config::{Config, Options};
use crate::firewall::FirewallMode;
use crate::firewall::allowlist;
use crate::tls::certinfo::{CertInfo, EXPIRY_WARNING_DAYS};
use crate::tls::{self, KeyMode, key_mode};

/// `tls-echo check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The configuration to check, as the server would take it.
    #[command(flatten)]
    pub serve: Options,
    /// Also say whether a connection from this address would be admitted.
    #[arg(long, value_name = "IP")]
    pub peer: Option<IpAddr>,
    /// With --peer: also check this client certificate against --client-ca/--allow-client.
    #[arg(long, value_name = "FILE", requires = "peer")]
    pub client_cert: Option<PathBuf>,
}

/// A running tally of the report.
#[derive(Default)]
struct Report {
    errors: usize,
    warnings: usize,
}

impl Report {
    fn ok(&mut self, what: impl std::fmt::Display) {
        println!("ok    {what}");
    }
    fn warn(&mut self, what: impl std::fmt::Display) {
        self.warnings += 1;
        println!("warn  {what}");
    }
    fn fail(&mut self, what: impl std::fmt::Display) {
        self.errors += 1;
        println!("FAIL  {what}");
    }
}

/// Prints the report; returns whether there was no error.
pub fn run(args: CheckArgs) -> bool {
    let mut r = Report::default();
    let config = match startup::options(args.serve).and_then(Config::resolve) {
        Ok(c) => c,
        Err(e) => {
            r.fail(e);
            return finish(r);
        }
    };
    if let Err(e) = startup::dev_material(&config) {
        r.fail(e);
        return finish(r);
    }
    check_tls(&config, &mut r);
    let allowlist = match allowlist::load(&config.allow, config.allow_file.as_deref()) {
        Ok(a) => {
            if a.is_loopback_default() {
                r.ok("allowlist: none configured, so loopback only (127.0.0.0/8, ::1)");
            } else if a.is_empty() {
                r.warn("allowlist is empty: every connection will be refused");
            } else {
                r.ok(format!("allowlist: {} entries", a.len()));
            }
            Some(a)
        }
        Err(e) => {
            r.fail(e);
            None
        }
    };
    if config.firewall_mode == FirewallMode::Audit {
        r.warn("firewall mode is audit: refused peers are admitted and only logged");
    }
    if let (Some(peer), Some(list)) = (args.peer, allowlist) {
        match list.explain(peer) {
            Some((cidr, origin)) => r.ok(format!("peer {peer} is admitted by {cidr} ({origin})")),
            None => r.fail(format!(
                "peer {peer} is refused: no allowlist entry contains {}",
                peer.to_canonical()
            )),
        }
        if config.is_trusted_proxy(peer) {
            r.ok(format!(
                "peer {peer} is a trusted proxy: its PROXY headers decide the client address"
            ));
        }
        if let Some(cert) = &args.client_cert {
            check_client_cert(&config, cert, &mut r);
        }
    }
    finish(r)
}

fn check_tls(config: &Config, r: &mut Report) {
    let s = &config.tls;
    for key in s.identities.iter().map(|id| &id.key).chain(&s.ticket_keys) {
        match key_mode(key) {
            Ok(KeyMode::Private) => r.ok(format!(
                "key {} is readable by its owner only",
                key.display()
            )),
            Ok(KeyMode::GroupReadable(m)) => r.warn(format!(
                "key {} is group-readable (mode {m:o}); chmod 600 it",
                key.display()
            )),
            Ok(KeyMode::WorldReadable(m)) => r.fail(format!(
                "key {} is readable by every user (mode {m:o}); the server refuses it: chmod 600 {}",
                key.display(),
                key.display()
            )),
            Err(_) => {} // tls::load below names the unreadable file
        }
    }
    match tls::load(s) {
        Ok(m) => {
            for (i, c) in m.certs.iter().enumerate() {
                let role = if i == 0 { " (default)" } else { "" };
                r.ok(format!(
                    "certificate {}{role} and key {} match; names: {}",
                    c.identity.cert.display(),
                    c.identity.key.display(),
                    c.info.names.join(", ")
                ));
                report_validity(&c.info, r);
                if let Some(o) = &c.ocsp {
                    report_ocsp(o, r);
                }
            }
            if let Some(ca) = &s.client_ca {
                r.ok(format!(
                    "client CA {} loaded (mutual TLS required)",
                    ca.display()
                ));
            }
            for crl in &m.crls {
                report_crl(crl, r);
            }
            if !s.alpn.is_empty() {
                r.ok(format!("ALPN: {}", s.alpn.join(", ")));
            }
            if let Some(keys) = &s.ticket_keys {
                r.ok(format!("ticket keys {} loaded", keys.display()));
            }
        }
        Err(e) => r.fail(e),
    }
}

fn report_crl(crl: &tls::crl::CrlInfo, r: &mut Report) {
    let next = crl.next_update.map_or("none".into(), date);
    let what = format!(
        "CRL {}: issuer {}, {} revoked, next update {next}",
        crl.path.display(),
        crl.issuer,
        crl.revoked
    );
    if crl.next_update.is_some_and(|t| t < now_secs()) {
        r.warn(format!("{what}: past its next update, fetch a fresh CRL"));
    } else {
        r.ok(what);
    }
}

fn report_ocsp(o: &tls::ocsp::OcspInfo, r: &mut Report) {
    let next = o.next_update.map_or("none".into(), date);
    let what = format!(
        "OCSP response {} for {}: {}, next update {next}",
        o.path.display(),
        o.cert.display(),
        o.status
    );
    if o.expired() {
        r.fail(format!(
            "{what}: EXPIRED (served with a warning; clients that check refuse it)"
        ));
    } else if o.status != "good" {
        r.fail(what);
    } else {
        r.ok(what);
    }
}

fn now_secs() -> i64 {
    UnixTime::now().as_secs() as i64
}

fn date(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| t.to_string())
}

/// Reports a certificate's validity: error if expired or not yet valid, warning when close.
fn report_validity(leaf: &CertInfo, r: &mut Report) {
    let left = leaf.seconds_left();
    let days = left / 86_400;
    if left <= 0 {
        r.fail(format!(
            "certificate expired {} days ago (subject {})",
            -days, leaf.subject
        ));
    } else if leaf.not_before > leaf.not_after - left {
        r.fail(format!(
            "certificate is not valid yet (subject {})",
            leaf.subject
        ));
    } else if days < EXPIRY_WARNING_DAYS {
        r.warn(format!(
            "certificate expires in {days} days: renew it and `systemctl reload tls-echo`"
        ));
    } else {
        r.ok(format!(
            "certificate valid for {days} more days, until {}",
            date(leaf.not_after)
        ));
    }
}

fn check_client_cert(config: &Config, path: &Path, r: &mut Report) {
    let Some(ca) = &config.tls.client_ca else {
        r.warn("--client-cert given but no --client-ca is configured: client certificates are not requested");
        return;
    };
    let chain = match tls::read_certs(path, "client certificate") {
        Ok(c) => c,
        Err(e) => return r.fail(e),
    };
    let crls = match tls::crl::load(&config.tls.client_crls) {
        Ok((ders, _)) => ders,
        Err(e) => return r.fail(e),
    };
    let verifier = match tls::client_verifier(ca, &config.tls.allow_client, crls, tls::provider()) {
        Ok(v) => v,
        Err(e) => return r.fail(e),
    };
    match verifier.verify_client_cert(&chain[0], &chain[1..], UnixTime::now()) {
        Ok(_) => r.ok(format!(
            "client certificate {} would be admitted{}",
            path.display(),
            if config.tls.client_crls.is_empty() {
                ""
            } else {
                " (not revoked)"
            }
        )),
        Err(rustls::Error::InvalidCertificate(rustls::CertificateError::Revoked)) => {
            r.fail(format!(
                "client certificate {} is REVOKED by a --client-crl: it would be refused",
                path.display()
            ))
        }
        Err(e) => r.fail(format!(
            "client certificate {} would be refused: {e}",
            path.display()
        )),
    }
}

fn finish(r: Report) -> bool {
    println!("check: {} error(s), {} warning(s)", r.errors, r.warnings);
    r.errors == 0
}
