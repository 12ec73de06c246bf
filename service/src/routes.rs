//! The HTTP routes. Each `/v1` handler: finds the database (tenant routing) and the resource,
//! parses the request into a statement, runs it in one transaction entered with the caller's
//! token, and maps the answer to HTTP. No rule of the product lives here.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use uuid::Uuid;

use crate::db::{Context, Database, Databases, PoolSettings};
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::query::{encode_key_part, encode_pairs, parse_key, parse_list, Cursor};
use crate::resources::{Resource, Statement};

/// What the handlers share.
pub struct Shared {
    pub dbs: Arc<Databases>,
    pub pool: PoolSettings,
    pub request_timeout: Duration,
    pub max_body_bytes: usize,
    pub default_limit: u32,
    pub max_limit: u32,
    pub extension_version: String,
    pub metrics: Metrics,
    /// The OpenAPI document and the resources text it was built from.
    pub openapi: std::sync::Mutex<Option<(String, Arc<String>)>>,
}

pub type AppState = Arc<Shared>;

/// The longest token accepted.
const MAX_TOKEN: usize = 16 * 1024;
/// The longest reason and request id accepted.
const MAX_REASON: usize = 1000;
const MAX_REQUEST_ID: usize = 200;

/// What every `/v1` request carries besides its path.
struct Caller {
    ctx: Context,
    /// The tenant the token names, unverified: it only chooses the database, which verifies.
    claimed: Option<Uuid>,
}

fn caller(headers: &HeaderMap) -> Result<Caller, ApiError> {
    let auth = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::no_token("the request has no Authorization header"))?;
    let auth = auth
        .to_str()
        .map_err(|_| ApiError::no_token("the Authorization header is not ASCII"))?;
    let (scheme, token) = auth
        .split_once(' ')
        .ok_or_else(|| ApiError::no_token("the Authorization header is not \"Bearer <token>\""))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::no_token(
            "the Authorization header is not \"Bearer <token>\"",
        ));
    }
    let token = token.trim();
    if token.len() > MAX_TOKEN {
        return Err(ApiError::no_token(format!(
            "the token is longer than {MAX_TOKEN} bytes"
        )));
    }
    let claimed = token
        .split('.')
        .nth(1)
        .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v.get("tenant_id")?.as_str()?.parse::<Uuid>().ok());
    let text = |name: &str, max: usize| -> Result<Option<String>, ApiError> {
        match headers.get(name) {
            None => Ok(None),
            Some(v) => {
                let s = std::str::from_utf8(v.as_bytes()).map_err(|_| {
                    ApiError::bad_request(
                        format!("header {name} is not UTF-8"),
                        format!("Send {name} as UTF-8 text."),
                    )
                })?;
                if s.len() > max || s.chars().any(char::is_control) {
                    return Err(ApiError::bad_request(
                        format!(
                            "header {name} is longer than {max} bytes or holds control characters"
                        ),
                        format!("Shorten {name}."),
                    ));
                }
                Ok(Some(s.to_string()))
            }
        }
    };
    let reason = text("x-steward-reason", MAX_REASON)?;
    let request_id = text("x-request-id", MAX_REQUEST_ID)?;
    if let Some(id) = &request_id {
        if id.is_empty()
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:/@".contains(&b))
        {
            return Err(ApiError::bad_request(
                "header X-Request-Id holds characters other than letters, digits and -_.:/@",
                "Send a request id such as a UUID.",
            ));
        }
    }
    // A traceparent that is not W3C's format is ignored, as the recommendation says.
    let traceparent = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .filter(|t| valid_traceparent(t))
        .map(str::to_string);
    Ok(Caller {
        ctx: Context {
            token: token.to_string(),
            reason,
            request_id,
            traceparent,
            resource: String::new(),
        },
        claimed,
    })
}

fn valid_traceparent(t: &str) -> bool {
    let parts: Vec<&str> = t.split('-').collect();
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    };
    parts.len() == 4
        && hex(parts[0], 2)
        && hex(parts[1], 32)
        && hex(parts[2], 16)
        && hex(parts[3], 2)
}

/// The raw (still percent-encoded) segments after `/v1/`.
fn segments(uri: &Uri) -> Vec<&str> {
    uri.path()
        .strip_prefix("/v1/")
        .unwrap_or("")
        .split('/')
        .collect()
}

