//! `steward-service relay`: every committed event out to NATS JetStream and to webhooks, at
//! least once (docs/relay-guide.md, ADR 013).
//!
//! The outbox is the only queue. Each sink reads it through a steward consumer under a lease
//! (`steward.relay_claim`): NATS through the all-tenant consumer `--consumer`, each webhook
//! endpoint through its own cursor in its tenant. A sink's cursor moves (`steward.relay_ack`)
//! only past events the sink has taken: acknowledged by the broker, or answered by the endpoint
//! (or given up on as a dead letter, recorded). Killed at any instant, a relay leaves the rest
//! in the log; whichever relay holds the sink next sends it again, with the same ids.

pub mod metrics;
pub mod nats;
pub mod webhook;
pub mod webhook_sink;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use futures::StreamExt as _;
use tokio::sync::watch;
use tokio_postgres::NoTls;

use crate::config::RelayArgs;
use metrics::RelayMetrics;

/// What every sink of this relay shares.
pub struct Ctx {
    pub id: String,
    pub pool: Pool,
    pub args: RelayArgs,
    pub metrics: Arc<RelayMetrics>,
    /// Bumped at every `NOTIFY steward_outbox`.
    pub wake: watch::Receiver<u64>,
    pub http: reqwest::Client,
    pub policy: Arc<webhook::TargetPolicy>,
    pub schedule: Vec<Duration>,
    pub nats: Option<nats::Nats>,
}

/// One event as a sink reads it.
pub struct Event {
    pub id: i64,
    pub txid: String,
    pub event_id: String,
    pub tenant_id: Option<String>,
    pub event_type: String,
    pub occurred_at: f64,
    pub traceparent: Option<String>,
    pub body: String,
}

/// Why a sink stopped.
#[derive(Debug)]
pub enum Stop {
    /// The lease is gone (another relay, a moved cursor, a deleted or disabled endpoint).
    LeaseLost,
    /// Asked to stop (shutdown, or more than its share): the lease is released.
    Asked,
}

/// Whether `e` says the relay no longer holds the sink (ST409 from steward._relay_holds).
pub fn lease_lost(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<tokio_postgres::Error>()
            .and_then(|pe| pe.code())
            .is_some_and(|code| code.code() == "ST409")
    })
}

pub fn default_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "relay".into());
    let host: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(100)
        .collect();
    format!("{host}:{}", std::process::id())
}

/// The relay's connection settings: `--database-url`, with a search_path of pg_catalog alone (no
/// function or operator a tenant can create is ever resolved for the relay, which reads every
/// tenant's events and the secrets), and timeouts, so that no lock a tenant's transaction holds
/// stalls a connection of the relay for long.
pub fn connection_config(database_url: &str) -> anyhow::Result<tokio_postgres::Config> {
    let mut config: tokio_postgres::Config = database_url
        .parse()
        .map_err(|e| anyhow::anyhow!("--database-url: {e}"))?;
    let mut options = config.get_options().unwrap_or("").to_string();
    options.push_str(
        " -c search_path=pg_catalog -c lock_timeout=5s -c statement_timeout=60s \
         -c idle_in_transaction_session_timeout=60s",
    );
    config.options(options.trim());
    Ok(config)
}

fn pool(args: &RelayArgs) -> anyhow::Result<Pool> {
    let config = connection_config(&args.database_url)?;
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Ok(Pool::builder(manager)
        .max_size(args.pool_size.max(2))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(30)))
        .create_timeout(Some(Duration::from_secs(10)))
        .build()?)
}

