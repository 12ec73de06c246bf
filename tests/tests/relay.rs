//! steward-service relay against real servers: Postgres, nats-server with JetStream and a webhook
//! receiver. Every committed event reaches every sink at least once, signed as Standard Webhooks
//! say (checked by the `standardwebhooks` package), in order per endpoint; failures are retried
//! on the schedule and end as dead letters; a slow endpoint delays no other; private targets are
//! refused; a relay killed at any moment loses nothing; several relays share the sinks.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::Value;
use steward_service::config::{Cli, Command};
use steward_tests::servers::{
    free_port, verify_with_standardwebhooks, Answer, NatsServer, PgCluster, Receiver, Request,
};
use steward_tests::{connect, conninfo, fresh_database, sqlstate, Lcg, ACME, GLOBEX};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The relay's login role, a member of steward_relay (roles are the cluster's).
fn relay_role(admin: &mut postgres::Client) {
    admin
        .batch_execute(
            "DO $$ BEGIN CREATE ROLE e2e_relay LOGIN; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$;
             GRANT steward_relay TO e2e_relay;",
        )
        .unwrap();
}

fn setup(name: &str) -> String {
    let db = fresh_database(name);
    relay_role(&mut connect("postgres", "postgres"));
    db
}

/// An endpoint of `tenant` at `url` for `types` (None: every type): (endpoint_id, secret).
fn webhook(db: &str, tenant: &str, url: &str, types: Option<&[&str]>) -> (String, String) {
    let mut c = connect(db, "e2e_service");
    let mut tx = c.transaction().unwrap();
    tx.execute("SELECT steward.enter_tenant($1::text::uuid)", &[&tenant])
        .unwrap();
    let types: Option<Vec<String>> = types.map(|t| t.iter().map(|s| s.to_string()).collect());
    let row = tx
        .query_one(
            "SELECT endpoint_id::text, secret FROM steward.create_webhook($1, $2)",
            &[&url, &types],
        )
        .unwrap();
    tx.commit().unwrap();
    (row.get(0), row.get(1))
}

/// Emits `n` domain events of `event_type` in `tenant`, one transaction each, annotated with a
/// traceparent; returns their event ids in commit order.
fn emit(db: &str, tenant: &str, event_type: &str, n: usize) -> Vec<String> {
    let mut c = connect(db, "e2e_service");
    let mut ids = Vec::new();
    for i in 0..n {
        let mut tx = c.transaction().unwrap();
        tx.execute("SELECT steward.enter_tenant($1::text::uuid)", &[&tenant])
            .unwrap();
        tx.execute(
            "SELECT steward.annotate('e2e', 'req-' || $1::text, '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01')",
            &[&(i as i64).to_string()],
        )
        .unwrap();
        let id: String = tx
            .query_one(
                "SELECT steward.emit($1, 'thing', $2, jsonb_build_object('n', $3::int))::text",
                &[&event_type, &i.to_string(), &(i as i32)],
            )
            .unwrap()
            .get(0);
        tx.commit().unwrap();
        ids.push(id);
    }
    ids
}

/// A relay in this process until `stop` is sent.
struct InProcess {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

fn relay_args(db_url: &str, extra: &[&str]) -> steward_service::config::RelayArgs {
    let mut argv: Vec<String> = vec![
        "steward-service".into(),
        "relay".into(),
        "--database-url".into(),
        db_url.into(),
        "--lease-ttl-ms".into(),
        "2000".into(),
        "--poll-interval-ms".into(),
        "200".into(),
    ];
    argv.extend(extra.iter().map(|s| s.to_string()));
    match Cli::parse_from(argv).command {
        Command::Relay(a) => a,
        _ => unreachable!(),
    }
}

impl InProcess {
    fn start(rt: &tokio::runtime::Runtime, db: &str, extra: &[&str]) -> InProcess {
        let args = relay_args(&conninfo(db, "e2e_relay", None), extra);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let done = rt.spawn(steward_service::relay::run(args, async move {
            let _ = rx.await;
        }));
        InProcess {
            stop: Some(tx),
            done: Some(done),
        }
    }

    fn stop(&mut self, rt: &tokio::runtime::Runtime) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(d) = self.done.take() {
            rt.block_on(d).unwrap().unwrap();
        }
    }
}

/// (event_id, attempt, status, http_status, error, at)
type Attempt = (String, i32, String, Option<i32>, Option<String>, f64);

