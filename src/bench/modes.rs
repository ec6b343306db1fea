//! The four measurements. Pingpong, bulk and idle open every connection first (at most
//! `--ramp` handshakes in flight); then a warm-up, then the measured window.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use super::idle::idle;
use super::payload::{bulk_pattern, line, stamp};
use super::report::{Failure, Meter, Outcome, bar, histogram};
use super::target::{Conn, Target, cpu_seconds, machine_ticks, open_all, steal_percent};
use super::{BenchArgs, BenchMode};

/// Pause after a failed connection attempt, so a refusing server is not spun on.
pub(super) const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// Runs the mode `args` asks for.
pub async fn run(args: &BenchArgs, target: Arc<Target>) -> anyhow::Result<Outcome> {
    let meter = Arc::new(Meter::default());
    let conns = args.conns.unwrap_or(match args.mode {
        BenchMode::Handshake => 32,
        BenchMode::Pingpong => 16,
        BenchMode::Bulk => 4,
        BenchMode::Idle => 1000,
    });
    anyhow::ensure!(conns > 0, "--conns must be at least 1");
    let size = args.size.unwrap_or(match args.mode {
        BenchMode::Bulk => 16_384,
        _ => 64,
    });
    anyhow::ensure!(
        size >= 2,
        "--size must be at least 2 (one byte and the newline)"
    );
    let mut o = Outcome {
        conns,
        established: 0,
        window_s: 0.0,
        latency: histogram(),
        meter: Arc::clone(&meter),
        server_cpu_s: None,
        steal_pct: None,
        up_s: None,
        rss_kib: None,
        alive: None,
    };
    let stop = CancellationToken::new();
    let mut workers: JoinSet<Histogram<u64>> = JoinSet::new();
    match args.mode {
        BenchMode::Handshake => {
            for _ in 0..conns {
                let (t, m, s) = (Arc::clone(&target), Arc::clone(&meter), stop.clone());
                workers.spawn(handshakes(t, m, s));
            }
        }
        BenchMode::Pingpong | BenchMode::Bulk => {
            let open = open_all(&target, &meter, conns, args.ramp).await;
            o.established = open.len() as u64;
            let pattern = Arc::new(bulk_pattern(size));
            for (id, conn) in open.into_iter().enumerate() {
                let (t, m, s) = (Arc::clone(&target), Arc::clone(&meter), stop.clone());
                if args.mode == BenchMode::Pingpong {
                    let pace = args.rate.map(|r| pace(r, conns, id));
                    workers.spawn(pingpong(t, m, s, conn, line(size, id), pace));
                } else {
                    workers.spawn(bulk(t, m, s, conn, Arc::clone(&pattern), size));
                }
            }
        }
        BenchMode::Idle => return idle(args, target, o).await,
    }
    let w = window(args, &meter).await;
    stop.cancel();
    while let Some(h) = workers.join_next().await {
        if let Ok(h) = h {
            let _ = o.latency.add(h);
        }
    }
    if args.mode == BenchMode::Handshake {
        o.established = meter.ops.load(Ordering::Relaxed);
    }
    o.window_s = w.seconds;
    o.server_cpu_s = w.server_cpu_s;
    o.steal_pct = w.steal_pct;
    Ok(o)
}

/// The measured window: its length, the server CPU it cost, and how much of the machine's CPU
/// the hypervisor took meanwhile (a busy host shows up there, not in the figures' own noise).
struct Window {
    seconds: f64,
    server_cpu_s: Option<f64>,
    steal_pct: Option<f64>,
}

/// Warm-up, then the measured window.
async fn window(args: &BenchArgs, meter: &Arc<Meter>) -> Window {
    let warmup = args.warmup.0;
    let total = warmup + args.duration.0;
    let bar = bar(total.as_millis() as u64, args.mode.name());
    let ticker = {
        let (bar, meter) = (bar.clone(), Arc::clone(meter));
        let bulk = args.mode == BenchMode::Bulk;
        tokio::spawn(async move {
            let start = Instant::now();
            let (mut last_ops, mut last_bytes) = (0, 0);
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tick.tick().await;
                let (ops, bytes) = (
                    meter.ops.load(Ordering::Relaxed),
                    meter.bytes.load(Ordering::Relaxed),
                );
                let rate = if bulk {
                    format!("{:.1} MB/s", (bytes - last_bytes) as f64 / 0.5e6)
                } else {
                    format!("{:.0}/s", (ops - last_ops) as f64 / 0.5)
                };
                (last_ops, last_bytes) = (ops, bytes);
                bar.set_position(start.elapsed().as_millis() as u64);
                bar.set_message(format!("{rate}  errors {}", meter.errors.total()));
            }
        })
    };
    tokio::time::sleep(warmup).await;
    let machine0 = machine_ticks();
    let cpu0 = args.server_pid.and_then(cpu_seconds);
    let t0 = Instant::now();
    meter.set_measuring(true);
    tokio::time::sleep(args.duration.0).await;
    meter.set_measuring(false);
    let window_s = t0.elapsed().as_secs_f64();
    let cpu1 = args.server_pid.and_then(cpu_seconds);
    let steal = machine0
        .zip(machine_ticks())
        .and_then(|(a, b)| steal_percent(a, b));
    ticker.abort();
    bar.finish_and_clear();
    Window {
        seconds: window_s,
        server_cpu_s: cpu0.zip(cpu1).map(|(a, b)| b - a),
        steal_pct: steal,
    }
}

