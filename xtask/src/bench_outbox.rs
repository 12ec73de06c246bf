//! The outbox's consumer benchmarks, side by side with PgQ in the same cluster: drain rate of
//! one consumer in batches of 100, and commit→visible latency at a steady 1,000 events/s.
//! (The INSERT comparison is a pgbench group in bench.rs.)

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use postgres::{Client, NoTls};

use crate::bench::{DB, TENANT};
use crate::cluster::Cluster;
use crate::run::step;
/// Events drained per side per round.
const DRAIN_EVENTS: usize = 20_000;
const RATE_PER_S: u64 = 1_000;
const LATENCY_SECONDS: u64 = 6;

fn connect(cluster: &Cluster) -> Result<Client> {
    let conninfo = format!(
        "host={} port={} dbname={DB} user=postgres",
        cluster.host(),
        cluster.port
    );
    Client::connect(&conninfo, NoTls).context("connecting to the bench cluster")
}

fn fill_steward(c: &mut Client, events: usize) -> Result<()> {
    for _ in 0..events / 100 {
        c.batch_execute(&format!(
            "BEGIN; SELECT steward.enter_tenant('{TENANT}');
             SELECT count(steward.emit('bench.drained', 'item', g::text, jsonb_build_object('n', g, 'note', 'drain me')))
               FROM generate_series(1, 100) g;
             COMMIT;"
        ))?;
    }
    Ok(())
}

fn fill_pgq(c: &mut Client, events: usize) -> Result<()> {
    for _ in 0..events / 100 {
        c.batch_execute(
            "BEGIN;
             SELECT count(pgq.insert_event('bench_drain', 'bench.drained',
                                           jsonb_build_object('n', g, 'note', 'drain me')::text))
               FROM generate_series(1, 100) g;
             COMMIT;
             SELECT pgq.ticker('bench_drain');",
        )?;
    }
    Ok(())
}

