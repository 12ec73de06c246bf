-- A governed table changed by its owner after govern(): steward checks what its triggers rely on
-- each time it uses it, and refuses with ST400 naming the table and the column, or adapts. No
-- change makes a statement crash the server or write a value of the wrong type.
-- In a database of this file's own, copied from the shared fixture (setup.sql): nothing any
-- other file did is seen here, and this file runs alone with `cargo xtask test pg_regress table_drift`.
\c postgres
CREATE DATABASE regress_table_drift TEMPLATE steward_regress;
\c regress_table_drift
\set SHOW_CONTEXT never
SET ROLE app_owner;
CREATE TABLE app.drift (id int PRIMARY KEY, tenant_id uuid NOT NULL, label text);
GRANT SELECT, INSERT, UPDATE, DELETE ON app.drift TO PUBLIC;
RESET ROLE;
SELECT steward.govern('app.drift', soft_delete => true);
\c - acme_app
INSERT INTO app.drift (id, label) VALUES (1, 'one'), (2, 'two');

-- The DDL guard refuses such changes at DDL time (ddl_guard.sql). This file is about the second
-- line of defence: a change let through under steward.break_glass (or made with the guard
-- disabled) is caught when steward uses the table.
\c - app_owner
ALTER TABLE app.drift ALTER COLUMN version TYPE text;
\echo :LAST_ERROR_SQLSTATE

-- The version column retyped (to text, to integer): every write is refused, none crashes.
\c - postgres
BEGIN;
SELECT steward.break_glass('test: the owner changes the table');
ALTER TABLE app.drift ALTER COLUMN version TYPE text;
COMMIT;
\c - acme_app
UPDATE app.drift SET label = 'x' WHERE id = 1;
\echo :LAST_ERROR_SQLSTATE
UPDATE app.drift SET label = 'x', version = '1' WHERE id = 1;
\echo :LAST_ERROR_SQLSTATE
INSERT INTO app.drift (id, label) VALUES (3, 'three');
\echo :LAST_ERROR_SQLSTATE
DELETE FROM app.drift WHERE id = 2;
\echo :LAST_ERROR_SQLSTATE
\c - postgres
BEGIN;
SELECT steward.break_glass('test: the owner changes the table');
ALTER TABLE app.drift ALTER COLUMN version TYPE integer USING version::integer;
COMMIT;
\c - acme_app
UPDATE app.drift SET label = 'x' WHERE id = 1;
\echo :LAST_ERROR_SQLSTATE
DELETE FROM app.drift WHERE id = 2;
\echo :LAST_ERROR_SQLSTATE
-- ... made nullable, renamed, dropped, or replaced by a generated column: refused the same way.
\c - postgres
BEGIN;
SELECT steward.break_glass('test: the owner changes the table');
ALTER TABLE app.drift ALTER COLUMN version TYPE bigint, ALTER COLUMN version DROP NOT NULL;
COMMIT;
\c - acme_app
UPDATE app.drift SET label = 'x' WHERE id = 1;
\echo :LAST_ERROR_SQLSTATE
\c - postgres
BEGIN;
SELECT steward.break_glass('test: the owner changes the table');
ALTER TABLE app.drift ALTER COLUMN version SET NOT NULL;
ALTER TABLE app.drift RENAME COLUMN version TO v;
COMMIT;
\c - acme_app
UPDATE app.drift SET label = 'x' WHERE id = 1;
\echo :LAST_ERROR_SQLSTATE
\c - postgres
BEGIN;
SELECT steward.break_glass('test: the owner changes the table');
ALTER TABLE app.drift DROP COLUMN v;
ALTER TABLE app.drift ADD COLUMN version bigint GENERATED ALWAYS AS (7) STORED;
COMMIT;
\c - acme_app
INSERT INTO app.drift (id, label) VALUES (3, 'three');
\echo :LAST_ERROR_SQLSTATE
UPDATE app.drift SET label = 'x' WHERE id = 1;
\echo :LAST_ERROR_SQLSTATE
-- Put back as govern() wants it, the table works again (and steward adapts to the new column
-- position on its own).
\c - postgres
BEGIN;
SELECT steward.break_glass('test: the owner changes the table');
ALTER TABLE app.drift DROP COLUMN version;
ALTER TABLE app.drift ADD COLUMN version bigint NOT NULL DEFAULT 1;
COMMIT;
\c - acme_app
UPDATE app.drift SET label = 'one again' WHERE id = 1 RETURNING id, label, version;

