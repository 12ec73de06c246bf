//! The databases the service routes to, their pools, and the one transaction each request runs.
//!
//! A request's transaction is pipelined: BEGIN, the token and the why, the statement and COMMIT
//! go out together and come back together, one round trip more than the statement alone would
//! need, none when the network is the cost. It runs in a task of its own, so that a client that
//! goes away cannot stop it half way: it always ends with COMMIT (or the ROLLBACK an error makes
//! of it) before its connection goes back to the pool. A connection whose transaction did not
//! visibly end is closed instead (the server rolls back), never reused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{NoTls, Row};
use uuid::Uuid;

use crate::error::ApiError;
use crate::resources::{Param, Resource, Statement};

/// Pool and timeout settings, from the command line.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub max_size: usize,
    pub wait: Duration,
    pub statement_timeout: Duration,
    /// Prepared statements kept per connection (0: none, every statement unnamed).
    pub statement_cache: usize,
}

/// Enters the tenant of the request's token, records the why, and bounds the statement's time.
/// And checks, in the same transaction, that the resource is still served (sql/resources.sql).
pub const ENTER_SQL: &str = "SELECT steward.enter_tenant_token($1), steward.annotate($2, $3, $4), \
                             pg_catalog.set_config('statement_timeout', $5, true), \
                             steward._check_serving($6)";

/// Two kinds of query future as one type, for the pipeline.
fn futures_either<'a, F>(
    f: F,
) -> std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Vec<Row>, tokio_postgres::Error>> + Send + 'a>,
>
where
    F: std::future::Future<Output = Result<Vec<Row>, tokio_postgres::Error>> + Send + 'a,
{
    Box::pin(f)
}

/// One database: its pool (opened on first use) and the resources it exposes.
pub struct Database {
    /// The label in metrics and logs: the database's name.
    pub label: String,
    pub pool: Pool,
    resources: RwLock<Option<Arc<Resources>>>,
    /// When a request last made the resources be read again because it named one unknown.
    missed: Mutex<Option<std::time::Instant>>,
}

/// What a database exposes, as last read.
#[derive(Debug, Default)]
pub struct Resources {
    pub by_name: HashMap<String, Resource>,
    /// The text it was read from: equal text, equal resources.
    pub text: String,
}

/// Every database the service routes to.
pub struct Databases {
    default_url: String,
    routes: HashMap<Uuid, String>,
    settings: PoolSettings,
    open: Mutex<HashMap<String, Arc<Database>>>,
    pub rollbacks: std::sync::atomic::AtomicU64,
}

/// What a request's transaction needs besides its statement.
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub token: String,
    pub reason: Option<String>,
    pub request_id: Option<String>,
    pub traceparent: Option<String>,
    /// The resource the request is for.
    pub resource: String,
}

pub const RESOURCES_SQL: &str = "SELECT coalesce(pg_catalog.json_agg(pg_catalog.json_build_object(
        'resource', r.resource, 'schema', n.nspname, 'table', c.relname, 'kind', r.kind,
        'key', r.key, 'primary_key', r.primary_key, 'tenant_column', r.tenant_column,
        'versioned', r.versioned, 'soft_delete', r.soft_delete,
        'columns', coalesce(r.columns, '[]'::jsonb)) ORDER BY r.resource), '[]')::text
      FROM steward.exposed_resources r
      JOIN pg_catalog.pg_class c ON c.oid = r.rel
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace";

impl Databases {
    pub fn new(
        default_url: String,
        routes: HashMap<Uuid, String>,
        settings: PoolSettings,
    ) -> Databases {
        Databases {
            default_url,
            routes,
            settings,
            open: Mutex::new(HashMap::new()),
            rollbacks: Default::default(),
        }
    }

    /// The database a tenant's requests go to: its own when `--routes` names it, else the
    /// default (pooled tenants).
    pub fn for_tenant(&self, tenant: Option<Uuid>) -> Result<Arc<Database>, ApiError> {
        let url = tenant
            .and_then(|t| self.routes.get(&t))
            .unwrap_or(&self.default_url)
            .clone();
        self.open_url(&url)
    }

    pub fn default_database(&self) -> Result<Arc<Database>, ApiError> {
        let url = self.default_url.clone();
        self.open_url(&url)
    }

    /// The databases opened so far (for metrics).
    pub fn opened(&self) -> Vec<Arc<Database>> {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<Arc<Database>> = open.values().cloned().collect();
        v.sort_by(|a, b| a.label.cmp(&b.label));
        v
    }

