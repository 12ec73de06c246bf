-- What a DBA adds to steward's own change log is handled as Postgres would handle it, or refused
-- with a clear error: never a crash, never an index that misses or gains a row. steward writes
-- records without SQL, so it must maintain expression and partial indexes, unique and CHECK
-- constraints itself.
-- In a database of this file's own, copied from the shared fixture (setup.sql): nothing any
-- other file did is seen here, and this file runs alone with `cargo xtask test pg_regress log_tables`.
\c postgres
CREATE DATABASE regress_log_tables TEMPLATE steward_regress;
\c regress_log_tables
\set SHOW_CONTEXT never
CREATE EXTENSION amcheck;
CREATE TABLE app.gadgets (id int PRIMARY KEY, tenant_id uuid NOT NULL, name text, serial text);
GRANT SELECT, INSERT, UPDATE, DELETE ON app.gadgets TO PUBLIC;
SELECT steward.govern('app.gadgets');
CREATE INDEX log_by_name ON steward.change_log ((new_row ->> 'name'));
CREATE INDEX log_gadgets_only ON steward.change_log (id) WHERE table_name = 'app.gadgets';
CREATE UNIQUE INDEX log_unique_serial ON steward.change_log ((new_row ->> 'serial'))
    WHERE action = 'INSERT' AND table_name = 'app.gadgets';
\c - acme_app
INSERT INTO app.gadgets (id, name, serial) VALUES (1, 'rocket', 's-1'), (2, 'magnet', 's-2');
UPDATE app.gadgets SET name = 'rocket mk2' WHERE id = 1;
DELETE FROM app.gadgets WHERE id = 2;
\c - postgres
-- Every index holds exactly the records it should (amcheck: each heap tuple the index covers
-- has its entry), and an index scan finds what a sequential scan finds.
SELECT bt_index_check('steward.log_by_name', true)::text = '' AS log_by_name_ok,
       bt_index_check('steward.log_gadgets_only', true)::text = '' AS log_gadgets_only_ok,
       bt_index_check('steward.log_unique_serial', true)::text = '' AS log_unique_serial_ok;
SET enable_seqscan = off;
SET enable_bitmapscan = off;
SELECT count(*) AS by_index FROM steward.change_log WHERE new_row ->> 'name' = 'rocket mk2';
SELECT count(*) AS partial_by_index FROM steward.change_log WHERE table_name = 'app.gadgets';
RESET enable_seqscan;
RESET enable_bitmapscan;
SET enable_indexscan = off;
SET enable_bitmapscan = off;
SELECT count(*) AS by_seqscan FROM steward.change_log WHERE new_row ->> 'name' = 'rocket mk2';
SELECT count(*) AS partial_by_seqscan FROM steward.change_log WHERE table_name = 'app.gadgets';
RESET enable_indexscan;
RESET enable_bitmapscan;

-- A unique index on the log is enforced: the second gadget with serial s-1 is refused (23505)
-- and its row with it.
\c - acme_app
INSERT INTO app.gadgets (id, name, serial) VALUES (3, 'copy', 's-1');
\echo :LAST_ERROR_SQLSTATE
SELECT id FROM app.gadgets ORDER BY id;
-- A CHECK constraint the DBA adds is enforced (23514).
\c - postgres
DROP INDEX steward.log_unique_serial;
ALTER TABLE steward.change_log ADD CONSTRAINT log_no_forbidden
    CHECK (new_row ->> 'name' IS DISTINCT FROM 'forbidden');
\c - acme_app
INSERT INTO app.gadgets (id, name) VALUES (4, 'forbidden');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO app.gadgets (id, name) VALUES (4, 'allowed');
-- A trigger on the log, or a column that needs a value, would be skipped by steward's writer:
-- every governed write is refused with ST400 until the DBA removes it.
\c - postgres
ALTER TABLE steward.change_log DROP CONSTRAINT log_no_forbidden;
CREATE FUNCTION public.copy_record() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER copy_record AFTER INSERT ON steward.change_log FOR EACH ROW EXECUTE FUNCTION public.copy_record();
\c - acme_app
INSERT INTO app.gadgets (id, name) VALUES (5, 'five');
\echo :LAST_ERROR_SQLSTATE
\c - postgres
DROP TRIGGER copy_record ON steward.change_log;
-- A rule steward's writer would not apply: refused while it is there, and writes go on as soon as
-- it is dropped (Postgres keeps relhasrules set until the next VACUUM; steward looks at the rules).
CREATE RULE swallow AS ON INSERT TO steward.change_log DO INSTEAD NOTHING;
\c - acme_app
INSERT INTO app.gadgets (id, name) VALUES (5, 'five');
\echo :LAST_ERROR_SQLSTATE
\c - postgres
DROP RULE swallow ON steward.change_log;
\c - acme_app
INSERT INTO app.gadgets (id, name) VALUES (6, 'six after the rule');
SELECT count(*) AS logged FROM steward.audit_log WHERE table_name = 'app.gadgets' AND row_key = '{"id": 6}';
\c - postgres
ALTER TABLE steward.change_log ADD COLUMN reviewed boolean NOT NULL DEFAULT false;
\c - acme_app
INSERT INTO app.gadgets (id, name) VALUES (5, 'five');
\echo :LAST_ERROR_SQLSTATE
\c - postgres
ALTER TABLE steward.change_log DROP COLUMN reviewed;
-- ... a column whose domain has a default (the attribute itself has none) likewise.
CREATE DOMAIN public.flag AS boolean DEFAULT false;
ALTER TABLE steward.change_log ADD COLUMN flagged public.flag;
\c - acme_app
INSERT INTO app.gadgets (id, name) VALUES (5, 'five');
\echo :LAST_ERROR_SQLSTATE
\c - postgres
ALTER TABLE steward.change_log DROP COLUMN flagged;
DROP DOMAIN public.flag;
-- A nullable column without a default is harmless: records leave it NULL.
ALTER TABLE steward.change_log ADD COLUMN note text;
\c - acme_app
INSERT INTO app.gadgets (id, name) VALUES (5, 'five');
\c - postgres
SELECT count(*) FILTER (WHERE note IS NULL) AS records_without_note
  FROM steward.change_log WHERE table_name = 'app.gadgets' AND row_key = '{"id": 5}';
ALTER TABLE steward.change_log DROP COLUMN note;
DROP INDEX steward.log_by_name, steward.log_gadgets_only;
DROP FUNCTION public.copy_record();
SELECT id, name FROM app.gadgets ORDER BY id;
