-- The demo's walkthrough: run by `cargo xtask demo`, one role at a time.
\set SHOW_CONTEXT never
\pset footer off

\echo '\n### 1. acme_analyst connects with plain psql: it sees Acme''s invoices only'
\c - acme_analyst
SELECT steward.current_tenant() AS my_tenant, session_user;
SELECT id, customer, amount FROM app.invoices ORDER BY id;

\echo '\n### 2. globex_analyst, same table, same query: Globex''s invoices only'
\c - globex_analyst
SELECT id, customer, amount FROM app.invoices ORDER BY id;

\echo '\n### 3. acme_analyst tries to reach Globex'
\c - acme_analyst
\echo '--- read a Globex invoice by id: no rows'
SELECT id, customer FROM app.invoices WHERE id = 4;
\echo '--- update it: nothing to update'
UPDATE app.invoices SET amount = 0 WHERE id = 4 RETURNING id;
\echo '--- plant a row in Globex: ST403'
INSERT INTO app.invoices (tenant_id, customer, amount) VALUES ('0193a4d2-0000-7000-8000-0000000000b1', 'planted', 1);
\echo '    SQLSTATE' :LAST_ERROR_SQLSTATE
\echo '--- enter Globex: ST002'
SELECT steward.enter_tenant('0193a4d2-0000-7000-8000-0000000000b1');
\echo '    SQLSTATE' :LAST_ERROR_SQLSTATE
\echo '--- forge the context with a setting: refused'
SET steward.tenant_id = '0193a4d2-0000-7000-8000-0000000000b1';
\echo '    SQLSTATE' :LAST_ERROR_SQLSTATE
\echo '--- empty the whole table (it holds the TRUNCATE privilege): ST403'
TRUNCATE app.invoices;
\echo '    SQLSTATE' :LAST_ERROR_SQLSTATE

\echo '\n### 4. the service role has no tenant until it enters one: ST001, never all rows'
\c - api_service
SELECT count(*) FROM app.invoices;
\echo '    SQLSTATE' :LAST_ERROR_SQLSTATE
BEGIN;
SELECT steward.enter_tenant('0193a4d2-0000-7000-8000-0000000000b1', 'hank@globex.example');
SELECT count(*) AS globex_invoices, steward.current_actor() FROM app.invoices;
COMMIT;
\echo '--- the next transaction on the same connection starts with no tenant again'
SELECT count(*) FROM app.invoices;
\echo '    SQLSTATE' :LAST_ERROR_SQLSTATE

\echo '\n### 5. optimistic versions: a stale write fails instead of overwriting'
\c - acme_analyst
SELECT id, customer, amount, version FROM app.invoices WHERE id = 1;
UPDATE app.invoices SET amount = 1300.00, version = 1 WHERE id = 1 RETURNING id, amount, version;
\echo '--- a second writer that also read version 1: ST409'
UPDATE app.invoices SET amount = 9.99, version = 1 WHERE id = 1;
\echo '    SQLSTATE' :LAST_ERROR_SQLSTATE

\echo '\n### 6. the audit trail: who, what, when and why'
\c - api_service
BEGIN;
SELECT steward.enter_tenant('0193a4d2-0000-7000-8000-0000000000a1', 'wile.e@acme.example');
SELECT steward.annotate('TICKET-17: customer renamed', 'req-0042');
UPDATE app.invoices SET customer = 'Road Runner Holdings' WHERE id = 1;
COMMIT;
\c - acme_analyst
SELECT action, actor, reason, request_id, changed FROM steward.history('app.invoices', '{"id": 1}');
\echo '--- nobody can rewrite it, not even a superuser with plain SQL: ST403'
\c - postgres
UPDATE steward.change_log SET actor = 'someone else';
\echo '    SQLSTATE' :LAST_ERROR_SQLSTATE
\echo '--- seal the records into per-tenant hash chains and verify them'
SELECT steward.seal_audit() AS sealed;
SELECT tenant_id, sealed, ok FROM steward.verify_audit() ORDER BY tenant_id;

\echo '\n### 7. the outbox: the same records as events, for any number of named consumers'
\c - api_service
SELECT steward.create_consumer('demo-relay', 'earliest');
SELECT id, tenant_id, event_type, aggregate_id, headers ->> 'actor' AS actor
  FROM steward.poll('demo-relay', 5);
\echo '--- a domain event, validated against the schema a DBA registered: an invalid one is ST422'
\c - postgres
SELECT steward.register_event_type('invoice.paid', 1,
  '{"type": "object", "required": ["amount"], "properties": {"amount": {"type": "number", "minimum": 0}}}');
\c - acme_analyst
SELECT steward.emit('invoice.paid', 'invoice', '1', '{"amount": -5}');
\echo '    SQLSTATE' :LAST_ERROR_SQLSTATE
SELECT steward.emit('invoice.paid', 'invoice', '1', '{"amount": 1300.00}') IS NOT NULL AS emitted;
\echo '--- ack moves the consumer; lag shows what is left (a long transaction would hold events back)'
\c - api_service
SELECT steward.ack('demo-relay', (SELECT max(id) FROM steward.poll('demo-relay', 5)));
SELECT consumer, behind FROM steward.consumer_lag;

\echo '\n### 8. nobody weakens a governed table with DDL, not even a superuser: ST403'
\c - postgres
ALTER TABLE app.invoices NO FORCE ROW LEVEL SECURITY;
\echo '    SQLSTATE' :LAST_ERROR_SQLSTATE
DROP POLICY steward_select ON app.invoices;
\echo '    SQLSTATE' :LAST_ERROR_SQLSTATE
\echo '--- only under steward.break_glass(reason), by a member of steward_breakglass, recorded first'
