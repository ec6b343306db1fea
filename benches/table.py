"""Turns the JSON lines of benches/compare.sh into the markdown table of BENCHMARKS.md, with
each tls-echo figure as a ratio to the best peer. Given several result files (repeated runs),
every figure is the median over them."""
import json
import statistics
import sys

PEERS = ["tokio-rustls", "go", "node", "python"]
OURS = ["tls-echo", "tls-echo-raw"]

runs = {}
for path in sys.argv[1:]:
    for line in open(path):
        line = line.strip()
        if not line.startswith("{"):
            continue
        r = json.loads(line)
        name, case = r["label"].split(" ", 1)
        runs.setdefault(name, {}).setdefault(case, []).append(r)
# The run whose value is used for fields that are not figures (errors, counts): the last.
rows = {n: {c: rs[-1] for c, rs in cases.items()} for n, cases in runs.items()}


def get(name, case, key):
    values = [r.get(key) for r in runs.get(name, {}).get(case, []) if r.get(key) is not None]
    return statistics.median(values) if values else None


def fmt(v, digits=0):
    if v is None:
        return "-"
    return f"{v:,.{digits}f}"


def ms(us):
    return "-" if us is None else f"{us / 1000:.2f}"


cols = [
    ("handshakes/s", lambda n: fmt(get(n, "handshake", "rate"))),
    ("per CPU-s", lambda n: fmt(get(n, "handshake", "rate_per_cpu_s"))),
    ("hs p99 ms", lambda n: ms(get(n, "handshake", "p99_us"))),
    ("pp16 msgs/s", lambda n: fmt(get(n, "pingpong16", "rate"))),
    ("per CPU-s", lambda n: fmt(get(n, "pingpong16", "rate_per_cpu_s"))),
    ("p99 ms", lambda n: ms(get(n, "pingpong16", "p99_us"))),
    ("pp1000 msgs/s", lambda n: fmt(get(n, "pingpong1000", "rate"))),
    ("per CPU-s", lambda n: fmt(get(n, "pingpong1000", "rate_per_cpu_s"))),
    ("p99 ms", lambda n: ms(get(n, "pingpong1000", "p99_us"))),
    ("p99 ms @15k/s", lambda n: ms(get(n, "paced1000", "p99_us"))),
    ("bulk MB/s", lambda n: fmt(get(n, "bulk", "mb_per_s"), 1)),
    ("MB per CPU-s", lambda n: fmt(get(n, "bulk", "mb_per_cpu_s"), 1)),
    ("idle KiB/conn", lambda n: fmt(get(n, "idle", "kib_per_conn"), 2)),
    ("spoken, idle KiB/conn", lambda n: fmt(get(n, "idle-echoed", "kib_per_conn"), 2)),
    ("errors", lambda n: str(sum(sum(r.get("errors", {}).values()) for r in rows[n].values()))),
    # The host's share of the CPU it took back (hypervisor steal), worst window of the row:
    # figures from a window with more than a few percent are suspect.
    ("steal % (max)", lambda n: fmt(max((r.get("steal_pct") or 0.0
                                          for rs in runs[n].values() for r in rs), default=None), 1)),
]
names = [n for n in OURS + PEERS if n in rows]
print("| server | " + " | ".join(c for c, _ in cols) + " |")
print("|---" * (len(cols) + 1) + "|")
for n in names:
    print(f"| {n} | " + " | ".join(f(n) for _, f in cols) + " |")

targets = [
    ("handshakes per server CPU-s", "handshake", "rate_per_cpu_s", 1.3, True),
    ("ping-pong x16 msgs per server CPU-s", "pingpong16", "rate_per_cpu_s", 1.3, True),
    ("ping-pong x16 p99 (lower is better)", "pingpong16", "p99_us", 1.0, False),
    ("ping-pong x1000 msgs per server CPU-s", "pingpong1000", "rate_per_cpu_s", 1.3, True),
    ("ping-pong x1000 p99 at full speed (lower is better)", "pingpong1000", "p99_us", 1.0, False),
    ("ping-pong x1000 p99 at 15,000 msgs/s for all (lower is better)", "paced1000", "p99_us", 1.0, False),
    ("bulk MB per server CPU-s", "bulk", "mb_per_cpu_s", 1.3, True),
    ("idle KiB per connection, never used (lower is better)", "idle", "kib_per_conn", None, False),
    ("idle KiB per connection, echoed a line (lower is better)", "idle-echoed", "kib_per_conn", None, False),
]
print()
print("| target | " + " | ".join(o for o in OURS if o in rows) + " | best peer | need |")
print("|---" * (len([o for o in OURS if o in rows]) + 3) + "|")
for title, case, key, need, higher in targets:
    peers = [(get(p, case, key), p) for p in PEERS if get(p, case, key) is not None]
    if not peers:
        continue
    best, who = (max if higher else min)(peers)
    cells = []
    for o in OURS:
        if o not in rows:
            continue
        v = get(o, case, key)
        if v is None or not best:
            cells.append("-")
        elif higher:
            cells.append(f"{v / best:.2f}x")
        else:
            cells.append(f"{v:,.2f} vs {best:,.1f}" if key == "kib_per_conn" else f"{v / 1000:.2f} ms vs {best / 1000:.2f} ms")
    want = f">= {need}x" if higher else ("<= 6 KiB" if key == "kib_per_conn" else "no worse")
    print(f"| {title} | " + " | ".join(cells) + f" | {who} | {want} |")
m = rows.get("tls-echo", {}).get("idle-max")
if m:
    print(f"\nidle-max: tls-echo held {m['established']} of {m['conns']} connections, "
          f"{m.get('alive')} still echoing after {m['window_s']:.0f} s, "
          f"{fmt(m.get('kib_per_conn'), 2)} KiB each, errors {sum(m['errors'].values())}")
