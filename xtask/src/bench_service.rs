//! The web API's benchmarks: GET by key, a 20-row filtered page and PATCH through
//! `steward-service serve` (driven by wrk), against the same transactions sent directly by a
//! small Rust client over tokio-postgres with the same number of connections (the statements the
//! service builds, prepared once per connection and pipelined as the service sends them; no HTTP,
//! no pool), and against pgbench running those transactions. Interleaved
//! and repeated like every other group; then each route's p99 at half the service's peak rate,
//! at a fixed rate over as many connections (latency counted from when each request was due, so
//! a stall is not hidden).

use std::fmt::Write as _;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::bench::{median, DB, TENANT};
use crate::cluster::{free_port, Cluster};
use crate::run::{output, run, step};
use crate::setup::{cargo, ensure_packages, repo_root, PG_BIN};

/// Connections: the service's pool, the direct client's, pgbench's and wrk's.
const CONNECTIONS: usize = 8;
/// Connections of the fixed-rate latency run: enough that one slow response does not hold back
/// the requests due after it on the same connection (they wait in the service's pool instead).
const PACED_CONNECTIONS: usize = 32;

#[derive(Clone, Copy)]
enum Route {
    Get,
    Page,
    Patch,
}

impl Route {
    const ALL: [Route; 3] = [Route::Get, Route::Page, Route::Patch];

    fn name(self) -> &'static str {
        match self {
            Route::Get => "GET /v1/items/{id}",
            Route::Page => "GET /v1/items?category=eq.N&limit=20",
            Route::Patch => "PATCH /v1/items/{id}",
        }
    }

    fn file(self) -> &'static str {
        match self {
            Route::Get => "get",
            Route::Page => "page",
            Route::Patch => "patch",
        }
    }
}

/// A measurement: requests (transactions) per second and p99 in milliseconds (None: not known).
#[derive(Clone, Copy, Default)]
struct Measure {
    rate: f64,
    p99_ms: Option<f64>,
}

