-- The write path: one record per change, and each record says what was written, however the
-- statement ran. Where the row a guard returns is certainly the row written, the guard writes
-- the record (ADR 002, issue 21); elsewhere the AFTER trigger does. Every case below is one in
-- which a record written too early would disagree with the row.
\c postgres
CREATE DATABASE regress_write_path TEMPLATE steward_regress;
\c regress_write_path
\set SHOW_CONTEXT never

CREATE TABLE app.items (
    tenant_id uuid NOT NULL,
    id        int NOT NULL,
    title     text NOT NULL,
    qty       int NOT NULL CHECK (qty >= 0),
    PRIMARY KEY (tenant_id, id)
);
GRANT SELECT, INSERT, UPDATE, DELETE ON app.items TO acme_app;
SELECT steward.govern('app.items');

-- What the log holds for app.items, as the auditor reads it, and the rows as they are.
CREATE VIEW app.items_log AS
SELECT id AS record, action, row_key->>'id' AS item, old_row - 'tenant_id' AS old_row,
       new_row - 'tenant_id' AS new_row, changed
  FROM steward.audit_log WHERE table_name = 'app.items';
GRANT SELECT ON app.items_log TO acme_app;
-- Every row's last record is the row itself: the check every case below ends with.
CREATE VIEW app.items_drift AS
SELECT i.id, to_jsonb(i) - 'tenant_id' AS row, l.new_row AS last_record
  FROM app.items i
  LEFT JOIN LATERAL (SELECT c.new_row - 'tenant_id' AS new_row FROM steward.audit_log c
                      WHERE c.table_name = 'app.items' AND c.row_key->>'id' = i.id::text
                      ORDER BY c.id DESC LIMIT 1) l ON true
 WHERE l.new_row IS DISTINCT FROM to_jsonb(i) - 'tenant_id';
GRANT SELECT ON app.items_drift TO acme_app;

\c - acme_app
INSERT INTO app.items (id, title, qty) VALUES (1, 'bolt', 10), (2, 'nut', 20);

-- ON CONFLICT DO NOTHING: the conflicting row is not inserted and has no record; the other is.
INSERT INTO app.items (id, title, qty) VALUES (1, 'bolt again', 99), (3, 'washer', 30)
    ON CONFLICT DO NOTHING;
-- ON CONFLICT DO UPDATE: an UPDATE of the row that was there, recorded as one.
INSERT INTO app.items (id, title, qty) VALUES (2, 'nut', 5)
    ON CONFLICT (tenant_id, id) DO UPDATE SET qty = app.items.qty + excluded.qty;
-- ... and DO UPDATE with a WHERE that turns the conflict into nothing: no record.
INSERT INTO app.items (id, title, qty) VALUES (2, 'nut', 5)
    ON CONFLICT (tenant_id, id) DO UPDATE SET qty = 0 WHERE app.items.qty > 1000;
SELECT record, action, item, old_row, new_row, changed FROM app.items_log ORDER BY record;

-- A constraint failure after the guards ran: the statement fails (23514) and leaves no record.
UPDATE app.items SET qty = qty - 26 WHERE id = 2;
\echo :LAST_ERROR_SQLSTATE
INSERT INTO app.items (id, title, qty) VALUES (4, 'bad', -1);
\echo :LAST_ERROR_SQLSTATE
-- A unique violation: the same.
INSERT INTO app.items (id, title, qty) VALUES (5, 'spring', 1), (1, 'duplicate', 1);
\echo :LAST_ERROR_SQLSTATE
-- A subtransaction rolled back takes its records with it; the one kept keeps its own.
BEGIN;
SAVEPOINT s;
UPDATE app.items SET qty = 11 WHERE id = 1;
DELETE FROM app.items WHERE id = 3;
ROLLBACK TO SAVEPOINT s;
UPDATE app.items SET qty = 12 WHERE id = 1;
COMMIT;
SELECT record, action, item, old_row, new_row FROM app.items_log WHERE record > 7 ORDER BY record;

-- A deferred constraint that fails at commit: nothing of the transaction stays.
\c - postgres
CREATE TABLE app.item_codes (
    tenant_id uuid NOT NULL,
    id        int NOT NULL,
    code      text NOT NULL,
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT item_codes_code_key UNIQUE (tenant_id, code) DEFERRABLE INITIALLY DEFERRED
);
GRANT SELECT, INSERT, UPDATE, DELETE ON app.item_codes TO acme_app;
SELECT steward.govern('app.item_codes');
\c - acme_app
SELECT count(*) AS records_before FROM steward.audit_log WHERE table_name = 'app.item_codes';
BEGIN;
INSERT INTO app.item_codes (id, code) VALUES (1, 'A'), (2, 'A');
COMMIT;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS rows_after FROM app.item_codes;
SELECT count(*) AS records_after FROM steward.audit_log WHERE table_name = 'app.item_codes';

