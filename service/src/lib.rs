//! steward-service: routes HTTP requests into the database under the caller's token, and holds
//! no key and no trust of its own (docs/adr/012-the-service-holds-no-key.md).
//!
//! `app()` is the router; `Application` binds it to a port (tests bind port 0) and serves until
//! shut down, finishing the requests in flight.

// ApiError is a problem document (strings); errors are the rare path, boxing buys nothing.
#![allow(clippy::result_large_err)]

pub mod config;
pub mod db;
pub mod error;
pub mod metrics;
pub mod openapi;
pub mod query;
pub mod relay;
pub mod resources;
pub mod routes;

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderName, Request};
use axum::routing::get;
use axum::Router;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::config::{LogFormat, ServeArgs};
use crate::db::{Databases, PoolSettings};
use crate::routes::{AppState, Shared};

/// The state `serve` runs with, from its arguments.
pub fn state(args: &ServeArgs) -> anyhow::Result<AppState> {
    let routes = match &args.routes {
        Some(path) => config::read_routes(
            &std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("--routes {}: {e}", path.display()))?,
        )?,
        None => Default::default(),
    };
    args.database_url
        .parse::<tokio_postgres::Config>()
        .map_err(|e| anyhow::anyhow!("--database-url: {e}"))?;
    let request_timeout = Duration::from_millis(args.request_timeout_ms.max(1));
    let pool = PoolSettings {
        max_size: args.pool_size.max(1),
        wait: Duration::from_millis(args.pool_wait_ms),
        statement_timeout: request_timeout,
        statement_cache: args.statement_cache,
    };
    Ok(Arc::new(Shared {
        dbs: Arc::new(Databases::new(
            args.database_url.clone(),
            routes,
            pool.clone(),
        )),
        pool,
        request_timeout,
        max_body_bytes: args.max_body_bytes,
        default_limit: args.default_limit.clamp(1, args.max_limit.max(1)),
        max_limit: args.max_limit.max(1),
        extension_version: args.extension_version.clone(),
        metrics: Default::default(),
        openapi: Default::default(),
    }))
}

/// The HTTP application.
pub fn app(state: AppState) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    Router::new()
        .route(
            "/v1/{resource}",
            get(routes::collection)
                .post(routes::collection)
                .fallback(routes::wrong_method),
        )
        .route(
            "/v1/{resource}/{key}",
            get(routes::item)
                .patch(routes::item)
                .delete(routes::item)
                .fallback(routes::wrong_method),
        )
        .route(
            "/v1/{resource}/{key}/history",
            get(routes::history).fallback(routes::wrong_method),
        )
        .route("/healthz", get(routes::healthz).fallback(routes::wrong_method))
        .route("/readyz", get(routes::readyz).fallback(routes::wrong_method))
        .route("/metrics", get(routes::metrics).fallback(routes::wrong_method))
        .route("/openapi.json", get(routes::openapi).fallback(routes::wrong_method))
        .fallback(routes::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            routes::observe,
        ))
        .layer(
            // The span names the request id, method and route, and later the tenant; never a
            // header's value (the token is one).
            TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                let route = req
                    .extensions()
                    .get::<axum::extract::MatchedPath>()
                    .map(|m| m.as_str().to_string())
                    .unwrap_or_else(|| "unmatched".into());
                // Only a well-formed id reaches the log (the handler refuses the others).
                let id = req
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .filter(|v| {
                        v.len() <= 200
                            && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:/@".contains(&b))
                    })
                    .unwrap_or("(invalid)")
                    .to_string();
                tracing::info_span!("request", request_id = %id, method = %req.method(), route = %route, tenant = tracing::field::Empty)
            })
            // One line per request, at its end: status and latency, within the span above.
            .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .with_state(state)
}

/// Logs to stderr as text or JSON; `RUST_LOG` filters (default: info).
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// A bound server that knows its port (tests bind port 0).
pub struct Application {
    listener: tokio::net::TcpListener,
    state: AppState,
    refresh: Duration,
}

impl Application {
    pub async fn bind(args: &ServeArgs) -> anyhow::Result<Application> {
        let state = state(args)?;
        Ok(Application {
            listener: tokio::net::TcpListener::bind(&args.listen).await?,
            state,
            refresh: Duration::from_millis(args.resource_refresh_ms.max(100)),
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// Serves until `shutdown` completes, then finishes the requests in flight.
    pub async fn serve_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let state = self.state.clone();
        let refresh = self.refresh;
        // The resources of every database opened so far are read again now and then: exposing,
        // unexposing or altering a table reaches the service without a restart.
        let refresher = tokio::spawn(async move {
            let mut tick = tokio::time::interval(refresh);
            loop {
                tick.tick().await;
                for db in state.dbs.opened() {
                    if let Err(e) = db.refresh().await {
                        tracing::debug!(database = %db.label, error = %e.detail, "resources not read");
                    }
                }
            }
        });
        let result = axum::serve(self.listener, app(self.state))
            .with_graceful_shutdown(shutdown)
            .await;
        refresher.abort();
        result?;
        Ok(())
    }
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing the requests in flight");
}
