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
    /// Transactions per client (`pgbench -t`) instead of the settings' seconds: for shapes that
    /// use up their rows (DELETE) or grow their tables fast (bulk loads).
    transactions: Option<u32>,
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
        transactions: None,
    }
}

/// A workload run as bench_quiet: no `NOTIFY steward_outbox` at commit.
fn quiet(name: &'static str, script: &'static str, clients: u32) -> Workload {
    Workload {
        user: "bench_quiet",
        ..w(name, script, clients)
    }
}

/// A shape of write, run four ways: bench/write_<file>_{plain,floor,governed,handwritten}.sql
/// (tables from bench/write_setup.sql and bench/write_shapes_setup.sql).
struct Shape {
    file: &'static str,
    title: &'static str,
    user: &'static str,
    /// Transactions per run, shared among the clients; None: the settings' seconds.
    per_run: Option<u32>,
}

impl Shape {
    fn transactions(&self, clients: u32) -> Option<u32> {
        self.per_run.map(|n| (n / clients).max(1))
    }
}

/// Rows of each DELETE table (bench/write_shapes_setup.sql), and the DELETEs of one run: at
/// most MAX_ROUNDS rounds of both client counts fit.
const DELETE_ROWS: u32 = 1_000_000;
const DELETES_PER_RUN: u32 = 40_000;

fn write_shapes() -> Vec<Shape> {
    let shape = |file, title, per_run| Shape {
        file,
        title,
        user: "bench_tenant",
        per_run,
    };
    vec![
        shape("insert", "INSERT of one row", None),
        shape("update", "UPDATE of one row by key", None),
        shape("delete", "DELETE of one row by key", Some(DELETES_PER_RUN)),
        shape(
            "softdelete",
            "DELETE of one row by key, soft_delete",
            Some(DELETES_PER_RUN),
        ),
        shape("update100", "UPDATE of 100 rows a statement", None),
        shape("insertselect", "INSERT ... SELECT of 1,000 rows", Some(200)),
        // One COPY per client; as bench_loader (COPY FROM is refused where RLS applies).
        Shape {
            user: "bench_loader",
            ..shape("copy", "COPY of 100,000 rows", Some(1))
        },
    ]
}