-- The table's own BEFORE triggers. One that fires after steward's guard (names sort after
-- "steward_") changes the row: the record holds the row as written. One that skips the row:
-- no record. One that fires before the guard: the record holds what it made.
\c - postgres
CREATE FUNCTION app.shout() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.title := upper(NEW.title); RETURN NEW; END $$;
CREATE FUNCTION app.skip_zero() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN IF NEW.qty = 0 THEN RETURN NULL; END IF; RETURN NEW; END $$;
CREATE FUNCTION app.keep_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN IF OLD.title = 'KEEP' THEN RETURN NULL; END IF; RETURN OLD; END $$;
CREATE TRIGGER z_shout BEFORE INSERT OR UPDATE ON app.items FOR EACH ROW EXECUTE FUNCTION app.shout();
CREATE TRIGGER z_skip_zero BEFORE INSERT OR UPDATE ON app.items FOR EACH ROW EXECUTE FUNCTION app.skip_zero();
CREATE TRIGGER z_keep BEFORE DELETE ON app.items FOR EACH ROW EXECUTE FUNCTION app.keep_deleted();
\c - acme_app
INSERT INTO app.items (id, title, qty) VALUES (6, 'gear', 6), (7, 'skipped', 0);
UPDATE app.items SET title = 'gear wheel' WHERE id = 6;
UPDATE app.items SET qty = 0 WHERE id = 6;
INSERT INTO app.items (id, title, qty) VALUES (8, 'keep', 8);
DELETE FROM app.items WHERE id IN (6, 8);
SELECT id, title, qty, version FROM app.items WHERE id >= 6 ORDER BY id;
SELECT record, action, item, old_row, new_row FROM app.items_log WHERE item::int >= 6 ORDER BY record;
\c - postgres
DROP TRIGGER z_shout ON app.items;
DROP TRIGGER z_skip_zero ON app.items;
DROP TRIGGER z_keep ON app.items;
CREATE TRIGGER a_shout BEFORE INSERT OR UPDATE ON app.items FOR EACH ROW EXECUTE FUNCTION app.shout();
\c - acme_app
INSERT INTO app.items (id, title, qty) VALUES (9, 'cog', 9);
UPDATE app.items SET title = 'small cog' WHERE id = 9;
SELECT record, action, item, old_row, new_row FROM app.items_log WHERE item = '9' ORDER BY record;
\c - postgres
DROP TRIGGER a_shout ON app.items;

-- Many rows a statement: one record per row, in one statement's INSERT ... SELECT, UPDATE and
-- DELETE, and in a WITH clause's.
\c - acme_app
INSERT INTO app.items (id, title, qty) SELECT g, 'bulk ' || g, g FROM generate_series(100, 1099) g;
UPDATE app.items SET qty = qty + 1 WHERE id BETWEEN 100 AND 199;
WITH d AS (DELETE FROM app.items WHERE id BETWEEN 1000 AND 1099 RETURNING id)
SELECT count(*) AS deleted FROM d;
WITH u AS (UPDATE app.items SET qty = qty + 1 WHERE id BETWEEN 200 AND 249 RETURNING id)
INSERT INTO app.items (id, title, qty) SELECT id + 10000, 'copy', 1 FROM u;
SELECT action, count(*) FROM app.items_log WHERE item::int >= 100 GROUP BY action ORDER BY action;
SELECT count(*) AS rows_whose_last_record_differs FROM app.items_drift;

-- MERGE: its own statement kind (it may INSERT, UPDATE and DELETE), recorded as the rows went.
MERGE INTO app.items t
USING (VALUES (100, 'merged'), (5000, 'merged new')) AS s(id, title) ON t.id = s.id
 WHEN MATCHED THEN UPDATE SET title = s.title
 WHEN NOT MATCHED THEN INSERT (id, title, qty) VALUES (s.id, s.title, 1);
MERGE INTO app.items t USING (VALUES (101)) AS s(id) ON t.id = s.id
 WHEN MATCHED THEN DELETE;
SELECT action, item, new_row->>'title' AS title FROM app.items_log WHERE item IN ('100', '101', '5000') AND record > (SELECT max(record) - 3 FROM app.items_log) ORDER BY record;
SELECT count(*) AS rows_whose_last_record_differs FROM app.items_drift;

-- An UPDATE whose join meets the same row twice changes it once: one record (after the one of
-- the 100-row UPDATE above).
UPDATE app.items SET qty = qty + 1 FROM (VALUES (102), (102)) AS v(id) WHERE app.items.id = v.id;
SELECT action, old_row->>'qty' AS old_qty, new_row->>'qty' AS new_qty FROM app.items_log
 WHERE item = '102' AND action = 'UPDATE';
-- One statement, two WITH clauses on the same table: the one with ON CONFLICT keeps the AFTER
-- trigger, the other has its guard record. One record each.
WITH i AS (INSERT INTO app.items (id, title, qty) VALUES (103, 'conflict', 1), (6000, 'new', 1)
           ON CONFLICT DO NOTHING RETURNING id)
