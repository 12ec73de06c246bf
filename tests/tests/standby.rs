//! A hot standby: a streaming replica of the preloaded test cluster, made with pg_basebackup.
//! Tenant roles read their tenant's rows and history there (reads take no transaction id, which a
//! standby cannot assign), and writes get Postgres' read-only error, not XX000.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use postgres::{Client, NoTls};
use steward_tests::{connect, fresh_database, sqlstate, ACME};

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

fn as_postgres(program: &str) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", "postgres", "--", &format!("{PG_BIN}/{program}")]);
    c
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("running a Postgres tool");
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The replica, stopped and removed when dropped.
struct Standby {
    dir: PathBuf,
    port: u16,
}

impl Standby {
    fn create() -> Standby {
        let dir = PathBuf::from(format!("/tmp/steward-standby-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        run(Command::new("chown").args(["postgres:postgres", &dir.to_string_lossy()]));
        let data = dir.join("data");
        let host = std::env::var("STEWARD_TEST_PGHOST").unwrap();
        let port = std::env::var("STEWARD_TEST_PGPORT").unwrap();
        run(as_postgres("pg_basebackup").args([
            "-h",
            &host,
            "-p",
            &port,
            "-U",
            "postgres",
            "-D",
            &data.to_string_lossy(),
            "-R",
            "-X",
            "stream",
            "-c",
            "fast",
        ]));
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let options = format!(
            "-p {port} -k {} -c listen_addresses='' -c hot_standby=on",
            dir.display()
        );
        run(as_postgres("pg_ctl").args([
            "-D",
            &data.to_string_lossy(),
            "-l",
            &dir.join("standby.log").to_string_lossy(),
            "-o",
            &options,
            "-w",
            "-t",
            "60",
            "start",
        ]));
        Standby { dir, port }
    }

    fn connect(&self, db: &str, user: &str) -> Client {
        Client::connect(
            &format!(
                "host={} port={} dbname={db} user={user}",
                self.dir.display(),
                self.port
            ),
            NoTls,
        )
        .unwrap()
    }
}

impl Drop for Standby {
    fn drop(&mut self) {
        let _ = as_postgres("pg_ctl")
            .args([
                "-D",
                &self.dir.join("data").to_string_lossy(),
                "-m",
                "immediate",
                "stop",
            ])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn tenant_roles_read_on_a_hot_standby() {
    let db = fresh_database("e2e_standby");
    let mut writer = connect(&db, "e2e_acme");
    writer
        .batch_execute(
            "INSERT INTO items (label) VALUES ('acme on the standby');
             UPDATE items SET label = 'acme, updated' WHERE label = 'acme on the standby';",
        )
        .unwrap();
    connect(&db, "e2e_service")
        .batch_execute(&format!(
            "SELECT steward.enter_tenant('{}'); INSERT INTO items (label) VALUES ('globex row');",
            steward_tests::GLOBEX
        ))
        .unwrap();
    let standby = Standby::create();
    // Wait until the replica has replayed everything written so far.
    let target: String = connect(&db, "postgres")
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .unwrap()
        .get(0);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut c = standby.connect("postgres", "postgres");
        let caught_up: bool = c
            .query_one(
                "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn",
                &[&target],
            )
            .unwrap()
            .get(0);
        if caught_up {
            break;
        }
        assert!(Instant::now() < deadline, "the standby did not catch up");
        std::thread::sleep(Duration::from_millis(100));
    }

    // A tenant role, first statements of its session: its rows only, and their history.
    let mut acme = standby.connect(&db, "e2e_acme");
    let in_recovery: bool = acme
        .query_one("SELECT pg_is_in_recovery()", &[])
        .unwrap()
        .get(0);
    assert!(in_recovery);
    let labels: Vec<String> = acme
        .query("SELECT label FROM items ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(labels, ["acme, updated"]);
    let history: i64 = acme
        .query_one(
            "SELECT count(*) FROM steward.history('items',
                 (SELECT jsonb_build_object('id', id) FROM items))",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(history, 2, "the insert and the update");

    // A trusted role enters a tenant there too.
    let mut service = standby.connect(&db, "e2e_service");
    let mut tx = service.transaction().unwrap();
    tx.batch_execute(&format!("SELECT steward.enter_tenant('{ACME}')"))
        .unwrap();
    let n: i64 = tx
        .query_one("SELECT count(*) FROM items", &[])
        .unwrap()
        .get(0);
    tx.commit().unwrap();
    assert_eq!(n, 1);

    // Writes: Postgres' read-only error (25006), not an internal one.
    for sql in [
        "INSERT INTO items (label) VALUES ('no')",
        "UPDATE items SET label = 'no'",
        "DELETE FROM items",
    ] {
        let err = acme.batch_execute(sql).unwrap_err();
        assert_eq!(sqlstate(&err), "25006", "{sql}");
    }
}
