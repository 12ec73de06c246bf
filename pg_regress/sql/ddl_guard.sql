-- The DDL guard: DDL that weakens a governed table is refused for everyone, superusers
-- included, unless steward.break_glass(reason) is in force in the transaction (a member of
-- steward_breakglass); what it lets through is recorded in the change log first.
-- In a database of this file's own, copied from the shared fixture (setup.sql): nothing any
-- other file did is seen here, and this file runs alone with `cargo xtask test pg_regress ddl_guard`.
\c postgres
CREATE DATABASE regress_ddl_guard TEMPLATE steward_regress;
\c regress_ddl_guard
\set SHOW_CONTEXT never
SET ROLE app_owner;
CREATE TABLE app.vault (id int PRIMARY KEY, tenant_id uuid NOT NULL, secret text,
                        UNIQUE (tenant_id, id));
GRANT SELECT, INSERT, UPDATE, DELETE ON app.vault TO PUBLIC;
RESET ROLE;
SELECT steward.govern('app.vault');
\c - acme_app
INSERT INTO app.vault (id, secret) VALUES (1, 'acme secret');
\c - globex_app
INSERT INTO app.vault (id, secret) VALUES (2, 'globex secret');

-- The table owner tries every way to weaken the table: each is refused with ST403.
\c - app_owner
SELECT q AS ddl, public.outcome(q) AS outcome FROM unnest(ARRAY[
  'ALTER TABLE app.vault NO FORCE ROW LEVEL SECURITY',
  'ALTER TABLE app.vault DISABLE ROW LEVEL SECURITY',
  'ALTER TABLE app.vault DISABLE TRIGGER steward_row_guard',
  'ALTER TABLE app.vault DISABLE TRIGGER ALL',
  'ALTER TABLE app.vault ENABLE REPLICA TRIGGER steward_log',
  'ALTER TRIGGER steward_update_guard ON app.vault RENAME TO something_else',
  'DROP TRIGGER steward_truncate_guard ON app.vault',
  'DROP POLICY steward_select ON app.vault',
  'ALTER POLICY steward_tenant ON app.vault USING (true)',
  'ALTER TABLE app.vault RENAME COLUMN tenant_id TO owner',
  'ALTER TABLE app.vault ALTER COLUMN version DROP NOT NULL',
  'ALTER TABLE app.vault DROP COLUMN version',
  'ALTER TABLE app.vault DROP COLUMN tenant_id CASCADE',
  'ALTER TABLE app.vault DROP CONSTRAINT vault_pkey',
  'CREATE RULE spy AS ON INSERT TO app.vault DO ALSO NOTIFY spy',
  'CREATE RULE divert AS ON INSERT TO app.vault DO INSTEAD NOTHING'
]) q;
-- ... and the superuser too.
\c - postgres
SELECT public.outcome('ALTER TABLE app.vault NO FORCE ROW LEVEL SECURITY') AS superuser_no_force;
SET session_replication_role = replica;
SELECT public.outcome('ALTER TABLE app.vault DISABLE TRIGGER steward_row_guard') AS in_replica_mode;
RESET session_replication_role;
-- Every refused attempt is on record, although its transaction rolled back: who, which command,
-- what it would have weakened, and the client's statement it came from.
SELECT actor, new_row ->> 'command' AS command, count(*) AS refused
  FROM steward.change_log
 WHERE tenant_id = '00000000-0000-0000-0000-000000000000' AND event_type = 'steward.ddl.refused'
 GROUP BY 1, 2 ORDER BY 1, 2;
SELECT reason, new_row ->> 'weakens' AS weakens, new_row ->> 'statement' AS statement
  FROM steward.change_log
 WHERE tenant_id = '00000000-0000-0000-0000-000000000000' AND event_type = 'steward.ddl.refused'
 ORDER BY id DESC LIMIT 1;
-- What steward governs is steward's: plain SQL cannot turn a table's audit off, or take it out
-- of the guard's sight, superuser or not.
SELECT public.outcome('UPDATE steward.governed SET audited = false, events = false WHERE rel = ''app.vault''::regclass') AS governed_update,
       public.outcome('DELETE FROM steward.governed WHERE rel = ''app.vault''::regclass') AS governed_delete,
       public.outcome('TRUNCATE steward.governed') AS governed_truncate;
-- What break glass left weak does not license more of the same kind without it: NO FORCE let
-- through, DISABLE is still refused.
BEGIN;
SELECT steward.break_glass('INC-8: no force, for a minute');
ALTER TABLE app.vault NO FORCE ROW LEVEL SECURITY;
COMMIT;
SELECT public.outcome('ALTER TABLE app.vault DISABLE ROW LEVEL SECURITY') AS disable_after_no_force;
-- Putting it back needs no glass.
ALTER TABLE app.vault FORCE ROW LEVEL SECURITY;
-- steward's own append-only guards cannot be disabled either.
SELECT public.outcome('ALTER TABLE steward.change_log DISABLE TRIGGER steward_append_only') AS log_guard,
       public.outcome('ALTER TABLE steward.seal_state ENABLE TRIGGER steward_append_only') AS not_always;
