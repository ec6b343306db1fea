//! Idle mode: open and hold connections (optionally after one echoed line each), sample the
//! server's memory, and check at the end that every connection is still served.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::timeout;

use super::BenchArgs;
use super::report::bar;
use super::report::{Failure, Meter, Outcome};
use super::target::open_all;
use super::target::{Conn, Target, rss_kib};

/// How long idle mode lets the server settle before sampling its memory.
const SETTLE: Duration = Duration::from_secs(1);
/// The line each idle connection sends at the end to prove it is still served.
const IDLE_PROBE: &[u8] = b"still there?\n";

/// Opens and holds connections without traffic, samples the server's memory, and at the end
/// checks that each one is still served.
pub(super) async fn idle(
    args: &BenchArgs,
    target: Arc<Target>,
    mut o: Outcome,
) -> anyhow::Result<Outcome> {
    let meter = Arc::clone(&o.meter);
    let before = args.server_pid.and_then(rss_kib);
    let t0 = Instant::now();
    let mut open = open_all(&target, &meter, o.conns, args.ramp).await;
    if args.echo_first {
        // `--echo-first`: one line echoed on every connection before it goes quiet.
        let echoed = probe_all(&target, &meter, open, args.ramp, Then::Keep).await;
        open = echoed.into_iter().flatten().collect();
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
    o.alive = Some(
        probe_all(&target, &meter, open, args.ramp, Then::Close)
            .await
            .len() as u64,
    );
    Ok(o)
}

/// What a connection whose probe came back is for next.
#[derive(Clone, Copy, PartialEq)]
enum Then {
    Keep,
    Close,
}

/// Sends `IDLE_PROBE` on every connection, `ramp` at a time, and checks the echo; returns the
/// connections that passed (with `Then::Close`, closed: only their count is of use). Failures
/// are counted in `meter`.
async fn probe_all(
    target: &Arc<Target>,
    meter: &Arc<Meter>,
    open: Vec<Conn>,
    ramp: usize,
    then: Then,
) -> Vec<Option<Conn>> {
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
                Ok(Ok(_)) if then == Then::Close => target.close(conn).await.map(|()| None),
                Ok(Ok(_)) => Ok(Some(conn)),
            }
        });
    }
    let mut passed = Vec::new();
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(Ok(conn)) => passed.push(conn),
            Ok(Err(f)) => meter.errors.add(&f),
            Err(_) => {}
        }
    }
    passed
}