/// The attempts on record for an endpoint, oldest first: (event_id, attempt, status, http, error, at).
fn attempts(db: &str, endpoint: &str) -> Vec<Attempt> {
    connect(db, "postgres")
        .query(
            "SELECT event_id::text, attempt, status, http_status, error, extract(epoch FROM at)::float8
               FROM steward.webhook_deliveries WHERE endpoint_id = $1::text::uuid ORDER BY id",
            &[&endpoint],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
        .collect()
}

fn wait_for(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "gave up waiting: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn body(r: &Request) -> Value {
    serde_json::from_str(&r.body).unwrap()
}

#[test]
fn webhooks_are_signed_in_order_per_endpoint_and_per_tenant() {
    let db = setup("e2e_relay_webhooks");
    let rt = rt();
    let rx = Receiver::start(&rt);
    let (acme_all, acme_secret) = webhook(&db, ACME, &rx.url("/acme"), None);
    let (_, paid_secret) = webhook(&db, ACME, &rx.url("/acme-paid"), Some(&["invoice.paid"]));
    let (_, globex_secret) = webhook(&db, GLOBEX, &rx.url("/globex"), None);
    let mut relay = InProcess::start(&rt, &db, &["--allow-private-targets", "127.0.0.1/32"]);
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.extend(emit(&db, ACME, "invoice.paid", 10));
        ids.extend(emit(&db, ACME, &format!("invoice.sent.{i}"), 10));
    }
    let globex = emit(&db, GLOBEX, "invoice.paid", 20);
    assert_eq!(rx.wait_delivered("/acme", 80, Duration::from_secs(60)), 80);
    assert_eq!(
        rx.wait_delivered("/acme-paid", 40, Duration::from_secs(60)),
        40
    );
    assert_eq!(
        rx.wait_delivered("/globex", 20, Duration::from_secs(60)),
        20
    );
    relay.stop(&rt);

    // In commit order (one writer: the order it wrote), each event once, id = event_id.
    assert_eq!(rx.delivered_ids("/acme"), ids);
    assert_eq!(rx.delivered_ids("/globex"), globex);
    let paid: Vec<String> = ids.chunks(10).step_by(2).flatten().cloned().collect();
    assert_eq!(rx.delivered_ids("/acme-paid"), paid);
    // No tenant's event reaches another tenant's endpoint.
    for r in rx.requests("/globex") {
        let b = body(&r);
        assert_eq!(b["data"]["tenant_id"], GLOBEX);
        assert_eq!(r.headers["steward-tenant"], GLOBEX);
    }
    for r in rx.requests("/acme") {
        let b = body(&r);
        assert_eq!(b["data"]["tenant_id"], ACME, "{b}");
        assert_eq!(
            b["data"]["event_id"].as_str(),
            r.headers.get("webhook-id").map(|s| s.as_str())
        );
        assert_eq!(b["type"], b["data"]["event_type"]);
        assert_eq!(r.headers["content-type"], "application/json");
        assert_eq!(
            r.headers["traceparent"],
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        );
        assert!(r.headers["user-agent"].starts_with("steward-relay/"));
    }
    // Signed as Standard Webhooks say: the standardwebhooks package verifies every request.
    verify_with_standardwebhooks(&acme_secret, &rx.requests("/acme"));
    verify_with_standardwebhooks(&paid_secret, &rx.requests("/acme-paid"));
    verify_with_standardwebhooks(&globex_secret, &rx.requests("/globex"));
    // And a request signed with another endpoint's secret does not verify.
    let wrong = std::panic::catch_unwind(|| {
        verify_with_standardwebhooks(&globex_secret, &rx.requests("/acme")[..1])
    });
    assert!(
        wrong.is_err(),
        "another endpoint's secret verified a request"
    );

    // Each attempt is on record; a tenant sees its own endpoints' attempts only.
    let acme_attempts = attempts(&db, &acme_all);
    assert_eq!(acme_attempts.len(), 80);
    assert!(acme_attempts
        .iter()
        .all(|a| a.2 == "delivered" && a.1 == 1 && a.3 == Some(200)));
    let mut tenant = connect(&db, "e2e_acme");
    let seen: i64 = tenant
        .query_one("SELECT count(*) FROM steward.webhook_deliveries", &[])
        .unwrap()
        .get(0);
    assert_eq!(seen, 120);
    let foreign: i64 = tenant
        .query_one(
            "SELECT count(*) FROM steward.webhook_deliveries WHERE tenant_id <> $1::text::uuid",
            &[&ACME],
        )
        .unwrap()
        .get(0);
    assert_eq!(foreign, 0);
    // Without a tenant, no attempts at all: ST001, never every tenant's.
    let err = connect(&db, "e2e_nogrant")
        .query("SELECT * FROM steward.webhook_deliveries", &[])
        .unwrap_err();
    assert_eq!(sqlstate(&err), "ST001");
}

