//! What a run counted, and how it is shown: a table for people, one JSON line for scripts.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{BenchArgs, BenchMode};

/// Why one operation failed.
#[derive(Debug)]
pub enum Failure {
    /// TCP connect refused or failed.
    Connect(std::io::Error),
    /// The TLS handshake failed.
    Handshake(std::io::Error),
    /// A read or write failed, or the server closed early.
    Io(std::io::Error),
    /// An echo differed from what was sent.
    Mismatch,
    /// The server closed before echoing everything that was sent.
    Short(u64),
    /// A connect, handshake, read or write passed `--io-timeout`.
    Timeout,
}

const KINDS: [&str; 6] = ["connect", "handshake", "io", "mismatch", "timeout", "short"];

impl Failure {
    fn kind(&self) -> usize {
        match self {
            Failure::Connect(_) => 0,
            Failure::Handshake(_) => 1,
            Failure::Io(_) => 2,
            Failure::Mismatch => 3,
            Failure::Timeout => 4,
            Failure::Short(_) => 5,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Connect(e) | Failure::Handshake(e) | Failure::Io(e) => e.fmt(f),
            Failure::Mismatch => f.write_str("echo differs from what was sent"),
            Failure::Timeout => f.write_str("no progress within --io-timeout"),
            Failure::Short(n) => write!(f, "the server closed {n} bytes short of the echo"),
        }
    }
}

/// Errors by kind, with the first message of each kind.
#[derive(Default)]
pub struct Errors {
    counts: [AtomicU64; 6],
    first: Mutex<[Option<String>; 6]>,
}

impl Errors {
    /// Counts one failure.
    pub fn add(&self, f: &Failure) {
        let k = f.kind();
        if self.counts[k].fetch_add(1, Ordering::Relaxed) == 0 {
            self.first.lock().unwrap_or_else(|e| e.into_inner())[k] = Some(f.to_string());
        }
    }

    /// All failures so far.
    pub fn total(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    fn each(&self) -> Vec<(&'static str, u64, String)> {
        let first = self.first.lock().unwrap_or_else(|e| e.into_inner());
        KINDS
            .iter()
            .enumerate()
            .filter_map(|(k, name)| {
                let n = self.counts[k].load(Ordering::Relaxed);
                (n > 0).then(|| (*name, n, first[k].clone().unwrap_or_default()))
            })
            .collect()
    }
}

/// Live counters shared by the workers and the progress display.
#[derive(Default)]
pub struct Meter {
    measuring: AtomicBool,
    /// Operations (handshakes, messages, established connections) since the start.
    pub ops: AtomicU64,
    /// Operations inside the measured window.
    pub measured_ops: AtomicU64,
    /// Echoed bytes verified since the start.
    pub bytes: AtomicU64,
    /// Echoed bytes verified inside the measured window.
    pub measured_bytes: AtomicU64,
    /// Failures since the start.
    pub errors: Errors,
}

impl Meter {
    /// Whether the measured window is open.
    pub fn measuring(&self) -> bool {
        self.measuring.load(Ordering::Relaxed)
    }

    /// Opens or closes the measured window.
    pub fn set_measuring(&self, on: bool) {
        self.measuring.store(on, Ordering::Relaxed);
    }

    /// Counts one finished operation; returns whether it fell in the window.
    pub fn done(&self) -> bool {
        self.ops.fetch_add(1, Ordering::Relaxed);
        let m = self.measuring();
        if m {
            self.measured_ops.fetch_add(1, Ordering::Relaxed);
        }
        m
    }
}

/// A latency histogram in microseconds.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static bounds are valid")
}

/// Everything a run measured.
pub struct Outcome {
    /// Connections asked for.
    pub conns: usize,
    /// Connections established.
    pub established: u64,
    /// Seconds the measured window lasted (idle: the hold).
    pub window_s: f64,
    /// Latencies (handshake, round trip) in the window, in microseconds.
    pub latency: Histogram<u64>,
    /// Counters.
    pub meter: std::sync::Arc<Meter>,
    /// Server CPU seconds used in the window, if sampled.
    pub server_cpu_s: Option<f64>,
    /// Percent of the machine's CPU time stolen by the hypervisor in the window (Linux).
    pub steal_pct: Option<f64>,
    /// Idle: seconds until every connection was up.
    pub up_s: Option<f64>,
    /// Idle: server RSS before connecting and with every connection up, KiB.
    pub rss_kib: Option<(u64, u64)>,
    /// Idle: connections that still echoed at the end of the hold.
    pub alive: Option<u64>,
}

impl Outcome {
    /// Whether the run had no failure.
    pub fn ok(&self) -> bool {
        self.meter.errors.total() == 0
    }

    fn ops(&self) -> u64 {
        self.meter.measured_ops.load(Ordering::Relaxed)
    }

    fn rate(&self) -> f64 {
        self.ops() as f64 / self.window_s.max(1e-9)
    }

    fn mb_per_s(&self) -> f64 {
        self.meter.measured_bytes.load(Ordering::Relaxed) as f64 / 1e6 / self.window_s.max(1e-9)
    }

    fn per_cpu(&self, amount: f64) -> Option<f64> {
        self.server_cpu_s
            .filter(|&c| c > 0.0)
            .map(|c| amount * self.window_s / c)
    }

