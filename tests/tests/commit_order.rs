//! The outbox delivers in commit order (ADR 004): the 801/802 case from issue 17, and a
//! minute of 8 writers with random commit delays, savepoints, rollbacks and two-phase commits,
//! checked against the commit timestamps Postgres keeps (`track_commit_timestamp`, on in the
//! test clusters) and by rebuilding the table from its events.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use postgres::Client;
use steward_tests::{connect, fresh_database, Lcg, ACME};

/// One delivered event: (id, txid as text, action, row id, row value).
type Delivered = (i64, String, String, i32, Option<i64>);

/// Polls and acks `consumer` until it is empty; returns what it got, in order.
fn drain(c: &mut Client, consumer: &str) -> Vec<Delivered> {
    let mut got = Vec::new();
    loop {
        let batch = poll_once(c, consumer);
        if batch.is_empty() {
            return got;
        }
        got.extend(batch);
    }
}

fn poll_once(c: &mut Client, consumer: &str) -> Vec<Delivered> {
    let rows = c
        .query(
            "SELECT id, txid::text, split_part(event_type, '.', 2),
                    (payload ->> 'id')::int, (payload ->> 'v')::bigint
               FROM steward.poll($1, 100)",
            &[&consumer],
        )
        .unwrap();
    if let Some(last) = rows.last() {
        let id: i64 = last.get(0);
        c.execute("SELECT steward.ack($1, $2)", &[&consumer, &id])
            .unwrap();
    }
    rows.iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect()
}

fn table(db: &str) {
    let mut admin = connect(db, "postgres");
    admin
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, tenant_id uuid NOT NULL, v bigint NOT NULL DEFAULT 0);
             GRANT SELECT, INSERT, UPDATE, DELETE ON t TO PUBLIC;
             SELECT steward.govern('t');",
        )
        .unwrap();
}

/// Issue 17's reproduction: S1 inserts 801 and stays open; S2 inserts 802 and commits; S1
/// deletes 802 (it reads S2's committed row) and commits. S2's events come first, then S1's
/// whole: 802 is created before it is deleted.
#[test]
fn a_transaction_that_read_a_commit_comes_after_it() {
    let db = fresh_database("e2e_order_801");
    table(&db);
    let mut consumer = connect(&db, "e2e_service");
    consumer
        .batch_execute("SELECT steward.create_consumer('ordered')")
        .unwrap();
    let enter = format!("BEGIN; SELECT steward.enter_tenant('{ACME}');");
    let mut s1 = connect(&db, "e2e_service");
    let mut s2 = connect(&db, "e2e_service");
    s1.batch_execute(&format!("{enter} INSERT INTO t (id) VALUES (801);"))
        .unwrap();
    s2.batch_execute(&format!("{enter} INSERT INTO t (id) VALUES (802); COMMIT;"))
        .unwrap();
    s1.batch_execute("DELETE FROM t WHERE id = 802; COMMIT;")
        .unwrap();
    let got: Vec<(String, i32)> = drain(&mut consumer, "ordered")
        .into_iter()
        .map(|(_, _, action, id, _)| (action, id))
        .collect();
    assert_eq!(
        got,
        [
            ("created".to_string(), 802),
            ("created".to_string(), 801),
            ("deleted".to_string(), 802)
        ]
    );
}

const WRITERS: u64 = 8;
const ROWS: u64 = 48;

