-- The context cannot change while a statement that uses it runs, and a record is always filed
-- under the tenant its row belongs to. A role granted two tenants tries to switch inside its own
-- statement (RETURNING runs before the change log's AFTER trigger; a scan's policy has read the
-- tenant once): refused with ST403, and nothing is filed under the other tenant.
-- In a database of this file's own, copied from the shared fixture (setup.sql): nothing any
-- other file did is seen here, and this file runs alone with `cargo xtask test pg_regress context_switch`.
\c postgres
CREATE DATABASE regress_context_switch TEMPLATE steward_regress;
\c regress_context_switch
\set SHOW_CONTEXT never
CREATE TABLE app.tickets (id int PRIMARY KEY, tenant_id uuid NOT NULL, title text);
GRANT SELECT, INSERT, UPDATE, DELETE ON app.tickets TO PUBLIC;
SELECT steward.govern('app.tickets');
-- A trusted role with one grant is in that tenant from its first statement, before anything has
-- loaded steward: that first statement is held to the rule too.
CREATE ROLE ticket_hopper LOGIN;
SELECT steward.trust_role('ticket_hopper');
SELECT steward.grant_tenant('ticket_hopper', '00000000-0000-4000-8000-00000000000a');
\c - ticket_hopper
INSERT INTO app.tickets (id, title) VALUES (1, 'acme ticket')
RETURNING id, steward.enter_tenant('00000000-0000-4000-8000-00000000000b') IS NOT NULL AS switched;
\echo :LAST_ERROR_SQLSTATE
\c - multi_app
BEGIN;
SELECT steward.enter_tenant('00000000-0000-4000-8000-00000000000a') IS NOT NULL AS entered_acme;
INSERT INTO app.tickets (id, title) VALUES (1, 'acme ticket')
RETURNING id, steward.enter_tenant('00000000-0000-4000-8000-00000000000b') IS NOT NULL AS switched;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
BEGIN;
SELECT steward.enter_tenant('00000000-0000-4000-8000-00000000000a') IS NOT NULL AS entered_acme;
INSERT INTO app.tickets (id, title) VALUES (1, 'acme ticket');
SAVEPOINT s;
UPDATE app.tickets SET title = 'renamed' WHERE id = 1
RETURNING id, steward.enter_tenant('00000000-0000-4000-8000-00000000000b') IS NOT NULL AS switched;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO SAVEPOINT s;
SELECT steward.enter_tenant('00000000-0000-4000-8000-00000000000b') FROM app.tickets;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO SAVEPOINT s;
-- ... from inside a function the statement calls, too.
CREATE FUNCTION pg_temp.hop() RETURNS void LANGUAGE sql AS
  $$ SELECT steward.enter_tenant('00000000-0000-4000-8000-00000000000b') $$;
SAVEPOINT s2;
SELECT pg_temp.hop() FROM app.tickets;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO SAVEPOINT s2;
-- ... or while a cursor over a governed table is open; once it is closed, the switch is fine.
DECLARE c CURSOR FOR SELECT id FROM app.tickets;
FETCH 1 FROM c;
SAVEPOINT s3;
SELECT steward.enter_tenant('00000000-0000-4000-8000-00000000000b');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO SAVEPOINT s3;
CLOSE c;
SELECT steward.enter_tenant('00000000-0000-4000-8000-00000000000b') IS NOT NULL AS switched_after_close;
ROLLBACK;
-- Between statements, switching is allowed, and each statement works in its own tenant.
BEGIN;
SELECT steward.enter_tenant('00000000-0000-4000-8000-00000000000a') IS NOT NULL AS entered_acme;
INSERT INTO app.tickets (id, title) VALUES (1, 'acme ticket');
SELECT steward.enter_tenant('00000000-0000-4000-8000-00000000000b') IS NOT NULL AS entered_globex;
INSERT INTO app.tickets (id, title) VALUES (2, 'globex ticket');
SELECT count(*) AS globex_sees FROM app.tickets;
COMMIT;
-- A read outside any statement (a PL/pgSQL expression in a DO block) holds nothing back.
BEGIN;
SELECT steward.enter_tenant('00000000-0000-4000-8000-00000000000a') IS NOT NULL AS entered_acme;
DO $$ BEGIN RAISE NOTICE 'in %', steward.current_tenant(); END $$;
SELECT steward.enter_tenant('00000000-0000-4000-8000-00000000000b') IS NOT NULL AS entered_globex;
SELECT steward.enter_tenant('00000000-0000-4000-8000-00000000000a') IS NOT NULL AS back_in_acme;
ROLLBACK;
-- A function that works through tenants one statement at a time is fine.
BEGIN;
CREATE FUNCTION pg_temp.count_in(t uuid) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
  PERFORM steward.enter_tenant(t);
  RETURN (SELECT count(*) FROM app.tickets);
END $$;
SELECT pg_temp.count_in('00000000-0000-4000-8000-00000000000a') AS acme,
       pg_temp.count_in('00000000-0000-4000-8000-00000000000b') AS globex;
ROLLBACK;
\c - postgres
SELECT t.slug AS row_tenant, s.slug AS record_tenant, c.action, c.event_type
  FROM app.tickets k
  JOIN steward.change_log c ON c.table_name = 'app.tickets' AND c.row_key = jsonb_build_object('id', k.id)
  JOIN steward.tenants t ON t.tenant_id = k.tenant_id
  JOIN steward.tenants s ON s.tenant_id = c.tenant_id
 ORDER BY c.id;
