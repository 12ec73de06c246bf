//! The relay's benchmarks (`steward-service relay`, release build): events per second relayed to
//! NATS JetStream and to a local webhook receiver, beside the poll+ack drain rate of a plain
//! consumer reading the same events in the same round (the baseline: what the database gives a
//! reader); then commit-to-acknowledged latency, p50 and p99, at a steady 1,000 events/s.
//!
//! Rates are counted from the first event's arrival to the last (the relay's start-up is not in
//! them); arrivals are seen by a core NATS subscriber on `steward.>` and by the receiver.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::StreamExt as _;
use postgres::{Client, NoTls};

use crate::bench::median;
use crate::bench_service::cpu_seconds;
use crate::cluster::{free_port, Cluster};
use crate::run::{run, step};
use crate::setup::{cargo, ensure_packages, repo_root};

const DB: &str = "relay_bench";
const TENANT: &str = "00000000-0000-4000-8000-0000000000e1";
/// Events per round for the NATS rate and the drain beside it.
const NATS_EVENTS: usize = 50_000;
/// Events per round for the webhook rate (one endpoint: one request at a time).
const WEBHOOK_EVENTS: usize = 5_000;
const RATE_PER_S: u64 = 1_000;
const LATENCY_SECONDS: u64 = 10;

/// The processes whose CPU time the NATS rounds measure (this process, with the subscriber and
/// the receiver, comes last). (A process's name is cut at 15 characters.)
const PROCESSES: &[&str] = &["postgres", "steward-servic", "nats-server"];

/// Where the NATS rounds' time went: wall time, CPU seconds per process, and the relay's own
/// phases (its /metrics, steward_relay_phase_seconds_total).
#[derive(Default)]
struct Profile {
    wall: f64,
    cpu: [f64; 4],
    phases: std::collections::BTreeMap<String, f64>,
}

/// Arrivals by event id, and a count.
#[derive(Default)]
struct Arrivals {
    at: Mutex<HashMap<String, Instant>>,
    n: AtomicUsize,
}

impl Arrivals {
    fn record(&self, id: String) {
        let now = Instant::now();
        self.at.lock().unwrap().entry(id).or_insert(now);
        self.n.fetch_add(1, Ordering::Relaxed);
    }
    fn clear(&self) {
        self.at.lock().unwrap().clear();
        self.n.store(0, Ordering::Relaxed);
    }
    /// Events per second from the first arrival to the last.
    fn rate(&self) -> f64 {
        let at = self.at.lock().unwrap();
        let first = at.values().min().copied();
        let last = at.values().max().copied();
        match (first, last) {
            (Some(f), Some(l)) if l > f => (at.len() - 1) as f64 / (l - f).as_secs_f64(),
            _ => 0.0,
        }
    }
}

/// A child process, stopped with SIGTERM (a relay then releases its leases) when dropped.
struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn connect(cluster: &Cluster) -> Result<Client> {
    Client::connect(&cluster.conninfo(DB, "postgres"), NoTls).context("connecting to relay_bench")
}

/// `n` events in transactions of 500.
fn fill(c: &mut Client, n: usize) -> Result<()> {
    for _ in 0..n / 500 {
        c.batch_execute(&format!(
            "BEGIN; SELECT steward.enter_tenant('{TENANT}');
             SELECT count(steward.emit('bench.relayed', 'item', g::text, jsonb_build_object('n', g, 'note', 'relay me')))
               FROM generate_series(1, 500) g;
             COMMIT;"
        ))?;
    }
    Ok(())
}

