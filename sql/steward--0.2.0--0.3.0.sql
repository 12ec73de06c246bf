-- steward 0.2.0 -> 0.3.0, run by ALTER EXTENSION steward UPDATE (docs/dba-guide.md, Upgrading).
-- Not released yet: every change main makes to steward's schema goes here as well
-- (docs/contributing.md, Releases); frozen once 0.3.0 is cut.
-- One transaction: any failure leaves the database at 0.2.0, as it was.
\echo Use "ALTER EXTENSION steward UPDATE" to load this file. \quit

SET LOCAL check_function_bodies = false;

-- What existed before this update keeps its privileges (they are the DBA's); what it creates
-- gets steward's, whatever the database's default privileges say (at the end).
SELECT pg_catalog.set_config('steward_upgrade.kept',
           (SELECT pg_catalog.string_agg(d.objid::text, ',')
              FROM pg_catalog.pg_depend d
             WHERE d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass AND d.deptype = 'e'
               AND d.refobjid = (SELECT e.oid FROM pg_catalog.pg_extension e
                                  WHERE e.extname = 'steward')),
           true);

-- What an update creates belongs to the role that runs it: steward's objects must all be its
-- owner's.
DO $$
BEGIN
    IF (SELECT e.extowner FROM pg_catalog.pg_extension e WHERE e.extname = 'steward')
       <> (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = current_user) THEN
        RAISE EXCEPTION 'steward''s update must be run by the extension''s owner, %, not %',
                        (SELECT e.extowner::regrole FROM pg_catalog.pg_extension e WHERE e.extname = 'steward'),
                        current_user
            USING ERRCODE = 'ST400',
                  HINT = 'Nothing was changed. Connect (or SET ROLE) as the owner and run ALTER EXTENSION steward UPDATE again.';
    END IF;
END
$$;

-- (0.3.0's changes to steward's tables, functions, views, policies and triggers go here.)

-- Signing keys: public keys as JWK (RS256, ES256, EdDSA) beside HS256 secrets, with the issuer,
-- audience and maximum lifetime a key accepts; rows are checked when stored, and every backend
-- drops its parsed keys when the table changes.
ALTER TABLE steward.signing_keys
    ALTER COLUMN secret DROP NOT NULL,
    ADD COLUMN alg text NOT NULL DEFAULT 'HS256'
        CHECK (alg IN ('HS256', 'RS256', 'ES256', 'EdDSA')),
    ADD COLUMN jwk jsonb,
    ADD COLUMN issuer text,
    ADD COLUMN audience text,
    ADD COLUMN max_lifetime interval CHECK (max_lifetime > interval '0'),
    ADD CONSTRAINT signing_keys_material CHECK (
        CASE WHEN alg = 'HS256' THEN secret IS NOT NULL AND jwk IS NULL
             ELSE secret IS NULL AND jwk IS NOT NULL END);

CREATE FUNCTION steward._internal_check_signing_key(key_id text, alg text, secret bytea, jwk jsonb, max_lifetime_seconds bigint)
 RETURNS void
 LANGUAGE c
 STABLE PARALLEL SAFE
AS '$libdir/steward', $function$_internal_check_signing_key_wrapper$function$;

CREATE FUNCTION steward._signing_key_check()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM steward._internal_check_signing_key(NEW.key_id, NEW.alg, NEW.secret, NEW.jwk,
                                                extract(epoch FROM NEW.max_lifetime)::bigint);
    RETURN NEW;
END
$$;
CREATE TRIGGER steward_signing_key_check BEFORE INSERT OR UPDATE ON steward.signing_keys
    FOR EACH ROW EXECUTE FUNCTION steward._signing_key_check();
CREATE TRIGGER steward_catalog_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON steward.signing_keys FOR EACH STATEMENT EXECUTE FUNCTION steward._internal_catalog_changed();

-- The web API's resources (sql/resources.sql), and the catalog they are kept in.
CREATE TABLE steward.exposed (
    rel        regclass PRIMARY KEY,
    resource   text NOT NULL UNIQUE,
    columns    name[],
    exposed_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON steward.exposed FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('steward.exposed', '');

-- Resources: the governed tables (and security_invoker views over them) a DBA exposes to the web
-- API, steward-service serve. The service reads steward.exposed_resources to know which
-- resources exist, their key, their columns and their types; it builds every statement from
-- that description, never from a request's text. The tenant column is never exposed.

-- The view itself and every relation it reads, through the views it reads (each once).
CREATE FUNCTION steward._view_relations(view_rel regclass)
RETURNS SETOF oid
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH RECURSIVE used(rel, path) AS (
        SELECT view_rel::oid, ARRAY[view_rel::oid]
        UNION
        SELECT d.refobjid, u.path || d.refobjid
          FROM used u
          JOIN pg_rewrite w ON w.ev_class = u.rel
          JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = w.oid
                          AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> u.rel
         WHERE NOT d.refobjid = ANY (u.path)
    )
    SELECT DISTINCT u.rel FROM used u
$$;

-- (SECURITY DEFINER: exposed_resources calls it for whoever reads the view, and it reads
-- steward.governed; it says only whether a view's relations are governed.)
CREATE FUNCTION steward._view_faults(view_rel regclass)
RETURNS SETOF text
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    -- Every relation the view reads, through the views it reads, must be governed or itself a
    -- security_invoker view: a view that runs as its owner reads across tenants. steward's own
    -- relations are not resources. And every function or operator the views call must be a
    -- built-in one: what a function reads is not in the catalog, and a function can read any
    -- table (as its owner, if SECURITY DEFINER) whatever policy the caller is under.
    WITH used(rel) AS (SELECT * FROM steward._view_relations(view_rel)),
    rules AS (
        SELECT w.oid AS rule FROM used u JOIN pg_rewrite w ON w.ev_class = u.rel
    )
    SELECT DISTINCT f.fault FROM (
        SELECT CASE
                 WHEN c.relnamespace = 'steward'::regnamespace
                     THEN format('%s reads %s, one of steward''s own relations', view_rel, c.oid::regclass)
                 WHEN c.relkind = 'v'
                     THEN format('view %s does not run as its caller (security_invoker)', c.oid::regclass)
                 ELSE format('%s reads %s, which steward does not govern', view_rel, c.oid::regclass) END AS fault
          FROM used u
          JOIN pg_class c ON c.oid = u.rel
         WHERE c.relnamespace = 'steward'::regnamespace
            OR (c.relkind = 'v'
                AND NOT coalesce('security_invoker=true' = ANY (c.reloptions)
                                 OR 'security_invoker=on' = ANY (c.reloptions)
                                 OR 'security_invoker=1' = ANY (c.reloptions), false))
            OR (c.relkind IN ('r', 'p', 'm', 'f')
                AND NOT EXISTS (SELECT 1 FROM steward.governed g WHERE g.rel = c.oid))
        UNION ALL
        SELECT format('%s calls %s, which is not a built-in function: steward cannot tell what it reads',
                      view_rel, p.oid::regprocedure)
          FROM rules r
          JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.rule
                          AND d.refclassid = 'pg_proc'::regclass
          JOIN pg_proc p ON p.oid = d.refobjid
         WHERE p.pronamespace <> 'pg_catalog'::regnamespace
        UNION ALL
        SELECT format('%s uses operator %s, whose function is not a built-in one: steward cannot tell what it reads',
                      view_rel, o.oid::regoperator)
          FROM rules r
          JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.rule
                          AND d.refclassid = 'pg_operator'::regclass
          JOIN pg_operator o ON o.oid = d.refobjid
          JOIN pg_proc p ON p.oid = o.oprcode
         WHERE p.pronamespace <> 'pg_catalog'::regnamespace
    ) f
$$;

-- The tenant columns of the governed tables a view reads (through the views it reads): a view's
-- column of that name is never shown, as a table's tenant column is not.
CREATE FUNCTION steward._view_tenant_columns(view_rel regclass)
RETURNS name[]
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(array_agg(DISTINCT g.tenant_column), '{}')
      FROM steward._view_relations(view_rel) u(rel) JOIN steward.governed g ON g.rel = u.rel
$$;

-- Whether a resource may be served now: the service calls it in each request's transaction,
-- before the statement, so that a resource its cached description still lists is refused the
-- moment it is unexposed, its table ungoverned, or its view weakened.
CREATE FUNCTION steward._check_serving(resource text)
RETURNS void
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r regclass;
    k "char";
BEGIN
    SELECT e.rel, c.relkind INTO r, k
      FROM steward.exposed e JOIN pg_class c ON c.oid = e.rel
     WHERE e.resource = _check_serving.resource;
    IF r IS NULL
       OR (k = 'v' AND EXISTS (SELECT 1 FROM steward._view_faults(r)))
       OR (k <> 'v' AND NOT EXISTS (SELECT 1 FROM steward.governed g WHERE g.rel = r)) THEN
        PERFORM steward._raise('ST400', format('resource %L is not served', resource),
            'It was unexposed, its table is no longer governed, or its view no longer runs as its caller over governed tables only: GET /openapi.json lists what is.');
    END IF;
END
$$;

-- Exposes a governed table, or a security_invoker view over governed tables (read-only), as
-- /v1/<resource>. Calling it again changes the resource's name or columns.
CREATE FUNCTION steward.expose(rel regclass, resource text DEFAULT NULL, columns name[] DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    kind      "char";
    name      text := coalesce(resource, (SELECT c.relname FROM pg_class c WHERE c.oid = rel));
    tcol      name;
    missing   text;
    fault     text;
    taken     regclass;
BEGIN
    IF rel IS NULL THEN
        PERFORM steward._raise('ST400', 'steward.expose: rel must not be NULL',
                               'Name the governed table or view to expose.');
    END IF;
    SELECT c.relkind INTO kind FROM pg_class c WHERE c.oid = rel;
    IF kind = 'v' THEN
        FOR fault IN SELECT * FROM steward._view_faults(rel) LOOP
            PERFORM steward._raise('ST400', format('view %s cannot be exposed: %s', rel, fault),
                'A resource view must be created WITH (security_invoker = true) and read only tables steward governs, so that row-level security applies to the caller.');
        END LOOP;
    ELSIF kind = 'r' THEN
        SELECT g.tenant_column INTO tcol FROM steward.governed g WHERE g.rel = expose.rel;
        IF tcol IS NULL THEN
            PERFORM steward._raise('ST400', format('table %s is not governed by steward', rel),
                format('Run SELECT steward.govern(%L) first: only governed tables are exposed.', rel::text));
        END IF;
    ELSE
        PERFORM steward._raise('ST400', format('%s is neither a table nor a view', rel),
            'Expose a governed table or a security_invoker view over governed tables.');
    END IF;
    IF name IS NULL OR name !~ '^[a-z][a-z0-9_-]{0,62}$' THEN
        PERFORM steward._raise('ST400', format('resource name %L is not usable in a URL', name),
            'A resource name is lower-case letters, digits, "_" and "-", starting with a letter (at most 63 characters): pass resource => ''...''.');
    END IF;
    SELECT e.rel INTO taken FROM steward.exposed e WHERE e.resource = name AND e.rel <> expose.rel;
    IF taken IS NOT NULL THEN
        PERFORM steward._raise('ST400', format('resource %L is already %s', name, taken),
            format('Choose another name with resource => ''...'', or SELECT steward.unexpose(%L) first.', taken::text));
    END IF;
    IF columns IS NOT NULL THEN
        SELECT string_agg(quote_ident(c), ', ') INTO missing
          FROM unnest(columns) c
         WHERE NOT EXISTS (SELECT 1 FROM pg_attribute a
                            WHERE a.attrelid = rel AND a.attname = c AND a.attnum > 0 AND NOT a.attisdropped);
        IF missing IS NOT NULL THEN
            PERFORM steward._raise('ST400', format('%s has no column %s', rel, missing),
                'Name columns of the table (or view) itself.');
        END IF;
        IF tcol = ANY (columns) OR (kind = 'v' AND columns && steward._view_tenant_columns(rel)) THEN
            PERFORM steward._raise('ST400', format('the columns of %s name a tenant column (%s): it is never exposed', rel,
                                   coalesce(quote_ident(tcol), array_to_string(steward._view_tenant_columns(rel), ', '))),
                'Leave the tenant column out: the caller''s token decides the tenant.');
        END IF;
        SELECT string_agg(quote_ident(a.attname), ', ') INTO missing
          FROM pg_index i
          JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
         WHERE i.indrelid = rel AND i.indisprimary AND a.attname <> tcol
           AND NOT a.attname = ANY (columns);
        IF missing IS NOT NULL THEN
            PERFORM steward._raise('ST400', format('the columns of %s leave out its key column %s', rel, missing),
                'A resource''s URLs name its rows by primary key: include every key column but the tenant column.');
        END IF;
    END IF;
    INSERT INTO steward.exposed AS e (rel, resource, columns)
    VALUES (rel, name, columns)
    ON CONFLICT ON CONSTRAINT exposed_pkey
    DO UPDATE SET resource = excluded.resource, columns = excluded.columns, exposed_at = now();
    RETURN name;
END
$$;

CREATE FUNCTION steward.unexpose(rel regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM steward.exposed e WHERE e.rel = unexpose.rel;
    IF NOT FOUND THEN
        PERFORM steward._raise('ST400', format('%s is not exposed', rel),
            'SELECT resource, rel FROM steward.exposed_resources lists what is.');
    END IF;
END
$$;

-- What the service needs of each resource: its key (the primary key's columns but the tenant
-- column, in key order), its columns with their types, which of them a request may write, and
-- how a row's version is kept. Read by the service's role; says nothing of any tenant's rows.
CREATE VIEW steward.exposed_resources AS
SELECT e.resource,
       e.rel,
       CASE c.relkind WHEN 'v' THEN 'view' ELSE 'table' END AS kind,
       coalesce((SELECT array_agg(a.attname::text ORDER BY k.ord)
                   FROM pg_index i
                   CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
                   JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                  WHERE i.indrelid = e.rel AND i.indisprimary
                    AND a.attname IS DISTINCT FROM g.tenant_column), '{}') AS key,
       g.tenant_column::text AS tenant_column,
       -- Every primary key column, the tenant column included where it is one: what
       -- steward.history's row_key names.
       coalesce((SELECT array_agg(a.attname::text ORDER BY k.ord)
                   FROM pg_index i
                   CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
                   JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                  WHERE i.indrelid = e.rel AND i.indisprimary), '{}') AS primary_key,
       coalesce(g.versioned, false) AS versioned,
       coalesce(g.soft_delete, false) AS soft_delete,
       (SELECT jsonb_agg(jsonb_build_object(
                   'name', a.attname,
                   'type', format_type(a.atttypid, NULL),
                   'array', t.typcategory = 'A',
                   'element', CASE WHEN t.typcategory = 'A' THEN format_type(t.typelem, NULL) END,
                   'nullable', NOT a.attnotnull,
                   'has_default', a.atthasdef OR a.attidentity <> '',
                   'writable', c.relkind <> 'v' AND a.attidentity <> 'a' AND a.attgenerated = ''
                               AND NOT (g.versioned AND a.attname = 'version'))
                   ORDER BY a.attnum)
          FROM pg_attribute a
          JOIN pg_type t ON t.oid = a.atttypid
         WHERE a.attrelid = e.rel AND a.attnum > 0 AND NOT a.attisdropped
           AND a.attname IS DISTINCT FROM g.tenant_column
           AND NOT (c.relkind = 'v' AND a.attname = ANY (steward._view_tenant_columns(e.rel)))
           AND (e.columns IS NULL OR a.attname = ANY (e.columns))) AS columns,
       e.exposed_at
  FROM steward.exposed e
  JOIN pg_class c ON c.oid = e.rel
  LEFT JOIN steward.governed g ON g.rel = e.rel
 -- Fail closed: a table no longer governed, or a view that no longer runs as its caller over
 -- governed tables, is no resource (its row stays, and serves again once that is mended).
 WHERE CASE WHEN c.relkind = 'v' THEN NOT EXISTS (SELECT 1 FROM steward._view_faults(e.rel))
            ELSE g.rel IS NOT NULL END;

CREATE OR REPLACE FUNCTION steward._forget_dropped_tables()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM steward.governed g
     USING pg_event_trigger_dropped_objects() d
     WHERE d.classid = 'pg_class'::regclass AND d.objsubid = 0 AND g.rel::oid = d.objid;
    DELETE FROM steward.exposed e
     USING pg_event_trigger_dropped_objects() d
     WHERE d.classid = 'pg_class'::regclass AND d.objsubid = 0 AND e.rel::oid = d.objid;
END
$$;

-- The DDL guard lets an extension's script through without checking every governed table at
-- each of its commands (the function it asks first: the guard's new version calls it as soon as
-- it is replaced), and computes a table's expected trigger arguments once per check.
CREATE OR REPLACE FUNCTION steward._internal_in_extension_script()
 RETURNS boolean
 LANGUAGE c
 STABLE PARALLEL RESTRICTED STRICT
AS '$libdir/steward', $function$_internal_in_extension_script_wrapper$function$;

CREATE OR REPLACE FUNCTION steward._ddl_guard()
 RETURNS event_trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    affected oid[];
    known    text[] := steward._internal_ddl_known();
    f        record;
    faults   text[] := '{}';
    hint     text;
BEGIN
    IF steward._internal_in_extension_script() THEN
        RETURN;  -- an extension's script: _ddl_guard_start did not begin this command either
    END IF;
    IF TG_EVENT = 'ddl_command_end' THEN
        PERFORM steward._internal_ddl_end();
    END IF;
    -- The extension's own scripts (CREATE / ALTER EXTENSION) and DROP EXTENSION pass.
    IF TG_EVENT = 'sql_drop' THEN
        IF EXISTS (SELECT 1 FROM pg_event_trigger_dropped_objects() d
                    WHERE d.object_type = 'extension' AND d.object_identity = 'steward') THEN
            RETURN;
        END IF;
    ELSIF EXISTS (SELECT 1 FROM pg_event_trigger_ddl_commands() c WHERE c.in_extension) THEN
        RETURN;
    END IF;
    IF TG_EVENT = 'sql_drop' THEN
        -- A policy, trigger or column dropped from a table that is still there.
        affected := ARRAY(
            SELECT to_regclass(format('%I.%I', d.address_names[1], d.address_names[2]))::oid
              FROM pg_event_trigger_dropped_objects() d
             WHERE d.object_type IN ('policy', 'trigger', 'table column')
               AND cardinality(d.address_names) >= 3);
    ELSE
        affected := ARRAY(
            SELECT x FROM pg_event_trigger_ddl_commands() c
             CROSS JOIN LATERAL (
                   SELECT c.objid WHERE c.classid = 'pg_class'::regclass
                   UNION ALL SELECT i.indrelid FROM pg_index i
                              WHERE c.classid = 'pg_class'::regclass AND i.indexrelid = c.objid
                   UNION ALL SELECT k.confrelid FROM pg_constraint k
                              WHERE c.classid = 'pg_class'::regclass AND k.conrelid = c.objid AND k.contype = 'f'
                   UNION ALL SELECT h.inhparent FROM pg_inherits h
                              WHERE c.classid = 'pg_class'::regclass AND h.inhrelid = c.objid
                   UNION ALL SELECT h.inhrelid FROM pg_inherits h
                              WHERE c.classid = 'pg_class'::regclass AND h.inhparent = c.objid
                   UNION ALL SELECT p.polrelid FROM pg_policy p
                              WHERE c.classid = 'pg_policy'::regclass AND p.oid = c.objid
                   UNION ALL SELECT tg.tgrelid FROM pg_trigger tg
                              WHERE c.classid = 'pg_trigger'::regclass AND tg.oid = c.objid
                   UNION ALL SELECT w.ev_class FROM pg_rewrite w
                              WHERE c.classid = 'pg_rewrite'::regclass AND w.oid = c.objid) AS a(x));
        -- ALTER POLICY of one of steward's policies changes what it lets through.
        faults := ARRAY(
            SELECT format('policy %s on %s was altered', p.polname, p.polrelid::regclass)
              FROM pg_event_trigger_ddl_commands() c
              JOIN pg_policy p ON c.classid = 'pg_policy'::regclass AND p.oid = c.objid
              JOIN steward.governed g ON g.rel = p.polrelid
             WHERE c.command_tag = 'ALTER POLICY' AND p.polname LIKE 'steward\_%'
               AND NOT steward._internal_governing(p.polrelid));
        IF cardinality(faults) > 0 THEN
            hint := 'govern the table again to re-create its policies';
        END IF;
    END IF;
    FOR f IN SELECT * FROM steward._faults_of(affected) LOOP
        -- Only what this command made weaker; a foreign key between two governed tables is a
        -- fault of both: said once.
        IF NOT f.fault = ANY (known) AND NOT f.fault = ANY (faults) THEN
            faults := faults || f.fault;
            hint := coalesce(hint, f.hint);
        END IF;
    END LOOP;
    IF cardinality(faults) = 0 THEN
        RETURN;
    END IF;
    IF steward._internal_break_glass_active() THEN
        PERFORM steward._internal_record_ddl(TG_TAG, array_to_string(faults, '; '));
        RETURN;
    END IF;
    -- On record although it is refused: written and committed by a worker of its own, since
    -- this transaction's own records roll back with the refusal.
    PERFORM steward._internal_record_refusal(TG_TAG, array_to_string(faults, '; '));
    PERFORM steward._raise('ST403', format('%s refused: %s', TG_TAG, array_to_string(faults, '; ')),
                          coalesce(rtrim(hint, '.') || '. ', '') || 'To do it anyway, a member of steward_breakglass runs SELECT steward.break_glass(''<reason>'') in the same transaction first; it is recorded.');
END
$function$;

CREATE OR REPLACE FUNCTION steward._ddl_guard_start()
 RETURNS event_trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
BEGIN
    IF steward._internal_in_extension_script() THEN
        RETURN;  -- the extension's own script (its _ddl_guard passes too)
    END IF;
    PERFORM steward._internal_ddl_begin(ARRAY(
        SELECT f.fault FROM steward._faults_of(ARRAY(SELECT g.rel::oid FROM steward.governed g)) f));
END
$function$;

CREATE OR REPLACE FUNCTION steward._governance_faults(rel oid)
 RETURNS TABLE(fault text, hint text)
 LANGUAGE plpgsql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    g    steward.governed;
    cl   record;
    tbl  text;
    r    record;
    args bytea;
BEGIN
    SELECT * INTO g FROM steward.governed x WHERE x.rel = _governance_faults.rel;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    SELECT c.relrowsecurity, c.relforcerowsecurity, c.relkind, c.relispartition,
           format('%I.%I', n.nspname, c.relname) AS name
      INTO cl
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = _governance_faults.rel;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    tbl := cl.name;
    IF NOT cl.relrowsecurity THEN
        fault := format('row-level security on %s is disabled', tbl);
        hint := format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY', tbl);
        RETURN NEXT;
    END IF;
    IF NOT cl.relforcerowsecurity THEN
        fault := format('row-level security on %s is no longer forced on its owner', tbl);
        hint := format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', tbl);
        RETURN NEXT;
    END IF;
    FOR r IN
        SELECT p.name
          FROM unnest(ARRAY['steward_tenant', 'steward_select', 'steward_insert', 'steward_update',
                            'steward_delete']) AS p(name)
         WHERE NOT EXISTS (SELECT 1 FROM pg_policy y
                            WHERE y.polrelid = _governance_faults.rel AND y.polname = p.name)
    LOOP
        fault := format('policy %s on %s is gone', r.name, tbl);
        hint := format('SELECT steward.govern(%L, ...) with the options in steward.governed_tables re-creates it', tbl);
        RETURN NEXT;
    END LOOP;
    FOR r IN
        SELECT t.name
          FROM unnest(ARRAY['steward_row_guard', 'steward_update_guard', 'steward_truncate_guard']
                      || CASE WHEN g.audited OR g.events THEN ARRAY['steward_log'] ELSE '{}'::text[] END) AS t(name)
         WHERE NOT EXISTS (SELECT 1 FROM pg_trigger x
                            WHERE x.tgrelid = _governance_faults.rel AND x.tgname = t.name
                              AND x.tgenabled IN ('O', 'A'))
    LOOP
        fault := format('trigger %s on %s is %s', r.name, tbl,
                        CASE WHEN EXISTS (SELECT 1 FROM pg_trigger x
                                           WHERE x.tgrelid = _governance_faults.rel AND x.tgname = r.name)
                             THEN 'disabled' ELSE 'gone' END);
        hint := format('ALTER TABLE %s ENABLE TRIGGER %I (or govern the table again)', tbl, r.name);
        RETURN NEXT;
    END LOOP;
    -- A trigger of that name is steward's only if it runs steward's function, when and how govern
    -- attached it, for every row, with govern's arguments (CREATE OR REPLACE TRIGGER can swap any
    -- of these in one command). The arguments as pg_trigger.tgargs holds them: each NUL-ended.
    SELECT string_agg(convert_to(a, current_setting('server_encoding')) || '\x00'::bytea,
                      ''::bytea ORDER BY o)
      INTO args
      FROM unnest(steward._trigger_args(_governance_faults.rel)) WITH ORDINALITY AS t(a, o);
    FOR r IN
        SELECT x.tgname
          FROM (VALUES ('steward_row_guard', 'steward._internal_row_guard()'::regprocedure, 15, true),
                       ('steward_update_guard', 'steward._internal_update_guard()'::regprocedure, 19, true),
                       ('steward_truncate_guard', 'steward._internal_truncate_guard()'::regprocedure, 34, false),
                       ('steward_log', 'steward._internal_log_row()'::regprocedure, 29, true))
               AS e(name, fn, type, with_args)
          JOIN pg_trigger x ON x.tgrelid = _governance_faults.rel AND x.tgname = e.name
         WHERE x.tgfoid <> e.fn OR x.tgtype <> e.type OR x.tgqual IS NOT NULL
            OR x.tgattr::text <> '' OR x.tgconstraint <> 0 OR x.tgoldtable IS NOT NULL
            OR x.tgnewtable IS NOT NULL
            -- (without a primary key, the key's columns cannot be compared: that fault is its own)
            OR (EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = _governance_faults.rel AND i.indisprimary)
                AND x.tgargs IS DISTINCT FROM CASE WHEN e.with_args THEN args ELSE ''::bytea END)
    LOOP
        fault := format('trigger %s on %s is not the one govern() attached: its function, events, condition or arguments were changed',
                        r.tgname, tbl);
        hint := format('SELECT steward.govern(%L, ...) with the options in steward.governed_tables attaches it again', tbl);
        RETURN NEXT;
    END LOOP;
    RETURN QUERY SELECT * FROM steward._table_faults(_governance_faults.rel, g.tenant_column, g.versioned, g.soft_delete);
END
$function$;

-- Consumers by scope (sql/outbox.sql): poll, ack and seek run for a consumer the relay's sinks
-- name too; names under "steward." are steward's own.
CREATE OR REPLACE FUNCTION steward._consumer_at(name text, scope uuid, lock boolean)
RETURNS steward.consumers
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    k     steward.consumers;
BEGIN
    -- Names are scoped to the caller's tenant (or to the all-tenant consumers): another
    -- scope's consumer of the same name is not there for the caller, not even as a name.
    IF lock THEN
        SELECT * INTO k FROM steward.consumers x
         WHERE x.name = _consumer_at.name AND coalesce(x.tenant_id, '00000000-0000-0000-0000-000000000000'::uuid) = coalesce(scope, '00000000-0000-0000-0000-000000000000'::uuid)
           FOR UPDATE;
    ELSE
        SELECT * INTO k FROM steward.consumers x
         WHERE x.name = _consumer_at.name AND coalesce(x.tenant_id, '00000000-0000-0000-0000-000000000000'::uuid) = coalesce(scope, '00000000-0000-0000-0000-000000000000'::uuid);
    END IF;
    IF NOT FOUND THEN
        PERFORM steward._raise('ST400', format('consumer %s does not exist %s', coalesce('"' || left(name, 130) || '"', 'NULL'),
                             CASE WHEN scope IS NULL THEN 'among the all-tenant consumers'
                                  ELSE 'in tenant ' || scope END),
                              'Create it with steward.create_consumer(name, start => ''latest'' or ''earliest''); a tenant''s consumer is used from inside that tenant, an all-tenant one by a trusted role outside any tenant.');
    END IF;
    IF k.done IS NOT NULL THEN
        RETURN k;
    END IF;
    k := steward._consumer_position(k);
    IF lock THEN
        UPDATE steward.consumers x
           SET done = k.done, batch = k.batch, pos_txid = k.pos_txid, acked_max = k.acked_max
         WHERE x.name = k.name AND coalesce(x.tenant_id, '00000000-0000-0000-0000-000000000000'::uuid) = coalesce(k.tenant_id, '00000000-0000-0000-0000-000000000000'::uuid);
    END IF;
    RETURN k;
END
$$;

CREATE OR REPLACE FUNCTION steward._consumer(name text, lock boolean DEFAULT false)
RETURNS steward.consumers
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    scope uuid := steward._internal_consumer_scope();
BEGIN
    IF lower(name) LIKE 'steward.%' THEN
        PERFORM steward._raise('ST400', format('consumer "%s" is steward''s own: names under "steward." are reserved', left(name, 130)),
                              'A webhook endpoint''s cursor moves with steward.redeliver(endpoint_id, since); pick another name for your own consumer.');
    END IF;
    RETURN steward._consumer_at(name, scope, lock);
END
$$;

CREATE OR REPLACE FUNCTION steward.create_consumer(name text, start text DEFAULT 'latest')
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    scope uuid := steward._internal_consumer_scope();
BEGIN
    IF start IS NULL OR start NOT IN ('latest', 'earliest') THEN
        PERFORM steward._raise('ST400', format('steward.create_consumer: start must be ''latest'' or ''earliest'', not %L', start),
                              'To start at a moment, create the consumer and call steward.seek(name, time).');
    END IF;
    IF name IS NULL OR name !~ '^[A-Za-z0-9_.:-]{1,128}$' THEN
        PERFORM steward._raise('ST400', format('steward.create_consumer: %L is not a valid consumer name', left(name, 130)),
                              'Use letters, digits, ''_'', ''-'', ''.'' and '':'', at most 128 characters.');
    END IF;
    IF lower(name) LIKE 'steward.%' THEN
        PERFORM steward._raise('ST400', format('steward.create_consumer: names under "steward." are steward''s own, not %L', left(name, 130)),
                              'Pick a name that does not start with "steward.".');
    END IF;
    INSERT INTO steward.consumers (name, tenant_id, done, created_by)
    VALUES (create_consumer.name, scope,
            CASE start WHEN 'earliest' THEN '1:1:'::pg_snapshot ELSE steward._snapshot() END,
            session_user);
EXCEPTION WHEN unique_violation THEN
    PERFORM steward._raise('ST400', format('consumer "%s" already exists', name),
                          'Use it, move it with steward.seek(), or pick another name.');
END
$$;

CREATE OR REPLACE FUNCTION steward.poll(consumer text, max_events int DEFAULT 100)
RETURNS SETOF steward.outbox
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ BEGIN RETURN QUERY SELECT * FROM steward._poll(steward._consumer(consumer), max_events); END $$;

CREATE OR REPLACE FUNCTION steward._poll(k steward.consumers, max_events int, ahead boolean DEFAULT false)
RETURNS SETOF steward.outbox
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- Always walk the (txid, id) index: with stale statistics the planner may otherwise read far
-- more of the log than a batch holds.
SET enable_seqscan = off
SET enable_bitmapscan = off
AS $$
DECLARE
    fresh  steward.consumers;
    n      bigint := 0;
    got    bigint;
    txs    xid8[];
    upto   pg_snapshot;
    base   pg_snapshot;
BEGIN
    IF max_events IS NULL OR max_events < 1 OR max_events > 10000 THEN
        PERFORM steward._raise('ST400', format('steward.poll: max_events must be between 1 and 10000, not %s', max_events),
                              'Poll in batches of 100 to 1000.');
    END IF;
    FOR attempt IN 1..3 LOOP
        IF k.batch IS NOT NULL THEN
            -- The rest of the transaction being delivered.
            IF k.pos_txid IS NOT NULL THEN
                RETURN QUERY SELECT o.* FROM steward.outbox o
                  WHERE o.txid = k.pos_txid AND o.id > k.pos_id
                    AND (k.tenant_id IS NULL OR o.tenant_id = k.tenant_id)
                  ORDER BY o.id LIMIT max_events;
                GET DIAGNOSTICS got = ROW_COUNT;
                n := n + got;
            END IF;
            -- Then the next transactions, whole; the last as far as max_events goes.
            IF n < max_events THEN
                txs := ARRAY(SELECT b.txid::text::xid8
                               FROM steward._internal_batch_next(k.tenant_id, k.done::text, k.batch::text,
                                                                 k.pos_txid::text, max_events - n) b);
                IF cardinality(txs) > 1 THEN
                    RETURN QUERY SELECT o.* FROM unnest(txs[1:cardinality(txs) - 1]) WITH ORDINALITY t(txid, ord)
                      JOIN steward.outbox o ON o.txid = t.txid
                     WHERE (k.tenant_id IS NULL OR o.tenant_id = k.tenant_id)
                     ORDER BY t.ord, o.id;
                    GET DIAGNOSTICS got = ROW_COUNT;
                    n := n + got;
                END IF;
                IF cardinality(txs) > 0 THEN
                    RETURN QUERY SELECT o.* FROM steward.outbox o
                      WHERE o.txid = txs[cardinality(txs)]
                        AND (k.tenant_id IS NULL OR o.tenant_id = k.tenant_id)
                      ORDER BY o.id LIMIT max_events - n;
                    GET DIAGNOSTICS got = ROW_COUNT;
                    n := n + got;
                END IF;
            END IF;
            IF n > 0 OR cardinality(txs) > 0 THEN
                RETURN;
            END IF;
        END IF;
        IF ahead THEN
            RETURN;
        END IF;
        -- No batch, or it is delivered: the next one is what has become visible since.
        upto := steward._snapshot();
        base := coalesce(k.batch, k.done);
        IF NOT EXISTS (SELECT 1 FROM steward._events_between(k.tenant_id, base, upto)) THEN
            RETURN;
        END IF;
        -- Another poll or an ack of this consumer may have moved it meanwhile: then again.
        fresh := steward._consumer_at(k.name, k.tenant_id, lock => true);
        IF (fresh.done::text, fresh.batch::text, fresh.pos_txid, fresh.pos_id)
           IS DISTINCT FROM (k.done::text, k.batch::text, k.pos_txid, k.pos_id) THEN
            k := fresh;
            CONTINUE;
        END IF;
        UPDATE steward.consumers x SET done = base, batch = upto, pos_txid = NULL, pos_id = 0
         WHERE x.name = k.name AND coalesce(x.tenant_id, '00000000-0000-0000-0000-000000000000'::uuid) = coalesce(k.tenant_id, '00000000-0000-0000-0000-000000000000'::uuid);
        k.done := base;
        k.batch := upto;
        k.pos_txid := NULL;
        k.pos_id := 0;
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION steward.ack(consumer text, through_id bigint)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ BEGIN PERFORM steward._ack(steward._consumer(consumer, lock => true), through_id); END $$;

CREATE OR REPLACE FUNCTION steward._ack(k steward.consumers, through_id bigint)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
SET enable_bitmapscan = off
AS $$
DECLARE
    t    xid8;
    cand xid8[];
BEGIN
    IF k.batch IS NOT NULL AND through_id IS NOT NULL THEN
        -- In the transaction being delivered, after the position...
        IF k.pos_txid IS NOT NULL THEN
            SELECT c.txid INTO t FROM steward.change_log c
             WHERE c.txid = k.pos_txid AND c.id = through_id AND c.id > k.pos_id AND c.evented
               AND (k.tenant_id IS NULL OR c.tenant_id = k.tenant_id);
        END IF;
        -- ... or in the transactions after it that poll() can have returned.
        IF t IS NULL THEN
            cand := steward._internal_batch_find(k.tenant_id, k.done::text, k.batch::text,
                                                 k.pos_txid::text, through_id)::text[]::xid8[];
            SELECT c.txid INTO t FROM steward.change_log c
             WHERE c.txid = ANY (cand) AND c.id = through_id AND c.evented
               AND (k.tenant_id IS NULL OR c.tenant_id = k.tenant_id);
        END IF;
    END IF;
    IF t IS NULL THEN
        -- Behind the position: acked already (a relay may ack twice). In this batch, an event of
        -- a transaction at or before the position's; before it, any id up to the highest acked.
        IF through_id BETWEEN 1 AND k.acked_max THEN
            RETURN;
        END IF;
        cand := steward._internal_batch_behind(k.tenant_id, k.done::text, k.batch::text,
                                               k.pos_txid::text, through_id)::text[]::xid8[];
        IF EXISTS (SELECT 1 FROM steward.change_log c
                       WHERE c.txid = ANY (cand)
                         AND c.id = through_id AND c.evented
                         AND (k.tenant_id IS NULL OR c.tenant_id = k.tenant_id)
                         AND (c.txid <> k.pos_txid OR c.id <= k.pos_id)) THEN
            RETURN;
        END IF;
        PERFORM steward._raise('ST400', format('steward.ack: event %s is not an event consumer "%s" has read', coalesce(through_id::text, 'NULL'), k.name),
                              'Ack the id of the last event poll() returned.');
    END IF;
    -- The batch's last event closes it: everything visible in its snapshot is delivered.
    IF NOT EXISTS (SELECT 1 FROM steward.change_log c
                    WHERE c.txid = t AND c.id > through_id AND c.evented
                      AND (k.tenant_id IS NULL OR c.tenant_id = k.tenant_id))
       AND NOT EXISTS (SELECT 1 FROM steward._internal_batch_next(k.tenant_id, k.done::text, k.batch::text,
                                                                    t::text, 1)) THEN
        UPDATE steward.consumers x
           SET done = k.batch, batch = NULL, pos_txid = NULL, pos_id = 0,
               acked_max = greatest(x.acked_max, through_id), acked_at = now()
         WHERE x.name = k.name AND coalesce(x.tenant_id, '00000000-0000-0000-0000-000000000000'::uuid) = coalesce(k.tenant_id, '00000000-0000-0000-0000-000000000000'::uuid);
        RETURN;
    END IF;
    UPDATE steward.consumers x
       SET pos_txid = t, pos_id = through_id, acked_max = greatest(x.acked_max, through_id),
           acked_at = now()
     WHERE x.name = k.name AND coalesce(x.tenant_id, '00000000-0000-0000-0000-000000000000'::uuid) = coalesce(k.tenant_id, '00000000-0000-0000-0000-000000000000'::uuid);
END
$$;

CREATE OR REPLACE FUNCTION steward.seek(consumer text, to_time timestamptz)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ BEGIN PERFORM steward._seek(steward._consumer(consumer, lock => true), to_time); END $$;

CREATE OR REPLACE FUNCTION steward._seek(k steward.consumers, to_time timestamptz)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    upto pg_snapshot := steward._snapshot();
    x    numeric;
    d    pg_snapshot := k.done;
    goal pg_snapshot;
BEGIN
    IF to_time IS NULL THEN
        PERFORM steward._raise('ST400', format('steward.seek: consumer "%s" needs a time to seek to', k.name),
                              'Pass a timestamptz, e.g. now() - interval ''1 hour''.');
    END IF;
    -- Every transaction below the first that wrote an event at or after the time counts as
    -- delivered; so does nothing still running.
    SELECT min(c.txid)::text::numeric INTO x FROM steward.change_log c
     WHERE c.evented AND c.occurred_at >= to_time
       AND (k.tenant_id IS NULL OR c.tenant_id = k.tenant_id);
    IF x IS NULL THEN
        goal := upto;
    ELSE
        x := greatest(least(x, pg_snapshot_xmin(upto)::text::numeric), 1);
        IF pg_snapshot_xmax(d)::text::numeric <= x THEN
            -- Forward (everything delivered stays delivered): what is below x is skipped.
            goal := format('%1$s:%1$s:', x)::pg_snapshot;
        ELSE
            -- Back: delivered stays only what was delivered and is below x.
            goal := format('%s:%s:%s',
                           least(pg_snapshot_xmin(d)::text::numeric, x),
                           least(pg_snapshot_xmax(d)::text::numeric, x),
                           coalesce((SELECT string_agg(t::text, ',' ORDER BY t)
                                       FROM pg_snapshot_xip(d) AS t
                                      WHERE t::text::numeric < x), ''))::pg_snapshot;
        END IF;
    END IF;
    UPDATE steward.consumers c
       SET done = goal, batch = NULL, pos_txid = NULL, pos_id = 0
     WHERE c.name = k.name AND coalesce(c.tenant_id, '00000000-0000-0000-0000-000000000000'::uuid) = coalesce(k.tenant_id, '00000000-0000-0000-0000-000000000000'::uuid);
END
$$;

CREATE OR REPLACE FUNCTION steward._consumer_lag()
RETURNS TABLE (consumer text, tenant_id uuid, behind bigint, oldest_unacked_at timestamptz,
               oldest_unacked_age interval, acked_at timestamptz)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
SET enable_bitmapscan = off
AS $$
DECLARE
    raw  steward.consumers;
    k    steward.consumers;
    upto pg_snapshot := steward._snapshot(persist => false);
    txs  xid8[];
    n1   bigint; t1 timestamptz;
    n2   bigint; t2 timestamptz;
BEGIN
    -- (A relay reads every consumer's lag: its sinks' are among them.)
    FOR raw IN SELECT * FROM steward.consumers x
                WHERE steward._internal_consumer_visible(x.tenant_id)
                   OR steward._is_relay()
                ORDER BY x.name LOOP
        k := steward._consumer_position(raw);
        SELECT count(*), min(e.occurred_at) INTO n1, t1
          FROM steward._events_between(k.tenant_id, coalesce(k.batch, k.done), upto) e;
        n2 := 0; t2 := NULL;
        IF k.batch IS NOT NULL THEN
            txs := ARRAY(SELECT b.txid::text::xid8
                           FROM steward._internal_batch_next(k.tenant_id, k.done::text, k.batch::text,
                                                             k.pos_txid::text, 9223372036854775807) b);
            SELECT count(*), min(c.occurred_at) INTO n2, t2 FROM steward.change_log c
             WHERE (c.txid = ANY (txs) OR (c.txid = k.pos_txid AND c.id > k.pos_id))
               AND c.evented AND (k.tenant_id IS NULL OR c.tenant_id = k.tenant_id);
        END IF;
        consumer := k.name;
        tenant_id := k.tenant_id;
        behind := n1 + n2;
        oldest_unacked_at := least(t1, t2);
        oldest_unacked_age := now() - least(t1, t2);
        acked_at := k.acked_at;
        RETURN NEXT;
    END LOOP;
END
$$;

-- The webhook secrets' random source (extension/src/relay.rs).
CREATE FUNCTION steward._internal_webhook_secret()
 RETURNS text
 LANGUAGE c
 STRICT PARALLEL RESTRICTED
AS '$libdir/steward', $function$_internal_webhook_secret_wrapper$function$;

-- The guards that also write the record, for the statements whose records the guards write
-- (extension/src/changelog.rs, ADR 002 as amended by issue 21): swapped in by the executor hook,
-- in one statement's copy of a table's trigger list, never attached.
CREATE FUNCTION steward._internal_row_guard_and_log()
 RETURNS trigger
 LANGUAGE c
AS '$libdir/steward', $function$_internal_row_guard_and_log_wrapper$function$;
CREATE FUNCTION steward._internal_update_guard_and_log()
 RETURNS trigger
 LANGUAGE c
AS '$libdir/steward', $function$_internal_update_guard_and_log_wrapper$function$;

-- BEGIN relay.sql (the relay's tables and functions, verbatim)
-- The relay's side of the database (steward-service relay, docs/relay-guide.md, ADR 013):
-- webhook endpoints and their secrets, the append-only record of delivery attempts, and the
-- leases by which several relays share the sinks. The outbox is the relay's only queue: each
-- sink reads it through a steward consumer (NATS: the all-tenant consumer the relay names,
-- `--consumer`; a webhook endpoint: its own cursor in its tenant, `steward.webhook.<id>`), so
-- what a sink has not acknowledged is still in the log, in commit order, after a crash.

-- Who may run a relay: read every tenant's events, the endpoints and their secrets, and record
-- attempts. Roles are the cluster's, so the role may already exist from another database.
DO $$
BEGIN
    CREATE ROLE steward_relay NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;

CREATE TABLE steward.webhooks (
    endpoint_id     uuid PRIMARY KEY,
    tenant_id       uuid NOT NULL,
    url             text NOT NULL,
    event_types     text[],
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    created_by      text NOT NULL,
    -- Set by the relay on 410 Gone; redeliver() clears it.
    disabled_at     timestamptz,
    disabled_reason text,
    -- Attempts before this moment do not count against the retry budget (redeliver()).
    redelivered_at  timestamptz NOT NULL DEFAULT '-infinity'
);
CREATE INDEX webhooks_tenant ON steward.webhooks (tenant_id);
REVOKE ALL ON steward.webhooks FROM PUBLIC;
GRANT SELECT ON steward.webhooks TO steward_relay;
SELECT pg_catalog.pg_extension_config_dump('steward.webhooks', '');

-- The signing secrets: only the relay reads them (and the tenant, once, from create_webhook).
CREATE TABLE steward.webhook_secrets (
    endpoint_id uuid PRIMARY KEY REFERENCES steward.webhooks ON DELETE CASCADE,
    secret      text NOT NULL
);
REVOKE ALL ON steward.webhook_secrets FROM PUBLIC;
GRANT SELECT ON steward.webhook_secrets TO steward_relay;
SELECT pg_catalog.pg_extension_config_dump('steward.webhook_secrets', '');

-- Every delivery attempt, append-only: no UPDATE, DELETE or TRUNCATE by anyone (the guard
-- below fires ALWAYS). An endpoint's attempts outlive the endpoint.
CREATE TABLE steward.webhook_attempts (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    endpoint_id uuid NOT NULL,
    tenant_id   uuid NOT NULL,
    event_id    uuid NOT NULL,
    attempt     integer NOT NULL CHECK (attempt >= 1),
    status      text NOT NULL CHECK (status IN ('delivered', 'failed', 'dead', 'gone')),
    http_status integer,
    error       text,
    at          timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    relay       text NOT NULL
);
CREATE INDEX webhook_attempts_event ON steward.webhook_attempts (endpoint_id, event_id, id);
CREATE INDEX webhook_attempts_tenant ON steward.webhook_attempts (tenant_id, at);
REVOKE ALL ON steward.webhook_attempts FROM PUBLIC;
-- (The relay reads an event's earlier attempts after a restart: its retry budget.)
GRANT SELECT ON steward.webhook_attempts TO steward_relay;
SELECT pg_catalog.pg_extension_config_dump('steward.webhook_attempts', '');

CREATE FUNCTION steward._append_only_guard()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM steward._raise('ST403', format('%I.%I is append-only: %s through SQL is forbidden',
                                           TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP),
                          'Delivery attempts are a record: they are only ever added, by the relay.');
    RETURN NULL;
END
$$;
CREATE TRIGGER steward_append_only BEFORE UPDATE OR DELETE ON steward.webhook_attempts
    FOR EACH ROW EXECUTE FUNCTION steward._append_only_guard();
CREATE TRIGGER steward_append_only_truncate BEFORE TRUNCATE ON steward.webhook_attempts
    FOR EACH STATEMENT EXECUTE FUNCTION steward._append_only_guard();
ALTER TABLE steward.webhook_attempts ENABLE ALWAYS TRIGGER steward_append_only,
    ENABLE ALWAYS TRIGGER steward_append_only_truncate;

-- Which relay holds which sink: a sink is delivered by one relay at a time, which keeps its
-- order. `fence` changes whenever the sink changes hands, and every poll and ack names it: a
-- relay that lost a sink cannot move its cursor. Only the relays' own functions write here (no
-- tenant's transaction can hold a lock a relay waits for).
CREATE TABLE steward.relay_leases (
    sink       text PRIMARY KEY,
    relay      text NOT NULL,
    fence      bigint NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE SEQUENCE steward.relay_fences;
REVOKE ALL ON steward.relay_leases FROM PUBLIC;
REVOKE ALL ON SEQUENCE steward.relay_fences FROM PUBLIC;
GRANT SELECT ON steward.relay_leases TO steward_relay;
-- The relays alive, by their last claim: the sinks are shared among them.
CREATE TABLE steward.relays (
    relay   text PRIMARY KEY,
    seen_at timestamptz NOT NULL
);
REVOKE ALL ON steward.relays FROM PUBLIC;
GRANT SELECT ON steward.relays TO steward_relay;

-- Whether the session's role is a member of steward_relay (false if the role was dropped).
CREATE FUNCTION steward._is_relay()
RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = 'steward_relay') THEN
        RETURN false;
    END IF;
    RETURN pg_has_role(session_user, 'steward_relay', 'MEMBER');
END
$$;

-- Whose endpoints and attempts the caller sees: NULL (all) for a superuser, a trusted role or a
-- relay outside any tenant; otherwise the tenant it is in (ST001 without one: never all rows).
CREATE FUNCTION steward._relay_scope()
RETURNS uuid
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t uuid;
BEGIN
    BEGIN
        t := steward._internal_consumer_scope();
    EXCEPTION WHEN SQLSTATE 'ST001' THEN
        IF steward._is_relay() THEN
            RETURN NULL;
        END IF;
        RAISE;
    END;
    RETURN t;
END
$$;

-- Raises 42501 unless the session's role is a member of steward_relay (or a superuser).
CREATE FUNCTION steward._relay_check(what text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT steward._is_relay() THEN
        PERFORM steward._raise('42501', format('%s: role %s is not a member of steward_relay', what, session_user),
                              'The relay connects as a role granted steward_relay: GRANT steward_relay TO <relay role>.');
    END IF;
END
$$;

-- True, or ST001 for a caller outside any tenant that may not see all: called where no row is
-- referenced, it is evaluated once before anything is read (an empty table included).
CREATE FUNCTION steward._relay_scope_known()
RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM steward._relay_scope();
    RETURN true;
END
$$;

CREATE VIEW steward.webhook_endpoints WITH (security_barrier = true) AS
SELECT w.endpoint_id, w.tenant_id, w.url, w.event_types, w.created_at, w.created_by,
       w.disabled_at, w.disabled_reason
  FROM steward.webhooks w
 WHERE steward._relay_scope_known()
   AND w.tenant_id = coalesce((SELECT steward._relay_scope()), w.tenant_id);
GRANT SELECT ON steward.webhook_endpoints TO PUBLIC;

CREATE VIEW steward.webhook_deliveries WITH (security_barrier = true) AS
SELECT a.id, a.endpoint_id, a.tenant_id, a.event_id, a.attempt, a.status, a.http_status,
       a.error, a.at, a.relay
  FROM steward.webhook_attempts a
 WHERE steward._relay_scope_known()
   AND a.tenant_id = coalesce((SELECT steward._relay_scope()), a.tenant_id);
GRANT SELECT ON steward.webhook_deliveries TO PUBLIC;

-- A webhook endpoint of the caller's tenant: every later event of the tenant (of `event_types`,
-- when given) is posted to `url`, signed with the secret returned here (Standard Webhooks).
-- The secret is shown this once; only the relay reads it afterwards.
CREATE FUNCTION steward.create_webhook(url text, event_types text[] DEFAULT NULL)
RETURNS TABLE (endpoint_id uuid, secret text)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant uuid := steward.current_tenant();
    id     uuid := gen_random_uuid();
    s      text := steward._internal_webhook_secret();
BEGIN
    -- A host name (letters, digits, '-' and '.') or an address ([IPv6] included), a port up to
    -- 65535, then a path, query or fragment of visible characters.
    IF url IS NULL OR length(url) > 2048
       OR url !~ '^https?://([A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*\.?|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?([/?#][!-~]*)?$'
       OR coalesce(substring(url from '^https?://(?:[^/?#\[\]:]+|\[[^]]+\]):([0-9]+)')::int, 1) NOT BETWEEN 1 AND 65535 THEN
        PERFORM steward._raise('ST400', format('steward.create_webhook: %L is not an http(s) URL', left(url, 200)),
                              'Give an absolute http:// or https:// URL without credentials, at most 2048 characters, e.g. https://hooks.example.com/steward.');
    END IF;
    IF event_types IS NOT NULL AND (cardinality(event_types) = 0 OR cardinality(event_types) > 100
        OR EXISTS (SELECT 1 FROM unnest(event_types) e WHERE e IS NULL OR e !~ '^[^[:space:][:cntrl:]]{1,200}$')) THEN
        PERFORM steward._raise('ST400', format('steward.create_webhook: event_types %L must be 1 to 100 event types, none empty or NULL', event_types),
                              'Pass NULL for every event type, or e.g. ARRAY[''orders.created''].');
    END IF;
    -- Each endpoint is a task in every relay: a tenant gets a bounded number.
    PERFORM pg_advisory_xact_lock(hashtextextended('steward.create_webhook:' || tenant, 0));
    IF (SELECT count(*) FROM steward.webhooks w WHERE w.tenant_id = tenant) >= 100 THEN
        PERFORM steward._raise('ST400', format('steward.create_webhook: tenant %s already has 100 webhook endpoints', tenant),
                              'Delete one (steward.delete_webhook) or subscribe an existing endpoint to more event types.');
    END IF;
    INSERT INTO steward.webhooks (endpoint_id, tenant_id, url, event_types, created_by)
    VALUES (id, tenant, url, (SELECT array_agg(DISTINCT e ORDER BY e) FROM unnest(event_types) e), session_user);
    INSERT INTO steward.webhook_secrets VALUES (id, s);
    -- Its cursor: events from now on, in its tenant's commit order.
    INSERT INTO steward.consumers (name, tenant_id, done, created_by)
    VALUES ('steward.webhook.' || id, tenant, steward._snapshot(), session_user);
    endpoint_id := id;
    secret := s;
    RETURN NEXT;
END
$$;

-- The caller's tenant's endpoint `id` (locked), or ST400 naming it.
CREATE FUNCTION steward._webhook(id uuid)
RETURNS steward.webhooks
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    w steward.webhooks;
BEGIN
    SELECT * INTO w FROM steward.webhooks x
     WHERE x.endpoint_id = id AND x.tenant_id = steward.current_tenant() FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM steward._raise('ST400', format('webhook endpoint %s does not exist in tenant %s', coalesce(id::text, 'NULL'), steward.current_tenant()),
                              'SELECT endpoint_id, url FROM steward.webhook_endpoints lists this tenant''s endpoints.');
    END IF;
    RETURN w;
END
$$;

-- Removes the endpoint, its secret and its cursor; its attempts stay on record.
CREATE FUNCTION steward.delete_webhook(id uuid)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    w steward.webhooks := steward._webhook(id);
BEGIN
    DELETE FROM steward.webhooks x WHERE x.endpoint_id = w.endpoint_id;
    DELETE FROM steward.consumers k
     WHERE k.name = 'steward.webhook.' || w.endpoint_id AND k.tenant_id = w.tenant_id;
    -- (Its lease, if a relay holds one, is void: the next claim removes it.)
END
$$;

-- Sends again, in order, every event of the endpoint that occurred at or after `since` (and
-- after the endpoint was created): the
-- dead letters among them, and the ones delivered before (receivers deduplicate on webhook-id).
-- Enables the endpoint again if a 410 had disabled it, and restarts each event's retry budget.
CREATE FUNCTION steward.redeliver(endpoint_id uuid, since timestamptz)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    w steward.webhooks := steward._webhook(endpoint_id);
BEGIN
    IF since IS NULL OR since > now() THEN
        PERFORM steward._raise('ST400', format('steward.redeliver: endpoint %s needs a time in the past to redeliver from, not %s', w.endpoint_id, coalesce(since::text, 'NULL')),
                              'Pass e.g. now() - interval ''1 day''.');
    END IF;
    -- Never from before the endpoint existed.
    PERFORM steward._seek(steward._consumer_at('steward.webhook.' || w.endpoint_id, w.tenant_id, true),
                          greatest(since, w.created_at));
    -- (The relay holding the endpoint reads on from the new position; steward's tables the
    -- relays lock are never written here, so a tenant's open transaction cannot stall them.)
    UPDATE steward.webhooks x SET disabled_at = NULL, disabled_reason = NULL, redelivered_at = clock_timestamp()
     WHERE x.endpoint_id = w.endpoint_id;
END
$$;

-- The consumer a sink reads: 'nats:<consumer>' the all-tenant consumer of that name (created,
-- from the earliest retained event, if missing), 'webhook:<endpoint_id>' the endpoint's cursor.
CREATE FUNCTION steward._sink_consumer(sink text, lock boolean)
RETURNS steward.consumers
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    w steward.webhooks;
BEGIN
    IF sink LIKE 'webhook:%' THEN
        SELECT * INTO w FROM steward.webhooks x WHERE x.endpoint_id::text = substr(sink, 9);
        IF NOT FOUND THEN
            PERFORM steward._raise('ST409', format('sink %s: the webhook endpoint is gone', sink),
                                  'The relay drops the sink; nothing to do.');
        END IF;
        RETURN steward._consumer_at('steward.webhook.' || w.endpoint_id, w.tenant_id, lock);
    END IF;
    RETURN steward._consumer_at(substr(sink, 6), NULL, lock);
END
$$;

-- Raises ST409 unless `relay` holds `sink` under `fence` (the lease row is locked against a
-- take-over until the caller's transaction ends).
CREATE FUNCTION steward._relay_holds(sink text, relay text, fence bigint)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM steward._relay_check('steward.relay_poll/relay_ack');
    PERFORM 1 FROM steward.relay_leases l
      WHERE l.sink = _relay_holds.sink AND l.relay = _relay_holds.relay AND l.fence = _relay_holds.fence
        FOR SHARE;
    IF NOT FOUND THEN
        PERFORM steward._raise('ST409', format('relay %s no longer holds sink %s under fence %s', relay, sink, fence),
                              'Another relay took the sink over, or its cursor was moved (redeliver): claim again and start from the cursor.');
    END IF;
END
$$;

-- A relay's claim, every few seconds: it says it is alive and which sinks it can serve
-- (`sinks`: 'nats:<consumer>' if it publishes to NATS; every enabled webhook endpoint is a sink
-- too), renews the leases it holds and takes free or expired ones, up to its fair share of the
-- live relays. Returns every sink it holds, with its fence, and whether it holds more than its
-- share (it then finishes the sink's batch and releases it, steward.relay_release).
CREATE FUNCTION steward.relay_claim(relay text, sinks text[], ttl interval)
RETURNS TABLE (sink text, fence bigint, surplus boolean)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    wanted text[];
    maker  text;
    live   bigint;
    fair   bigint;
    mine   bigint;
    s      text;
BEGIN
    PERFORM steward._relay_check('steward.relay_claim');
    IF relay IS NULL OR relay !~ '^[A-Za-z0-9_.:-]{1,128}$' OR ttl IS NULL OR ttl < interval '1 second'
       OR EXISTS (SELECT 1 FROM unnest(sinks) x
                   WHERE x IS NULL OR x !~ '^nats:[A-Za-z0-9_.:-]{1,128}$' OR lower(x) LIKE 'nats:steward.%') THEN
        PERFORM steward._raise('ST400', format('steward.relay_claim: relay %L, sinks %L, ttl %s', relay, sinks, ttl),
                              'A relay names itself with letters, digits, ''_'', ''-'', ''.'' and '':''; its sinks are ''nats:<consumer>'' (not under "steward."); the ttl is at least a second.');
    END IF;
    -- One claim at a time: the shares are computed on what the others hold. (An advisory lock,
    -- not a table lock: no tenant's transaction can hold it, or queue the relays' polls behind it.)
    PERFORM pg_advisory_xact_lock(hashtextextended('steward.relay_claim', 0));
    INSERT INTO steward.relays AS r VALUES (relay, clock_timestamp())
        ON CONFLICT ON CONSTRAINT relays_pkey DO UPDATE SET seen_at = excluded.seen_at;
    DELETE FROM steward.relays r WHERE r.seen_at < clock_timestamp() - ttl * 10;
    FOREACH s IN ARRAY coalesce(sinks, '{}') LOOP
        SELECT k.created_by INTO maker FROM steward.consumers k WHERE k.name = substr(s, 6) AND k.tenant_id IS NULL;
        IF NOT FOUND THEN
            INSERT INTO steward.consumers (name, tenant_id, done, created_by)
            VALUES (substr(s, 6), NULL, '1:1:'::pg_snapshot, session_user);
        -- Another service's consumer is not the relay's to move.
        ELSIF NOT EXISTS (SELECT 1 FROM pg_roles r
                           WHERE r.rolname = maker AND pg_has_role(r.oid, 'steward_relay', 'MEMBER')) THEN
            PERFORM steward._raise('ST400', format('steward.relay_claim: consumer "%s" was created by %s, not by a relay', substr(s, 6), maker),
                                  'Give the relay a consumer of its own (--consumer), which it creates on its first claim.');
        END IF;
    END LOOP;
    wanted := ARRAY(SELECT DISTINCT x FROM unnest(coalesce(sinks, '{}')) x
                    UNION
                    SELECT 'webhook:' || w.endpoint_id
                      FROM steward.webhooks w JOIN steward.tenants t ON t.tenant_id = w.tenant_id
                     WHERE w.disabled_at IS NULL AND t.status = 'active');
    -- Leases of endpoints deleted or disabled, or of a tenant no longer active, are void (its
    -- events wait in the log until it is active again).
    DELETE FROM steward.relay_leases l
     WHERE l.sink LIKE 'webhook:%' AND NOT l.sink = ANY (wanted);
    live := (SELECT count(*) FROM steward.relays r WHERE r.seen_at >= clock_timestamp() - ttl);
    fair := ceil(cardinality(wanted)::numeric / greatest(live, 1));
    UPDATE steward.relay_leases l SET expires_at = clock_timestamp() + ttl
     WHERE l.relay = relay_claim.relay AND l.sink = ANY (wanted);
    mine := (SELECT count(*) FROM steward.relay_leases l WHERE l.relay = relay_claim.relay);
    FOR s IN SELECT x FROM unnest(wanted) x
              WHERE NOT EXISTS (SELECT 1 FROM steward.relay_leases l
                                 WHERE l.sink = x AND l.expires_at > clock_timestamp())
              ORDER BY x
    LOOP
        EXIT WHEN mine >= fair;
        INSERT INTO steward.relay_leases AS l VALUES (s, relay, nextval('steward.relay_fences'), clock_timestamp() + ttl)
            ON CONFLICT ON CONSTRAINT relay_leases_pkey
            DO UPDATE SET relay = excluded.relay, fence = excluded.fence, expires_at = excluded.expires_at;
        mine := mine + 1;
    END LOOP;
    RETURN QUERY
        SELECT l.sink, l.fence, (row_number() OVER (ORDER BY l.sink DESC)) <= mine - fair
          FROM steward.relay_leases l WHERE l.relay = relay_claim.relay ORDER BY l.sink;
END
$$;

-- Gives a sink up (a relay holding more than its share, or shutting down): the next claim of
-- any relay takes it. With a NULL sink, the relay leaves: every lease it holds goes, and it no
-- longer counts among the live relays.
CREATE FUNCTION steward.relay_release(relay text, sink text, fence bigint)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM steward._relay_check('steward.relay_release');
    IF sink IS NULL THEN
        DELETE FROM steward.relay_leases l WHERE l.relay = relay_release.relay;
        DELETE FROM steward.relays r WHERE r.relay = relay_release.relay;
        RETURN;
    END IF;
    DELETE FROM steward.relay_leases l
     WHERE l.sink = relay_release.sink AND l.relay = relay_release.relay AND l.fence = relay_release.fence;
END
$$;

-- The next events of a sink the caller holds, as poll() returns them.
CREATE FUNCTION steward.relay_poll(sink text, relay text, fence bigint, max_events int)
RETURNS SETOF steward.outbox
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM steward._relay_holds(sink, relay, fence);
    RETURN QUERY SELECT * FROM steward._poll(steward._sink_consumer(sink, false), max_events);
END
$$;

-- The events after (after_txid, after_id), an event relay_poll or relay_poll_ahead returned and
-- the sink has not acked yet, in the batch being delivered: a relay reads them while the events
-- before are in flight. Nothing, once the batch is read to its end (relay_poll, after the ack,
-- opens the next).
CREATE FUNCTION steward.relay_poll_ahead(sink text, relay text, fence bigint, after_txid xid8,
                                         after_id bigint, max_events int)
RETURNS SETOF steward.outbox
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    k steward.consumers;
BEGIN
    PERFORM steward._relay_holds(sink, relay, fence);
    k := steward._sink_consumer(sink, false);
    IF k.batch IS NULL OR after_txid IS NULL OR after_id IS NULL
       OR NOT EXISTS (SELECT 1 FROM steward.change_log c
                       WHERE c.txid = after_txid AND c.id = after_id AND c.evented
                         AND (k.tenant_id IS NULL OR c.tenant_id = k.tenant_id)) THEN
        RETURN;
    END IF;
    -- Only a position ack() would move the cursor to now: in the transaction being delivered,
    -- after the position, or in a transaction after it that poll() can have returned. Anything
    -- else (the cursor moved meanwhile) reads nothing ahead: the relay polls from the cursor.
    IF NOT ((k.pos_txid IS NOT NULL AND after_txid = k.pos_txid AND after_id > k.pos_id)
            OR after_txid = ANY (steward._internal_batch_find(k.tenant_id, k.done::text, k.batch::text,
                                                              k.pos_txid::text, after_id)::text[]::xid8[])) THEN
        RETURN;
    END IF;
    k.pos_txid := after_txid;
    k.pos_id := after_id;
    RETURN QUERY SELECT * FROM steward._poll(k, max_events, ahead => true);
END
$$;

-- What a sink has taken: the attempts made (a JSON array of {event_id, attempt, status,
-- http_status, error, at}), the sink's cursor moved past `through_id` (NULL: not moved), and,
-- with `disable`, a webhook endpoint disabled for that reason (410 Gone). One transaction, under
-- the caller's lease. Returns whether the cursor now stands at `through_id` (false: it was
-- behind it already, moved by someone else, e.g. a seek; what the relay read ahead is void).
CREATE FUNCTION steward.relay_ack(sink text, relay text, fence bigint, through_id bigint,
                                  attempts jsonb DEFAULT NULL, disable text DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    k     steward.consumers;
    after steward.consumers;
BEGIN
    PERFORM steward._relay_holds(sink, relay, fence);
    k := steward._sink_consumer(sink, true);
    IF attempts IS NOT NULL THEN
        IF k.tenant_id IS NULL OR jsonb_typeof(attempts) <> 'array' THEN
            PERFORM steward._raise('ST400', format('steward.relay_ack: sink %s records no attempts of this shape: %s', sink, left(attempts::text, 200)),
                                  'Attempts are recorded for webhook sinks, as a JSON array.');
        END IF;
        INSERT INTO steward.webhook_attempts (endpoint_id, tenant_id, event_id, attempt, status, http_status, error, at, relay)
        SELECT substr(sink, 9)::uuid, k.tenant_id, a.event_id, a.attempt, a.status, a.http_status,
               left(a.error, 1000), coalesce(a.at, clock_timestamp()), relay
          FROM jsonb_to_recordset(attempts) AS a(event_id uuid, attempt integer, status text,
                                                 http_status integer, error text, at timestamptz);
    END IF;
    IF disable IS NOT NULL AND sink LIKE 'webhook:%' THEN
        UPDATE steward.webhooks w SET disabled_at = clock_timestamp(), disabled_reason = left(disable, 1000)
         WHERE w.endpoint_id::text = substr(sink, 9);
        DELETE FROM steward.relay_leases l WHERE l.sink = relay_ack.sink;
    END IF;
    IF through_id IS NULL THEN
        RETURN false;
    END IF;
    PERFORM steward._ack(k, through_id);
    after := steward._sink_consumer(sink, false);
    -- (An ack of what is behind the cursor changes nothing.)
    RETURN (after.done::text, after.batch::text, after.pos_txid, after.pos_id)
           IS DISTINCT FROM (k.done::text, k.batch::text, k.pos_txid, k.pos_id);
END
$$;
-- END relay.sql

-- The DDL guard keeps the delivery attempts' append-only guards too.
CREATE OR REPLACE FUNCTION steward._faults_of(rels oid[])
RETURNS TABLE (fault text, hint text)
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT f.fault, f.hint
      FROM (SELECT DISTINCT r FROM unnest(rels) AS r) AS a
      JOIN steward.governed g ON g.rel::oid = a.r
     CROSS JOIN LATERAL steward._governance_faults(a.r) AS f
     WHERE NOT steward._internal_governing(a.r)
    UNION ALL
    SELECT format('the append-only guard %s of %s is gone or not ALWAYS', x.name, v.tbl),
           'ALTER TABLE ' || v.tbl || ' ENABLE ALWAYS TRIGGER ' || x.name
      FROM unnest(steward._append_only_tables() || ARRAY['steward.webhook_attempts']) AS v(tbl)
     CROSS JOIN unnest(ARRAY['steward_append_only', 'steward_append_only_truncate']) AS x(name)
     WHERE to_regclass(v.tbl) IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM pg_trigger tg
                        WHERE tg.tgrelid = to_regclass(v.tbl) AND tg.tgname = x.name
                          AND tg.tgenabled = 'A')
    UNION ALL
    -- The outbox's order needs record ids drawn in the order of their writes across backends
    -- (ADR 004): a sequence cache would hand one backend a range below another's.
    SELECT format('the change log''s id sequence caches %s values per backend', q.seqcache),
           'ALTER SEQUENCE steward.change_log_id_seq CACHE 1'
      FROM pg_sequence q
     WHERE q.seqrelid = to_regclass('steward.change_log_id_seq') AND q.seqcache <> 1
$$;

-- Every governed table governed again, as this release governs.
SELECT count(*) AS regoverned FROM steward.regovern();

-- The privileges of what this update created.
SELECT steward._reset_privileges(
           pg_catalog.string_to_array(pg_catalog.current_setting('steward_upgrade.kept'), ',')::oid[]);
REVOKE ALL ON FUNCTION steward._internal_in_extension_script() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION steward._internal_in_extension_script() TO PUBLIC;
REVOKE ALL ON FUNCTION steward._internal_check_signing_key(text, text, bytea, jsonb, bigint),
                       steward._signing_key_check() FROM PUBLIC;
REVOKE ALL ON FUNCTION steward.expose(regclass, text, name[]), steward.unexpose(regclass) FROM PUBLIC;
GRANT SELECT ON steward.exposed_resources TO PUBLIC;
REVOKE ALL ON FUNCTION
    steward._consumer_at(text, uuid, boolean),
    steward._poll(steward.consumers, integer, boolean),
    steward._ack(steward.consumers, bigint),
    steward._seek(steward.consumers, timestamptz),
    steward._internal_webhook_secret(),
    steward._webhook(uuid),
    steward._sink_consumer(text, boolean),
    steward._relay_holds(text, text, bigint),
    steward._append_only_guard(),
    steward._internal_row_guard_and_log(),
    steward._internal_update_guard_and_log(),
    steward.relay_claim(text, text[], interval),
    steward.relay_release(text, text, bigint),
    steward.relay_poll(text, text, bigint, integer),
    steward.relay_poll_ahead(text, text, bigint, xid8, bigint, integer),
    steward.relay_ack(text, text, bigint, bigint, jsonb, text)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    steward.relay_claim(text, text[], interval),
    steward.relay_release(text, text, bigint),
    steward.relay_poll(text, text, bigint, integer),
    steward.relay_poll_ahead(text, text, bigint, xid8, bigint, integer),
    steward.relay_ack(text, text, bigint, bigint, jsonb, text)
TO steward_relay;
