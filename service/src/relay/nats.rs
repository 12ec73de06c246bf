//! The NATS JetStream sink: subject `steward.<tenant_id>.<event_type>`, `Nats-Msg-Id` the
//! event id (the stream drops a duplicate within its duplicate window), `traceparent` and
//! `steward-tenant` as headers. Publishes are asynchronous with a bounded number of acks in
//! flight; the cursor moves past a batch only once the broker has acknowledged all of it.

use std::future::IntoFuture as _;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, context::ContextBuilder, message::PublishMessage};
use futures::stream::FuturesOrdered;
use futures::StreamExt as _;
use tokio::sync::watch;

use super::metrics::SinkMetrics;
use super::{Ctx, Stop};
use crate::config::RelayArgs;

pub struct Nats {
    pub js: jetstream::Context,
    pub stream: String,
    pub duplicate_window: Duration,
}

impl Nats {
    pub async fn connect(url: &str, args: &RelayArgs) -> anyhow::Result<Nats> {
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(|e| anyhow::anyhow!("--nats-url {url}: {e}"))?;
        let js = ContextBuilder::new()
            .timeout(Duration::from_secs(5))
            .max_ack_inflight(args.max_in_flight.max(1))
            .backpressure_on_inflight(true)
            .build(client);
        Ok(Nats {
            js,
            stream: args.stream.clone(),
            duplicate_window: Duration::from_secs(args.duplicate_window_secs.max(1)),
        })
    }

