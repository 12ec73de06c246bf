-- steward.expose / unexpose / exposed_resources: what the web API (steward-service serve) serves.
-- In a database of this file's own, copied from the shared fixture (setup.sql): nothing any
-- other file did is seen here, and this file runs alone with `cargo xtask test pg_regress resources`.
\c postgres
CREATE DATABASE regress_resources TEMPLATE steward_regress;
\c regress_resources
\set SHOW_CONTEXT never

-- A governed table is exposed under its name, every column but the tenant column.
SELECT steward.expose('app.projects');
SELECT steward.expose('app.tasks', 'todo', '{id,title,done}');
SELECT resource, rel, kind, key, versioned, soft_delete, jsonb_pretty(columns) AS columns
  FROM steward.exposed_resources ORDER BY resource;
-- Calling it again changes the name or the columns.
SELECT steward.expose('app.tasks', 'tasks');
SELECT resource, rel, jsonb_array_length(columns) AS ncolumns FROM steward.exposed_resources ORDER BY resource;

-- What cannot be exposed: ST400, naming the object and what to do.
\set VERBOSITY verbose
CREATE TABLE app.plain (id int PRIMARY KEY, tenant_id uuid NOT NULL, secret text);
SELECT steward.expose('app.plain');
SELECT steward.expose('app.tasks', 'Tasks!');
SELECT steward.expose('app.tasks', 'projects');
SELECT steward.expose('app.tasks', 'tasks', '{id,title,tenant_id}');
SELECT steward.expose('app.tasks', 'tasks', '{title,done}');
SELECT steward.expose('app.tasks', 'tasks', '{id,nope}');
SELECT steward.expose(NULL);
CREATE SEQUENCE app.seq;
SELECT steward.expose('app.seq');
\set VERBOSITY default

-- A view is a read-only resource only when it runs as its caller and reads governed tables only.
CREATE VIEW app.project_names AS SELECT id, name FROM app.projects;
SELECT public.outcome($$SELECT steward.expose('app.project_names')$$);
ALTER VIEW app.project_names SET (security_invoker = true);
SELECT steward.expose('app.project_names', 'project-names');
CREATE VIEW app.leaky WITH (security_invoker = true) AS
  SELECT p.id, x.secret FROM app.projects p JOIN app.plain x ON x.id = p.id;
SELECT public.outcome($$SELECT steward.expose('app.leaky')$$);
CREATE VIEW app.nested WITH (security_invoker = true) AS SELECT * FROM app.project_names;
SELECT steward.expose('app.nested');
CREATE VIEW app.nested_bad WITH (security_invoker = true) AS
  SELECT * FROM (SELECT id FROM app.plain) s;
SELECT public.outcome($$SELECT steward.expose('app.nested_bad')$$);
SELECT resource, kind, key, columns->0->>'writable' AS writable
  FROM steward.exposed_resources WHERE kind = 'view' ORDER BY resource;

-- Fail closed: a view that stops running as its caller, or a table no longer governed, is no
-- longer served (and serves again once mended).
ALTER VIEW app.project_names SET (security_invoker = false);
SELECT resource FROM steward.exposed_resources ORDER BY resource;
ALTER VIEW app.project_names SET (security_invoker = true);
SELECT steward.ungovern('app.tasks');
SELECT resource FROM steward.exposed_resources ORDER BY resource;
SELECT steward.govern('app.tasks');
SELECT resource FROM steward.exposed_resources ORDER BY resource;

-- Dropping a resource's table or view drops the resource.
DROP VIEW app.nested;

SELECT resource FROM steward.exposed ORDER BY resource;

-- Only the DBA exposes; anyone (the service's role) reads what is exposed, never a row by it.
\c - nogrant_app
SELECT public.outcome($$SELECT steward.expose('app.projects', 'mine')$$);
SELECT public.outcome($$SELECT steward.unexpose('app.projects')$$);
SELECT public.outcome($$SELECT * FROM steward.exposed$$);
SELECT resource, kind FROM steward.exposed_resources ORDER BY resource;
\c - postgres

-- unexpose, and unexposing what is not exposed: ST400.
SELECT steward.unexpose('app.project_names');
SELECT public.outcome($$SELECT steward.unexpose('app.project_names')$$);
SELECT resource FROM steward.exposed_resources ORDER BY resource;

-- A resource view may call built-in functions only: a function reads what it likes (as its
-- owner, if SECURITY DEFINER), whatever policy the caller is under. ST400.
CREATE FUNCTION app.all_projects() RETURNS TABLE (id bigint, name text) LANGUAGE sql
  SECURITY DEFINER AS $$ SELECT id, name FROM app.projects $$;
CREATE VIEW app.through_definer WITH (security_invoker = true) AS SELECT * FROM app.all_projects();
SELECT public.outcome($$SELECT steward.expose('app.through_definer')$$);
CREATE FUNCTION app.shout(t text) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT upper(t) $$;
CREATE VIEW app.shouted WITH (security_invoker = true) AS SELECT id, app.shout(name) AS name FROM app.projects;
SELECT public.outcome($$SELECT steward.expose('app.shouted')$$);
-- steward's own relations are no resources, whatever view is put over them. ST400.
CREATE VIEW app.log_view WITH (security_invoker = true) AS SELECT id, table_name FROM steward.change_log;
SELECT public.outcome($$SELECT steward.expose('app.log_view')$$);
CREATE VIEW app.audit_view WITH (security_invoker = true) AS SELECT id, action FROM steward.audit_log;
SELECT public.outcome($$SELECT steward.expose('app.audit_view')$$);
-- A view's column carrying a governed table's tenant column is never shown, nor can it be named.
CREATE VIEW app.all_columns WITH (security_invoker = true) AS SELECT * FROM app.projects;
SELECT steward.expose('app.all_columns', 'all-columns');
SELECT jsonb_path_query_array(columns, '$[*].name') AS columns
  FROM steward.exposed_resources WHERE resource = 'all-columns';
SELECT public.outcome($$SELECT steward.expose('app.all_columns', 'all-columns', '{id,tenant_id}')$$);

-- Each request checks, in its own transaction, that its resource is still served. ST400 when
-- it is not (the service answers 404 and reads the resources again).
SELECT steward._check_serving('projects');
SELECT public.outcome($$SELECT steward._check_serving('nope')$$);
ALTER VIEW app.all_columns SET (security_invoker = false);
SELECT public.outcome($$SELECT steward._check_serving('all-columns')$$);
SELECT steward.ungovern('app.projects');
SELECT public.outcome($$SELECT steward._check_serving('projects')$$);
