//! Line validation throughput (criterion reports GiB/s) on realistic lines: short chat-like
//! ASCII, long ASCII near the default `--max-line`, and mixed-script UTF-8. Each case validates
//! every line of a 64 KiB block (split beforehand, as the echo loop finds lines with memchr).
//!
//! `cargo bench --bench line`; `cargo test --all-targets` runs each case once.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use tls_echo::echo::line::check_line;

const BLOCK: usize = 64 * 1024;

/// Lines cut from `text` at `len` bytes (on a character boundary), newline-terminated,
/// repeated to fill a block.
fn block(text: &str, len: usize) -> Vec<u8> {
    let mut cut = len.min(text.len());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut out = Vec::with_capacity(BLOCK + len + 1);
    while out.len() < BLOCK {
        out.extend_from_slice(&text.as_bytes()[..cut]);
        out.push(b'\n');
    }
    out
}

fn bench(c: &mut Criterion) {
    let ascii =
        "GET /api/v1/items?id=42&sort=desc HTTP/1.1\tuser=alice\tstatus=ok latency_ms=3.14 "
            .repeat(64);
    let mixed = "Grüße aus Zürich, 東京からこんにちは, Привет из Москвы ✓ — naïve café ".repeat(64);
    let cases = [
        ("ascii-80", block(&ascii, 80)),
        ("ascii-4000", block(&ascii, 4000)),
        ("utf8-mixed-200", block(&mixed, 200)),
    ];
    let mut g = c.benchmark_group("check_line");
    for (name, data) in &cases {
        let lines: Vec<&[u8]> = data.split_inclusive(|&b| b == b'\n').collect();
        g.throughput(Throughput::Bytes(data.len() as u64));
        g.bench_function(*name, |b| {
            b.iter(|| {
                for &line in black_box(&lines) {
                    assert!(check_line(line).is_ok());
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
