-- Write benchmarks: the same item written four ways. Run after tenant_page_setup.sql (same
-- database, same tenant role bench_tenant in tenant t001).

-- (a) a plain table.
CREATE TABLE bench.w_plain (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id uuid NOT NULL,
    title     text NOT NULL,
    qty       int NOT NULL
);
-- Every variant has the index a multi-tenant table needs: tenant roles' scans only get indexes
-- that lead with the tenant column (ADR 009), and LIKE ... INCLUDING ALL copies it.
CREATE INDEX ON bench.w_plain (tenant_id, id);
-- (b) the floor: the same table and one log record of the same shape as steward's (the new row
--     whole, of the old one the values the update replaced), written by one plain SQL statement.
CREATE TABLE bench.w_floor (LIKE bench.w_plain INCLUDING ALL);
CREATE TABLE bench.w_floor_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id   uuid NOT NULL,
    txid        xid8 NOT NULL DEFAULT pg_current_xact_id(),
    occurred_at timestamptz NOT NULL DEFAULT now(),
    actor       text,
    table_name  text,
    row_key     jsonb,
    action      text NOT NULL,
    old_values  jsonb,              -- as steward's record: what the change replaced
    new_row     jsonb,
    changed     jsonb,
    event_id    uuid NOT NULL DEFAULT gen_random_uuid(),
    event_type  text
);
-- (c) a governed table: tenant isolation, versions, one change-log record per change.
CREATE TABLE bench.w_governed (LIKE bench.w_plain INCLUDING ALL);
-- (d) the way it is written by hand today: PL/pgSQL triggers writing an audit row and an
--     outbox row.
CREATE TABLE bench.w_handwritten (LIKE bench.w_plain INCLUDING ALL);
CREATE TABLE bench.hw_audit (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id   uuid NOT NULL,
    occurred_at timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL DEFAULT current_user,
    table_name  text NOT NULL,
    row_key     jsonb NOT NULL,
    action      text NOT NULL,
    old_row     jsonb,
    new_row     jsonb
);
CREATE TABLE bench.hw_outbox (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id     uuid NOT NULL DEFAULT gen_random_uuid(),
    tenant_id    uuid NOT NULL,
    event_type   text NOT NULL,
    aggregate_id text NOT NULL,
    payload      jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE FUNCTION bench.hw_audit_and_outbox() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    r record := CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
BEGIN
    INSERT INTO bench.hw_audit (tenant_id, table_name, row_key, action, old_row, new_row)
    VALUES (r.tenant_id, TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, jsonb_build_object('id', r.id), TG_OP,
            CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END,
            CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END);
    INSERT INTO bench.hw_outbox (tenant_id, event_type, aggregate_id, payload)
    VALUES (r.tenant_id, TG_TABLE_NAME || '.' || lower(TG_OP), r.id::text, to_jsonb(r));
    RETURN NULL;
END $$;
CREATE TRIGGER hw_audit_and_outbox AFTER INSERT OR UPDATE OR DELETE ON bench.w_handwritten
    FOR EACH ROW EXECUTE FUNCTION bench.hw_audit_and_outbox();

-- 100,000 rows each to update by key, all in bench_tenant's tenant (loaded before governing).
INSERT INTO bench.w_plain (tenant_id, title, qty)
SELECT '00000000-0000-4000-8000-000000000001', 'item ' || g, 0 FROM generate_series(1, 100000) g;
INSERT INTO bench.w_floor (tenant_id, title, qty) SELECT tenant_id, title, qty FROM bench.w_plain ORDER BY id;
INSERT INTO bench.w_governed (tenant_id, title, qty) SELECT tenant_id, title, qty FROM bench.w_plain ORDER BY id;
ALTER TABLE bench.w_handwritten DISABLE TRIGGER hw_audit_and_outbox;
INSERT INTO bench.w_handwritten (tenant_id, title, qty) SELECT tenant_id, title, qty FROM bench.w_plain ORDER BY id;
ALTER TABLE bench.w_handwritten ENABLE TRIGGER hw_audit_and_outbox;
SELECT steward.govern('bench.w_governed');

GRANT SELECT, INSERT, UPDATE ON bench.w_plain, bench.w_floor, bench.w_governed, bench.w_handwritten TO bench_tenant;
GRANT INSERT ON bench.w_floor_log, bench.hw_audit, bench.hw_outbox TO bench_tenant;
VACUUM ANALYZE bench.w_plain, bench.w_floor, bench.w_governed, bench.w_handwritten;
