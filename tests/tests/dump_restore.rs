//! A database with steward dumped and restored into another cluster (issue 16, finding 5): the
//! roles there have other OIDs, and every grant and trust must land on the role of the same name.

use std::process::Command;

use steward_tests::{connect_on, fresh_database_on, Server, ACME, GLOBEX};

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run through cargo xtask test"))
}

fn labels(db: &str, user: &str) -> Vec<String> {
    let mut c = connect_on(Server::Plain, db, user);
    c.query("SELECT label FROM items ORDER BY label", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[test]
fn a_dump_restored_elsewhere_keeps_grants_and_trust_on_the_right_roles() {
    // The source: roles created in one order, granted one tenant each.
    let src = fresh_database_on(Server::Preloaded, "e2e_dump_src");
    let mut admin = connect_on(Server::Preloaded, "postgres", "postgres");
    for role in ["dump_first", "dump_second"] {
        admin
            .batch_execute(&format!(
                "DO $$ BEGIN CREATE ROLE {role} LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$"
            ))
            .unwrap();
    }
    let mut db = connect_on(Server::Preloaded, &src, "postgres");
    db.batch_execute(&format!(
        "SELECT steward.grant_tenant('dump_first', '{ACME}');
         SELECT steward.grant_tenant('dump_second', '{GLOBEX}');
         BEGIN; SELECT steward.enter_tenant('{ACME}'); INSERT INTO items (label) VALUES ('acme row'); COMMIT;
         BEGIN; SELECT steward.enter_tenant('{GLOBEX}'); INSERT INTO items (label) VALUES ('globex row'); COMMIT;"
    ))
    .unwrap();

    // The target cluster: the same roles created in the other order (and one more in between),
    // so each name has another OID than in the source, and the source's OIDs name other roles.
    let mut target = connect_on(Server::Plain, "postgres", "postgres");
    target
        .batch_execute("DROP DATABASE IF EXISTS e2e_dump_dst")
        .unwrap();
    target
        .batch_execute("CREATE DATABASE e2e_dump_dst")
        .unwrap();
    for role in [
        "dump_second",
        "dump_spacer",
        "dump_first",
        "e2e_service",
        "e2e_acme",
        "e2e_nogrant",
    ] {
        target
            .batch_execute(&format!(
                "DO $$ BEGIN CREATE ROLE {role} LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$"
            ))
            .unwrap();
    }

    let file = std::env::temp_dir().join(format!("steward-dump-{}.pgdump", std::process::id()));
    let dump = Command::new(format!("{PG_BIN}/pg_dump"))
        .args(["-Fc", "-U", "postgres", "-h"])
        .arg(env("STEWARD_TEST_PGHOST"))
        .args(["-p", &env("STEWARD_TEST_PGPORT"), "-f"])
        .arg(&file)
        .arg(&src)
        .output()
        .expect("pg_dump runs");
    assert!(
        dump.status.success(),
        "pg_dump: {}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let restore = Command::new(format!("{PG_BIN}/pg_restore"))
        .args(["--exit-on-error", "-U", "postgres", "-h"])
        .arg(env("STEWARD_TEST_PLAIN_PGHOST"))
        .args([
            "-p",
            &env("STEWARD_TEST_PLAIN_PGPORT"),
            "-d",
            "e2e_dump_dst",
        ])
        .arg(&file)
        .output()
        .expect("pg_restore runs");
    let _ = std::fs::remove_file(&file);
    assert!(
        restore.status.success(),
        "pg_restore (the DDL guard must let a governed table be built up): {}",
        String::from_utf8_lossy(&restore.stderr)
    );

    // Each role reads its own tenant's rows, and only those.
    assert_eq!(labels("e2e_dump_dst", "dump_first"), vec!["acme row"]);
    assert_eq!(labels("e2e_dump_dst", "dump_second"), vec!["globex row"]);
    // The trusted service is still trusted, and nobody else became trusted.
    let mut dst = connect_on(Server::Plain, "e2e_dump_dst", "postgres");
    let trusted: Vec<String> = dst
        .query(
            "SELECT role::text FROM steward.trusted_roles ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(trusted, vec!["e2e_service"]);
    let granted: Vec<(String, String)> = dst
        .query(
            "SELECT g.role::text, t.slug FROM steward.tenant_grants g
               JOIN steward.tenants t USING (tenant_id) ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(
        granted.contains(&("dump_first".into(), "acme".into())),
        "{granted:?}"
    );
    assert!(
        granted.contains(&("dump_second".into(), "globex".into())),
        "{granted:?}"
    );
    // The restored table is governed as before: no context, no rows (ST001).
    let err = dst
        .batch_execute("SET ROLE dump_spacer; SELECT count(*) FROM items;")
        .unwrap_err();
    assert_eq!(steward_tests::sqlstate(&err), "ST001");
}