struct Target {
    db: Arc<Database>,
    resource: Resource,
}

async fn target(state: &AppState, caller: &Caller, name: &str) -> Result<Target, ApiError> {
    let db = state.dbs.for_tenant(caller.claimed)?;
    let mut resources = db.resources().await?;
    if !resources.by_name.contains_key(name) {
        if let Some(fresh) = db.resources_after_miss().await? {
            resources = fresh;
        }
    }
    let resource = resources.by_name.get(name).cloned().ok_or_else(|| {
        ApiError::not_found(
            format!(
                "there is no resource \"{}\"",
                name.chars().take(100).collect::<String>()
            ),
            "GET /openapi.json lists the resources.",
        )
    })?;
    Ok(Target { db, resource })
}

async fn run(
    state: &AppState,
    t: &Target,
    caller: Caller,
    st: Statement,
    if_match: bool,
) -> Result<Vec<tokio_postgres::Row>, ApiError> {
    let claimed = caller.claimed;
    let mut ctx = caller.ctx;
    ctx.resource = t.resource.resource.clone();
    let fut = t.db.run(&state.dbs, ctx, st, if_match, &state.pool);
    match tokio::time::timeout(state.request_timeout + Duration::from_millis(250), fut).await {
        Ok(r) => {
            // The tenant is logged once the database has verified the token that names it.
            let verified = match &r {
                Ok(_) => true,
                Err(e) => !matches!(e.sqlstate.as_str(), "ST401" | "ST001" | "ST002"),
            };
            if let (true, Some(t)) = (verified, claimed) {
                tracing::Span::current().record("tenant", tracing::field::display(t));
            }
            if let Err(e) = &r {
                if e.status == StatusCode::SERVICE_UNAVAILABLE
                    && matches!(e.sqlstate.as_str(), "42703" | "42P01")
                {
                    // The resource changed under us: read the resources again for the next request.
                    let db = t.db.clone();
                    tokio::spawn(async move {
                        let _ = db.refresh().await;
                    });
                }
            }
            r
        }
        Err(_) => Err(ApiError::timeout(state.request_timeout.as_secs_f64())),
    }
}

fn json_response(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn etag_header(etag: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{etag}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("\"\""))
}

/// The entity tags of an If-Match / If-None-Match header: `None` for `*`.
fn entity_tags(v: &HeaderValue, name: &str) -> Result<Option<Vec<String>>, ApiError> {
    let s = v.to_str().map_err(|_| {
        ApiError::bad_request(
            format!("{name} is not ASCII"),
            format!("Send {name}: \"<ETag>\"."),
        )
    })?;
    if s.trim() == "*" {
        return Ok(None);
    }
    let mut tags = Vec::new();
    for part in s.split(',') {
        let p = part.trim();
        // A weak tag never matches a strong comparison; kept to answer "stale", not "malformed".
        let (weak, p) = match p.strip_prefix("W/") {
            Some(rest) => (true, rest),
            None => (false, p),
        };
        let inner = p
            .strip_prefix('"')
            .and_then(|x| x.strip_suffix('"'))
            .filter(|x| !x.contains('"'))
            .ok_or_else(|| {
                ApiError::bad_request(
                    format!("{name}: {s} is not a list of entity tags"),
                    format!(
                        "Send {name}: \"<ETag>\", the ETag the row was read with, quotes included."
                    ),
                )
            })?;
        tags.push(if weak {
            format!("W/{inner}")
        } else {
            inner.to_string()
        });
    }
    Ok(Some(tags))
}

/// PATCH and DELETE: the one ETag the request states (None for `*`).
fn required_if_match(headers: &HeaderMap, resource: &Resource) -> Result<Option<String>, ApiError> {
    let v = headers.get(header::IF_MATCH).ok_or_else(|| {
        ApiError::new(
            StatusCode::PRECONDITION_REQUIRED,
            "ST428",
            format!(
                "a change to a row of resource \"{}\" must state the version it read",
                resource.resource
            ),
            "GET the row, then send its ETag as If-Match: \"<ETag>\" with the change.",
        )
    })?;
    match entity_tags(v, "If-Match")? {
        None => Ok(None),
        Some(tags) if tags.len() == 1 => Ok(Some(tags[0].clone())),
        Some(_) => Err(ApiError::bad_request(
            "If-Match names more than one entity tag",
            "Send the one ETag the row was read with.",
        )),
    }
}

