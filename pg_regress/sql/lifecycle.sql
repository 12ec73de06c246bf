-- The context lasts one transaction: COMMIT, ROLLBACK and errors clear it, and nothing of it
-- reaches the next transaction on the same connection.
-- In a database of this file's own, copied from the shared fixture (setup.sql): nothing any
-- other file did is seen here, and this file runs alone with `cargo xtask test pg_regress lifecycle`.
\c postgres
CREATE DATABASE regress_lifecycle TEMPLATE steward_regress;
\c regress_lifecycle
\set SHOW_CONTEXT never
\c - api_service

-- A trusted role with no grant has no context until it enters a tenant.
SELECT count(*) FROM app.projects;
\echo :LAST_ERROR_SQLSTATE

-- Cleared at COMMIT.
BEGIN;
SELECT steward.enter_tenant('00000000-0000-4000-8000-00000000000a', 'alice');
SELECT count(*) FROM app.projects;
COMMIT;
SELECT count(*) FROM app.projects;
\echo :LAST_ERROR_SQLSTATE

-- Cleared at ROLLBACK.
BEGIN;
SELECT steward.enter_tenant('00000000-0000-4000-8000-00000000000a', 'alice');
ROLLBACK;
SELECT steward.current_tenant();
\echo :LAST_ERROR_SQLSTATE

-- Cleared when the transaction errors.
BEGIN;
SELECT steward.enter_tenant('00000000-0000-4000-8000-00000000000a', 'alice');
SELECT 1 / 0;
ROLLBACK;
SELECT steward.current_tenant();
\echo :LAST_ERROR_SQLSTATE
SELECT steward.enter_tenant('00000000-0000-4000-8000-00000000000a', 'alice'), 1 / 0;
SELECT steward.current_tenant();
\echo :LAST_ERROR_SQLSTATE

-- A single statement is its own transaction: the context ends with it.
SELECT steward.enter_tenant('00000000-0000-4000-8000-00000000000a', 'alice');
SELECT steward.current_tenant();
\echo :LAST_ERROR_SQLSTATE

-- Tenant A, then tenant B, on one connection: each transaction sees only its tenant.
BEGIN;
SELECT steward.enter_tenant('00000000-0000-4000-8000-00000000000a', 'alice');
SELECT name FROM app.projects ORDER BY id;
COMMIT;
BEGIN;
SELECT steward.enter_tenant('00000000-0000-4000-8000-00000000000b', 'bob');
SELECT name FROM app.projects ORDER BY id;
SELECT steward.current_actor();
COMMIT;

-- A savepoint rolled back undoes a context entered inside it; a released one keeps it.
BEGIN;
SELECT steward.enter_tenant('00000000-0000-4000-8000-00000000000a', 'alice');
SAVEPOINT s1;
SELECT steward.enter_tenant('00000000-0000-4000-8000-00000000000b', 'bob');
SELECT steward.current_tenant(), steward.current_actor();
ROLLBACK TO SAVEPOINT s1;
SELECT steward.current_tenant(), steward.current_actor();
SAVEPOINT s2;
SELECT steward.enter_tenant('00000000-0000-4000-8000-00000000000b', 'bob');
RELEASE SAVEPOINT s2;
SELECT steward.current_tenant(), steward.current_actor();
COMMIT;
-- A PL/pgSQL exception block is a subtransaction too.
BEGIN;
DO $$
BEGIN
  PERFORM steward.enter_tenant('00000000-0000-4000-8000-00000000000b', 'bob');
  RAISE EXCEPTION 'boom';
EXCEPTION WHEN OTHERS THEN
  NULL;
END
$$;
SELECT steward.current_tenant();
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;

-- A failed enter_tenant leaves no context behind.
\c - acme_app
BEGIN;
SELECT steward.enter_tenant('00000000-0000-4000-8000-00000000000b');
ROLLBACK;
SELECT name FROM app.projects ORDER BY id;
