//! Releases and upgrades.
//!
//! - [`check_released_scripts`] (part of `cargo xtask test lint`): an upgrade script that is in a
//!   release is never edited, and every release has a chain of scripts up to this version.
//! - [`suite`] (`cargo xtask test upgrade`): each release listed in `sql/releases.txt` is built
//!   from the repository's own history, installed into a private copy of PostgreSQL, filled with
//!   data through its own API, upgraded in place by `ALTER EXTENSION steward UPDATE`, checked
//!   (data intact, `verify_audit` ok, consumers resume where they were), run through the whole
//!   pg_regress suite, and compared with a fresh install of this version: no difference allowed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use postgres::{Client, GenericClient, NoTls};

use crate::cluster::Cluster;
use crate::run::{output, run, step, Counts};
use crate::setup::{self, cargo, repo_root, PG_CONFIG};

/// A release: its version and the commit it was cut from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub version: String,
    pub commit: String,
}

/// The releases `sql/releases.txt` lists, oldest first.
pub fn releases() -> Result<Vec<Release>> {
    let path = repo_root().join("sql/releases.txt");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    parse_releases(&text)
}

fn parse_releases(text: &str) -> Result<Vec<Release>> {
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            // The whole hash: a short one could be shadowed by a tag or branch of that name.
            (Some(v), Some(c), None)
                if c.len() == 40 && c.chars().all(|x| x.is_ascii_hexdigit()) =>
            {
                out.push(Release {
                    version: v.to_string(),
                    commit: c.to_ascii_lowercase(),
                })
            }
            _ => bail!(
                "sql/releases.txt: {line:?} is not \"VERSION COMMIT\" with the commit's whole \
                 40-digit hash"
            ),
        }
    }
    Ok(out)
}

/// The version being built (the workspace's).
pub fn current_version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// `(from, to)` of an upgrade script's file name, `steward--FROM--TO.sql`.
fn script_versions(name: &str) -> Option<(String, String)> {
    let rest = name.strip_prefix("steward--")?.strip_suffix(".sql")?;
    let (from, to) = rest.split_once("--")?;
    (!from.is_empty() && !to.is_empty() && !to.contains("--"))
        .then(|| (from.to_string(), to.to_string()))
}

/// The scripts, in order, that take `from` to `to` (shortest chain), if any.
fn upgrade_path(scripts: &[(String, String)], from: &str, to: &str) -> Option<Vec<String>> {
    let mut paths: BTreeMap<String, Vec<String>> = BTreeMap::new();
    paths.insert(from.to_string(), Vec::new());
    let mut frontier = vec![from.to_string()];
    while !frontier.is_empty() {
        let mut next = Vec::new();
        for v in frontier {
            if v == to {
                return paths.get(&v).cloned();
            }
            for (a, b) in scripts.iter().filter(|(a, _)| *a == v) {
                if !paths.contains_key(b) {
                    let mut p = paths[&v].clone();
                    p.push(format!("steward--{a}--{b}.sql"));
                    paths.insert(b.clone(), p);
                    next.push(b.clone());
                }
            }
        }
        frontier = next;
    }
    None
}

/// The upgrade scripts in sql/.
fn scripts_here() -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(repo_root().join("sql"))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if let Some(v) = script_versions(&name) {
            out.push(v);
        }
    }
    out.sort();
    Ok(out)
}

fn git(args: &[&str]) -> Result<String> {
    output(Command::new("git").current_dir(repo_root()).args(args))
}

/// Refuses a change to any upgrade script that is part of a release, and a release that this
/// version cannot be reached from.
pub fn check_released_scripts() -> Result<()> {
    step("released upgrade scripts are unchanged, and every release upgrades to this one");
    let scripts = scripts_here()?;
    // pgrx installs the scripts it finds in extension/sql: that must be sql/ itself.
    let link = std::fs::read_link(repo_root().join("extension/sql"))
        .context("extension/sql must be a link to ../sql")?;
    if link != Path::new("../sql") {
        bail!("extension/sql links to {}, not ../sql", link.display());
    }
    for r in releases()? {
        let resolved = git(&[
            "rev-parse",
            "--verify",
            "--quiet",
            "--end-of-options",
            &format!("{}^{{commit}}", r.commit),
        ])
        .with_context(|| {
            format!(
                "release {} names commit {}, which this clone does not have (a shallow clone?)",
                r.version, r.commit
            )
        })?;
        if resolved.trim() != r.commit {
            bail!(
                "release {}: {} resolves to {}",
                r.version,
                r.commit,
                resolved.trim()
            );
        }
        git(&["merge-base", "--is-ancestor", &r.commit, "HEAD"]).with_context(|| {
            format!(
                "release {}'s commit {} is not in this branch's history",
                r.version, r.commit
            )
        })?;
        let listed = git(&["ls-tree", "--name-only", &r.commit, "sql/"])?;
        for path in listed.lines() {
            let name = path.trim_start_matches("sql/");
            if script_versions(name).is_none() {
                continue;
            }
            let released = git(&["cat-file", "blob", &format!("{}:{path}", r.commit)])?;
            let here = std::fs::read_to_string(repo_root().join(path)).with_context(|| {
                format!(
                    "{path} was released in {} and must stay in the repository",
                    r.version
                )
            })?;
            if here != released {
                bail!(
                    "{path} was released in {} ({}) and has been edited: a released upgrade \
                     script is never changed. Put the change into the next release's script.",
                    r.version,
                    r.commit
                );
            }
        }
        if r.version != current_version()
            && upgrade_path(&scripts, &r.version, current_version()).is_none()
        {
            bail!(
                "no chain of upgrade scripts in sql/ takes release {} to {}: add sql/steward--{}--{}.sql",
                r.version,
                current_version(),
                r.version,
                current_version()
            );
        }
    }
    println!("  ok");
    Ok(())
}

