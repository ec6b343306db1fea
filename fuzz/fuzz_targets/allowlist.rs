//! Allowlist entries: any text that parses as a CIDR formats back to an entry that parses to the
//! same network, and the compiled lookup (`Allowlist::allows`, merged ranges and a binary
//! search) agrees with a linear scan over `Cidr::contains` at every range edge.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tls_echo::firewall::allowlist::{AllowEntry, Allowlist, Cidr};

#[derive(Debug, Arbitrary)]
struct Input {
    /// Free text, as an operator might write it.
    text: String,
    /// Networks built to parse: address, prefix length, whether to write v4 as mapped v6.
    nets: Vec<(IpAddr, u8, bool)>,
    /// Addresses to look up, besides every network's edges.
    probes: Vec<IpAddr>,
}

fuzz_target!(|input: Input| {
    if let Ok(c) = input.text.parse::<Cidr>() {
        assert_eq!(c.to_string().parse::<Cidr>(), Ok(c), "{:?}", input.text);
    }
    if let Ok(AllowEntry::Net(c)) = input.text.parse::<AllowEntry>() {
        assert_eq!(c.to_string().parse::<AllowEntry>(), Ok(AllowEntry::Net(c)));
    }

    let mut cidrs = Vec::new();
    for &(addr, prefix, mapped) in input.nets.iter().take(16) {
        let text = spell(addr, prefix, mapped);
        let c: Cidr = text
            .parse()
            .unwrap_or_else(|e| panic!("{text:?} is a masked network but was refused: {e}"));
        assert_eq!(c.to_string().parse::<Cidr>(), Ok(c), "{text:?}");
        cidrs.push(c);
    }
    let flags: Vec<AllowEntry> = cidrs.iter().copied().map(AllowEntry::Net).collect();
    let list = Allowlist::new(&flags, None);
    let edges = cidrs.iter().flat_map(|c| edges(*c));
    for ip in input.probes.iter().copied().take(16).chain(edges) {
        let linear = if cidrs.is_empty() {
            ip.to_canonical().is_loopback()
        } else {
            cidrs.iter().any(|c| c.contains(ip))
        };
        assert_eq!(list.allows(ip), linear, "{ip} against {cidrs:?}");
        assert_eq!(list.explain(ip).is_some(), linear, "{ip} against {cidrs:?}");
    }
});

/// `addr` masked to `prefix` (clamped to the family), written as an operator would.
fn spell(addr: IpAddr, prefix: u8, mapped: bool) -> String {
    match addr {
        IpAddr::V4(a) => {
            let p = u32::from(prefix % 33);
            let net = Ipv4Addr::from(u32::from(a) & u32::MAX.checked_shl(32 - p).unwrap_or(0));
            if mapped {
                format!("{}/{}", net.to_ipv6_mapped(), p + 96)
            } else {
                format!("{net}/{p}")
            }
        }
        IpAddr::V6(a) => {
            let p = u32::from(prefix % 129);
            let bits = u128::from(a) & u128::MAX.checked_shl(128 - p).unwrap_or(0);
            format!("{}/{p}", Ipv6Addr::from(bits))
        }
    }
}

/// The addresses either side of each end of the network, in its family and, for IPv4, also
/// as IPv4-mapped IPv6.
fn edges(c: Cidr) -> Vec<IpAddr> {
    let text = c.to_string();
    let (addr, prefix) = text.split_once('/').expect("a CIDR has a slash");
    let addr: IpAddr = addr.parse().expect("formats as an address");
    let prefix: u32 = prefix.parse().expect("formats with a prefix");
    let mut out = Vec::new();
    match addr {
        IpAddr::V4(a) => {
            let lo = u32::from(a);
            let hi = lo | u32::MAX.checked_shr(prefix).unwrap_or(0);
            for v in [lo.wrapping_sub(1), lo, hi, hi.wrapping_add(1)] {
                let ip = Ipv4Addr::from(v);
                out.extend([IpAddr::V4(ip), IpAddr::V6(ip.to_ipv6_mapped())]);
            }
        }
        IpAddr::V6(a) => {
            let lo = u128::from(a);
            let hi = lo | u128::MAX.checked_shr(prefix).unwrap_or(0);
            for v in [lo.wrapping_sub(1), lo, hi, hi.wrapping_add(1)] {
                out.push(IpAddr::V6(Ipv6Addr::from(v)));
            }
        }
    }
    out
}