struct Service {
    child: Child,
    base: String,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_service(cluster: &Cluster) -> Result<Service> {
    let port = free_port()?;
    let bin = repo_root().join("target/release/steward-service");
    let log = std::fs::File::create(format!("{}/bench-service.log", cluster.host()))?;
    let child = Command::new(bin)
        .args([
            "serve",
            "--database-url",
            &cluster.conninfo(DB, "bench_api"),
        ])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--pool-size", &CONNECTIONS.to_string()])
        // Per-request log lines off: the benchmark measures the door, not stderr.
        .env("RUST_LOG", "warn")
        .stderr(log)
        .spawn()?;
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(Service { child, base });
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    bail!(
        "steward-service did not start (see {}/bench-service.log)",
        cluster.host()
    )
}

/// wrk, closed loop: requests/s and its p99.
fn wrk(base: &str, route: Route, token: &str, seconds: u32) -> Result<Measure> {
    let script = repo_root().join(format!("bench/service_{}.lua", route.file()));
    let out = output(
        Command::new("wrk")
            .args(["-t", "2", "-c", &CONNECTIONS.to_string()])
            .args(["-d", &format!("{seconds}s"), "--latency", "-s"])
            .arg(script)
            .arg(base)
            .env("STEWARD_BENCH_TOKEN", token),
    )?;
    if out.contains("Non-2xx or 3xx responses") {
        bail!("wrk {}: some responses were errors:\n{out}", route.name());
    }
    let rate = out
        .lines()
        .find(|l| l.starts_with("Requests/sec:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .with_context(|| format!("no Requests/sec in wrk's output:\n{out}"))?;
    let p99 = out
        .lines()
        .find(|l| l.trim_start().starts_with("99%"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(parse_wrk_duration);
    Ok(Measure { rate, p99_ms: p99 })
}

fn parse_wrk_duration(s: &str) -> Option<f64> {
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic())?);
    let v: f64 = num.parse().ok()?;
    Some(match unit {
        "us" => v / 1000.0,
        "ms" => v,
        "s" => v * 1000.0,
        "m" => v * 60_000.0,
        _ => return None,
    })
}

/// pgbench running the same transactions (pipelined, prepared): transactions/s.
fn pgbench(cluster: &Cluster, route: Route, token: &str, seconds: u32) -> Result<Measure> {
    let out = output(
        Command::new(format!("{PG_BIN}/pgbench"))
            .args(["-n", "-M", "prepared", "-h", &cluster.host()])
            .args(["-p", &cluster.port.to_string(), "-U", "bench_api"])
            .args(["-c", &CONNECTIONS.to_string(), "-j", "2"])
            .args([
                "-T",
                &seconds.to_string(),
                "-D",
                &format!("token={token}"),
                "-f",
            ])
            .arg(repo_root().join(format!("bench/service_{}.sql", route.file())))
            .arg(DB),
    )?;
    if let Some(line) = out
        .lines()
        .find(|l| l.starts_with("number of failed transactions"))
    {
        if !line.contains(": 0 ") {
            bail!("pgbench {}: {line}", route.name());
        }
    }
    let rate = out
        .lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no tps in pgbench output:\n{out}"))?;
    Ok(Measure { rate, p99_ms: None })
}

/// The direct client: CONNECTIONS tokio-postgres connections, each sending the same transaction
/// as the service (BEGIN, the token and annotate, the statement the service would build, COMMIT)
/// pipelined, with its statements prepared once per connection. No HTTP, no pool.
struct Direct {
    rt: tokio::runtime::Runtime,
    url: String,
    resource: steward_service::resources::Resource,
}

use steward_service::db::ENTER_SQL;

impl Direct {
    fn new(cluster: &Cluster) -> Result<Direct> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let url = cluster.conninfo(DB, "bench_api");
        let text: String = rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
            tokio::spawn(conn);
            let row = client
                .query_one(steward_service::db::RESOURCES_SQL, &[])
                .await?;
            Ok::<_, anyhow::Error>(row.get(0))
        })?;
        let list: Vec<steward_service::resources::Resource> = serde_json::from_str(&text)?;
        let resource = list
            .into_iter()
            .find(|r| r.resource == "items")
            .context("the bench database exposes no resource \"items\"")?;
        Ok(Direct { rt, url, resource })
    }

