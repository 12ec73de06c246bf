-- No steward code path runs anything a table owner or a user can define with more privilege
-- than the caller has. The attack: a table owner's trigger, check and index expression that
-- would make their owner superuser if steward ran them as a superuser, and record whom they run
-- as. steward's soft delete and restore() write as the caller.
-- In a database of this file's own, copied from the shared fixture (setup.sql): nothing any
-- other file did is seen here, and this file runs alone with `cargo xtask test pg_regress escalation`.
\c postgres
CREATE DATABASE regress_escalation TEMPLATE steward_regress;
\c regress_escalation
\set SHOW_CONTEXT never
CREATE ROLE notes_deleter LOGIN;    -- may delete, may not update
SELECT steward.grant_tenant('notes_deleter', '00000000-0000-4000-8000-00000000000a');
SET ROLE app_owner;
CREATE TABLE app.journal (id int PRIMARY KEY, tenant_id uuid NOT NULL, body text NOT NULL);
GRANT SELECT, INSERT, DELETE ON app.journal TO PUBLIC;
GRANT UPDATE ON app.journal TO acme_app, globex_app;
CREATE FUNCTION app.trap(what text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  RAISE NOTICE '% runs as %', what, current_user;
  BEGIN
    EXECUTE 'ALTER ROLE app_owner SUPERUSER';
  EXCEPTION WHEN insufficient_privilege THEN NULL;
  END;
  RETURN true;
END $$;
CREATE FUNCTION app.trap_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM app.trap('the owner''s ' || TG_WHEN || ' ' || TG_OP || ' trigger');
  RETURN NEW;
END $$;
CREATE TRIGGER trap BEFORE UPDATE ON app.journal FOR EACH ROW EXECUTE FUNCTION app.trap_trigger();
CREATE TRIGGER trap_after AFTER UPDATE ON app.journal FOR EACH ROW EXECUTE FUNCTION app.trap_trigger();
ALTER TABLE app.journal ADD CONSTRAINT trap_check CHECK (app.trap('the owner''s CHECK constraint'));
RESET ROLE;
-- soft delete and version_required together: steward's own soft delete must not trip over the
-- version rule it does not write.
SELECT steward.govern('app.journal', soft_delete => true, version_required => true);

\c - acme_app
INSERT INTO app.journal (id, body) VALUES (1, 'first'), (2, 'second');
-- The soft delete's UPDATE fires the owner's trigger and check: as acme_app, not as a superuser.
DELETE FROM app.journal WHERE id = 1;
SELECT id, body FROM app.journal ORDER BY id;
-- restore() likewise.
SELECT steward.restore('app.journal', '{"id": 1}');
SELECT id, body, version FROM app.journal ORDER BY id;
\c - postgres
SELECT rolname, rolsuper FROM pg_roles WHERE rolname = 'app_owner';

-- A role that may DELETE but not UPDATE cannot soft-delete (the soft delete is an UPDATE of
-- deleted_at): 42501, with a hint, and the row stays.
\c - notes_deleter
DELETE FROM app.journal WHERE id = 2;
\echo :LAST_ERROR_SQLSTATE
SELECT steward.restore('app.journal', '{"id": 1}');
\echo :LAST_ERROR_SQLSTATE
SELECT id FROM app.journal ORDER BY id;

-- version_required still holds for the tenant's own updates.
\c - acme_app
UPDATE app.journal SET body = 'unversioned' WHERE id = 2;
\echo :LAST_ERROR_SQLSTATE
UPDATE app.journal SET body = 'versioned', version = 1 WHERE id = 2 RETURNING id, body, version;
-- steward's exemption is for its own write only: an update that sets deleted_at by hand is an
-- ordinary update, and needs the version like any other.
UPDATE app.journal SET deleted_at = now() WHERE id = 2;
\echo :LAST_ERROR_SQLSTATE
-- Another tenant's deleted row cannot be restored, and a restore touches only the row named.
\c - globex_app
SELECT steward.restore('app.journal', '{"id": 1}');
\echo :LAST_ERROR_SQLSTATE
\c - postgres
SELECT id, tenant_id, deleted_at IS NOT NULL AS deleted, version FROM app.journal ORDER BY id;
SELECT rolname, rolsuper FROM pg_roles WHERE rolname = 'app_owner';

-- The table's own BEFORE UPDATE trigger that also stamps a column (it sorts before steward's
-- guard) does not make steward's soft delete trip over version_required.
SET ROLE app_owner;
ALTER TABLE app.journal ADD COLUMN touched_at timestamptz;
CREATE FUNCTION app.touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.touched_at := now(); RETURN NEW; END $$;
CREATE TRIGGER a_touch BEFORE UPDATE ON app.journal FOR EACH ROW EXECUTE FUNCTION app.touch();
RESET ROLE;
\c - acme_app
DELETE FROM app.journal WHERE id = 2;
SELECT id FROM app.journal ORDER BY id;
SELECT steward.restore('app.journal', '{"id": 2}');
-- A trigger of the table that skips the soft delete's UPDATE (returns NULL) makes the DELETE
-- fail loudly instead of passing as done with the row still there.
\c - postgres
SET ROLE app_owner;
CREATE FUNCTION app.skip() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
CREATE TRIGGER b_skip BEFORE UPDATE ON app.journal FOR EACH ROW EXECUTE FUNCTION app.skip();
RESET ROLE;
\c - acme_app
DELETE FROM app.journal WHERE id = 2;
\echo :LAST_ERROR_SQLSTATE
\c - postgres
DROP TRIGGER b_skip ON app.journal;
-- An error steward raises inside its own UPDATE (here: the table's trigger moves the row to
-- another tenant during the soft delete) reaches the client with steward's SQLSTATE, not XX000.
SET ROLE app_owner;
CREATE FUNCTION app.move() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.tenant_id := '00000000-0000-4000-8000-00000000000b'; RETURN NEW; END $$;
CREATE TRIGGER a_move BEFORE UPDATE ON app.journal FOR EACH ROW EXECUTE FUNCTION app.move();
RESET ROLE;
\c - acme_app
DELETE FROM app.journal WHERE id = 2;
\echo :LAST_ERROR_SQLSTATE
\c - postgres
DROP TRIGGER a_move ON app.journal;
-- A table renamed after a backend has soft-deleted in it: the next soft delete marks the row of
-- the renamed table, never one of a new table that took the old name.
CREATE TABLE public.sd (id int PRIMARY KEY, tenant_id uuid NOT NULL, deleted_at timestamptz);
GRANT SELECT, INSERT, UPDATE, DELETE ON public.sd TO PUBLIC;
SELECT steward.govern('public.sd', soft_delete => true);
\c - acme_app
INSERT INTO public.sd (id) VALUES (1), (2);
DELETE FROM public.sd WHERE id = 1;
\c - postgres
ALTER TABLE public.sd RENAME TO sd_v1;
CREATE TABLE public.sd (id int, tenant_id uuid, deleted_at timestamptz);
INSERT INTO public.sd VALUES (99, '00000000-0000-4000-8000-00000000000a', NULL), (98, '00000000-0000-4000-8000-00000000000a', NULL);
GRANT SELECT, UPDATE ON public.sd TO PUBLIC;
\c - acme_app
DELETE FROM public.sd_v1 WHERE id = 2;
\c - postgres
SELECT id, deleted_at IS NOT NULL AS deleted FROM public.sd_v1 ORDER BY id;
SELECT id, deleted_at IS NOT NULL AS deleted FROM public.sd ORDER BY id;
DROP TABLE public.sd;
-- A trigger of the table that moves the row to another tenant after steward's guard (a BEFORE
-- trigger that sorts later) is caught before anything is filed, for roles that bypass RLS too.
SET ROLE app_owner;
CREATE FUNCTION app.reroute() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.tenant_id := '00000000-0000-4000-8000-00000000000b'; RETURN NEW; END $$;
CREATE TRIGGER zz_reroute BEFORE INSERT ON app.journal FOR EACH ROW EXECUTE FUNCTION app.reroute();
RESET ROLE;
BEGIN;
SELECT steward.enter_tenant('00000000-0000-4000-8000-00000000000a') IS NOT NULL AS entered;
INSERT INTO app.journal (id, body) VALUES (9, 'rerouted');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
SELECT count(*) AS rerouted_rows FROM app.journal WHERE id = 9;