fn torture_seconds() -> u64 {
    std::env::var("STEWARD_TORTURE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60)
}

/// One writer's transaction: 1 to 3 changes of random rows, each in a savepoint (some undone,
/// and any conflict or deadlock undone too), a random delay before the end, and then COMMIT,
/// ROLLBACK, or PREPARE TRANSACTION followed by COMMIT PREPARED (or ROLLBACK PREPARED).
fn one_transaction(c: &mut Client, rng: &mut Lcg, w: u64, n: u64) {
    c.batch_execute(&format!(
        "BEGIN; SELECT steward.enter_tenant('{ACME}', 'writer-{w}')"
    ))
    .unwrap();
    for _ in 0..1 + rng.next(3) {
        let row = (1 + rng.next(ROWS)) as i32;
        c.batch_execute("SAVEPOINT s").unwrap();
        let changed = if rng.next(5) == 0 {
            c.execute("DELETE FROM t WHERE id = $1", &[&row])
                .map(|_| ())
        } else {
            match c.execute("UPDATE t SET v = v + 1 WHERE id = $1", &[&row]) {
                Ok(0) => c
                    .execute("INSERT INTO t (id) VALUES ($1)", &[&row])
                    .map(|_| ()),
                other => other.map(|_| ()),
            }
        };
        if changed.is_err() || rng.next(10) == 0 {
            c.batch_execute("ROLLBACK TO SAVEPOINT s").unwrap();
        } else {
            c.batch_execute("RELEASE SAVEPOINT s").unwrap();
        }
    }
    std::thread::sleep(Duration::from_millis(rng.next(20)));
    match rng.next(10) {
        0 => c.batch_execute("ROLLBACK").unwrap(),
        1 => {
            let gid = format!("torture-{w}-{n}");
            c.batch_execute(&format!("PREPARE TRANSACTION '{gid}'"))
                .unwrap();
            std::thread::sleep(Duration::from_millis(rng.next(10)));
            let end = if rng.next(4) == 0 {
                "ROLLBACK"
            } else {
                "COMMIT"
            };
            c.batch_execute(&format!("{end} PREPARED '{gid}'")).unwrap();
        }
        _ => c.batch_execute("COMMIT").unwrap(),
    }
}

/// 8 writers for a minute over 48 rows. Per row, the order of its events equals the commit
/// order of their transactions (by commit timestamp); every committed event arrives exactly once,
/// and nothing rolled back; each transaction's events arrive together, in the order written;
/// and applying the events in order rebuilds the table exactly.
#[test]
fn per_row_order_is_commit_order_under_load() {
    let db = fresh_database("e2e_order_torture");
    table(&db);
    let mut consumer = connect(&db, "e2e_service");
    consumer
        .batch_execute("SELECT steward.create_consumer('torture')")
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let until = Instant::now() + Duration::from_secs(torture_seconds());
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let db = db.clone();
            std::thread::spawn(move || {
                let mut rng = Lcg(w + 17);
                let mut c = connect(&db, "e2e_service");
                let mut n = 0;
                while Instant::now() < until {
                    n += 1;
                    one_transaction(&mut c, &mut rng, w, n);
                }
                n
            })
        })
        .collect();
    let reader = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut got = Vec::new();
            loop {
                let done = stop.load(Ordering::SeqCst);
                let batch = poll_once(&mut consumer, "torture");
                let empty = batch.is_empty();
                got.extend(batch);
                if empty {
                    if done {
                        got.extend(drain(&mut consumer, "torture"));
                        return got;
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        })
    };
    let transactions: u64 = writers.into_iter().map(|h| h.join().unwrap()).sum();
    stop.store(true, Ordering::SeqCst);
    let got = reader.join().unwrap();
    assert!(transactions > 100, "the writers ran ({transactions})");

    let mut admin = connect(&db, "postgres");
    // Exactly once: what was delivered is every event the log holds for the table.
    let ids: Vec<i64> = got.iter().map(|e| e.0).collect();
    let unique: HashSet<i64> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "no event is delivered twice");
    let logged: HashSet<i64> = admin
        .query(
            "SELECT id FROM steward.outbox WHERE event_type LIKE 't.%'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(unique, logged, "every committed event, and nothing else");

    // A transaction's events come together, in the order written.
    let mut seen_done: HashSet<&str> = HashSet::new();
    for (i, e) in got.iter().enumerate() {
        if i > 0 && got[i - 1].1 == e.1 {
            assert!(got[i - 1].0 < e.0, "within a transaction, in id order");
        } else {
            assert!(
                seen_done.insert(e.1.as_str()),
                "transaction {} is delivered in one piece",
                e.1
            );
        }
    }

    // Per row, commit order: the commit timestamps of its events' transactions never go back.
    let txids: Vec<String> = seen_done.iter().map(|s| s.to_string()).collect();
    let committed_at: HashMap<String, String> = admin
        .query(
            "SELECT t, pg_xact_commit_timestamp(((t::xid8::text::numeric % 4294967296)::text)::xid)::text
               FROM unnest($1::text[]) t",
            &[&txids],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let mut per_row: HashMap<i32, Vec<&Delivered>> = HashMap::new();
    for e in &got {
        per_row.entry(e.3).or_default().push(e);
    }
    let mut out_of_order = Vec::new();
    for (row, events) in &per_row {
        for pair in events.windows(2) {
            // Timestamps as text sort as times (same zone, same format).
            if committed_at[&pair[0].1] > committed_at[&pair[1].1] {
                out_of_order.push(*row);
                break;
            }
        }
    }
    assert!(
        out_of_order.is_empty(),
        "rows whose events are out of commit order: {out_of_order:?}"
    );

    // Derived data is rebuildable: the events, applied in order, give the table.
    let mut rebuilt: HashMap<i32, i64> = HashMap::new();
    for (_, _, action, row, v) in &got {
        match action.as_str() {
            "deleted" => {
                assert!(
                    rebuilt.remove(row).is_some(),
                    "row {row} deleted before it existed"
                );
            }
            "created" => {
                assert!(
                    rebuilt.insert(*row, v.unwrap()).is_none(),
                    "row {row} created twice"
                );
            }
            _ => {
                assert!(
                    rebuilt.insert(*row, v.unwrap()).is_some(),
                    "row {row} updated before it existed"
                );
            }
        }
    }
    let table: HashMap<i32, i64> = admin
        .query("SELECT id, v FROM t", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(rebuilt, table);
}

/// Acking again an event already behind the position does nothing, also one whose id is above the
/// acked one (transactions come by their last event, so a delivered event may have a higher id
/// than a later one); an id that no poll can have returned is ST400.
#[test]
fn acking_what_is_behind_the_position_is_a_no_op() {
    let db = fresh_database("e2e_order_reack");
    let mut c = connect(&db, "e2e_service");
    c.batch_execute("SELECT steward.create_consumer('reack')")
        .unwrap();
    let emit = |c: &mut Client, k: &str| {
        c.batch_execute(&format!(
            "SELECT steward.emit('reack.tested', 'x', '{k}', '{{}}')"
        ))
        .unwrap();
    };
    let enter = format!("BEGIN; SELECT steward.enter_tenant('{ACME}');");
    let mut t5 = connect(&db, "e2e_service");
    t5.batch_execute(&enter).unwrap();
    emit(&mut t5, "a");
    let mut t3 = connect(&db, "e2e_service");
    t3.batch_execute(&enter).unwrap();
    emit(&mut t3, "b");
    emit(&mut t3, "c");
    t3.batch_execute("COMMIT").unwrap();
    emit(&mut t5, "d");
    t5.batch_execute("COMMIT").unwrap();
    let polled: Vec<(i64, String)> = c
        .query("SELECT id, aggregate_id FROM steward.poll('reack', 3)", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let keys: Vec<&str> = polled.iter().map(|(_, k)| k.as_str()).collect();
    assert_eq!(keys, ["b", "c", "a"], "t3 whole, then t5");
    for (id, _) in polled.iter().rev().chain(polled.iter()) {
        c.execute("SELECT steward.ack('reack', $1)", &[id])
            .unwrap_or_else(|e| panic!("acking {id} again: {e}"));
    }
    let rest: Vec<String> = c
        .query("SELECT aggregate_id FROM steward.poll('reack', 10)", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(rest, ["d"]);
    let err = c
        .execute("SELECT steward.ack('reack', $1)", &[&i64::MAX])
        .unwrap_err();
    assert_eq!(steward_tests::sqlstate(&err), "ST400");
}