    /// The stream, created (subjects `steward.>`, file storage, the duplicate window) if missing.
    async fn ensure_stream(&self) -> anyhow::Result<()> {
        let stream = self
            .js
            .get_or_create_stream(jetstream::stream::Config {
                name: self.stream.clone(),
                subjects: vec!["steward.>".into()],
                duplicate_window: self.duplicate_window,
                storage: jetstream::stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| anyhow::anyhow!("stream {}: {e}", self.stream))?;
        let window = stream.cached_info().config.duplicate_window;
        if window < self.duplicate_window {
            tracing::warn!(stream = %self.stream, ?window, wanted = ?self.duplicate_window,
                "the stream's duplicate window is shorter than --duplicate-window-secs: a relay restarting later than that after a publish may store a duplicate");
        }
        Ok(())
    }
}

/// Header text: visible ASCII only (a header value with a line break would end the header).
fn header_text(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A NATS subject token from any text: no whitespace, dots stay separators, `*` and `>` and
/// empty tokens become `_`.
pub fn subject(tenant: Option<&str>, event_type: &str) -> String {
    let tokens: Vec<String> = event_type
        .split('.')
        .map(|t| {
            let t: String = t
                .chars()
                .map(|c| {
                    if c.is_whitespace() || c.is_control() || c == '*' || c == '>' {
                        '_'
                    } else {
                        c
                    }
                })
                .collect();
            if t.is_empty() {
                "_".into()
            } else {
                t
            }
        })
        .collect();
    format!("steward.{}.{}", tenant.unwrap_or("_"), tokens.join("."))
}

pub async fn run(
    ctx: &Arc<Ctx>,
    sink: &str,
    fence: i64,
    mut stop: watch::Receiver<bool>,
    m: &Arc<SinkMetrics>,
) -> Stop {
    let Some(nats) = &ctx.nats else {
        return Stop::Asked;
    };
    let mut wake = ctx.wake.clone();
    let mut backoff = Duration::from_millis(100);
    let mut stream_ready = false;
    // The events read ahead while the last batch was in flight.
    let mut next: Option<Vec<super::Event>> = None;
    loop {
        if *stop.borrow() {
            return Stop::Asked;
        }
        let ahead = next.take();
        let step = async {
            if !stream_ready {
                nats.ensure_stream().await?;
                stream_ready = true;
            }
            batch(ctx, nats, sink, fence, m, ahead).await
        };
        match step.await.map(|(n, read_ahead)| {
            next = read_ahead.filter(|e| !e.is_empty());
            n
        }) {
            Ok(0) => {
                backoff = Duration::from_millis(100);
                if !super::idle(ctx, &mut wake, &mut stop).await {
                    return Stop::Asked;
                }
            }
            Ok(_) => backoff = Duration::from_millis(100),
            Err(e) if super::lease_lost(&e) => return Stop::LeaseLost,
            Err(e) => {
                m.failure();
                // The stream may be what is missing (deleted, or the server's store lost).
                stream_ready = false;
                tracing::warn!(sink, error = %format!("{e:#}"), "publishing to NATS failed; the batch is sent again");
                if !super::pause(backoff, &mut stop).await {
                    return Stop::Asked;
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// One batch: polled (or read ahead during the last one), published and acknowledged by the
/// broker while the next batch is read ahead, then acked in the database. Returns how many events
/// it published and the events read ahead.
async fn batch(
    ctx: &Ctx,
    nats: &Nats,
    sink: &str,
    fence: i64,
    m: &SinkMetrics,
    ahead: Option<Vec<super::Event>>,
) -> anyhow::Result<(usize, Option<Vec<super::Event>>)> {
    let max = ctx.args.batch_size.clamp(1, 10_000);
    let events = match ahead {
        Some(events) => events,
        None => {
            let started = std::time::Instant::now();
            let events = super::poll(ctx, sink, fence, max, false, None).await?;
            m.phase("poll", started.elapsed().as_secs_f64());
            events
        }
    };
    let Some(last) = events.last() else {
        return Ok((0, None));
    };
    let started = std::time::Instant::now();
    let read_ahead = async {
        let t = std::time::Instant::now();
        let r = super::poll(ctx, sink, fence, max, false, Some((&last.txid, last.id))).await;
        m.phase("poll_ahead", t.elapsed().as_secs_f64());
        r
    };
    let (published, read_ahead) = tokio::join!(
        publish(nats, &events, ctx.args.max_in_flight, m),
        read_ahead
    );
    m.phase("publish_and_broker_ack", started.elapsed().as_secs_f64());
    published?;
    let started = std::time::Instant::now();
    let moved = super::ack(ctx, sink, fence, Some(last.id), None, None).await?;
    m.phase("db_ack", started.elapsed().as_secs_f64());
    let now = super::unix_now();
    for e in &events {
        m.delivered(now - e.occurred_at);
    }
    // What was read ahead follows the cursor only if this ack moved it there (not if someone
    // else moved it meanwhile, a seek); a read ahead that failed is read again, from the cursor,
    // by the next poll.
    let read_ahead = match read_ahead {
        Ok(events) if moved => Some(events),
        Ok(_) => None,
        Err(e) => {
            tracing::debug!(sink, error = %format!("{e:#}"), "reading ahead failed; polling instead");
            None
        }
    };
    Ok((events.len(), read_ahead))
}

/// Publishes `events` with at most `bound` awaiting the broker's ack, and waits for every ack.
async fn publish(
    nats: &Nats,
    events: &[super::Event],
    bound: usize,
    m: &SinkMetrics,
) -> anyhow::Result<()> {
    let mut acks = FuturesOrdered::new();
    let mut failed = None;
    let bound = bound.max(1);
    let max_payload = nats.js.client().server_info().max_payload;
    for e in events {
        // At most `bound` publishes await their ack (each holds one of the context's permits).
        while acks.len() >= bound {
            if let Some(Err(err)) = acks.next().await {
                failed.get_or_insert(err);
            }
            m.in_flight_add(-1);
        }
        // An event larger than the server takes goes as a stub naming it (id, tenant, type, size),
        // with the header steward-too-large: never a batch retried forever, never a gap.
        let body = if e.body.len() + 1024 > max_payload {
            m.too_large();
            serde_json::json!({
                "id": e.id,
                "event_id": e.event_id,
                "tenant_id": e.tenant_id,
                "event_type": e.event_type,
                "too_large": e.body.len(),
            })
            .to_string()
        } else {
            e.body.clone()
        };
        let stub = body.len() != e.body.len();
        let mut msg = PublishMessage::build()
            .payload(body.into())
            .message_id(&e.event_id)
            .header("steward-tenant", e.tenant_id.as_deref().unwrap_or(""))
            .header("steward-event-type", header_text(&e.event_type).as_str());
        if stub {
            msg = msg.header("steward-too-large", e.body.len().to_string().as_str());
        }
        if let Some(tp) = super::traceparent(e.traceparent.as_deref()) {
            msg = msg.header("traceparent", tp);
        }
        m.attempt();
        let ack = nats
            .js
            .send_publish(subject(e.tenant_id.as_deref(), &e.event_type), msg)
            .await?;
        m.in_flight_add(1);
        acks.push_back(ack.into_future());
    }
    while let Some(r) = acks.next().await {
        m.in_flight_add(-1);
        if let Err(err) = r {
            failed.get_or_insert(err);
        }
    }
    match failed {
        Some(err) => Err(anyhow::anyhow!(
            "the broker did not acknowledge a publish: {err}"
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::subject;

    #[test]
    fn subjects() {
        assert_eq!(
            subject(Some("t1"), "orders.created"),
            "steward.t1.orders.created"
        );
        assert_eq!(
            subject(Some("t1"), "public.orders.created"),
            "steward.t1.public.orders.created"
        );
        assert_eq!(subject(Some("t1"), "a b.*.>..c"), "steward.t1.a_b._._._.c");
        assert_eq!(subject(None, "x"), "steward._.x");
        assert_eq!(
            super::header_text("a\r\nNats-Msg-Id: x"),
            "a__Nats-Msg-Id: x"
        );
    }
}
