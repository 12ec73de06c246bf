//! Shared fixtures for the end-to-end tests: a database of their own on one of the two private
//! clusters that `cargo xtask test` starts: steward preloaded (STEWARD_TEST_PGHOST /
//! STEWARD_TEST_PGPORT, the default here) or loaded on demand (STEWARD_TEST_PLAIN_PGHOST /
//! STEWARD_TEST_PLAIN_PGPORT).

use postgres::{Client, NoTls};

pub mod servers;

pub const ACME: &str = "00000000-0000-4000-8000-0000000000a1";
pub const GLOBEX: &str = "00000000-0000-4000-8000-0000000000b1";

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run these tests through `cargo xtask test`, which starts the cluster")
    })
}

/// Which test cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    /// `shared_preload_libraries = 'steward'`, as the DBA guide recommends.
    Preloaded,
    /// steward loaded by the first backend that uses it.
    Plain,
}

impl Server {
    pub const BOTH: [Server; 2] = [Server::Preloaded, Server::Plain];

    fn prefix(self) -> &'static str {
        match self {
            Server::Preloaded => "STEWARD_TEST_PG",
            Server::Plain => "STEWARD_TEST_PLAIN_PG",
        }
    }
}

/// A connection string to `db` on the preloaded test cluster as `user`, with libpq options.
pub fn conninfo(db: &str, user: &str, options: Option<&str>) -> String {
    conninfo_on(Server::Preloaded, db, user, options)
}

/// A connection string to `db` on `server` as `user`, with extra libpq options.
pub fn conninfo_on(server: Server, db: &str, user: &str, options: Option<&str>) -> String {
    let p = server.prefix();
    let mut s = format!(
        "host={} port={} dbname={db} user={user}",
        env(&format!("{p}HOST")),
        env(&format!("{p}PORT"))
    );
    if let Some(o) = options {
        s.push_str(&format!(" options='{o}'"));
    }
    s
}

pub fn connect(db: &str, user: &str) -> Client {
    connect_on(Server::Preloaded, db, user)
}

pub fn connect_on(server: Server, db: &str, user: &str) -> Client {
    Client::connect(&conninfo_on(server, db, user, None), NoTls)
        .unwrap_or_else(|e| panic!("connecting to {db} as {user} ({server:?}): {e}"))
}

/// Creates a fresh database `name` with the extension, two tenants (acme and globex), the
/// roles `e2e_acme` (granted acme), `e2e_nogrant` (no grant) and `e2e_service` (trusted), and a
/// governed table `items`.
pub fn fresh_database(name: &str) -> String {
    fresh_database_on(Server::Preloaded, name)
}

/// `fresh_database` on `server`.
pub fn fresh_database_on(server: Server, name: &str) -> String {
    let mut admin = connect_on(server, "postgres", "postgres");
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
    let mut db = connect_on(server, name, "postgres");
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

/// A small deterministic generator, so that a failure under random load can be replayed.
pub struct Lcg(pub u64);

impl Lcg {
    /// The next number below `below`.
    pub fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }
}

/// An HS256 token for `claims`, signed with `secret`: the tests play the identity provider.
pub fn hs256(claims: &serde_json::Value, secret: &[u8]) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signed = format!("{header}.{payload}");
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes any key");
    mac.update(signed.as_bytes());
    format!(
        "{signed}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The preloaded test cluster's socket directory and port.
pub fn server_address() -> (String, String) {
    let p = Server::Preloaded.prefix();
    (env(&format!("{p}HOST")), env(&format!("{p}PORT")))
}