    fn statement(
        resource: &steward_service::resources::Resource,
        route: Route,
        n: u64,
    ) -> Result<steward_service::resources::Statement> {
        let st = match route {
            Route::Get => resource.get(&[(1 + n % 10_000).to_string()], &None),
            Route::Page => {
                let q = steward_service::query::parse_list(
                    &format!("category=eq.{}&limit=20", n % 50),
                    100,
                    1000,
                )
                .map_err(|e| anyhow::anyhow!("{}", e.detail))?;
                resource.list(&q).map(|(st, _)| st)
            }
            Route::Patch => {
                let body = format!("{{\"qty\": {}}}", n % 1000);
                let map = serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v.as_object().cloned())
                    .unwrap_or_default();
                resource.update(&[(1 + n % 10_000).to_string()], None, &map, body)
            }
        };
        st.map_err(|e| anyhow::anyhow!("{}", e.detail))
    }

    fn run(&self, route: Route, token: &str, seconds: u32) -> Result<Measure> {
        use steward_service::resources::Param;
        use tokio_postgres::types::{ToSql, Type};
        let deadline = Instant::now() + Duration::from_secs(seconds.into());
        let mut tasks = Vec::new();
        for w in 0..CONNECTIONS {
            let (url, resource, token) =
                (self.url.clone(), self.resource.clone(), token.to_string());
            tasks.push(self.rt.spawn(async move {
                let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
                tokio::spawn(conn);
                let enter = client.prepare_typed(ENTER_SQL, &[Type::TEXT; 6]).await?;
                let mut prepared: std::collections::HashMap<String, tokio_postgres::Statement> =
                    Default::default();
                let none: Option<String> = None;
                let timeout = "5000".to_string();
                let resource_name = resource.resource.clone();
                let mut latencies = Vec::new();
                let mut n: u64 = (w as u64) * 7919;
                while Instant::now() < deadline {
                    n = n
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let st = Direct::statement(&resource, route, n >> 33)?;
                    let types: Vec<Type> = st
                        .params
                        .iter()
                        .map(|p| match p {
                            Param::Text(_) => Type::TEXT,
                            Param::TextArray(_) => Type::TEXT_ARRAY,
                        })
                        .collect();
                    if !prepared.contains_key(&st.sql) {
                        let s = client.prepare_typed(&st.sql, &types).await?;
                        prepared.insert(st.sql.clone(), s);
                    }
                    let statement = &prepared[&st.sql];
                    let values: Vec<&(dyn ToSql + Sync)> = st
                        .params
                        .iter()
                        .map(|p| match p {
                            Param::Text(v) => v as &(dyn ToSql + Sync),
                            Param::TextArray(v) => v as &(dyn ToSql + Sync),
                        })
                        .collect();
                    let enter_values: [&(dyn ToSql + Sync); 6] =
                        [&token, &none, &none, &none, &timeout, &resource_name];
                    let start = Instant::now();
                    let (b, e, r, c) = tokio::join!(
                        client.query_typed("BEGIN", &[]),
                        client.query(&enter, &enter_values),
                        client.query(statement, &values),
                        client.query_typed("COMMIT", &[]),
                    );
                    b?;
                    e?;
                    r?;
                    c?;
                    latencies.push(start.elapsed().as_secs_f64() * 1000.0);
                }
                Ok::<_, anyhow::Error>(latencies)
            }));
        }
        let started = Instant::now();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(self.rt.block_on(t)??);
        }
        let elapsed = started.elapsed().as_secs_f64().max(f64::from(seconds));
        Ok(Measure {
            rate: all.len() as f64 / elapsed,
            p99_ms: Some(percentile(&mut all, 0.99)),
        })
    }

    /// Through the service at a fixed `rate`, as wrk2 does: PACED_CONNECTIONS keep-alive connections,
    /// each sending its share of the requests at fixed times; a request's latency counts from
    /// when it was due (a stall of the service delays the ones behind it, and they count it).
    fn open_loop(
        &self,
        base: &str,
        route: Route,
        token: &str,
        rate: f64,
        seconds: u32,
    ) -> Result<f64> {
        let per_connection = rate / PACED_CONNECTIONS as f64;
        let interval = Duration::from_secs_f64(1.0 / per_connection);
        let count = (per_connection * f64::from(seconds)) as u64;
        let mut tasks = Vec::new();
        let start = Instant::now() + Duration::from_millis(100);
        for w in 0..PACED_CONNECTIONS {
            let http = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()?;
            let (base, token) = (base.to_string(), token.to_string());
            // Connections start staggered across one interval.
            let offset = interval.mul_f64(w as f64 / PACED_CONNECTIONS as f64);
            tasks.push(self.rt.spawn(async move {
                let mut out = Vec::with_capacity(count as usize);
                for i in 0..count {
                    let due = start + offset + interval.mul_f64(i as f64);
                    tokio::time::sleep_until(due.into()).await;
                    let n = (i * PACED_CONNECTIONS as u64 + w as u64).wrapping_mul(2654435761);
                    let req = match route {
                        Route::Get => http.get(format!("{base}/v1/items/{}", 1 + n % 10_000)),
                        Route::Page => {
                            http.get(format!("{base}/v1/items?category=eq.{}&limit=20", n % 50))
                        }
                        Route::Patch => http
                            .patch(format!("{base}/v1/items/{}", 1 + n % 10_000))
                            .header("If-Match", "*")
                            .header("Content-Type", "application/json")
                            .body(format!("{{\"qty\": {}}}", n % 1000)),
                    };
                    let res = req.bearer_auth(&token).send().await?;
                    let ok = res.status().is_success();
                    let _ = res.bytes().await?;
                    if !ok {
                        anyhow::bail!("a request failed during the latency run");
                    }
                    out.push(due.elapsed().as_secs_f64() * 1000.0);
                }
                Ok::<_, anyhow::Error>(out)
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(self.rt.block_on(t)??);
        }
        Ok(percentile(&mut all, 0.99))
    }
}

/// CPU seconds (user + system) used so far by the processes whose name starts with each of
/// `names`, and by this process (the load generator): where a run's time went.
pub(crate) fn cpu_seconds(names: &[&str]) -> Vec<f64> {
    let tick = 100.0; // USER_HZ on Linux
    let mut out = vec![0.0; names.len() + 1];
    let me = std::process::id().to_string();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let pid = e.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = &stat[open + 1..close];
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        let used = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        // utime and stime are fields 14 and 15 of stat; 11 and 12 after the name.
        let secs = (used(11) + used(12)) / tick;
        if pid == me {
            out[names.len()] += secs;
        } else if let Some(i) = names.iter().position(|n| comm.starts_with(n)) {
            out[i] += secs;
        }
    }
    out
}

fn percentile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 - 1.0) * q).round() as usize;
    v[i]
}