/// Where Debian's PostgreSQL keeps binaries, libraries and shared files.
struct Layout {
    bin: PathBuf,
    lib: PathBuf,
    share: PathBuf,
}

fn debian_layout() -> Result<Layout> {
    let q = |flag: &str| -> Result<PathBuf> {
        Ok(PathBuf::from(
            output(Command::new(PG_CONFIG).arg(flag))?.trim(),
        ))
    };
    Ok(Layout {
        bin: q("--bindir")?,
        lib: q("--pkglibdir")?,
        share: q("--sharedir")?,
    })
}

/// A private PostgreSQL installation: Debian's binaries copied under `root` at the same relative
/// paths (PostgreSQL finds its libraries and shared files relative to where its binary is), every
/// library and shared file linked, except steward's own, which are installed per release.
struct Tree {
    root: PathBuf,
    at: Layout,
    debian: Layout,
}

impl Tree {
    fn create(root: &Path) -> Result<Tree> {
        let debian = debian_layout()?;
        let under = |p: &Path| root.join(p.strip_prefix("/").unwrap_or(p));
        let at = Layout {
            bin: under(&debian.bin),
            lib: under(&debian.lib),
            share: under(&debian.share),
        };
        if root.exists() {
            std::fs::remove_dir_all(root)?;
        }
        for d in [&at.bin, &at.lib, &at.share.join("extension")] {
            std::fs::create_dir_all(d)?;
        }
        for entry in std::fs::read_dir(&debian.bin)? {
            let entry = entry?;
            std::fs::copy(entry.path(), at.bin.join(entry.file_name()))?;
        }
        let link_all = |from: &Path, to: &Path, skip: &dyn Fn(&str) -> bool| -> Result<()> {
            for entry in std::fs::read_dir(from)? {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if !skip(&name) {
                    std::os::unix::fs::symlink(entry.path(), to.join(&name))?;
                }
            }
            Ok(())
        };
        link_all(&debian.lib, &at.lib, &|n| n.starts_with("steward"))?;
        link_all(&debian.share, &at.share, &|n| n == "extension")?;
        link_all(
            &debian.share.join("extension"),
            &at.share.join("extension"),
            &|n| n.starts_with("steward"),
        )?;
        run(Command::new("chmod").args(["-R", "a+rX"]).arg(root))?;
        Ok(Tree {
            root: root.to_path_buf(),
            at,
            debian,
        })
    }

    /// Removes whichever steward is installed; then copies `library` and `files`.
    fn install(&self, library: &Path, files: &[PathBuf]) -> Result<()> {
        let ext = self.at.share.join("extension");
        for entry in std::fs::read_dir(&ext)? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with("steward") {
                std::fs::remove_file(entry.path())?;
            }
        }
        let so = self.at.lib.join("steward.so");
        if so.exists() {
            std::fs::remove_file(&so)?;
        }
        std::fs::copy(library, &so).with_context(|| format!("copying {}", library.display()))?;
        for f in files {
            let name = f.file_name().context("a file name")?;
            std::fs::copy(f, ext.join(name)).with_context(|| format!("copying {}", f.display()))?;
        }
        Ok(())
    }

    /// A release's package, as `cargo pgrx package` laid it out.
    fn install_package(&self, pkg: &Path) -> Result<()> {
        let under = |p: &Path| pkg.join(p.strip_prefix("/").unwrap_or(p));
        let ext = under(&self.debian.share).join("extension");
        let files = steward_files(&ext)?;
        self.install(&under(&self.debian.lib).join("steward.so"), &files)
    }

    /// This build (installed into Debian's PostgreSQL by `cargo pgrx install`) and the
    /// repository's upgrade scripts.
    fn install_current(&self) -> Result<()> {
        let ext = self.debian.share.join("extension");
        let mut files = vec![
            ext.join("steward.control"),
            ext.join(format!("steward--{}.sql", current_version())),
        ];
        for (from, to) in scripts_here()? {
            files.push(repo_root().join(format!("sql/steward--{from}--{to}.sql")));
        }
        self.install(&self.debian.lib.join("steward.so"), &files)
    }
}

impl Drop for Tree {
    /// The private installation goes with the suite, whether it passed or not.
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn steward_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with("steward") {
            files.push(entry.path());
        }
    }
    Ok(files)
}

/// Builds release `r` from the repository's history (once: kept under target/releases/), and
/// returns its package directory.
fn build_release(r: &Release) -> Result<PathBuf> {
    let root = repo_root();
    let dir = root.join("target/releases").join(&r.version);
    let pkg = dir.join("pkg");
    let stamp = dir.join("commit");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(r.commit.as_str()) && pkg.exists() {
        return Ok(pkg);
    }
    step(&format!(
        "building release {} from commit {} (once; kept in {})",
        r.version,
        r.commit,
        dir.display()
    ));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    let src = dir.join("src");
    std::fs::create_dir_all(&src)?;
    run(Command::new("sh").current_dir(&root).args([
        "-c",
        &format!("git archive {} | tar -x -C '{}'", r.commit, src.display()),
    ]))?;
    run(cargo(&src.join("extension"))
        .args(["pgrx", "package", "--debug", "--pg-config", PG_CONFIG])
        .arg("--out-dir")
        .arg(&pkg)
        // Its own target directory: the release's crate would overwrite this build's library.
        .env("CARGO_TARGET_DIR", root.join("target/releases/target")))?;
    std::fs::write(&stamp, &r.commit)?;
    Ok(pkg)
}

