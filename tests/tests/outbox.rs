//! The outbox face under load: writers with transactions of random length and rollbacks while
//! consumers poll and ack; long transactions; wake-ups; erasure; the seal witness; pruning.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;
use postgres::Client;
use steward_tests::{
    connect, connect_on, fresh_database, fresh_database_on, sqlstate, Lcg, Server, ACME, GLOBEX,
};

/// The horizon is cluster-wide: a transaction left open in one test's database holds back every
/// other test's events. These tests take turns.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Polls `consumer` once and acks what it got; returns the events' keys (payload `k`, or the
/// row's `label` for row events).
fn poll_and_ack(c: &mut Client, consumer: &str) -> Vec<String> {
    let rows = c
        .query(
            "SELECT id, coalesce(payload ->> 'k', payload ->> 'label') FROM steward.poll($1, 100)",
            &[&consumer],
        )
        .unwrap();
    if let Some(last) = rows.last() {
        let id: i64 = last.get(0);
        c.execute("SELECT steward.ack($1, $2)", &[&consumer, &id])
            .unwrap();
    }
    rows.iter()
        .filter_map(|r| r.get::<_, Option<String>>(1))
        .collect()
}

const WRITERS: u64 = 8;
const EVENTS_PER_WRITER: u64 = 6_250; // 50,000 in all

/// 8 writers, random transaction lengths, 10% rolled back, 50,000 events; one consumer polls and
/// acks throughout. It sees every committed event exactly once and no rolled-back one. A second
/// consumer, created at the start and read only at the end, sees the same, independently.
#[test]
fn consumers_see_every_committed_event_exactly_once() {
    let _turn = one_at_a_time();
    let db = fresh_database("e2e_outbox_load");
    let mut admin = connect(&db, "e2e_service");
    admin
        .batch_execute(
            "SELECT steward.create_consumer('relay', 'latest');
             SELECT steward.create_consumer('late-reader', 'latest');",
        )
        .unwrap();
    let done = Arc::new(AtomicBool::new(false));

    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let db = db.clone();
            std::thread::spawn(move || {
                let mut rng = Lcg(w + 1);
                let mut c = connect(&db, "e2e_service");
                let tenant = if w % 2 == 0 { ACME } else { GLOBEX };
                let (mut committed, mut rolled_back) = (Vec::new(), Vec::new());
                let (mut written, mut t) = (0, 0);
                while written < EVENTS_PER_WRITER {
                    t += 1;
                    let len = (1 + rng.next(60)).min(EVENTS_PER_WRITER - written);
                    let mut tx = c.transaction().unwrap();
                    tx.execute(
                        "SELECT steward.enter_tenant($1::text::uuid, $2)",
                        &[&tenant, &format!("writer-{w}")],
                    )
                    .unwrap();
                    let mut keys = Vec::new();
                    let mut n = 0;
                    while n < len {
                        let chunk = (1 + rng.next(10)).min(len - n);
                        let first = format!("{w}-{t}-{n}");
                        if rng.next(4) == 0 {
                            // Row events of a governed table ...
                            tx.execute(
                                "INSERT INTO items (label)
                                 SELECT $1 || '-' || g FROM generate_series(0, $2 - 1) g",
                                &[&first, &(chunk as i32)],
                            )
                            .unwrap();
                        } else {
                            // ... and domain events.
                            tx.execute(
                                "SELECT steward.emit('load.tested', 'writer', $1,
                                                     jsonb_build_object('k', $1 || '-' || g))
                                   FROM generate_series(0, $2 - 1) g",
                                &[&first, &(chunk as i32)],
                            )
                            .unwrap();
                        }
                        keys.extend((0..chunk).map(|g| format!("{first}-{g}")));
                        n += chunk;
                        if rng.next(8) == 0 {
                            std::thread::sleep(Duration::from_millis(rng.next(5)));
                        }
                    }
                    written += len;
                    if rng.next(10) == 0 {
                        tx.rollback().unwrap();
                        rolled_back.extend(keys);
                    } else {
                        tx.commit().unwrap();
                        committed.extend(keys);
                    }
                }
                (committed, rolled_back)
            })
        })
        .collect();

    let consumer = {
        let (db, done) = (db.clone(), done.clone());
        std::thread::spawn(move || {
            let mut c = connect(&db, "e2e_service");
            let mut seen: HashMap<String, u32> = HashMap::new();
            loop {
                let finished = done.load(Ordering::SeqCst);
                let got = poll_and_ack(&mut c, "relay");
                let empty = got.is_empty();
                for k in got {
                    *seen.entry(k).or_default() += 1;
                }
                if finished && empty {
                    break seen;
                }
                if empty {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        })
    };

    let (mut committed, mut rolled_back) = (HashSet::new(), HashSet::new());
    for w in writers {
        let (c, r) = w.join().unwrap();
        committed.extend(c);
        rolled_back.extend(r);
    }
    done.store(true, Ordering::SeqCst);
    let seen = consumer.join().unwrap();

    assert_eq!(
        committed.len() + rolled_back.len(),
        (WRITERS * EVENTS_PER_WRITER) as usize
    );
    assert!(!rolled_back.is_empty(), "some transactions rolled back");
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "events seen more than once: {twice:?}");
    let ghosts: Vec<_> = seen.keys().filter(|k| rolled_back.contains(*k)).collect();
    assert!(ghosts.is_empty(), "rolled-back events seen: {ghosts:?}");
    let missed: Vec<_> = committed
        .iter()
        .filter(|k| !seen.contains_key(*k))
        .collect();
    assert!(
        missed.is_empty(),
        "committed events never seen: {} of them",
        missed.len()
    );
    assert_eq!(seen.len(), committed.len());

    // The second consumer did not move while the first did; now it reads the same events.
    let mut late: HashMap<String, u32> = HashMap::new();
    loop {
        let got = poll_and_ack(&mut admin, "late-reader");
        if got.is_empty() {
            break;
        }
        for k in got {
            *late.entry(k).or_default() += 1;
        }
    }
    assert_eq!(late.len(), committed.len());
    assert!(late.values().all(|n| *n == 1));
    let lag = admin
        .query_one(
            "SELECT behind FROM steward.consumer_lag WHERE consumer = 'relay'",
            &[],
        )
        .unwrap();
    assert_eq!(lag.get::<_, i64>(0), 0);
}

