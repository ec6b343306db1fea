//! `Allowlist::allows` at 100,000 disjoint entries, IPv4 and IPv6, over a mix of addresses
//! that hit and miss.
//!
//! `cargo bench --bench allowlist`; `cargo test --all-targets` runs each case once.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tls_echo::firewall::allowlist::{AllowEntry, Allowlist};

const ENTRIES: u32 = 100_000;
const PROBES: u32 = 1024;

fn v4(i: u32) -> Ipv4Addr {
    // Every other address of 10.0.0.0/8, so no two entries merge into one range.
    Ipv4Addr::from(0x0a00_0000 + i * 2)
}

fn v6(i: u32) -> Ipv6Addr {
    // Every other /48 under 2001:db8::/32.
    Ipv6Addr::from((0x2001_0db8u128 << 96) | (u128::from(i * 2) << 80))
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("allowlist_100k");
    g.throughput(Throughput::Elements(u64::from(PROBES)));
    let v4_list: Vec<AllowEntry> = (0..ENTRIES)
        .map(|i| format!("{}/32", v4(i)).parse().expect("valid entry"))
        .collect();
    let v6_list: Vec<AllowEntry> = (0..ENTRIES)
        .map(|i| format!("{}/48", v6(i)).parse().expect("valid entry"))
        .collect();
    // Probes spread over the list: even ones hit an entry, odd ones fall in the gap after it.
    let step = ENTRIES / PROBES;
    let cases: [(&str, Allowlist, Vec<IpAddr>); 2] = [
        (
            "ipv4",
            Allowlist::new(&v4_list, None),
            (0..PROBES)
                .map(|k| IpAddr::V4(Ipv4Addr::from(u32::from(v4(k * step)) + k % 2)))
                .collect(),
        ),
        (
            "ipv6",
            Allowlist::new(&v6_list, None),
            (0..PROBES)
                .map(|k| {
                    IpAddr::V6(Ipv6Addr::from(
                        u128::from(v6(k * step / 2)) + u128::from(k % 2) * (1 << 80) + 7,
                    ))
                })
                .collect(),
        ),
    ];
    for (name, list, probes) in &cases {
        assert!(probes.iter().any(|&p| list.allows(p)) && probes.iter().any(|&p| !list.allows(p)));
        g.bench_function(*name, |b| {
            b.iter(|| {
                probes
                    .iter()
                    .filter(|&&p| list.allows(black_box(p)))
                    .count()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