/// Counts checks, printing each.
#[derive(Default)]
struct Checks {
    counts: Counts,
}

impl Checks {
    fn check(&mut self, name: &str, result: Result<()>) {
        match result {
            Ok(()) => {
                println!("  ok      {name}");
                self.counts.passed += 1;
            }
            Err(e) => {
                println!("  FAILED  {name}: {e:#}");
                self.counts.failed += 1;
            }
        }
    }
}

fn connect(cluster: &Cluster, db: &str, user: &str) -> Result<Client> {
    Client::connect(&cluster.conninfo(db, user), NoTls)
        .with_context(|| format!("connecting to {db} as {user}"))
}

/// Each row's columns as text, joined by `|` (NULL: empty).
fn rows(client: &mut impl GenericClient, sql: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for m in client
        .simple_query(sql)
        .with_context(|| format!("running {sql}"))?
    {
        if let postgres::SimpleQueryMessage::Row(row) = m {
            let cols: Vec<&str> = (0..row.len())
                .map(|i| row.get(i).unwrap_or_default())
                .collect();
            out.push(cols.join("|"));
        }
    }
    Ok(out)
}

/// What the suite's data looks like, read in a way every release since 0.1.0 answers alike.
const SNAPSHOT: &[(&str, &str)] = &[
    (
        "tenants",
        "SELECT t FROM steward.tenants t ORDER BY tenant_id",
    ),
    (
        "tenant grants",
        "SELECT coalesce((to_jsonb(g)->>'role_oid')::oid::regrole::text, to_jsonb(g)->>'role'),
                g.tenant_id, g.granted_at
           FROM steward.tenant_grants g ORDER BY 1, 2",
    ),
    (
        "trusted roles",
        "SELECT coalesce((to_jsonb(t)->>'role_oid')::oid::regrole::text, to_jsonb(t)->>'role')
           FROM steward.trusted_roles t ORDER BY 1",
    ),
    (
        "governed tables",
        "SELECT rel::text, tenant_column, versioned, version_required, audited, events,
                soft_delete, governed_at
           FROM steward.governed ORDER BY 1",
    ),
    ("orders", "SELECT t FROM shop.orders t ORDER BY id"),
    ("customers", "SELECT t FROM shop.customers t ORDER BY email"),
    ("notes", "SELECT t FROM shop.notes t ORDER BY id"),
    (
        "change log",
        "SELECT c FROM steward.change_log c ORDER BY id",
    ),
    (
        "seals",
        "SELECT record_id, tenant_id, seq, payload_digest, payload_salt, hash, sealed_xmin,
                sealed_at, row_hash, prunable
           FROM steward.audit_seals ORDER BY record_id",
    ),
    (
        "tombstones",
        "SELECT t FROM steward.outbox_tombstones t ORDER BY record_id",
    ),
    (
        "consumers",
        "SELECT name, tenant_id, created_at, created_by FROM steward.consumers ORDER BY 1",
    ),
    (
        "event types",
        "SELECT t FROM steward.event_types t ORDER BY 1",
    ),
];

fn snapshot(client: &mut Client) -> Result<BTreeMap<&'static str, Vec<String>>> {
    let mut out = BTreeMap::new();
    for (name, sql) in SNAPSHOT {
        out.insert(*name, rows(client, sql)?);
    }
    Ok(out)
}

/// A snapshot row whose role is a bare OID: the role was dropped.
fn names_a_dropped_role(row: &str) -> bool {
    row.split('|')
        .next()
        .is_some_and(|r| r.parse::<u32>().is_ok())
}

/// The suite's consumers: (name, the role that reads it).
const CONSUMERS: &[(&str, &str)] = &[("relay", "postgres"), ("acme-feed", "up_acme")];

/// Every event `consumer` has yet to be given, without moving it: the consumer is drained in one
/// transaction, which is rolled back (a release's poll may give only one batch at a time).
fn pending(cluster: &Cluster, db: &str, consumer: &str, role: &str) -> Result<Vec<String>> {
    let mut c = connect(cluster, db, role)?;
    let mut tx = c.transaction()?;
    let all = drain_on(&mut tx, consumer)?;
    tx.rollback()?;
    Ok(all)
}

/// Polls and acks until nothing is left; returns every event id it was given.
fn drain(cluster: &Cluster, db: &str, consumer: &str, role: &str) -> Result<Vec<String>> {
    drain_on(&mut connect(cluster, db, role)?, consumer)
}

/// Polls `consumer` and acks the last event of each poll, on `c`, until nothing is left; the
/// event ids it was given, sorted.
fn drain_on(c: &mut impl GenericClient, consumer: &str) -> Result<Vec<String>> {
    let mut all = Vec::new();
    for _ in 0..1000 {
        let batch = rows(
            c,
            &format!("SELECT id FROM steward.poll('{consumer}', 1000)"),
        )?;
        let Some(last) = batch.last().cloned() else {
            all.sort();
            return Ok(all);
        };
        c.batch_execute(&format!("SELECT steward.ack('{consumer}', {last})"))?;
        all.extend(batch);
    }
    bail!("{consumer} was still being given events after 1000 polls")
}

