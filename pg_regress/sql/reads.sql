-- Reads are reads: no steward code path gives a transaction that writes nothing a transaction
-- id. An id would hold back sealing (and every transaction's view of what is final), be taken
-- in BEGIN READ ONLY, and fail on a hot standby. Each case starts a new session, so steward's
-- first lookups of the session (the extension's owner, the caller's trust) run inside it.
-- In a database of this file's own, copied from the shared fixture (setup.sql): nothing any
-- other file did is seen here, and this file runs alone with `cargo xtask test pg_regress reads`.
\c postgres
CREATE DATABASE regress_reads TEMPLATE steward_regress;
\c regress_reads
\set SHOW_CONTEXT never

-- A tenant role, first statement of the session: rows, the audit face, history, the outbox.
\c - acme_app
BEGIN;
SELECT count(*) > 0 AS reads_rows FROM app.projects;
SELECT count(*) > 0 AS reads_audit FROM steward.audit_log;
SELECT count(*) > 0 AS reads_history FROM steward.history('app.projects', (SELECT jsonb_build_object('id', min(id)) FROM app.projects));
SELECT count(*) >= 0 AS reads_outbox FROM steward.outbox;
SELECT pg_current_xact_id_if_assigned() IS NULL AS no_transaction_id;
COMMIT;

-- BEGIN READ ONLY, and a REPEATABLE READ report.
\c - acme_app
BEGIN READ ONLY;
SELECT count(*) > 0 AS reads_rows FROM app.projects;
SELECT count(*) > 0 AS reads_as_of FROM steward.row_as_of('app.projects', (SELECT jsonb_build_object('id', min(id)) FROM app.projects), now());
SELECT pg_current_xact_id_if_assigned() IS NULL AS no_transaction_id;
COMMIT;
\c - acme_app
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT count(*) > 0 AS reads_rows FROM app.projects;
SELECT pg_current_xact_id_if_assigned() IS NULL AS no_transaction_id;
COMMIT;

-- A trusted role entering a tenant, and a role that must choose its tenant.
\c - api_service
BEGIN;
SELECT steward.enter_tenant('00000000-0000-4000-8000-00000000000a', 'report') IS NOT NULL AS entered;
SELECT count(*) > 0 AS reads_rows FROM app.projects;
SELECT count(*) >= 0 AS reads_lag FROM steward.consumer_lag;
SELECT pg_current_xact_id_if_assigned() IS NULL AS no_transaction_id;
COMMIT;
\c - multi_app
BEGIN;
SELECT steward.enter_tenant('00000000-0000-4000-8000-00000000000b') IS NOT NULL AS entered;
SELECT count(*) > 0 AS reads_rows FROM app.projects;
SELECT pg_current_xact_id_if_assigned() IS NULL AS no_transaction_id;
COMMIT;

-- The check can fail: a write takes an id, as it must.
\c - acme_app
BEGIN;
INSERT INTO app.projects (name) VALUES ('acme: reads test');
SELECT pg_current_xact_id_if_assigned() IS NOT NULL AS a_write_has_one;
ROLLBACK;