    fn open_url(&self, url: &str) -> Result<Arc<Database>, ApiError> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(db) = open.get(url) {
            return Ok(db.clone());
        }
        let config: tokio_postgres::Config = url.parse().map_err(|e| {
            tracing::error!(error = %e, "a database URL does not parse");
            ApiError::internal()
        })?;
        let label = config.get_dbname().unwrap_or("postgres").to_string();
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(self.settings.max_size)
            .wait_timeout(Some(self.settings.wait))
            .create_timeout(Some(Duration::from_secs(5)))
            .recycle_timeout(Some(Duration::from_secs(5)))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| {
                tracing::error!(error = %e, "a pool cannot be built");
                ApiError::internal()
            })?;
        let db = Arc::new(Database {
            label,
            pool,
            resources: RwLock::new(None),
            missed: Mutex::new(None),
        });
        open.insert(url.to_string(), db.clone());
        Ok(db)
    }
}

fn pool_error(e: PoolError, db: &Database) -> ApiError {
    match e {
        PoolError::Timeout(_) => ApiError::unavailable(
            format!("every connection to database \"{}\" is busy", db.label),
            "Retry after the time Retry-After gives.",
            1,
        ),
        PoolError::Backend(e) => ApiError::from_db(&e, false),
        other => {
            tracing::warn!(error = %other, database = %db.label, "no connection");
            ApiError::unavailable(
                format!("database \"{}\" cannot be reached", db.label),
                "Try again in a moment.",
                1,
            )
        }
    }
}

