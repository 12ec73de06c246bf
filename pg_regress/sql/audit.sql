-- The change log's audit face: one record per row change, who, what, when and why.
-- In a database of this file's own, copied from the shared fixture (setup.sql): nothing any
-- other file did is seen here, and this file runs alone with `cargo xtask test pg_regress audit`.
\c postgres
CREATE DATABASE regress_audit TEMPLATE steward_regress;
\c regress_audit
\set SHOW_CONTEXT never
-- app.tasks (governed, empty) is the shared fixture's.

\c - api_service
BEGIN;
SELECT steward.enter_tenant('00000000-0000-4000-8000-00000000000a', 'wile.e@acme.example');
SELECT steward.annotate('ADR-042: spring cleaning', 'req-7');
INSERT INTO app.tasks (id, title) VALUES (1, 'order anvil'), (2, 'paint tunnel');
UPDATE app.tasks SET done = true WHERE id = 1;
UPDATE app.tasks SET title = title WHERE id = 2;   -- changes nothing: no record
DELETE FROM app.tasks WHERE id = 2;
COMMIT;
-- A rolled-back change leaves no record.
BEGIN;
SELECT steward.enter_tenant('00000000-0000-4000-8000-00000000000a', 'wile.e@acme.example');
INSERT INTO app.tasks (id, title) VALUES (3, 'never happened');
ROLLBACK;
BEGIN;
SELECT steward.enter_tenant('00000000-0000-4000-8000-00000000000b', 'hank@globex.example');
INSERT INTO app.tasks (id, title) VALUES (100, 'globex task');
COMMIT;

-- acme's analyst reads acme's records only: who, what, why.
\c - acme_app
SELECT action, actor, reason, request_id, table_name, row_key, changed,
       old_row ->> 'done' AS old_done, new_row ->> 'done' AS new_done, new_row ->> 'version' AS new_version
  FROM steward.audit_log WHERE table_name = 'app.tasks' ORDER BY id;
-- The records of one transaction share its txid and time.
SELECT count(DISTINCT txid) AS transactions, count(DISTINCT occurred_at) AS instants
  FROM steward.audit_log WHERE table_name = 'app.tasks';
-- history(): one row's records, oldest first.
SELECT action, changed FROM steward.history('app.tasks', '{"id": 1}');
-- globex's records are not there, even by key.
SELECT count(*) FROM steward.history('app.tasks', '{"id": 100}');
SELECT count(*) FROM steward.change_log WHERE tenant_id = '00000000-0000-4000-8000-00000000000b';

-- Nobody writes the log but steward: a tenant role has no privilege (42501) ...
UPDATE steward.change_log SET actor = 'someone else';
\echo :LAST_ERROR_SQLSTATE
DELETE FROM steward.audit_log;
\echo :LAST_ERROR_SQLSTATE
INSERT INTO steward.change_log (tenant_id, action, event_id, audited, evented)
VALUES ('00000000-0000-4000-8000-00000000000a', 'INSERT', gen_random_uuid(), true, true);
\echo :LAST_ERROR_SQLSTATE
-- ... and a superuser's plain SQL is refused too (ST403).
\c - postgres
-- What an update's record stores: the new row whole and, of the old one, only the values the
-- update replaced (the audit face shows the old row whole, above). A delete keeps the old row.
SELECT action, changed, old_values, new_row IS NOT NULL AS has_new_row
  FROM steward.change_log WHERE table_name = 'app.tasks' AND tenant_id = '00000000-0000-4000-8000-00000000000a'
 ORDER BY id;
SELECT a.old_row = jsonb_build_object('id', 1, 'tenant_id', '00000000-0000-4000-8000-00000000000a',
                                      'title', 'order anvil', 'done', false, 'n', 0, 'version', 1)
       AS old_row_whole
  FROM steward.audit_log a WHERE a.table_name = 'app.tasks' AND a.action = 'UPDATE';
UPDATE steward.change_log SET actor = 'someone else' WHERE table_name = 'app.tasks';
\echo :LAST_ERROR_SQLSTATE
DELETE FROM steward.change_log WHERE table_name = 'app.tasks';
\echo :LAST_ERROR_SQLSTATE
TRUNCATE steward.change_log;
\echo :LAST_ERROR_SQLSTATE
UPDATE steward.audit_log SET reason = 'rewritten';
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS records_still_there FROM steward.change_log WHERE table_name = 'app.tasks';

-- row_as_of(): a row replayed through ten updates, checked at every instant in between.
CREATE TABLE public.marks (i int PRIMARY KEY, at timestamptz NOT NULL);
GRANT ALL ON public.marks TO acme_app;
-- acme_app is in acme without a call, so every statement below is a transaction of its own.
\c - acme_app
INSERT INTO public.marks VALUES (0, clock_timestamp());
INSERT INTO app.tasks (id, title) VALUES (5, 'replayed');
SELECT format('INSERT INTO public.marks VALUES (%s, clock_timestamp())', i),
       format('UPDATE app.tasks SET n = %s WHERE id = 5', i)
  FROM generate_series(1, 10) i \gexec
INSERT INTO public.marks VALUES (11, clock_timestamp());
-- Before the insert there was no row; at mark i the row held n = i - 1, at version i.
SELECT m.i AS instant, steward.row_as_of('app.tasks', '{"id": 5}', m.at) ->> 'n' AS n_then,
       steward.row_as_of('app.tasks', '{"id": 5}', m.at) ->> 'version' AS version_then
  FROM public.marks m ORDER BY m.i;
SELECT count(*) AS records, min(actor) AS actor FROM steward.history('app.tasks', '{"id": 5}');
\c - postgres
DROP TABLE public.marks;
