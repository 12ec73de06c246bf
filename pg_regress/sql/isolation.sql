-- A tenant role against another tenant's rows: reads see nothing, writes change nothing or
-- fail with ST403, and nothing committed is lost.
-- In a database of this file's own, copied from the shared fixture (setup.sql): nothing any
-- other file did is seen here, and this file runs alone with `cargo xtask test pg_regress isolation`.
\c postgres
CREATE DATABASE regress_isolation TEMPLATE steward_regress;
\c regress_isolation
\set SHOW_CONTEXT never
\c - acme_app

-- Reading: only acme's rows, whatever the query asks for.
SELECT id, name FROM app.projects ORDER BY id;
SELECT id, name FROM app.projects WHERE tenant_id = '00000000-0000-4000-8000-00000000000b';
SELECT id, name FROM app.projects WHERE id = 3;
SELECT count(*) FROM app.projects p1 JOIN app.projects p2 USING (tenant_id);
WITH everything AS (SELECT * FROM app.projects) SELECT count(*) FROM everything;

-- Updating and deleting another tenant's row: zero rows touched.
UPDATE app.projects SET name = 'pwned' WHERE id = 3 RETURNING id;
DELETE FROM app.projects WHERE id = 3 RETURNING id;
DELETE FROM app.projects WHERE tenant_id = '00000000-0000-4000-8000-00000000000b' RETURNING id;

-- Inserting into another tenant: ST403.
INSERT INTO app.projects (tenant_id, name) VALUES ('00000000-0000-4000-8000-00000000000b', 'planted by acme');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO app.projects (tenant_id, name) SELECT '00000000-0000-4000-8000-00000000000b', 'planted in bulk' FROM generate_series(1, 3);
\echo :LAST_ERROR_SQLSTATE

-- Inserting without naming the tenant: steward fills it in.
INSERT INTO app.projects (name) VALUES ('acme: tornado seeds') RETURNING tenant_id, name;
-- Naming one's own tenant is fine.
INSERT INTO app.projects (tenant_id, name) VALUES ('00000000-0000-4000-8000-00000000000a', 'acme: earthquake pills') RETURNING tenant_id, name;

-- Moving one's own row to another tenant: ST403.
UPDATE app.projects SET tenant_id = '00000000-0000-4000-8000-00000000000b' WHERE id = 1;
\echo :LAST_ERROR_SQLSTATE
UPDATE app.projects SET tenant_id = '00000000-0000-4000-8000-00000000000b';
\echo :LAST_ERROR_SQLSTATE

-- TRUNCATE, even with the privilege: ST403.
TRUNCATE app.projects;
\echo :LAST_ERROR_SQLSTATE

-- Turning row security off for the session: refused by Postgres (42501).
SET row_security = off;
SELECT count(*) FROM app.projects;
\echo :LAST_ERROR_SQLSTATE
RESET row_security;

-- A leaky function in the WHERE clause runs after the tenant filter: it never sees globex's rows.
CREATE FUNCTION pg_temp.peek(t text) RETURNS boolean LANGUAGE plpgsql COST 0.0000001 AS
$$ BEGIN RAISE NOTICE 'peeked at: %', t; RETURN true; END $$;
SELECT count(*) FROM app.projects WHERE pg_temp.peek(name);
DROP FUNCTION pg_temp.peek(text);

-- COPY out applies the policies; COPY in is refused by Postgres for RLS tables (0A000).
COPY app.projects (id, name) TO STDOUT;
COPY app.projects (name) FROM STDIN;
planted through copy
\.
\echo :LAST_ERROR_SQLSTATE

-- Column statistics would leak other tenants' values: pg_stats hides RLS tables.
\c - postgres
ANALYZE app.projects;
\c - acme_app
SELECT count(*) AS stats_rows_visible FROM pg_stats WHERE schemaname = 'app' AND tablename = 'projects';

-- An upsert that collides with another tenant's key cannot update that row (42501).
\c - postgres
CREATE TABLE app.settings (key text PRIMARY KEY, tenant_id uuid NOT NULL, value text NOT NULL);
GRANT SELECT, INSERT, UPDATE ON app.settings TO PUBLIC;
SELECT steward.govern('app.settings');
\c - globex_app
INSERT INTO app.settings (key, value) VALUES ('theme', 'globex dark');
\c - acme_app
INSERT INTO app.settings (key, value) VALUES ('theme', 'acme light')
    ON CONFLICT (key) DO UPDATE SET value = excluded.value;
\echo :LAST_ERROR_SQLSTATE
\c - postgres
SELECT key, tenant_id, value FROM app.settings;
DROP TABLE app.settings;

-- The other tenant sees its own row, untouched, and none of acme's.
\c - globex_app
SELECT id, name FROM app.projects ORDER BY id;

-- The table's owner is subject to the policies too (FORCE ROW LEVEL SECURITY).
\c - app_owner
SELECT count(*) FROM app.projects;
\echo :LAST_ERROR_SQLSTATE
TRUNCATE app.projects;
\echo :LAST_ERROR_SQLSTATE

-- Nothing was lost or moved.
\c - postgres
SELECT id, tenant_id, name FROM app.projects ORDER BY id;
