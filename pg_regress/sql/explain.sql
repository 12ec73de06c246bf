-- A tenant learns nothing of another tenant's values or counts through EXPLAIN, or through any
-- other trace a scan leaves (ADR 009). The attack: globex's customer "Zed Zimmerman", looked
-- for by acme with leakproof text comparisons through an index that does not lead with the
-- tenant column, and with steward's own row_hash index; both watched through EXPLAIN ANALYZE
-- and the per-table counters of pg_stat_xact_user_tables.
-- In a database of this file's own, copied from the shared fixture (setup.sql): nothing any
-- other file did is seen here, and this file runs alone with `cargo xtask test pg_regress explain`.
\c postgres
CREATE DATABASE regress_explain TEMPLATE steward_regress;
\c regress_explain
\set SHOW_CONTEXT never
SET ROLE app_owner;
CREATE TABLE app.customers (
    id        bigint PRIMARY KEY,             -- no tenant column in the key: govern adds an index
    tenant_id uuid NOT NULL,
    name      text NOT NULL,
    email     text NOT NULL
);
CREATE INDEX customers_name ON app.customers (name);          -- not tenant-leading
CREATE INDEX customers_email ON app.customers USING hash (email);
CREATE INDEX customers_lower ON app.customers (lower(name));  -- an expression
CREATE INDEX customers_tenant_name ON app.customers (tenant_id, name);
GRANT SELECT, INSERT, UPDATE, DELETE ON app.customers TO PUBLIC;
-- Loaded before governing: 200 rows of acme, 1,800 of globex (customer 7 among them).
INSERT INTO app.customers (id, tenant_id, name, email)
SELECT g, CASE WHEN g % 10 = 0 THEN '00000000-0000-4000-8000-00000000000a'::uuid
                              ELSE '00000000-0000-4000-8000-00000000000b'::uuid END,
       CASE WHEN g = 7 THEN 'Zed Zimmerman' ELSE 'customer ' || g END, 'c' || g || '@example.com'
  FROM generate_series(1, 2000) g;
RESET ROLE;
-- A warning for each index tenant roles' scans cannot use; an index on (tenant_id, id) is made
-- for lookups by key.
SELECT steward.govern('app.customers');
SELECT indexrelid::regclass AS index, pg_get_indexdef(indexrelid) ~ '\(tenant_id, id\)' AS tenant_key
  FROM pg_index WHERE indrelid = 'app.customers'::regclass ORDER BY 1::text;
-- govern again: the index is there, none is added.
SELECT steward.govern('app.customers');
SELECT count(*) AS indexes FROM pg_index WHERE indrelid = 'app.customers'::regclass;
ANALYZE app.customers;
-- Each tenant changes its own customer once: records of both in the log.
\c - globex_app
UPDATE app.customers SET email = 'zed@globex.example' WHERE id = 7;
\c - acme_app
UPDATE app.customers SET email = 'ten@acme.example' WHERE id = 10;


-- A fresh session of the tenant role: steward is not loaded yet when the first plan is made.
\c - acme_app
SET enable_seqscan = off;   -- the attacker asks for every index it can get
SET enable_bitmapscan = off;
-- Before: Index Scan using customers_name, "Rows Removed by Filter: 1" (globex's row). Now
-- the only indexes it may use start inside acme's entries (a B-tree leading with tenant_id).
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
SELECT id FROM app.customers WHERE name = 'Zed Zimmerman';
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
SELECT id FROM app.customers WHERE name >= 'Zed' AND name < 'Zee';
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
SELECT id FROM app.customers WHERE lower(name) = 'zed zimmerman';
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
SELECT id FROM app.customers WHERE email = 'c7@example.com';
-- A lookup by key goes through (tenant_id, id): globex's id 7 is not visited.
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
SELECT name FROM app.customers WHERE id = 7;
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
SELECT id FROM app.customers ORDER BY name LIMIT 3;
-- Bitmap scans and UPDATE/DELETE plans alike.
SET enable_indexscan = off;
SET enable_bitmapscan = on;
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
SELECT id FROM app.customers WHERE name = 'Zed Zimmerman' OR id = 7;
RESET enable_indexscan;
BEGIN;
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
UPDATE app.customers SET email = email WHERE name = 'Zed Zimmerman';
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
DELETE FROM app.customers WHERE id = 7;
ROLLBACK;
-- Prepared, then run again: the cached plan is acme_app's and stays within the rules.
PREPARE by_name(text) AS SELECT id FROM app.customers WHERE name = $1;
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) EXECUTE by_name('Zed Zimmerman');
-- The same traces outside EXPLAIN: the index and heap tuples a fresh session fetched count
-- only acme's own entries (here: none).
\c - acme_app
BEGIN;
SELECT count(*) FROM app.customers WHERE name = 'Zed Zimmerman';
SELECT count(*) FROM app.customers WHERE id = 7;
SELECT idx_scan, idx_tup_fetch FROM pg_stat_xact_user_tables WHERE relid = 'app.customers'::regclass;
COMMIT;
-- Through a view owned by a tenant role, the view owner's policy applies, and so does the rule.
RESET enable_seqscan;
RESET enable_bitmapscan;
\c - postgres
SET ROLE app_owner;
CREATE VIEW app.customer_names AS SELECT id, name FROM app.customers;
GRANT SELECT ON app.customer_names TO acme_app;
RESET ROLE;
\c - acme_app
SET enable_seqscan = off;
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
SELECT id FROM app.customer_names WHERE name = 'Zed Zimmerman';
RESET enable_seqscan;

-- steward's own tables: globex's record of customer 7 is not found by acme's row_hash, neither
-- in the seals nor in the log, and history() visits none of globex's entries.
\c - postgres
SELECT steward.seal_audit() > 0 AS sealed;
\c - acme_app
SET enable_seqscan = off;
SET enable_bitmapscan = off;  -- the plan shape stays the same whatever the table's statistics
SET plan_cache_mode = force_generic_plan;  -- shows $1, not the hash
PREPARE seal_probe(bigint) AS SELECT record_id FROM steward.audit_seals WHERE row_hash = $1;
SELECT steward._internal_row_hash('app.customers'::regclass, '{"id": 7}') AS globex_hash \gset
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) EXECUTE seal_probe(:globex_hash);
PREPARE log_probe(bigint) AS
SELECT id FROM steward.change_log WHERE id BETWEEN 1 AND 100000 AND row_hash = $1;
EXPLAIN (COSTS OFF) EXECUTE log_probe(:globex_hash);
RESET enable_bitmapscan;
RESET enable_seqscan;
\c - acme_app
BEGIN;
SELECT count(*) FROM steward.history('app.customers', '{"id": 7}');
SELECT count(*) FROM steward.history('app.customers', '{"id": 10}');
SELECT relname, idx_tup_fetch FROM pg_stat_xact_all_tables
 WHERE relid IN ('steward.change_log'::regclass, 'steward.audit_seals'::regclass) ORDER BY 1;
COMMIT;

-- A superuser (row-level security does not apply) plans as usual.
\c - postgres
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM app.customers WHERE name = 'Zed Zimmerman';
RESET enable_seqscan;