/// Drains steward's consumer with poll + ack in batches of 100; events per second.
fn drain_steward(c: &mut Client) -> Result<f64> {
    let poll = c.prepare("SELECT * FROM steward.poll('drainer', 100)")?;
    let ack = c.prepare("SELECT steward.ack('drainer', $1)")?;
    let start = Instant::now();
    let mut n = 0;
    loop {
        let rows = c.query(&poll, &[])?;
        let Some(last) = rows.last() else { break };
        let id: i64 = last.get("id");
        c.execute(&ack, &[&id])?;
        n += rows.len();
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// Drains PgQ's consumer batch by batch (one tick = 100 events); events per second.
fn drain_pgq(c: &mut Client) -> Result<f64> {
    let next = c.prepare("SELECT pgq.next_batch('bench_drain', 'drainer')")?;
    let events = c.prepare("SELECT * FROM pgq.get_batch_events($1)")?;
    let finish = c.prepare("SELECT pgq.finish_batch($1)")?;
    let start = Instant::now();
    let mut n = 0;
    loop {
        let batch: Option<i64> = c.query_one(&next, &[])?.get(0);
        let Some(batch) = batch else { break };
        n += c.query(&events, &[&batch])?.len();
        c.execute(&finish, &[&batch])?;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Latencies (ms) from commit (the writer's COMMIT returned) to the consumer receiving the
/// event, at a steady RATE_PER_S, one event per transaction.
fn latency(cluster: &Cluster, pgq: bool) -> Result<Vec<f64>> {
    let committed: Arc<Mutex<HashMap<i64, Instant>>> = Arc::default();
    let seen: Arc<Mutex<HashMap<i64, Instant>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut reader = connect(cluster)?;
    // Start from now: the events of earlier benchmarks are not this run's backlog.
    reader.batch_execute("SELECT steward.seek('reader', 'infinity')")?;
    let reader_thread = {
        let (seen, stop) = (seen.clone(), stop.clone());
        std::thread::spawn(move || -> Result<()> {
            let c = &mut reader;
            if pgq {
                let next = c.prepare("SELECT pgq.next_batch('bench_latency', 'reader')")?;
                let events = c.prepare("SELECT ev_data::bigint FROM pgq.get_batch_events($1)")?;
                let finish = c.prepare("SELECT pgq.finish_batch($1)")?;
                while !stop.load(Ordering::SeqCst) {
                    let batch: Option<i64> = c.query_one(&next, &[])?.get(0);
                    let Some(batch) = batch else {
                        std::thread::sleep(Duration::from_millis(1));
                        continue;
                    };
                    let rows = c.query(&events, &[&batch])?;
                    let now = Instant::now();
                    let mut s = seen.lock().unwrap();
                    for r in rows {
                        s.entry(r.get(0)).or_insert(now);
                    }
                    drop(s);
                    c.execute(&finish, &[&batch])?;
                }
            } else {
                let poll = c.prepare(
                    "SELECT id, (payload ->> 'k')::bigint FROM steward.poll('reader', 100)",
                )?;
                let ack = c.prepare("SELECT steward.ack('reader', $1)")?;
                while !stop.load(Ordering::SeqCst) {
                    let rows = c.query(&poll, &[])?;
                    let Some(last) = rows.last() else {
                        std::thread::sleep(Duration::from_millis(1));
                        continue;
                    };
                    let now = Instant::now();
                    let id: i64 = last.get(0);
                    let mut s = seen.lock().unwrap();
                    for r in &rows {
                        if let Some(k) = r.get::<_, Option<i64>>(1) {
                            s.entry(k).or_insert(now);
                        }
                    }
                    drop(s);
                    c.execute(&ack, &[&id])?;
                }
            }
            Ok(())
        })
    };
    // PgQ needs its ticker: once a second, as pgqd's default ticker_period.
    let ticker_thread = if pgq {
        let mut t = connect(cluster)?;
        let stop = stop.clone();
        Some(std::thread::spawn(move || -> Result<()> {
            while !stop.load(Ordering::SeqCst) {
                t.batch_execute("SELECT pgq.ticker()")?;
                std::thread::sleep(Duration::from_secs(1));
            }
            Ok(())
        }))
    } else {
        None
    };
    let mut writer = connect(cluster)?;
    let total = RATE_PER_S * LATENCY_SECONDS;
    let start = Instant::now();
    for k in 0..total as i64 {
        let due = start + Duration::from_micros(k as u64 * 1_000_000 / RATE_PER_S);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        if pgq {
            writer.batch_execute(&format!(
                "SELECT pgq.insert_event('bench_latency', 'bench.latency', '{k}')"
            ))?;
        } else {
            writer.batch_execute(&format!(
                "BEGIN; SELECT steward.enter_tenant('{TENANT}');
                 SELECT steward.emit('bench.latency', 'item', '{k}', jsonb_build_object('k', {k}));
                 COMMIT;"
            ))?;
        }
        committed.lock().unwrap().insert(k, Instant::now());
    }
    // Let the last events arrive (PgQ: at least two ticks).
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.lock().unwrap().len() < total as usize && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::SeqCst);
    reader_thread.join().expect("reader")?;
    if let Some(t) = ticker_thread {
        t.join().expect("ticker")?;
    }
    let committed = committed.lock().unwrap();
    let seen = seen.lock().unwrap();
    // The first second is warm-up.
    let warm = RATE_PER_S as i64;
    let mut ms: Vec<f64> = committed
        .iter()
        .filter(|(k, _)| **k >= warm)
        .filter_map(|(k, at)| {
            seen.get(k)
                .map(|s| s.saturating_duration_since(*at).as_secs_f64() * 1000.0)
        })
        .collect();
    anyhow::ensure!(
        ms.len() as i64 == total as i64 - warm,
        "latency run ({}) lost events: {} of {} seen",
        if pgq { "PgQ" } else { "steward" },
        ms.len(),
        total as i64 - warm
    );
    ms.sort_by(|a, b| a.total_cmp(b));
    Ok(ms)
}

/// Runs the drain and latency comparisons and returns their report section.
pub fn run(cluster: &Cluster, rounds: usize) -> Result<String> {
    let mut report = String::new();
    step(&format!(
        "outbox drain: one consumer, batches of 100, {DRAIN_EVENTS} events per side per round, {rounds} rounds"
    ));
    let mut c = connect(cluster)?;
    // Start from now: the row events of the INSERT benchmarks are not the drain's to read.
    c.batch_execute("SELECT steward.seek('drainer', 'infinity')")?;
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        fill_steward(&mut c, DRAIN_EVENTS)?;
        fill_pgq(&mut c, DRAIN_EVENTS)?;
        c.batch_execute("CHECKPOINT")?;
        let (a, b) = if round % 2 == 0 {
            let a = drain_steward(&mut c)?;
            (a, drain_pgq(&mut c)?)
        } else {
            let b = drain_pgq(&mut c)?;
            (drain_steward(&mut c)?, b)
        };
        println!(
            "  round {}: poll+ack {a:>8.0} events/s   PgQ {b:>8.0} events/s",
            round + 1
        );
        ours.push(a);
        theirs.push(b);
    }
    let ratios: Vec<f64> = ours.iter().zip(&theirs).map(|(a, b)| a / b).collect();
    let med = crate::bench::median(&ratios);
    let lo = ratios.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = ratios.iter().cloned().fold(0.0, f64::max);
    let verdict = if med >= 1.2 {
        "≥ 1.20: met"
    } else {
        "≥ 1.20: **not met**"
    };
    println!("  poll+ack ÷ PgQ: {med:.3} ({lo:.3} – {hi:.3}) {verdict}");
    writeln!(
        report,
        "\n### Outbox drain: one consumer, batches of 100 ({DRAIN_EVENTS} events per side per round)\n\n\
         | consumer | events/s (median) |\n|---|---|\n\
         | steward poll + ack | {:.0} |\n| PgQ next_batch + get_batch_events + finish_batch (ticks of 100) | {:.0} |\n\n\
         | ratio | median (range) | goal |\n|---|---|---|\n\
         | poll+ack ÷ PgQ | **{med:.3}** ({lo:.3} – {hi:.3}) | {verdict} |",
        crate::bench::median(&ours),
        crate::bench::median(&theirs)
    )?;

    step(&format!(
        "outbox latency: commit → received by a polling consumer, {RATE_PER_S} events/s for {LATENCY_SECONDS} s per side"
    ));
    let ours = latency(cluster, false)?;
    let theirs = latency(cluster, true)?;
    let (p50, p99) = (percentile(&ours, 0.5), percentile(&ours, 0.99));
    let (q50, q99) = (percentile(&theirs, 0.5), percentile(&theirs, 0.99));
    let verdict = if p99 <= 5.0 {
        "≤ 5 ms: met"
    } else {
        "≤ 5 ms: **not met**"
    };
    println!("  steward p50 {p50:.1} ms p99 {p99:.1} ms ({verdict}); PgQ p50 {q50:.1} ms p99 {q99:.1} ms");
    writeln!(
        report,
        "\n### Outbox latency: commit → received, {RATE_PER_S} events/s, one event per transaction\n\n\
         The consumer polls in a loop (1 ms pause when empty); PgQ's consumer likewise, with the \
         ticker run once a second as pgqd does by default (queue defaults: a tick per 500 events \
         or 3 s).\n\n\
         | consumer | p50 | p99 | goal |\n|---|---|---|---|\n\
         | steward poll + ack | {p50:.1} ms | **{p99:.1} ms** | p99 {verdict} |\n\
         | PgQ, ticker every 1 s | {q50:.1} ms | {q99:.1} ms | (bounded by the ticker: {:.0}× steward's p99) |",
        q99 / p99.max(0.001)
    )?;
    Ok(report)
}