fn stale(resource: &Resource, current: &str) -> ApiError {
    let mut e = ApiError::new(
        StatusCode::PRECONDITION_FAILED,
        "ST409",
        format!(
            "the row of resource \"{}\" changed since it was read: its ETag is now \"{current}\"",
            resource.resource
        ),
        "GET the row again, reapply the change, and send the new ETag as If-Match.",
    );
    e.title = "Precondition Failed".into();
    e
}

fn no_row(resource: &Resource, raw_key: &str) -> ApiError {
    ApiError::not_found(
        format!(
            "resource \"{}\" has no row with key {} in your tenant",
            resource.resource,
            raw_key.chars().take(200).collect::<String>()
        ),
        "Check the key; rows of other tenants are never visible.",
    )
}

async fn body_object(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<(serde_json::Map<String, serde_json::Value>, String), ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime != "application/json" && !(mime.starts_with("application/") && mime.ends_with("+json"))
    {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "ST400",
            format!("the body's Content-Type is \"{ct}\", not application/json"),
            "Send the row as a JSON object with Content-Type: application/json.",
        ));
    }
    let bytes: Bytes = axum::body::to_bytes(body, state.max_body_bytes)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "ST400",
                format!("the body is larger than {} bytes", state.max_body_bytes),
                "Send a smaller row.",
            )
        })?;
    let text = String::from_utf8(bytes.to_vec()).map_err(|_| {
        ApiError::bad_request("the body is not UTF-8", "Send the row as UTF-8 JSON.")
    })?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        ApiError::bad_request(
            format!("the body is not JSON: {e}"),
            "Send the row as a JSON object.",
        )
    })?;
    match value {
        serde_json::Value::Object(map) => {
            if text.contains("\\u0000") {
                return Err(ApiError::bad_request(
                    "the body holds a NUL character (\\u0000)",
                    "Remove it: PostgreSQL text cannot hold one.",
                ));
            }
            Ok((map, text))
        }
        _ => Err(ApiError::bad_request(
            "the body is not a JSON object",
            "Send the row as a JSON object: {\"column\": value, ...}.",
        )),
    }
}

fn select_param(uri: &Uri) -> Result<Option<Vec<String>>, ApiError> {
    let mut select = None;
    for (k, v) in form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()) {
        if k == "select" {
            if select.is_some() {
                return Err(ApiError::bad_request(
                    "query parameter \"select\" is given more than once",
                    "Give select= once.",
                ));
            }
            select = Some(crate::query::names(&v, "select")?);
        } else {
            return Err(ApiError::bad_request(
                format!("query parameter \"{k}\" does not apply to a single row"),
                "A row's URL takes select= only.",
            ));
        }
    }
    Ok(select)
}