/// New connections back to back: connect, handshake (timed), close_notify, wait for the close.
async fn handshakes(
    target: Arc<Target>,
    meter: Arc<Meter>,
    stop: CancellationToken,
) -> Histogram<u64> {
    let mut hist = histogram();
    while !stop.is_cancelled() {
        let t0 = Instant::now();
        let result = match target.connect().await {
            Ok(conn) => {
                let took = t0.elapsed();
                target.close(conn).await.map(|()| took)
            }
            Err(f) => Err(f),
        };
        match result {
            Ok(took) => {
                if meter.done() {
                    let _ = hist.record(took.as_micros() as u64);
                }
            }
            Err(f) => {
                meter.errors.add(&f);
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }
    hist
}

/// One line out, its echo back (compared byte for byte), as fast as the server answers.
async fn pingpong(
    target: Arc<Target>,
    meter: Arc<Meter>,
    stop: CancellationToken,
    mut conn: Conn,
    mut msg: Vec<u8>,
    mut pace: Option<tokio::time::Interval>,
) -> Histogram<u64> {
    let mut hist = histogram();
    let mut back = vec![0u8; msg.len()];
    let mut seq = 0u64;
    while !stop.is_cancelled() {
        if let Some(tick) = &mut pace {
            tokio::select! {
                _ = tick.tick() => {}
                () = stop.cancelled() => break,
            }
        }
        stamp(&mut msg, seq);
        seq += 1;
        let t0 = Instant::now();
        let r = timeout(target.io_timeout, async {
            conn.write_all(&msg).await?;
            conn.flush().await?;
            conn.read_exact(&mut back).await
        })
        .await;
        let failure = match r {
            Err(_) => Failure::Timeout,
            Ok(Err(e)) => Failure::Io(e),
            Ok(Ok(_)) if back != msg => Failure::Mismatch,
            Ok(Ok(_)) => {
                if meter.done() {
                    let _ = hist.record(t0.elapsed().as_micros() as u64);
                }
                continue;
            }
        };
        meter.errors.add(&failure);
        return hist;
    }
    if let Err(f) = target.close(conn).await {
        meter.errors.add(&f);
    }
    hist
}

/// A connection's share of `--rate`: `rate / conns` messages per second, the connections'
/// schedules staggered over one period. A late echo delays the next send (no burst to catch up).
fn pace(rate: f64, conns: usize, id: usize) -> tokio::time::Interval {
    let period = Duration::from_secs_f64(conns as f64 / rate.max(1e-3));
    let start = tokio::time::Instant::now() + period.mul_f64(id as f64 / conns as f64);
    let mut tick = tokio::time::interval_at(start, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick
}

/// Streams the pattern while reading the echo back and checking every byte; at the end,
/// close_notify, and the echo must total exactly what was sent.
async fn bulk(
    target: Arc<Target>,
    meter: Arc<Meter>,
    stop: CancellationToken,
    conn: Conn,
    pattern: Arc<Vec<u8>>,
    size: usize,
) -> Histogram<u64> {
    let period = pattern.len() - size;
    let io = target.io_timeout;
    let (mut rd, mut wr) = tokio::io::split(conn);
    let writer = async {
        let (mut off, mut sent) = (0usize, 0u64);
        while !stop.is_cancelled() {
            match timeout(io, wr.write_all(&pattern[off..off + size])).await {
                Err(_) => return Err(Failure::Timeout),
                Ok(Err(e)) => return Err(Failure::Io(e)),
                Ok(Ok(())) => {}
            }
            meter.done();
            off = (off + size) % period;
            sent += size as u64;
        }
        match timeout(io, wr.shutdown()).await {
            Err(_) => Err(Failure::Timeout),
            Ok(Err(e)) => Err(Failure::Io(e)),
            Ok(Ok(())) => Ok(sent),
        }
    };
    let reader = async {
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0u64;
        loop {
            let n = match timeout(io, rd.read(&mut buf)).await {
                Err(_) => return Err(Failure::Timeout),
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(got),
                Ok(Err(e)) => return Err(Failure::Io(e)),
                Ok(Ok(0)) => return Ok(got),
                Ok(Ok(n)) => n,
            };
            let start = (got % period as u64) as usize;
            let mut checked = 0;
            while checked < n {
                let at = (start + checked) % period;
                let take = (n - checked).min(period - at);
                if buf[checked..checked + take] != pattern[at..at + take] {
                    return Err(Failure::Mismatch);
                }
                checked += take;
            }
            got += n as u64;
            meter.bytes.fetch_add(n as u64, Ordering::Relaxed);
            if meter.measuring() {
                meter.measured_bytes.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
    };
    match tokio::join!(writer, reader) {
        (Ok(sent), Ok(got)) if sent == got => {}
        (Ok(sent), Ok(got)) if got < sent => meter.errors.add(&Failure::Short(sent - got)),
        (Ok(_), Ok(_)) => meter.errors.add(&Failure::Mismatch),
        (Err(f), _) | (_, Err(f)) => meter.errors.add(&f),
    }
    histogram()
}