UPDATE app.items SET title = 'both' WHERE id = 104;
SELECT action, item, new_row->>'title' AS title FROM app.items_log
 WHERE item IN ('103', '104', '6000') AND record > (SELECT max(record) - 2 FROM app.items_log) ORDER BY item;
-- A value stored compressed and set to the same value: no change, no record, no new version
-- (the guard's new row is not compressed yet; the values are compared, not only the bytes).
\c - postgres
CREATE TABLE app.notes (tenant_id uuid NOT NULL, id int NOT NULL, body text, PRIMARY KEY (tenant_id, id));
GRANT SELECT, INSERT, UPDATE ON app.notes TO acme_app;
SELECT steward.govern('app.notes');
\c - acme_app
INSERT INTO app.notes (id, body) VALUES (1, repeat('compressible ', 300));
SELECT pg_column_compression(body) AS stored, version FROM app.notes;
UPDATE app.notes SET body = body || '' WHERE id = 1 RETURNING version;
UPDATE app.notes SET body = body || '.' WHERE id = 1 RETURNING version;
SELECT action, changed FROM steward.audit_log WHERE table_name = 'app.notes' ORDER BY id;

-- A stored generated column is computed after the BEFORE triggers: the record has its value.
\c - postgres
CREATE TABLE app.priced (
    tenant_id uuid NOT NULL,
    id        int NOT NULL,
    qty       int NOT NULL,
    price     numeric NOT NULL,
    total     numeric GENERATED ALWAYS AS (qty * price) STORED,
    PRIMARY KEY (tenant_id, id)
);
GRANT SELECT, INSERT, UPDATE ON app.priced TO acme_app;
SELECT steward.govern('app.priced');
\c - acme_app
INSERT INTO app.priced (id, qty, price) VALUES (1, 2, 1.5);
UPDATE app.priced SET qty = 4 WHERE id = 1;
SELECT action, new_row->>'total' AS total FROM steward.audit_log WHERE table_name = 'app.priced' ORDER BY id;

-- A partitioned table is not governed (nor a partition, nor a table in an inheritance tree), so
-- no governed row moves between partitions (an UPDATE that does is a DELETE and an INSERT, and
-- the guards of the partition it leaves would see an UPDATE).
\c - postgres
CREATE TABLE app.events (tenant_id uuid NOT NULL, id int NOT NULL, region text NOT NULL,
                         PRIMARY KEY (tenant_id, id, region)) PARTITION BY LIST (region);
CREATE TABLE app.events_eu PARTITION OF app.events FOR VALUES IN ('eu');
SELECT steward.govern('app.events');
\echo :LAST_ERROR_SQLSTATE

-- COPY (here by the superuser, in acme's context: COPY FROM is refused where RLS applies).
\c - postgres
BEGIN;
SELECT steward.enter_tenant('00000000-0000-4000-8000-00000000000a');
COPY app.items (id, title, qty) FROM stdin WITH (FORMAT csv);
20000,copied one,1
20001,copied two,2
\.
COMMIT;
SELECT action, item, new_row->>'title' AS title FROM app.items_log WHERE item::int >= 20000 ORDER BY record;
\c - acme_app
SELECT count(*) AS rows_whose_last_record_differs FROM app.items_drift;

-- The guards that write records are steward's to swap in, for one statement at a time: nobody
-- attaches them. A table owner may not (42501); a superuser who does gets ST403 at the first row.
\c - postgres
CREATE TABLE app.own (tenant_id uuid NOT NULL DEFAULT '00000000-0000-4000-8000-00000000000a', id int PRIMARY KEY);
ALTER TABLE app.own OWNER TO app_owner;
\c - app_owner
CREATE TRIGGER forge BEFORE INSERT ON app.own FOR EACH ROW EXECUTE FUNCTION steward._internal_row_guard_and_log();
\echo :LAST_ERROR_SQLSTATE
\c - postgres
CREATE TRIGGER forge BEFORE UPDATE ON app.items FOR EACH ROW EXECUTE FUNCTION steward._internal_update_guard_and_log('steward:2', 'tenant_id', 'version', 'f', 'f', 't', 't', 'items', 'id');
\c - acme_app
UPDATE app.items SET qty = 3 WHERE id = 1;
\echo :LAST_ERROR_SQLSTATE
\c - postgres
DROP TRIGGER forge ON app.items;

-- A role without USAGE on steward's schema writes a table steward does not govern (one with a
-- trigger: a foreign key's): steward's look at the statement checks no privilege of it.
REVOKE USAGE ON SCHEMA steward FROM PUBLIC;
CREATE ROLE plain_writer;
CREATE TABLE public.parents (id int PRIMARY KEY);
CREATE TABLE public.children (id int PRIMARY KEY, parent int REFERENCES public.parents);
GRANT SELECT, INSERT ON public.parents, public.children TO plain_writer;
SET ROLE plain_writer;
INSERT INTO public.parents VALUES (1);
INSERT INTO public.children VALUES (1, 1);
RESET ROLE;
SELECT count(*) AS children FROM public.children;
GRANT USAGE ON SCHEMA steward TO PUBLIC;
