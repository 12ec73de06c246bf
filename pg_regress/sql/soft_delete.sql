-- Soft delete: DELETE hides the row through RLS and is recorded as a delete; restore() brings
-- it back, recorded too.
-- In a database of this file's own, copied from the shared fixture (setup.sql): nothing any
-- other file did is seen here, and this file runs alone with `cargo xtask test pg_regress soft_delete`.
\c postgres
CREATE DATABASE regress_soft_delete TEMPLATE steward_regress;
\c regress_soft_delete
\set SHOW_CONTEXT never
CREATE TABLE app.docs (id int PRIMARY KEY, tenant_id uuid NOT NULL, title text NOT NULL);
GRANT SELECT, INSERT, UPDATE, DELETE ON app.docs TO acme_app, globex_app, api_service;
GRANT SELECT ON app.docs TO nogrant_app;
SELECT steward.govern('app.docs', soft_delete => true);
SELECT column_name, data_type FROM information_schema.columns
 WHERE table_schema = 'app' AND table_name = 'docs' AND column_name = 'deleted_at';

\c - acme_app
INSERT INTO app.docs (id, title) VALUES (1, 'draft'), (2, 'final');
DELETE FROM app.docs WHERE id = 1 RETURNING id;
-- Gone for the tenant: reads, updates and deletes no longer find it.
SELECT id, title FROM app.docs ORDER BY id;
UPDATE app.docs SET title = 'edited after delete' WHERE id = 1 RETURNING id;
DELETE FROM app.docs WHERE id = 1 RETURNING id;
-- Recorded as a delete.
SELECT action, changed FROM steward.history('app.docs', '{"id": 1}');
-- The row is still there, marked.
\c - postgres
SELECT id, title, deleted_at IS NOT NULL AS deleted, version FROM app.docs ORDER BY id;

-- restore() brings it back, in the caller's tenant, recorded as an INSERT.
\c - acme_app
SELECT steward.restore('app.docs', '{"id": 1}');
SELECT id, title FROM app.docs ORDER BY id;
SELECT action, old_row ->> 'title' AS title_before, old_row ->> 'deleted_at' IS NOT NULL AS deleted_before,
       new_row ->> 'deleted_at' IS NOT NULL AS deleted_after
  FROM steward.history('app.docs', '{"id": 1}');
-- The row events carry the whole row, the delete's included.
SELECT event_type, payload ->> 'title' AS title, payload ->> 'deleted_at' IS NOT NULL AS deleted
  FROM steward.outbox WHERE aggregate_type = 'app.docs' AND aggregate_id = '1' ORDER BY id;
-- A row that is not deleted cannot be restored: ST400.
SELECT steward.restore('app.docs', '{"id": 1}');
\echo :LAST_ERROR_SQLSTATE
DELETE FROM app.docs WHERE id = 2;
-- Another tenant cannot restore acme's deleted row: it is not in its tenant (ST400).
\c - globex_app
SELECT steward.restore('app.docs', '{"id": 2}');
\echo :LAST_ERROR_SQLSTATE
-- Without UPDATE on the table: 42501. Without a tenant: ST001.
\c - nogrant_app
SELECT steward.restore('app.docs', '{"id": 2}');
\echo :LAST_ERROR_SQLSTATE
\c - api_service
SELECT steward.restore('app.docs', '{"id": 2}');
\echo :LAST_ERROR_SQLSTATE
-- A table without soft delete: ST400.
\c - acme_app
SELECT steward.restore('app.tasks', '{"id": 5}');
\echo :LAST_ERROR_SQLSTATE
\c - postgres
SELECT id, tenant_id, deleted_at IS NOT NULL AS deleted FROM app.docs ORDER BY id;