-- The tenant column renamed: refused (the policies follow the rename; steward's triggers
-- check the column they were given).
\c - postgres
BEGIN;
SELECT steward.break_glass('test: the owner changes the table');
ALTER TABLE app.drift RENAME COLUMN tenant_id TO owner_tenant;
COMMIT;
\c - acme_app
INSERT INTO app.drift (id, label) VALUES (4, 'four');
\echo :LAST_ERROR_SQLSTATE
UPDATE app.drift SET label = 'x' WHERE id = 1;
\echo :LAST_ERROR_SQLSTATE
DELETE FROM app.drift WHERE id = 1;
\echo :LAST_ERROR_SQLSTATE
\c - postgres
BEGIN;
SELECT steward.break_glass('test: the owner changes the table');
ALTER TABLE app.drift RENAME COLUMN owner_tenant TO tenant_id;
COMMIT;
-- ... made nullable: refused.
BEGIN;
SELECT steward.break_glass('test: the owner changes the table');
ALTER TABLE app.drift ALTER COLUMN tenant_id DROP NOT NULL;
COMMIT;
\c - acme_app
INSERT INTO app.drift (id, label) VALUES (4, 'four');
\echo :LAST_ERROR_SQLSTATE
\c - postgres
BEGIN;
SELECT steward.break_glass('test: the owner changes the table');
ALTER TABLE app.drift ALTER COLUMN tenant_id SET NOT NULL;
COMMIT;

-- The primary key dropped, or changed to other columns: refused, since records name rows by
-- the key govern() saw. Governing the table again takes the new key.
BEGIN;
SELECT steward.break_glass('test: the owner changes the table');
ALTER TABLE app.drift DROP CONSTRAINT drift_pkey;
COMMIT;
\c - acme_app
UPDATE app.drift SET label = 'x' WHERE id = 1;
\echo :LAST_ERROR_SQLSTATE
\c - postgres
BEGIN;
SELECT steward.break_glass('test: the owner changes the table');
ALTER TABLE app.drift ADD PRIMARY KEY (id, tenant_id);
COMMIT;
\c - acme_app
UPDATE app.drift SET label = 'x' WHERE id = 1;
\echo :LAST_ERROR_SQLSTATE
\c - postgres
SELECT steward.govern('app.drift', soft_delete => true);
\c - acme_app
UPDATE app.drift SET label = 'new key' WHERE id = 1 RETURNING id, label, version;
SELECT row_key FROM steward.audit_log WHERE table_name = 'app.drift' ORDER BY id DESC LIMIT 1;

-- The soft-delete column renamed (Postgres itself refuses to retype it: the policies use it):
-- DELETE is refused, never writes a timestamp into another column.
\c - postgres
BEGIN;
SELECT steward.break_glass('test: the owner changes the table');
ALTER TABLE app.drift RENAME COLUMN deleted_at TO removed_at;
COMMIT;
\c - acme_app
DELETE FROM app.drift WHERE id = 2;
\echo :LAST_ERROR_SQLSTATE
\c - postgres
BEGIN;
SELECT steward.break_glass('test: the owner changes the table');
ALTER TABLE app.drift RENAME COLUMN removed_at TO deleted_at;
COMMIT;

-- Columns added (plain or generated) and dropped: steward adapts; the records show the row as
-- it is.
ALTER TABLE app.drift ADD COLUMN note text, ADD COLUMN label_length int GENERATED ALWAYS AS (length(label)) STORED;
ALTER TABLE app.drift DROP COLUMN note;
\c - acme_app
INSERT INTO app.drift (id, label) VALUES (5, 'five');
UPDATE app.drift SET label = 'fifth' WHERE id = 5;
DELETE FROM app.drift WHERE id = 5;
SELECT action, new_row ->> 'label_length' AS label_length, changed
  FROM steward.history('app.drift', '{"id": 5, "tenant_id": "00000000-0000-4000-8000-00000000000a"}');

-- A column added without a rewrite leaves older rows with fewer stored columns: an update that
-- changes nothing in such a row is still no change (no version bump, no record).
\c - postgres
ALTER TABLE app.drift ADD COLUMN extra text;
\c - acme_app
SELECT count(*) AS records_before FROM steward.audit_log WHERE table_name = 'app.drift' \gset
UPDATE app.drift SET label = label WHERE id = 1 RETURNING id, version;
SELECT count(*) - :records_before AS new_records FROM steward.audit_log WHERE table_name = 'app.drift';

-- The server is still up and nothing committed was lost.
SELECT id, label FROM app.drift ORDER BY id;
