-- Benchmark data: 100 tenants, 1,000,000 rows, one governed table and an ungoverned copy.
CREATE EXTENSION steward;
INSERT INTO steward.tenants (tenant_id, slug, display_name)
SELECT ('00000000-0000-4000-8000-' || lpad(to_hex(n), 12, '0'))::uuid, 't' || lpad(n::text, 3, '0'), 'Tenant ' || n
  FROM generate_series(1, 100) n;

DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bench_tenant') THEN
    CREATE ROLE bench_tenant LOGIN;
  END IF;
END $$;
-- One grant: the role is in tenant t001 from its first statement, as a BI tool would be.
SELECT steward.grant_tenant('bench_tenant', '00000000-0000-4000-8000-000000000001');

CREATE SCHEMA bench;
CREATE TABLE bench.items_governed (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id  uuid NOT NULL,
    title      text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE bench.items_plain (LIKE bench.items_governed INCLUDING ALL);
-- Rows of one tenant are spread over the table, as in a table filled over time.
INSERT INTO bench.items_governed (tenant_id, title)
SELECT ('00000000-0000-4000-8000-' || lpad(to_hex(1 + (g % 100)), 12, '0'))::uuid, 'item ' || g
  FROM generate_series(1, 1000000) g;
INSERT INTO bench.items_plain (tenant_id, title)
SELECT tenant_id, title FROM bench.items_governed ORDER BY id;
CREATE INDEX ON bench.items_governed (tenant_id, id);
CREATE INDEX ON bench.items_plain (tenant_id, id);
GRANT USAGE ON SCHEMA bench TO bench_tenant;
GRANT SELECT ON bench.items_governed, bench.items_plain TO bench_tenant;
SELECT steward.govern('bench.items_governed');
VACUUM ANALYZE bench.items_governed;
VACUUM ANALYZE bench.items_plain;