/// That `result` is an error with SQLSTATE `code` whose message holds each of `words`.
fn refused(result: Result<(), postgres::Error>, code: &str, words: &[&str]) -> Result<()> {
    match result {
        Ok(()) => bail!("it went through, where {code} was expected"),
        Err(e) => {
            let got = e.code().map(|c| c.code().to_string()).unwrap_or_default();
            let msg = e.as_db_error().map(|d| d.message().to_string());
            let msg = msg.unwrap_or_else(|| e.to_string());
            if got != code || !words.iter().all(|w| msg.contains(w)) {
                bail!("{got}: {msg} (expected {code} naming {words:?})");
            }
            Ok(())
        }
    }
}

/// `db`'s schema, from `pg_dump --binary-upgrade --schema-only` (which, unlike a plain dump,
/// shows an extension's own objects), normalized, by object.
fn schema(tree: &Tree, cluster: &Cluster, db: &str) -> Result<BTreeMap<String, String>> {
    let dump = output(
        Command::new(tree.at.bin.join("pg_dump"))
            .args(["--binary-upgrade", "--schema-only", "-U", "postgres"])
            .args(["-h", &cluster.host(), "-p", &cluster.port.to_string(), db]),
    )?;
    let mut objects = normalize_dump(&dump);
    // The dump names the extension's configuration tables by OID: by name here.
    let mut c = connect(cluster, db, "postgres")?;
    let config = rows(
        &mut c,
        "SELECT u.c::regclass::text || ' ' || u.cond
           FROM pg_extension e, unnest(e.extconfig, e.extcondition) AS u(c, cond)
          WHERE e.extname = 'steward' ORDER BY 1",
    )?;
    objects.insert("extension configuration tables".into(), config.join("\n"));
    Ok(objects)
}

/// Splits a dump into its objects (by each entry's `-- Name: ...` header) and drops what differs
/// between two databases of the same schema: OIDs, relfrozenxid, the restrict key, and the fast
/// default kept for rows that existed when a column was added (storage, not schema).
pub fn normalize_dump(dump: &str) -> BTreeMap<String, String> {
    let mut objects: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut parts = dump.split("\n--\n-- ");
    parts.next(); // the preamble
    for part in parts {
        let Some((head, body)) = part.split_once("\n--\n") else {
            continue;
        };
        // A sequence's value is data (the change log's ids), not schema.
        if head.contains("Type: SEQUENCE SET;") {
            continue;
        }
        let mut kept = Vec::new();
        let mut in_statement = false;
        for line in body.lines() {
            if line.starts_with("UPDATE pg_catalog.pg_class")
                || line.starts_with("UPDATE pg_catalog.pg_attribute")
            {
                in_statement = true;
            }
            if in_statement {
                in_statement = !line.trim_end().ends_with(';');
                continue;
            }
            let noise = line.contains("binary_upgrade_set_next_")
                || line.contains("binary_upgrade_set_missing_value")
                || line.starts_with("-- set missing value")
                || line.starts_with("-- For binary upgrade")
                || line.starts_with("\\restrict")
                || line.starts_with("\\unrestrict")
                || line.trim().is_empty();
            if noise {
                continue;
            }
            if line.contains("binary_upgrade_create_empty_extension(") {
                kept.push("SELECT pg_catalog.binary_upgrade_create_empty_extension(...);".into());
                continue;
            }
            kept.push(line.to_string());
        }
        objects
            .entry(head.trim().to_string())
            .or_default()
            .push(kept.join("\n"));
    }
    objects
        .into_iter()
        .map(|(k, mut v)| {
            v.sort();
            (k, v.join("\n----\n"))
        })
        .collect()
}

/// The objects whose definitions differ, with both definitions.
fn schema_differences(
    upgraded: &BTreeMap<String, String>,
    fresh: &BTreeMap<String, String>,
) -> Vec<String> {
    differences(
        upgraded,
        fresh,
        ("the upgraded database", "the fresh install"),
    )
}

/// The objects whose definitions differ between `a` and `b` (named by `names`).
fn differences(
    a_objects: &BTreeMap<String, String>,
    b_objects: &BTreeMap<String, String>,
    labels: (&str, &str),
) -> Vec<String> {
    let (upgraded, fresh) = (a_objects, b_objects);
    let names: BTreeSet<&String> = upgraded.keys().chain(fresh.keys()).collect();
    let mut out = Vec::new();
    for name in names {
        match (upgraded.get(name), fresh.get(name)) {
            (Some(a), Some(b)) if a == b => {}
            (Some(a), Some(b)) => out.push(format!(
                "{name}\n    upgraded: {}\n    fresh:    {}",
                a.replace('\n', "\n              "),
                b.replace('\n', "\n              ")
            )),
            (Some(_), None) => out.push(format!("{name}: only in {}", labels.0)),
            (None, _) => out.push(format!("{name}: only in {}", labels.1)),
        }
    }
    out
}

/// The first difference between two snapshots, by what was read.
fn same_data(
    before: &BTreeMap<&'static str, Vec<String>>,
    after: &BTreeMap<&'static str, Vec<String>>,
) -> Result<()> {
    for (what, rows) in before {
        let now = after.get(what).cloned().unwrap_or_default();
        if *rows != now {
            let gone: Vec<&String> = rows.iter().filter(|r| !now.contains(r)).collect();
            let new: Vec<&String> = now.iter().filter(|r| !rows.contains(r)).collect();
            bail!("{what} changed:\n  only before: {gone:?}\n  only after:  {new:?}");
        }
    }
    Ok(())
}

