//! `cargo xtask demo`: a local cluster with the extension and a two-tenant schema, a guided
//! tour of tenant isolation, and how to connect as each tenant's role. `--stop` stops it.

use std::process::Command;

use anyhow::Result;

use crate::cluster::{free_port, Cluster};
use crate::run::step;
use crate::setup::{ensure_base, install_extension, repo_root, PG_BIN};

const DB: &str = "steward_demo";
const PREFERRED_PORT: u16 = 54329;

pub fn demo(args: &[String]) -> Result<()> {
    if args.iter().any(|a| a == "--stop") {
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
    cluster.create_database(DB, &["sql/demo.sql"])?;

    step("the tour (sql/demo_tour.sql): each block connects as a different role");
    let mut tour = Command::new(format!("{PG_BIN}/psql"));
    tour.args(["-X", "-e", "-h", &cluster.host(), "-p", &port.to_string()])
        .args(["-U", "postgres", "-d", DB, "-f"])
        .arg(repo_root().join("sql/demo_tour.sql"));
    // The tour shows refused statements on purpose: its errors are the point.
    let _ = tour.status()?;

    cluster.keep_running();
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
         Stop it with: cargo xtask demo --stop",
        cluster.conninfo(DB, "acme_analyst"),
        cluster.conninfo(DB, "globex_analyst"),
        cluster.conninfo(DB, "api_service"),
    );
    Ok(())
}
