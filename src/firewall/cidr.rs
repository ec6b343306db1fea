//! Network entries as operators write them: CIDRs and addresses, parsed without ever consulting
//! DNS (a host name is refused with the reason), host-bit typos refused with a suggestion, and
//! IPv4-mapped IPv6 stored as IPv4 so that one address has one spelling.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::Deserialize;

/// An IPv4 or IPv6 network. IPv4-mapped IPv6 networks are stored as IPv4, so that one address
/// has one spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` (canonicalised first) lies in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let (lo, hi) = self.range();
        let v = key(ip.to_canonical());
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => lo <= v && v <= hi,
            _ => false,
        }
    }

    /// First and last address as integers.
    pub(super) fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    pub(super) fn range(&self) -> (u128, u128) {
        let bits = if self.addr.is_ipv4() { 32 } else { 128 };
        let host = bits - u32::from(self.prefix);
        let lo = key(self.addr);
        let span = if host == 128 {
            u128::MAX
        } else {
            (1u128 << host) - 1
        };
        (lo, lo | span)
    }
}

pub(super) fn key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Why an allowlist entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// Access control must not depend on name resolution.
    #[error(
        "'{0}' is a host name; access control never consults DNS (an attacker who controls \
         resolution would control the allowlist): write the address or network, e.g. 192.0.2.10 or 192.0.2.0/24"
    )]
    HostName(String),
    /// Neither an address nor a CIDR.
    #[error("'{0}' is not an IP address or CIDR network (e.g. 10.0.0.0/8, 2001:db8::/32)")]
    Malformed(String),
    /// The prefix length is out of range for the family.
    #[error("'{0}': prefix length must be 0-{1}")]
    Prefix(String, u8),
    /// Bits below the prefix are set, which usually means a typo.
    #[error("'{entry}' has host bits set; did you mean {suggestion}?")]
    HostBits {
        /// The entry as written.
        entry: String,
        /// The network it probably meant.
        suggestion: Cidr,
    },
}

impl FromStr for Cidr {
    type Err = EntryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr_part, prefix_part) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = match addr_part.parse() {
            Ok(a) => a,
            Err(_) if looks_like_name(addr_part) => return Err(EntryError::HostName(s.into())),
            Err(_) => return Err(EntryError::Malformed(s.into())),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix_part {
            None => max,
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= max)
                .ok_or_else(|| EntryError::Prefix(s.into(), max))?,
            Some(_) => return Err(EntryError::Malformed(s.into())),
        };
        let (addr, prefix) = match addr {
            IpAddr::V6(v6) if prefix >= 96 && v6.to_ipv4_mapped().is_some() => (
                IpAddr::V4(v6.to_ipv4_mapped().expect("checked")),
                prefix - 96,
            ),
            other => (other, prefix),
        };
        let network = mask(addr, prefix);
        let cidr = Cidr {
            addr: network,
            prefix,
        };
        if network != addr {
            return Err(EntryError::HostBits {
                entry: s.into(),
                suggestion: cidr,
            });
        }
        Ok(cidr)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

fn looks_like_name(s: &str) -> bool {
    s.bytes().any(|b| b.is_ascii_alphabetic())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & m))
        }
        IpAddr::V6(a) => {
            let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & m))
        }
    }
}

/// One `--allow` value: a network, or `any` for every IPv4 and IPv6 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllowEntry {
    /// One network.
    Net(Cidr),
    /// 0.0.0.0/0 and ::/0.
    Any,
}

impl FromStr for AllowEntry {
    type Err = EntryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("any") {
            Ok(AllowEntry::Any)
        } else {
            s.parse().map(AllowEntry::Net)
        }
    }
}

impl<'de> Deserialize<'de> for AllowEntry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl AllowEntry {
    pub(super) fn cidrs(self) -> Vec<Cidr> {
        match self {
            AllowEntry::Net(c) => vec![c],
            AllowEntry::Any => vec![
                "0.0.0.0/0".parse().expect("literal"),
                "::/0".parse().expect("literal"),
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_back() {
        for s in [
            "10.0.0.0/8",
            "192.0.2.7/32",
            "2001:db8::/32",
            "::1/128",
            "0.0.0.0/0",
        ] {
            assert_eq!(s.parse::<Cidr>().unwrap().to_string(), s);
        }
        assert_eq!(
            "192.0.2.7".parse::<Cidr>().unwrap().to_string(),
            "192.0.2.7/32"
        );
        assert_eq!(
            "::ffff:192.0.2.0/120".parse::<Cidr>().unwrap().to_string(),
            "192.0.2.0/24"
        );
    }

    #[test]
    fn refuses_names_and_typos() {
        assert!(matches!(
            "example.com".parse::<Cidr>(),
            Err(EntryError::HostName(_))
        ));
        assert!(matches!(
            "localhost".parse::<Cidr>(),
            Err(EntryError::HostName(_))
        ));
        assert!(matches!(
            "10.0.0.0/33".parse::<Cidr>(),
            Err(EntryError::Prefix(..))
        ));
        assert!(matches!(
            "10.0.0.1/8".parse::<Cidr>(),
            Err(EntryError::HostBits { .. })
        ));
        assert!(matches!(
            "10.0.0.0/".parse::<Cidr>(),
            Err(EntryError::Malformed(_))
        ));
        assert!(matches!(
            "10.0.0.0/+8".parse::<Cidr>(),
            Err(EntryError::Malformed(_))
        ));
    }
}