    fn kib_per_conn(&self) -> Option<f64> {
        let (before, up) = self.rss_kib?;
        (self.established > 0).then(|| up.saturating_sub(before) as f64 / self.established as f64)
    }

    fn quantile_us(&self, q: f64) -> Option<u64> {
        (!self.latency.is_empty()).then(|| self.latency.value_at_quantile(q))
    }
}

/// Prints the table (stdout, or stderr with `--json`) and the JSON line (stdout).
pub fn print(args: &BenchArgs, o: &Outcome) {
    let table = table(args, o);
    if args.json {
        eprint!("{table}");
        println!("{}", json(args, o));
    } else {
        print!("{table}");
    }
}

fn table(args: &BenchArgs, o: &Outcome) -> String {
    let mut t = String::new();
    let mode = args.mode.name();
    let label = args.label.as_deref().unwrap_or("");
    let _ = writeln!(
        t,
        "\ntls-echo bench {mode} -> {} {label}",
        args.endpoint.connect
    );
    let mut row = |k: &str, v: String| {
        let _ = writeln!(t, "  {k:<18} {v}");
    };
    row(
        "connections",
        format!("{} asked, {} established", o.conns, o.established),
    );
    let what = match args.mode {
        BenchMode::Handshake => "handshakes",
        BenchMode::Pingpong => "messages",
        BenchMode::Bulk => "writes",
        BenchMode::Idle => "connections",
    };
    if args.mode == BenchMode::Idle {
        if let Some(up) = o.up_s {
            row("all up after", format!("{up:.2} s"));
        }
        row("held for", format!("{:.1} s", o.window_s));
        if let Some(alive) = o.alive {
            row("still echoing", format!("{alive} of {}", o.established));
        }
        if let (Some((before, up)), Some(per)) = (o.rss_kib, o.kib_per_conn()) {
            row(
                "server RSS",
                format!("{before} KiB before, {up} KiB with all up: {per:.2} KiB per connection"),
            );
        }
    } else {
        row(
            "window",
            format!(
                "{:.2} s after {:.1} s warm-up",
                o.window_s,
                args.warmup.0.as_secs_f64()
            ),
        );
        row(what, format!("{}  ({:.0}/s)", o.ops(), o.rate()));
        if args.mode == BenchMode::Bulk {
            row("echoed, verified", format!("{:.1} MB/s", o.mb_per_s()));
        }
        if let (Some(p50), Some(p99), Some(p999)) = (
            o.quantile_us(0.5),
            o.quantile_us(0.99),
            o.quantile_us(0.999),
        ) {
            row(
                "latency",
                format!("p50 {p50} us   p99 {p99} us   p99.9 {p999} us"),
            );
        }
        if let Some(cpu) = o.server_cpu_s {
            let per = match args.mode {
                BenchMode::Bulk => o.per_cpu(o.mb_per_s()).map(|v| format!("{v:.1} MB")),
                _ => o.per_cpu(o.rate()).map(|v| format!("{v:.0} {what}")),
            };
            row(
                "server CPU",
                format!(
                    "{cpu:.2} s: {} per CPU-second",
                    per.unwrap_or_else(|| "-".into())
                ),
            );
        }
    }
    if let Some(steal) = o.steal_pct {
        row(
            "machine steal",
            format!("{steal:.1}% of all CPU time in the window"),
        );
    }
    let errors = o.meter.errors.each();
    if errors.is_empty() {
        row("errors", "none".into());
    } else {
        for (kind, n, first) in errors {
            row(&format!("errors: {kind}"), format!("{n} (first: {first})"));
        }
    }
    t
}

fn json(args: &BenchArgs, o: &Outcome) -> serde_json::Value {
    let errors: serde_json::Map<String, serde_json::Value> = o
        .meter
        .errors
        .each()
        .into_iter()
        .map(|(k, n, _)| (k.to_string(), n.into()))
        .collect();
    serde_json::json!({
        "label": args.label,
        "mode": args.mode.name(),
        "conns": o.conns,
        "established": o.established,
        "size": args.size,
        "window_s": o.window_s,
        "ops": o.ops(),
        "rate": o.rate(),
        "mb_per_s": (args.mode == BenchMode::Bulk).then(|| o.mb_per_s()),
        "p50_us": o.quantile_us(0.5),
        "p99_us": o.quantile_us(0.99),
        "p999_us": o.quantile_us(0.999),
        "server_cpu_s": o.server_cpu_s,
        "steal_pct": o.steal_pct,
        "rate_per_cpu_s": o.per_cpu(o.rate()),
        "mb_per_cpu_s": (args.mode == BenchMode::Bulk).then(|| o.per_cpu(o.mb_per_s())).flatten(),
        "up_s": o.up_s,
        "alive": o.alive,
        "rss_before_kib": o.rss_kib.map(|r| r.0),
        "rss_up_kib": o.rss_kib.map(|r| r.1),
        "kib_per_conn": o.kib_per_conn(),
        "errors": errors,
    })
}

/// A progress bar on stderr.
pub(super) fn bar(len: u64, prefix: &'static str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{prefix:>11} [{bar:30}] {elapsed} {msg}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(prefix);
    bar
}