fn same<T: PartialEq + std::fmt::Debug>(what: &str, before: &T, after: &T) -> Result<()> {
    if before != after {
        bail!("{what} changed:\n  before: {before:?}\n  after:  {after:?}");
    }
    Ok(())
}

fn psql_file(cluster: &Cluster, db: &str, file: &str) -> Result<()> {
    run(cluster
        .psql(db)
        .arg("-f")
        .arg(repo_root().join("tests/upgrade").join(file)))
}

fn psql_command(cluster: &Cluster, db: &str, sql: &str) -> Result<()> {
    run(cluster.psql(db).args(["-c", sql]))
}

fn extversion(client: &mut Client) -> Result<String> {
    Ok(rows(
        client,
        "SELECT extversion FROM pg_extension WHERE extname = 'steward'",
    )?
    .concat())
}

/// The upgrade suite. Returns its counts (one per check, plus pg_regress's tests).
pub fn suite(conf: &str) -> Result<Counts> {
    setup::install_extension(false)?;
    let pid = std::process::id();
    let tree_root = PathBuf::from(format!("/tmp/steward-pg-{pid}"));
    let tree = Tree::create(&tree_root)?;
    let mut checks = Checks::default();
    for r in releases()? {
        if r.version == current_version() {
            continue;
        }
        let fill = format!("fill-{}.sql", r.version);
        if !repo_root().join("tests/upgrade").join(&fill).exists() {
            bail!("tests/upgrade/{fill} is missing: each release has a fill of its own");
        }
        let pkg = build_release(&r)?;
        step(&format!(
            "upgrade from {}: install it, fill it through its own API",
            r.version
        ));
        tree.install_package(&pkg)?;
        let mut cluster =
            Cluster::create_with(&format!("upgrade-{pid}"), None, conf, &tree.at.bin)?;
        cluster.start()?;
        psql_file(&cluster, "postgres", "roles.sql")?;
        for db in ["upgraded", "steward_regress"] {
            psql_command(&cluster, "postgres", &format!("CREATE DATABASE {db}"))?;
            psql_command(
                &cluster,
                db,
                &format!("CREATE EXTENSION steward VERSION '{}'", r.version),
            )?;
        }
        psql_file(&cluster, "upgraded", "tables.sql")?;
        psql_file(&cluster, "upgraded", &fill)?;
        let mut c = connect(&cluster, "upgraded", "postgres")?;
        let before = snapshot(&mut c)?;
        let verified_before = rows(&mut c, "SELECT v FROM steward.verify_audit() v ORDER BY 1")?;
        let mut pending_before = BTreeMap::new();
        for (consumer, role) in CONSUMERS {
            pending_before.insert(*consumer, pending(&cluster, "upgraded", consumer, role)?);
        }
        drop(c);

        step(&format!(
            "upgrade from {}: install {} (the DBA's new files), restart, ALTER EXTENSION steward UPDATE",
            r.version,
            current_version()
        ));
        cluster.stop();
        tree.install_current()?;
        cluster.start()?;
        let mut c = connect(&cluster, "upgraded", "postgres")?;

        // Between the restart and the update, a governed table's triggers still carry the old
        // release's arguments: when their layout is not this release's, the new library refuses
        // to guess what they mean.
        let old_layout = rows(
            &mut c,
            "SELECT count(*) FROM pg_trigger
              WHERE tgname = 'steward_row_guard'
                AND position('steward:2\\000'::bytea IN tgargs) <> 1",
        )?
        .concat()
            != "0";
        if old_layout {
            checks.check(
                "before the update, a write through an earlier layout's trigger is refused with ST400",
                // As a superuser (row-level security does not apply; the triggers do).
                refused(
                    c.batch_execute("DELETE FROM shop.notes WHERE id = 1"),
                    "ST400",
                    &["earlier release"],
                ),
            );
        }

        // What the new release cannot carry over (tests/upgrade/remedy-V.sql names it): refused,
        // all named at once, nothing changed; then the DBA's remedy, and the update.
        let remedy = format!("remedy-{}.sql", r.version);
        let remedy_text =
            std::fs::read_to_string(repo_root().join("tests/upgrade").join(&remedy)).ok();
        let refused_tables: Vec<String> = remedy_text
            .as_deref()
            .and_then(|t| t.lines().find_map(|l| l.strip_prefix("-- refused:")))
            .map(|l| l.split_whitespace().map(String::from).collect())
            .unwrap_or_default();
        if !refused_tables.is_empty() {
            let words: Vec<&str> = refused_tables.iter().map(String::as_str).collect();
            checks.check(
                "tables the new release cannot govern: the update is refused with ST400, naming each",
                refused(
                    c.batch_execute("ALTER EXTENSION steward UPDATE"),
                    "ST400",
                    &words,
                ),
            );
            checks.check(
                "after the refusal, the database is as it was",
                (|| {
                    same("version", &r.version, &extversion(&mut c)?)?;
                    same_data(&before, &snapshot(&mut c)?)
                })(),
            );
            psql_file(&cluster, "upgraded", &remedy)?;
        }
        // The update's objects get steward's privileges, whatever the database's defaults say:
        // here they would give the service every new function and table, and take EXECUTE on
        // new functions from PUBLIC (so from every tenant role).
        psql_file(&cluster, "upgraded", "default_privileges.sql")?;
        let still_governed = rows(&mut c, "SELECT rel::text FROM steward.governed")?;
        let dangling_before: Vec<String> = before["tenant grants"]
            .iter()
            .chain(before["trusted roles"].iter())
            .filter(|r| names_a_dropped_role(r))
            .cloned()
            .collect();
        let before: BTreeMap<_, _> = before
            .into_iter()
            .map(|(k, mut v)| {
                // A grant of a dropped role names it by OID: the upgrade removes it (checked
                // below).
                if k == "tenant grants" || k == "trusted roles" {
                    v.retain(|row| !names_a_dropped_role(row));
                }
                if k == "governed tables" {
                    v.retain(|row| {
                        still_governed
                            .iter()
                            .any(|t| row.starts_with(&format!("{t}|")))
                    });
                }
                (k, v)
            })
            .collect();

        for db in ["upgraded", "steward_regress"] {
            let mut d = connect(&cluster, db, "postgres")?;
            checks.check(
                &format!(
                    "{db}: ALTER EXTENSION steward UPDATE reaches {}",
                    current_version()
                ),
                (|| {
                    d.batch_execute("ALTER EXTENSION steward UPDATE")?;
                    same(
                        "version",
                        &current_version().to_string(),
                        &extversion(&mut d)?,
                    )
                })(),
            );
        }
        checks.check(
            "the fill left pruned events (seals whose record is gone) and sealed ones",
            (|| {
                if before["tombstones"].is_empty() || before["seals"].is_empty() {
                    bail!("no tombstone or no seal: the fill shows less than it should");
                }
                Ok(())
            })(),
        );
        checks.check(
            "the old data is intact",
            (|| same_data(&before, &snapshot(&mut c)?))(),
        );
        checks.check(
            "verify_audit() is ok, as it was before",
            (|| {
                let after = rows(&mut c, "SELECT v FROM steward.verify_audit() v ORDER BY 1")?;
                same("verify_audit()", &verified_before, &after)?;
                let bad = rows(
                    &mut c,
                    "SELECT tenant_id FROM steward.verify_audit() WHERE NOT ok",
                )?;
                if after.is_empty() || !bad.is_empty() {
                    bail!("verify_audit(): {after:?}");
                }
                Ok(())
            })(),
        );
        if !dangling_before.is_empty() {
            checks.check(
                "grants and trust of roles dropped under the old release are gone",
                (|| {
                    let mut after = rows(&mut c, SNAPSHOT[1].1)?;
                    after.extend(rows(&mut c, SNAPSHOT[2].1)?);
                    let left: Vec<&String> =
                        after.iter().filter(|r| names_a_dropped_role(r)).collect();
                    if !left.is_empty() {
                        bail!("{dangling_before:?} before; after: {left:?}");
                    }
                    Ok(())
                })(),
            );
        }

        checks.check(
            "the update's functions and tables follow steward's privileges, not the defaults",
            (|| {
                let mut s = connect(&cluster, "upgraded", "up_service")?;
                for q in [
                    "SELECT steward._internal_governing_begin(0)",
                    "INSERT INTO steward.rel_aliases VALUES (1, 1, NULL)",
                    "SELECT steward._trigger_args(0)",
                ] {
                    refused(s.batch_execute(q), "42501", &[])
                        .with_context(|| format!("{q} as up_service"))?;
                }
                // A tenant role still reads its rows: the policies' functions are PUBLIC's.
                let mut t = connect(&cluster, "upgraded", "up_acme")?;
                let n = rows(&mut t, "SELECT count(*) FROM shop.orders")?.concat();
                if n == "0" {
                    bail!("up_acme sees no order");
                }
                Ok(())
            })(),
        );

        // The schema, against a fresh install of this version with the same tables, in a
        // database with the same default privileges.
        psql_command(&cluster, "postgres", "CREATE DATABASE fresh")?;
        psql_command(&cluster, "postgres", "CREATE DATABASE fresh_bare")?;
        psql_file(&cluster, "fresh", "default_privileges.sql")?;
        for db in ["fresh", "fresh_bare"] {
            psql_command(&cluster, db, "CREATE EXTENSION steward")?;
        }
        psql_file(&cluster, "fresh", "tables.sql")?;
        for (upgraded, fresh) in [("upgraded", "fresh"), ("steward_regress", "fresh_bare")] {
            checks.check(
                &format!("{upgraded}'s schema equals a fresh install's ({fresh})"),
                (|| {
                    let diff = schema_differences(
                        &schema(&tree, &cluster, upgraded)?,
                        &schema(&tree, &cluster, fresh)?,
                    );
                    if !diff.is_empty() {
                        bail!("{} objects differ:\n{}", diff.len(), diff.join("\n"));
                    }
                    Ok(())
                })(),
            );
        }

        for (consumer, role) in CONSUMERS {
            checks.check(
                &format!("consumer {consumer} resumes where it was"),
                (|| {
                    let got = drain(&cluster, "upgraded", consumer, role)?;
                    same("events still to deliver", &pending_before[consumer], &got)?;
                    if got.is_empty() {
                        bail!("the fill left {consumer} nothing to deliver: it shows nothing");
                    }
                    Ok(())
                })(),
            );
        }
        checks.check(
            "after the upgrade, a write reaches both consumers once",
            (|| {
                let mut s = connect(&cluster, "upgraded", "up_service")?;
                s.batch_execute(
                    "BEGIN;
                     SELECT steward.enter_tenant('00000000-0000-4000-8000-0000000000a1', 'after');
                     INSERT INTO shop.notes (id, body) VALUES (100, 'after the upgrade');
                     COMMIT;",
                )?;
                for (consumer, role) in CONSUMERS {
                    let got = drain(&cluster, "upgraded", consumer, role)?;
                    if got.len() != 1 {
                        bail!("{consumer} was given {got:?}");
                    }
                }
                Ok(())
            })(),
        );
        drop(c);

        step(&format!(
            "upgrade from {}: the whole pg_regress suite, in the upgraded database",
            r.version
        ));
        let (ok, counts) = crate::pg_regress(&cluster, &tree.at.bin, true, None)?;
        checks.counts.add(counts);
        if !ok && counts.failed == 0 {
            checks.counts.failed += 1;
        }
        cluster.stop();
        cluster.remove();
    }
    drop(tree);
    Ok(checks.counts)
}

