-- Attack: a tenant role puts its own operators ahead of pg_catalog's in its search path, hoping
-- that steward's lookups made with the extension owner's privileges (a superuser's) run them.
-- In a database of this file's own, copied from the shared fixture (setup.sql): nothing any
-- other file did is seen here, and this file runs alone with `cargo xtask test pg_regress search_path`.
\c postgres
CREATE DATABASE regress_search_path TEMPLATE steward_regress;
\c regress_search_path
\set SHOW_CONTEXT never
CREATE SCHEMA acme_own AUTHORIZATION acme_app;
\c - acme_app
CREATE FUNCTION acme_own.eq_uuid(uuid, uuid) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    RAISE NOTICE 'attacker code ran as %', current_user;
    RETURN pg_catalog.uuid_eq($1, $2);
END $$;
CREATE OPERATOR acme_own.= (LEFTARG = uuid, RIGHTARG = uuid, FUNCTION = acme_own.eq_uuid);
CREATE FUNCTION acme_own.eq_text(text, text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    RAISE NOTICE 'attacker code ran as %', current_user;
    RETURN pg_catalog.texteq($1, $2);
END $$;
CREATE OPERATOR acme_own.= (LEFTARG = text, RIGHTARG = text, FUNCTION = acme_own.eq_text);
CREATE FUNCTION acme_own.now() RETURNS timestamptz LANGUAGE plpgsql AS $$
BEGIN
    RAISE NOTICE 'attacker code ran as %', current_user;
    RETURN pg_catalog.now();
END $$;
-- A fresh session (steward looks the implicit tenant up as its owner), a new event type (it
-- looks the schema up as its owner): no attacker code runs, and everything works.
\c - acme_app
SET search_path = acme_own, pg_catalog, public;
SELECT steward.current_tenant() AS implicit_tenant;
SELECT count(*) > 0 AS sees_own_projects FROM app.projects;
SELECT steward.emit('search_path.tested', 'x', '1', '{}') IS NOT NULL AS emitted;
\c - postgres
DROP SCHEMA acme_own CASCADE;