#[test]
fn retries_follow_the_schedule_honour_retry_after_and_end_as_dead_letters() {
    let db = setup("e2e_relay_retries");
    let rt = rt();
    let rx = Receiver::start(&rt);
    let metrics_port = free_port();
    let (flaky, _) = webhook(&db, ACME, &rx.url("/flaky"), Some(&["t.flaky"]));
    let (slow, _) = webhook(&db, ACME, &rx.url("/slowdown"), Some(&["t.slowdown"]));
    let (dead, _) = webhook(&db, ACME, &rx.url("/dead"), Some(&["t.dead"]));
    let (gone, _) = webhook(&db, ACME, &rx.url("/gone"), Some(&["t.gone"]));
    rx.answer(
        "/flaky",
        Answer::Fail {
            status: 503,
            n: 2,
            retry_after: None,
        },
    );
    rx.answer(
        "/slowdown",
        Answer::Fail {
            status: 429,
            n: 1,
            retry_after: Some(2),
        },
    );
    rx.answer(
        "/dead",
        Answer::Fail {
            status: 500,
            n: 1_000_000,
            retry_after: None,
        },
    );
    rx.answer("/gone", Answer::Gone);
    let mut relay = InProcess::start(
        &rt,
        &db,
        &[
            "--allow-private-targets",
            "127.0.0.1/32",
            "--retry-schedule",
            "300ms,600ms,900ms",
            "--metrics-listen",
            &format!("127.0.0.1:{metrics_port}"),
        ],
    );
    let flaky_ids = emit(&db, ACME, "t.flaky", 3);
    let slow_ids = emit(&db, ACME, "t.slowdown", 1);
    let dead_ids = emit(&db, ACME, "t.dead", 1);
    let gone_ids = emit(&db, ACME, "t.gone", 1);

    // Failed twice, then delivered; the later events only after it, in order.
    assert_eq!(rx.wait_delivered("/flaky", 3, Duration::from_secs(60)), 3);
    assert_eq!(rx.delivered_ids("/flaky"), flaky_ids);
    let reqs = rx.requests("/flaky");
    assert_eq!(reqs.len(), 5);
    assert!(reqs[..3]
        .iter()
        .all(|r| r.headers["webhook-id"] == flaky_ids[0]));
    // The schedule (with at most 20% jitter): 300 ms, then 600 ms.
    assert!(
        reqs[1].at - reqs[0].at >= Duration::from_millis(240),
        "{:?}",
        reqs[1].at - reqs[0].at
    );
    assert!(
        reqs[2].at - reqs[1].at >= Duration::from_millis(480),
        "{:?}",
        reqs[2].at - reqs[1].at
    );
    let a = attempts(&db, &flaky);
    let first: Vec<(i32, &str, Option<i32>)> =
        a[..3].iter().map(|x| (x.1, x.2.as_str(), x.3)).collect();
    assert_eq!(
        first,
        vec![
            (1, "failed", Some(503)),
            (2, "failed", Some(503)),
            (3, "delivered", Some(200))
        ]
    );

    // Retry-After: 2 seconds, not the schedule's 300 ms.
    assert_eq!(
        rx.wait_delivered("/slowdown", 1, Duration::from_secs(60)),
        1
    );
    let reqs = rx.requests("/slowdown");
    assert_eq!(reqs.len(), 2);
    assert!(
        reqs[1].at - reqs[0].at >= Duration::from_secs(2),
        "{:?}",
        reqs[1].at - reqs[0].at
    );
    assert_eq!(reqs[1].headers["webhook-id"], slow_ids[0]);

    // The budget: the first attempt and three retries, then a dead letter on record.
    wait_for(Duration::from_secs(60), "the dead letter", || {
        attempts(&db, &dead).iter().any(|a| a.2 == "dead")
    });
    let a = attempts(&db, &dead);
    let statuses: Vec<(i32, &str)> = a.iter().map(|x| (x.1, x.2.as_str())).collect();
    assert_eq!(
        statuses,
        vec![(1, "failed"), (2, "failed"), (3, "failed"), (4, "dead")]
    );
    assert!(a.iter().all(|x| x.0 == dead_ids[0] && x.3 == Some(500)));
    assert_eq!(rx.requests("/dead").len(), 4);

    // 410 Gone: disabled at once, with the reason recorded; nothing more is sent to it.
    wait_for(Duration::from_secs(30), "the endpoint disabled", || {
        let r = connect(&db, "postgres")
            .query_one(
                "SELECT disabled_reason FROM steward.webhook_endpoints WHERE endpoint_id = $1::text::uuid",
                &[&gone],
            )
            .unwrap();
        r.get::<_, Option<String>>(0).is_some()
    });
    let reason: String = connect(&db, "postgres")
        .query_one(
            "SELECT disabled_reason FROM steward.webhook_endpoints WHERE endpoint_id = $1::text::uuid",
            &[&gone],
        )
        .unwrap()
        .get(0);
    assert!(
        reason.contains("410") && reason.contains(&gone_ids[0]),
        "{reason}"
    );
    assert_eq!(
        attempts(&db, &gone)
            .iter()
            .map(|a| a.2.as_str())
            .collect::<Vec<_>>(),
        vec!["gone"]
    );

    // Metrics, per sink: lag, in flight, attempts, failures, dead letters, latency.
    let text = rt.block_on(async {
        reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    let dead_sink = format!("sink=\"webhook:{dead}\"");
    for series in [
        "steward_relay_lag_events",
        "steward_relay_in_flight_events",
        "steward_relay_attempts_total",
        "steward_relay_failures_total",
        "steward_relay_dead_letters_total",
        "steward_relay_delivery_latency_seconds_bucket",
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(series) && l.contains(&dead_sink)),
            "{series} for {dead_sink} missing:\n{text}"
        );
    }
    assert!(
        text.contains(&format!(
            "steward_relay_dead_letters_total{{{dead_sink}}} 1"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("steward_relay_attempts_total{{{dead_sink}}} 4")),
        "{text}"
    );
    assert!(
        text.contains(&format!("steward_relay_failures_total{{{dead_sink}}} 4")),
        "{text}"
    );

    // redeliver(): the dead letter goes again (same webhook-id), and so does the disabled
    // endpoint's event once it is enabled again.
    rx.answer("/dead", Answer::Ok);
    rx.answer("/gone", Answer::Ok);
    let mut c = connect(&db, "e2e_acme");
    c.execute(
        "SELECT steward.redeliver($1::text::uuid, now() - interval '1 hour')",
        &[&dead],
    )
    .unwrap();
    c.execute(
        "SELECT steward.redeliver($1::text::uuid, now() - interval '1 hour')",
        &[&gone],
    )
    .unwrap();
    assert_eq!(rx.wait_delivered("/dead", 1, Duration::from_secs(60)), 1);
    assert_eq!(rx.delivered_ids("/dead"), dead_ids);
    assert_eq!(rx.wait_delivered("/gone", 1, Duration::from_secs(60)), 1);
    assert_eq!(rx.delivered_ids("/gone"), gone_ids);
    let last = attempts(&db, &dead).pop().unwrap();
    assert_eq!((last.1, last.2.as_str()), (1, "delivered"));
    // A tenant cannot redeliver another tenant's endpoint (ST400: not found there).
    let mut g = connect(&db, "e2e_service");
    let mut tx = g.transaction().unwrap();
    tx.execute("SELECT steward.enter_tenant($1::text::uuid)", &[&GLOBEX])
        .unwrap();
    let err = tx
        .execute(
            "SELECT steward.redeliver($1::text::uuid, now() - interval '1 hour')",
            &[&dead],
        )
        .unwrap_err();
    assert_eq!(sqlstate(&err), "ST400");
    drop(tx);
    relay.stop(&rt);
    let _ = slow;
}

#[test]
fn a_hanging_endpoint_never_delays_the_others() {
    let db = setup("e2e_relay_hang");
    let rt = rt();
    let rx = Receiver::start(&rt);
    webhook(&db, ACME, &rx.url("/hang"), None);
    webhook(&db, ACME, &rx.url("/fast"), None);
    rx.answer("/hang", Answer::Hang);
    let mut relay = InProcess::start(
        &rt,
        &db,
        &[
            "--allow-private-targets",
            "127.0.0.1/32",
            "--webhook-timeout-ms",
            "600000",
        ],
    );
    let ids = emit(&db, ACME, "t.any", 300);
    assert_eq!(
        rx.wait_delivered("/fast", 300, Duration::from_secs(120)),
        300
    );
    assert_eq!(rx.delivered_ids("/fast"), ids);
    // All of it while the other endpoint's first request is still unanswered.
    assert_eq!(rx.requests("/hang").len(), 1);
    assert_eq!(rx.finished("/hang"), 0);
    relay.stop(&rt);
}

#[test]
fn private_and_loopback_targets_are_refused_unless_allowed() {
    let db = setup("e2e_relay_ssrf");
    let rt = rt();
    let rx = Receiver::start(&rt);
    let port = rx.addr.port();
    let targets = [
        format!("http://127.0.0.1:{port}/literal"),
        format!("http://localhost:{port}/name"),
        format!("http://[::ffff:127.0.0.1]:{port}/mapped"),
        format!("http://0.0.0.0:{port}/any"),
        "http://169.254.169.254/latest/meta-data".to_string(),
    ];
    let endpoints: Vec<String> = targets
        .iter()
        .map(|t| webhook(&db, ACME, t, None).0)
        .collect();
    // Allowed: only 10.0.0.0/8, which none of them is in.
    let mut relay = InProcess::start(
        &rt,
        &db,
        &[
            "--allow-private-targets",
            "10.0.0.0/8",
            "--retry-schedule",
            "100ms",
        ],
    );
    emit(&db, ACME, "t.any", 1);
    for (t, e) in targets.iter().zip(&endpoints) {
        wait_for(Duration::from_secs(60), "a refused attempt", || {
            attempts(&db, e).iter().any(|a| a.2 == "dead")
        });
        let a = attempts(&db, e);
        assert!(
            a.iter()
                .all(|x| x.3.is_none() && x.4.as_deref().unwrap_or("").contains("refused")),
            "{t}: {a:?}"
        );
    }
    relay.stop(&rt);
    for path in ["/literal", "/name", "/mapped", "/any"] {
        assert!(rx.requests(path).is_empty(), "{path} was reached");
    }
    // The same loopback receiver is reached once allowed explicitly.
    let (_, _) = webhook(&db, ACME, &rx.url("/allowed"), None);
    let mut relay = InProcess::start(&rt, &db, &["--allow-private-targets", "127.0.0.1/32"]);
    let ids = emit(&db, ACME, "t.any", 1);
    assert_eq!(rx.wait_delivered("/allowed", 1, Duration::from_secs(60)), 1);
    assert_eq!(rx.delivered_ids("/allowed"), ids);
    relay.stop(&rt);
}

/// Every message of the stream: (subject, headers, payload).
async fn stream_messages(
    js: &async_nats::jetstream::Context,
    stream: &str,
) -> Vec<(String, HashMap<String, String>, Value)> {
    let s = js.get_stream(stream).await.unwrap();
    let n = s.cached_info().state.messages;
    let mut out = Vec::new();
    for seq in 1..=s.cached_info().state.last_sequence {
        let Ok(m) = s.get_raw_message(seq).await else {
            continue;
        };
        let mut h = HashMap::new();
        for (k, v) in m.headers.iter() {
            h.insert(
                k.to_string(),
                v.iter().next().map(|x| x.to_string()).unwrap_or_default(),
            );
        }
        out.push((
            m.subject.to_string(),
            h,
            serde_json::from_slice(&m.payload).unwrap(),
        ));
    }
    assert_eq!(out.len() as u64, n);
    out
}

fn jetstream(rt: &tokio::runtime::Runtime, nats: &NatsServer) -> async_nats::jetstream::Context {
    rt.block_on(async {
        async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap())
    })
}

