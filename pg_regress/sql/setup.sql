-- The shared fixture: the extension, two tenants, their roles and one governed table.
\set SHOW_CONTEXT never
-- IF NOT EXISTS: the upgrade suite runs this suite in a database upgraded from each release.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS steward;
RESET client_min_messages;

-- Fixed tenant ids keep the expected output stable; create_tenant() is shown in context.sql.
INSERT INTO steward.tenants (tenant_id, slug, display_name) VALUES
    ('00000000-0000-4000-8000-00000000000a', 'acme',   'Acme Corp'),
    ('00000000-0000-4000-8000-00000000000b', 'globex', 'Globex Inc'),
    ('00000000-0000-4000-8000-00000000000c', 'hooli',  'Hooli (suspended)');
UPDATE steward.tenants SET status = 'suspended' WHERE slug = 'hooli';

CREATE ROLE app_owner LOGIN;          -- owns the application's tables
CREATE ROLE acme_app LOGIN;           -- granted acme only: in acme without any call
CREATE ROLE globex_app LOGIN;         -- granted globex only
CREATE ROLE multi_app LOGIN;          -- granted acme and globex: must choose
CREATE ROLE nogrant_app LOGIN;        -- granted nothing
CREATE ROLE hooli_app LOGIN;          -- granted the suspended tenant only
CREATE ROLE api_service LOGIN;        -- the web service: trusted
CREATE ROLE acme_staff NOLOGIN;       -- a group role holding a grant
CREATE ROLE carol LOGIN IN ROLE acme_staff;  -- inherits acme through acme_staff

SELECT steward.grant_tenant('acme_app', '00000000-0000-4000-8000-00000000000a');
SELECT steward.grant_tenant('globex_app', '00000000-0000-4000-8000-00000000000b');
SELECT steward.grant_tenant('multi_app', '00000000-0000-4000-8000-00000000000a');
SELECT steward.grant_tenant('multi_app', '00000000-0000-4000-8000-00000000000b');
SELECT steward.grant_tenant('hooli_app', '00000000-0000-4000-8000-00000000000c');
SELECT steward.grant_tenant('acme_staff', '00000000-0000-4000-8000-00000000000a');
SELECT steward.trust_role('api_service');

CREATE SCHEMA app AUTHORIZATION app_owner;
SET ROLE app_owner;
CREATE TABLE app.projects (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id uuid NOT NULL,
    name      text NOT NULL
);
CREATE INDEX ON app.projects (tenant_id, id);
GRANT USAGE ON SCHEMA app TO PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON app.projects TO PUBLIC;
RESET ROLE;
SELECT steward.govern('app.projects');

-- Seed rows through the front door: as the trusted service, one tenant per transaction.
SET ROLE api_service;
BEGIN;
SELECT steward.enter_tenant('00000000-0000-4000-8000-00000000000a', 'seed');
INSERT INTO app.projects (name) VALUES ('acme: rocket skates'), ('acme: giant magnet');
COMMIT;
BEGIN;
SELECT steward.enter_tenant('00000000-0000-4000-8000-00000000000b', 'seed');
INSERT INTO app.projects (name) VALUES ('globex: doomsday device');
COMMIT;
RESET ROLE;

-- A second governed table, empty: each file writes the tasks it needs.
CREATE TABLE app.tasks (
    id        int PRIMARY KEY,
    tenant_id uuid NOT NULL,
    title     text NOT NULL,
    done      boolean NOT NULL DEFAULT false,
    n         int NOT NULL DEFAULT 0
);
GRANT SELECT, INSERT, UPDATE, DELETE ON app.tasks TO PUBLIC;
SELECT steward.govern('app.tasks');

-- outcome(q): "ok", or the SQLSTATE and message q failed with ("[with DETAIL]" when it had one).
CREATE FUNCTION public.outcome(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE code text; msg text; detail text;
BEGIN
  EXECUTE q;
  RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS code = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, detail = PG_EXCEPTION_DETAIL;
  RETURN code || ': ' || msg || CASE WHEN coalesce(detail, '') <> '' THEN ' [with DETAIL]' ELSE '' END;
END $$;
GRANT EXECUTE ON FUNCTION public.outcome(text) TO PUBLIC;

-- A superuser bypasses row-level security (see definer_hole.sql): it sees all three rows.
SELECT id, tenant_id, name FROM app.projects ORDER BY id;
