//! steward-service serve against a real cluster: the service's role is an ordinary role, every
//! request runs in the tenant its token names, and bad input is a 4xx problem, never a 500.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use steward_service::config::{Cli, Command};
use steward_tests::{connect, conninfo, fresh_database, hs256, now, sqlstate, Lcg, ACME, GLOBEX};

const SECRET: &[u8] = b"e2e-service-signing-key-0123456789abcdef";
const LONG_REASON: &str = concat!(
    "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789",
    "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789",
    "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789",
    "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789",
    "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789",
    "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789",
    "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789",
    "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789",
    "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789",
    "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789",
    "-"
);
const HOOLI: &str = "00000000-0000-4000-8000-0000000000c1";

/// A database for one test: the fixture's tenants plus a suspended one, the service's role
/// `e2e_api` (no grant, no trust), governed and exposed tables, and a signing key.
fn setup(name: &str) -> String {
    let db = fresh_database(name);
    let mut admin = connect("postgres", "postgres");
    admin
        .batch_execute(
            "DO $$ BEGIN CREATE ROLE e2e_api LOGIN; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$",
        )
        .unwrap();
    let mut c = connect(&db, "postgres");
    c.batch_execute(&format!(
        "INSERT INTO steward.tenants (tenant_id, slug, display_name, status)
              VALUES ('{HOOLI}', 'hooli', 'Hooli', 'suspended');
         CREATE TABLE projects (
             id       bigint GENERATED ALWAYS AS IDENTITY,
             tenant_id uuid NOT NULL,
             code     text NOT NULL,
             title    text NOT NULL CHECK (length(title) <= 200),
             fields   jsonb NOT NULL DEFAULT '{{}}',
             due      date,
             PRIMARY KEY (tenant_id, id),
             UNIQUE (tenant_id, code));
         GRANT SELECT, INSERT, UPDATE, DELETE ON projects TO e2e_api;
         SELECT steward.govern('projects');
         SELECT steward.expose('projects');
         CREATE TABLE pairs (a text, b int, tenant_id uuid NOT NULL, note text,
                             PRIMARY KEY (tenant_id, a, b));
         GRANT SELECT, INSERT, UPDATE, DELETE ON pairs TO e2e_api;
         SELECT steward.govern('pairs', versioned => false);
         SELECT steward.expose('pairs');
         CREATE VIEW project_titles WITH (security_invoker = true) AS SELECT id, title FROM projects;
         GRANT SELECT ON project_titles TO e2e_api;
         SELECT steward.expose('project_titles', 'project-titles');
         -- A resource slow on purpose: each row whose title starts with 'slow' takes a second.
         CREATE VIEW slow WITH (security_invoker = true) AS
             SELECT id, title, (SELECT pg_sleep(CASE WHEN title LIKE 'slow%' THEN 1 ELSE 0 END)) IS NULL AS waited
               FROM projects;
         GRANT SELECT ON slow TO e2e_api;
         SELECT steward.expose('slow');
         INSERT INTO steward.signing_keys (key_id, secret) VALUES ('e2e', '\\x{}');",
        SECRET.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ))
    .unwrap();
    db
}