async fn stream_count(js: &async_nats::jetstream::Context, stream: &str) -> u64 {
    match js.get_stream(stream).await {
        Ok(mut s) => s.info().await.map(|i| i.state.messages).unwrap_or(0),
        Err(_) => 0,
    }
}

#[test]
fn nats_gets_one_subject_per_tenant_and_type_with_ids_and_no_duplicates() {
    let db = setup("e2e_relay_nats");
    let rt = rt();
    let nats = NatsServer::start("subjects");
    let acme = emit(&db, ACME, "invoice.paid", 150);
    let globex = emit(&db, GLOBEX, "order.shipped", 100);
    let mut relay = InProcess::start(
        &rt,
        &db,
        &[
            "--nats-url",
            &nats.url(),
            "--max-in-flight",
            "16",
            "--batch-size",
            "64",
        ],
    );
    let js = jetstream(&rt, &nats);
    wait_for(Duration::from_secs(60), "250 messages", || {
        rt.block_on(stream_count(&js, "STEWARD")) == 250
    });
    relay.stop(&rt);
    let msgs = rt.block_on(stream_messages(&js, "STEWARD"));
    let mut by_id = HashMap::new();
    for (subject, headers, payload) in &msgs {
        let id = headers["Nats-Msg-Id"].clone();
        assert_eq!(payload["event_id"].as_str(), Some(id.as_str()));
        let tenant = payload["tenant_id"].as_str().unwrap();
        assert_eq!(headers["steward-tenant"], tenant);
        assert_eq!(
            subject,
            &format!(
                "steward.{tenant}.{}",
                payload["event_type"].as_str().unwrap()
            )
        );
        assert_eq!(
            headers["traceparent"],
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        );
        by_id.insert(id, subject.clone());
    }
    for id in &acme {
        assert_eq!(by_id[id], format!("steward.{ACME}.invoice.paid"));
    }
    for id in &globex {
        assert_eq!(by_id[id], format!("steward.{GLOBEX}.order.shipped"));
    }
    // In commit order: each tenant's events as written.
    let order: Vec<&String> = msgs.iter().map(|m| &m.1["Nats-Msg-Id"]).collect();
    let acme_order: Vec<&String> = order.iter().copied().filter(|i| acme.contains(i)).collect();
    assert_eq!(acme_order, acme.iter().collect::<Vec<_>>());
    // The stream's duplicate window is the relay's horizon (ten minutes by default).
    let window = rt.block_on(async {
        js.get_stream("STEWARD")
            .await
            .unwrap()
            .cached_info()
            .config
            .duplicate_window
    });
    assert_eq!(window, Duration::from_secs(600));

    // A relay that sends everything again (its consumer moved back, as after a crash before the
    // ack) stores no duplicate within that window.
    connect(&db, "postgres")
        .execute(
            "SELECT steward.seek('relay', now() - interval '1 hour')",
            &[],
        )
        .unwrap();
    let mut relay = InProcess::start(&rt, &db, &["--nats-url", &nats.url()]);
    wait_for(Duration::from_secs(60), "the replay acked", || {
        connect(&db, "postgres")
            .query_one(
                "SELECT behind FROM steward.consumer_lag WHERE consumer = 'relay'",
                &[],
            )
            .unwrap()
            .get::<_, i64>(0)
            == 0
    });
    relay.stop(&rt);
    assert_eq!(rt.block_on(stream_count(&js, "STEWARD")), 250);
}

