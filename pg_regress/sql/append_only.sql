-- Plain SQL of any role, superuser included, under any session_replication_role, cannot add,
-- change or remove change-log records, seals, the sealing state or tombstones. (A superuser's
-- DDL, such as disabling the guard, is outside plain SQL: sealing.sql shows what the chain and
-- the heads kept outside still detect then.)
-- In a database of this file's own, copied from the shared fixture (setup.sql): nothing any
-- other file did is seen here, and this file runs alone with `cargo xtask test pg_regress append_only`.
\c postgres
CREATE DATABASE regress_append_only TEMPLATE steward_regress;
\c regress_append_only
\set SHOW_CONTEXT never
SELECT steward.seal_audit() >= 0 AS sealed;
SELECT count(*) AS records FROM steward.change_log \gset
SELECT count(*) AS seals FROM steward.audit_seals \gset
SELECT horizon AS horizon FROM steward.seal_state \gset
-- Replica mode skips ordinary triggers; steward's guards fire ALWAYS.
SET session_replication_role = replica;
DELETE FROM steward.change_log;
\echo :LAST_ERROR_SQLSTATE
TRUNCATE steward.change_log;
\echo :LAST_ERROR_SQLSTATE
UPDATE steward.change_log SET actor = 'mallory';
\echo :LAST_ERROR_SQLSTATE
INSERT INTO steward.change_log (tenant_id, txid, actor, action, event_id, audited, evented)
VALUES ('00000000-0000-4000-8000-00000000000a', '3', 'mallory', 'INSERT', gen_random_uuid(), true, false);
\echo :LAST_ERROR_SQLSTATE
DELETE FROM steward.audit_seals;
\echo :LAST_ERROR_SQLSTATE
TRUNCATE steward.audit_seals;
\echo :LAST_ERROR_SQLSTATE
UPDATE steward.audit_seals SET hash = '\x00';
\echo :LAST_ERROR_SQLSTATE
INSERT INTO steward.audit_seals (record_id, tenant_id, seq, payload_digest, hash, sealed_xmin)
VALUES (-1, '00000000-0000-4000-8000-00000000000a', 1000000, '', '', '1');
\echo :LAST_ERROR_SQLSTATE
-- The sealing state: moving the horizon would hide records from history() and let an unsealed
-- record be rewritten before it is sealed.
UPDATE steward.seal_state SET horizon = '0';
\echo :LAST_ERROR_SQLSTATE
DELETE FROM steward.seal_state;
\echo :LAST_ERROR_SQLSTATE
TRUNCATE steward.seal_state;
\echo :LAST_ERROR_SQLSTATE
INSERT INTO steward.seal_state (one, horizon) VALUES (false, '0');
\echo :LAST_ERROR_SQLSTATE
TRUNCATE steward.outbox_tombstones;
\echo :LAST_ERROR_SQLSTATE
-- The transaction-id offset: a smaller one would sort new records before old ones.
UPDATE steward.xid_base SET xid_offset = 0, system_identifier = 'elsewhere';
\echo :LAST_ERROR_SQLSTATE
DELETE FROM steward.xid_base;
\echo :LAST_ERROR_SQLSTATE
-- The log's ids must be drawn in write order (the outbox's order, ADR 004): no sequence cache,
-- for the superuser neither.
ALTER SEQUENCE steward.change_log_id_seq CACHE 20;
\echo :LAST_ERROR_SQLSTATE
SELECT seqcache FROM pg_sequence WHERE seqrelid = 'steward.change_log_id_seq'::regclass;
-- Aliases decide whose history a restored record is: steward's alone to write.
INSERT INTO steward.rel_aliases VALUES ('app.projects'::regclass::oid, 'app.tasks'::regclass::oid, NULL);
\echo :LAST_ERROR_SQLSTATE
TRUNCATE steward.rel_aliases;
\echo :LAST_ERROR_SQLSTATE
RESET session_replication_role;
-- COPY, the way pg_restore loads a dump, is let through only into an empty table (a restore):
-- into a log that holds records it is refused like INSERT, for a superuser too.
COPY steward.change_log (tenant_id, txid, actor, action, event_id, audited, evented) FROM stdin;
00000000-0000-4000-8000-00000000000a	3	mallory	INSERT	00000000-0000-4000-8000-000000000001	t	f
\.
\echo :LAST_ERROR_SQLSTATE
COPY steward.audit_seals (record_id, tenant_id, seq, payload_digest, hash, sealed_xmin, txid) FROM stdin;
-1	00000000-0000-4000-8000-00000000000a	1000000	\\x	\\x	1	1
\.
\echo :LAST_ERROR_SQLSTATE
COPY steward.seal_state (one, horizon) FROM stdin;
t	0
\.
\echo :LAST_ERROR_SQLSTATE
-- Once steward has written in a database, no table of its is loaded from outside again, not
-- even an empty one.
SELECT count(*) AS tombstones FROM steward.outbox_tombstones;
COPY steward.outbox_tombstones (record_id, tenant_id, record_digest) FROM stdin;
-1	00000000-0000-4000-8000-00000000000a	\\x
\.
\echo :LAST_ERROR_SQLSTATE
-- And never for a role that is not a superuser (app_owner cannot write the log at all).
SET ROLE app_owner;
COPY steward.outbox_tombstones (record_id, tenant_id, record_digest) FROM stdin;
-1	00000000-0000-4000-8000-00000000000a	\\x
\.
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
-- steward's own internals, called directly, do not open the guards: the witness writer and the
-- sealing body write only inside steward.seal_audit().
SELECT steward._internal_witness('00000000-0000-4000-8000-00000000000a', 1, '\x00');
\echo :LAST_ERROR_SQLSTATE
\c - acme_app
INSERT INTO app.projects (name) VALUES ('acme: unsealed for now');
\c - postgres
SELECT steward._seal_audit();
\echo :LAST_ERROR_SQLSTATE
-- Nothing changed.
SELECT count(*) = :records + 1 AS records_kept FROM steward.change_log;
SELECT count(*) = :seals AS seals_kept FROM steward.audit_seals;
SELECT horizon = :'horizon' AS horizon_kept FROM steward.seal_state;
SELECT steward.seal_audit() > 0 AS sealing_still_works;
SELECT bool_and(ok) AS all_ok FROM steward.verify_audit();

