#!/usr/bin/env python3
"""Where a server's CPU time went, from a `perf record -g -C 0` data file: the share of the
server's own samples (idle and other processes left out) spent in the kernel, in aws-lc's
cryptography, in the allocator and memcpy, in rustls, in tokio, and in the rest of user space.

    python3 benches/profile_split.py FILE.perf [FILE.perf ...]

Used by `PROFILE=1 bash benches/ab.sh`; BENCHMARKS.md ("Ceilings") quotes its output."""
import re
import subprocess
import sys

CRYPTO = ("aws_lc", "curve25519", "ecp_nistz", "sha256", "gcm", "bignum", "HMAC", "aes_",
          "CRYPTO", "skip_iv")
ALLOC = ("malloc", "free", "realloc", "calloc", "consolidate", "memmove", "memset", "memcpy",
         "mi_", "_mi")
NOT_SERVER = ("swapper", "perf", "kdamond", "rcu_", "kworker", "ksoftirqd", "migration")


def category(comm, dso, sym):
    if comm.startswith(NOT_SERVER):
        return None
    if dso == "[kernel.kallsyms]":
        return "kernel"
    if any(k in sym for k in CRYPTO) or (sym.startswith("L") and "loop" in sym):
        return "crypto (aws-lc)"
    if any(k in sym for k in ALLOC):
        return "allocator, memcpy"
    if "rustls" in sym:
        return "rustls"
    if "tokio" in sym:
        return "tokio"
    return "rest of user space"


def split(path):
    report = subprocess.run(
        ["perf", "report", "-i", path, "--no-children", "--sort", "comm,dso,sym", "-q",
         "-g", "none", "--percent-limit", "0"],
        capture_output=True, text=True, check=True).stdout
    shares = {}
    for line in report.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+(\S+)\s+\[.\]\s+(.*)", line)
        if not m:
            continue
        c = category(m[2], m[3], m[4])
        if c:
            shares[c] = shares.get(c, 0.0) + float(m[1])
    return shares


for path in sys.argv[1:]:
    shares = split(path)
    busy = sum(shares.values())
    print(f"{path}: server busy {busy:.1f}% of CPU 0")
    for name, v in sorted(shares.items(), key=lambda kv: -kv[1]):
        print(f"  {name:20s} {100 * v / busy:5.1f}% of the server's time")
    # The kernel's work (same syscalls, same TCP) and the cryptography (same algorithms, same
    # library) are what any server pays; a server with nothing else would be this much faster.
    floor = (shares.get("kernel", 0.0) + shares.get("crypto (aws-lc)", 0.0)) / busy
    print(f"  ceiling: kernel + crypto are {100 * floor:.1f}%: at most {1 / floor:.2f}x this "
          "server per CPU-second")
