//! The audit chain under concurrency: writers with transactions of random length, and sealers
//! running at the same time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use steward_tests::{connect, fresh_database, ACME, GLOBEX};

/// A record whose transaction commits after a seal is sealed by a later seal: never skipped,
/// never sealed twice, and the chains verify.
#[test]
fn sealing_while_writers_are_in_flight_skips_nothing() {
    let db = fresh_database("e2e_sealing");
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let db = db.clone();
            std::thread::spawn(move || {
                let mut c = connect(&db, "e2e_service");
                let tenant = if w % 2 == 0 { ACME } else { GLOBEX };
                for i in 0..60 {
                    let mut tx = c.transaction().unwrap();
                    tx.execute(
                        "SELECT steward.enter_tenant($1::text::uuid, $2)",
                        &[&tenant, &format!("w{w}")],
                    )
                    .unwrap();
                    let rows = 1 + (i * 7 + w) % 4;
                    for r in 0..rows {
                        tx.execute(
                            "INSERT INTO items (label) VALUES ($1)",
                            &[&format!("w{w} t{i} r{r}")],
                        )
                        .unwrap();
                        // Hold the transaction open a little, so seals run while it is in flight.
                        std::thread::sleep(Duration::from_millis(((i + r) % 3) as u64));
                    }
                    if i % 10 == 9 {
                        tx.rollback().unwrap();
                    } else {
                        tx.commit().unwrap();
                    }
                }
            })
        })
        .collect();
    let sealers: Vec<_> = (0..2)
        .map(|_| {
            let (db, stop) = (db.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut c = connect(&db, "postgres");
                let mut runs = 0;
                while !stop.load(Ordering::SeqCst) {
                    c.query_one("SELECT steward.seal_audit()", &[]).unwrap();
                    runs += 1;
                }
                runs
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    let runs: i32 = sealers.into_iter().map(|s| s.join().unwrap()).sum();
    assert!(runs > 2, "the sealers ran {runs} times");

    let mut admin = connect(&db, "postgres");
    admin.query_one("SELECT steward.seal_audit()", &[]).unwrap();
    let row = admin
        .query_one(
            "SELECT (SELECT count(*) FROM steward.change_log),
                    (SELECT count(*) FROM steward.audit_seals),
                    (SELECT count(*) FROM steward.change_log c
                      WHERE NOT EXISTS (SELECT 1 FROM steward.audit_seals s WHERE s.record_id = c.id))",
            &[],
        )
        .unwrap();
    let (records, seals, unsealed): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    assert!(records > 0);
    assert_eq!(unsealed, 0, "records were skipped");
    assert_eq!(seals, records, "every record sealed exactly once");
    let bad: i64 = admin
        .query_one(
            "SELECT count(*) FROM steward.verify_audit() WHERE NOT ok",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(bad, 0, "a chain does not verify");
    let chains: i64 = admin
        .query_one("SELECT count(*) FROM steward.audit_heads()", &[])
        .unwrap()
        .get(0);
    assert_eq!(chains, 2);
    // Each chain's positions run 1..n without a gap.
    let gaps: i64 = admin
        .query_one(
            "SELECT count(*) FROM (SELECT tenant_id, max(seq) m, count(*) n FROM steward.audit_seals
                                   GROUP BY tenant_id) x WHERE m <> n",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(gaps, 0);
}
