//! One webhook endpoint's sink: its events in order, one request at a time, each signed; a
//! failure is retried on the schedule (or after `Retry-After`) before anything later is sent,
//! and after the budget becomes a dead letter; 410 Gone disables the endpoint. Every attempt is
//! recorded with the cursor's move, in one transaction. Each endpoint has its own task, so a
//! slow or failing endpoint delays no other.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::json;
use tokio::sync::watch;

use super::metrics::SinkMetrics;
use super::webhook::{self, Outcome};
use super::{Ctx, Event, Stop};

struct Endpoint {
    url: String,
    tenant: String,
    event_types: Option<Vec<String>>,
    secret: Vec<u8>,
    redelivered_at: f64,
}

/// The endpoint's retry state for the event at the head of its cursor.
struct Retry {
    event_id: String,
    /// Attempts made so far.
    attempts: i32,
    /// When the next may be made.
    next: Instant,
}

async fn endpoint(ctx: &Ctx, id: &str) -> anyhow::Result<Option<Endpoint>> {
    let client = ctx.pool.get().await?;
    let row = client
        .query_opt(
            "SELECT w.url, w.tenant_id::text, w.event_types, s.secret,
                    coalesce(extract(epoch FROM nullif(w.redelivered_at, '-infinity'))::float8, 0)
               FROM steward.webhooks w JOIN steward.webhook_secrets s USING (endpoint_id)
              WHERE w.endpoint_id::text = $1 AND w.disabled_at IS NULL",
            &[&id],
        )
        .await?;
    let Some(r) = row else { return Ok(None) };
    let url: String = r.get(0);
    let secret: String = r.get(3);
    Ok(Some(Endpoint {
        url,
        tenant: r.get(1),
        event_types: r.get(2),
        secret: webhook::secret_bytes(&secret)?,
        redelivered_at: r.get(4),
    }))
}

/// The attempts already made at `event_id` (since the last redeliver) and when the last was.
async fn history(
    ctx: &Ctx,
    endpoint_id: &str,
    event_id: &str,
    since: f64,
) -> anyhow::Result<Option<(i32, f64)>> {
    let client = ctx.pool.get().await?;
    let row = client
        .query_opt(
            "SELECT count(*)::int4, extract(epoch FROM max(d.at))::float8
               FROM steward.webhook_attempts d
              WHERE d.endpoint_id = $1::text::uuid AND d.event_id = $2::text::uuid
                AND d.at >= to_timestamp($3) AND d.status = 'failed'
             HAVING count(*) > 0",
            &[&endpoint_id, &event_id, &since],
        )
        .await?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

fn random() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0
}

