//! Tenant isolation seen from real client connections.

use postgres::NoTls;
use steward_tests::{
    connect, connect_on, conninfo_on, fresh_database, fresh_database_on, sqlstate, Server, ACME,
    GLOBEX,
};

fn tenants_of(client: &mut postgres::Client) -> Vec<String> {
    client
        .query("SELECT DISTINCT tenant_id::text FROM items ORDER BY 1", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// A pooled connection serves tenant after tenant: each transaction sees only the tenant it
/// entered, and a transaction that enters none gets ST001, never the previous tenant's rows.
#[test]
fn context_never_leaks_between_transactions_on_one_connection() {
    let db = fresh_database("e2e_pooled");
    let mut svc = connect(&db, "e2e_service");
    // A row in each tenant: with an empty table the policy has nothing to check, so a query
    // returns no rows instead of raising ST001 (see docs/adr/001).
    for tenant in [ACME, GLOBEX] {
        let mut tx = svc.transaction().unwrap();
        tx.execute("SELECT steward.enter_tenant($1::text::uuid)", &[&tenant])
            .unwrap();
        tx.execute("INSERT INTO items (label) VALUES ('seed')", &[])
            .unwrap();
        tx.commit().unwrap();
    }
    for round in 0..20 {
        let (tenant, actor) = if round % 2 == 0 {
            (ACME, "a")
        } else {
            (GLOBEX, "g")
        };
        let mut tx = svc.transaction().unwrap();
        tx.execute(
            "SELECT steward.enter_tenant($1::text::uuid, $2)",
            &[&tenant, &actor],
        )
        .unwrap();
        tx.execute(
            "INSERT INTO items (label) VALUES ($1)",
            &[&format!("round {round}")],
        )
        .unwrap();
        let seen: Vec<String> = tx
            .query("SELECT DISTINCT tenant_id::text FROM items", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(
            seen,
            vec![tenant.to_string()],
            "round {round} saw another tenant"
        );
        if round % 3 == 0 {
            tx.rollback().unwrap();
        } else {
            tx.commit().unwrap();
        }
        match svc.query(
            "SELECT count(*)::int, current_user::text, session_user::text FROM items",
            &[],
        ) {
            Ok(rows) => panic!(
                "context survived round {round}: {:?}",
                rows.iter()
                    .map(|r| (r.get::<_, i32>(0), r.get::<_, String>(1)))
                    .collect::<Vec<_>>()
            ),
            Err(err) => assert_eq!(sqlstate(&err), "ST001", "round {round}"),
        }
    }
    // An error inside the transaction clears the context too.
    let mut tx = svc.transaction().unwrap();
    tx.execute("SELECT steward.enter_tenant($1::text::uuid)", &[&ACME])
        .unwrap();
    assert_eq!(
        sqlstate(&tx.execute("SELECT 1/0", &[]).unwrap_err()),
        "22012"
    );
    drop(tx);
    let err = svc.query("SELECT count(*) FROM items", &[]).unwrap_err();
    assert_eq!(sqlstate(&err), "ST001");
}

/// Connection options are settings: `-c steward.tenant_id=...` decides nothing. Where steward
/// is preloaded the connection is refused outright (no setting under `steward.` exists but
/// steward's own); where it is loaded on demand the option is at most a placeholder, removed
/// when steward loads.
#[test]
fn startup_options_cannot_forge_the_tenant() {
    for server in Server::BOTH {
        let db = fresh_database_on(server, "e2e_options");
        let mut svc = connect_on(server, &db, "e2e_service");
        let mut tx = svc.transaction().unwrap();
        tx.execute("SELECT steward.enter_tenant($1::text::uuid)", &[&GLOBEX])
            .unwrap();
        tx.execute("INSERT INTO items (label) VALUES ('globex secret')", &[])
            .unwrap();
        tx.commit().unwrap();

        for opt in [
            format!("-c steward.tenant_id={GLOBEX}"),
            format!("-c steward.current_tenant={GLOBEX}"),
            "-c row_security=off".to_string(),
        ] {
            let refused = |e: &postgres::Error| {
                let code = sqlstate(e);
                assert!(
                    server == Server::Preloaded && opt.contains("steward.") && code == "42602",
                    "{server:?}, {opt}: connection failed with {code}: {e}"
                );
            };
            match postgres::Client::connect(
                &conninfo_on(server, &db, "e2e_nogrant", Some(&opt)),
                NoTls,
            ) {
                Ok(mut forged) => {
                    let err = forged.query("SELECT label FROM items", &[]).unwrap_err();
                    let code = sqlstate(&err);
                    assert!(
                        code == "ST001" || code == "42501",
                        "{server:?}, {opt}: got {code}, expected a refusal"
                    );
                }
                Err(e) => refused(&e),
            }
            match postgres::Client::connect(
                &conninfo_on(server, &db, "e2e_acme", Some(&opt)),
                NoTls,
            ) {
                Ok(mut acme) => match acme.query("SELECT tenant_id::text FROM items", &[]) {
                    Ok(rows) => assert!(
                        rows.iter().all(|r| r.get::<_, String>(0) == ACME),
                        "{server:?}, {opt} leaked rows"
                    ),
                    Err(e) => assert_eq!(sqlstate(&e), "42501", "{server:?}, {opt}"),
                },
                Err(e) => refused(&e),
            }
        }
    }
}

/// Two sessions in two tenants at once, interleaved: neither sees or touches the other's rows.
#[test]
fn concurrent_sessions_stay_in_their_tenants() {
    let db = fresh_database("e2e_concurrent");
    let handles: Vec<_> = [(ACME, "writer-a"), (GLOBEX, "writer-g")]
        .into_iter()
        .map(|(tenant, actor)| {
            let db = db.clone();
            std::thread::spawn(move || {
                let mut c = connect(&db, "e2e_service");
                for i in 0..200 {
                    let mut tx = c.transaction().unwrap();
                    tx.execute(
                        "SELECT steward.enter_tenant($1::text::uuid, $2)",
                        &[&tenant, &actor],
                    )
                    .unwrap();
                    tx.execute(
                        "INSERT INTO items (label) VALUES ($1)",
                        &[&format!("{actor} {i}")],
                    )
                    .unwrap();
                    let n: i64 = tx
                        .query_one(
                            "SELECT count(*) FROM items WHERE tenant_id <> $1::text::uuid",
                            &[&tenant],
                        )
                        .unwrap()
                        .get(0);
                    assert_eq!(n, 0, "{actor} saw another tenant's rows");
                    tx.commit().unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let mut acme = connect(&db, "e2e_acme");
    assert_eq!(tenants_of(&mut acme), vec![ACME.to_string()]);
    let n: i64 = acme
        .query_one("SELECT count(*) FROM items", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 200);
    let mut admin = connect(&db, "postgres");
    let total: i64 = admin
        .query_one("SELECT count(*) FROM items", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        total, 400,
        "a superuser (RLS bypass) sees both tenants' rows: nothing lost"
    );
}

/// Grants, trust and tenant status are cached per backend; a change committed elsewhere takes
/// effect in an open session at its next transaction, never later.
#[test]
fn revokes_and_suspensions_reach_open_sessions_at_their_next_transaction() {
    let db = fresh_database("e2e_invalidation");
    let mut admin = connect(&db, "postgres");
    let mut svc = connect(&db, "e2e_service");
    let mut tx = svc.transaction().unwrap();
    tx.execute("SELECT steward.enter_tenant($1::text::uuid)", &[&ACME])
        .unwrap();
    tx.execute("INSERT INTO items (label) VALUES ('acme row')", &[])
        .unwrap();
    tx.commit().unwrap();

    let mut acme = connect(&db, "e2e_acme");
    let count = |c: &mut postgres::Client| {
        c.query_one("SELECT count(*) FROM items", &[])
            .map(|r| r.get::<_, i64>(0))
    };
    assert_eq!(count(&mut acme).unwrap(), 1, "one grant: implicit context");

    // Inside an open transaction the grant holds; the revoke reaches the next one.
    let mut open = acme.transaction().unwrap();
    assert_eq!(
        open.query_one("SELECT count(*) FROM items", &[])
            .unwrap()
            .get::<_, i64>(0),
        1
    );
    admin
        .execute(
            "SELECT steward.revoke_tenant('e2e_acme', $1::text::uuid)",
            &[&ACME],
        )
        .unwrap();
    open.commit().unwrap();
    assert_eq!(
        sqlstate(&count(&mut acme).unwrap_err()),
        "ST001",
        "revoked grant still used"
    );

    admin
        .execute(
            "SELECT steward.grant_tenant('e2e_acme', $1::text::uuid)",
            &[&ACME],
        )
        .unwrap();
    assert_eq!(count(&mut acme).unwrap(), 1, "re-granted");

    admin
        .execute(
            "UPDATE steward.tenants SET status = 'suspended' WHERE tenant_id = $1::text::uuid",
            &[&ACME],
        )
        .unwrap();
    assert_eq!(
        sqlstate(&count(&mut acme).unwrap_err()),
        "ST002",
        "suspension not seen"
    );
    let err = svc
        .execute("SELECT steward.enter_tenant($1::text::uuid)", &[&ACME])
        .unwrap_err();
    assert_eq!(
        sqlstate(&err),
        "ST002",
        "a trusted role entered a suspended tenant"
    );
    admin
        .execute(
            "UPDATE steward.tenants SET status = 'active' WHERE tenant_id = $1::text::uuid",
            &[&ACME],
        )
        .unwrap();
    assert_eq!(count(&mut acme).unwrap(), 1);

    // Role memberships are roles' business: a grant reached through a group role goes away
    // when the membership does.
    admin.batch_execute(&format!(
        "DO $$ BEGIN CREATE ROLE e2e_group NOLOGIN; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$;
         SELECT steward.revoke_tenant('e2e_acme', '{ACME}');
         SELECT steward.grant_tenant('e2e_group', '{ACME}');
         GRANT e2e_group TO e2e_acme;"
    ))
    .unwrap();
    assert_eq!(count(&mut acme).unwrap(), 1, "grant through a group role");
    admin
        .batch_execute("REVOKE e2e_group FROM e2e_acme")
        .unwrap();
    assert_eq!(
        sqlstate(&count(&mut acme).unwrap_err()),
        "ST001",
        "membership revoked, grant kept"
    );
    admin
        .batch_execute(&format!(
            "SELECT steward.grant_tenant('e2e_acme', '{ACME}')"
        ))
        .unwrap();
}
