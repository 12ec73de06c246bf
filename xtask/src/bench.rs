//! `cargo xtask bench`: each workload against its baseline, measured in the same run,
//! interleaved (baseline and candidate alternate, in alternating order) and repeated, so that
//! one noisy interval cannot decide. Results go to docs/benchmarks.md.

use std::fmt::Write as _;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::cluster::Cluster;
use crate::run::{output, step};
use crate::setup::{ensure_base, ensure_packages, install_extension, repo_root, PG_BIN};

pub const DB: &str = "steward_bench";
pub const TENANT: &str = "00000000-0000-4000-8000-000000000001";

/// One pgbench workload, run as `user` (bench_tenant, or bench_quiet: the same tenant and
/// privileges with steward.notify off).
struct Workload {
    name: &'static str,
    script: &'static str,
    clients: u32,
    user: &'static str,
}

/// Workloads measured together: in every round each runs once, in an order that rotates from
/// round to round. A ratio compares two of them round by round.
struct Group {
    title: String,
    workloads: Vec<Workload>,
    /// (candidate, baseline, goal for candidate ÷ baseline)
    ratios: Vec<(&'static str, &'static str, Option<f64>)>,
}

struct Settings {
    rounds: usize,
    seconds: u32,
}

fn w(name: &'static str, script: &'static str, clients: u32) -> Workload {
    Workload {
        name,
        script,
        clients,
        user: "bench_tenant",
    }
}

/// A workload run as bench_quiet: no `NOTIFY steward_outbox` at commit.
fn quiet(name: &'static str, script: &'static str, clients: u32) -> Workload {
    Workload {
        user: "bench_quiet",
        ..w(name, script, clients)
    }
}

fn groups() -> Vec<Group> {
    let mut groups = vec![Group {
        title: "10-row page by tenant: governed (RLS) vs explicit WHERE tenant_id = $1, 2 clients"
            .into(),
        workloads: vec![
            w("explicit WHERE", "bench/tenant_page_baseline.sql", 2),
            w("governed", "bench/tenant_page_governed.sql", 2),
        ],
        ratios: vec![("governed", "explicit WHERE", Some(0.95))],
    }];
    for op in ["insert", "update"] {
        for clients in [2, 8] {
            let script = |kind: &str| -> &'static str {
                Box::leak(format!("bench/write_{op}_{kind}.sql").into_boxed_str())
            };
            groups.push(Group {
                title: format!("{} by key, {clients} clients", op.to_uppercase()),
                workloads: vec![
                    w("(a) plain", script("plain"), clients),
                    w("(b) floor", script("floor"), clients),
                    // Versions, audit and row events, with steward's defaults (wake-ups on, sent
                    // by the waker: the bench cluster preloads steward).
                    w("(c) governed", script("governed"), clients),
                    w("(d) PL/pgSQL", script("handwritten"), clients),
                ],
                ratios: vec![
                    ("(c) governed", "(b) floor", Some(0.9)),
                    ("(c) governed", "(d) PL/pgSQL", Some(1.2)),
                    ("(b) floor", "(a) plain", None),
                    ("(d) PL/pgSQL", "(a) plain", None),
                    ("(c) governed", "(a) plain", None),
                ],
            });
        }
    }
    for clients in [2, 8] {
        groups.push(Group {
            title: format!(
                "Outbox: INSERT with row events on, off, and into PgQ, {clients} clients"
            ),
            workloads: vec![
                w("events off", "bench/outbox_insert_off.sql", clients),
                w("events on", "bench/outbox_insert_on.sql", clients),
                quiet(
                    "events on, notify off",
                    "bench/outbox_insert_on_quiet.sql",
                    clients,
                ),
                w("PgQ jsontriga", "bench/outbox_insert_pgq.sql", clients),
            ],
            ratios: vec![
                ("events on", "events off", Some(0.95)),
                ("events on, notify off", "events off", None),
                ("events on", "PgQ jsontriga", None),
                ("events on, notify off", "PgQ jsontriga", None),
            ],
        });
    }
    groups
}

