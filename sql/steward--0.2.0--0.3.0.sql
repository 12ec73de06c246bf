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
