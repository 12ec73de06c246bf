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