/// An HS256 token for the benchmark's tenant (the benchmark plays the identity provider).
fn bench_token(cluster: &Cluster) -> Result<String> {
    let mut secret = [0u8; 32];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut secret)?;
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    run(cluster.psql(DB).args([
        "-c",
        &format!(
            "INSERT INTO steward.signing_keys (key_id, secret) VALUES ('bench', '\\x{hex}')
             ON CONFLICT (key_id) DO UPDATE SET secret = excluded.secret"
        ),
    ]))?;
    Ok(crate::demo::mint(
        &secret,
        "bench",
        TENANT,
        "bench@example.com",
        24 * 3600,
    ))
}

pub fn run_all(cluster: &Cluster, rounds: usize, seconds: u32) -> Result<String> {
    ensure_packages(&["wrk"])?;
    step("building steward-service (release)");
    run(cargo(&repo_root()).args(["build", "-q", "--release", "-p", "steward-service"]))?;
    let token = bench_token(cluster)?;
    let service = start_service(cluster)?;
    let direct = Direct::new(cluster)?;
    let mut report = String::new();
    let mut peaks = Vec::new();
    writeln!(
        report,
        "\n### The web API: steward-service serve vs the same transactions sent directly, {CONNECTIONS} connections\n\n\
         Each route through the service (wrk, {CONNECTIONS} connections, 2 threads), the same pipelined \
         transaction (token, annotate, statement, COMMIT; statements prepared once per connection) sent by \
         a small Rust client over tokio-postgres with {CONNECTIONS} connections (direct), and by pgbench -M prepared with \
         \\startpipeline (pgbench). All three share the machine's 2 cores with the database.\n\n\
         | route | service req/s (p99) | direct tx/s (p99) | pgbench tx/s | service ÷ direct, median (range) | goal |\n|---|---|---|---|---|---|"
    )?;
    for route in Route::ALL {
        step(&format!(
            "{} ({rounds} rounds, {seconds} s each side)",
            route.name()
        ));
        let mut sides: [Vec<Measure>; 3] = Default::default();
        for round in 0..rounds {
            let mut order = [0usize, 1, 2];
            order.rotate_left(round % 3);
            if round % 2 == 1 {
                order.reverse();
            }
            for side in order {
                let m = match side {
                    0 => wrk(&service.base, route, &token, seconds)?,
                    1 => direct.run(route, &token, seconds)?,
                    _ => pgbench(cluster, route, &token, seconds)?,
                };
                println!(
                    "  round {}: {:<8} {:>8.0}/s{}",
                    round + 1,
                    ["service", "direct", "pgbench"][side],
                    m.rate,
                    m.p99_ms
                        .map(|p| format!("  p99 {p:.2} ms"))
                        .unwrap_or_default()
                );
                sides[side].push(m);
            }
        }
        let rates = |i: usize| sides[i].iter().map(|m| m.rate).collect::<Vec<_>>();
        let p99s = |i: usize| sides[i].iter().filter_map(|m| m.p99_ms).collect::<Vec<_>>();
        let ratios: Vec<f64> = sides[0]
            .iter()
            .zip(&sides[1])
            .map(|(s, d)| s.rate / d.rate)
            .collect();
        let (med, lo, hi) = (
            median(&ratios),
            ratios.iter().cloned().fold(f64::INFINITY, f64::min),
            ratios.iter().cloned().fold(0.0, f64::max),
        );
        let verdict = if med >= 0.8 {
            "≥ 0.80: met"
        } else {
            "≥ 0.80: **not met**"
        };
        println!("  service ÷ direct: {med:.3} ({lo:.3} – {hi:.3}) {verdict}");
        writeln!(
            report,
            "| {} | {:.0} ({:.2} ms) | {:.0} ({:.2} ms) | {:.0} | **{med:.3}** ({lo:.3} – {hi:.3}) | {verdict} |",
            route.name(),
            median(&rates(0)),
            median(&p99s(0)),
            median(&rates(1)),
            median(&p99s(1)),
            median(&rates(2)),
        )?;
        peaks.push((route, median(&rates(0))));
    }
    writeln!(
        report,
        "\n| route, at a fixed rate ({PACED_CONNECTIONS} connections, paced) | rate | p99 (from when each request was due) | goal |\n|---|---|---|---|"
    )?;
    let mut cpu_rows = String::new();
    for (route, peak) in peaks {
        for (share, goal) in [(0.5, true), (0.25, false)] {
            let rate = (peak * share).max(1.0);
            step(&format!("{}: p99 at {rate:.0} requests/s", route.name()));
            let mut p99s = Vec::new();
            for round in 0..rounds.min(3) {
                let before = cpu_seconds(&["postgres", "steward-service"]);
                let started = Instant::now();
                let p = direct.open_loop(&service.base, route, &token, rate, seconds)?;
                let wall = started.elapsed().as_secs_f64();
                let after = cpu_seconds(&["postgres", "steward-service"]);
                println!("  p99 {p:.2} ms");
                p99s.push(p);
                if round == 0 && goal {
                    let used: Vec<f64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
                    writeln!(
                        cpu_rows,
                        "| {} at {rate:.0}/s | {:.0}% | {:.0}% | {:.0}% | {:.0}% |",
                        route.name(),
                        100.0 * used[0] / wall,
                        100.0 * used[1] / wall,
                        100.0 * used[2] / wall,
                        100.0 * used.iter().sum::<f64>() / wall,
                    )?;
                }
            }
            let p = median(&p99s);
            let verdict = match (goal, p <= 5.0) {
                (true, true) => "≤ 5 ms: met",
                (true, false) => "≤ 5 ms: **not met**",
                (false, _) => "(context)",
            };
            writeln!(
                report,
                "| {} at {:.0}% of peak | {rate:.0}/s | **{p:.2} ms** | {verdict} |",
                route.name(),
                share * 100.0
            )?;
        }
    }
    writeln!(
        report,
        "\nWhere the time went in the first fixed-rate run of each route at half the peak: CPU used \
         by each side, as a share of one core (the machine has 2, so 200% is all of it).\n\n\
         | run | PostgreSQL backends | steward-service | load generator | all |\n|---|---|---|---|---|\n{cpu_rows}"
    )?;
    drop(service);
    Ok(report)
}
