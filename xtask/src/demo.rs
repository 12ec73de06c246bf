//! `cargo xtask demo`: a local cluster with the extension and a two-tenant schema, a guided
//! tour of tenant isolation, how to connect as each tenant's role, and the web API
//! (steward-service serve on 127.0.0.1:8080) over an architecture-workspace domain, with a
//! token minted per workspace and the curl lines that show it. `--stop` stops both.

use std::path::Path;
use std::process::Command;

use anyhow::Result;

use crate::cluster::{free_port, Cluster};
use crate::run::run;
use crate::run::step;
use crate::setup::{
    cargo, ensure_base, ensure_packages, ensure_standardwebhooks, install_extension, repo_root,
    PG_BIN,
};

const DB: &str = "steward_demo";
const PREFERRED_PORT: u16 = 54329;

pub fn demo(args: &[String]) -> Result<()> {
    if args.iter().any(|a| a == "--stop") {
        stop_service();
        step("stopping the demo cluster");
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--", &format!("{PG_BIN}/pg_ctl")])
            .args(["-D", "/tmp/steward-demo/data", "-m", "fast", "stop"])
            .status();
        return Ok(());
    }
    ensure_base()?;
    install_extension(false)?;
    let port = if std::net::TcpListener::bind(("127.0.0.1", PREFERRED_PORT)).is_ok() {
        PREFERRED_PORT
    } else {
        free_port()?
    };
    // As the DBA guide recommends: wake-ups sent by the waker.
    let mut cluster = Cluster::create("demo", Some(port), "shared_preload_libraries = 'steward'")?;
    cluster.start()?;

    step(&format!(
        "creating database {DB} with two tenants (sql/demo.sql)"
    ));
    cluster.create_database(DB, &["sql/demo.sql", "sql/demo_api.sql"])?;

    step("the tour (sql/demo_tour.sql): each block connects as a different role");
    let mut tour = Command::new(format!("{PG_BIN}/psql"));
    tour.args(["-X", "-e", "-h", &cluster.host(), "-p", &port.to_string()])
        .args(["-U", "postgres", "-d", DB, "-f"])
        .arg(repo_root().join("sql/demo_tour.sql"));
    // The tour shows refused statements on purpose: its errors are the point.
    let _ = tour.status()?;

    cluster.keep_running();
    let api = web_api(&cluster)?;
    let relay = relay(&cluster, &api)?;
    let host = cluster.host();
    println!(
        "\n==> the demo cluster is running (log: {host}/postgres.log)\n\n\
         Connect as a tenant's analyst, exactly as a BI tool would:\n  \
         psql \"{}\"\n  psql \"{}\"\n\
         or as the trusted service role:\n  psql \"{}\"\n\n\
         Things to try:\n  \
         SELECT * FROM app.invoices;                       -- only your tenant's rows\n  \
         SELECT steward.current_tenant(), steward.current_actor();\n  \
         INSERT INTO app.invoices (customer, amount) VALUES ('New Co', 10);  -- tenant filled in\n  \
         UPDATE app.invoices SET tenant_id = gen_random_uuid();  -- ST403: rows never move\n  \
         BEGIN; SELECT steward.enter_tenant('0193a4d2-0000-7000-8000-0000000000a1', 'me'); ... COMMIT;  -- as api_service\n  \
         SELECT * FROM steward.history('app.invoices', '{{\"id\": 1}}');  -- who changed it, when, why\n\n\
         The web API: {api}\n\n\
         The relay: {relay}\n\n\
         Stop everything with: cargo xtask demo --stop",
        cluster.conninfo(DB, "acme_analyst"),
        cluster.conninfo(DB, "globex_analyst"),
        cluster.conninfo(DB, "api_service"),
    );
    Ok(())
}

const DEMO_DIR: &str = "/tmp/steward-demo";
const ACME: &str = "0193a4d2-0000-7000-8000-0000000000a1";
const GLOBEX: &str = "0193a4d2-0000-7000-8000-0000000000b1";

