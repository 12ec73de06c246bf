//! Shared fixtures for the end-to-end tests: a database of their own on the private cluster
//! that `cargo xtask test` starts (STEWARD_TEST_PGHOST / STEWARD_TEST_PGPORT).

use postgres::{Client, NoTls};

pub const ACME: &str = "00000000-0000-4000-8000-0000000000a1";
pub const GLOBEX: &str = "00000000-0000-4000-8000-0000000000b1";

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run these tests through `cargo xtask test`, which starts the cluster")
    })
}

/// A connection string to `db` on the test cluster as `user`, with extra libpq options.
pub fn conninfo(db: &str, user: &str, options: Option<&str>) -> String {
    let mut s = format!(
        "host={} port={} dbname={db} user={user}",
        env("STEWARD_TEST_PGHOST"),
        env("STEWARD_TEST_PGPORT")
    );
    if let Some(o) = options {
        s.push_str(&format!(" options='{o}'"));
    }
    s
}

pub fn connect(db: &str, user: &str) -> Client {
    Client::connect(&conninfo(db, user, None), NoTls)
        .unwrap_or_else(|e| panic!("connecting to {db} as {user}: {e}"))
}

/// Creates a fresh database `name` with the extension, two tenants (acme and globex), the
/// roles `e2e_acme` (granted acme), `e2e_nogrant` (no grant) and `e2e_service` (trusted), and a
/// governed table `items`.
pub fn fresh_database(name: &str) -> String {
    let mut admin = connect("postgres", "postgres");
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
        .unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    for role in ["e2e_acme", "e2e_nogrant", "e2e_service"] {
        admin
            .batch_execute(&format!(
                "DO $$ BEGIN CREATE ROLE {role} LOGIN; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
            ))
            .unwrap();
    }
    let mut db = connect(name, "postgres");
    db.batch_execute(&format!(
        "CREATE EXTENSION steward;
         INSERT INTO steward.tenants (tenant_id, slug, display_name)
              VALUES ('{ACME}', 'acme', 'Acme'), ('{GLOBEX}', 'globex', 'Globex');
         SELECT steward.grant_tenant('e2e_acme', '{ACME}');
         SELECT steward.trust_role('e2e_service');
         CREATE TABLE items (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                             tenant_id uuid NOT NULL, label text NOT NULL);
         GRANT SELECT, INSERT, UPDATE, DELETE ON items TO PUBLIC;
         SELECT steward.govern('items');"
    ))
    .unwrap();
    name.to_string()
}

/// The SQLSTATE of a failed statement.
pub fn sqlstate(err: &postgres::Error) -> String {
    err.code()
        .map(|c| c.code().to_string())
        .unwrap_or_else(|| format!("no SQLSTATE: {err}"))
}
