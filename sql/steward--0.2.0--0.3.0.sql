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