-- Erasure stays in the caller's tenant, even where the primary key does not include the tenant
-- column: acme's row 7 was deleted, then globex created its own row 7; both have records under
-- the key {"id": 7}.
CREATE TABLE app.people (id int PRIMARY KEY, tenant_id uuid NOT NULL, name text);
GRANT SELECT, INSERT, UPDATE, DELETE ON app.people TO PUBLIC;
SELECT steward.govern('app.people');
\c - acme_app
INSERT INTO app.people (id, name) VALUES (7, 'Wile E. Coyote');
DELETE FROM app.people WHERE id = 7;
\c - globex_app
INSERT INTO app.people (id, name) VALUES (7, 'Hank Scorpio');
\c - postgres
SELECT steward.seal_audit() > 0 AS sealed;
BEGIN;
SELECT steward.enter_tenant('00000000-0000-4000-8000-00000000000a', 'dpo@acme.example') IS NOT NULL AS entered;
SELECT steward.erase('app.people', '{"id": 7}', 'GDPR request acme-7') AS erased;
COMMIT;
SELECT t.slug, c.action, c.new_row ->> 'name' AS name, c.old_values ->> 'name' AS old_name,
       c.erased_at IS NOT NULL AS erased
  FROM steward.change_log c JOIN steward.tenants t USING (tenant_id)
 WHERE c.table_name = 'app.people' ORDER BY c.id;
SELECT steward.seal_audit() > 0 AS sealed_the_erasure;
SELECT bool_and(ok) AS all_ok FROM steward.verify_audit();

-- A database steward has never written in takes a superuser's COPY into its empty tables (that is
-- how pg_restore loads a dump). Seeding the sealing state there with a far horizon hides nothing:
-- steward's first write sets its transaction ids above every id it finds (the horizon included),
-- so the new record is sealed, verified and found. (A record below the sealing horizon that is
-- not sealed would make verify_audit() not ok.)
\c postgres
DROP DATABASE IF EXISTS steward_seeded;
CREATE DATABASE steward_seeded;
\c steward_seeded
\set SHOW_CONTEXT never
CREATE EXTENSION steward;
COPY steward.seal_state (one, horizon) FROM stdin;
t	100000000000
\.
-- The aliases are never loaded (a restore rebuilds them), not even then.
COPY steward.rel_aliases (old_rel, rel) FROM stdin;
1	2
\.
\echo :LAST_ERROR_SQLSTATE
INSERT INTO steward.tenants (tenant_id, slug, display_name)
VALUES ('00000000-0000-4000-8000-00000000000a', 'acme', 'Acme Corp');
CREATE TABLE public.notes (id int PRIMARY KEY, tenant_id uuid NOT NULL, body text);
SELECT steward.govern('public.notes');
BEGIN;
SELECT steward.enter_tenant('00000000-0000-4000-8000-00000000000a') IS NOT NULL AS entered;
INSERT INTO public.notes (id, body) VALUES (1, 'hidden below a seeded horizon?');
COMMIT;
SELECT steward.seal_audit() > 0 AS sealed;
SELECT ok, sealed > 0 AS has_seals FROM steward.verify_audit();
BEGIN;
SELECT steward.enter_tenant('00000000-0000-4000-8000-00000000000a') IS NOT NULL AS entered;
SELECT action FROM steward.history('public.notes', '{"id": 1}');
COMMIT;
-- After that first write, the window is shut.
COPY steward.outbox_tombstones (record_id, tenant_id, record_digest) FROM stdin;
-1	00000000-0000-4000-8000-00000000000a	\\x
\.
\echo :LAST_ERROR_SQLSTATE
-- A copy made with CREATE DATABASE ... TEMPLATE is the same cluster's, with the same ids and
-- tables: steward has written in it (its template did), and its empty tables stay shut.
\c postgres
CREATE DATABASE steward_copy TEMPLATE steward_seeded;
\c steward_copy
\set SHOW_CONTEXT never
COPY steward.outbox_tombstones (record_id, tenant_id, record_digest) FROM stdin;
-1	00000000-0000-4000-8000-00000000000a	\\x
\.
\echo :LAST_ERROR_SQLSTATE
\c postgres
DROP DATABASE steward_copy;
DROP DATABASE steward_seeded;
