//! `cargo xtask bench`: each workload against its baseline, measured in the same run,
//! interleaved (baseline and candidate alternate, in alternating order) and repeated, so that
//! one noisy interval cannot decide. Results go to docs/benchmarks.md.

use std::fmt::Write as _;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::cluster::Cluster;
use crate::run::{output, run, step};
use crate::setup::{ensure_base, install_extension, repo_root, PG_BIN};

const DB: &str = "steward_bench";
const TENANT: &str = "00000000-0000-4000-8000-000000000001";

/// One pgbench workload.
struct Workload {
    name: &'static str,
    script: &'static str,
    user: &'static str,
    vars: Vec<(&'static str, &'static str)>,
}

/// A candidate measured against its baseline, with the goal for candidate/baseline.
struct Comparison {
    title: &'static str,
    candidate: Workload,
    baseline: Workload,
    goal: f64,
}

struct Settings {
    rounds: usize,
    seconds: u32,
    clients: u32,
}

pub fn bench(args: &[String]) -> Result<()> {
    let quick = args.iter().any(|a| a == "--quick");
    let settings = if quick {
        Settings {
            rounds: 2,
            seconds: 3,
            clients: 2,
        }
    } else {
        Settings {
            rounds: 5,
            seconds: 10,
            clients: 2,
        }
    };
    ensure_base()?;
    install_extension(true)?;
    let conf = "shared_buffers = 1GB\nmax_connections = 50\nfsync = off\n\
                synchronous_commit = off\njit = off";
    let mut cluster = Cluster::create("bench", None, conf)?;
    cluster.start()?;
    step("loading the benchmark data (100 tenants, 1,000,000 rows; about a minute)");
    run(cluster
        .psql("postgres")
        .args(["-c", &format!("CREATE DATABASE {DB}")]))?;
    run(cluster
        .psql(DB)
        .arg("-f")
        .arg(repo_root().join("bench/tenant_page_setup.sql")))?;

    let comparisons = vec![Comparison {
        title: "10-row page by tenant, governed (RLS) vs explicit WHERE tenant_id = $1",
        candidate: Workload {
            name: "governed",
            script: "bench/tenant_page_governed.sql",
            user: "bench_tenant",
            vars: vec![],
        },
        baseline: Workload {
            name: "explicit WHERE",
            script: "bench/tenant_page_baseline.sql",
            user: "bench_tenant",
            vars: vec![("tenant", TENANT)],
        },
        goal: 0.95,
    }];

    let mut report = String::new();
    for c in &comparisons {
        step(&format!(
            "{} ({} rounds of {} s each)",
            c.title, settings.rounds, settings.seconds
        ));
        let (mut cand, mut base, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..settings.rounds {
            // Alternate which runs first, so drift over time does not favour one side.
            let order: [&Workload; 2] = if round % 2 == 0 {
                [&c.baseline, &c.candidate]
            } else {
                [&c.candidate, &c.baseline]
            };
            let mut tps = [0.0; 2];
            for (i, w) in order.iter().enumerate() {
                tps[i] = pgbench(&cluster, w, &settings)?;
            }
            let (b, k) = if round % 2 == 0 {
                (tps[0], tps[1])
            } else {
                (tps[1], tps[0])
            };
            println!(
                "  round {}: baseline {b:.0} tps, candidate {k:.0} tps, ratio {:.3}",
                round + 1,
                k / b
            );
            base.push(b);
            cand.push(k);
            ratios.push(k / b);
        }
        let med = median(&ratios);
        let verdict = if med >= c.goal { "met" } else { "NOT met" };
        println!("  median ratio {med:.3} (goal ≥ {:.2}: {verdict})", c.goal);
        writeln!(
            report,
            "| {} | {} {:.0} tps | {} {:.0} tps | **{med:.3}** ({:.3} – {:.3}) | ≥ {:.2} {verdict} |",
            c.title,
            c.candidate.name,
            median(&cand),
            c.baseline.name,
            median(&base),
            ratios.iter().cloned().fold(f64::INFINITY, f64::min),
            ratios.iter().cloned().fold(0.0, f64::max),
            c.goal
        )?;
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
        &s.clients.to_string(),
        "-j",
        &s.clients.to_string(),
    ])
    .args(["-T", &s.seconds.to_string(), "-f"])
    .arg(repo_root().join(w.script));
    for (k, v) in &w.vars {
        cmd.arg("-D").arg(format!("{k}={v}"));
    }
    cmd.arg(DB);
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

fn median(v: &[f64]) -> f64 {
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

fn write_report(rows: &str, s: &Settings, quick: bool) -> Result<()> {
    let date = output(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]))?;
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let pg = output(Command::new(format!("{PG_BIN}/postgres")).arg("--version"))?;
    let text = format!(
        "# Benchmarks\n\n\
         Written by `cargo xtask bench`{}. Each comparison runs its baseline and its candidate in the\n\
         same run, interleaved (the order alternates every round) and repeated; the ratio is\n\
         candidate ÷ baseline tps per round, reported as the median with the range over rounds.\n\n\
         - date: {}\n- machine: {cpus} cores; {}\n- settings: release build of the extension; a private \
         cluster with shared_buffers = 1GB, fsync = off, synchronous_commit = off, jit = off; \
         pgbench -M prepared, {} clients, {} rounds × {} s per side\n\n\
         | workload | candidate | baseline | ratio (median, range) | goal |\n|---|---|---|---|---|\n{rows}\n\
         ## Workloads\n\n\
         - **10-row page by tenant** (`bench/tenant_page_*.sql`, data from `bench/tenant_page_setup.sql`):\n  \
         100 tenants, 1,000,000 rows spread over the table, an index on (tenant_id, id). The candidate\n  \
         connects as `bench_tenant`, a role granted one tenant (no `enter_tenant` call), and reads a\n  \
         keyset page of the governed table: the tenant comes from steward's policy. The baseline is the\n  \
         same role reading the same page of an ungoverned copy with `WHERE tenant_id = $1`.\n",
        if quick { " --quick (short rounds: indicative only)" } else { "" },
        date.trim(),
        pg.trim(),
        s.clients,
        s.rounds,
        s.seconds
    );
    let path = repo_root().join("docs/benchmarks.md");
    std::fs::write(&path, text)?;
    println!("\n==> wrote {}", path.display());
    Ok(())
}
