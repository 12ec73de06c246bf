-- Views and SECURITY DEFINER functions owned by a role that bypasses row-level security
-- (a superuser, or a role with BYPASSRLS) are the known hole of RLS: Postgres checks the
-- owner's privileges, and the policies never run. This file shows the hole and what closes it.
-- In a database of this file's own, copied from the shared fixture (setup.sql): nothing any
-- other file did is seen here, and this file runs alone with `cargo xtask test pg_regress definer_hole`.
\c postgres
CREATE DATABASE regress_definer_hole TEMPLATE steward_regress;
\c regress_definer_hole
\set SHOW_CONTEXT never

-- THE HOLE: a view owned by a superuser shows every tenant's rows to whoever may select it.
CREATE VIEW public.all_projects_superuser AS SELECT id, tenant_id, name FROM app.projects;
GRANT SELECT ON public.all_projects_superuser TO acme_app;
\c - acme_app
SELECT count(*) AS rows_seen_through_superuser_view FROM public.all_projects_superuser;

-- FIX 1: security_invoker views run with the caller's privileges, so the policies apply.
\c - postgres
CREATE VIEW public.projects_invoker WITH (security_invoker = true) AS
    SELECT id, tenant_id, name FROM app.projects;
GRANT SELECT ON public.projects_invoker TO acme_app;
\c - acme_app
SELECT name FROM public.projects_invoker ORDER BY id;

-- FIX 2: a view owned by an ordinary role (here the table's owner): FORCE ROW LEVEL SECURITY
-- makes the policies apply to the owner too, with the caller's tenant context.
\c - app_owner
CREATE VIEW app.projects_by_owner AS SELECT id, tenant_id, name FROM app.projects;
GRANT SELECT ON app.projects_by_owner TO acme_app, nogrant_app;
CREATE FUNCTION app.project_names() RETURNS SETOF text
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS
$$ SELECT name FROM app.projects ORDER BY id $$;
\c - acme_app
SELECT name FROM app.projects_by_owner ORDER BY id;
SELECT app.project_names();
\c - nogrant_app
SELECT count(*) FROM app.projects_by_owner;
\echo :LAST_ERROR_SQLSTATE

-- Writes are closed even through a superuser's SECURITY DEFINER function: the row guard is a
-- trigger, triggers run whoever the owner is, and it checks every written and deleted row
-- against the caller's tenant context.
\c - postgres
CREATE FUNCTION public.plant(t uuid, n text) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS
$$ INSERT INTO app.projects (tenant_id, name) VALUES (t, n) $$;
CREATE FUNCTION public.move_all(t uuid) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS
$$ UPDATE app.projects SET tenant_id = t WHERE tenant_id <> t $$;
CREATE FUNCTION public.rename(p_id bigint, n text) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS
$$ UPDATE app.projects SET name = n WHERE id = p_id $$;
CREATE FUNCTION public.remove(p_id bigint) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS
$$ DELETE FROM app.projects WHERE id = p_id $$;
GRANT EXECUTE ON FUNCTION public.plant(uuid, text), public.move_all(uuid),
                          public.rename(bigint, text), public.remove(bigint) TO acme_app, nogrant_app;
\c - acme_app
SELECT public.plant('00000000-0000-4000-8000-00000000000b', 'planted through a definer function');
\echo :LAST_ERROR_SQLSTATE
SELECT public.move_all('00000000-0000-4000-8000-00000000000b');
\echo :LAST_ERROR_SQLSTATE
-- Row 3 is globex's: renaming or deleting it from acme is refused, though RLS is bypassed.
SELECT public.rename(3, 'renamed by acme');
\echo :LAST_ERROR_SQLSTATE
SELECT public.remove(3);
\echo :LAST_ERROR_SQLSTATE
-- acme's own rows can be changed through the same function.
SELECT public.rename(1, 'acme: rocket skates v2');
\c - nogrant_app
SELECT public.plant('00000000-0000-4000-8000-00000000000b', 'planted with no context');
\echo :LAST_ERROR_SQLSTATE

\c - postgres
SELECT id, tenant_id, name FROM app.projects ORDER BY id;
DROP VIEW public.all_projects_superuser, public.projects_invoker, app.projects_by_owner;
DROP FUNCTION app.project_names(), public.plant(uuid, text), public.move_all(uuid),
              public.rename(bigint, text), public.remove(bigint);