/// seek() replays from a time: everything that occurred at or after it, again.
#[test]
fn seek_replays_from_a_time() {
    let _turn = one_at_a_time();
    let db = fresh_database("e2e_outbox_seek");
    let mut c = connect(&db, "e2e_service");
    c.batch_execute("SELECT steward.create_consumer('replay', 'earliest')")
        .unwrap();
    let emit = |c: &mut Client, k: &str| {
        c.batch_execute(&format!(
            "BEGIN; SELECT steward.enter_tenant('{ACME}');
             SELECT steward.emit('seek.tested', 'x', '{k}', '{{\"k\": \"{k}\"}}'); COMMIT;"
        ))
        .unwrap();
    };
    for k in ["a", "b", "c"] {
        emit(&mut c, k);
    }
    let mark: std::time::SystemTime = c.query_one("SELECT clock_timestamp()", &[]).unwrap().get(0);
    for k in ["d", "e"] {
        emit(&mut c, k);
    }
    let mut all = Vec::new();
    loop {
        let got = poll_and_ack(&mut c, "replay");
        if got.is_empty() {
            break;
        }
        all.extend(got);
    }
    assert_eq!(all, ["a", "b", "c", "d", "e"]);
    c.execute("SELECT steward.seek('replay', $1)", &[&mark])
        .unwrap();
    assert_eq!(poll_and_ack(&mut c, "replay"), ["d", "e"]);
    assert!(poll_and_ack(&mut c, "replay").is_empty());
}