/// Listens for `NOTIFY steward_outbox` on its own connection, reconnecting as needed; every
/// wake-up bumps the counter the sinks watch (a wake-up is a hint: sinks poll on a schedule too).
async fn listen(config: tokio_postgres::Config, wake: watch::Sender<u64>) {
    loop {
        match config.connect(NoTls).await {
            Ok((client, mut conn)) => {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                let driver = tokio::spawn(async move {
                    let mut messages = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
                    while let Some(m) = messages.next().await {
                        match m {
                            Ok(tokio_postgres::AsyncMessage::Notification(_)) => {
                                let _ = tx.send(());
                            }
                            Ok(_) => {}
                            Err(_) => break,
                        }
                    }
                });
                if client.batch_execute("LISTEN steward_outbox").await.is_ok() {
                    // A connection (re)made may have missed wake-ups: wake everyone once.
                    wake.send_modify(|n| *n += 1);
                    while rx.recv().await.is_some() {
                        wake.send_modify(|n| *n += 1);
                    }
                }
                driver.abort();
            }
            Err(e) => tracing::debug!(error = %e, "wake-up connection failed"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Waits for a wake-up or the poll interval, whichever comes first; false if asked to stop.
pub async fn idle(
    ctx: &Ctx,
    wake: &mut watch::Receiver<u64>,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let interval = Duration::from_millis(ctx.args.poll_interval_ms.max(10));
    tokio::select! {
        _ = wake.changed() => true,
        _ = tokio::time::sleep(interval) => true,
        _ = stop.changed() => !*stop.borrow(),
    }
}

/// Sleeps `d` unless asked to stop first (then false).
pub async fn pause(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return false;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = stop.changed() => !*stop.borrow(),
    }
}

/// The next events of a sink, with each one's body as the sink sends it; with `after` (an event
/// read last and not acked yet: its txid and id), those that follow it in the batch being
/// delivered, without moving the cursor (`steward.relay_poll_ahead`).
pub async fn poll(
    ctx: &Ctx,
    sink: &str,
    fence: i64,
    max: i32,
    webhook: bool,
    after: Option<(&str, i64)>,
) -> anyhow::Result<Vec<Event>> {
    // A webhook's body is Standard Webhooks' shape (type, timestamp, data: the event); a NATS
    // message is the event itself (the subject names its tenant and type).
    const COLUMNS: &str = "SELECT o.id, o.txid::text, o.event_id::text, o.tenant_id::text, o.event_type,
                                  extract(epoch FROM o.occurred_at)::float8, o.headers->>'traceparent',";
    const NATS_BODY: &str = "pg_catalog.row_to_json(o)::text";
    const WEBHOOK_BODY: &str = "pg_catalog.json_build_object('type', o.event_type, 'timestamp', o.occurred_at,
                                                             'data', pg_catalog.row_to_json(o))::text";
    let body = if webhook { WEBHOOK_BODY } else { NATS_BODY };
    let client = ctx.pool.get().await?;
    let rows = match after {
        None => {
            let stmt = client
                .prepare_cached(&format!(
                    "{COLUMNS} {body} FROM steward.relay_poll($1, $2, $3, $4) o"
                ))
                .await?;
            client.query(&stmt, &[&sink, &ctx.id, &fence, &max]).await?
        }
        Some((txid, id)) => {
            let stmt = client
                .prepare_cached(&format!(
                    "{COLUMNS} {body} FROM steward.relay_poll_ahead($1, $2, $3, $5::text::xid8, $6, $4) o"
                ))
                .await?;
            client
                .query(&stmt, &[&sink, &ctx.id, &fence, &max, &txid, &id])
                .await?
        }
    };
    Ok(rows
        .iter()
        .map(|r| Event {
            id: r.get(0),
            txid: r.get(1),
            event_id: r.get(2),
            tenant_id: r.get(3),
            event_type: r.get(4),
            occurred_at: r.get(5),
            traceparent: r.get(6),
            body: r.get(7),
        })
        .collect())
}

/// Moves a sink's cursor past `through` and records `attempts` (and disables the endpoint with
/// `disable`), in one transaction under the lease.
pub async fn ack(
    ctx: &Ctx,
    sink: &str,
    fence: i64,
    through: Option<i64>,
    attempts: Option<serde_json::Value>,
    disable: Option<String>,
) -> anyhow::Result<bool> {
    if through.is_none() && attempts.is_none() && disable.is_none() {
        return Ok(false);
    }
    let client = ctx.pool.get().await?;
    let stmt = client
        .prepare_cached("SELECT steward.relay_ack($1, $2, $3, $4, $5::text::jsonb, $6)")
        .await?;
    let attempts = attempts.map(|a| a.to_string());
    let moved: bool = client
        .query_one(
            &stmt,
            &[&sink, &ctx.id, &fence, &through, &attempts, &disable],
        )
        .await?
        .get(0);
    Ok(moved)
}

/// A W3C traceparent (`00-<32 hex>-<16 hex>-<2 hex>`), or None: a header value is never
/// anything a tenant annotated that is not one (no line breaks, no other headers).
pub fn traceparent(v: Option<&str>) -> Option<&str> {
    let v = v?;
    let parts: Vec<&str> = v.split('-').collect();
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    (parts.len() == 4
        && hex(parts[0], 2)
        && hex(parts[1], 32)
        && hex(parts[2], 16)
        && hex(parts[3], 2))
    .then_some(v)
}

pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

struct Running {
    fence: i64,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

async fn claim(ctx: &Ctx, ttl: Duration) -> anyhow::Result<Vec<(String, i64, bool)>> {
    let client = ctx.pool.get().await?;
    let sinks: Vec<String> = if ctx.nats.is_some() {
        vec![format!("nats:{}", ctx.args.consumer)]
    } else {
        vec![]
    };
    let ttl_text = format!("{} milliseconds", ttl.as_millis());
    let rows = client
        .query(
            "SELECT sink, fence, surplus FROM steward.relay_claim($1, $2, $3::text::interval)",
            &[&ctx.id, &sinks, &ttl_text],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

/// Reads each sink's lag into the metrics.
async fn read_lag(ctx: &Ctx) -> anyhow::Result<()> {
    let client = ctx.pool.get().await?;
    let rows = client
        .query(
            "SELECT consumer, tenant_id IS NULL, behind FROM steward.consumer_lag",
            &[],
        )
        .await?;
    for r in rows {
        let name: String = r.get(0);
        let all: bool = r.get(1);
        let behind: i64 = r.get(2);
        let sink = if let Some(id) = name.strip_prefix("steward.webhook.") {
            format!("webhook:{id}")
        } else if all && name == ctx.args.consumer && ctx.nats.is_some() {
            format!("nats:{name}")
        } else {
            continue;
        };
        ctx.metrics.sink(&sink).set_lag(behind);
    }
    Ok(())
}

async fn run_sink(ctx: Arc<Ctx>, sink: String, fence: i64, stop: watch::Receiver<bool>) {
    let m = ctx.metrics.sink(&sink);
    let result = if sink.starts_with("nats:") {
        nats::run(&ctx, &sink, fence, stop, &m).await
    } else {
        webhook_sink::run(&ctx, &sink, fence, stop, &m).await
    };
    match result {
        Stop::Asked => {
            if let Ok(client) = ctx.pool.get().await {
                let _ = client
                    .execute(
                        "SELECT steward.relay_release($1, $2, $3)",
                        &[&ctx.id, &sink, &fence],
                    )
                    .await;
            }
            tracing::info!(sink, "sink released");
        }
        Stop::LeaseLost => tracing::info!(sink, "sink no longer held by this relay"),
    }
}

/// Runs the relay until `shutdown` completes: claims sinks, runs one task per sink held, and on
/// shutdown lets each finish its batch and release its lease.
pub async fn run(args: RelayArgs, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
    let id = args.relay_id.clone().unwrap_or_else(default_id);
    let policy = Arc::new(webhook::TargetPolicy::new(&args.allow_private_targets)?);
    let schedule = webhook::parse_schedule(&args.retry_schedule)?;
    let timeout = Duration::from_millis(args.webhook_timeout_ms.max(1));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .dns_resolver(Arc::new(webhook::GuardedResolver {
            policy: policy.clone(),
        }))
        .user_agent(concat!("steward-relay/", env!("CARGO_PKG_VERSION")))
        .pool_max_idle_per_host(4)
        // A proxy would make the connection for us, to an address the guard never saw.
        .no_proxy()
        .build()?;
    let nats = match &args.nats_url {
        Some(url) => Some(nats::Nats::connect(url, &args).await?),
        None => None,
    };
    let metrics = Arc::new(RelayMetrics::default());
    if let Some(listen) = &args.metrics_listen {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| anyhow::anyhow!("--metrics-listen {listen}: {e}"))?;
        tracing::info!(listen = %listener.local_addr()?, "relay metrics listening");
        let m = metrics.clone();
        tokio::spawn(async move {
            let app = axum::Router::new()
                .route(
                    "/metrics",
                    axum::routing::get(move || {
                        let m = m.clone();
                        async move {
                            (
                                [(
                                    axum::http::header::CONTENT_TYPE,
                                    "text/plain; version=0.0.4",
                                )],
                                m.render(),
                            )
                        }
                    }),
                )
                .route("/healthz", axum::routing::get(|| async { "ok" }));
            let _ = axum::serve(listener, app).await;
        });
    }
    let (wake_tx, wake) = watch::channel(0u64);
    let listener = tokio::spawn(listen(connection_config(&args.database_url)?, wake_tx));
    let ttl = Duration::from_millis(args.lease_ttl_ms.max(1000));
    let ctx = Arc::new(Ctx {
        id: id.clone(),
        pool: pool(&args)?,
        args,
        metrics,
        wake,
        http,
        policy,
        schedule,
        nats,
    });
    tracing::info!(relay = %id, nats = ctx.nats.is_some(), "steward relay running");
    let mut running: HashMap<String, Running> = HashMap::new();
    let mut last_claim = Instant::now();
    let mut tick = tokio::time::interval(ttl / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tick.tick() => {}
        }
        running.retain(|_, r| !r.task.is_finished());
        match claim(&ctx, ttl).await {
            Ok(held) => {
                last_claim = Instant::now();
                let names: std::collections::HashSet<&String> = held.iter().map(|h| &h.0).collect();
                running.retain(|sink, r| {
                    let keep = names.contains(sink);
                    if !keep {
                        r.task.abort();
                    }
                    keep
                });
                for (sink, fence, surplus) in held {
                    match running.get(&sink) {
                        Some(r) if r.fence == fence => {
                            if surplus {
                                let _ = r.stop.send(true);
                            }
                            continue;
                        }
                        Some(r) => r.task.abort(),
                        None => {}
                    }
                    let (stop_tx, stop_rx) = watch::channel(surplus);
                    let task = tokio::spawn(run_sink(ctx.clone(), sink.clone(), fence, stop_rx));
                    tracing::info!(sink, fence, "sink taken");
                    running.insert(
                        sink,
                        Running {
                            fence,
                            stop: stop_tx,
                            task,
                        },
                    );
                }
                ctx.metrics.set_sinks(running.len());
                if let Err(e) = read_lag(&ctx).await {
                    tracing::debug!(error = %e, "lag not read");
                }
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "claiming sinks failed");
                // Leases this relay can no longer renew are another relay's soon: stop using them.
                if last_claim.elapsed() >= ttl {
                    for (_, r) in running.drain() {
                        r.task.abort();
                    }
                    ctx.metrics.set_sinks(0);
                }
            }
        }
    }
    tracing::info!("relay shutting down: finishing each sink's batch");
    for r in running.values() {
        let _ = r.stop.send(true);
    }
    let deadline = tokio::time::sleep(Duration::from_secs(10));
    tokio::pin!(deadline);
    for (_, r) in running.drain() {
        tokio::select! {
            _ = r.task => {}
            _ = &mut deadline => {}
        }
    }
    // Leaving: no lease of this relay's stays, and it no longer counts among the live relays.
    if let Ok(client) = ctx.pool.get().await {
        if let Err(e) = client
            .execute("SELECT steward.relay_release($1, NULL, NULL)", &[&ctx.id])
            .await
        {
            tracing::warn!(error = %e, "leaving: the leases were not released (they expire)");
        }
    }
    listener.abort();
    Ok(())
}