-- Harmless DDL passes: a column, an index, a restrictive policy of one's own.
\c - app_owner
ALTER TABLE app.vault ADD COLUMN note text;
CREATE INDEX ON app.vault (tenant_id, id);
CREATE POLICY no_blank ON app.vault AS RESTRICTIVE FOR INSERT WITH CHECK (secret <> '');
-- Still isolated.
\c - acme_app
SELECT id, secret FROM app.vault ORDER BY id;

-- Foreign keys: Postgres checks them without row-level security, so a key that does not pair
-- the tenant columns could join two tenants' rows. Refused when added later (ST403) and by
-- govern() (ST400), with a hint showing the composite key.
\c - app_owner
CREATE TABLE app.vault_notes (id int PRIMARY KEY, tenant_id uuid NOT NULL, vault_id int);
GRANT SELECT, INSERT ON app.vault_notes TO PUBLIC;
\c - postgres
SELECT steward.govern('app.vault_notes');
\c - app_owner
CREATE TABLE app.vault_refs (vault_id int REFERENCES app.vault (id));
\echo :LAST_ERROR_SQLSTATE
-- Adding a key checks the rows already there with a query that row-level security applies
-- to, for the owner too (FORCE): outside a tenant that is ST001, before the guard is asked. A
-- superuser (no row-level security) is refused by the guard.
ALTER TABLE app.vault_notes ADD FOREIGN KEY (vault_id) REFERENCES app.vault (id);
\echo :LAST_ERROR_SQLSTATE
\c - postgres
ALTER TABLE app.vault_notes ADD FOREIGN KEY (vault_id) REFERENCES app.vault (id);
\echo :LAST_ERROR_SQLSTATE
-- The composite key is accepted: a reference stays inside its tenant.
ALTER TABLE app.vault_notes ADD FOREIGN KEY (tenant_id, vault_id) REFERENCES app.vault (tenant_id, id);
\c - globex_app
INSERT INTO app.vault_notes (id, vault_id) VALUES (1, 1);
\echo :LAST_ERROR_SQLSTATE
INSERT INTO app.vault_notes (id, vault_id) VALUES (2, 2);
-- govern() refuses a table that such a key already references (ST400), and nothing of the
-- attempt stays.
\c - app_owner
CREATE TABLE app.catalog (id int PRIMARY KEY, tenant_id uuid NOT NULL);
CREATE TABLE app.loose (id int PRIMARY KEY, catalog_id int REFERENCES app.catalog (id));
\c - postgres
SELECT steward.govern('app.catalog');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS catalog_governed FROM steward.governed_tables WHERE rel = 'app.catalog'::regclass;
SELECT relrowsecurity AS rls_left_behind FROM pg_class WHERE oid = 'app.catalog'::regclass;

-- Partitions and inheritance: steward governs plain tables. govern() refuses a partitioned
-- table, and a governed table cannot become a parent, a child or a partition.
\c - app_owner
CREATE TABLE app.parted (id int, tenant_id uuid NOT NULL, PRIMARY KEY (id, tenant_id)) PARTITION BY HASH (id);
CREATE TABLE app.parted_0 PARTITION OF app.parted FOR VALUES WITH (MODULUS 1, REMAINDER 0);
\c - postgres
SELECT steward.govern('app.parted');
\echo :LAST_ERROR_SQLSTATE
\c - app_owner
CREATE TABLE app.vault_child () INHERITS (app.vault);
\echo :LAST_ERROR_SQLSTATE
CREATE TABLE app.vault_parent (id int, tenant_id uuid NOT NULL, secret text, version bigint NOT NULL DEFAULT 1, note text);
ALTER TABLE app.vault INHERIT app.vault_parent;
\echo :LAST_ERROR_SQLSTATE
CREATE TABLE app.vault_tree (LIKE app.vault INCLUDING DEFAULTS) PARTITION BY LIST (tenant_id);
ALTER TABLE app.vault_tree ATTACH PARTITION app.vault DEFAULT;
\echo :LAST_ERROR_SQLSTATE
SELECT relispartition AS vault_is_a_partition FROM pg_class WHERE oid = 'app.vault'::regclass;

-- A deferrable primary key cannot name rows: govern() refuses it.
\c - app_owner
CREATE TABLE app.deferred (id int PRIMARY KEY DEFERRABLE, tenant_id uuid NOT NULL);
\c - postgres
SELECT steward.govern('app.deferred');
\echo :LAST_ERROR_SQLSTATE

-- break_glass: only for members of steward_breakglass (42501 otherwise), needs a reason, and is
-- recorded before it takes effect; each weakening command it lets through is recorded too.
\c - app_owner
SELECT steward.break_glass('I am the owner');
\echo :LAST_ERROR_SQLSTATE
\c - postgres
SELECT steward.break_glass('');
\echo :LAST_ERROR_SQLSTATE
BEGIN;
SELECT steward.break_glass('INC-7: rebuild the policies by hand');
DROP POLICY steward_select ON app.vault;
SELECT steward.govern('app.vault');
COMMIT;
SELECT action, actor, event_type, reason, new_row ->> 'weakens' AS weakens
  FROM steward.change_log
 WHERE tenant_id = '00000000-0000-0000-0000-000000000000'
   AND (reason LIKE '%INC-7%' OR new_row ->> 'weakens' LIKE '%app.vault %')
   AND event_type <> 'steward.ddl.refused'
 ORDER BY id;