pub fn bench(args: &[String]) -> Result<()> {
    let quick = args.iter().any(|a| a == "--quick");
    let settings = if quick {
        Settings {
            rounds: 2,
            seconds: 3,
        }
    } else {
        Settings {
            rounds: 5,
            seconds: 6,
        }
    };
    ensure_base()?;
    // PgQ, the established in-database queue, for the outbox comparisons.
    ensure_packages(&["postgresql-15-pgq3"])?;
    install_extension(true)?;
    let conf = "shared_buffers = 1GB\nmax_connections = 50\nfsync = off\n\
                synchronous_commit = off\njit = off\nautovacuum = off\n\
                shared_preload_libraries = 'steward'";
    let mut cluster = Cluster::create("bench", None, conf)?;
    cluster.start()?;
    step("loading the benchmark data (100 tenants, 1,000,000 rows to page; 4 × 100,000 rows to write)");
    cluster.create_database(
        DB,
        &[
            "bench/tenant_page_setup.sql",
            "bench/write_setup.sql",
            "bench/outbox_setup.sql",
            "bench/service_setup.sql",
        ],
    )?;

    // `--only WORD` keeps the groups whose title contains WORD (for quick iterations; the
    // report then holds only those).
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let mut report = String::new();
    for g in groups()
        .into_iter()
        .filter(|g| only.as_deref().is_none_or(|o| g.title.contains(o)))
    {
        step(&format!(
            "{} ({} rounds, {} s per workload)",
            g.title, settings.rounds, settings.seconds
        ));
        let n = g.workloads.len();
        let mut tps: Vec<Vec<f64>> = vec![Vec::new(); n];
        for round in 0..settings.rounds {
            // Rotate the order each round, and reverse it every other round, so that no
            // workload always follows the same one (a workload can leave work behind for the
            // next: dirty buffers, a checkpoint, a notification queue).
            let mut order: Vec<usize> = (0..n).map(|k| (k + round) % n).collect();
            if round % 2 == 1 {
                order.reverse();
            }
            for i in order {
                let t = pgbench(&cluster, &g.workloads[i], &settings)?;
                println!(
                    "  round {}: {:<14} {t:>8.0} tps",
                    round + 1,
                    g.workloads[i].name
                );
                tps[i].push(t);
            }
        }
        let index = |name: &str| {
            g.workloads
                .iter()
                .position(|w| w.name == name)
                .expect("named workload")
        };
        writeln!(report, "\n### {}\n", g.title)?;
        writeln!(report, "| workload | tps (median) |\n|---|---|")?;
        for (i, wl) in g.workloads.iter().enumerate() {
            writeln!(report, "| {} | {:.0} |", wl.name, median(&tps[i]))?;
        }
        writeln!(report, "\n| ratio | median (range) | goal |\n|---|---|---|")?;
        for (cand, base, goal) in &g.ratios {
            let (c, b) = (index(cand), index(base));
            let per_round: Vec<f64> = tps[c].iter().zip(&tps[b]).map(|(x, y)| x / y).collect();
            let med = median(&per_round);
            let lo = per_round.iter().cloned().fold(f64::INFINITY, f64::min);
            let hi = per_round.iter().cloned().fold(0.0, f64::max);
            let verdict = match goal {
                Some(goal) if med >= *goal => format!("≥ {goal:.2}: met"),
                Some(goal) => format!("≥ {goal:.2}: **not met**"),
                None => "(context)".into(),
            };
            println!("  {cand} ÷ {base}: {med:.3} ({lo:.3} – {hi:.3}) {verdict}");
            writeln!(
                report,
                "| {cand} ÷ {base} | **{med:.3}** ({lo:.3} – {hi:.3}) | {verdict} |"
            )?;
        }
    }
    if only
        .as_deref()
        .is_none_or(|o| "Outbox drain latency".contains(o))
    {
        report.push_str(&crate::bench_outbox::run(&cluster, settings.rounds)?);
    }
    if only
        .as_deref()
        .is_none_or(|o| "The web API service".contains(o))
    {
        report.push_str(&crate::bench_service::run_all(
            &cluster,
            settings.rounds,
            settings.seconds,
        )?);
    }
    if only.as_deref().is_none_or(|o| "The relay".contains(o)) {
        report.push_str(&crate::bench_relay::run_all(&cluster, settings.rounds)?);
    }
    cluster.stop();
    write_report(&report, &settings, quick)
}

fn pgbench(cluster: &Cluster, w: &Workload, s: &Settings) -> Result<f64> {
    let mut cmd = Command::new(format!("{PG_BIN}/pgbench"));
    cmd.args([
        "-n",
        "-M",
        "prepared",
        "-h",
        &cluster.host(),
        "-p",
        &cluster.port.to_string(),
    ])
    .args([
        "-U",
        w.user,
        "-c",
        &w.clients.to_string(),
        "-j",
        &w.clients.min(2).to_string(),
    ])
    .args([
        "-T",
        &s.seconds.to_string(),
        "-D",
        &format!("tenant={TENANT}"),
        "-f",
    ])
    .arg(repo_root().join(w.script))
    .arg(DB);
    let out = output(&mut cmd).with_context(|| format!("pgbench {}", w.name))?;
    let failed = out
        .lines()
        .find(|l| l.starts_with("number of failed transactions"));
    if let Some(line) = failed {
        if !line.contains(": 0 ") {
            bail!("pgbench {}: {line}", w.name);
        }
    }
    out.lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no tps in pgbench output:\n{out}"))
}

pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn write_report(sections: &str, s: &Settings, quick: bool) -> Result<()> {
    let date = output(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]))?;
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let pg = output(Command::new(format!("{PG_BIN}/postgres")).arg("--version"))?;
    let notes = std::fs::read_to_string(repo_root().join("bench/NOTES.md")).unwrap_or_default();
    let text = format!(
        "# Benchmarks\n\n\
         Written by `cargo xtask bench`{}. Workloads that are compared run in the same run,\n\
         interleaved (every round runs each once, in an order that rotates from round to round and\n\
         is reversed every other round)\n\
         and repeated; a ratio is computed per round and reported as the median with its range.\n\n\
         - date: {}\n- machine: {cpus} cores; {}\n- settings: release build of the extension; a \
         private cluster with shared_buffers = 1GB, fsync = off, synchronous_commit = off, jit = off, autovacuum = off (the \
         write workloads insert hundreds of thousands of rows; a vacuum waking up during one workload's \
         turn would decide its ratio); \
         shared_preload_libraries = 'steward' (wake-ups sent by the waker); pgbench -M prepared as the tenant role bench_tenant (bench_quiet, the same role with steward.notify = off, for the workload that says so); {} rounds × {} s per workload\n{sections}\n{notes}",
        if quick { " --quick (short rounds: indicative only)" } else { "" },
        date.trim(),
        pg.trim(),
        s.rounds,
        s.seconds
    );
    let path = repo_root().join("docs/benchmarks.md");
    std::fs::write(&path, text)?;
    println!("\n==> wrote {}", path.display());
    Ok(())
}