/// A function of steward's, as its database's catalogs describe it.
struct Function {
    result: String,
    arguments: String,
    definition: String,
    acl: String,
}

fn functions(cluster: &Cluster, db: &str) -> Result<BTreeMap<String, Function>> {
    let mut c = connect(cluster, db, "postgres")?;
    let mut out = BTreeMap::new();
    for m in c.simple_query(
        "SELECT p.oid::regprocedure::text, pg_get_function_result(p.oid),
                pg_get_function_arguments(p.oid), pg_get_functiondef(p.oid),
                coalesce(p.proacl::text, '')
           FROM pg_proc p
           JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                           AND d.deptype = 'e'
           JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'steward'",
    )? {
        if let postgres::SimpleQueryMessage::Row(row) = m {
            let col = |i: usize| row.get(i).unwrap_or_default().to_string();
            out.insert(
                col(0),
                Function {
                    result: col(1),
                    arguments: col(2),
                    definition: col(3),
                    acl: col(4),
                },
            );
        }
    }
    Ok(out)
}

/// The statements that give a function the privileges `acl` (a proacl) lists.
fn grants(signature: &str, acl: &str) -> Vec<String> {
    if acl.is_empty() {
        return Vec::new(); // the default: EXECUTE for PUBLIC
    }
    let mut out = vec![format!("REVOKE ALL ON FUNCTION {signature} FROM PUBLIC;")];
    for item in acl.trim_matches(|c| c == '{' || c == '}').split(',') {
        // A grantee that needs quoting is quoted in the aclitem: "a b"=X/postgres.
        let parsed = match item.strip_prefix('"') {
            Some(quoted) => quoted
                .split_once("\"=")
                .map(|(g, r)| (g.replace("\"\"", "\""), r)),
            None => item.split_once('=').map(|(g, r)| (g.to_string(), r)),
        };
        let Some((grantee, rest)) = parsed else {
            continue;
        };
        let grantee = grantee.as_str();
        let privileges = rest.split('/').next().unwrap_or("");
        if grantee != "postgres" && privileges.contains('X') {
            let plain = grantee
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            let grantee = match grantee {
                "" => "PUBLIC".to_string(),
                g if plain => g.to_string(),
                g => format!("\"{}\"", g.replace('"', "\"\"")),
            };
            out.push(format!(
                "GRANT EXECUTE ON FUNCTION {signature} TO {grantee};"
            ));
        }
    }
    out
}

