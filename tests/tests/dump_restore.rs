//! A database with steward dumped and restored into another cluster (issue 16, finding 5): the
//! roles there have other OIDs, and every grant and trust must land on the role of the same name.

use std::process::Command;

use steward_tests::{connect_on, fresh_database_on, Server, ACME, GLOBEX};

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run through cargo xtask test"))
}

fn labels(db: &str, user: &str) -> Vec<String> {
    let mut c = connect_on(Server::Plain, db, user);
    c.query("SELECT label FROM items ORDER BY label", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Dumps `src` from the preloaded cluster (pg_dump -Fc) and restores it into `dst` on the plain
/// one (pg_restore --exit-on-error and `args`); pg_restore's result.
fn dump_and_restore(src: &str, dst: &str, args: &[&str]) -> std::process::Output {
    let file = std::env::temp_dir().join(format!("steward-{dst}-{}.pgdump", std::process::id()));
    let dump = Command::new(format!("{PG_BIN}/pg_dump"))
        .args(["-Fc", "-U", "postgres", "-h"])
        .arg(env("STEWARD_TEST_PGHOST"))
        .args(["-p", &env("STEWARD_TEST_PGPORT"), "-f"])
        .arg(&file)
        .arg(src)
        .output()
        .expect("pg_dump runs");
    assert!(
        dump.status.success(),
        "pg_dump: {}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let restore = Command::new(format!("{PG_BIN}/pg_restore"))
        .args(["--exit-on-error", "-U", "postgres", "-h"])
        .arg(env("STEWARD_TEST_PLAIN_PGHOST"))
        .args(["-p", &env("STEWARD_TEST_PLAIN_PGPORT"), "-d", dst])
        .args(args)
        .arg(&file)
        .output()
        .expect("pg_restore runs");
    let _ = std::fs::remove_file(&file);
    restore
}

/// Creates the login roles that do not exist yet, in this order (another test may create the
/// same role at the same moment: unique_violation).
fn create_roles(c: &mut postgres::Client, roles: &[&str]) {
    for role in roles {
        c.batch_execute(&format!(
            "DO $$ BEGIN CREATE ROLE {role} LOGIN; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
        ))
        .unwrap();
    }
}

/// Calls `f` until it has an answer: another test's transaction in the shared cluster may hold
/// the commit-safe horizon back for a moment (what polls and seals wait for).
fn once_the_horizon_moves<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    for _ in 0..600 {
        if let Some(answer) = f() {
            return answer;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("{what}: nothing after 30 s");
}

#[test]
fn a_dump_restored_elsewhere_keeps_grants_and_trust_on_the_right_roles() {
    // The source: roles created in one order, granted one tenant each.
    let src = fresh_database_on(Server::Preloaded, "e2e_dump_src");
    let mut admin = connect_on(Server::Preloaded, "postgres", "postgres");
    create_roles(&mut admin, &["dump_first", "dump_second"]);
    let mut db = connect_on(Server::Preloaded, &src, "postgres");
    // The source's transaction ids run well ahead of the target's: restored as they are, every
    // record and position would look newer than anything the target writes next.
    let mut target = connect_on(Server::Plain, "postgres", "postgres");
    let next_xid = |c: &mut postgres::Client| -> i64 {
        c.query_one(
            "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint",
            &[],
        )
        .unwrap()
        .get(0)
    };
    let lead = next_xid(&mut target) + 5000 - next_xid(&mut db);
    if lead > 0 {
        db.batch_execute(&format!(
            "DO $$ BEGIN FOR i IN 1..{lead} LOOP PERFORM pg_current_xact_id(); COMMIT; END LOOP; END $$"
        ))
        .unwrap();
    }
    db.batch_execute(&format!(
        "SELECT steward.grant_tenant('dump_first', '{ACME}');
         SELECT steward.grant_tenant('dump_second', '{GLOBEX}');
         SELECT steward.create_consumer('relay', 'earliest');
         BEGIN; SELECT steward.enter_tenant('{ACME}'); INSERT INTO items (label) VALUES ('acme row'); COMMIT;
         BEGIN; SELECT steward.enter_tenant('{GLOBEX}'); INSERT INTO items (label) VALUES ('globex row'); COMMIT;"
    ))
    .unwrap();
    // Sealed.
    once_the_horizon_moves("sealing in the source", || {
        db.batch_execute("SELECT steward.seal_audit()").unwrap();
        let seals: i64 = db
            .query_one("SELECT count(*) FROM steward.audit_seals", &[])
            .unwrap()
            .get(0);
        (seals >= 2).then_some(())
    });
    db.batch_execute(&format!(
        "BEGIN; SELECT steward.enter_tenant('{ACME}'); UPDATE items SET label = 'acme row, renamed' WHERE label = 'acme row'; COMMIT;"
    ))
    .unwrap();
    // The relay has taken the first event; its position goes with the dump.
    let first: i64 = once_the_horizon_moves("the first event in the source", || {
        db.query("SELECT id FROM steward.poll('relay', 1)", &[])
            .unwrap()
            .first()
            .map(|row| row.get(0))
    });
    db.execute("SELECT steward.ack('relay', $1)", &[&first])
        .unwrap();
    let events_in_source: Vec<i64> = db
        .query("SELECT id FROM steward.outbox ORDER BY txid, id", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    // Heads kept outside, to check the restored chain against.
    let heads: String = db
        .query_one(
            "SELECT jsonb_agg(to_jsonb(h))::text FROM steward.audit_heads() h",
            &[],
        )
        .unwrap()
        .get(0);

    // The target cluster: the same roles created in the other order (and one more in between),
    // so each name has another OID than in the source, and the source's OIDs name other roles.
    target
        .batch_execute("DROP DATABASE IF EXISTS e2e_dump_dst")
        .unwrap();
    target
        .batch_execute("CREATE DATABASE e2e_dump_dst")
        .unwrap();
    create_roles(
        &mut target,
        &[
            "dump_second",
            "dump_spacer",
            "dump_first",
            "e2e_service",
            "e2e_acme",
            "e2e_nogrant",
        ],
    );

    let restore = dump_and_restore(&src, "e2e_dump_dst", &[]);
    assert!(
        restore.status.success(),
        "pg_restore (the DDL guard must let a governed table be built up): {}",
        String::from_utf8_lossy(&restore.stderr)
    );

    // Each role reads its own tenant's rows, and only those.
    assert_eq!(
        labels("e2e_dump_dst", "dump_first"),
        vec!["acme row, renamed"]
    );
    assert_eq!(labels("e2e_dump_dst", "dump_second"), vec!["globex row"]);
    // The trusted service is still trusted, and nobody else became trusted.
    let mut dst = connect_on(Server::Plain, "e2e_dump_dst", "postgres");
    let trusted: Vec<String> = dst
        .query(
            "SELECT role::text FROM steward.trusted_roles ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(trusted, vec!["e2e_service"]);
    let granted: Vec<(String, String)> = dst
        .query(
            "SELECT g.role::text, t.slug FROM steward.tenant_grants g
               JOIN steward.tenants t USING (tenant_id) ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(
        granted.contains(&("dump_first".into(), "acme".into())),
        "{granted:?}"
    );
    assert!(
        granted.contains(&("dump_second".into(), "globex".into())),
        "{granted:?}"
    );
    // The restored table is governed as before: no context, no rows (ST001).
    let err = dst
        .batch_execute("SET ROLE dump_spacer; SELECT count(*) FROM items;")
        .unwrap_err();
    assert_eq!(steward_tests::sqlstate(&err), "ST001");
    dst.batch_execute("RESET ROLE").unwrap();

    // The log, the seals and the sealing state came along: every chain verifies, against the
    // heads kept outside too.
    let restored: i64 = dst
        .query_one("SELECT count(*) FROM steward.change_log", &[])
        .unwrap()
        .get(0);
    assert!(restored >= 4, "records restored: {restored}");
    let bad: Vec<String> = dst
        .query(
            "SELECT tenant_id::text FROM steward.verify_audit(heads => $1::text::jsonb) WHERE NOT ok",
            &[&heads],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(bad.is_empty(), "chains not ok after the restore: {bad:?}");

    // New work in the target: its records sort after every restored one, although the
    // target's own transaction ids are smaller than the source's.
    let (last_restored_id, last_restored_txid): (i64, String) = {
        let row = dst
            .query_one(
                "SELECT max(id), max(txid)::text FROM steward.change_log",
                &[],
            )
            .unwrap();
        (row.get(0), row.get(1))
    };
    dst.batch_execute(&format!(
        "BEGIN; SELECT steward.enter_tenant('{GLOBEX}'); INSERT INTO items (label) VALUES ('globex, after the restore'); COMMIT;"
    ))
    .unwrap();
    let (oldest_new, later): (i64, bool) = {
        let row = dst
            .query_one(
                "SELECT id, txid > $2::text::xid8 FROM steward.change_log WHERE id > $1",
                &[&last_restored_id, &last_restored_txid],
            )
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert!(
        later,
        "a record written after the restore has a transaction id below a restored one's"
    );
    // The relay goes on from where it was: the rest of the source's events, then the new one,
    // none twice and none missing.
    let mut expected: Vec<i64> = events_in_source
        .iter()
        .copied()
        .skip_while(|&id| id != first)
        .skip(1)
        .collect();
    expected.push(oldest_new);
    // Polled and acked batch by batch, as a relay does.
    let mut polled: Vec<i64> = Vec::new();
    once_the_horizon_moves("the relay's events in the target", || {
        let batch: Vec<i64> = dst
            .query("SELECT id FROM steward.poll('relay', 100)", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        if let Some(last) = batch.last() {
            dst.execute("SELECT steward.ack('relay', $1)", &[last])
                .unwrap();
        }
        polled.extend(batch);
        (polled.len() >= expected.len()).then_some(())
    });
    assert_eq!(polled, expected, "the relay's events after the restore");
    // Sealing goes on in the target, and the chains still verify.
    let mut sealed: i64 = 0;
    once_the_horizon_moves("sealing in the target", || {
        sealed += dst
            .query_one("SELECT steward.seal_audit()", &[])
            .unwrap()
            .get::<_, i64>(0);
        (sealed >= 2).then_some(())
    });
    assert!(sealed >= 2, "sealed after the restore: {sealed}");
    let bad: i64 = dst
        .query_one(
            "SELECT count(*) FROM steward.verify_audit() WHERE NOT ok",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(bad, 0, "a chain is not ok after sealing in the target");
    // history() finds a row's restored records and its new ones.
    let mut acme = connect_on(Server::Plain, "e2e_dump_dst", "dump_first");
    let actions: Vec<String> = acme
        .query(
            "SELECT action FROM steward.history('items', (SELECT jsonb_build_object('id', id) FROM items))",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(actions, vec!["INSERT", "UPDATE"]);
    // erase() reaches the restored records as well: the payload goes from every one of them,
    // and the chains still verify.
    dst.batch_execute(&format!(
        "BEGIN; SELECT steward.enter_tenant('{ACME}', 'dpo');
         SELECT steward.erase('items', (SELECT jsonb_build_object('id', id) FROM items
                                         WHERE label = 'acme row, renamed'), 'GDPR, after the restore');
         COMMIT;"
    ))
    .unwrap();
    let kept: i64 = dst
        .query_one(
            "SELECT count(*) FROM steward.change_log
              WHERE tenant_id = $1::text::uuid AND table_name = 'public.items'
                AND action <> 'ERASE' AND (new_row IS NOT NULL OR old_values IS NOT NULL)",
            &[&ACME],
        )
        .unwrap()
        .get(0);
    assert_eq!(kept, 0, "restored records kept their payload after erase()");
    let bad: i64 = dst
        .query_one(
            "SELECT count(*) FROM steward.verify_audit() WHERE NOT ok",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(bad, 0, "a chain is not ok after erasing restored records");
    // A superuser's plain SQL still cannot add a record now that the log is not empty.
    let err = dst
        .batch_execute("COPY steward.change_log (tenant_id, action, event_id, audited, evented) FROM PROGRAM 'echo 00000000-0000-4000-8000-0000000000a1,EVENT,00000000-0000-4000-8000-000000000001,t,t' WITH (FORMAT csv)")
        .unwrap_err();
    assert_eq!(steward_tests::sqlstate(&err), "ST403");
}

#[test]
fn a_parallel_restore_keeps_grants_and_finds_a_renamed_tables_history() {
    // The source: a governed table with records, renamed after them (its records carry the old
    // name), dumped, and restored with pg_restore -j 2 into the other cluster.
    let src = fresh_database_on(Server::Preloaded, "e2e_dump_src2");
    let mut db = connect_on(Server::Preloaded, &src, "postgres");
    db.batch_execute(&format!(
        "BEGIN; SELECT steward.enter_tenant('{ACME}'); INSERT INTO items (label) VALUES ('before the rename'); COMMIT;
         SELECT steward.seal_audit();
         ALTER TABLE items RENAME TO things;"
    ))
    .unwrap();
    let mut target = connect_on(Server::Plain, "postgres", "postgres");
    target
        .batch_execute("DROP DATABASE IF EXISTS e2e_dump_dst2")
        .unwrap();
    target
        .batch_execute("CREATE DATABASE e2e_dump_dst2")
        .unwrap();
    create_roles(&mut target, &["e2e_acme", "e2e_nogrant", "e2e_service"]);
    let restore = dump_and_restore(&src, "e2e_dump_dst2", &["-j", "2"]);
    assert!(
        restore.status.success(),
        "pg_restore -j 2: {}",
        String::from_utf8_lossy(&restore.stderr)
    );
    // Every grant came along (the tenants and their grants load in parallel).
    let mut acme = connect_on(Server::Plain, "e2e_dump_dst2", "e2e_acme");
    let rows: Vec<String> = acme
        .query("SELECT label FROM things", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(rows, vec!["before the rename"]);
    // The first change after the restore: the renamed table's restored records are its own.
    acme.batch_execute("UPDATE things SET label = 'after the restore'")
        .unwrap();
    let actions: Vec<String> = acme
        .query(
            "SELECT action FROM steward.history('things', (SELECT jsonb_build_object('id', id) FROM things))",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(actions, vec!["INSERT", "UPDATE"]);
    // The new record carries the table's name now.
    let name: String = acme
        .query_one(
            "SELECT table_name FROM steward.audit_log ORDER BY id DESC LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(name, "public.things");
}