fn groups() -> Vec<Group> {
    let mut groups: Vec<Group> = [2, 8]
        .into_iter()
        .map(|clients| Group {
            title: format!(
                "10-row page by tenant: governed (RLS) vs explicit WHERE tenant_id = $1, \
                 {clients} clients"
            ),
            workloads: vec![
                w("explicit WHERE", "bench/tenant_page_baseline.sql", clients),
                w("governed", "bench/tenant_page_governed.sql", clients),
            ],
            ratios: vec![("governed", "explicit WHERE", Some(0.95))],
        })
        .collect();
    for shape in write_shapes() {
        for clients in [2, 8] {
            let script = |kind: &str| -> &'static str {
                Box::leak(format!("bench/write_{}_{kind}.sql", shape.file).into_boxed_str())
            };
            let way = |name: &'static str, kind: &str| Workload {
                user: shape.user,
                transactions: shape.transactions(clients),
                ..w(name, script(kind), clients)
            };
            groups.push(Group {
                title: format!("Write: {}, {clients} clients", shape.title),
                workloads: vec![
                    way("(a) plain", "plain"),
                    way("(b) floor", "floor"),
                    // Versions, audit and row events, with steward's defaults (wake-ups on, sent
                    // by the waker: the bench cluster preloads steward).
                    way("(c) governed", "governed"),
                    way("(d) PL/pgSQL", "handwritten"),
                ],
                ratios: vec![
                    ("(c) governed", "(b) floor", Some(0.9)),
                    ("(c) governed", "(d) PL/pgSQL", Some(1.05)),
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
    // Most of the write shapes' rows and the DELETE tables' sequences are sized for this many
    // rounds (settings' rounds, doubled when the spread is wide).
    const _: () = assert!(DELETES_PER_RUN * 2 * 10 <= DELETE_ROWS);
    install_extension(true)?;
    let conf = "shared_buffers = 1GB\nmax_connections = 50\nfsync = off\n\
                synchronous_commit = off\njit = off\nautovacuum = off\n\
                shared_preload_libraries = 'steward'";
    let mut cluster = Cluster::create("bench", None, conf)?;
    cluster.start()?;
    step(
        "loading the benchmark data (100 tenants, 1,000,000 rows to page; 4 × 100,000 rows to \
         write, 8 × 1,000,000 to delete)",
    );
    cluster.create_database(
        DB,
        &[
            "bench/tenant_page_setup.sql",
            "bench/write_setup.sql",
            "bench/write_shapes_setup.sql",
            "bench/outbox_setup.sql",
            "bench/service_setup.sql",
        ],
    )?;

    // `--only WORD[,WORD...]` keeps the groups whose title contains one of the words (for quick
    // iterations; the report then holds only those).
    let words: Option<Vec<String>> = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .map(|w| w.split(',').map(str::to_string).collect());
    let wanted = |title: &str| {
        words
            .as_ref()
            .is_none_or(|ws| ws.iter().any(|w| title.contains(w.as_str())))
    };
    let mut report = String::new();
    for g in groups().into_iter().filter(|g| wanted(&g.title)) {
        step(&format!(
            "{} ({} rounds, {} s per workload)",
            g.title, settings.rounds, settings.seconds
        ));
        let n = g.workloads.len();
        let mut tps: Vec<Vec<f64>> = vec![Vec::new(); n];
        let index = |name: &str| {
            g.workloads
                .iter()
                .position(|w| w.name == name)
                .expect("named workload")
        };
        let mut round = 0;
        let wide: Vec<String> = loop {
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
            round += 1;
            if round < settings.rounds {
                continue;
            }
            // A ratio with a goal whose rounds spread wider than ±15% around its median cannot
            // decide it: more rounds, up to twice the settings'.
            let wide: Vec<String> = g
                .ratios
                .iter()
                .filter(|(_, _, goal)| goal.is_some())
                .filter(|(c, b, _)| spread(&per_round(&tps, index(c), index(b))) > MAX_SPREAD)
                .map(|(c, b, _)| format!("{c} ÷ {b}"))
                .collect();
            if wide.is_empty() || round >= settings.rounds * 2 {
                break wide;
            }
            println!(
                "  wider than ±{:.0}% after {round} rounds: {}; one more round",
                MAX_SPREAD * 100.0,
                wide.join(", ")
            );
        };
        check_rows_left(&cluster)?;
        writeln!(report, "\n### {}\n", g.title)?;
        writeln!(report, "| workload | tps (median) |\n|---|---|")?;
        for (i, wl) in g.workloads.iter().enumerate() {
            writeln!(report, "| {} | {:.0} |", wl.name, median(&tps[i]))?;
        }
        writeln!(report, "\n| ratio | median (range) | goal |\n|---|---|---|")?;
        for (cand, base, goal) in &g.ratios {
            let per_round = per_round(&tps, index(cand), index(base));
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
        writeln!(report, "\n{round} rounds.")?;
        if !wide.is_empty() {
            let note = format!(
                "Wider than ±{:.0}% around the median after {round} rounds (the cap): {}. \
                 Those ratios cannot decide their goals on this run.",
                MAX_SPREAD * 100.0,
                wide.join(", ")
            );
            println!("  {note}");
            writeln!(report, "**{note}**")?;
        }
    }
    if wanted("Outbox drain latency") {
        report.push_str(&crate::bench_outbox::run(&cluster, settings.rounds)?);
    }
    if wanted("The web API service") {
        report.push_str(&crate::bench_service::run_all(
            &cluster,
            settings.rounds,
            settings.seconds,
        )?);
    }
    if wanted("The relay") {
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
    .args(match w.transactions {
        Some(t) => ["-t".to_string(), t.to_string()],
        None => ["-T".to_string(), s.seconds.to_string()],
    })
    .args(["-D", &format!("tenant={TENANT}"), "-f"])
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

/// How far a ratio's rounds may spread around their median (either way, as a fraction of it)
/// before the bench runs more rounds.
const MAX_SPREAD: f64 = 0.15;

/// The candidate ÷ baseline ratio of each round.
fn per_round(tps: &[Vec<f64>], candidate: usize, baseline: usize) -> Vec<f64> {
    tps[candidate]
        .iter()
        .zip(&tps[baseline])
        .map(|(x, y)| x / y)
        .collect()
}

/// The larger of (highest ÷ median − 1) and (1 − lowest ÷ median).
fn spread(v: &[f64]) -> f64 {
    let med = median(v);
    if v.is_empty() || med <= 0.0 {
        return 0.0;
    }
    let lo = v.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = v.iter().cloned().fold(0.0, f64::max);
    (hi / med - 1.0).max(1.0 - lo / med)
}

/// The DELETE shapes take their rows from sequences: a sequence past the rows would make
/// DELETEs that find nothing, and a faster workload that measures nothing.
fn check_rows_left(cluster: &Cluster) -> Result<()> {
    let out = output(cluster.psql(DB).args([
        "-tA",
        "-c",
        &format!(
            "SELECT string_agg(sequencename, ', ') FROM pg_sequences \
              WHERE schemaname = 'bench' AND sequencename LIKE '%\\_next' \
                AND last_value >= {DELETE_ROWS}"
        ),
    ]))?;
    if !out.trim().is_empty() {
        bail!(
            "the DELETE shapes ran out of rows ({}): raise DELETE_ROWS in bench.rs and \
             bench/write_shapes_setup.sql",
            out.trim()
        );
    }
    Ok(())
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
