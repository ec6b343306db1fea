//! The four measurements. Pingpong, bulk and idle open every connection first (at most
//! `--ramp` handshakes in flight); then a warm-up, then the measured window.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use super::report::{Failure, Meter, Outcome, histogram};
use super::target::{Conn, Target, cpu_seconds, rss_kib};
use super::{BenchArgs, BenchMode};

/// Length of each line of the bulk stream, newline included (below tls-echo's default
/// `--max-line`, so line mode echoes it).
const BULK_LINE: usize = 1000;
/// Lines in one period of the bulk pattern.
const BULK_LINES: usize = 61;
/// How long idle mode lets the server settle before sampling its memory.
const SETTLE: Duration = Duration::from_secs(1);
/// Pause after a failed connection attempt, so a refusing server is not spun on.
const RETRY_PAUSE: Duration = Duration::from_millis(20);
/// The line each idle connection sends at the end to prove it is still served.
const IDLE_PROBE: &[u8] = b"still there?\n";

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
    let (window_s, cpu) = window(args, &meter).await;
    stop.cancel();
    while let Some(h) = workers.join_next().await {
        if let Ok(h) = h {
            let _ = o.latency.add(h);
        }
    }
    if args.mode == BenchMode::Handshake {
        o.established = meter.ops.load(Ordering::Relaxed);
    }
    o.window_s = window_s;
    o.server_cpu_s = cpu;
    Ok(o)
}

/// Opens `n` connections, `ramp` handshakes at a time; failures are counted.
async fn open_all(target: &Arc<Target>, meter: &Arc<Meter>, n: usize, ramp: usize) -> Vec<Conn> {
    let bar = bar(n as u64, "connecting");
    let gate = Arc::new(Semaphore::new(ramp.max(1)));
    let mut tasks = JoinSet::new();
    for _ in 0..n {
        let (target, gate) = (Arc::clone(target), Arc::clone(&gate));
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await;
            target.connect().await
        });
    }
    let mut open = Vec::with_capacity(n);
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(Ok(conn)) => open.push(conn),
            Ok(Err(f)) => meter.errors.add(&f),
            Err(_) => {}
        }
        bar.inc(1);
        bar.set_message(format!("errors {}", meter.errors.total()));
    }
    bar.finish_and_clear();
    open
}

/// Warm-up, then the measured window; returns its length and the server CPU it cost.
async fn window(args: &BenchArgs, meter: &Arc<Meter>) -> (f64, Option<f64>) {
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
    let cpu0 = args.server_pid.and_then(cpu_seconds);
    let t0 = Instant::now();
    meter.set_measuring(true);
    tokio::time::sleep(args.duration.0).await;
    meter.set_measuring(false);
    let window_s = t0.elapsed().as_secs_f64();
    let cpu1 = args.server_pid.and_then(cpu_seconds);
    ticker.abort();
    bar.finish_and_clear();
    (window_s, cpu0.zip(cpu1).map(|(a, b)| b - a))
}