fn token(tenant: &str, sub: &str) -> String {
    hs256(
        &json!({"tenant_id": tenant, "sub": sub, "exp": now() + 600}),
        SECRET,
    )
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

struct Api {
    base: String,
    http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Api {
    /// Starts the service on port 0 against `db` as `e2e_api`, with extra flags.
    async fn start(db: &str, extra: &[&str]) -> Api {
        Api::start_url(&conninfo(db, "e2e_api", None), extra).await
    }

    /// Starts the service with `url` as its default database.
    async fn start_url(url: &str, extra: &[&str]) -> Api {
        let url = url.to_string();
        let mut argv = vec![
            "steward-service",
            "serve",
            "--database-url",
            &url,
            "--listen",
            "127.0.0.1:0",
        ];
        if !extra.contains(&"--resource-refresh-ms") {
            argv.extend_from_slice(&["--resource-refresh-ms", "200"]);
        }
        argv.extend_from_slice(extra);
        let Command::Serve(args) = Cli::try_parse_from(argv).unwrap().command else {
            unreachable!("serve was asked for")
        };
        let app = steward_service::Application::bind(&args).await.unwrap();
        let base = format!("http://127.0.0.1:{}", app.port());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let done = tokio::spawn(app.serve_until(async {
            let _ = stopped.await;
        }));
        Api {
            base,
            http: reqwest::Client::new(),
            stop: Some(stop),
            done: Some(done),
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> (StatusCode, reqwest::header::HeaderMap, String) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let res = req.send().await.unwrap();
        let (status, headers) = (res.status(), res.headers().clone());
        (status, headers, res.text().await.unwrap())
    }

    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(d) = self.done.take() {
            d.await.unwrap().unwrap();
        }
    }
}

fn problem(status: StatusCode, headers: &reqwest::header::HeaderMap, body: &str) -> Value {
    assert_eq!(
        headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/problem+json"),
        "{status}: {body}"
    );
    let p: Value = serde_json::from_str(body).unwrap();
    assert_eq!(p["status"], status.as_u16(), "{body}");
    assert!(
        p["sqlstate"].as_str().is_some_and(|s| s.len() == 5),
        "{body}"
    );
    assert!(p["hint"].as_str().is_some_and(|h| !h.is_empty()), "{body}");
    assert!(
        p["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("urn:steward:")),
        "{body}"
    );
    p
}

fn etag(headers: &reqwest::header::HeaderMap) -> String {
    headers.get("etag").unwrap().to_str().unwrap().to_string()
}

/// The service's role, connected directly, can enter no tenant without a valid token and read
/// no governed row.
#[test]
fn the_services_role_alone_gets_nothing() {
    let db = setup("e2e_svc_role");
    let mut c = connect(&db, "e2e_api");
    let err = |c: &mut postgres::Client, sql: &str| sqlstate(&c.batch_execute(sql).unwrap_err());
    assert_eq!(err(&mut c, "SELECT * FROM projects"), "ST001");
    assert_eq!(err(&mut c, "SELECT * FROM project_titles"), "ST001");
    assert_eq!(
        err(&mut c, &format!("SELECT steward.enter_tenant('{ACME}')")),
        "ST002"
    );
    assert_eq!(
        err(&mut c, "SELECT steward.enter_tenant_token('junk')"),
        "ST401"
    );
    let forged = hs256(
        &json!({"tenant_id": ACME, "sub": "x", "exp": now() + 600}),
        b"a-guessed-key-a-guessed-key-a-guessed-key",
    );
    assert_eq!(
        err(
            &mut c,
            &format!("SELECT steward.enter_tenant_token('{forged}')")
        ),
        "ST401"
    );
    assert_eq!(err(&mut c, "SELECT * FROM steward.signing_keys"), "42501");
    // No setting names a tenant: steward.* is steward's own prefix.
    assert_eq!(
        err(&mut c, &format!("SET steward.tenant = '{ACME}'")),
        "42602"
    );
    assert_eq!(err(&mut c, "SELECT * FROM projects"), "ST001");
    // With a valid token it is in that tenant, and only there.
    let mut tx = c.transaction().unwrap();
    tx.execute(
        "SELECT steward.enter_tenant_token($1)",
        &[&token(ACME, "alice")],
    )
    .unwrap();
    let n: i64 = tx
        .query_one("SELECT count(*) FROM projects", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
    tx.rollback().unwrap();
}

#[test]
fn rows_round_trip_with_etags_preconditions_and_history() {
    let db = setup("e2e_svc_crud");
    rt().block_on(async {
        let api = Api::start(&db, &[]).await;
        let acme = token(ACME, "alice@acme.example");
        let (s, h, b) = api
            .call(
                Method::POST,
                "/v1/projects",
                Some(&acme),
                &[("x-steward-reason", "ADR-042: new project")],
                Some(r#"{"code": "p-1", "title": "Rocket skates", "fields": {"owner": "wile"}}"#),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        assert_eq!(etag(&h), "\"1\"");
        let location = h.get("location").unwrap().to_str().unwrap().to_string();
        let row: Value = serde_json::from_str(&b).unwrap();
        assert_eq!(location, format!("/v1/projects/{}", row["id"]));
        assert_eq!(row["fields"]["owner"], "wile");
        assert!(
            row.get("tenant_id").is_none(),
            "the tenant column is never shown: {b}"
        );

        let (s, h, b) = api
            .call(Method::GET, &location, Some(&acme), &[], None)
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(etag(&h), "\"1\"");
        let (s, h, _) = api
            .call(
                Method::GET,
                &location,
                Some(&acme),
                &[("if-none-match", "\"1\"")],
                None,
            )
            .await;
        assert_eq!(s, StatusCode::NOT_MODIFIED);
        assert_eq!(etag(&h), "\"1\"");

        // PATCH without If-Match: 428; stale: 412; right: 200 and the next version.
        let patch = r#"{"title": "Rocket skates, mark II"}"#;
        let (s, h, b) = api
            .call(Method::PATCH, &location, Some(&acme), &[], Some(patch))
            .await;
        assert_eq!(s, StatusCode::PRECONDITION_REQUIRED);
        assert_eq!(problem(s, &h, &b)["sqlstate"], "ST428");
        let (s, h, b) = api
            .call(
                Method::PATCH,
                &location,
                Some(&acme),
                &[("if-match", "\"7\"")],
                Some(patch),
            )
            .await;
        assert_eq!(s, StatusCode::PRECONDITION_FAILED, "{b}");
        assert_eq!(problem(s, &h, &b)["sqlstate"], "ST409");
        let (s, h, b) = api
            .call(
                Method::PATCH,
                &location,
                Some(&acme),
                &[
                    ("if-match", "\"1\""),
                    ("x-steward-reason", "ADR-043: renamed"),
                ],
                Some(patch),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(etag(&h), "\"2\"");
        // The old ETag is stale now, for PATCH and DELETE alike.
        let (s, _, _) = api
            .call(
                Method::PATCH,
                &location,
                Some(&acme),
                &[("if-match", "\"1\"")],
                Some(patch),
            )
            .await;
        assert_eq!(s, StatusCode::PRECONDITION_FAILED);
        let (s, h, b) = api
            .call(Method::DELETE, &location, Some(&acme), &[], None)
            .await;
        assert_eq!(s, StatusCode::PRECONDITION_REQUIRED);
        problem(s, &h, &b);
        let (s, h, b) = api
            .call(
                Method::DELETE,
                &location,
                Some(&acme),
                &[("if-match", "\"1\"")],
                None,
            )
            .await;
        assert_eq!(s, StatusCode::PRECONDITION_FAILED);
        problem(s, &h, &b);

        // Another tenant sees nothing of it, and cannot change or delete it.
        let globex = token(GLOBEX, "bob@globex.example");
        for m in [Method::GET, Method::DELETE] {
            let (s, h, b) = api
                .call(m, &location, Some(&globex), &[("if-match", "\"2\"")], None)
                .await;
            assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
            problem(s, &h, &b);
        }
        let (s, _, b) = api
            .call(
                Method::PATCH,
                &location,
                Some(&globex),
                &[("if-match", "\"2\"")],
                Some(patch),
            )
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
        let (s, _, b) = api
            .call(Method::GET, "/v1/projects", Some(&globex), &[], None)
            .await;
        assert_eq!((s, b.as_str()), (StatusCode::OK, "[]"));
        let (s, _, b) = api
            .call(Method::GET, "/v1/project-titles", Some(&acme), &[], None)
            .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(
            serde_json::from_str::<Value>(&b).unwrap()[0]["title"],
            "Rocket skates, mark II"
        );

        // History, with the reasons recorded, oldest first.
        let (s, _, b) = api
            .call(
                Method::GET,
                &format!("{location}/history"),
                Some(&acme),
                &[],
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let h: Value = serde_json::from_str(&b).unwrap();
        assert_eq!(h.as_array().unwrap().len(), 2, "{b}");
        assert_eq!(h[0]["action"], "INSERT");
        assert_eq!(h[0]["reason"], "ADR-042: new project");
        assert_eq!(h[0]["actor"], "alice@acme.example");
        assert_eq!(h[1]["reason"], "ADR-043: renamed");
        assert!(h[1]["new_row"].get("tenant_id").is_none(), "{b}");
        let (s, _, _) = api
            .call(
                Method::GET,
                &format!("{location}/history"),
                Some(&globex),
                &[],
                None,
            )
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND);

        // DELETE with the current ETag: 204, then the row is gone.
        let (s, _, b) = api
            .call(
                Method::DELETE,
                &location,
                Some(&acme),
                &[("if-match", "\"2\"")],
                None,
            )
            .await;
        assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
        let (s, _, _) = api
            .call(Method::GET, &location, Some(&acme), &[], None)
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND);

        // A composite key and an unversioned table: the ETag is a digest of the row.
        let (s, h, b) = api
            .call(
                Method::POST,
                "/v1/pairs",
                Some(&acme),
                &[],
                Some(r#"{"a": "x,y/z", "b": 2, "note": "n"}"#),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        let loc = h.get("location").unwrap().to_str().unwrap().to_string();
        assert_eq!(loc, "/v1/pairs/x%2Cy%2Fz,2");
        let tag = etag(&h);
        let (s, h, b) = api.call(Method::GET, &loc, Some(&acme), &[], None).await;
        assert_eq!((s, etag(&h)), (StatusCode::OK, tag.clone()), "{b}");
        let (s, _, _) = api
            .call(
                Method::PATCH,
                &loc,
                Some(&acme),
                &[("if-match", "\"0000\"")],
                Some(r#"{"note": "m"}"#),
            )
            .await;
        assert_eq!(s, StatusCode::PRECONDITION_FAILED);
        let (s, h, b) = api
            .call(
                Method::PATCH,
                &loc,
                Some(&acme),
                &[("if-match", &tag)],
                Some(r#"{"note": "m"}"#),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_ne!(etag(&h), tag);
        api.stop().await;
    });
}

#[test]
fn tokens_and_tenants_map_to_401_and_403() {
    let db = setup("e2e_svc_tokens");
    rt().block_on(async {
        let api = Api::start(&db, &[]).await;
        let (s, h, b) = api.call(Method::GET, "/v1/projects", None, &[], None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert_eq!(h.get("www-authenticate").unwrap(), "Bearer");
        problem(s, &h, &b);
        let bad = [
            "junk".to_string(),
            hs256(
                &json!({"tenant_id": ACME, "sub": "a", "exp": now() - 5}),
                SECRET,
            ),
            hs256(
                &json!({"tenant_id": ACME, "sub": "a", "exp": now() + 60}),
                b"not-the-key-not-the-key-not-the-key!",
            ),
            hs256(
                &json!({"tenant_id": ACME, "sub": "a", "nbf": now() + 3600, "exp": now() + 7200}),
                SECRET,
            ),
        ];
        for t in &bad {
            let (s, h, b) = api
                .call(Method::GET, "/v1/projects", Some(t), &[], None)
                .await;
            assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
            assert_eq!(
                h.get("www-authenticate").unwrap(),
                "Bearer error=\"invalid_token\""
            );
            assert_eq!(problem(s, &h, &b)["sqlstate"], "ST401");
        }
        let (s, h, b) = api
            .call(
                Method::GET,
                "/v1/projects",
                Some(&token(HOOLI, "x")),
                &[],
                None,
            )
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
        assert_eq!(problem(s, &h, &b)["sqlstate"], "ST002");
        let unknown = token("00000000-0000-4000-8000-00000000ffff", "x");
        let (s, _, _) = api
            .call(Method::GET, "/v1/projects", Some(&unknown), &[], None)
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        api.stop().await;
    });
}

/// method, path, body, headers, the status expected.
type Case<'a> = (
    Method,
    String,
    Option<String>,
    &'a [(&'a str, &'a str)],
    u16,
);

/// Every malformed request is a 4xx problem+json: none reaches SQL as text, none is a 500.
#[test]
fn bad_input_is_a_4xx_problem_never_a_500() {
    let db = setup("e2e_svc_bad");
    rt().block_on(async {
        let api = Api::start(&db, &["--max-body-bytes", "4096", "--max-limit", "500"]).await;
        let acme = token(ACME, "alice");
        let (s, _, b) = api
            .call(
                Method::POST,
                "/v1/projects",
                Some(&acme),
                &[],
                Some(r#"{"code": "k1", "title": "t"}"#),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        let id = serde_json::from_str::<Value>(&b).unwrap()["id"].to_string();
        let big = format!("{{\"code\": \"x\", \"title\": \"{}\"}}", "a".repeat(5000));
        let cases: Vec<Case> = vec![
            (Method::GET, "/v1/nope".into(), None, &[], 404),
            (Method::GET, "/v1/projects?nope=eq.1".into(), None, &[], 400),
            (
                Method::GET,
                "/v1/projects?title=like.x".into(),
                None,
                &[],
                400,
            ),
            (Method::GET, "/v1/projects?title=x".into(), None, &[], 400),
            (Method::GET, "/v1/projects?id=eq.abc".into(), None, &[], 400),
            (
                Method::GET,
                "/v1/projects?id=in.(1,zz)".into(),
                None,
                &[],
                400,
            ),
            (
                Method::GET,
                "/v1/projects?due=gt.notadate".into(),
                None,
                &[],
                400,
            ),
            (
                Method::GET,
                "/v1/projects?fields=eq.%7B%7D".into(),
                None,
                &[],
                200,
            ),
            (
                Method::GET,
                "/v1/projects?select=id,nope".into(),
                None,
                &[],
                400,
            ),
            (
                Method::GET,
                "/v1/projects?select=tenant_id".into(),
                None,
                &[],
                400,
            ),
            (
                Method::GET,
                "/v1/projects?tenant_id=eq.00000000-0000-4000-8000-0000000000b1".into(),
                None,
                &[],
                400,
            ),
            (
                Method::GET,
                "/v1/projects?order=nope.desc".into(),
                None,
                &[],
                400,
            ),
            (
                Method::GET,
                "/v1/projects?order=title.sideways".into(),
                None,
                &[],
                400,
            ),
            (Method::GET, "/v1/projects?limit=0".into(), None, &[], 400),
            (Method::GET, "/v1/projects?limit=501".into(), None, &[], 400),
            (
                Method::GET,
                "/v1/projects?limit=99999999999999999999999".into(),
                None,
                &[],
                400,
            ),
            (
                Method::GET,
                "/v1/projects?limit=1&limit=2".into(),
                None,
                &[],
                400,
            ),
            (
                Method::GET,
                "/v1/projects?order=id&order=title".into(),
                None,
                &[],
                400,
            ),
            (
                Method::GET,
                "/v1/projects?after=garbage!!".into(),
                None,
                &[],
                400,
            ),
            (
                Method::GET,
                "/v1/projects?after=eyJvIjoiIiwidiI6WyIxIiwiMiJdfQ".into(),
                None,
                &[],
                400,
            ),
            (
                Method::GET,
                "/v1/projects?title=eq.%00".into(),
                None,
                &[],
                400,
            ),
            (Method::GET, "/v1/projects/abc".into(), None, &[], 400),
            (Method::GET, "/v1/projects/1,2".into(), None, &[], 400),
            (Method::GET, "/v1/projects/%FF".into(), None, &[], 400),
            (
                Method::GET,
                "/v1/projects/%2E%2E%2Fsteward".into(),
                None,
                &[],
                400,
            ),
            (
                Method::GET,
                "/v1/projects/1%27%20OR%201=1".into(),
                None,
                &[],
                400,
            ),
            (
                Method::GET,
                "/v1/projects/../../etc/passwd".into(),
                None,
                &[],
                404,
            ),
            (
                Method::GET,
                "/v1/projects/99999999999999999999999".into(),
                None,
                &[],
                400,
            ),
            (
                Method::GET,
                format!("/v1/projects/{id}?limit=1"),
                None,
                &[],
                400,
            ),
            (Method::GET, "/v1/project-titles/1".into(), None, &[], 404),
            (Method::GET, "/v1/".into(), None, &[], 404),
            (Method::GET, "/elsewhere".into(), None, &[], 404),
            (Method::PUT, "/v1/projects".into(), None, &[], 405),
            (
                Method::POST,
                "/v1/project-titles".into(),
                Some(r#"{"title": "x"}"#.into()),
                &[],
                405,
            ),
            (
                Method::PATCH,
                "/v1/project-titles/1".into(),
                Some("{}".into()),
                &[("if-match", "\"1\"")],
                404,
            ),
            (
                Method::POST,
                "/v1/projects".into(),
                Some("{not json".into()),
                &[],
                400,
            ),
            (
                Method::POST,
                "/v1/projects".into(),
                Some("[1, 2]".into()),
                &[],
                400,
            ),
            (
                Method::POST,
                "/v1/projects".into(),
                Some(r#"{"code": {}, "title": "t"}"#.into()),
                &[],
                400,
            ),
            (
                Method::POST,
                "/v1/projects".into(),
                Some(r#"{"code": "k9", "title": "t", "due": 20260101}"#.into()),
                &[],
                400,
            ),
            (
                Method::POST,
                "/v1/projects".into(),
                Some(r#"{"code": "k9", "title": true}"#.into()),
                &[],
                400,
            ),
            (
                Method::POST,
                "/v1/projects".into(),
                Some(r#"{"code": "k9", "title": "t", "fields": "a string is JSON too"}"#.into()),
                &[],
                201,
            ),
            (
                Method::POST,
                "/v1/projects".into(),
                Some(r#"{"code": "k2"}"#.into()),
                &[],
                400,
            ),
            (
                Method::POST,
                "/v1/projects".into(),
                Some(r#"{"code": "k2", "title": 5, "due": "yesterday-ish"}"#.into()),
                &[],
                400,
            ),
            (
                Method::POST,
                "/v1/projects".into(),
                Some(r#"{"code": "k2", "title": "t", "nope": 1}"#.into()),
                &[],
                400,
            ),
            (
                Method::POST,
                "/v1/projects".into(),
                Some(r#"{"code": "k2", "title": "t", "id": 9}"#.into()),
                &[],
                400,
            ),
            (
                Method::POST,
                "/v1/projects".into(),
                Some(r#"{"code": "k2", "title": "t", "version": 9}"#.into()),
                &[],
                400,
            ),
            (
                Method::POST,
                "/v1/projects".into(),
                Some(format!(
                    r#"{{"code": "k2", "title": "t", "tenant_id": "{GLOBEX}"}}"#
                )),
                &[],
                400,
            ),
            (
                Method::POST,
                "/v1/projects".into(),
                Some(r#"{"code": "k1", "title": "duplicate code"}"#.into()),
                &[],
                409,
            ),
            (
                Method::POST,
                "/v1/projects".into(),
                Some(format!(
                    r#"{{"code": "k3", "title": "{}"}}"#,
                    "t".repeat(300)
                )),
                &[],
                400,
            ),
            (
                Method::POST,
                "/v1/projects".into(),
                Some(r#"{"code": "k3", "title": "a\u0000b"}"#.into()),
                &[],
                400,
            ),
            (Method::POST, "/v1/projects".into(), Some(big), &[], 413),
            (
                Method::PATCH,
                format!("/v1/projects/{id}"),
                Some("{}".into()),
                &[("if-match", "\"1\"")],
                400,
            ),
            (
                Method::PATCH,
                format!("/v1/projects/{id}"),
                Some(r#"{"title": null}"#.into()),
                &[("if-match", "\"1\"")],
                400,
            ),
            (
                Method::PATCH,
                format!("/v1/projects/{id}"),
                Some(r#"{"title": "x"}"#.into()),
                &[("if-match", "1")],
                400,
            ),
            (
                Method::PATCH,
                format!("/v1/projects/{id}"),
                Some(r#"{"title": "x"}"#.into()),
                &[("if-match", "\"1\", \"2\"")],
                400,
            ),
            (
                Method::PATCH,
                format!("/v1/projects/{id}"),
                Some(r#"{"title": "x"}"#.into()),
                &[("if-match", "W/\"1\"")],
                412,
            ),
            (
                Method::PATCH,
                format!("/v1/projects/{id}"),
                Some(r#"{"title": "x"}"#.into()),
                &[("if-match", "\"one\"")],
                412,
            ),
            (
                Method::DELETE,
                "/v1/projects/424242".into(),
                None,
                &[("if-match", "\"1\"")],
                404,
            ),
            (
                Method::GET,
                "/v1/projects".into(),
                None,
                &[("x-steward-reason", LONG_REASON)],
                400,
            ),
        ];
        for (method, path, body, headers, want) in cases {
            let (s, h, b) = api
                .call(method.clone(), &path, Some(&acme), headers, body.as_deref())
                .await;
            assert_eq!(s.as_u16(), want, "{method} {path}: {b}");
            if want >= 400 {
                problem(s, &h, &b);
            }
            if want == 405 {
                let allow = h.get("allow").and_then(|v| v.to_str().ok()).unwrap_or("");
                assert!(
                    !allow.is_empty() && !allow.contains(method.as_str()),
                    "{method} {path}: Allow {allow}"
                );
            }
        }
        // A wrong Content-Type is 415.
        let res = api
            .http
            .post(format!("{}/v1/projects", api.base))
            .bearer_auth(&acme)
            .header("content-type", "text/plain")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        // Nothing above changed the row.
        let (s, h, _) = api
            .call(
                Method::GET,
                &format!("/v1/projects/{id}"),
                Some(&acme),
                &[],
                None,
            )
            .await;
        assert_eq!((s, etag(&h)), (StatusCode::OK, "\"1\"".to_string()));
        api.stop().await;
    });
}

#[test]
fn keyset_pages_give_every_row_once_in_order() {
    let db = setup("e2e_svc_pages");
    {
        let mut c = connect(&db, "postgres");
        let mut tx = c.transaction().unwrap();
        tx.execute(
            "SELECT steward.enter_tenant($1::text::uuid, 'seed')",
            &[&ACME],
        )
        .unwrap();
        // Titles repeat (ties broken by the key) and some due dates are NULL.
        tx.batch_execute(
            "INSERT INTO projects (code, title, due)
             SELECT 'c' || g, 'title ' || (g % 7), CASE WHEN g % 3 = 0 THEN NULL ELSE date '2026-01-01' + g END
               FROM generate_series(1, 57) g",
        )
        .unwrap();
        tx.commit().unwrap();
    }
    rt().block_on(async {
        let api = Api::start(&db, &[]).await;
        let acme = token(ACME, "alice");
        for order in ["title.desc,due", "due.desc", "due", "id.desc", ""] {
            let mut seen: Vec<(Value, Value, i64)> = Vec::new();
            let mut path = format!("/v1/projects?limit=10&select=id,title,due&order={order}");
            if order.is_empty() {
                path = "/v1/projects?limit=10".into();
            }
            let mut pages = 0;
            loop {
                let (s, h, b) = api.call(Method::GET, &path, Some(&acme), &[], None).await;
                assert_eq!(s, StatusCode::OK, "{path}: {b}");
                for r in serde_json::from_str::<Value>(&b)
                    .unwrap()
                    .as_array()
                    .unwrap()
                {
                    seen.push((
                        r["title"].clone(),
                        r["due"].clone(),
                        r["id"].as_i64().unwrap(),
                    ));
                }
                pages += 1;
                match h.get("link") {
                    Some(l) => {
                        let l = l.to_str().unwrap();
                        assert!(l.ends_with(">; rel=\"next\""), "{l}");
                        path = l[1..l.find('>').unwrap()].to_string();
                    }
                    None => break,
                }
                assert!(pages < 20);
            }
            let mut ids: Vec<i64> = seen.iter().map(|s| s.2).collect();
            assert_eq!(ids.len(), 57, "order {order}: every row once");
            ids.sort();
            ids.dedup();
            assert_eq!(ids.len(), 57, "order {order}: no row twice");
            // Each page followed the one before in the order asked for.
            let key = |t: &(Value, Value, i64)| -> (String, String, i64) {
                (
                    t.0.as_str().unwrap_or("").to_string(),
                    t.1.as_str().unwrap_or("~null").to_string(),
                    t.2,
                )
            };
            for w in seen.windows(2) {
                let (a, b) = (key(&w[0]), key(&w[1]));
                let ok = match order {
                    "title.desc,due" => {
                        a.0 > b.0 || (a.0 == b.0 && (a.1 < b.1 || (a.1 == b.1 && a.2 < b.2)))
                    }
                    "due.desc" => a.1 > b.1 || (a.1 == b.1 && a.2 < b.2),
                    "due" => a.1 < b.1 || (a.1 == b.1 && a.2 < b.2),
                    "id.desc" => a.2 > b.2,
                    _ => a.2 < b.2,
                };
                assert!(ok, "order {order}: {a:?} then {b:?}");
            }
        }
        // Filters hold across pages; a cursor reused with another order is refused.
        let (s, h, _) = api
            .call(
                Method::GET,
                "/v1/projects?limit=2&title=eq.title%203&order=due",
                Some(&acme),
                &[],
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        let l = h.get("link").unwrap().to_str().unwrap().to_string();
        assert!(l.contains("title=eq.title+3"), "{l}");
        let after = l
            .split("after=")
            .nth(1)
            .unwrap()
            .trim_end_matches(">; rel=\"next\"");
        let (s, h, b) = api
            .call(
                Method::GET,
                &format!("/v1/projects?order=title&after={after}"),
                Some(&acme),
                &[],
                None,
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        problem(s, &h, &b);
        api.stop().await;
    });
}

#[test]
fn openapi_health_readiness_and_metrics() {
    let db = setup("e2e_svc_ops");
    rt().block_on(async {
        let api = Api::start(&db, &[]).await;
        let (s, _, b) = api.call(Method::GET, "/healthz", None, &[], None).await;
        assert_eq!((s, b.as_str()), (StatusCode::OK, "{\"status\":\"ok\"}"));
        let (s, _, b) = api.call(Method::GET, "/readyz", None, &[], None).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let (s, _, b) = api.call(Method::GET, "/openapi.json", None, &[], None).await;
        assert_eq!(s, StatusCode::OK);
        let doc: Value = serde_json::from_str(&b).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        assert!(doc["paths"]["/v1/projects/{key}"]["patch"].is_object());
        assert!(doc["paths"]["/v1/project-titles"]["post"].is_null(), "a view is read-only");
        assert!(doc["components"]["schemas"]["projects"]["properties"]["tenant_id"].is_null());
        assert!(doc["paths"]["/v1/tasks"].is_null());
        // A resource exposed while the service runs appears, and its rows are served.
        {
            let db = db.clone();
            tokio::task::spawn_blocking(move || {
                let mut c = connect(&db, "postgres");
                c.batch_execute(
                    "CREATE TABLE tasks (id int PRIMARY KEY, tenant_id uuid NOT NULL, what text);
                     GRANT SELECT, INSERT ON tasks TO e2e_api;
                     SELECT steward.govern('tasks'); SELECT steward.expose('tasks');",
                )
                .unwrap();
            })
            .await
            .unwrap();
        }
        let mut found = false;
        for _ in 0..50 {
            let (_, _, b) = api.call(Method::GET, "/openapi.json", None, &[], None).await;
            let doc: Value = serde_json::from_str(&b).unwrap();
            if doc["paths"]["/v1/tasks"].is_object() {
                found = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(found, "/openapi.json was not rebuilt after steward.expose");
        let (s, _, b) = api
            .call(Method::POST, "/v1/tasks", Some(&token(ACME, "a")), &[], Some(r#"{"id": 1, "what": "w"}"#))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        // A failing request rolls back.
        let (s, _, _) = api
            .call(Method::POST, "/v1/tasks", Some(&token(ACME, "a")), &[], Some(r#"{"id": 1}"#))
            .await;
        assert_eq!(s, StatusCode::CONFLICT);
        let (s, _, m) = api.call(Method::GET, "/metrics", None, &[], None).await;
        assert_eq!(s, StatusCode::OK);
        assert!(m.contains("steward_http_request_duration_seconds_count{route=\"/v1/{resource}\",method=\"POST\",status=\"201\"} 1"), "{m}");
        assert!(m.contains("steward_pool_max_connections{database=\"e2e_svc_ops\"} 16"), "{m}");
        let rollbacks = m
            .lines()
            .find(|l| l.starts_with("steward_transaction_rollbacks_total "))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap();
        assert!(rollbacks >= 1, "{m}");
        api.stop().await;
    });
}

/// 10,000 requests alternating between tenants over two connections, some failing inside
/// their transaction, some cancelled by the client, some past the statement timeout: no
/// response ever holds another tenant's row, and no connection is left inside a transaction.
#[test]
fn ten_thousand_requests_over_two_connections_never_cross_tenants() {
    let db = setup("e2e_svc_storm");
    seed_storm(&db);
    storm(&db, &conninfo(&db, "e2e_api", None), &[]);
}

/// Thirty rows of each tenant, titled with its slug, and a slow one each.
fn seed_storm(db: &str) {
    {
        let mut c = connect(db, "postgres");
        for (tenant, slug) in [(ACME, "acme"), (GLOBEX, "globex")] {
            let mut tx = c.transaction().unwrap();
            tx.execute(
                "SELECT steward.enter_tenant($1::text::uuid, 'seed')",
                &[&tenant],
            )
            .unwrap();
            tx.batch_execute(&format!(
                "INSERT INTO projects (code, title) SELECT '{slug}-' || g, '{slug} ' || g FROM generate_series(1, 30) g;
                 INSERT INTO projects (code, title) VALUES ('{slug}-slow', 'slow {slug}');"
            ))
            .unwrap();
            tx.commit().unwrap();
        }
    }
}

/// The storm itself, with the service's default database at `url`.
fn storm(db: &str, url: &str, extra: &[&str]) {
    let db = db.to_string();
    rt().block_on(async {
        let api = Arc::new(
            Api::start_url(
                url,
                &[&["--pool-size", "2", "--pool-wait-ms", "5000", "--request-timeout-ms", "300"], extra].concat(),
            )
            .await,
        );
        let tokens = Arc::new([(token(ACME, "a"), "acme"), (token(GLOBEX, "g"), "globex")]);
        let foreign = Arc::new(AtomicUsize::new(0));
        let counts = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::<u16, usize>::new()));
        const REQUESTS: usize = 10_000;
        const WORKERS: usize = 8;
        let mut tasks = Vec::new();
        for w in 0..WORKERS {
            let (api, tokens, foreign, counts) = (api.clone(), tokens.clone(), foreign.clone(), counts.clone());
            tasks.push(tokio::spawn(async move {
                let mut rng = Lcg(w as u64 + 1);
                let impatient = reqwest::Client::builder()
                    .timeout(Duration::from_millis(2))
                    .build()
                    .unwrap();
                for i in 0..REQUESTS / WORKERS {
                    let (tok, slug) = &tokens[(i + w) % 2];
                    let pick = rng.next(100);
                    let (status, body) = if pick < 3 {
                        // Past the statement timeout.
                        let (s, _, b) = api.call(Method::GET, "/v1/slow?title=like.x", Some(tok), &[], None).await;
                        let (s2, _, b2) = api
                            .call(Method::GET, &format!("/v1/slow?title=eq.slow%20{slug}"), Some(tok), &[], None)
                            .await;
                        assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
                        (s2, b2)
                    } else if pick < 8 {
                        // Cancelled by the client mid-request.
                        let r = impatient
                            .get(format!("{}/v1/projects?limit=50", api.base))
                            .bearer_auth(tok)
                            .send()
                            .await;
                        match r {
                            Ok(res) => {
                                let s = res.status();
                                (s, res.text().await.unwrap_or_default())
                            }
                            Err(_) => (StatusCode::REQUEST_TIMEOUT, String::new()),
                        }
                    } else if pick < 20 {
                        // Fails inside the transaction, after the token: a duplicate code.
                        let (s, _, b) = api
                            .call(Method::POST, "/v1/projects", Some(tok),
                                  &[("x-steward-reason", "storm")], Some(&format!(r#"{{"code": "{slug}-1", "title": "dup"}}"#)))
                            .await;
                        (s, b)
                    } else if pick < 25 {
                        // A bad token for the other tenant's turn.
                        let (s, _, b) = api.call(Method::GET, "/v1/projects", Some("e30.e30.e30"), &[], None).await;
                        (s, b)
                    } else {
                        let (s, _, b) = api.call(Method::GET, "/v1/projects?limit=50&select=title", Some(tok), &[], None).await;
                        (s, b)
                    };
                    *counts.lock().unwrap().entry(status.as_u16()).or_default() += 1;
                    if status == StatusCode::OK {
                        let rows: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                        for r in rows.as_array().into_iter().flatten() {
                            let title = r["title"].as_str().unwrap_or("");
                            if !(title.starts_with(slug) || title == format!("slow {slug}")) {
                                foreign.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let counts = counts.lock().unwrap().clone();
        assert_eq!(foreign.load(Ordering::Relaxed), 0, "foreign rows in responses: {counts:?}");
        assert!(counts.get(&200).copied().unwrap_or(0) > 5000, "{counts:?}");
        assert!(counts.get(&409).copied().unwrap_or(0) > 0, "{counts:?}");
        assert!(counts.get(&504).copied().unwrap_or(0) > 0, "{counts:?}");
        assert!(counts.get(&401).copied().unwrap_or(0) > 0, "{counts:?}");
        assert!(!counts.keys().any(|s| *s >= 500 && *s != 504), "{counts:?}");
        // Cancelled requests' statements end on the server in their own time (a loaded machine
        // may take seconds): wait until the service's sessions are idle, up to a bound.
        let mut states = Vec::new();
        for _ in 0..100 {
            let db2 = db.clone();
            states = tokio::task::spawn_blocking(move || {
                let mut c = connect(&db2, "postgres");
                c.query(
                    "SELECT coalesce(state, '') FROM pg_stat_activity WHERE usename = 'e2e_api' AND datname = $1",
                    &[&db2],
                )
                .unwrap()
                .iter()
                .map(|r| r.get::<_, String>(0))
                .collect::<Vec<_>>()
            })
            .await
            .unwrap();
            if states.iter().all(|s| s == "idle") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(states.len() <= 2, "more connections than the pool allows: {states:?}");
        assert!(states.iter().all(|s| s == "idle"), "{states:?}");
        // The connections the storm used carry no context into the next request.
        let (s, _, b) = api.call(Method::GET, "/v1/projects?limit=1", Some("e30.e30.e30"), &[], None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
        Arc::try_unwrap(api).ok().unwrap().stop().await;
    });
}

/// A dedicated tenant's requests go to its own database, whose keys alone let it in; an
/// exhausted pool answers 503 with Retry-After.
#[test]
fn dedicated_tenants_are_routed_and_pools_are_capped() {
    let pooled = setup("e2e_svc_pooled");
    let dedicated = setup("e2e_svc_dedicated");
    const DEDICATED_KEY: &[u8] = b"the-dedicated-database-has-its-own-key!!";
    {
        let mut c = connect(&dedicated, "postgres");
        c.batch_execute(&format!(
            "UPDATE steward.signing_keys SET revoked_at = now();
             INSERT INTO steward.signing_keys (key_id, secret) VALUES ('own', '\\x{}');
             UPDATE steward.tenants SET isolation = 'dedicated' WHERE tenant_id = '{GLOBEX}';",
            DEDICATED_KEY
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        ))
        .unwrap();
    }
    let routes = std::env::temp_dir().join(format!("steward-routes-{}.toml", std::process::id()));
    std::fs::write(
        &routes,
        format!(
            "[tenants.\"{GLOBEX}\"]\ndatabase_url = \"{}\"\n",
            conninfo(&dedicated, "e2e_api", None)
        ),
    )
    .unwrap();
    rt().block_on(async {
        let api = Api::start(
            &pooled,
            &[
                "--routes",
                routes.to_str().unwrap(),
                "--pool-size",
                "1",
                "--pool-wait-ms",
                "100",
                "--request-timeout-ms",
                "3000",
            ],
        )
        .await;
        let globex_own = hs256(
            &json!({"tenant_id": GLOBEX, "sub": "g", "exp": now() + 600}),
            DEDICATED_KEY,
        );
        let (s, _, b) = api
            .call(
                Method::POST,
                "/v1/projects",
                Some(&globex_own),
                &[],
                Some(r#"{"code": "g1", "title": "in its own database"}"#),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        // A token naming the dedicated tenant, signed by the pooled database's key, gets nowhere.
        let (s, h, b) = api
            .call(
                Method::GET,
                "/v1/projects",
                Some(&token(GLOBEX, "g")),
                &[],
                None,
            )
            .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
        problem(s, &h, &b);
        // The row is in the dedicated database and not in the pooled one.
        let (p, d) = (pooled.clone(), dedicated.clone());
        let (in_pooled, in_dedicated) = tokio::task::spawn_blocking(move || {
            let count = |db: &str| -> i64 {
                let mut c = connect(db, "postgres");
                let mut tx = c.transaction().unwrap();
                tx.execute(
                    "SELECT steward.enter_tenant($1::text::uuid, 'e2e')",
                    &[&GLOBEX],
                )
                .unwrap();
                tx.query_one("SELECT count(*) FROM projects", &[])
                    .unwrap()
                    .get(0)
            };
            (count(&p), count(&d))
        })
        .await
        .unwrap();
        assert_eq!((in_pooled, in_dedicated), (0, 1));
        // The pooled tenants still use the default database.
        let (s, _, b) = api
            .call(
                Method::GET,
                "/v1/projects",
                Some(&token(ACME, "a")),
                &[],
                None,
            )
            .await;
        assert_eq!((s, b.as_str()), (StatusCode::OK, "[]"));
        // One connection, held by a slow request: the next one waits 100 ms, then 503.
        {
            let db = pooled.clone();
            tokio::task::spawn_blocking(move || {
                let mut c = connect(&db, "postgres");
                let mut tx = c.transaction().unwrap();
                tx.execute(
                    "SELECT steward.enter_tenant($1::text::uuid, 'seed')",
                    &[&ACME],
                )
                .unwrap();
                tx.execute(
                    "INSERT INTO projects (code, title) VALUES ('s', 'slow one')",
                    &[],
                )
                .unwrap();
                tx.commit().unwrap();
            })
            .await
            .unwrap();
        }
        let slow = {
            let (http, base, t) = (api.http.clone(), api.base.clone(), token(ACME, "a"));
            tokio::spawn(async move {
                http.get(format!("{base}/v1/slow?title=eq.slow%20one"))
                    .bearer_auth(t)
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (s, h, b) = api
            .call(
                Method::GET,
                "/v1/projects",
                Some(&token(ACME, "a")),
                &[],
                None,
            )
            .await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{b}");
        assert!(h.get("retry-after").is_some());
        problem(s, &h, &b);
        assert_eq!(slow.await.unwrap(), StatusCode::OK);
        // The dedicated database's pool is its own: it was not exhausted.
        let (s, _, b) = api
            .call(Method::GET, "/v1/projects", Some(&globex_own), &[], None)
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        api.stop().await;
    });
    let _ = std::fs::remove_file(routes);
}

/// The binary as an operator runs it: `--help` names every flag's variable, logs are JSON lines
/// with the request id, route and tenant and never the token, and SIGTERM lets the request in
/// flight finish before the process exits.
#[test]
fn the_binary_logs_without_tokens_and_shuts_down_gracefully() {
    let bin = std::env::var("STEWARD_SERVICE_BIN")
        .expect("STEWARD_SERVICE_BIN is set by cargo xtask test");
    let help = std::process::Command::new(&bin)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--database-url",
        "--listen",
        "--routes",
        "--pool-size",
        "--request-timeout-ms",
    ] {
        assert!(help.contains(flag), "{help}");
    }
    assert!(help.matches("[env: STEWARD_").count() >= 13, "{help}");

    let db = setup("e2e_svc_binary");
    {
        let mut c = connect(&db, "postgres");
        let mut tx = c.transaction().unwrap();
        tx.execute(
            "SELECT steward.enter_tenant($1::text::uuid, 'seed')",
            &[&ACME],
        )
        .unwrap();
        tx.execute(
            "INSERT INTO projects (code, title) VALUES ('s', 'slow one')",
            &[],
        )
        .unwrap();
        tx.commit().unwrap();
    }
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let log_path = std::env::temp_dir().join(format!("steward-service-{}.log", std::process::id()));
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = std::process::Command::new(&bin)
        .args([
            "serve",
            "--log-format",
            "json",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .env("STEWARD_DATABASE_URL", conninfo(&db, "e2e_api", None))
        .stderr(log)
        .spawn()
        .unwrap();
    let acme = token(ACME, "alice");
    rt().block_on(async {
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let mut up = false;
        for _ in 0..100 {
            if http.get(format!("{base}/healthz")).send().await.is_ok() {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(up, "the service did not start");
        let res = http
            .get(format!("{base}/v1/projects?select=id"))
            .bearer_auth(&acme)
            .header("x-request-id", "req-e2e-0001")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers().get("x-request-id").unwrap(), "req-e2e-0001");
        // A request that takes a second; SIGTERM arrives while it runs.
        let slow = {
            let (http, base, t) = (http.clone(), base.clone(), acme.clone());
            tokio::spawn(async move {
                http.get(format!("{base}/v1/slow?title=eq.slow%20one"))
                    .bearer_auth(t)
                    .send()
                    .await
                    .map(|r| r.status())
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        assert_eq!(
            slow.await.unwrap().unwrap(),
            StatusCode::OK,
            "the request in flight finished"
        );
    });
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let text = std::fs::read_to_string(&log_path).unwrap();
    let _ = std::fs::remove_file(&log_path);
    assert!(!text.contains(&acme), "a token reached the log");
    assert!(
        !text.contains(acme.split('.').nth(2).unwrap()),
        "a token's signature reached the log"
    );
    let line = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["span"]["request_id"] == "req-e2e-0001" && v["fields"]["status"].is_number())
        .unwrap_or_else(|| panic!("no response line for the request: {text}"));
    assert_eq!(line["span"]["route"], "/v1/{resource}", "{line}");
    assert_eq!(line["span"]["tenant"], ACME, "{line}");
    assert_eq!(line["fields"]["status"], 200, "{line}");
}

/// pgbouncer from Debian, in transaction mode, in front of the test cluster: started as the
/// postgres user on a free port, stopped when dropped.
struct Bouncer {
    dir: std::path::PathBuf,
    port: u16,
    child: std::process::Child,
}

impl Bouncer {
    fn start(db: &str, users: &[&str]) -> Bouncer {
        let bin =
            std::env::var("STEWARD_PGBOUNCER").unwrap_or_else(|_| "/usr/sbin/pgbouncer".into());
        let (host, pg_port) = steward_tests::server_address();
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let dir =
            std::env::temp_dir().join(format!("steward-pgbouncer-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let users_file: String = users.iter().map(|u| format!("\"{u}\" \"\"\n")).collect();
        std::fs::write(dir.join("users.txt"), users_file).unwrap();
        std::fs::write(
            dir.join("pgbouncer.ini"),
            format!(
                "[databases]\n{db} = host={host} port={pg_port} dbname={db}\n\n\
                 [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
                 auth_type = trust\nauth_file = {users}\npool_mode = transaction\n\
                 default_pool_size = 2\nmax_client_conn = 200\n\
                 logfile = {log}\npidfile = {pid}\n",
                users = dir.join("users.txt").display(),
                log = dir.join("pgbouncer.log").display(),
                pid = dir.join("pgbouncer.pid").display(),
            ),
        )
        .unwrap();
        let chown = std::process::Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir)
            .status()
            .unwrap();
        assert!(chown.success());
        let mut child = std::process::Command::new("runuser")
            .args(["-u", "postgres", "--", &bin])
            .arg(dir.join("pgbouncer.ini"))
            .spawn()
            .unwrap_or_else(|e| panic!("starting {bin}: {e}"));
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Bouncer { dir, port, child };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "pgbouncer did not start: {}",
            std::fs::read_to_string(dir.join("pgbouncer.log")).unwrap_or_default()
        );
    }

    fn url(&self, db: &str, user: &str) -> String {
        format!("host=127.0.0.1 port={} dbname={db} user={user}", self.port)
    }

    /// psql through pgbouncer: (exit status success, stdout, stderr).
    fn psql(&self, db: &str, user: &str, commands: &[&str]) -> (bool, String, String) {
        let mut c = std::process::Command::new("psql");
        c.args(["-X", "-At", "-v", "VERBOSITY=verbose", "-h", "127.0.0.1"])
            .args(["-p", &self.port.to_string(), "-U", user, "-d", db]);
        for cmd in commands {
            c.args(["-c", cmd]);
        }
        let out = c.output().expect("psql");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("pgbouncer.pid")) {
            let _ = std::process::Command::new("kill").arg(pid.trim()).status();
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The storm again, with pgbouncer in transaction mode between the service and the database;
/// and tenant roles connecting through the same pgbouncer with psql stay in their tenant.
#[test]
fn behind_pgbouncer_in_transaction_mode_nothing_crosses_tenants() {
    let db = setup("e2e_svc_bouncer");
    seed_storm(&db);
    {
        let mut c = connect(&db, "postgres");
        c.batch_execute("GRANT SELECT ON projects TO e2e_acme, e2e_service, e2e_nogrant")
            .unwrap();
    }
    let bouncer = Bouncer::start(&db, &["e2e_api", "e2e_acme", "e2e_service", "e2e_nogrant"]);
    // pgbouncer 1.18 (Debian 12) carries no prepared statements in transaction mode.
    storm(
        &db,
        &bouncer.url(&db, "e2e_api"),
        &["--statement-cache", "0"],
    );

    // A tenant role with one grant: its tenant's rows, and no way into another.
    let (ok, out, err) = bouncer.psql(
        &db,
        "e2e_acme",
        &[
            "SELECT count(*) FROM projects",
            "SELECT count(*) FROM projects WHERE title LIKE 'globex%'",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(out.lines().collect::<Vec<_>>(), ["31", "0"], "{err}");
    let (ok, _, err) = bouncer.psql(
        &db,
        "e2e_acme",
        &[&format!("SELECT steward.enter_tenant('{GLOBEX}')")],
    );
    assert!(!ok && err.contains("ST002"), "{err}");
    // No grant, no token: nothing, through the pooler as directly.
    let (ok, _, err) = bouncer.psql(&db, "e2e_nogrant", &["SELECT count(*) FROM projects"]);
    assert!(!ok && err.contains("ST001"), "{err}");
    // A context ends with its transaction: the server connection pgbouncer hands on next
    // carries none, to this client or another.
    for _ in 0..5 {
        let (_, out, err) = bouncer.psql(
            &db,
            "e2e_service",
            &[
                "BEGIN",
                &format!("SELECT steward.enter_tenant('{GLOBEX}', 'svc')"),
                "SELECT count(*) FROM projects",
                "COMMIT",
                "SELECT count(*) FROM projects",
            ],
        );
        assert!(out.contains("31"), "{out}{err}");
        assert!(
            err.contains("ST001"),
            "the next transaction had a context: {out}{err}"
        );
        let (_, _, err) = bouncer.psql(&db, "e2e_nogrant", &["SELECT count(*) FROM projects"]);
        assert!(err.contains("ST001"), "{err}");
    }
}

/// schemathesis (PyPI) generates requests from /openapi.json, valid and invalid, for every
/// operation: no response is a server error, and every response conforms to the document.
#[test]
fn schemathesis_finds_no_server_error_and_no_schema_violation() {
    let bin = std::env::var("STEWARD_SCHEMATHESIS")
        .expect("STEWARD_SCHEMATHESIS is set by cargo xtask test");
    let db = setup("e2e_svc_fuzz");
    seed_storm(&db);
    rt().block_on(async {
        let api = Api::start(&db, &[]).await;
        let acme = token(ACME, "fuzzer");
        let base = api.base.clone();
        // Not use_after_free: a deleted row's history stays readable, by design (the audit
        // outlives the row). CPython 3.11.7 (this machine's) can crash inside Hypothesis's own code with
        // "SystemError: AST constructor recursion depth mismatch", a bug of the interpreter
        // (CPython issue 106905): such a run tested nothing to its end and is run again.
        let mut attempt = 0;
        let (out, text) = loop {
            attempt += 1;
            let (bin, base, acme) = (bin.clone(), base.clone(), acme.clone());
            let out = tokio::task::spawn_blocking(move || {
                std::process::Command::new(bin)
                    .args(["run", &format!("{base}/openapi.json")])
                    .args(["-H", &format!("Authorization: Bearer {acme}")])
                    .args([
                        "--checks",
                        "not_a_server_error,response_schema_conformance,content_type_conformance,\
                         status_code_conformance,response_headers_conformance,negative_data_rejection,\
                         ignored_auth,ensure_resource_availability,unsupported_method",
                    ])
                    .args(["--max-examples", "25", "--seed", "19", "--workers", "1"])
                    .env("NO_COLOR", "1")
                    .output()
                    .unwrap()
            })
            .await
            .unwrap();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            if attempt < 3 && !out.status.success() && text.contains("AST constructor recursion depth mismatch") {
                continue;
            }
            break (out, text);
        };
        assert!(out.status.success(), "schemathesis found failures:\n{text}");
        assert!(text.contains(" passed"), "{text}");
        api.stop().await;
    });
}

/// What the service's cache of resources still lists is checked in each request's own
/// transaction: a view weakened or a table ungoverned is refused at once, never served from the
/// cache. And input at the edges stays a 4xx: a value too large for its index, a column named
/// like the statement's own alias, a request id made to forge log lines, a tenant id spelled
/// oddly enough to route differently than the database reads it.
#[test]
fn each_request_checks_its_resource_and_edge_input_stays_4xx() {
    let db = setup("e2e_svc_edges");
    seed_storm(&db);
    {
        let mut c = connect(&db, "postgres");
        c.batch_execute(
            "CREATE VIEW acme_view WITH (security_invoker = true) AS SELECT id, title FROM projects;
             GRANT SELECT ON acme_view TO e2e_api;
             SELECT steward.expose('acme_view', 'titles');
             CREATE TABLE odd (id int PRIMARY KEY, tenant_id uuid NOT NULL, x text, t text);
             GRANT SELECT, INSERT ON odd TO e2e_api;
             SELECT steward.govern('odd'); SELECT steward.expose('odd');",
        )
        .unwrap();
    }
    rt().block_on(async {
        // A long refresh interval: only the per-request check can notice.
        let api = Api::start(&db, &["--resource-refresh-ms", "600000"]).await;
        let acme = token(ACME, "a");
        let (s, _, b) = api
            .call(Method::GET, "/v1/titles?limit=1", Some(&acme), &[], None)
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let run = |sql: &'static str| {
            let db = db.clone();
            tokio::task::spawn_blocking(move || {
                connect(&db, "postgres").batch_execute(sql).unwrap()
            })
        };
        run("ALTER VIEW acme_view SET (security_invoker = false)")
            .await
            .unwrap();
        let (s, h2, b2) = api
            .call(Method::GET, "/v1/titles?limit=100", Some(&acme), &[], None)
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "a weakened view was served: {b2}");
        problem(s, &h2, &b2);
        run("SELECT steward.ungovern('projects')").await.unwrap();
        let (s, _, b) = api
            .call(
                Method::GET,
                "/v1/projects?limit=100",
                Some(&acme),
                &[],
                None,
            )
            .await;
        assert_eq!(
            s,
            StatusCode::NOT_FOUND,
            "an ungoverned table was served: {b}"
        );
        run("SELECT steward.govern('projects')").await.unwrap();
        let (s, _, b) = api
            .call(Method::GET, "/v1/projects?limit=1", Some(&acme), &[], None)
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");

        // A column named x (the alias of the statement's row) is a column like any other.
        let (s, _, b) = api
            .call(
                Method::POST,
                "/v1/odd",
                Some(&acme),
                &[],
                Some(r#"{"id": 1, "x": "ex", "t": "tee"}"#),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        assert_eq!(serde_json::from_str::<Value>(&b).unwrap()["x"], "ex");
        let (s, _, b) = api
            .call(Method::GET, "/v1/odd/1", Some(&acme), &[], None)
            .await;
        assert_eq!(
            (s, serde_json::from_str::<Value>(&b).unwrap()["t"].clone()),
            (StatusCode::OK, json!("tee"))
        );

        // Too large for the unique index on code: 54000, a 400.
        let big = format!(r#"{{"code": "{}", "title": "t"}}"#, {
            // Incompressible: the index stores the value as it is.
            let mut rng = Lcg(7);
            (0..12_000)
                .map(|_| char::from(b'!' + rng.next(90) as u8))
                .filter(|c| *c != '"' && *c != '\\')
                .collect::<String>()
        });
        let (s, h, b) = api
            .call(Method::POST, "/v1/projects", Some(&acme), &[], Some(&big))
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
        problem(s, &h, &b);

        // A request id that could forge a log line is refused.
        let (s, h, b) = api
            .call(
                Method::GET,
                "/v1/projects",
                Some(&acme),
                &[("x-request-id", "abc} tenant=x status=200")],
                None,
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
        problem(s, &h, &b);

        // Tenant ids the router and the database could read differently: the database refuses.
        for odd in [
            "+0000000-0000-4000-8000-0000000000a1",
            "000000000000-4000-8000-0000000000-a1",
            "{00000000-0000-4000-8000-0000000000a1}",
        ] {
            let t = hs256(
                &json!({"tenant_id": odd, "sub": "a", "exp": now() + 600}),
                SECRET,
            );
            let (s, h, b) = api
                .call(Method::GET, "/v1/projects", Some(&t), &[], None)
                .await;
            assert_eq!(s, StatusCode::UNAUTHORIZED, "{odd}: {b}");
            assert_eq!(problem(s, &h, &b)["sqlstate"], "ST401");
        }
        api.stop().await;
    });
}