/// A transaction that stays open holds nothing back: what commits meanwhile is delivered at
/// once, and the open transaction's events arrive when it commits, never skipped.
#[test]
fn a_long_transaction_holds_nothing_back() {
    let _turn = one_at_a_time();
    let db = fresh_database("e2e_outbox_long");
    let mut c = connect(&db, "e2e_service");
    c.batch_execute("SELECT steward.create_consumer('relay', 'latest')")
        .unwrap();
    let mut long = connect(&db, "e2e_service");
    long.batch_execute(&format!(
        "BEGIN; SELECT steward.enter_tenant('{ACME}');
         SELECT steward.emit('long.tested', 'x', 'first', '{{\"k\": \"long\"}}');"
    ))
    .unwrap();
    for k in ["x1", "x2", "x3"] {
        c.batch_execute(&format!(
            "BEGIN; SELECT steward.enter_tenant('{GLOBEX}');
             SELECT steward.emit('long.tested', 'x', '{k}', '{{\"k\": \"{k}\"}}'); COMMIT;"
        ))
        .unwrap();
    }
    let mut got = Vec::new();
    for _ in 0..4 {
        got.extend(poll_and_ack(&mut c, "relay"));
    }
    assert_eq!(got, ["x1", "x2", "x3"], "committed events wait for nothing");
    let behind: i64 = c
        .query_one(
            "SELECT behind FROM steward.consumer_lag WHERE consumer = 'relay'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(behind, 0, "an uncommitted event is behind no consumer");
    // An id no poll returned cannot be acked (ST400).
    let err = c
        .execute("SELECT steward.ack('relay', $1)", &[&i64::MAX])
        .unwrap_err();
    assert_eq!(sqlstate(&err), "ST400");

    // A seek back while it is still open replays what committed, and skips it neither.
    c.batch_execute("SELECT steward.seek('relay', now() - interval '1 hour')")
        .unwrap();
    let mut again = Vec::new();
    for _ in 0..4 {
        again.extend(poll_and_ack(&mut c, "relay"));
    }
    assert_eq!(again, ["x1", "x2", "x3"]);

    long.batch_execute("COMMIT").unwrap();
    assert_eq!(poll_and_ack(&mut c, "relay"), ["long"]);
    assert!(poll_and_ack(&mut c, "relay").is_empty());
}

/// A seek back never drops an event that was not delivered yet: a transaction that started
/// before the time (its events occur at its start) but committed after the consumer's last batch
/// is delivered after the seek, with what the seek replays.
#[test]
fn a_seek_back_never_drops_what_was_not_delivered() {
    let _turn = one_at_a_time();
    let db = fresh_database("e2e_outbox_seek_back");
    let mut c = connect(&db, "e2e_service");
    c.batch_execute("SELECT steward.create_consumer('relay', 'latest')")
        .unwrap();
    let mut early = connect(&db, "e2e_service");
    early
        .batch_execute(&format!(
            "BEGIN; SELECT steward.enter_tenant('{ACME}'); SELECT pg_current_xact_id();"
        ))
        .unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let t: String = c
        .query_one("SELECT clock_timestamp()::text", &[])
        .unwrap()
        .get(0);
    c.batch_execute(&format!(
        "BEGIN; SELECT steward.enter_tenant('{ACME}');
         SELECT steward.emit('seek.tested', 'x', 'm', '{{\"k\": \"after\"}}'); COMMIT;"
    ))
    .unwrap();
    assert_eq!(poll_and_ack(&mut c, "relay"), ["after"]);
    early
        .batch_execute(
            "SELECT steward.emit('seek.tested', 'x', 'l', '{\"k\": \"started before\"}'); COMMIT;",
        )
        .unwrap();
    c.execute("SELECT steward.seek('relay', $1::text::timestamptz)", &[&t])
        .unwrap();
    let mut got = Vec::new();
    for _ in 0..4 {
        got.extend(poll_and_ack(&mut c, "relay"));
    }
    got.sort();
    assert_eq!(got, ["after", "started before"]);
    // Forward, what occurred before the time is skipped.
    c.batch_execute(&format!(
        "BEGIN; SELECT steward.enter_tenant('{ACME}');
         SELECT steward.emit('seek.tested', 'x', 's', '{{\"k\": \"skipped\"}}'); COMMIT;
         SELECT steward.seek('relay', 'infinity');"
    ))
    .unwrap();
    assert!(poll_and_ack(&mut c, "relay").is_empty());
}

/// A long read-only transaction (a report) holds back neither delivery nor sealing: it has no
/// transaction id.
#[test]
fn a_long_report_holds_back_neither_delivery_nor_sealing() {
    let _turn = one_at_a_time();
    let db = fresh_database("e2e_outbox_report");
    let mut c = connect(&db, "e2e_service");
    c.batch_execute("SELECT steward.create_consumer('relay', 'latest')")
        .unwrap();
    let mut report = connect(&db, "e2e_acme");
    report
        .batch_execute(
            "BEGIN ISOLATION LEVEL REPEATABLE READ;
             SELECT count(*) FROM items;
             SELECT count(*) FROM steward.audit_log;",
        )
        .unwrap();
    let mut writer = connect(&db, "e2e_acme");
    writer
        .batch_execute("INSERT INTO items (label) VALUES ('during the report')")
        .unwrap();
    let mut admin = connect(&db, "postgres");
    // Sealing reaches the new record while the report is open (other tests' writers may hold the
    // horizon for a moment; the report must not hold it at all).
    let mut sealed = false;
    for _ in 0..600 {
        admin.batch_execute("SELECT steward.seal_audit()").unwrap();
        sealed = admin
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM steward.audit_seals s
                                  JOIN steward.change_log l ON l.id = s.record_id
                                 WHERE l.new_row ->> 'label' = 'during the report')",
                &[],
            )
            .unwrap()
            .get(0);
        if sealed {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(sealed, "the open report held sealing back");
    assert_eq!(poll_and_ack(&mut c, "relay"), ["during the report"]);
    let xid: Option<String> = report
        .query_one("SELECT pg_current_xact_id_if_assigned()::text", &[])
        .unwrap()
        .get(0);
    assert_eq!(xid, None, "the report took no transaction id");
    report.batch_execute("COMMIT").unwrap();
}

/// COMMIT PREPARED of a transaction that enqueued wakes listeners, from a session that never
/// used steward itself; the PREPARE sends nothing (Postgres forbids NOTIFY in a transaction to
/// be prepared).
#[test]
fn commit_prepared_wakes_listeners() {
    let _turn = one_at_a_time();
    let db = fresh_database("e2e_outbox_2pc_wake");
    let mut listener = connect(&db, "e2e_service");
    listener
        .batch_execute("LISTEN steward_outbox; LISTEN steward_test_marker")
        .unwrap();
    let mut c = connect(&db, "e2e_service");
    c.batch_execute(&format!(
        "BEGIN; SELECT steward.enter_tenant('{ACME}');
         INSERT INTO items (label) VALUES ('prepared');
         PREPARE TRANSACTION 'e2e_wake';"
    ))
    .unwrap();
    c.batch_execute("NOTIFY steward_test_marker").unwrap();
    let mut early = 0;
    {
        let mut notes = listener.notifications();
        let mut it = notes.timeout_iter(Duration::from_secs(30));
        while let Some(n) = it.next().unwrap() {
            match n.channel() {
                "steward_outbox" => early += 1,
                _ => break,
            }
        }
    }
    assert_eq!(early, 0, "PREPARE TRANSACTION sends no wake-up");
    // A transaction manager's own session commits it.
    connect(&db, "postgres")
        .batch_execute("COMMIT PREPARED 'e2e_wake'")
        .unwrap();
    let mut notes = listener.notifications();
    let woken = notes
        .timeout_iter(Duration::from_secs(10))
        .next()
        .unwrap()
        .map(|n| n.channel().to_string());
    assert_eq!(woken.as_deref(), Some("steward_outbox"));
}

/// Loaded on demand, a transaction that enqueued sends `NOTIFY steward_outbox` itself as it
/// commits (once, however many events); a rollback sends nothing.
#[test]
fn commit_wakes_listeners() {
    let _turn = one_at_a_time();
    let db = fresh_database_on(Server::Plain, "e2e_outbox_notify");
    let mut listener = connect_on(Server::Plain, &db, "e2e_service");
    listener.batch_execute("LISTEN steward_outbox").unwrap();
    let mut c = connect_on(Server::Plain, &db, "e2e_service");
    let writer: i32 = c.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    c.batch_execute(&format!(
        "BEGIN; SELECT steward.enter_tenant('{ACME}');
         INSERT INTO items (label) VALUES ('rolled back'); ROLLBACK;"
    ))
    .unwrap();
    c.batch_execute(&format!(
        "BEGIN; SELECT steward.enter_tenant('{ACME}');
         INSERT INTO items (label) VALUES ('one'), ('two');
         SELECT steward.emit('notify.tested', 'x', '1', '{{}}'); COMMIT;"
    ))
    .unwrap();
    // A marker after both, from the same backend: the queue is in commit order, so every
    // wake-up the two transactions sent has arrived once the marker has.
    listener
        .batch_execute("LISTEN steward_test_marker")
        .unwrap();
    c.batch_execute("NOTIFY steward_test_marker").unwrap();
    let mut senders = Vec::new();
    let mut notes = listener.notifications();
    let mut it = notes.timeout_iter(Duration::from_secs(30));
    while let Some(n) = it.next().unwrap() {
        match n.channel() {
            "steward_outbox" => senders.push(n.process_id()),
            _ => break,
        }
    }
    assert_eq!(
        senders,
        [writer],
        "one wake-up, from the committing backend, and none for the rollback"
    );
}

/// The process that sent a notification, if it still runs: its `backend_type`.
fn sender_kind(admin: &mut Client, pid: i32) -> Option<String> {
    admin
        .query_opt(
            "SELECT backend_type FROM pg_stat_activity WHERE pid = $1",
            &[&pid],
        )
        .unwrap()
        .map(|r| r.get(0))
}

/// Preloaded, the database's waker sends the wake-ups: writers never take Postgres'
/// notification lock. The first commit finds no waker, starts one and notifies itself; the
/// commits after it are woken by the waker. A transaction that counted on the waker and failed
/// in commit uncounts itself: the waker goes once it has nothing to send, so that the database
/// can be dropped.
#[test]
fn the_waker_wakes_listeners_and_then_goes() {
    let _turn = one_at_a_time();
    let db = fresh_database("e2e_outbox_waker");
    let mut admin = connect("postgres", "postgres");
    let mut listener = connect(&db, "e2e_service");
    listener.batch_execute("LISTEN steward_outbox").unwrap();
    let mut c = connect(&db, "e2e_service");
    let writer: i32 = c.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let mut next_wake_up = |c: &mut Client, label: &str| -> i32 {
        c.batch_execute(&format!(
            "BEGIN; SELECT steward.enter_tenant('{ACME}');
             INSERT INTO items (label) VALUES ('{label}'); COMMIT;"
        ))
        .unwrap();
        listener
            .notifications()
            .timeout_iter(Duration::from_secs(30))
            .next()
            .unwrap()
            .expect("a wake-up after the commit")
            .process_id()
    };
    assert_eq!(
        next_wake_up(&mut c, "first"),
        writer,
        "the first commit starts the waker and notifies itself"
    );
    // The waker leaves after a second idle; on a busy machine, try again rather than fail.
    let mut by_the_waker = false;
    for attempt in 0..20 {
        let sender = next_wake_up(&mut c, &format!("attempt {attempt}"));
        if sender != writer && sender_kind(&mut admin, sender).as_deref() == Some("steward waker") {
            by_the_waker = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(by_the_waker, "no wake-up came from a steward waker");

    // Right after the waker sent (it stays for a second): write skew between two serializable
    // transactions. The second counts on the waker in pre-commit and fails after it.
    let mut other = connect(&db, "e2e_service");
    for (conn, reads, writes) in [(&mut c, "a", "b"), (&mut other, "b", "a")] {
        conn.batch_execute(&format!(
            "BEGIN ISOLATION LEVEL SERIALIZABLE; SELECT steward.enter_tenant('{ACME}');
             SELECT count(*) FROM items WHERE label = '{reads}';
             INSERT INTO items (label) VALUES ('{writes}');"
        ))
        .unwrap();
    }
    c.batch_execute("COMMIT").unwrap();
    let err = other.batch_execute("COMMIT").unwrap_err();
    assert_eq!(sqlstate(&err), "40001");
    drop((c, other, listener));
    // DROP DATABASE waits up to 5 s for other sessions to leave; the waker leaves after 1 s
    // idle unless a transaction still counts on it.
    admin
        .batch_execute(&format!("DROP DATABASE {db}"))
        .unwrap_or_else(|e| panic!("the waker stayed: {e:?}"));
}

/// With steward.notify off (the DBA's choice), commits send no wake-up; a tenant role cannot
/// turn it off through connection options.
#[test]
fn notify_off_sends_no_wake_up_and_is_the_dbas() {
    let _turn = one_at_a_time();
    // Preloaded, the setting exists before the connection: setting it is refused.
    let db = fresh_database("e2e_outbox_quiet");
    let err = postgres::Client::connect(
        &steward_tests::conninfo(&db, "e2e_acme", Some("-c steward.notify=off")),
        postgres::NoTls,
    )
    .err()
    .expect("a tenant connection that turns wake-ups off");
    assert_eq!(sqlstate(&err), "42501");

    // Loaded on demand, the option is a placeholder that loading steward replaces.
    let db = fresh_database_on(Server::Plain, "e2e_outbox_quiet");
    let mut tenant = postgres::Client::connect(
        &steward_tests::conninfo_on(
            Server::Plain,
            &db,
            "e2e_acme",
            Some("-c steward.notify=off"),
        ),
        postgres::NoTls,
    )
    .unwrap();
    tenant
        .batch_execute("INSERT INTO items (label) VALUES ('loads steward')")
        .unwrap();
    let shown: String = tenant.query_one("SHOW steward.notify", &[]).unwrap().get(0);
    assert_eq!(
        shown, "on",
        "a tenant's connection options cannot turn wake-ups off"
    );

    let mut listener = connect_on(Server::Plain, &db, "e2e_service");
    listener.batch_execute("LISTEN steward_outbox").unwrap();
    let mut admin = connect_on(Server::Plain, &db, "postgres");
    admin
        .batch_execute(&format!(
            "SET steward.notify = off;
             BEGIN; SELECT steward.enter_tenant('{ACME}');
             INSERT INTO items (label) VALUES ('quiet'); COMMIT;
             RESET steward.notify;"
        ))
        .unwrap();
    listener
        .batch_execute("LISTEN steward_test_marker")
        .unwrap();
    admin.batch_execute("NOTIFY steward_test_marker").unwrap();
    let mut notes = listener.notifications();
    let mut it = notes.timeout_iter(Duration::from_secs(30));
    let first = it.next().unwrap().map(|n| n.channel().to_string());
    assert_eq!(first.as_deref(), Some("steward_test_marker"));
}

/// After erase(), what a consumer reads carries no erased payload.
#[test]
fn erased_payload_never_reaches_consumers() {
    let _turn = one_at_a_time();
    let db = fresh_database("e2e_outbox_erase");
    let mut c = connect(&db, "e2e_service");
    c.batch_execute(&format!(
        "SELECT steward.create_consumer('relay', 'earliest');
         BEGIN; SELECT steward.enter_tenant('{ACME}');
         INSERT INTO items (label) VALUES ('jane@example.com');
         UPDATE items SET label = 'jane.doe@example.com';
         COMMIT;"
    ))
    .unwrap();
    let mut admin = connect(&db, "postgres");
    let id: i64 = admin.query_one("SELECT id FROM items", &[]).unwrap().get(0);
    // Erasure acts in the caller's tenant.
    let mut tx = admin.transaction().unwrap();
    tx.execute(&format!("SELECT steward.enter_tenant('{ACME}')"), &[])
        .unwrap();
    tx.execute(
        "SELECT steward.erase('items', jsonb_build_object('id', $1::bigint), 'GDPR request')",
        &[&id],
    )
    .unwrap();
    tx.commit().unwrap();
    let rows = c
        .query(
            "SELECT event_type, payload IS NULL FROM steward.poll('relay')",
            &[],
        )
        .unwrap();
    assert_eq!(rows.len(), 2);
    for r in rows {
        assert!(
            r.get::<_, bool>(1),
            "{} still carries a payload",
            r.get::<_, String>(0)
        );
    }
}

/// A consumer keeps the heads that seals emit; a superuser who rewrites the chain consistently
/// passes verify_audit() alone, and is caught with the heads from the stream.
#[test]
fn heads_from_the_stream_catch_a_rewritten_chain() {
    let _turn = one_at_a_time();
    let db = fresh_database("e2e_outbox_witness");
    let mut c = connect(&db, "e2e_service");
    c.batch_execute(&format!(
        "SELECT steward.create_consumer('witness', 'earliest');
         BEGIN; SELECT steward.enter_tenant('{ACME}');
         INSERT INTO items (label) VALUES ('a'), ('b'); COMMIT;
         BEGIN; SELECT steward.enter_tenant('{GLOBEX}');
         INSERT INTO items (label) VALUES ('c'); COMMIT;"
    ))
    .unwrap();
    let mut admin = connect(&db, "postgres");
    admin.batch_execute("SELECT steward.seal_audit()").unwrap();
    // A second seal with nothing new but the witness events emits no further witness.
    admin.batch_execute("SELECT steward.seal_audit()").unwrap();
    let heads: Vec<String> = c
        .query(
            "SELECT payload::text FROM steward.poll('witness', 1000)
              WHERE event_type = 'steward.audit.sealed' ORDER BY id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        heads.len(),
        2,
        "one witness per tenant whose chain advanced: {heads:?}"
    );
    let heads = format!("[{}]", heads.join(","));
    let verify = |admin: &mut Client, with_heads: bool| -> bool {
        let q = if with_heads {
            "SELECT bool_and(ok) FROM steward.verify_audit(heads => $1::text::jsonb)"
        } else {
            "SELECT bool_and(ok) FROM steward.verify_audit() WHERE $1::text IS NOT NULL"
        };
        admin.query_one(q, &[&heads]).unwrap().get(0)
    };
    assert!(verify(&mut admin, true));
    // The rewrite: a record changed and acme's whole chain recomputed consistently (the same
    // attack as pg_regress/sql/sealing.sql's, from the one fixture).
    const REWRITE_CHAIN: &str = include_str!("../../pg_regress/fixtures/rewrite_chain.sql");
    admin
        .batch_execute(&format!(
            "SELECT steward.break_glass('test: a superuser rewrites a chain');
             ALTER TABLE steward.change_log DISABLE TRIGGER steward_append_only;
             ALTER TABLE steward.audit_seals DISABLE TRIGGER steward_append_only;
             UPDATE steward.change_log SET actor = 'mallory'
              WHERE id = (SELECT min(id) FROM steward.change_log WHERE tenant_id = '{ACME}');
             {REWRITE_CHAIN}
             SELECT pg_temp.rewrite_chain('{ACME}');
             ALTER TABLE steward.change_log ENABLE ALWAYS TRIGGER steward_append_only;
             ALTER TABLE steward.audit_seals ENABLE ALWAYS TRIGGER steward_append_only;"
        ))
        .unwrap();
    assert!(
        verify(&mut admin, false),
        "the chain alone cannot see a consistent rewrite"
    );
    assert!(!verify(&mut admin, true), "the heads from the stream do");
}

/// prune_outbox() removes only events no face needs: acked by every consumer, past retention,
/// not shown by the audit face; the chain still verifies.
#[test]
fn prune_removes_only_what_no_face_needs() {
    let _turn = one_at_a_time();
    let db = fresh_database("e2e_outbox_prune");
    let mut c = connect(&db, "e2e_service");
    c.batch_execute(&format!(
        "SELECT steward.create_consumer('fast', 'earliest');
         SELECT steward.create_consumer('slow', 'earliest');
         BEGIN; SELECT steward.enter_tenant('{ACME}');
         INSERT INTO items (label) VALUES ('audited row event');
         SELECT steward.emit('prune.tested', 'x', '1', '{{}}');
         SELECT steward.emit('prune.tested', 'x', '2', '{{}}');
         COMMIT;"
    ))
    .unwrap();
    let mut admin = connect(&db, "postgres");
    let prune = |admin: &mut Client, retention: &str| -> i64 {
        admin
            .query_one(
                "SELECT steward.prune_outbox($1::text::interval)",
                &[&retention],
            )
            .unwrap()
            .get(0)
    };
    let ack_all = |c: &mut Client, consumer: &str| {
        c.execute(
            "SELECT steward.ack($1, (SELECT max(id) FROM steward.poll($1, 1000)))",
            &[&consumer],
        )
        .unwrap();
    };
    admin.batch_execute("SELECT steward.seal_audit()").unwrap();
    // Sealed, past retention, but one consumer has not acked: kept.
    ack_all(&mut c, "fast");
    assert_eq!(prune(&mut admin, "0"), 0);
    // A later event, acked by both but not sealed yet: kept (below, the count is 2, not 3).
    c.batch_execute(&format!(
        "BEGIN; SELECT steward.enter_tenant('{ACME}');
         SELECT steward.emit('prune.tested', 'x', '3', '{{}}'); COMMIT;"
    ))
    .unwrap();
    ack_all(&mut c, "fast");
    ack_all(&mut c, "slow");
    // Within retention: kept.
    assert_eq!(prune(&mut admin, "1 hour"), 0);
    // Past retention, acked by both, sealed: the two domain events go; the audited row event
    // stays for the audit face, the unsealed one for the chain.
    assert_eq!(prune(&mut admin, "0"), 2);
    let left: Vec<String> = admin
        .query("SELECT event_type FROM steward.change_log ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(left[0], "items.created");
    assert_eq!(left.iter().filter(|t| *t == "prune.tested").count(), 1);
    let ok: bool = admin
        .query_one("SELECT bool_and(ok) FROM steward.verify_audit()", &[])
        .unwrap()
        .get(0);
    assert!(ok, "the tombstones keep the chain verifiable");
    // Plain SQL still cannot delete a record.
    let err = admin
        .batch_execute("DELETE FROM steward.change_log")
        .unwrap_err();
    assert_eq!(sqlstate(&err), "ST403");
}

/// A backend that lived through `DROP EXTENSION` and `CREATE EXTENSION` still validates against
/// the schemas registered in the new extension (its schema cache follows the new catalog).
#[test]
fn schemas_registered_after_the_extension_is_recreated_are_enforced() {
    let _turn = one_at_a_time();
    let db = fresh_database("e2e_outbox_recreated");
    let mut admin = connect(&db, "postgres");
    let emit_in_acme = |c: &mut Client, payload: &str| {
        c.batch_execute(&format!(
            "BEGIN; SELECT steward.enter_tenant('{ACME}');
             SELECT steward.emit('order.placed', 'order', '1', '{payload}'); COMMIT;"
        ))
    };
    // This backend reads the schema catalog once (no schema yet) ...
    emit_in_acme(&mut admin, "{}").unwrap();
    // ... then the extension is dropped and created again, on the same connection.
    admin
        .batch_execute(&format!(
            "BEGIN; SELECT steward.break_glass('reinstall, in a test'); DROP EXTENSION steward CASCADE;
             CREATE EXTENSION steward; COMMIT;
             INSERT INTO steward.tenants (tenant_id, slug, display_name) VALUES ('{ACME}', 'acme', 'Acme');"
        ))
        .unwrap();
    emit_in_acme(&mut admin, "{}").unwrap();
    admin
        .batch_execute(
            r#"SELECT steward.register_event_type('order.placed', 1,
                 '{"type": "object", "required": ["amount"]}')"#,
        )
        .unwrap();
    let err = emit_in_acme(&mut admin, "{}").expect_err("a payload the new schema refuses");
    assert_eq!(sqlstate(&err), "ST422", "{err}");
    admin.batch_execute("ROLLBACK").unwrap();
    emit_in_acme(&mut admin, r#"{"amount": 5}"#).unwrap();
}
