//! Optimistic versions under real concurrency.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use steward_tests::{connect, fresh_database, sqlstate, ACME};

/// 8 connections update one row with the version each read, 1,000 attempts in all. Every
/// attempt either succeeds (and raises the version by exactly one) or fails with ST409; the
/// final version minus one is the number of successes, and no increment was lost.
#[test]
fn eight_writers_one_row_no_lost_update() {
    let db = fresh_database("e2e_versions");
    let mut admin = connect(&db, "postgres");
    admin
        .batch_execute(
            "CREATE TABLE counters (id int PRIMARY KEY, tenant_id uuid NOT NULL, hits bigint NOT NULL);
             GRANT SELECT, INSERT, UPDATE ON counters TO PUBLIC;
             SELECT steward.govern('counters');",
        )
        .unwrap();
    let mut acme = connect(&db, "e2e_acme");
    acme.execute("INSERT INTO counters (id, hits) VALUES (1, 0)", &[])
        .unwrap();

    const WRITERS: usize = 8;
    const ATTEMPTS: usize = 1000;
    let successes = Arc::new(AtomicU64::new(0));
    let conflicts = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (db, successes, conflicts) = (db.clone(), successes.clone(), conflicts.clone());
            std::thread::spawn(move || {
                let mut c = connect(&db, "e2e_acme");
                for _ in 0..ATTEMPTS / WRITERS {
                    let row = c.query_one("SELECT hits, version FROM counters WHERE id = 1", &[]).unwrap();
                    let (hits, version): (i64, i64) = (row.get(0), row.get(1));
                    match c.query(
                        "UPDATE counters SET hits = $1, version = $2 WHERE id = 1 RETURNING version",
                        &[&(hits + 1), &version],
                    ) {
                        Ok(rows) => {
                            assert_eq!(rows.len(), 1, "writer {w}");
                            assert_eq!(rows[0].get::<_, i64>(0), version + 1, "writer {w}: not +1");
                            successes.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(e) => {
                            assert_eq!(sqlstate(&e), "ST409", "writer {w}: {e}");
                            let msg = e.as_db_error().map(|d| d.message().to_string()).unwrap_or_default();
                            assert!(msg.contains("counters") && msg.contains("\"id\": \"1\""), "{msg}");
                            conflicts.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let (ok, stale) = (
        successes.load(Ordering::SeqCst),
        conflicts.load(Ordering::SeqCst),
    );
    assert_eq!(ok + stale, ATTEMPTS as u64);
    assert!(
        ok > 0 && stale > 0,
        "the writers did not contend: {ok} successes, {stale} conflicts"
    );
    let row = acme
        .query_one(
            "SELECT hits, version, tenant_id::text FROM counters WHERE id = 1",
            &[],
        )
        .unwrap();
    let (hits, version, tenant): (i64, i64, String) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(tenant, ACME);
    assert_eq!(
        version - 1,
        ok as i64,
        "final version minus one is the number of successful updates"
    );
    assert_eq!(
        hits, ok as i64,
        "every successful increment is there: nothing lost"
    );
}

/// READ COMMITTED re-checks a row another transaction updated meanwhile: the waiting UPDATE
/// applies to the committed version (the row is re-read and its SET re-evaluated). The record
/// the waiting UPDATE leaves must be of that version (old values and new row as written), not
/// of the row it first saw; a waiting DELETE the same; and a waiting UPDATE whose WHERE no longer
/// holds after the re-check writes nothing and leaves no record. Records are written by the
/// guards where they can (issue 21), so this is where a record written too early would show.
#[test]
fn a_rechecked_row_is_recorded_as_written() {
    let db = fresh_database("e2e_recheck");
    let mut admin = connect(&db, "postgres");
    admin
        .batch_execute(
            "CREATE TABLE stock (id int PRIMARY KEY, tenant_id uuid NOT NULL, qty int NOT NULL);
             GRANT SELECT, INSERT, UPDATE, DELETE ON stock TO PUBLIC;
             SELECT steward.govern('stock');",
        )
        .unwrap();
    let mut a = connect(&db, "e2e_acme");
    a.batch_execute("INSERT INTO stock (id, qty) VALUES (1, 10), (2, 10), (3, 10)")
        .unwrap();

    // For each row: A updates it and holds the lock; B's statement waits, then re-checks.
    let cases = [
        (1, "UPDATE stock SET qty = qty + 5 WHERE id = 1"),
        (2, "DELETE FROM stock WHERE id = 2"),
        (3, "UPDATE stock SET qty = 0 WHERE id = 3 AND qty = 10"),
    ];
    for (id, statement) in cases {
        let mut tx = a.transaction().unwrap();
        tx.execute("UPDATE stock SET qty = qty * 2 WHERE id = $1", &[&id])
            .unwrap();
        let (db2, statement) = (db.clone(), statement.to_string());
        let waiter = std::thread::spawn(move || {
            let mut b = connect(&db2, "e2e_acme");
            b.execute(&statement, &[]).unwrap()
        });
        // B is waiting for A's row lock before A commits.
        let mut watch = connect(&db, "postgres");
        let waiting = (0..500).any(|_| {
            let n: i64 = watch
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
                       AND query LIKE '%stock%'",
                    &[],
                )
                .unwrap()
                .get(0);
            if n == 0 {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            n > 0
        });
        assert!(
            waiting,
            "row {id}: the second statement never waited for the first"
        );
        tx.commit().unwrap();
        let changed = waiter.join().unwrap();
        assert_eq!(
            changed,
            if id == 3 { 0 } else { 1 },
            "row {id}: rows changed"
        );
    }

    let records = admin
        .query(
            "SELECT row_key->>'id', action, (old_row->>'qty')::int, (new_row->>'qty')::int, \
                    (new_row->>'version')::int \
               FROM steward.audit_log WHERE table_name = 'public.stock' ORDER BY id",
            &[],
        )
        .unwrap();
    type Rec = (String, String, Option<i32>, Option<i32>, Option<i32>);
    let got: Vec<Rec> = records
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    let rec = |id: &str, action: &str, old: Option<i32>, new: Option<i32>, v: Option<i32>| {
        (id.to_string(), action.to_string(), old, new, v)
    };
    assert_eq!(
        got,
        vec![
            rec("1", "INSERT", None, Some(10), Some(1)),
            rec("2", "INSERT", None, Some(10), Some(1)),
            rec("3", "INSERT", None, Some(10), Some(1)),
            // A's update, then B's on top of it: 20 + 5, version 3.
            rec("1", "UPDATE", Some(10), Some(20), Some(2)),
            rec("1", "UPDATE", Some(20), Some(25), Some(3)),
            // A's update, then B's DELETE of the row as A left it.
            rec("2", "UPDATE", Some(10), Some(20), Some(2)),
            rec("2", "DELETE", Some(20), None, None),
            // A's update; B's WHERE no longer holds: nothing.
            rec("3", "UPDATE", Some(10), Some(20), Some(2)),
        ]
    );
    // And the rows are what the last records say.
    let rows = admin
        .query("SELECT id, qty, version::int FROM stock ORDER BY id", &[])
        .unwrap();
    let rows: Vec<(i32, i32, i32)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(rows, vec![(1, 25, 3), (3, 20, 2)]);
}
