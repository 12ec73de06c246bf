-- A record is always filed under the tenant its row belongs to: a role granted two tenants that
-- switches tenant in the middle of its own statement (RETURNING runs before the change log's
-- AFTER trigger) does not move the record into the other tenant's audit and outbox.
\set SHOW_CONTEXT never
CREATE TABLE app.tickets (id int PRIMARY KEY, tenant_id uuid NOT NULL, title text);
GRANT SELECT, INSERT, UPDATE, DELETE ON app.tickets TO PUBLIC;
SELECT steward.govern('app.tickets');
\c - multi_app
BEGIN;
SELECT steward.enter_tenant('00000000-0000-4000-8000-00000000000a') IS NOT NULL AS entered_acme;
INSERT INTO app.tickets (id, title) VALUES (1, 'acme ticket')
RETURNING id, steward.enter_tenant('00000000-0000-4000-8000-00000000000b') IS NOT NULL AS switched;
COMMIT;
\c - postgres
SELECT t.slug AS row_tenant, s.slug AS record_tenant, c.action, c.event_type
  FROM app.tickets k
  JOIN steward.change_log c ON c.table_name = 'app.tickets' AND c.row_key = jsonb_build_object('id', k.id)
  JOIN steward.tenants t ON t.tenant_id = k.tenant_id
  JOIN steward.tenants s ON s.tenant_id = c.tenant_id;
