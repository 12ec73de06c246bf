//! `cargo xtask`: the project's commands.
//!
//! - `cargo xtask test`  installs what is missing, then runs every suite: unit tests, the
//!   `#[pg_test]`s, the `pg_regress/` suite and the end-to-end `tests/` crate against a private
//!   cluster, and the upgrade suite (every release, upgraded in place); one summary line per
//!   suite; non-zero exit on any failure. `cargo xtask test SUITE` runs one suite;
//!   `cargo xtask test pg_regress NAME` one pg_regress file (after the shared fixture).
//! - `cargo xtask demo`  starts a local cluster with the extension and a two-tenant schema and
//!   shows tenant isolation at work (`--stop` stops it).
//! - `cargo xtask bench` runs the benchmarks and writes docs/benchmarks.md.
//! - `cargo xtask setup` only installs what is missing.
//! - `cargo xtask upgrade-draft FROM` drafts the function part of the upgrade script from
//!   release FROM (docs/contributing.md, Releases).

mod bench;
mod bench_outbox;
mod bench_relay;
mod bench_service;
mod cluster;
mod demo;
mod run;
mod setup;
mod upgrade;

use std::path::Path;
use std::process::{Command, ExitCode};

use anyhow::{bail, Result};

use cluster::Cluster;
use run::{cargo_test_counts, pg_regress_counts, step, tee, Counts};
use setup::{cargo, ensure_base, install_extension, repo_root};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("setup") => ensure_base(),
        Some("test") => test(&args[1..]),
        Some("demo") => demo::demo(&args[1..]),
        Some("bench") => bench::bench(&args[1..]),
        Some("upgrade-draft") if args.len() == 2 => upgrade::draft(&args[1]),
        _ => {
            eprintln!(
                "usage: cargo xtask <setup | test [SUITE [NAME]] | demo [--stop] | bench [--quick] [--only WORD[,WORD]] | upgrade-draft FROM>"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nxtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

struct Suite {
    name: &'static str,
    counts: Counts,
    ok: bool,
}

impl Suite {
    fn line(&self) -> String {
        format!(
            "{:<10} {} passed, {} failed{}{}",
            format!("{}:", self.name),
            self.counts.passed,
            self.counts.failed,
            if self.counts.ignored > 0 {
                format!(", {} skipped", self.counts.ignored)
            } else {
                String::new()
            },
            if !self.ok && self.counts.failed == 0 {
                "  (the runner itself failed)"
            } else {
                ""
            }
        )
    }
}

fn cargo_suite(name: &'static str, cmd: &mut Command) -> Result<Suite> {
    step(&format!("suite {name}"));
    let (ok, out) = tee(cmd)?;
    let counts = cargo_test_counts(&out);
    // A suite that ran nothing has not shown anything: count it as failed.
    Ok(Suite {
        name,
        counts,
        ok: ok && counts.failed == 0 && counts.passed > 0,
    })
}

fn test(args: &[String]) -> Result<()> {
    let only: Option<&str> = args.first().map(String::as_str);
    let wants = |s: &str| only.is_none_or(|o| o == s);
    ensure_base()?;
    let root = repo_root();
    let mut suites = Vec::new();

    if wants("lint") || only.is_none() {
        step("lint: cargo fmt --check and cargo clippy -D warnings");
        run::run(cargo(&root).args(["fmt", "--all", "--check"]))?;
        run::run(cargo(&root).args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))?;
        upgrade::check_released_scripts()?;
        check_pg_regress_files()?;
        check_unsafe_fns_documented()?;
    }
    if wants("unit") {
        suites.push(cargo_suite(
            "unit",
            cargo(&root).args(["test", "-p", "xtask", "-p", "steward-service"]),
        )?);
    }
    if wants("pg_test") {
        // The test cluster's directory must belong to postgres; pgrx creates data/ in it and
        // puts the socket beside it. Per process, so two test runs never share a cluster.
        let dir = std::path::PathBuf::from(format!("/tmp/steward-pgtest-{}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
        run::run(Command::new("chown").arg("postgres:postgres").arg(&dir))?;
        let pgdata = dir.join("data");
        setup::unlink_installed_library()?;
        suites.push(cargo_suite(
            "pg_test",
            cargo(&root.join("extension"))
                .args(["pgrx", "test", "pg15", "--runas", "postgres", "--pgdata"])
                .arg(&pgdata),
        )?);
        let _ = std::fs::remove_dir_all(&dir);
    }
    if wants("pg_regress") || wants("e2e") {
        install_extension(false)?;
        // Two clusters: one with steward preloaded (shared_preload_libraries, as the DBA guide
        // recommends: wake-ups by the per-database waker), and one that loads it on demand
        // (installed into a database the DBA cannot restart): pg_regress runs there, and the
        // end-to-end tests that show the difference use both.
        let conf = CONF;
        let pid = std::process::id();
        let mut preloaded = Cluster::create(
            &format!("test-{pid}"),
            None,
            &format!("{conf}\nshared_preload_libraries = 'steward'"),
        )?;
        let mut plain = Cluster::create(&format!("test-{pid}-plain"), None, conf)?;
        preloaded.start()?;
        plain.start()?;
        if wants("pg_regress") {
            step("suite pg_regress");
            let (ok, counts) = pg_regress(&plain, Path::new(setup::PG_BIN), false, args.get(1))?;
            suites.push(Suite {
                name: "pg_regress",
                counts,
                ok: ok && counts.failed == 0 && counts.passed > 0,
            });
        }
        if wants("e2e") {
            // pgbouncer, which the service's tests put between the service and the database.
            // nats-server, which the relay's tests publish to (started with -js).
            setup::ensure_packages(&["pgbouncer", "nats-server"])?;
            // schemathesis (PyPI), which fuzzes the service from its /openapi.json.
            let schemathesis = setup::ensure_schemathesis()?;
            // standardwebhooks (PyPI), which checks the relay's webhook signatures.
            let webhooks_python = setup::ensure_standardwebhooks()?;
            // The service's binary, for the tests that run it as users do (signals, logs).
            run::run(cargo(&root).args([
                "build",
                "-q",
                "-p",
                "steward-service",
                "--bin",
                "steward-service",
            ]))?;
            // `cargo xtask test e2e NAME` runs tests/tests/NAME.rs alone.
            let mut e2e = cargo(&root);
            e2e.env(
                "STEWARD_SERVICE_BIN",
                root.join("target/debug/steward-service"),
            )
            .env("STEWARD_SCHEMATHESIS", schemathesis)
            .env("STEWARD_PYTHON", webhooks_python)
            .env("STEWARD_NATS_SERVER", "/usr/sbin/nats-server")
            .env("STEWARD_PG_BIN", setup::PG_BIN);
            e2e.args(["test", "-p", "steward-tests"]);
            if let Some(name) = args.get(1).filter(|_| only == Some("e2e")) {
                e2e.args(["--test", name]);
            }
            suites.push(cargo_suite(
                "e2e",
                e2e.args(["--", "--test-threads=2"])
                    .env("STEWARD_TEST_PGHOST", preloaded.host())
                    .env("STEWARD_TEST_PGPORT", preloaded.port.to_string())
                    .env("STEWARD_TEST_PLAIN_PGHOST", plain.host())
                    .env("STEWARD_TEST_PLAIN_PGPORT", plain.port.to_string()),
            )?);
        }
        for mut cluster in [preloaded, plain] {
            cluster.stop();
            cluster.remove();
        }
    }

    if wants("upgrade") {
        step("suite upgrade");
        let counts = upgrade::suite(CONF)?;
        suites.push(Suite {
            name: "upgrade",
            counts,
            ok: counts.failed == 0 && counts.passed > 0,
        });
    }

    if suites.is_empty() && only != Some("lint") {
        bail!(
            "no suite is named {:?}; suites: lint, unit, pg_test, pg_regress, e2e, upgrade",
            only
        );
    }
    let mut total = Counts::default();
    println!("\n==> summary");
    for s in &suites {
        println!("{}", s.line());
        total.add(s.counts);
    }
    let failed_suites: Vec<&str> = suites.iter().filter(|s| !s.ok).map(|s| s.name).collect();
    println!("steward: {} passed, {} failed", total.passed, total.failed);
    if !failed_suites.is_empty() {
        bail!("failing suites: {}", failed_suites.join(", "));
    }
    Ok(())
}

/// Every pg_regress file is in the schedule, and every one but the shared fixture (setup.sql)
/// runs in a database of its own copied from that fixture, so that it depends on nothing another
/// file did and runs alone.
fn check_pg_regress_files() -> Result<()> {
    step("pg_regress files: each in the schedule, each on its own copy of the fixture");
    let root = repo_root().join("pg_regress");
    let schedule = std::fs::read_to_string(root.join("schedule"))?;
    let listed: Vec<&str> = schedule
        .lines()
        .filter_map(|l| l.strip_prefix("test:"))
        .flat_map(str::split_whitespace)
        .collect();
    if listed.first() != Some(&"setup") {
        bail!("pg_regress/schedule must run setup first");
    }
    for entry in std::fs::read_dir(root.join("sql"))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        let Some(name) = name.strip_suffix(".sql") else {
            continue;
        };
        if !listed.contains(&name) {
            bail!("pg_regress/sql/{name}.sql is not in pg_regress/schedule");
        }
    }
    for name in listed.iter().filter(|n| **n != "setup") {
        let text = std::fs::read_to_string(root.join("sql").join(format!("{name}.sql")))?;
        let preamble = format!(
            "\\c postgres\nCREATE DATABASE regress_{name} TEMPLATE steward_regress;\n\\c regress_{name}\n"
        );
        if !text.contains(&preamble) || text.matches("steward_regress").count() != 1 {
            bail!(
                "pg_regress/sql/{name}.sql does not run on its own copy of the fixture: begin \
                 it with\n{preamble}and name steward_regress nowhere else"
            );
        }
    }
    println!("  ok");
    Ok(())
}

/// Every `unsafe fn` of the extension says what its caller must uphold, in a `# Safety` section
/// of its docs (clippy's `missing_safety_doc` sees public functions only; every `unsafe` block
/// is clippy's `undocumented_unsafe_blocks`).
fn check_unsafe_fns_documented() -> Result<()> {
    step("every unsafe fn of the extension has a # Safety section");
    let mut missing = Vec::new();
    let mut dirs = vec![repo_root().join("extension/src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path)?;
            let lines: Vec<&str> = text.lines().collect();
            for (i, line) in lines.iter().enumerate() {
                let t = line.trim_start();
                let t = t
                    .strip_prefix("pub(crate) ")
                    .or_else(|| t.strip_prefix("pub "))
                    .unwrap_or(t);
                if !(t.starts_with("unsafe fn ") || t.starts_with("unsafe extern \"C-unwind\" fn "))
                {
                    continue;
                }
                let documented = lines[..i]
                    .iter()
                    .rev()
                    .map(|l| l.trim_start())
                    .take_while(|l| l.starts_with("///") || l.starts_with("#["))
                    .any(|l| l.starts_with("/// # Safety"));
                if !documented {
                    missing.push(format!("{}:{}", path.display(), i + 1));
                }
            }
        }
    }
    if !missing.is_empty() {
        bail!(
            "unsafe fns without a # Safety section:\n  {}",
            missing.join("\n  ")
        );
    }
    println!("  ok");
    Ok(())
}

/// The test clusters' settings. Two-phase commit is on so that the tests can show steward works
/// with it; commit timestamps are kept so that the commit-order test can compare against them.
const CONF: &str = "fsync = off\nsynchronous_commit = off\nmax_prepared_transactions = 16\n\
                    track_commit_timestamp = on";

/// Runs the pg_regress suite against `cluster` (its client programs in `bindir`): the whole
/// schedule, or the shared fixture and the file `only`. With `existing`, in the database
/// steward_regress as it is (the upgrade suite's upgraded one); else pg_regress creates it.
pub fn pg_regress(
    cluster: &Cluster,
    bindir: &Path,
    existing: bool,
    only: Option<&String>,
) -> Result<(bool, Counts)> {
    let root = repo_root();
    let outdir = root.join("target/pg_regress");
    let _ = std::fs::remove_dir_all(&outdir);
    std::fs::create_dir_all(&outdir)?;
    let mut cmd = Command::new(setup::pg_regress()?);
    cmd.arg(format!("--bindir={}", bindir.display()))
        .arg(format!("--host={}", cluster.host()))
        .arg(format!("--port={}", cluster.port))
        .arg("--user=postgres")
        .arg("--dbname=steward_regress")
        .arg(format!("--inputdir={}", root.join("pg_regress").display()))
        .arg(format!("--outputdir={}", outdir.display()));
    if existing {
        cmd.arg("--use-existing");
    }
    match only {
        Some(name) => {
            if !root
                .join("pg_regress/sql")
                .join(format!("{name}.sql"))
                .exists()
            {
                bail!("pg_regress/sql/{name}.sql does not exist");
            }
            cmd.arg("setup");
            if name != "setup" {
                cmd.arg(name);
            }
        }
        None => {
            cmd.arg(format!(
                "--schedule={}",
                root.join("pg_regress/schedule").display()
            ));
        }
    }
    let (ok, out) = tee(&mut cmd)?;
    let counts = pg_regress_counts(&out);
    if !ok {
        let diffs = std::fs::read_to_string(outdir.join("regression.diffs")).unwrap_or_default();
        println!("--- regression.diffs (first 200 lines) ---");
        for l in diffs.lines().take(200) {
            println!("{l}");
        }
    }
    Ok((ok, counts))
}