/// `n` writers (two tenants) insert `per_writer` rows each, one transaction a row; a row's key
/// says its writer and sequence, so a retried transaction whose COMMIT's outcome was lost
/// inserts nothing twice (ON CONFLICT DO NOTHING: no row, no event).
fn writers(
    conn: String,
    n: usize,
    per_writer: usize,
    committed: Arc<AtomicUsize>,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..n)
        .map(|w| {
            let conn = conn.clone();
            let committed = committed.clone();
            std::thread::spawn(move || {
                let tenant = if w % 2 == 0 { ACME } else { GLOBEX };
                let mut seq = 0;
                let mut client: Option<postgres::Client> = None;
                while seq < per_writer {
                    let c = match client.as_mut() {
                        Some(c) if !c.is_closed() => c,
                        _ => match postgres::Client::connect(&conn, postgres::NoTls) {
                            Ok(c) => client.insert(c),
                            Err(_) => {
                                std::thread::sleep(Duration::from_millis(100));
                                continue;
                            }
                        },
                    };
                    let r = (|| -> Result<(), postgres::Error> {
                        let mut tx = c.transaction()?;
                        tx.execute("SELECT steward.enter_tenant($1::text::uuid)", &[&tenant])?;
                        tx.execute(
                            "INSERT INTO crash_rows (writer, seq) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                            &[&(w as i32), &(seq as i32)],
                        )?;
                        tx.commit()
                    })();
                    match r {
                        Ok(()) => {
                            seq += 1;
                            committed.fetch_add(1, Ordering::Relaxed);
                            // Paced (about 20 s in all), so that the kills and the restarts
                            // fall while the writers write.
                            std::thread::sleep(Duration::from_millis(6));
                        }
                        Err(_) => {
                            client = None;
                            std::thread::sleep(Duration::from_millis(50));
                        }
                    }
                }
            })
        })
        .collect()
}

/// The relay's binary, killed with SIGKILL at random moments while it works.
struct Binary {
    child: std::process::Child,
}