fn bar(len: u64, prefix: &'static str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{prefix:>11} [{bar:30}] {elapsed} {msg}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(prefix);
    bar
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

/// Opens and holds connections without traffic, samples the server's memory, and at the end
/// checks that each one is still served.
async fn idle(args: &BenchArgs, target: Arc<Target>, mut o: Outcome) -> anyhow::Result<Outcome> {
    let meter = Arc::clone(&o.meter);
    let before = args.server_pid.and_then(rss_kib);
    let t0 = Instant::now();
    let mut open = open_all(&target, &meter, o.conns, args.ramp).await;
    if args.echo_first {
        open = echo_once(&target, &meter, open, args.ramp).await;
    }
    o.up_s = Some(t0.elapsed().as_secs_f64());
    o.established = open.len() as u64;
    eprintln!(
        "{} of {} connections up after {:.2} s; holding for {:.0} s",
        open.len(),
        o.conns,
        t0.elapsed().as_secs_f64(),
        args.duration.0.as_secs_f64()
    );
    let held = Instant::now();
    let bar = bar(args.duration.0.as_millis() as u64, "holding");
    let settle = SETTLE.min(args.duration.0);
    tokio::time::sleep(settle).await;
    let up = args.server_pid.and_then(rss_kib);
    o.rss_kib = before.zip(up);
    while held.elapsed() < args.duration.0 {
        bar.set_position(held.elapsed().as_millis() as u64);
        let left = args.duration.0.saturating_sub(held.elapsed());
        tokio::time::sleep(left.min(Duration::from_millis(500))).await;
    }
    bar.finish_and_clear();
    o.window_s = held.elapsed().as_secs_f64();
    let gate = Arc::new(Semaphore::new(args.ramp.max(1)));
    let mut probes = JoinSet::new();
    for mut conn in open {
        let (target, gate) = (Arc::clone(&target), Arc::clone(&gate));
        probes.spawn(async move {
            let _permit = gate.acquire_owned().await;
            let mut back = [0u8; IDLE_PROBE.len()];
            let r = timeout(target.io_timeout, async {
                conn.write_all(IDLE_PROBE).await?;
                conn.flush().await?;
                conn.read_exact(&mut back).await
            })
            .await;
            match r {
                Err(_) => Err(Failure::Timeout),
                Ok(Err(e)) => Err(Failure::Io(e)),
                Ok(Ok(_)) if back != IDLE_PROBE => Err(Failure::Mismatch),
                Ok(Ok(_)) => target.close(conn).await,
            }
        });
    }
    let mut alive = 0;
    while let Some(r) = probes.join_next().await {
        match r {
            Ok(Ok(())) => alive += 1,
            Ok(Err(f)) => meter.errors.add(&f),
            Err(_) => {}
        }
    }
    o.alive = Some(alive);
    Ok(o)
}

/// Idle `--echo-first`: one line echoed on every connection; returns those that echoed it.
async fn echo_once(
    target: &Arc<Target>,
    meter: &Arc<Meter>,
    open: Vec<Conn>,
    ramp: usize,
) -> Vec<Conn> {
    let gate = Arc::new(Semaphore::new(ramp.max(1)));
    let mut tasks = JoinSet::new();
    for mut conn in open {
        let (target, gate) = (Arc::clone(target), Arc::clone(&gate));
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await;
            let mut back = [0u8; IDLE_PROBE.len()];
            let r = timeout(target.io_timeout, async {
                conn.write_all(IDLE_PROBE).await?;
                conn.flush().await?;
                conn.read_exact(&mut back).await
            })
            .await;
            match r {
                Err(_) => Err(Failure::Timeout),
                Ok(Err(e)) => Err(Failure::Io(e)),
                Ok(Ok(_)) if back != IDLE_PROBE => Err(Failure::Mismatch),
                Ok(Ok(_)) => Ok(conn),
            }
        });
    }
    let mut echoed = Vec::new();
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(Ok(conn)) => echoed.push(conn),
            Ok(Err(f)) => meter.errors.add(&f),
            Err(_) => {}
        }
    }
    echoed
}

/// A printable line of `size` bytes ending in a newline, distinct per connection.
fn line(size: usize, id: usize) -> Vec<u8> {
    let mut msg: Vec<u8> = (0..size).map(|i| b'a' + ((i + id) % 26) as u8).collect();
    msg[size - 1] = b'\n';
    msg
}

/// Writes `seq` in decimal over the start of the line (as much of it as fits).
fn stamp(msg: &mut [u8], mut seq: u64) {
    let room = (msg.len() - 1).min(20);
    for b in msg[..room].iter_mut().rev() {
        *b = b'0' + (seq % 10) as u8;
        seq /= 10;
    }
}

/// One period of printable lines, followed by its first `size` bytes again so any write of
/// `size` bytes starting inside the period is one slice.
fn bulk_pattern(size: usize) -> Vec<u8> {
    let mut p: Vec<u8> = (0..BULK_LINES * BULK_LINE)
        .map(|i| {
            if i % BULK_LINE == BULK_LINE - 1 {
                b'\n'
            } else {
                b' ' + ((i * 7 + i / BULK_LINE) % 95) as u8
            }
        })
        .collect();
    let period = p.len();
    for i in 0..size {
        let b = p[i % period];
        p.push(b);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_valid_lines() {
        for size in [2, 5, 64, 4096] {
            let mut m = line(size, 3);
            stamp(&mut m, 1234567);
            assert_eq!(m.len(), size);
            assert_eq!(crate::echo::line::check_line(&m), Ok(()));
            assert_eq!(m.iter().filter(|&&b| b == b'\n').count(), 1);
        }
        let p = bulk_pattern(16_384);
        for l in p[..BULK_LINES * BULK_LINE].split_inclusive(|&b| b == b'\n') {
            assert_eq!(crate::echo::line::check_line(l), Ok(()));
        }
    }
}
