-- steward.govern: what it requires (ST400 otherwise), what it sets up, and that it works for
-- tables in any schema, with quoted mixed-case names and composite primary keys.
-- In a database of this file's own, copied from the shared fixture (setup.sql): nothing any
-- other file did is seen here, and this file runs alone with `cargo xtask test pg_regress govern`.
\c postgres
CREATE DATABASE regress_govern TEMPLATE steward_regress;
\c regress_govern
\set SHOW_CONTEXT never

-- What governing app.projects set up.
SELECT rel, tenant_column, versioned, version_required, audited, events, soft_delete
  FROM steward.governed_tables ORDER BY rel::text;
SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = 'app.projects'::regclass;
SELECT polname, polpermissive, polcmd, pg_get_expr(polqual, polrelid) AS using_expr
  FROM pg_policy WHERE polrelid = 'app.projects'::regclass ORDER BY polname;
SELECT tgname FROM pg_trigger WHERE tgrelid = 'app.projects'::regclass AND NOT tgisinternal ORDER BY tgname;

-- The tenant function runs once per statement (an InitPlan), and the tenant index is used.
\c - acme_app
SET enable_seqscan = off;
CREATE FUNCTION pg_temp.plan(q text) RETURNS SETOF text LANGUAGE plpgsql AS
$$ DECLARE l text; BEGIN FOR l IN EXECUTE 'EXPLAIN (COSTS OFF) ' || q LOOP RETURN NEXT l; END LOOP; END $$;
SELECT count(*) FILTER (WHERE line ~ 'InitPlan') AS initplans,
       count(*) FILTER (WHERE line ~ 'current_tenant') AS per_row_calls,
       bool_or(line ~ 'Index Cond: \(tenant_id = \$0\)') AS tenant_is_index_condition
  FROM pg_temp.plan('SELECT id, name FROM app.projects ORDER BY id LIMIT 10') AS line;
RESET enable_seqscan;
\c - postgres

-- Refusals: ST400, naming the table and the column.
CREATE TABLE public.no_pk (tenant_id uuid NOT NULL, v int);
SELECT steward.govern('public.no_pk');
\echo :LAST_ERROR_SQLSTATE
CREATE TABLE public.text_tenant (id int PRIMARY KEY, tenant_id text NOT NULL);
SELECT steward.govern('public.text_tenant');
\echo :LAST_ERROR_SQLSTATE
CREATE TABLE public.nullable_tenant (id int PRIMARY KEY, tenant_id uuid);
SELECT steward.govern('public.nullable_tenant');
\echo :LAST_ERROR_SQLSTATE
CREATE TABLE public.no_tenant (id int PRIMARY KEY);
SELECT steward.govern('public.no_tenant');
\echo :LAST_ERROR_SQLSTATE
SELECT steward.govern('public.no_tenant', tenant_column => 'org');
\echo :LAST_ERROR_SQLSTATE
CREATE VIEW public.a_view AS SELECT 1 AS id;
SELECT steward.govern('public.a_view');
\echo :LAST_ERROR_SQLSTATE
SELECT steward.govern('public.does_not_exist');
\echo :LAST_ERROR_SQLSTATE
SELECT steward.ungovern('public.no_tenant');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS governed_after_refusals FROM steward.governed_tables;

-- Any schema, a quoted mixed-case name, a composite primary key and another tenant column.
CREATE SCHEMA "Billing";
CREATE TABLE "Billing"."Invoice Lines" (
    "Org"   uuid NOT NULL,
    invoice int  NOT NULL,
    line    int  NOT NULL,
    amount  numeric NOT NULL,
    PRIMARY KEY ("Org", invoice, line)
);
GRANT USAGE ON SCHEMA "Billing" TO PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON "Billing"."Invoice Lines" TO PUBLIC;
SELECT steward.govern('"Billing"."Invoice Lines"', tenant_column => 'Org');
-- Governing twice is harmless, and changes the options.
SELECT steward.govern('"Billing"."Invoice Lines"', tenant_column => 'Org', soft_delete => true);
SELECT rel, tenant_column, soft_delete FROM steward.governed_tables ORDER BY rel::text;
SELECT count(*) AS policies FROM pg_policy WHERE polrelid = '"Billing"."Invoice Lines"'::regclass;

\c - acme_app
INSERT INTO "Billing"."Invoice Lines" (invoice, line, amount) VALUES (1, 1, 10), (1, 2, 5);
INSERT INTO "Billing"."Invoice Lines" ("Org", invoice, line, amount) VALUES ('00000000-0000-4000-8000-00000000000b', 1, 1, 99);
\echo :LAST_ERROR_SQLSTATE
UPDATE "Billing"."Invoice Lines" SET "Org" = '00000000-0000-4000-8000-00000000000b' WHERE line = 2;
\echo :LAST_ERROR_SQLSTATE
SELECT "Org", invoice, line, amount FROM "Billing"."Invoice Lines" ORDER BY line;
\c - globex_app
SELECT count(*) FROM "Billing"."Invoice Lines";

-- ungovern removes the policies, the triggers and the default; dropping a governed table
-- removes it from the catalog.
\c - postgres
SELECT steward.ungovern('"Billing"."Invoice Lines"');
SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = '"Billing"."Invoice Lines"'::regclass;
SELECT count(*) AS policies FROM pg_policy WHERE polrelid = '"Billing"."Invoice Lines"'::regclass;
SELECT steward.govern('"Billing"."Invoice Lines"', tenant_column => 'Org');
DROP TABLE "Billing"."Invoice Lines";
SELECT rel FROM steward.governed_tables ORDER BY rel::text;
DROP SCHEMA "Billing";
DROP TABLE public.no_pk, public.text_tenant, public.nullable_tenant, public.no_tenant;
DROP VIEW public.a_view;
