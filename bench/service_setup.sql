-- The web API's benchmark: one governed, exposed table read and written through
-- steward-service serve, and the same transactions sent directly. Run after the other setups
-- (same database). The service's role bench_api is an ordinary role: tokens let it in.
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bench_api') THEN
    CREATE ROLE bench_api LOGIN;
  END IF;
END $$;

CREATE TABLE bench.api_items (
    id        bigint NOT NULL,
    tenant_id uuid NOT NULL,
    name      text NOT NULL,
    category  int NOT NULL,
    qty       int NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX ON bench.api_items (tenant_id, category, id);
GRANT USAGE ON SCHEMA bench TO bench_api;
GRANT SELECT, INSERT, UPDATE, DELETE ON bench.api_items TO bench_api;
SELECT steward.govern('bench.api_items');
SELECT steward.expose('bench.api_items', 'items');

-- 10,000 items in the benchmark's tenant, in 50 categories (200 items each: a 20-row page of
-- one category is a filtered page of a larger set).
BEGIN;
SELECT steward.enter_tenant('00000000-0000-4000-8000-000000000001', 'bench');
INSERT INTO bench.api_items (id, name, category)
SELECT g, 'item ' || g, g % 50 FROM generate_series(1, 10000) g;
COMMIT;
ANALYZE bench.api_items;