impl Binary {
    fn start(db_url: &str, extra: &[String], log: &std::path::Path) -> Binary {
        let bin = std::env::var("STEWARD_SERVICE_BIN")
            .expect("STEWARD_SERVICE_BIN is set by cargo xtask test");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = std::process::Command::new(bin)
            .arg("relay")
            .args(extra)
            .env("STEWARD_DATABASE_URL", db_url)
            .env("RUST_LOG", "warn")
            .stderr(log)
            .spawn()
            .unwrap();
        Binary { child }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The first deliveries of each webhook-id on `path` are, per writer, in the order it wrote.
fn assert_per_writer_order(rx: &Receiver, path: &str, event_writer: &HashMap<String, (i32, i32)>) {
    let mut last: HashMap<i32, i32> = HashMap::new();
    for id in rx.delivered_ids(path) {
        let (w, seq) = event_writer[&id];
        let prev = last.insert(w, seq);
        assert!(
            prev.is_none_or(|p| p < seq),
            "{path}: writer {w}'s row {seq} came after {prev:?}"
        );
    }
}

#[test]
fn killed_twenty_times_while_postgres_and_nats_restart_it_loses_nothing() {
    const WRITERS: usize = 8;
    const PER_WRITER: usize = 2_500;
    const TOTAL: usize = WRITERS * PER_WRITER;
    let pg = PgCluster::start("relay-crash");
    {
        let mut admin =
            postgres::Client::connect(&pg.conninfo("postgres", "postgres"), postgres::NoTls)
                .unwrap();
        admin.batch_execute("CREATE DATABASE crash").unwrap();
        admin
            .batch_execute("DO $$ BEGIN CREATE ROLE e2e_writer LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
            .unwrap();
    }
    let mut c =
        postgres::Client::connect(&pg.conninfo("crash", "postgres"), postgres::NoTls).unwrap();
    c.batch_execute(&format!(
        "CREATE EXTENSION steward;
         INSERT INTO steward.tenants (tenant_id, slug, display_name)
              VALUES ('{ACME}', 'acme', 'Acme'), ('{GLOBEX}', 'globex', 'Globex');
         SELECT steward.trust_role('e2e_writer');
         CREATE TABLE crash_rows (writer int, seq int, tenant_id uuid NOT NULL, PRIMARY KEY (writer, seq));
         GRANT SELECT, INSERT ON crash_rows TO e2e_writer;
         SELECT steward.govern('crash_rows', versioned => false);"
    ))
    .unwrap();
    relay_role(&mut c);
    let rt = rt();
    let rx = Receiver::start(&rt);
    let mut nats = NatsServer::start("crash");
    let mut secrets = HashMap::new();
    for (tenant, path) in [(ACME, "/acme"), (GLOBEX, "/globex")] {
        let mut tx = c.transaction().unwrap();
        tx.execute("SELECT steward.enter_tenant($1::text::uuid)", &[&tenant])
            .unwrap();
        let row = tx
            .query_one(
                "SELECT secret FROM steward.create_webhook($1)",
                &[&rx.url(path)],
            )
            .unwrap();
        tx.commit().unwrap();
        secrets.insert(path, row.get::<_, String>(0));
    }
    let url = pg.conninfo("crash", "e2e_relay");
    let log = std::env::temp_dir().join(format!("steward-relay-crash-{}.log", std::process::id()));
    let args: Vec<String> = [
        "--nats-url",
        &nats.url(),
        "--allow-private-targets",
        "127.0.0.1/32",
        "--relay-id",
        "crash-relay",
        "--lease-ttl-ms",
        "3000",
        "--poll-interval-ms",
        "200",
        "--retry-schedule",
        "100ms,200ms,400ms,800ms,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut relay = Binary::start(&url, &args, &log);
    let committed = Arc::new(AtomicUsize::new(0));
    let threads = writers(
        pg.conninfo("crash", "e2e_writer"),
        WRITERS,
        PER_WRITER,
        committed.clone(),
    );
    let mut lcg = Lcg(20_261_202);
    let mut during = Vec::new();
    for kill in 0..20 {
        std::thread::sleep(Duration::from_millis(300 + lcg.next(900)));
        relay.kill();
        if kill == 6 {
            during.push(("Postgres restarted", committed.load(Ordering::Relaxed)));
            pg.restart();
        }
        if kill == 12 {
            during.push(("nats-server restarted", committed.load(Ordering::Relaxed)));
            nats.restart();
        }
        relay = Binary::start(&url, &args, &log);
    }
    during.push(("the 20th kill", committed.load(Ordering::Relaxed)));
    // The restarts fell while events were being written.
    for (what, n) in &during[..2] {
        assert!(
            *n > 0 && *n < TOTAL,
            "{what} with {n} of {TOTAL} events committed"
        );
    }
    eprintln!("committed when: {during:?}");
    for t in threads {
        t.join().unwrap();
    }
    // Every committed event: exactly TOTAL of them.
    let mut c =
        postgres::Client::connect(&pg.conninfo("crash", "postgres"), postgres::NoTls).unwrap();
    let events: Vec<(String, String, i32, i32)> = c
        .query(
            "SELECT o.event_id::text, o.tenant_id::text, (o.payload->>'writer')::int, (o.payload->>'seq')::int
               FROM steward.outbox o ORDER BY o.id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(events.len(), TOTAL);
    let per_tenant = TOTAL / 2;
    assert_eq!(
        rx.wait_delivered("/acme", per_tenant, Duration::from_secs(300)),
        per_tenant
    );
    assert_eq!(
        rx.wait_delivered("/globex", per_tenant, Duration::from_secs(300)),
        per_tenant
    );
    let js = jetstream(&rt, &nats);
    wait_for(
        Duration::from_secs(300),
        "the stream to hold every event",
        || rt.block_on(stream_count(&js, "STEWARD")) >= TOTAL as u64,
    );
    relay.kill();
    // Exactly TOTAL messages: every event, none twice.
    assert_eq!(rt.block_on(stream_count(&js, "STEWARD")), TOTAL as u64);
    let stored: HashSet<String> = rt
        .block_on(stream_messages(&js, "STEWARD"))
        .into_iter()
        .map(|m| m.1["Nats-Msg-Id"].clone())
        .collect();
    let all: HashSet<String> = events.iter().map(|e| e.0.clone()).collect();
    assert_eq!(stored, all);
    // Every event at its tenant's endpoint; duplicates carry the same webhook-id (they are the
    // same event again), and no event of the other tenant.
    let writer_of: HashMap<String, (i32, i32)> =
        events.iter().map(|e| (e.0.clone(), (e.2, e.3))).collect();
    for (tenant, path) in [(ACME, "/acme"), (GLOBEX, "/globex")] {
        let want: HashSet<String> = events
            .iter()
            .filter(|e| e.1 == tenant)
            .map(|e| e.0.clone())
            .collect();
        let got: HashSet<String> = rx.delivered_ids(path).into_iter().collect();
        assert_eq!(got, want, "{path}");
        let requests = rx.requests(path);
        for r in &requests {
            let b = body(r);
            assert_eq!(
                b["data"]["event_id"].as_str(),
                r.headers.get("webhook-id").map(|s| s.as_str())
            );
        }
        assert_per_writer_order(&rx, path, &writer_of);
        verify_with_standardwebhooks(&secrets[path], &requests[..200.min(requests.len())]);
        eprintln!(
            "{path}: {} requests for {} events",
            requests.len(),
            want.len()
        );
    }
}

#[test]
fn two_relays_share_the_sinks_and_one_takes_over_when_the_other_dies() {
    let db = setup("e2e_relay_two");
    let rt = rt();
    let rx = Receiver::start(&rt);
    let nats = NatsServer::start("two");
    let paths = ["/a", "/b", "/c", "/d", "/e"];
    let endpoints: Vec<String> = paths
        .iter()
        .map(|p| webhook(&db, ACME, &rx.url(p), None).0)
        .collect();
    let url = conninfo(&db, "e2e_relay", None);
    let log = std::env::temp_dir().join(format!("steward-relay-two-{}.log", std::process::id()));
    let common = |id: &str| -> Vec<String> {
        [
            "--nats-url",
            &nats.url(),
            "--allow-private-targets",
            "127.0.0.1/32",
            "--relay-id",
            id,
            "--lease-ttl-ms",
            "2000",
            "--poll-interval-ms",
            "200",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let mut one = Binary::start(&url, &common("relay-one"), &log);
    let mut two = Binary::start(&url, &common("relay-two"), &log);
    // Both hold sinks: six (five endpoints and NATS), three each once they have settled.
    wait_for(Duration::from_secs(60), "the sinks shared", || {
        let rows = connect(&db, "postgres")
            .query(
                "SELECT relay, count(*) FROM steward.relay_leases GROUP BY relay",
                &[],
            )
            .unwrap();
        rows.len() == 2 && rows.iter().all(|r| r.get::<_, i64>(1) == 3)
    });
    let ids = emit(&db, ACME, "t.shared", 200);
    for p in paths {
        assert_eq!(
            rx.wait_delivered(p, 200, Duration::from_secs(120)),
            200,
            "{p}"
        );
        assert_eq!(rx.delivered_ids(p), ids, "{p}");
        // No event went to an endpoint twice: without a crash, each is sent once.
        assert_eq!(rx.requests(p).len(), 200, "{p}");
    }
    // Each endpoint was served by one relay, and each relay served some.
    let served: Vec<(String, i64)> = connect(&db, "postgres")
        .query(
            "SELECT relay, count(DISTINCT endpoint_id) FROM steward.webhook_deliveries GROUP BY relay ORDER BY relay",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(served.len(), 2, "{served:?}");
    assert_eq!(served.iter().map(|s| s.1).sum::<i64>(), 5, "{served:?}");
    let twice: i64 = connect(&db, "postgres")
        .query_one(
            "SELECT count(*) FROM (SELECT endpoint_id, event_id FROM steward.webhook_deliveries
                                    GROUP BY 1, 2 HAVING count(*) > 1) d",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(twice, 0);

    // relay-one dies: relay-two takes its sinks over once their leases expire (2 s), and
    // delivers what comes next everywhere.
    one.kill();
    let killed = Instant::now();
    let more = emit(&db, ACME, "t.shared", 50);
    for p in paths {
        assert_eq!(
            rx.wait_delivered(p, 250, Duration::from_secs(60)),
            250,
            "{p}"
        );
        let got = rx.delivered_ids(p);
        assert_eq!(&got[200..], &more[..], "{p}");
    }
    eprintln!("taken over and delivered within {:?}", killed.elapsed());
    let holders: Vec<String> = connect(&db, "postgres")
        .query("SELECT DISTINCT relay FROM steward.relay_leases", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(holders, vec!["relay-two".to_string()]);
    let js = jetstream(&rt, &nats);
    wait_for(Duration::from_secs(60), "NATS to hold all 250", || {
        rt.block_on(stream_count(&js, "STEWARD")) == 250
    });
    two.kill();
    assert_eq!(endpoints.len(), 5);
}

#[test]
fn tenants_can_neither_stall_nor_poison_nor_hijack_the_relay() {
    let db = setup("e2e_relay_hostile");
    let rt = rt();
    let rx = Receiver::start(&rt);
    let nats = NatsServer::start("hostile");
    // A database where PUBLIC may create in public (the default before PostgreSQL 15).
    connect(&db, "postgres")
        .batch_execute(
            "GRANT CREATE ON SCHEMA public TO PUBLIC;
             CREATE TABLE public.loot (secret text);
             GRANT INSERT, SELECT ON public.loot TO PUBLIC;",
        )
        .unwrap();
    // A tenant plants a function that is a better match than pg_catalog's for the relay's reads.
    connect(&db, "e2e_acme")
        .batch_execute(
            "CREATE FUNCTION public.row_to_json(o steward.outbox) RETURNS json LANGUAGE sql AS
               $$ INSERT INTO public.loot SELECT secret FROM steward.webhook_secrets;
                  SELECT pg_catalog.row_to_json(o) $$;
             CREATE FUNCTION public.json_build_object(a text, b text, c text, d timestamptz, e text, f json)
               RETURNS json LANGUAGE sql AS
               $$ INSERT INTO public.loot SELECT secret FROM steward.webhook_secrets; SELECT f $$;",
        )
        .unwrap();
    let (acme_hook, _) = webhook(&db, ACME, &rx.url("/acme"), None);
    webhook(&db, GLOBEX, &rx.url("/globex"), None);
    let mut relay = InProcess::start(
        &rt,
        &db,
        &[
            "--nats-url",
            &nats.url(),
            "--allow-private-targets",
            "127.0.0.1/32",
        ],
    );
    // Poison: a traceparent with a line break and a forged header, and an event larger than the
    // NATS server takes (1 MiB by default).
    let mut c = connect(&db, "e2e_acme");
    let mut tx = c.transaction().unwrap();
    tx.execute(
        "SELECT steward.annotate('poison', NULL, E'00-abc\\r\\nNats-Msg-Id: forged')",
        &[],
    )
    .unwrap();
    let crlf: String = tx
        .query_one(
            "SELECT steward.emit('t.crlf', 'thing', '1', '{}')::text",
            &[],
        )
        .unwrap()
        .get(0);
    tx.commit().unwrap();
    let big: String = c
        .query_one(
            "SELECT steward.emit('t.big', 'thing', '2', jsonb_build_object('x', repeat('y', 2000000)))::text",
            &[],
        )
        .unwrap()
        .get(0);
    // A tenant holds its redeliver() open: nobody else's delivery waits for it.
    let mut holder = connect(&db, "e2e_acme");
    let mut open = holder.transaction().unwrap();
    open.execute(
        "SELECT steward.redeliver($1::text::uuid, now() - interval '1 hour')",
        &[&acme_hook],
    )
    .unwrap();
    let globex = emit(&db, GLOBEX, "t.after", 50);
    assert_eq!(
        rx.wait_delivered("/globex", 50, Duration::from_secs(60)),
        50
    );
    assert_eq!(rx.delivered_ids("/globex"), globex);
    let js = jetstream(&rt, &nats);
    wait_for(
        Duration::from_secs(60),
        "NATS to hold all 52 events",
        || rt.block_on(stream_count(&js, "STEWARD")) == 52,
    );
    open.commit().unwrap();
    assert_eq!(rx.wait_delivered("/acme", 2, Duration::from_secs(60)), 2);
    relay.stop(&rt);

    // The relay resolved no function of the tenant's: nothing was stolen.
    let stolen: i64 = connect(&db, "postgres")
        .query_one("SELECT count(*) FROM public.loot", &[])
        .unwrap()
        .get(0);
    assert_eq!(stolen, 0);
    let msgs = rt.block_on(stream_messages(&js, "STEWARD"));
    let by_id: HashMap<&str, &(String, HashMap<String, String>, Value)> = msgs
        .iter()
        .map(|m| (m.1["Nats-Msg-Id"].as_str(), m))
        .collect();
    // The line break reached no header: the forged id is no message's, the traceparent is gone.
    let m = by_id[crlf.as_str()];
    assert!(!m.1.contains_key("traceparent"), "{:?}", m.1);
    assert!(!by_id.contains_key("forged"));
    // The large event is a stub naming it, in its place; the webhook got it whole.
    let m = by_id[big.as_str()];
    assert!(m.1["steward-too-large"].parse::<usize>().unwrap() > 2_000_000);
    assert_eq!(m.2["event_id"], big.as_str());
    assert!(m.2["too_large"].as_u64().unwrap() > 2_000_000);
    let whole = rx
        .requests("/acme")
        .into_iter()
        .find(|r| r.headers["webhook-id"] == big)
        .unwrap();
    assert!(whole.body.len() > 2_000_000);
}

#[test]
fn the_relay_binary_documents_every_flag_with_its_variable() {
    let bin = std::env::var("STEWARD_SERVICE_BIN")
        .expect("STEWARD_SERVICE_BIN is set by cargo xtask test");
    let out = std::process::Command::new(&bin)
        .args(["relay", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for (flag, var) in [
        ("--database-url", "STEWARD_DATABASE_URL"),
        ("--consumer", "STEWARD_CONSUMER"),
        ("--nats-url", "STEWARD_NATS_URL"),
        ("--stream", "STEWARD_STREAM"),
        ("--allow-private-targets", "STEWARD_ALLOW_PRIVATE_TARGETS"),
        ("--metrics-listen", "STEWARD_METRICS_LISTEN"),
        ("--retry-schedule", "STEWARD_RETRY_SCHEDULE"),
        ("--lease-ttl-ms", "STEWARD_LEASE_TTL_MS"),
    ] {
        assert!(
            help.contains(flag) && help.contains(var),
            "{flag} / {var}:\n{help}"
        );
    }
    // A bad schedule or CIDR stops it at once, saying which flag.
    for (flag, value) in [
        ("--retry-schedule", "5 fortnights"),
        ("--allow-private-targets", "localhost"),
    ] {
        let out = std::process::Command::new(&bin)
            .args(["relay", "--database-url", "host=/nonexistent", flag, value])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(flag), "{flag}: {err}");
    }
}