pub async fn collection(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match collection_inner(&state, method, &uri, &headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn collection_inner(
    state: &AppState,
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let seg = segments(uri);
    let caller = caller(headers)?;
    let t = target(state, &caller, seg[0]).await?;
    if method == Method::POST {
        t.resource.read_only()?;
        let (map, text) = body_object(state, headers, body).await?;
        let st = t.resource.insert(&map, text)?;
        let rows = run(state, &t, caller, st, false).await?;
        let row = rows.first().ok_or_else(ApiError::internal)?;
        let json: String = row.get(0);
        let etag: String = row.get(1);
        let key: Vec<String> = (0..t.resource.key.len())
            .map(|i| encode_key_part(&row.get::<_, String>(2 + i)))
            .collect();
        let mut r = json_response(StatusCode::CREATED, json);
        let h = r.headers_mut();
        h.insert(header::ETAG, etag_header(&etag));
        if let Ok(v) =
            HeaderValue::from_str(&format!("/v1/{}/{}", t.resource.resource, key.join(",")))
        {
            h.insert(header::LOCATION, v);
        }
        return Ok(r);
    }
    let q = parse_list(
        uri.query().unwrap_or(""),
        state.default_limit,
        state.max_limit,
    )?;
    let (st, order) = t.resource.list(&q)?;
    let rows = run(state, &t, caller, st, false).await?;
    let limit = q.limit as usize;
    let mut body = String::from("[");
    for (i, row) in rows.iter().take(limit).enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(row.get::<_, &str>(0));
    }
    body.push(']');
    let mut r = json_response(StatusCode::OK, body);
    if rows.len() > limit && !order.is_empty() {
        let last = &rows[limit - 1];
        let values: Vec<Option<String>> = (0..order.len()).map(|i| last.get(1 + i)).collect();
        let cursor = Cursor::encode(&q.order_text, values);
        let mut pairs = q.pairs.clone();
        pairs.push(("after".into(), cursor));
        let link = format!(
            "</v1/{}?{}>; rel=\"next\"",
            t.resource.resource,
            encode_pairs(&pairs)
        );
        if let Ok(v) = HeaderValue::from_str(&link) {
            r.headers_mut().insert(header::LINK, v);
        }
    }
    Ok(r)
}

pub async fn item(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match item_inner(&state, method, &uri, &headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn item_inner(
    state: &AppState,
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let seg = segments(uri);
    let caller = caller(headers)?;
    let t = target(state, &caller, seg[0]).await?;
    let raw_key = seg[1];
    let key = parse_key(raw_key)?;
    let r = &t.resource;
    if method == Method::GET {
        let select = select_param(uri)?;
        let st = r.get(&key, &select)?;
        let rows = run(state, &t, caller, st, false).await?;
        let row = rows.first().ok_or_else(|| no_row(r, raw_key))?;
        let etag: String = row.get(1);
        if let Some(v) = headers.get(header::IF_NONE_MATCH) {
            let matches = match entity_tags(v, "If-None-Match")? {
                None => true,
                // Weak comparison for If-None-Match.
                Some(tags) => tags
                    .iter()
                    .any(|t| t.strip_prefix("W/").unwrap_or(t) == etag),
            };
            if matches {
                let mut res = StatusCode::NOT_MODIFIED.into_response();
                res.headers_mut().insert(header::ETAG, etag_header(&etag));
                return Ok(res);
            }
        }
        let mut res = json_response(StatusCode::OK, row.get(0));
        res.headers_mut().insert(header::ETAG, etag_header(&etag));
        return Ok(res);
    }
    if method == Method::PATCH || method == Method::DELETE {
        if r.is_view() {
            return Err(ApiError::not_found(
                format!(
                    "resource \"{}\" is a view: its rows have no key",
                    r.resource
                ),
                format!(
                    "List its rows with GET /v1/{} and filters; write to the tables it reads.",
                    r.resource
                ),
            ));
        }
        let etag = required_if_match(headers, r)?;
        // A weak tag, or a version that is no number, matches no row's version.
        let unmatchable = etag
            .as_deref()
            .is_some_and(|e| e.starts_with("W/") || (r.versioned && e.parse::<i64>().is_err()));
        let st = if method == Method::PATCH {
            let (map, text) = body_object(state, headers, body).await?;
            if unmatchable {
                // Still parse the key and the body, so that a bad request is told so first.
                r.update(&key, Some("0"), &map, text)?;
                return Err(stale(r, "?"));
            }
            r.update(&key, etag.as_deref(), &map, text)?
        } else {
            if unmatchable {
                r.delete(&key, Some("0"))?;
                return Err(stale(r, "?"));
            }
            r.delete(&key, etag.as_deref())?
        };
        let rows = run(state, &t, caller, st, true).await?;
        let row = rows.first().ok_or_else(ApiError::internal)?;
        let done: bool = row.get(2);
        let current: Option<String> = row.get(1);
        if !done {
            return Err(match current {
                Some(c) => stale(r, &c),
                None => no_row(r, raw_key),
            });
        }
        if method == Method::DELETE {
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        let mut res = json_response(StatusCode::OK, row.get(0));
        if let Some(c) = current {
            res.headers_mut().insert(header::ETAG, etag_header(&c));
        }
        return Ok(res);
    }
    Err(ApiError::method_not_allowed(
        "GET, PATCH, DELETE",
        format!("{method} is not a method of /v1/{}/{{key}}", r.resource),
        "Use GET, PATCH or DELETE.",
    ))
}

pub async fn history(State(state): State<AppState>, uri: Uri, headers: HeaderMap) -> Response {
    let go = async {
        let seg = segments(&uri);
        let caller = caller(&headers)?;
        let t = target(&state, &caller, seg[0]).await?;
        let key = parse_key(seg[1])?;
        if uri.query().is_some_and(|q| !q.is_empty()) {
            return Err(ApiError::bad_request(
                "a row's history takes no query parameters",
                "GET /v1/{resource}/{key}/history as it is.",
            ));
        }
        let st = t.resource.history(&key)?;
        let rows = run(&state, &t, caller, st, false).await?;
        let row = rows.first().ok_or_else(ApiError::internal)?;
        let n: i64 = row.get(1);
        if n == 0 {
            return Err(no_row(&t.resource, seg[1]));
        }
        Ok(json_response(StatusCode::OK, row.get(0)))
    };
    match go.await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

pub async fn healthz() -> Response {
    json_response(StatusCode::OK, "{\"status\":\"ok\"}".into())
}

pub async fn readyz(State(state): State<AppState>) -> Response {
    let go = async {
        let db = state.dbs.default_database()?;
        let v = db.extension_version().await?;
        match v {
            Some(v) if v == state.extension_version => Ok(json_response(
                StatusCode::OK,
                serde_json::json!({"status": "ready", "extension": v}).to_string(),
            )),
            other => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ST400",
                format!(
                    "the default database has steward {}, this service expects {}",
                    other.as_deref().unwrap_or("(not installed)"),
                    state.extension_version
                ),
                "Run ALTER EXTENSION steward UPDATE (docs/dba-guide.md), or start the service with --extension-version.",
            )),
        }
    };
    match go.await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    let mut r = (StatusCode::OK, state.metrics.render(&state.dbs)).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}

pub async fn openapi(State(state): State<AppState>) -> Response {
    let go = async {
        let db = state.dbs.default_database()?;
        let resources = db.resources().await?;
        {
            let cached = state.openapi.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((text, doc)) = cached.as_ref() {
                if *text == resources.text {
                    return Ok(json_response(StatusCode::OK, doc.as_str().to_string()));
                }
            }
        }
        let mut list: Vec<&Resource> = resources.by_name.values().collect();
        list.sort_by(|a, b| a.resource.cmp(&b.resource));
        let doc = Arc::new(crate::openapi::document(&list, env!("CARGO_PKG_VERSION")).to_string());
        *state.openapi.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((resources.text.clone(), doc.clone()));
        Ok::<_, ApiError>(json_response(StatusCode::OK, doc.as_str().to_string()))
    };
    match go.await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

pub async fn not_found(uri: Uri) -> Response {
    ApiError::not_found(
        format!("no route for {}", uri.path().chars().take(200).collect::<String>()),
        "Routes: /v1/{resource}, /v1/{resource}/{key}, /v1/{resource}/{key}/history, /openapi.json, /healthz, /readyz, /metrics.",
    )
    .into_response()
}

pub async fn wrong_method(
    State(state): State<AppState>,
    matched: Option<MatchedPath>,
    method: Method,
    uri: Uri,
) -> Response {
    let route = matched.as_ref().map(|m| m.as_str()).unwrap_or("");
    let allow = match route {
        "/v1/{resource}" => {
            // A view is read-only: GET alone.
            let name = segments(&uri).first().copied().unwrap_or("").to_string();
            let view = match state.dbs.default_database() {
                Ok(db) => db
                    .resources()
                    .await
                    .ok()
                    .and_then(|r| r.by_name.get(&name).map(Resource::is_view))
                    .unwrap_or(false),
                Err(_) => false,
            };
            if view {
                "GET"
            } else {
                "GET, POST"
            }
        }
        "/v1/{resource}/{key}" => "GET, PATCH, DELETE",
        _ => "GET",
    };
    ApiError::method_not_allowed(
        allow,
        format!(
            "{method} is not a method of {}",
            uri.path().chars().take(200).collect::<String>()
        ),
        format!("Methods of this route: {allow}."),
    )
    .into_response()
}

/// Times every request by its route (the matched pattern, never the raw path).
pub async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let res = next.run(req).await;
    state.metrics.observe(
        &route,
        &method,
        res.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    res
}
