//! The command line: every flag has a `STEWARD_*` environment variable, and `--help` lists both.

use std::collections::HashMap;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Deserialize;
use uuid::Uuid;

#[derive(Parser, Debug)]
#[command(
    name = "steward-service",
    version,
    about = "steward's web API (serve) and outbox relay (relay): routes each request into the database under the caller's token, and every committed event out to webhooks and NATS JetStream"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the HTTP API (docs/api-guide.md).
    Serve(ServeArgs),
    /// Relay outbox events to webhooks and NATS JetStream, at least once (docs/relay-guide.md).
    Relay(RelayArgs),
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// The default database (pooled tenants), as a libpq URL or key=value string. Its role
    /// should be an ordinary role: it gets no tenant without a token.
    #[arg(long, env = "STEWARD_DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    /// Address to listen on.
    #[arg(long, env = "STEWARD_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// TOML file routing dedicated tenants to their own databases:
    /// [tenants."<uuid>"] database_url = "...".
    #[arg(long, env = "STEWARD_ROUTES")]
    pub routes: Option<PathBuf>,
    /// Connections per database, at most.
    #[arg(long, env = "STEWARD_POOL_SIZE", default_value_t = 16)]
    pub pool_size: usize,
    /// Prepared statements kept per connection (each statement text is parsed and planned once
    /// per connection). 0 sends every statement unnamed: for a pooler in transaction mode that
    /// does not carry prepared statements (pgbouncer before 1.21).
    #[arg(long, env = "STEWARD_STATEMENT_CACHE", default_value_t = 256)]
    pub statement_cache: usize,
    /// How long a request waits for a free connection before 503, in milliseconds.
    #[arg(long, env = "STEWARD_POOL_WAIT_MS", default_value_t = 1000)]
    pub pool_wait_ms: u64,
    /// How long a request may take, in milliseconds: enforced by the service and by the
    /// database (SET LOCAL statement_timeout).
    #[arg(long, env = "STEWARD_REQUEST_TIMEOUT_MS", default_value_t = 5000)]
    pub request_timeout_ms: u64,
    /// The largest request body accepted, in bytes (larger: 413).
    #[arg(long, env = "STEWARD_MAX_BODY_BYTES", default_value_t = 1_048_576)]
    pub max_body_bytes: usize,
    /// Rows a page holds when the request gives no limit.
    #[arg(long, env = "STEWARD_DEFAULT_LIMIT", default_value_t = 100)]
    pub default_limit: u32,
    /// The largest limit a request may ask for (larger: 400).
    #[arg(long, env = "STEWARD_MAX_LIMIT", default_value_t = 1000)]
    pub max_limit: u32,
    /// The extension version /readyz expects in the default database.
    #[arg(long, env = "STEWARD_EXTENSION_VERSION", default_value = env!("CARGO_PKG_VERSION"))]
    pub extension_version: String,
    /// How often the exposed resources are read again, in milliseconds.
    #[arg(long, env = "STEWARD_RESOURCE_REFRESH_MS", default_value_t = 2000)]
    pub resource_refresh_ms: u64,
    /// How long shutdown waits for requests in flight, in milliseconds.
    #[arg(long, env = "STEWARD_SHUTDOWN_GRACE_MS", default_value_t = 10_000)]
    pub shutdown_grace_ms: u64,
    /// Log lines as text or JSON.
    #[arg(long, env = "STEWARD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Args, Debug, Clone)]
