-- Optimistic versions: a stale write fails clearly instead of overwriting.
-- In a database of this file's own, copied from the shared fixture (setup.sql): nothing any
-- other file did is seen here, and this file runs alone with `cargo xtask test pg_regress versions`.
\c postgres
CREATE DATABASE regress_versions TEMPLATE steward_regress;
\c regress_versions
\set SHOW_CONTEXT never

-- govern added "version bigint not null default 1" to app.projects.
SELECT column_name, data_type, is_nullable, column_default
  FROM information_schema.columns
 WHERE table_schema = 'app' AND table_name = 'projects' AND column_name = 'version';

\c - acme_app
SELECT id, name, version FROM app.projects WHERE id = 2;
-- An UPDATE that states the version it read succeeds and raises the version by one.
UPDATE app.projects SET name = 'acme: giant magnet v2', version = 1 WHERE id = 2 RETURNING id, name, version;
-- The same stale version again: ST409 naming the table, the key, expected and actual.
UPDATE app.projects SET name = 'stale write', version = 1 WHERE id = 2;
\echo :LAST_ERROR_SQLSTATE
-- A client cannot set a version of its choosing: ST409.
UPDATE app.projects SET version = 100 WHERE id = 2;
\echo :LAST_ERROR_SQLSTATE
INSERT INTO app.projects (name, version) VALUES ('acme: preset version', 42);
\echo :LAST_ERROR_SQLSTATE
-- An UPDATE that does not name the version still raises it by exactly one.
UPDATE app.projects SET name = 'acme: giant magnet v3' WHERE id = 2 RETURNING version;
-- An UPDATE that changes nothing leaves the version alone.
UPDATE app.projects SET name = name WHERE id = 2 RETURNING version;
-- Several rows: each one +1.
WITH u AS (UPDATE app.projects SET name = name || '.' WHERE id IN (1, 2) RETURNING id, version)
SELECT id, version FROM u ORDER BY id;
-- Nothing was overwritten by the refused writes.
SELECT id, name, version FROM app.projects ORDER BY id;

-- version_required: an UPDATE that does not name the version is refused (ST428).
\c - postgres
CREATE TABLE app.contracts (
    tenant_id uuid NOT NULL,
    code      text NOT NULL,
    terms     text NOT NULL,
    PRIMARY KEY (tenant_id, code)
);
GRANT SELECT, INSERT, UPDATE ON app.contracts TO PUBLIC;
SELECT steward.govern('app.contracts', version_required => true);
\c - acme_app
INSERT INTO app.contracts (code, terms) VALUES ('C-1', 'net 30') RETURNING code, version;
UPDATE app.contracts SET terms = 'net 60' WHERE code = 'C-1';
\echo :LAST_ERROR_SQLSTATE
UPDATE app.contracts SET terms = 'net 60', version = 1 WHERE code = 'C-1' RETURNING code, terms, version;

-- A DELETE that states the version it read (an HTTP DELETE with If-Match): stale is ST409, the
-- right version deletes, a key that names no row the caller can see is false.
\c - postgres
GRANT DELETE ON app.contracts TO PUBLIC;
\c - acme_app
SELECT steward.delete_version('app.contracts', '{"tenant_id": "00000000-0000-4000-8000-00000000000a", "code": "C-1"}', 1);
\echo :LAST_ERROR_SQLSTATE
SELECT steward.delete_version('app.contracts', '{"tenant_id": "00000000-0000-4000-8000-00000000000a", "code": "C-1"}', 2) AS deleted;
SELECT steward.delete_version('app.contracts', '{"tenant_id": "00000000-0000-4000-8000-00000000000a", "code": "C-1"}', 2) AS deleted_again;
SELECT count(*) AS left FROM app.contracts;
-- Another tenant's row is not there for acme (false, not a conflict that would confirm it).
\c - globex_app
INSERT INTO app.contracts (code, terms) VALUES ('G-1', 'net 10');
\c - acme_app
SELECT steward.delete_version('app.contracts', '{"tenant_id": "00000000-0000-4000-8000-00000000000b", "code": "G-1"}', 7) AS other_tenant;
SELECT steward.delete_version('app.contracts', '{"code": "C-1"}', 1);
\echo :LAST_ERROR_SQLSTATE
SELECT steward.delete_version('app.contracts', NULL, 1);
\echo :LAST_ERROR_SQLSTATE
-- With soft delete (and version_required): the stated version soft-deletes the row.
\c - postgres
CREATE TABLE app.memos (id int PRIMARY KEY, tenant_id uuid NOT NULL, body text);
GRANT SELECT, INSERT, UPDATE, DELETE ON app.memos TO PUBLIC;
SELECT steward.govern('app.memos', soft_delete => true, version_required => true);
\c - acme_app
INSERT INTO app.memos (id, body) VALUES (1, 'keep for now');
SELECT steward.delete_version('app.memos', '{"id": 1}', 2);
\echo :LAST_ERROR_SQLSTATE
SELECT steward.delete_version('app.memos', '{"id": 1}', 1) AS soft_deleted;
SELECT count(*) AS visible FROM app.memos;
\c - postgres
SELECT id, deleted_at IS NOT NULL AS deleted FROM app.memos;
DROP TABLE app.memos;

-- Unversioned tables: no column added, no check.
\c - postgres
CREATE TABLE app.notes (id int PRIMARY KEY, tenant_id uuid NOT NULL, body text);
SELECT steward.govern('app.notes', versioned => false);
SELECT count(*) AS version_columns FROM information_schema.columns
 WHERE table_schema = 'app' AND table_name = 'notes' AND column_name = 'version';
-- A "version" column of the wrong type, or a required version without versions: ST400.
CREATE TABLE app.bad_version (id int PRIMARY KEY, tenant_id uuid NOT NULL, version int);
SELECT steward.govern('app.bad_version');
\echo :LAST_ERROR_SQLSTATE
SELECT steward.govern('app.notes', versioned => false, version_required => true);
\echo :LAST_ERROR_SQLSTATE
DROP TABLE app.contracts, app.notes, app.bad_version;