impl Database {
    /// The resources as last read, reading them now if never read.
    pub async fn resources(&self) -> Result<Arc<Resources>, ApiError> {
        if let Some(r) = self
            .resources
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Ok(r);
        }
        self.refresh().await
    }

    /// A request named a resource the cache does not hold: read the resources again, at most
    /// once a second (a resource exposed or governed again is served without waiting for the
    /// next refresh; unknown names cannot make every request read the catalog).
    pub async fn resources_after_miss(&self) -> Result<Option<Arc<Resources>>, ApiError> {
        {
            let mut last = self.missed.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
                return Ok(None);
            }
            *last = Some(std::time::Instant::now());
        }
        self.refresh().await.map(Some)
    }

    /// Reads the resources again; returns what is in force.
    pub async fn refresh(&self) -> Result<Arc<Resources>, ApiError> {
        let client = self.pool.get().await.map_err(|e| pool_error(e, self))?;
        let row = client
            .query_typed_one(RESOURCES_SQL, &[])
            .await
            .map_err(|e| ApiError::from_db(&e, false))?;
        let text: String = row.get(0);
        drop(client);
        let current = self
            .resources
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(c) = &current {
            if c.text == text {
                return Ok(c.clone());
            }
        }
        let list: Vec<Resource> = serde_json::from_str(&text).map_err(|e| {
            tracing::error!(error = %e, "steward.exposed_resources does not read as expected");
            ApiError::internal()
        })?;
        let fresh = Arc::new(Resources {
            by_name: list.into_iter().map(|r| (r.resource.clone(), r)).collect(),
            text,
        });
        *self.resources.write().unwrap_or_else(|p| p.into_inner()) = Some(fresh.clone());
        tracing::info!(database = %self.label, resources = fresh.by_name.len(), "resources read");
        Ok(fresh)
    }

    /// The extension's version in this database.
    pub async fn extension_version(&self) -> Result<Option<String>, ApiError> {
        let client = self.pool.get().await.map_err(|e| pool_error(e, self))?;
        let rows = client
            .query_typed(
                "SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'steward'",
                &[],
            )
            .await
            .map_err(|e| ApiError::from_db(&e, false))?;
        Ok(rows.first().map(|r| r.get(0)))
    }

    /// Runs `statement` in one transaction entered with the request's token.
    pub async fn run(
        self: &Arc<Self>,
        dbs: &Arc<Databases>,
        ctx: Context,
        statement: Statement,
        if_match: bool,
        settings: &PoolSettings,
    ) -> Result<Vec<Row>, ApiError> {
        let client = self.pool.get().await.map_err(|e| pool_error(e, self))?;
        let timeout_ms = settings.statement_timeout.as_millis().to_string();
        let cache_size = settings.statement_cache;
        let dbs = dbs.clone();
        let task = tokio::spawn(async move {
            let mut values: Vec<&(dyn ToSql + Sync)> = Vec::new();
            let mut types: Vec<Type> = Vec::new();
            for p in &statement.params {
                match p {
                    Param::Text(v) => {
                        values.push(v);
                        types.push(Type::TEXT);
                    }
                    Param::TextArray(v) => {
                        values.push(v);
                        types.push(Type::TEXT_ARRAY);
                    }
                }
            }
            let enter_values: [&(dyn ToSql + Sync); 6] = [
                &ctx.token,
                &ctx.reason,
                &ctx.request_id,
                &ctx.traceparent,
                &timeout_ms,
                &ctx.resource,
            ];
            let c: &tokio_postgres::Client = &client;
            // Prepared statements, cached per connection, unless the cache is off (a pooler in
            // transaction mode that does not carry them): then each is an unnamed statement,
            // parsed and planned every time. Preparing happens before the transaction begins,
            // once per connection and statement text; a bounded cache starts afresh when full.
            let prepared = if cache_size > 0 {
                if client.statement_cache.size() >= cache_size {
                    client.statement_cache.clear();
                }
                let enter = client
                    .prepare_typed_cached(ENTER_SQL, &[Type::TEXT; 6])
                    .await;
                let run = client.prepare_typed_cached(&statement.sql, &types).await;
                match (enter, run) {
                    (Ok(e), Ok(r)) => Some((e, r)),
                    (Err(e), _) | (_, Err(e)) => {
                        // No transaction was begun: the connection is as it was.
                        return Err((e, false));
                    }
                }
            } else {
                None
            };
            let typed: Vec<(&(dyn ToSql + Sync), Type)> =
                values.iter().copied().zip(types.iter().cloned()).collect();
            let enter_typed: Vec<(&(dyn ToSql + Sync), Type)> =
                enter_values.iter().map(|v| (*v, Type::TEXT)).collect();
            // Sent in this order when first polled (tokio::join! polls them in order), answered
            // in this order: one round trip.
            let begin = c.query_typed("BEGIN", &[]);
            let (enter, run) = match &prepared {
                Some((e, r)) => (
                    futures_either(c.query(e, &enter_values)),
                    futures_either(c.query(r, &values)),
                ),
                None => (
                    futures_either(c.query_typed(ENTER_SQL, &enter_typed)),
                    futures_either(c.query_typed(&statement.sql, &typed)),
                ),
            };
            let commit = c.query_typed("COMMIT", &[]);
            let (begun, entered, ran, committed) = tokio::join!(begin, enter, run, commit);
            // COMMIT answered (even with an error, or as the ROLLBACK of a failed transaction):
            // the transaction is over and the connection is idle. Otherwise it is not reused.
            let ended = match &committed {
                Ok(_) => true,
                Err(e) => e.as_db_error().is_some(),
            };
            let at_enter = begun.is_ok() && entered.is_err();
            let first_error = [begun.err(), entered.err()].into_iter().flatten().next();
            let result = match (first_error, ran, committed) {
                (Some(e), _, _) => Err(e),
                (None, Err(e), _) => Err(e),
                (None, Ok(_), Err(e)) => Err(e),
                (None, Ok(rows), Ok(_)) => Ok(rows),
            };
            if !ended {
                let _ = deadpool_postgres::Object::take(client);
            } else if let Err(e) = &result {
                // A prepared statement the server no longer knows (DISCARD ALL by a pooler), or
                // whose plan can no longer be used: this connection's cache starts afresh.
                if matches!(e.code().map(|c| c.code()), Some("26000") | Some("0A000")) {
                    client.statement_cache.clear();
                }
            }
            if result.is_err() {
                dbs.rollbacks
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            result.map_err(|e| (e, at_enter))
        });
        match task.await {
            Ok(Ok(rows)) => Ok(rows),
            Ok(Err((e, true))) if e.code().map(|c| c.code()) == Some("ST400") => {
                // The resource is no longer served: the cached description is stale.
                let db = self.clone();
                tokio::spawn(async move {
                    let _ = db.refresh().await;
                });
                let d = e.as_db_error();
                Err(ApiError::not_found(
                    d.map(|d| d.message().to_string()).unwrap_or_default(),
                    d.and_then(|d| d.hint())
                        .unwrap_or("GET /openapi.json lists the resources.")
                        .to_string(),
                ))
            }
            Ok(Err((e, _))) => Err(ApiError::from_db(&e, if_match)),
            Err(e) => {
                tracing::error!(error = %e, "a request's transaction task failed");
                Err(ApiError::internal())
            }
        }
    }
}