pub struct RelayArgs {
    /// The database whose outbox is relayed, as a libpq URL or key=value string. Its role must
    /// be a member of steward_relay.
    #[arg(long, env = "STEWARD_DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    /// The all-tenant steward consumer the NATS sink reads (created from the earliest retained
    /// event if missing).
    #[arg(long, env = "STEWARD_CONSUMER", default_value = "relay")]
    pub consumer: String,
    /// NATS server URL(s), comma-separated; without it, no events go to NATS.
    #[arg(long, env = "STEWARD_NATS_URL")]
    pub nats_url: Option<String>,
    /// The JetStream stream (subjects `steward.>`), created if missing.
    #[arg(long, env = "STEWARD_STREAM", default_value = "STEWARD")]
    pub stream: String,
    /// The stream's duplicate window, in seconds, when the relay creates it: a relay that
    /// restarts within this horizon after a publish stores no duplicate of it.
    #[arg(long, env = "STEWARD_DUPLICATE_WINDOW_SECS", default_value_t = 600)]
    pub duplicate_window_secs: u64,
    /// Publishes awaiting the broker's ack, at most.
    #[arg(long, env = "STEWARD_MAX_IN_FLIGHT", default_value_t = 4096)]
    pub max_in_flight: usize,
    /// Private, loopback or link-local networks webhooks may target anyway, as CIDRs
    /// (e.g. 127.0.0.1/32,10.0.0.0/8). Without them such targets are refused (SSRF).
    #[arg(long, env = "STEWARD_ALLOW_PRIVATE_TARGETS", value_delimiter = ',')]
    pub allow_private_targets: Vec<String>,
    /// Where the relay's Prometheus metrics listen (GET /metrics); without it, nowhere.
    #[arg(long, env = "STEWARD_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// This relay's name in leases and delivery records (default: host name and process id).
    #[arg(long, env = "STEWARD_RELAY_ID")]
    pub relay_id: Option<String>,
    /// How long a sink stays with a relay that stops renewing its lease, in milliseconds: the
    /// longest a dead relay's sinks wait for another relay.
    #[arg(long, env = "STEWARD_LEASE_TTL_MS", default_value_t = 10_000)]
    pub lease_ttl_ms: u64,
    /// Events read per poll.
    #[arg(long, env = "STEWARD_BATCH_SIZE", default_value_t = 1000)]
    pub batch_size: i32,
    /// How often a sink polls when no wake-up came, in milliseconds.
    #[arg(long, env = "STEWARD_POLL_INTERVAL_MS", default_value_t = 1000)]
    pub poll_interval_ms: u64,
    /// How long one webhook request may take, in milliseconds (connecting included).
    #[arg(long, env = "STEWARD_WEBHOOK_TIMEOUT_MS", default_value_t = 15_000)]
    pub webhook_timeout_ms: u64,
    /// Delays before each retry of a failed webhook delivery, comma-separated (ms, s, m, h);
    /// after the last, the event is a dead letter. Each delay gets up to ±20% jitter.
    #[arg(
        long,
        env = "STEWARD_RETRY_SCHEDULE",
        default_value = "5s,5m,30m,2h,5h,10h,10h"
    )]
    pub retry_schedule: String,
    /// Connections to the database, at most.
    #[arg(long, env = "STEWARD_POOL_SIZE", default_value_t = 8)]
    pub pool_size: usize,
    /// Log lines as text or JSON.
    #[arg(long, env = "STEWARD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Deserialize)]
struct RoutesFile {
    #[serde(default)]
    tenants: HashMap<String, Route>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Route {
    database_url: String,
}

/// Reads a `--routes` file: which tenant goes to which database.
pub fn read_routes(text: &str) -> anyhow::Result<HashMap<Uuid, String>> {
    let file: RoutesFile = toml::from_str(text)?;
    let mut out = HashMap::new();
    for (tenant, route) in file.tenants {
        let id: Uuid = tenant
            .parse()
            .map_err(|_| anyhow::anyhow!("routes: tenant \"{tenant}\" is not a UUID"))?;
        route
            .database_url
            .parse::<tokio_postgres::Config>()
            .map_err(|e| anyhow::anyhow!("routes: tenant {tenant}: database_url: {e}"))?;
        out.insert(id, route.database_url);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn every_flag_has_its_environment_variable() {
        let cmd = Cli::command();
        for arg in ["serve", "relay"]
            .iter()
            .flat_map(|c| cmd.find_subcommand(c).unwrap().get_arguments())
        {
            if matches!(arg.get_id().as_str(), "help" | "version") {
                continue;
            }
            let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
            assert!(
                env.as_deref().is_some_and(|e| e.starts_with("STEWARD_")),
                "--{} has no STEWARD_ variable",
                arg.get_id()
            );
        }
    }

    #[test]
    fn routes_files() {
        let r = read_routes(
            "[tenants.\"00000000-0000-4000-8000-0000000000a1\"]\ndatabase_url = \"host=/tmp dbname=acme\"\n",
        )
        .unwrap();
        assert_eq!(r.len(), 1);
        assert!(read_routes("[tenants.acme]\ndatabase_url = \"x\"\n").is_err());
        assert!(read_routes(
            "[tenants.\"00000000-0000-4000-8000-0000000000a1\"]\nurl = \"host=/tmp\"\n"
        )
        .is_err());
    }
}