pub async fn run(
    ctx: &Arc<Ctx>,
    sink: &str,
    fence: i64,
    mut stop: watch::Receiver<bool>,
    m: &Arc<SinkMetrics>,
) -> Stop {
    let endpoint_id = sink.trim_start_matches("webhook:").to_string();
    let mut wake = ctx.wake.clone();
    let mut retry: Option<Retry> = None;
    let mut known_head = false;
    let mut redelivered_at = f64::NAN;
    let mut backoff = Duration::from_millis(200);
    loop {
        if *stop.borrow() {
            return Stop::Asked;
        }
        let ep = match endpoint(ctx, &endpoint_id).await {
            Ok(Some(ep)) => ep,
            Ok(None) => return Stop::LeaseLost,
            Err(e) => {
                tracing::warn!(sink, error = %format!("{e:#}"), "reading the endpoint failed");
                if !super::pause(backoff, &mut stop).await {
                    return Stop::Asked;
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        // redeliver() restarts every retry budget (and moved the cursor).
        if ep.redelivered_at != redelivered_at {
            redelivered_at = ep.redelivered_at;
            retry = None;
            known_head = false;
        }
        // A retry's wait first: nothing later goes out before the event that failed. It is
        // waited in steps of at most 5 s, the endpoint read again after each, so that a
        // redeliver() cuts it short.
        if let Some(r) = &retry {
            let now = Instant::now();
            if r.next > now {
                if !super::pause((r.next - now).min(Duration::from_secs(5)), &mut stop).await {
                    return Stop::Asked;
                }
                continue;
            }
        }
        let step = batch(
            ctx,
            &ep,
            &endpoint_id,
            sink,
            fence,
            m,
            &mut retry,
            &mut known_head,
        )
        .await;
        match step {
            Ok(Step::Idle) => {
                backoff = Duration::from_millis(200);
                if !super::idle(ctx, &mut wake, &mut stop).await {
                    return Stop::Asked;
                }
            }
            Ok(Step::More) => backoff = Duration::from_millis(200),
            Ok(Step::Gone) => return Stop::LeaseLost,
            Err(e) if super::lease_lost(&e) => return Stop::LeaseLost,
            Err(e) => {
                tracing::warn!(sink, error = %format!("{e:#}"), "webhook batch failed; it is read again");
                known_head = false;
                retry = None;
                if !super::pause(backoff, &mut stop).await {
                    return Stop::Asked;
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

enum Step {
    Idle,
    More,
    Gone,
}

enum Sent {
    Ok(u16),
    Gone(u16),
    Failed {
        status: Option<u16>,
        error: String,
        retry_after: Option<Duration>,
    },
}

async fn send(ctx: &Ctx, ep: &Endpoint, e: &Event) -> Sent {
    // A URL the database took but this parser does not is a failed attempt, on record.
    let url = match reqwest::Url::parse(&ep.url) {
        Ok(u) => u,
        Err(err) => {
            return Sent::Failed {
                status: None,
                error: format!("the endpoint's URL does not parse: {err}"),
                retry_after: None,
            }
        }
    };
    if let Some(refused) = webhook::literal_host_refused(&url, &ctx.policy) {
        return Sent::Failed {
            status: None,
            error: refused,
            retry_after: None,
        };
    }
    let ts = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let sig = webhook::signature(&ep.secret, &e.event_id, ts, e.body.as_bytes());
    let mut req = ctx
        .http
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", &e.event_id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", sig)
        .header("steward-tenant", &ep.tenant)
        .body(e.body.clone());
    if let Some(tp) = super::traceparent(e.traceparent.as_deref()) {
        req = req.header("traceparent", tp);
    }
    match req.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| webhook::retry_after(v, SystemTime::now()));
            // The answer's body is not needed; reading a little (at most 64 KiB, for at most a
            // second) lets the connection be reused.
            let mut resp = resp;
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                let mut read = 0usize;
                while let Ok(Some(chunk)) = resp.chunk().await {
                    read += chunk.len();
                    if read > 65_536 {
                        break;
                    }
                }
            })
            .await;
            match webhook::outcome(status) {
                Outcome::Delivered => Sent::Ok(status),
                Outcome::Gone => Sent::Gone(status),
                Outcome::Failed => Sent::Failed {
                    status: Some(status),
                    error: format!("HTTP {status}"),
                    retry_after,
                },
            }
        }
        Err(err) => {
            let mut text = err.to_string();
            let mut src = std::error::Error::source(&err);
            while let Some(s) = src {
                text.push_str(": ");
                text.push_str(&s.to_string());
                src = s.source();
            }
            let text = if err.is_timeout() {
                format!("timed out: {text}")
            } else {
                text
            };
            Sent::Failed {
                status: None,
                error: text,
                retry_after: None,
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn batch(
    ctx: &Ctx,
    ep: &Endpoint,
    endpoint_id: &str,
    sink: &str,
    fence: i64,
    m: &SinkMetrics,
    retry: &mut Option<Retry>,
    known_head: &mut bool,
) -> anyhow::Result<Step> {
    let max = ctx.args.batch_size.clamp(1, 100);
    let events = super::poll(ctx, sink, fence, max, true, None).await?;
    if events.is_empty() {
        return Ok(Step::Idle);
    }
    let mut attempts = Vec::new();
    let mut done: Option<i64> = None;
    for e in &events {
        let wanted = ep
            .event_types
            .as_ref()
            .is_none_or(|types| types.iter().any(|t| t == &e.event_type));
        if !wanted {
            done = Some(e.id);
            continue;
        }
        // After a restart, the head event's earlier attempts count against its budget.
        if !*known_head {
            *known_head = true;
            if let Some((n, last)) =
                history(ctx, endpoint_id, &e.event_id, ep.redelivered_at).await?
            {
                let delay = ctx
                    .schedule
                    .get((n - 1).max(0) as usize)
                    .copied()
                    .unwrap_or_default();
                let wait = Duration::from_secs_f64(
                    (last + delay.as_secs_f64() - super::unix_now()).max(0.0),
                );
                *retry = Some(Retry {
                    event_id: e.event_id.clone(),
                    attempts: n,
                    next: Instant::now() + wait,
                });
                if !wait.is_zero() {
                    super::ack(ctx, sink, fence, done, None, None).await?;
                    return Ok(Step::More);
                }
            }
        }
        let made = retry
            .as_ref()
            .filter(|r| r.event_id == e.event_id)
            .map_or(0, |r| r.attempts);
        let attempt = made + 1;
        m.attempt();
        m.in_flight_add(1);
        let sent = send(ctx, ep, e).await;
        m.in_flight_add(-1);
        match sent {
            Sent::Ok(status) => {
                m.delivered(super::unix_now() - e.occurred_at);
                attempts.push(json!({"event_id": e.event_id, "attempt": attempt, "status": "delivered", "http_status": status}));
                done = Some(e.id);
                *retry = None;
            }
            Sent::Gone(status) => {
                m.failure();
                attempts.push(json!({"event_id": e.event_id, "attempt": attempt, "status": "gone", "http_status": status,
                                     "error": "410 Gone: the endpoint is disabled"}));
                let reason = format!(
                    "HTTP 410 Gone from {} for event {} at {}",
                    ep.url,
                    e.event_id,
                    httpdate::fmt_http_date(SystemTime::now())
                );
                super::ack(ctx, sink, fence, done, Some(attempts.into()), Some(reason)).await?;
                tracing::warn!(sink, url = %ep.url, "endpoint answered 410 Gone: disabled");
                return Ok(Step::Gone);
            }
            Sent::Failed {
                status,
                error,
                retry_after,
            } => {
                m.failure();
                if attempt as usize > ctx.schedule.len() {
                    // The budget is spent: a dead letter, on record; redeliver() sends it again.
                    m.dead_letter();
                    attempts.push(json!({"event_id": e.event_id, "attempt": attempt, "status": "dead", "http_status": status, "error": error}));
                    done = Some(e.id);
                    *retry = None;
                    tracing::warn!(sink, event_id = %e.event_id, attempt, "webhook delivery failed for the last time: dead letter");
                    continue;
                }
                attempts.push(json!({"event_id": e.event_id, "attempt": attempt, "status": "failed", "http_status": status, "error": error}));
                let delay = match retry_after {
                    // Honoured, up to a day.
                    Some(d) => d.min(Duration::from_secs(86_400)),
                    None => webhook::jittered(ctx.schedule[(attempt - 1) as usize], random()),
                };
                tracing::info!(sink, event_id = %e.event_id, attempt, ?delay, %error, "webhook delivery failed; retrying later");
                *retry = Some(Retry {
                    event_id: e.event_id.clone(),
                    attempts: attempt,
                    next: Instant::now() + delay,
                });
                super::ack(ctx, sink, fence, done, Some(attempts.into()), None).await?;
                return Ok(Step::More);
            }
        }
    }
    let attempts = (!attempts.is_empty()).then(|| serde_json::Value::from(attempts));
    super::ack(ctx, sink, fence, done, attempts, None).await?;
    Ok(Step::More)
}