/// `cargo xtask upgrade-draft FROM`: installs release FROM and this build side by side and writes
/// target/upgrade-draft.sql: the function part of an upgrade script from FROM (every function
/// that is new or changed, the ones to drop first, their privileges), and, as comments, every
/// other object whose definition differs, which the script's hand-written part must change.
pub fn draft(from: &str) -> Result<()> {
    let r = releases()?
        .into_iter()
        .find(|r| r.version == from)
        .with_context(|| format!("sql/releases.txt lists no release {from}"))?;
    setup::install_extension(false)?;
    let pid = std::process::id();
    let tree = Tree::create(Path::new(&format!("/tmp/steward-pg-{pid}")))?;
    tree.install_package(&build_release(&r)?)?;
    let mut cluster = Cluster::create_with(&format!("draft-{pid}"), None, "", &tree.at.bin)?;
    cluster.start()?;
    psql_command(&cluster, "postgres", "CREATE DATABASE old")?;
    psql_command(
        &cluster,
        "old",
        &format!("CREATE EXTENSION steward VERSION '{from}'"),
    )?;
    cluster.stop();
    tree.install_current()?;
    cluster.start()?;
    psql_command(&cluster, "postgres", "CREATE DATABASE new")?;
    psql_command(&cluster, "new", "CREATE EXTENSION steward")?;
    let old = functions(&cluster, "old")?;
    let new = functions(&cluster, "new")?;
    let differing = differences(
        &schema(&tree, &cluster, "old")?,
        &schema(&tree, &cluster, "new")?,
        (from, current_version()),
    );
    cluster.stop();
    cluster.remove();
    drop(tree);

    let recreated: Vec<&String> = new
        .iter()
        .filter(|(k, f)| {
            old.get(*k)
                .is_some_and(|o| o.result != f.result || o.arguments != f.arguments)
        })
        .map(|(k, _)| k)
        .collect();
    let mut text = format!(
        "-- Draft: the function part of an upgrade script from {from} to {}.\n",
        current_version()
    );
    text.push_str(
        "-- Objects other than functions whose definitions differ (write these by hand):\n",
    );
    for d in &differing {
        let name = d.lines().next().unwrap_or("");
        if !name.contains("Type: FUNCTION;") && !name.contains("Name: FUNCTION ") {
            text.push_str(&format!("--   {name}\n"));
        }
    }
    text.push_str("\n-- Functions that are gone, or whose arguments or result changed.\n");
    for k in old
        .keys()
        .filter(|k| !new.contains_key(*k))
        .chain(recreated.iter().copied())
    {
        text.push_str(&format!("DROP FUNCTION {k};\n"));
    }
    text.push_str("\n-- Every function that is new or changed.\n");
    let mut acls = Vec::new();
    for (k, f) in &new {
        let before = old.get(k);
        if before.is_some_and(|o| o.definition == f.definition && !recreated.contains(&k)) {
            if before.is_some_and(|o| o.acl != f.acl) {
                acls.extend(grants(k, &f.acl));
            }
            continue;
        }
        text.push_str(f.definition.trim_end());
        text.push_str(if f.definition.trim_end().ends_with(';') {
            "\n\n"
        } else {
            ";\n\n"
        });
        if before.is_none() || recreated.contains(&k) || before.is_some_and(|o| o.acl != f.acl) {
            acls.extend(grants(k, &f.acl));
        }
    }
    text.push_str("-- Their privileges.\n");
    for a in acls {
        text.push_str(&a);
        text.push('\n');
    }
    let out = repo_root().join("target/upgrade-draft.sql");
    std::fs::write(&out, text)?;
    println!("\nwrote {}", out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_releases_and_refuses_a_malformed_line() {
        let a = "6ad7a161ba2086eeda7d7a11dfdf1f630198313c";
        let b = "ABCDEF0123456789abcdef0123456789abcdef01";
        let r = parse_releases(&format!("# comment\n\n0.1.0 {a}\n0.2.0  {b} \n")).unwrap();
        assert_eq!(
            r,
            vec![
                Release {
                    version: "0.1.0".into(),
                    commit: a.into()
                },
                Release {
                    version: "0.2.0".into(),
                    commit: b.to_ascii_lowercase()
                }
            ]
        );
        assert!(parse_releases("0.1.0\n").is_err());
        assert!(parse_releases("0.1.0 6ad7a16\n").is_err(), "a short hash");
        assert!(parse_releases("0.1.0 main\n").is_err(), "a ref");
        assert!(parse_releases("0.1.0 a b\n").is_err());
    }

    #[test]
    fn finds_the_chain_of_scripts() {
        assert_eq!(
            script_versions("steward--0.1.0--0.2.0.sql"),
            Some(("0.1.0".into(), "0.2.0".into()))
        );
        assert_eq!(script_versions("steward--0.2.0.sql"), None);
        assert_eq!(script_versions("steward--0.1.0--0.2.0--0.3.0.sql"), None);
        let s = vec![
            ("0.1.0".to_string(), "0.2.0".to_string()),
            ("0.2.0".to_string(), "0.3.0".to_string()),
            ("0.1.0".to_string(), "0.1.1".to_string()),
        ];
        assert_eq!(
            upgrade_path(&s, "0.1.0", "0.3.0"),
            Some(vec![
                "steward--0.1.0--0.2.0.sql".to_string(),
                "steward--0.2.0--0.3.0.sql".to_string()
            ])
        );
        assert_eq!(upgrade_path(&s, "0.1.1", "0.3.0"), None);
        assert_eq!(upgrade_path(&s, "0.3.0", "0.3.0"), Some(vec![]));
    }

    #[test]
    fn normalizing_a_dump_drops_oids_and_keeps_definitions() {
        let a = "preamble\n--\n-- Name: t; Type: TABLE; Schema: s; Owner: postgres\n--\n\n\
                 -- For binary upgrade, must preserve pg_type oid\n\
                 SELECT pg_catalog.binary_upgrade_set_next_pg_type_oid('16396'::pg_catalog.oid);\n\
                 CREATE TABLE s.t (a int);\n\
                 UPDATE pg_catalog.pg_class\nSET relfrozenxid = '725', relminmxid = '1'\nWHERE oid = '16492';\n\
                 \\unrestrict abc\n";
        let b = a
            .replace("16396", "17000")
            .replace("16492", "17001")
            .replace("abc", "xyz");
        assert_eq!(normalize_dump(a), normalize_dump(&b));
        let c = a.replace("(a int)", "(a bigint)");
        let diff = schema_differences(&normalize_dump(a), &normalize_dump(&c));
        assert_eq!(diff.len(), 1, "{diff:?}");
        assert!(diff[0].contains("bigint"));
    }

    #[test]
    fn grants_reproduce_an_acl() {
        assert!(grants("f()", "").is_empty());
        assert_eq!(
            grants("f()", "{postgres=X/postgres}"),
            vec!["REVOKE ALL ON FUNCTION f() FROM PUBLIC;".to_string()]
        );
        assert_eq!(
            grants(
                "f()",
                "{=X/postgres,postgres=X/postgres,\"a b\"=X/postgres}"
            ),
            vec![
                "REVOKE ALL ON FUNCTION f() FROM PUBLIC;".to_string(),
                "GRANT EXECUTE ON FUNCTION f() TO PUBLIC;".to_string(),
                "GRANT EXECUTE ON FUNCTION f() TO \"a b\";".to_string(),
            ]
        );
    }
}