fn stop_service() {
    for (file, what) in [
        ("relay.pid", "steward-service relay"),
        ("service.pid", "steward-service serve"),
        ("receiver.pid", "webhook receiver"),
        ("nats.pid", "nats-server"),
    ] {
        let pid_file = Path::new(DEMO_DIR).join(file);
        if let Ok(pid) = std::fs::read_to_string(&pid_file) {
            step(&format!("stopping the demo's {what}"));
            let _ = Command::new("kill").arg(pid.trim()).status();
            let _ = std::fs::remove_file(pid_file);
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
    }
}

fn port_or_free(preferred: u16) -> Result<u16> {
    if std::net::TcpListener::bind(("127.0.0.1", preferred)).is_ok() {
        Ok(preferred)
    } else {
        free_port()
    }
}

fn spawn_logged(cmd: &mut Command, log: &Path, pid_file: &str) -> Result<()> {
    let out = std::fs::File::create(log)?;
    let child = cmd.stdout(out.try_clone()?).stderr(out).spawn()?;
    std::fs::write(Path::new(DEMO_DIR).join(pid_file), child.id().to_string())?;
    Ok(())
}

/// Starts nats-server (JetStream), a webhook receiver that verifies signatures with the
/// standardwebhooks package, and steward-service relay as the role demo_relay; creates an
/// endpoint per workspace, changes a row through the API in each, and shows the events arriving
/// at both sinks.
fn relay(cluster: &Cluster, _api: &str) -> Result<String> {
    ensure_packages(&["nats-server"])?;
    let python = ensure_standardwebhooks()?;
    let dir = Path::new(DEMO_DIR);
    let nats_port = port_or_free(4222)?;
    let monitor_port = port_or_free(8222)?;
    step(&format!(
        "starting nats-server with JetStream on 127.0.0.1:{nats_port} (monitoring on {monitor_port}; log {}/nats.log)",
        DEMO_DIR
    ));
    let _ = std::fs::remove_dir_all(dir.join("nats"));
    spawn_logged(
        Command::new("/usr/sbin/nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &nats_port.to_string()])
            .args(["-m", &monitor_port.to_string(), "-sd"])
            .arg(dir.join("nats")),
        &dir.join("nats.log"),
        "nats.pid",
    )?;
    let receiver_port = port_or_free(9000)?;
    step("a webhook endpoint per workspace (steward.create_webhook, in each tenant)");
    let mut secrets = serde_json::Map::new();
    for (tenant, path) in [(ACME, "/acme"), (GLOBEX, "/globex")] {
        let url = format!("http://127.0.0.1:{receiver_port}{path}");
        println!(
            "  {path}: SELECT * FROM steward.create_webhook('{url}');  -- inside tenant {tenant}"
        );
        let out = crate::run::output(cluster.psql(DB).args([
            "-At",
            "-c",
            &format!(
                "BEGIN; SELECT steward.enter_tenant('{tenant}') IS NULL; SELECT secret FROM steward.create_webhook('{url}'); COMMIT;"
            ),
        ]))?;
        let secret = out
            .lines()
            .find(|l| l.starts_with("whsec_"))
            .ok_or_else(|| anyhow::anyhow!("create_webhook returned no secret: {out}"))?;
        secrets.insert(
            path.to_string(),
            serde_json::Value::String(secret.to_string()),
        );
    }
    let secrets_file = dir.join("webhook-secrets.json");
    std::fs::write(
        &secrets_file,
        serde_json::Value::Object(secrets).to_string(),
    )?;
    step(&format!(
        "starting the webhook receiver on 127.0.0.1:{receiver_port} (xtask/demo_receiver.py: verifies with the standardwebhooks package; log {DEMO_DIR}/receiver.log)"
    ));
    spawn_logged(
        Command::new(&python)
            .arg(repo_root().join("xtask/demo_receiver.py"))
            .arg(receiver_port.to_string())
            .arg(&secrets_file),
        &dir.join("receiver.log"),
        "receiver.pid",
    )?;
    let metrics_port = port_or_free(9464)?;
    step(&format!(
        "starting steward-service relay as role demo_relay (log {DEMO_DIR}/relay.log; metrics http://127.0.0.1:{metrics_port}/metrics)"
    ));
    spawn_logged(
        Command::new(repo_root().join("target/debug/steward-service"))
            .args([
                "relay",
                "--database-url",
                &cluster.conninfo(DB, "demo_relay"),
            ])
            .args(["--nats-url", &format!("nats://127.0.0.1:{nats_port}")])
            .args(["--allow-private-targets", "127.0.0.1/32"])
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")]),
        &dir.join("relay.log"),
        "relay.pid",
    )?;
    std::thread::sleep(std::time::Duration::from_secs(2));
    let tokens = dir.join("tokens.env");
    let api_port = std::fs::read_to_string(dir.join("service.port")).unwrap_or_default();
    let base = format!("http://127.0.0.1:{}", api_port.trim());
    let shell = |what: &str, cmd: String| -> Result<()> {
        println!("\n--- {what}\n$ {cmd}");
        let status = Command::new("bash")
            .arg("-c")
            .arg(format!(". {} && {cmd}; echo", tokens.display()))
            .status()?;
        if !status.success() {
            anyhow::bail!("the demo's command failed: {cmd}");
        }
        Ok(())
    };
    shell(
        "each workspace records a decision through the API: one transaction, the row and its event",
        format!(
            "curl -s -o /dev/null -w 'acme -> %{{http_code}}\\n' -X POST -H \"Authorization: Bearer $ACME_TOKEN\" -H 'X-Steward-Reason: ADR-013 accepted' -H 'Content-Type: application/json' -d '{{\"number\": 13, \"title\": \"Relay events through the outbox\", \"status\": \"accepted\"}}' {base}/v1/decisions && \
             curl -s -o /dev/null -w 'globex -> %{{http_code}}' -X POST -H \"Authorization: Bearer $GLOBEX_TOKEN\" -H 'Content-Type: application/json' -d '{{\"number\": 7, \"title\": \"Adopt NATS\"}}' {base}/v1/decisions"
        ),
    )?;
    std::thread::sleep(std::time::Duration::from_secs(2));
    shell(
        "the receiver verified each signature (standardwebhooks) and saw only its workspace's events at each endpoint",
        format!("cat {DEMO_DIR}/receiver.log"),
    )?;
    shell(
        "NATS JetStream: stream STEWARD holds every event, one subject per tenant and event type",
        format!("curl -s 'http://127.0.0.1:{monitor_port}/jsz?streams=true' | grep -E '\"(name|messages|last_seq)\"'"),
    )?;
    let attempts = crate::run::output(cluster.psql(DB).args([
        "-c",
        "SELECT left(endpoint_id::text, 8) AS endpoint, event_id, attempt, status, http_status, relay FROM steward.webhook_deliveries ORDER BY id",
    ]))?;
    println!("\n--- every delivery attempt, on record (steward.webhook_deliveries; a tenant sees its own)\n{attempts}");
    Ok(format!(
        "nats://127.0.0.1:{nats_port} (stream STEWARD, monitoring http://127.0.0.1:{monitor_port}/jsz), webhook receiver 127.0.0.1:{receiver_port} (log {DEMO_DIR}/receiver.log), relay log {DEMO_DIR}/relay.log, metrics http://127.0.0.1:{metrics_port}/metrics"
    ))
}

/// An HS256 token valid for `seconds`: the demo (and the benchmark) plays the identity provider.
pub(crate) fn mint(secret: &[u8], kid: &str, tenant: &str, sub: &str, seconds: u64) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        + seconds;
    let header = URL_SAFE_NO_PAD
        .encode(serde_json::json!({"alg": "HS256", "typ": "JWT", "kid": kid}).to_string());
    let claims = serde_json::json!({"tenant_id": tenant, "sub": sub, "exp": exp});
    let signed = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims.to_string()));
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes any key");
    mac.update(signed.as_bytes());
    format!(
        "{signed}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

/// Starts steward-service serve against the demo database as the ordinary role steward_api,
/// mints a token per workspace, and walks through the API with curl. Returns where it listens.
fn web_api(cluster: &Cluster) -> Result<String> {
    stop_service();
    ensure_packages(&["curl"])?;
    step("building steward-service");
    run(cargo(&repo_root()).args(["build", "-q", "-p", "steward-service"]))?;
    let mut secret = [0u8; 32];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut secret)?;
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    step("a signing key for the demo's identity provider, in steward.signing_keys (HS256)");
    run(cluster.psql(DB).args([
        "-c",
        &format!("INSERT INTO steward.signing_keys (key_id, secret) VALUES ('demo', '\\x{hex}')"),
    ]))?;
    let acme = mint(&secret, "demo", ACME, "alice@acme.example", 12 * 3600);
    let globex = mint(&secret, "demo", GLOBEX, "hank@globex.example", 12 * 3600);
    let tokens = Path::new(DEMO_DIR).join("tokens.env");
    std::fs::write(
        &tokens,
        format!("export ACME_TOKEN={acme}\nexport GLOBEX_TOKEN={globex}\n"),
    )?;
    let port: u16 = if std::net::TcpListener::bind(("127.0.0.1", 8080)).is_ok() {
        8080
    } else {
        free_port()?
    };
    let base = format!("http://127.0.0.1:{port}");
    let log = Path::new(DEMO_DIR).join("service.log");
    step(&format!(
        "starting steward-service serve on {base} as role steward_api (log: {})",
        log.display()
    ));
    let out = std::fs::File::create(&log)?;
    let child = Command::new(repo_root().join("target/debug/steward-service"))
        .args([
            "serve",
            "--database-url",
            &cluster.conninfo(DB, "steward_api"),
        ])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()?;
    std::fs::write(
        Path::new(DEMO_DIR).join("service.pid"),
        child.id().to_string(),
    )?;
    std::fs::write(Path::new(DEMO_DIR).join("service.port"), port.to_string())?;
    let mut ready = false;
    for _ in 0..100 {
        let ok = Command::new("curl")
            .args(["-sf", "-o", "/dev/null", &format!("{base}/readyz")])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            ready = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    if !ready {
        anyhow::bail!(
            "steward-service did not become ready: see {}",
            log.display()
        );
    }
    step(&format!(
        "the web API, with curl (tokens in {}: . {0})",
        tokens.display()
    ));
    let shell = |what: &str, cmd: String| -> Result<()> {
        println!("\n--- {what}\n$ {cmd}");
        let status = Command::new("bash")
            .arg("-c")
            .arg(format!(". {} && {cmd}; echo", tokens.display()))
            .status()?;
        if !status.success() {
            anyhow::bail!("the demo's request failed: {cmd}");
        }
        Ok(())
    };
    let auth = |t: &str| format!("-H \"Authorization: Bearer ${t}\"");
    let a = auth("ACME_TOKEN");
    let g = auth("GLOBEX_TOKEN");
    shell(
        "Acme's workspace: its applications, and only those",
        format!("curl -s {a} '{base}/v1/applications?select=id,name,tier&order=name'"),
    )?;
    shell(
        "Globex's token, the same URL: Globex's applications",
        format!("curl -s {g} '{base}/v1/applications?select=id,name,tier&order=name'"),
    )?;
    shell(
        "Globex asks for Acme's ledger by its key: 404, as if it did not exist",
        format!("curl -s -w ' -> %{{http_code}}' {g} {base}/v1/applications/1"),
    )?;
    shell(
        "no token: 401",
        format!("curl -s -i {base}/v1/applications | grep -Ei '^(HTTP|www-authenticate)'"),
    )?;
    shell(
        "read Acme's payments application: its ETag is its version",
        format!("curl -s -i {a} {base}/v1/applications/2 | grep -Ei '^(HTTP|etag)|^\\{{'"),
    )?;
    shell(
        "change it without If-Match: 428",
        format!("curl -s -w ' -> %{{http_code}}' -X PATCH {a} -H 'Content-Type: application/json' -d '{{\"owner\": \"core-team\"}}' {base}/v1/applications/2"),
    )?;
    shell(
        "change it with the version read, and the why: 200, version 2",
        format!("curl -s -i -X PATCH {a} -H 'If-Match: \"1\"' -H 'X-Steward-Reason: ADR-012: payments moves to the core team' -H 'Content-Type: application/json' -d '{{\"owner\": \"core-team\"}}' {base}/v1/applications/2 | grep -Ei '^(HTTP|etag)|^\\{{'"),
    )?;
    shell(
        "a second writer who also read version 1: 412, nothing overwritten",
        format!("curl -s -w ' -> %{{http_code}}' -X PATCH {a} -H 'If-Match: \"1\"' -H 'Content-Type: application/json' -d '{{\"owner\": \"someone-else\"}}' {base}/v1/applications/2"),
    )?;
    shell(
        "the row's history: who, what, when and why",
        format!("curl -s {a} {base}/v1/applications/2/history"),
    )?;
    shell(
        "blast radius: every application that depends on the ledger, directly or transitively (a security_invoker view under RLS)",
        format!("curl -s {a} '{base}/v1/blast-radius?application=eq.ledger&select=dependent,depth&order=depth'"),
    )?;
    shell(
        "diagram metadata with JSONB custom fields",
        format!("curl -s {a} '{base}/v1/diagrams?select=title,custom_fields'"),
    )?;
    shell(
        "the API, described from what the DBA exposed (OpenAPI 3.1)",
        format!("curl -s {base}/openapi.json | head -c 300"),
    )?;
    Ok(format!(
        "{base} (log {}; tokens: . {}; GET {base}/openapi.json, {base}/metrics)",
        log.display(),
        tokens.display()
    ))
}