/// Drains consumer `name` with poll + ack in batches of 1,000; events per second.
fn drain(c: &mut Client, name: &str, n: usize) -> Result<f64> {
    let poll = c.prepare(&format!("SELECT id FROM steward.poll('{name}', 1000)"))?;
    let ack = c.prepare(&format!("SELECT steward.ack('{name}', $1)"))?;
    let started = Instant::now();
    let mut got = 0;
    while got < n {
        let rows = c.query(&poll, &[])?;
        let Some(last) = rows.last().map(|r| r.get::<_, i64>(0)) else {
            bail!("the drain found {got} events of {n}");
        };
        got += rows.len();
        c.execute(&ack, &[&last])?;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

fn relay(cluster: &Cluster, extra: &[&str], log: &str) -> Result<Proc> {
    let out = std::fs::File::create(format!("{}/{log}", cluster.host()))?;
    let child = Command::new(repo_root().join("target/release/steward-service"))
        .arg("relay")
        .args(["--database-url", &cluster.conninfo(DB, "bench_relay")])
        .args([
            "--allow-private-targets",
            "127.0.0.1/32",
            "--lease-ttl-ms",
            "3000",
        ])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stderr(out)
        .stdout(Stdio::null())
        .spawn()?;
    Ok(Proc(child))
}

fn wait_until(limit: Duration, what: &str, f: impl Fn() -> bool) -> Result<()> {
    let deadline = Instant::now() + limit;
    while !f() {
        if Instant::now() > deadline {
            bail!("gave up waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

fn percentile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1]
}

fn spread(v: &[f64]) -> (f64, f64, f64) {
    (
        median(v),
        v.iter().cloned().fold(f64::INFINITY, f64::min),
        v.iter().cloned().fold(0.0, f64::max),
    )
}

pub fn run_all(cluster: &Cluster, rounds: usize) -> Result<String> {
    ensure_packages(&["nats-server"])?;
    step("building steward-service (release)");
    run(cargo(&repo_root()).args(["build", "-q", "--release", "-p", "steward-service"]))?;
    run(cluster
        .psql("postgres")
        .args(["-c", &format!("CREATE DATABASE {DB}")]))?;
    run(cluster.psql(DB).args([
        "-c",
        &format!(
            "CREATE EXTENSION steward;
             INSERT INTO steward.tenants (tenant_id, slug, display_name) VALUES ('{TENANT}', 'relayed', 'Relayed');
             DO $$ BEGIN CREATE ROLE bench_relay LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
             GRANT steward_relay TO bench_relay;"
        ),
    ]))?;
    let nats_port = free_port()?;
    let store = format!("{}/nats", cluster.host());
    let nats_log = std::fs::File::create(format!("{}/nats.log", cluster.host()))?;
    let _nats = Proc(
        Command::new("/usr/sbin/nats-server")
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &nats_port.to_string(),
                "-sd",
                &store,
            ])
            .stdout(Stdio::null())
            .stderr(nats_log)
            .spawn()?,
    );
    let nats_url = format!("nats://127.0.0.1:{nats_port}");
    wait_until(Duration::from_secs(20), "nats-server", || {
        std::net::TcpStream::connect(("127.0.0.1", nats_port)).is_ok()
    })?;

    // The observers: the stream's message count (the NATS rates: no extra subscriber loads the
    // server), a core NATS subscriber on steward.> for the latency run only, and a webhook
    // receiver answering 204.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let nats_seen = Arc::new(Arrivals::default());
    let hook_seen = Arc::new(Arrivals::default());
    let nc = rt.block_on(async_nats::connect(nats_url.clone()))?;
    let js = rt.block_on(async { async_nats::jetstream::new(nc.clone()) });
    // (One stream-info request every 20 ms: the server answers it between publishes.)
    let stream: Mutex<Option<async_nats::jetstream::stream::Stream>> = Mutex::new(None);
    let stored = || -> u64 {
        let held = stream.lock().unwrap().take();
        let (n, held) = rt.block_on(async {
            let mut held = match held {
                Some(st) => Some(st),
                None => js.get_stream("STEWARD").await.ok(),
            };
            let n = match held.as_mut() {
                Some(st) => st.info().await.map(|i| i.state.messages).unwrap_or(0),
                None => 0,
            };
            (n, held)
        });
        *stream.lock().unwrap() = held;
        n
    };
    let receiver_port = {
        let seen = hook_seen.clone();
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let port = listener.local_addr()?.port();
        let app = axum::Router::new().fallback(move |headers: axum::http::HeaderMap| {
            let seen = seen.clone();
            async move {
                if let Some(id) = headers.get("webhook-id").and_then(|v| v.to_str().ok()) {
                    seen.record(id.to_string());
                }
                axum::http::StatusCode::NO_CONTENT
            }
        });
        rt.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        port
    };

    let mut c = connect(cluster)?;
    let mut report = String::new();
    writeln!(
        report,
        "\n### The relay: events out to NATS JetStream and to a webhook receiver\n\n\
         Each round writes the events once ({NATS_EVENTS} for NATS, {WEBHOOK_EVENTS} for the webhook; \
         transactions of 500 `steward.emit`s), then reads them twice, in alternating order: by a \
         plain consumer (poll + ack, batches of 1,000: the drain rate the database gives any \
         reader) and by `steward-service relay` (release build; NATS: batches of 1,000, up to \
         4,096 publishes awaiting acks; webhook: one endpoint, one request at a time, as order \
         per endpoint requires). The relay's rate runs from the first arrival to the last, seen \
         by the stream's message count and by the receiver (an in-process axum server answering 204). \
         nats-server {} (Debian), file storage, on the same 2 cores as Postgres, the relay and \
         the observers.\n",
        nats_version()
    )?;
    let profile: Mutex<Profile> = Mutex::new(Profile::default());
    let mut nats_rates = Vec::new();
    let mut nats_drains = Vec::new();
    let mut hook_rates = Vec::new();
    let mut hook_drains = Vec::new();
    for round in 0..rounds {
        step(&format!(
            "relay round {}: {NATS_EVENTS} events to NATS",
            round + 1
        ));
        let consumer = format!("bench_relay_{round}");
        let drainer = format!("bench_drain_{round}");
        c.batch_execute(&format!(
            "SELECT steward.create_consumer('{consumer}'); SELECT steward.create_consumer('{drainer}');"
        ))?;
        fill(&mut c, NATS_EVENTS)?;
        c.batch_execute("CHECKPOINT")?;
        let relay_first = round % 2 == 0;
        let measure_relay = || -> Result<f64> {
            let metrics_port = free_port()?;
            let base = stored();
            let before = cpu_seconds(PROCESSES);
            let started = Instant::now();
            let _r = relay(
                cluster,
                &[
                    "--nats-url",
                    &nats_url,
                    "--consumer",
                    &consumer,
                    "--metrics-listen",
                    &format!("127.0.0.1:{metrics_port}"),
                ],
                "relay-nats.log",
            )?;
            // From the first message stored to the last.
            let deadline = Instant::now() + Duration::from_secs(300);
            let mut first: Option<(Instant, u64)> = None;
            let last = loop {
                let n = stored();
                let now = Instant::now();
                if first.is_none() && n > base {
                    first = Some((now, n));
                }
                if n >= base + NATS_EVENTS as u64 {
                    break now;
                }
                if now > deadline {
                    bail!("the relay published {} of {NATS_EVENTS} events", n - base);
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            let (t0, n0) = first.expect("a first message");
            let rate =
                (base + NATS_EVENTS as u64 - n0) as f64 / (last - t0).as_secs_f64().max(1e-3);
            let wall = started.elapsed().as_secs_f64();
            let after = cpu_seconds(PROCESSES);
            let text = rt.block_on(async {
                reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics"))
                    .await?
                    .text()
                    .await
            })?;
            let mut p = profile.lock().unwrap();
            p.wall += wall;
            for (i, (a, b)) in after.iter().zip(&before).enumerate() {
                p.cpu[i] += a - b;
            }
            for line in text
                .lines()
                .filter(|l| l.starts_with("steward_relay_phase_seconds_total{"))
            {
                let phase = line
                    .split("phase=\"")
                    .nth(1)
                    .and_then(|r| r.split('"').next());
                let secs = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
                if let (Some(phase), Some(secs)) = (phase, secs) {
                    *p.phases.entry(phase.to_string()).or_default() += secs;
                }
            }
            Ok(rate)
        };
        let (relayed, drained) = if relay_first {
            let r = measure_relay()?;
            (r, drain(&mut c, &drainer, NATS_EVENTS)?)
        } else {
            let d = drain(&mut c, &drainer, NATS_EVENTS)?;
            (measure_relay()?, d)
        };
        println!("  NATS: relay {relayed:.0} events/s, poll+ack drain {drained:.0} events/s");
        nats_rates.push(relayed);
        nats_drains.push(drained);
        c.batch_execute(&format!(
            "DELETE FROM steward.consumers WHERE name IN ('{consumer}', '{drainer}');"
        ))?;

        step(&format!(
            "relay round {}: {WEBHOOK_EVENTS} events to one webhook endpoint",
            round + 1
        ));
        let drainer = format!("bench_hook_drain_{round}");
        c.batch_execute(&format!("SELECT steward.create_consumer('{drainer}')"))?;
        let mut tx = c.transaction()?;
        tx.execute("SELECT steward.enter_tenant($1::text::uuid)", &[&TENANT])?;
        let endpoint: String = tx
            .query_one(
                "SELECT endpoint_id::text FROM steward.create_webhook($1)",
                &[&format!("http://127.0.0.1:{receiver_port}/bench")],
            )?
            .get(0);
        tx.commit()?;
        fill(&mut c, WEBHOOK_EVENTS)?;
        let measure_hook = || -> Result<f64> {
            hook_seen.clear();
            let _r = relay(cluster, &[], "relay-webhook.log")?;
            wait_until(
                Duration::from_secs(300),
                "the relay to post every event",
                || hook_seen.at.lock().unwrap().len() >= WEBHOOK_EVENTS,
            )?;
            Ok(hook_seen.rate())
        };
        let (relayed, drained) = if relay_first {
            let r = measure_hook()?;
            (r, drain(&mut c, &drainer, WEBHOOK_EVENTS)?)
        } else {
            let d = drain(&mut c, &drainer, WEBHOOK_EVENTS)?;
            (measure_hook()?, d)
        };
        println!("  webhook: relay {relayed:.0} events/s, poll+ack drain {drained:.0} events/s");
        hook_rates.push(relayed);
        hook_drains.push(drained);
        let mut tx = c.transaction()?;
        tx.execute("SELECT steward.enter_tenant($1::text::uuid)", &[&TENANT])?;
        tx.execute(
            "SELECT steward.delete_webhook($1::text::uuid)",
            &[&endpoint],
        )?;
        tx.commit()?;
        c.batch_execute(&format!(
            "DELETE FROM steward.consumers WHERE name = '{drainer}'"
        ))?;
    }
    let (nm, nlo, nhi) = spread(&nats_rates);
    let (dm, dlo, dhi) = spread(&nats_drains);
    let ratios: Vec<f64> = nats_rates
        .iter()
        .zip(&nats_drains)
        .map(|(r, d)| r / d)
        .collect();
    let (rm, rlo, rhi) = spread(&ratios);
    let (hm, hlo, hhi) = spread(&hook_rates);
    let (hdm, hdlo, hdhi) = spread(&hook_drains);
    let verdict = if nm >= 30_000.0 {
        "≥ 30,000/s: met"
    } else {
        "≥ 30,000/s: **not met**"
    };
    writeln!(
        report,
        "| sink ({rounds} rounds) | relay events/s, median (range) | poll+ack drain events/s, median (range) | relay ÷ drain | goal |\n|---|---|---|---|---|\n\
         | NATS JetStream | **{nm:.0}** ({nlo:.0} – {nhi:.0}) | {dm:.0} ({dlo:.0} – {dhi:.0}) | {rm:.2} ({rlo:.2} – {rhi:.2}) | {verdict} |\n\
         | webhook, one endpoint | **{hm:.0}** ({hlo:.0} – {hhi:.0}) | {hdm:.0} ({hdlo:.0} – {hdhi:.0}) | {:.2} | (context) |",
        hm / hdm
    )?;

    {
        let p = profile.lock().unwrap();
        let total: f64 = p.phases.values().sum();
        writeln!(
            report,
            "\nWhere the NATS rounds' time goes ({rounds} rounds, {:.1} s of wall time from the relay's start to the last arrival): \
             CPU used, in % of one core, by postgres {:.0}%, steward-service relay {:.0}%, nats-server {:.0}%, \
             and the bench itself (its stream-size requests) {:.0}% (two cores: 200% is the whole machine). \
             The relay's batches, by phase (its `steward_relay_phase_seconds_total`): {}.",
            p.wall,
            100.0 * p.cpu[0] / p.wall,
            100.0 * p.cpu[1] / p.wall,
            100.0 * p.cpu[2] / p.wall,
            100.0 * p.cpu[3] / p.wall,
            p.phases
                .iter()
                .map(|(k, v)| format!("{k} {:.0}%", 100.0 * v / total.max(1e-9)))
                .collect::<Vec<_>>()
                .join(", ")
        )?;
    }

    // Latency, one sink at a time: two writers at 500 events/s each, paced.
    writeln!(
        report,
        "\n| commit → acknowledged, {RATE_PER_S} events/s for {LATENCY_SECONDS} s (first second warm-up), one sink a run | p50 | p99 | goal |\n|---|---|---|---|"
    )?;
    for sink in ["NATS", "webhook"] {
        step(&format!(
            "commit → acknowledged at {RATE_PER_S} events/s for {LATENCY_SECONDS} s, {sink}"
        ));
        let consumer = format!("bench_latency_{}", sink.to_lowercase());
        let endpoint = if sink == "NATS" {
            c.batch_execute(&format!("SELECT steward.create_consumer('{consumer}')"))?;
            None
        } else {
            let mut tx = c.transaction()?;
            tx.execute("SELECT steward.enter_tenant($1::text::uuid)", &[&TENANT])?;
            let id: String = tx
                .query_one(
                    "SELECT endpoint_id::text FROM steward.create_webhook($1)",
                    &[&format!("http://127.0.0.1:{receiver_port}/latency")],
                )?
                .get(0);
            tx.commit()?;
            Some(id)
        };
        let seen = if sink == "NATS" {
            &nats_seen
        } else {
            &hook_seen
        };
        if sink == "NATS" {
            let seen = nats_seen.clone();
            let mut sub = rt.block_on(nc.subscribe("steward.>"))?;
            rt.spawn(async move {
                while let Some(m) = sub.next().await {
                    if let Some(id) = m.headers.as_ref().and_then(|h| h.get("Nats-Msg-Id")) {
                        seen.record(id.to_string());
                    }
                }
            });
        }
        seen.clear();
        let extra: Vec<&str> = if sink == "NATS" {
            vec!["--nats-url", &nats_url, "--consumer", &consumer]
        } else {
            vec![]
        };
        let r = relay(cluster, &extra, "relay-latency.log")?;
        std::thread::sleep(Duration::from_secs(2));
        let commits = paced_writers(cluster)?;
        let total = (RATE_PER_S * LATENCY_SECONDS) as usize;
        wait_until(Duration::from_secs(120), "every latency event", || {
            seen.at.lock().unwrap().len() >= total
        })?;
        drop(r);
        let at = seen.at.lock().unwrap();
        let t0 = commits.first().map(|c| c.1).unwrap_or_else(Instant::now);
        let timed: Vec<(f64, f64)> = commits
            .iter()
            .skip(RATE_PER_S as usize)
            .filter_map(|(id, t)| {
                at.get(id).map(|a| {
                    (
                        (*t - t0).as_secs_f64(),
                        a.saturating_duration_since(*t).as_secs_f64() * 1000.0,
                    )
                })
            })
            .collect();
        let mut v: Vec<f64> = timed.iter().map(|x| x.1).collect();
        let (p50, p99) = (percentile(&mut v, 0.5), percentile(&mut v, 0.99));
        let (p90, max) = (percentile(&mut v, 0.9), percentile(&mut v, 1.0));
        // When the slowest happened (seconds into the run): spikes at a period point at it.
        let mut slow = timed.clone();
        slow.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap());
        let when: Vec<String> = slow
            .iter()
            .take(12)
            .map(|(t, l)| format!("{t:.2}s:{l:.0}ms"))
            .collect();
        println!(
            "  {sink}: p50 {p50:.1} ms, p90 {p90:.1} ms, p99 {p99:.1} ms, max {max:.1} ms; slowest at {}",
            when.join(" ")
        );
        let verdict = match (sink, p99 <= 25.0) {
            ("NATS", true) => "≤ 25 ms: met",
            ("NATS", false) => "≤ 25 ms: **not met**",
            _ => "(context)",
        };
        let what = if sink == "NATS" {
            "NATS (the stored message reaches a subscriber)"
        } else {
            "webhook (the receiver gets the request)"
        };
        writeln!(
            report,
            "| {what} | {p50:.1} ms | **{p99:.1} ms** | {verdict} |"
        )?;
        drop(at);
        if let Some(id) = endpoint {
            let mut tx = c.transaction()?;
            tx.execute("SELECT steward.enter_tenant($1::text::uuid)", &[&TENANT])?;
            tx.execute("SELECT steward.delete_webhook($1::text::uuid)", &[&id])?;
            tx.commit()?;
        }
    }
    writeln!(
        report,
        "\nTwo writers, one transaction per event (`enter_tenant`, `emit`, COMMIT), paced at 500/s each; \
         latency from COMMIT returning in the writer to the event's arrival. The relay wakes on \
         `NOTIFY steward_outbox` (steward preloaded: the waker sends it)."
    )?;
    Ok(report)
}

/// Two writers, 500 events/s each for LATENCY_SECONDS, paced from when each was due; each
/// event's id and the moment its COMMIT returned.
fn paced_writers(cluster: &Cluster) -> Result<Vec<(String, Instant)>> {
    let commits: Arc<Mutex<Vec<(String, Instant)>>> = Default::default();
    let writers: Vec<_> = (0..2u64)
        .map(|w| {
            let commits = commits.clone();
            let conninfo = cluster.conninfo(DB, "postgres");
            std::thread::spawn(move || -> Result<()> {
                let mut c = Client::connect(&conninfo, NoTls)?;
                let emit = c.prepare(
                    "SELECT steward.emit('bench.latency', 'item', 'x', '{\"n\": 1}')::text",
                )?;
                let enter = c.prepare("SELECT steward.enter_tenant($1::text::uuid)")?;
                let per = RATE_PER_S / 2;
                let start = Instant::now() + Duration::from_micros(w * 1_000_000 / RATE_PER_S);
                for i in 0..per * LATENCY_SECONDS {
                    let due = start + Duration::from_micros(i * 1_000_000 / per);
                    if let Some(d) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(d);
                    }
                    let mut tx = c.transaction()?;
                    tx.execute(&enter, &[&TENANT])?;
                    let id: String = tx.query_one(&emit, &[])?.get(0);
                    tx.commit()?;
                    commits.lock().unwrap().push((id, Instant::now()));
                }
                Ok(())
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer")?;
    }
    let out = std::mem::take(&mut *commits.lock().unwrap());
    Ok(out)
}

fn nats_version() -> String {
    Command::new("/usr/sbin/nats-server")
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .replace("nats-server: ", "")
        })
        .unwrap_or_else(|_| "?".into())
}