-- A break-glass call rolled back with its savepoint takes its permission with it.
BEGIN;
SAVEPOINT s;
SELECT steward.break_glass('undone');
ROLLBACK TO SAVEPOINT s;
SELECT public.outcome('ALTER TABLE app.vault NO FORCE ROW LEVEL SECURITY') AS after_rollback_to_savepoint;
COMMIT;
-- It ends with its transaction.
SELECT public.outcome('ALTER TABLE app.vault NO FORCE ROW LEVEL SECURITY') AS next_transaction;
-- Tenant roles never see steward's own records.
\c - acme_app
SELECT count(*) AS own_records_seen FROM steward.audit_log WHERE tenant_id = '00000000-0000-0000-0000-000000000000';
-- ungovern() is the way to take a table out of steward's hands.
\c - postgres
SELECT steward.ungovern('app.vault_notes');
SELECT count(*) AS still_governed FROM steward.governed_tables WHERE rel = 'app.vault_notes'::regclass;

-- Dropping steward drops the change log with it: refused for a superuser too, the extension and
-- its schema alike; under break glass it goes (here rolled back).
\c - postgres
DROP EXTENSION steward CASCADE;
\echo :LAST_ERROR_SQLSTATE
DROP SCHEMA steward CASCADE;
\echo :LAST_ERROR_SQLSTATE
DROP EXTENSION IF EXISTS pg_trgm, steward CASCADE;
\echo :LAST_ERROR_SQLSTATE
BEGIN;
SELECT steward.break_glass('INC-9: reinstall') IS NOT NULL AS glass;
SET LOCAL client_min_messages = warning;
DROP EXTENSION steward CASCADE;
SELECT count(*) AS steward_left FROM pg_extension WHERE extname = 'steward';
ROLLBACK;
SELECT count(*) AS steward_kept FROM pg_extension WHERE extname = 'steward';
SELECT new_row ->> 'command' AS command, count(*) AS refused FROM steward.change_log
 WHERE event_type = 'steward.ddl.refused' AND new_row ->> 'weakens' LIKE 'drops steward%'
 GROUP BY 1 ORDER BY 1;

-- A trigger of steward's name is steward's only as govern() attached it. The owner cannot swap in
-- a function of its own with CREATE OR REPLACE TRIGGER (nothing would be audited, TRUNCATE would
-- pass), nor a superuser steward's own function with other events, a condition or other
-- arguments (audited => 'f'): each is refused with ST403.
\c - app_owner
CREATE FUNCTION app.noop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
SELECT q AS ddl, public.outcome(q) AS outcome FROM unnest(ARRAY[
  'CREATE OR REPLACE TRIGGER steward_log AFTER INSERT OR UPDATE OR DELETE ON app.vault FOR EACH ROW EXECUTE FUNCTION app.noop()',
  'CREATE OR REPLACE TRIGGER steward_truncate_guard BEFORE TRUNCATE ON app.vault FOR EACH STATEMENT EXECUTE FUNCTION app.noop()',
  'CREATE OR REPLACE TRIGGER steward_row_guard BEFORE INSERT OR DELETE ON app.vault FOR EACH ROW EXECUTE FUNCTION app.noop()',
  'CREATE OR REPLACE TRIGGER steward_update_guard BEFORE UPDATE ON app.vault FOR EACH ROW EXECUTE FUNCTION app.noop()'
]) q;
\c - postgres
SELECT string_agg(quote_literal(a), ', ' ORDER BY o) AS args
  FROM unnest(steward._trigger_args('app.vault'::regclass)) WITH ORDINALITY AS t(a, o) \gset
SELECT q AS ddl, public.outcome(q) AS outcome FROM unnest(ARRAY[
  format('CREATE OR REPLACE TRIGGER steward_log AFTER INSERT OR UPDATE OR DELETE ON app.vault FOR EACH ROW EXECUTE FUNCTION steward._internal_log_row(%s)',
         replace(:'args', '''t'', ''t'', ''vault''', '''f'', ''f'', ''vault''')),
  format('CREATE OR REPLACE TRIGGER steward_log AFTER INSERT OR UPDATE OR DELETE ON app.vault FOR EACH ROW WHEN (false) EXECUTE FUNCTION steward._internal_log_row(%s)', :'args'),
  format('CREATE OR REPLACE TRIGGER steward_row_guard BEFORE INSERT ON app.vault FOR EACH ROW EXECUTE FUNCTION steward._internal_row_guard(%s)', :'args')
]) q;
-- The triggers are govern()'s still.
SELECT tgname, tgfoid::regproc AS function, tgtype, tgqual IS NULL AS unconditional
  FROM pg_trigger WHERE tgrelid = 'app.vault'::regclass AND tgname LIKE 'steward%' ORDER BY 1;
