//! The IP allowlist: CIDR entries parsed without ever consulting DNS, merged into sorted
//! disjoint ranges so that a lookup is a binary search however long the list.
//!
//! The policy is one allowlist and nothing else: no deny rules, so there is no precedence to
//! get wrong. An address is admitted if and only if some entry contains it.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::cidr::key;
pub use super::cidr::{AllowEntry, Cidr, EntryError};

/// An allow-file line that does not parse.
#[derive(Debug, thiserror::Error)]
pub enum AllowFileError {
    /// The file cannot be read.
    #[error("cannot read allow-file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// An entry is invalid.
    #[error("{path}:{line}: {source}")]
    Entry {
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        source: EntryError,
    },
}

/// Parses allow-file text: one entry a line, `#` starts a comment, blank lines are skipped.
pub fn parse_allow_file(text: &str, path: &Path) -> Result<Vec<(Cidr, String)>, AllowFileError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let entry = raw.split('#').next().unwrap_or("").trim();
        if entry.is_empty() {
            continue;
        }
        let origin = format!("{}:{}", path.display(), i + 1);
        let cidrs = entry
            .parse::<AllowEntry>()
            .map_err(|source| AllowFileError::Entry {
                path: path.to_owned(),
                line: i + 1,
                source,
            })?
            .cidrs();
        out.extend(cidrs.into_iter().map(|c| (c, origin.clone())));
    }
    Ok(out)
}

/// Reads and parses an allow-file.
pub fn read_allow_file(path: &Path) -> Result<Vec<(Cidr, String)>, AllowFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| AllowFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_allow_file(&text, path)
}

/// The allowlist in force: `--allow` entries plus the allow-file, read now (at start and on
/// every reload).
pub fn load(flags: &[AllowEntry], file: Option<&Path>) -> Result<Allowlist, AllowFileError> {
    let file = file.map(read_allow_file).transpose()?;
    Ok(Allowlist::new(flags, file))
}

/// The compiled allowlist: every entry with where it came from, plus merged ranges per family
/// for the lookup on the accept path.
#[derive(Debug, Clone, Default)]
pub struct Allowlist {
    entries: Vec<(Cidr, String)>,
    v4: Vec<(u128, u128)>,
    v6: Vec<(u128, u128)>,
}

impl Allowlist {
    /// Builds the list from `--allow` values and allow-file entries. With neither configured,
    /// only loopback is allowed: the secure default. An allow-file that is configured but
    /// empty admits nobody.
    pub fn new(flags: &[AllowEntry], file: Option<Vec<(Cidr, String)>>) -> Allowlist {
        let configured = !flags.is_empty() || file.is_some();
        let mut entries: Vec<(Cidr, String)> = flags
            .iter()
            .flat_map(|e| e.cidrs())
            .map(|c| (c, "--allow".to_string()))
            .chain(file.unwrap_or_default())
            .collect();
        if !configured {
            entries = Self::loopback_entries();
        }
        let ranges = |v4: bool| {
            let mut r: Vec<(u128, u128)> = entries
                .iter()
                .filter(|(c, _)| c.is_ipv4() == v4)
                .map(|(c, _)| c.range())
                .collect();
            merge(&mut r);
            r
        };
        let (v4, v6) = (ranges(true), ranges(false));
        Allowlist { entries, v4, v6 }
    }

    fn loopback_entries() -> Vec<(Cidr, String)> {
        ["127.0.0.0/8", "::1/128"]
            .iter()
            .map(|c| {
                (
                    c.parse().expect("literal"),
                    "default (loopback only)".into(),
                )
            })
            .collect()
    }

    /// Whether nothing was configured and the loopback default applies.
    pub fn is_loopback_default(&self) -> bool {
        !self.entries.is_empty() && self.entries.iter().all(|(_, o)| o.starts_with("default"))
    }

    /// Whether `ip` may connect. IPv4-mapped IPv6 addresses are matched as IPv4.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        let ranges = if ip.is_ipv4() { &self.v4 } else { &self.v6 };
        let v = key(ip);
        let i = ranges.partition_point(|&(lo, _)| lo <= v);
        i > 0 && ranges[i - 1].1 >= v
    }

    /// The first entry that admits `ip` and where it came from (slow: for `check` only).
    pub fn explain(&self, ip: IpAddr) -> Option<&(Cidr, String)> {
        self.entries.iter().find(|(c, _)| c.contains(ip))
    }

    /// Number of entries (after `any` expansion).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the list admits nobody.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Sorts and merges overlapping or adjacent ranges in place.
fn merge(r: &mut Vec<(u128, u128)>) {
    r.sort_unstable();
    let mut out: Vec<(u128, u128)> = Vec::with_capacity(r.len());
    for &(lo, hi) in r.iter() {
        match out.last_mut() {
            Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    *r = out;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn default_is_loopback_only() {
        let a = Allowlist::new(&[], None);
        assert!(a.is_loopback_default());
        assert!(a.allows(ip("127.0.0.1")) && a.allows(ip("127.9.9.9")) && a.allows(ip("::1")));
        assert!(!a.allows(ip("10.0.0.1")) && !a.allows(ip("::2")));
    }

    #[test]
    fn mapped_addresses_match_as_ipv4() {
        let a = Allowlist::new(&["192.0.2.0/24".parse().unwrap()], None);
        assert!(a.allows(ip("::ffff:192.0.2.9")));
        assert!(!a.allows(ip("::ffff:198.51.100.1")));
        assert!(
            !a.allows(ip("127.0.0.1")),
            "explicit list replaces the default"
        );
    }

    #[test]
    fn lookup_agrees_with_linear_scan() {
        let flags: Vec<AllowEntry> = [
            "10.0.0.0/8",
            "10.1.0.0/16",
            "10.255.255.255",
            "11.0.0.0/31",
            "2001:db8::/48",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        let a = Allowlist::new(&flags, None);
        for s in [
            "9.255.255.255",
            "10.0.0.0",
            "10.255.255.255",
            "11.0.0.0",
            "11.0.0.1",
            "11.0.0.2",
            "2001:db8::1",
            "2001:db8:1::",
        ] {
            assert_eq!(a.allows(ip(s)), a.explain(ip(s)).is_some(), "{s}");
        }
    }

    #[test]
    fn allow_file_reports_file_and_line() {
        let text = "# office\n10.0.0.0/8   # lan\n\nbad.example\n";
        let err = parse_allow_file(text, Path::new("allow.txt")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("allow.txt:4: 'bad.example' is a host name"),
            "{err}"
        );
        let ok = parse_allow_file("10.0.0.0/8 # lan\nany\n", Path::new("a")).unwrap();
        assert_eq!(ok.len(), 3);
        assert_eq!(ok[0].1, "a:1");
    }
}
