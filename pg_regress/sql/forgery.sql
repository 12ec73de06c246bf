-- Forging the tenant context through settings, role switches and connection options.
-- The context lives in the extension's memory: no setting decides it.
-- In a database of this file's own, copied from the shared fixture (setup.sql): nothing any
-- other file did is seen here, and this file runs alone with `cargo xtask test pg_regress forgery`.
\c postgres
CREATE DATABASE regress_forgery TEMPLATE steward_regress;
\c regress_forgery
\set SHOW_CONTEXT never
\c - acme_app

-- Before the steward library is loaded in this session, settings under steward.* are mere
-- placeholders; loading the library (the first query on a governed table) removes them.
SET steward.tenant_id = '00000000-0000-4000-8000-00000000000b';
SET steward.current_tenant = '00000000-0000-4000-8000-00000000000b';
SELECT set_config('steward.tenant', '00000000-0000-4000-8000-00000000000b', false);
SELECT name FROM app.projects ORDER BY id;
-- Once it is loaded, the steward.* prefix is reserved: no such setting can be made.
SET steward.tenant_id = '00000000-0000-4000-8000-00000000000b';
\echo :LAST_ERROR_SQLSTATE
SELECT set_config('steward.tenant_id', '00000000-0000-4000-8000-00000000000b', false);
\echo :LAST_ERROR_SQLSTATE
RESET ALL;
SELECT name FROM app.projects ORDER BY id;

-- Switching to a role it is not a member of, or to another session user: refused (42501).
SET ROLE globex_app;
\echo :LAST_ERROR_SQLSTATE
SET ROLE api_service;
\echo :LAST_ERROR_SQLSTATE
SELECT set_config('role', 'api_service', false);
\echo :LAST_ERROR_SQLSTATE
SET SESSION AUTHORIZATION api_service;
\echo :LAST_ERROR_SQLSTATE
SELECT set_config('session_authorization', 'globex_app', false);
\echo :LAST_ERROR_SQLSTATE

-- SET ROLE does not choose the tenant: steward asks about session_user. dave is granted acme
-- and is a NOINHERIT member of globex_app: he may SET ROLE globex_app (and use its table
-- privileges), but globex's grant does not become his.
\c - postgres
CREATE ROLE dave LOGIN NOINHERIT IN ROLE globex_app;
SELECT steward.grant_tenant('dave', '00000000-0000-4000-8000-00000000000a');
\c - dave
SET ROLE globex_app;
SELECT current_user, session_user;
SELECT name FROM app.projects ORDER BY id;
SELECT steward.enter_tenant('00000000-0000-4000-8000-00000000000b');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- ... and a tenant role that is a member of a group role gains only the grants it inherits.
\c - carol
SET ROLE acme_staff;
SELECT name FROM app.projects ORDER BY id;
SELECT steward.enter_tenant('00000000-0000-4000-8000-00000000000b');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- The guards themselves cannot be removed or bypassed by a tenant role.
\c - acme_app
ALTER TABLE app.projects DISABLE ROW LEVEL SECURITY;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE app.projects DISABLE TRIGGER steward_row_guard;
\echo :LAST_ERROR_SQLSTATE
DROP POLICY steward_tenant ON app.projects;
\echo :LAST_ERROR_SQLSTATE
CREATE FUNCTION steward.current_tenant_forged() RETURNS uuid LANGUAGE sql AS $$ SELECT '00000000-0000-4000-8000-00000000000b'::uuid $$;
\echo :LAST_ERROR_SQLSTATE

-- Startup options (PGOPTIONS, options=-c...) are settings too: they decide nothing.
-- (Last in this file: psql's \c carries the options on to later connections.)
\c "dbname=regress_forgery user=acme_app options=-csteward.tenant_id=00000000-0000-4000-8000-00000000000b"
SELECT name FROM app.projects ORDER BY id;
\c "dbname=regress_forgery user=nogrant_app options=-csteward.tenant_id=00000000-0000-4000-8000-00000000000b"
SELECT count(*) FROM app.projects;
\echo :LAST_ERROR_SQLSTATE


-- A tenant role that may create tables cannot attach steward's triggers to them: forging
-- change-log records (and the events they become) or faking guards needs EXECUTE on the
-- trigger functions, which nobody but the DBA holds.
\c - postgres
CREATE SCHEMA scratch;
GRANT CREATE, USAGE ON SCHEMA scratch TO acme_app;
\c - acme_app
CREATE TABLE scratch.mine (id int PRIMARY KEY, tenant_id uuid NOT NULL);
CREATE TRIGGER forge AFTER INSERT ON scratch.mine FOR EACH ROW
    EXECUTE FUNCTION steward._internal_log_row('t', 't', 'f', 'app.projects', 'projects', 'id');
\echo :LAST_ERROR_SQLSTATE
CREATE TRIGGER forge BEFORE INSERT ON scratch.mine FOR EACH ROW
    EXECUTE FUNCTION steward._internal_row_guard('tenant_id', '', '', 'id');
\echo :LAST_ERROR_SQLSTATE
CREATE TRIGGER forge AFTER INSERT ON scratch.mine FOR EACH STATEMENT
    EXECUTE FUNCTION steward._internal_catalog_changed();
\echo :LAST_ERROR_SQLSTATE
\c - postgres
DROP SCHEMA scratch CASCADE;
