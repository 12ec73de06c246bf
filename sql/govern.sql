-- Governed tables: govern() and ungovern(), regovern(), the faults that make a governed table
-- weaker than govern() left it and the DDL guard that refuses them, break glass's SQL side, the
-- catalog guard, and restore() of a soft-deleted row. The row triggers are Rust
-- (extension/src/govern.rs).

-- The one argument list of a governed table's row triggers, from steward.governed and the table's
-- primary key: written by _govern, read by extension/src/govern.rs (Args), and checked by
-- _governance_faults (a trigger with other arguments is not steward's). The layout, the tenant
-- column, the version column ('' when not versioned), whether the version is required, soft
-- delete, audited, events ('t' or 'f'), the table's name in its row events, then the primary
-- key's columns.
CREATE FUNCTION steward._trigger_args(rel oid)
RETURNS text[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ARRAY['steward:2', g.tenant_column::text,
                 CASE WHEN g.versioned THEN 'version' ELSE '' END,
                 CASE WHEN g.version_required THEN 't' ELSE 'f' END,
                 CASE WHEN g.soft_delete THEN 't' ELSE 'f' END,
                 CASE WHEN g.audited THEN 't' ELSE 'f' END,
                 CASE WHEN g.events THEN 't' ELSE 'f' END,
                 g.event_name]
           || ARRAY(SELECT a.attname::text
                      FROM pg_index i
                     CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
                      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                     WHERE i.indrelid = g.rel AND i.indisprimary
                     ORDER BY k.ord)
      FROM steward.governed g
     WHERE g.rel = _trigger_args.rel
$$;

-- steward.govern() is a wrapper (below) that runs this with the DDL guard open for its own DDL.
CREATE FUNCTION steward._govern(
    rel regclass,
    tenant_column name DEFAULT 'tenant_id',
    versioned boolean DEFAULT true,
    version_required boolean DEFAULT false,
    audited boolean DEFAULT true,
    events boolean DEFAULT true,
    soft_delete boolean DEFAULT false
)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET client_min_messages = warning
AS $$
DECLARE
    c     record;
    col   record;
    ver   record;
    tbl   text;
    cond  text;
    cmd   text;
    pk    text;
    vis   text;
    args  text;
    keycols int2[];
BEGIN
    IF rel IS NULL THEN
        PERFORM steward._raise('ST400', 'steward.govern: no table given',
                              'Pass the table, e.g. steward.govern(''app.orders'').');
    END IF;
    SELECT n.nspname, cl.relname, cl.relkind INTO c
      FROM pg_class cl JOIN pg_namespace n ON n.oid = cl.relnamespace
     WHERE cl.oid = rel;
    IF c.relkind IS NULL OR c.relkind NOT IN ('r', 'p') THEN
        PERFORM steward._raise('ST400', format('cannot govern %s: it is not a table', rel),
                              'Only ordinary tables can be governed; partitioned ones are not (docs/dba-guide.md).');
    END IF;
    tbl := format('%I.%I', c.nspname, c.relname);

    SELECT a.attname, a.attnum, a.atttypid, a.attnotnull INTO col
      FROM pg_attribute a
     WHERE a.attrelid = rel AND a.attname = tenant_column AND a.attnum > 0 AND NOT a.attisdropped;
    IF col.attname IS NULL THEN
        PERFORM steward._raise('ST400', format('table %s has no tenant column "%s"', tbl, tenant_column),
                              'Add a "uuid not null" column for the tenant, or name it with tenant_column => ...');
    END IF;
    IF col.atttypid <> 'uuid'::regtype OR NOT col.attnotnull THEN
        PERFORM steward._raise('ST400', format('tenant column "%s" of table %s is %s %s, not uuid not null', tenant_column, tbl, format_type(col.atttypid, NULL), CASE WHEN col.attnotnull THEN 'not null' ELSE 'nullable' END),
                              format('ALTER TABLE %s ALTER COLUMN %I TYPE uuid, ALTER COLUMN %I SET NOT NULL',
                                tbl, tenant_column, tenant_column));
    END IF;
    SELECT string_agg(quote_literal(a.attname), ', ' ORDER BY k.ord)
      INTO pk
      FROM pg_index i
     CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
     WHERE i.indrelid = rel AND i.indisprimary;
    IF pk IS NULL THEN
        PERFORM steward._raise('ST400', format('table %s has no primary key', tbl),
                              'steward names rows by their primary key: add one (it may be composite).');
    END IF;

    IF versioned THEN
        SELECT a.atttypid, a.attnotnull INTO ver
          FROM pg_attribute a
         WHERE a.attrelid = rel AND a.attname = 'version' AND a.attnum > 0 AND NOT a.attisdropped;
        IF ver.atttypid IS NULL THEN
            EXECUTE format('ALTER TABLE %s ADD COLUMN version bigint NOT NULL DEFAULT 1', tbl);
        ELSIF ver.atttypid <> 'bigint'::regtype OR NOT ver.attnotnull THEN
            PERFORM steward._raise('ST400', format('column "version" of table %s is %s %s, not bigint not null', tbl, format_type(ver.atttypid, NULL), CASE WHEN ver.attnotnull THEN 'not null' ELSE 'nullable' END),
                                  'Make it "bigint not null default 1", or govern the table with versioned => false.');
        END IF;
    ELSIF version_required THEN
        PERFORM steward._raise('ST400', format('table %s cannot require a version without being versioned', tbl),
                              'Pass versioned => true with version_required => true.');
    END IF;

    IF soft_delete THEN
        SELECT a.atttypid INTO ver
          FROM pg_attribute a
         WHERE a.attrelid = rel AND a.attname = 'deleted_at' AND a.attnum > 0 AND NOT a.attisdropped;
        IF ver.atttypid IS NULL THEN
            EXECUTE format('ALTER TABLE %s ADD COLUMN deleted_at timestamptz', tbl);
        ELSIF ver.atttypid <> 'timestamptz'::regtype THEN
            PERFORM steward._raise('ST400', format('column "deleted_at" of table %s is %s, not timestamptz', tbl, format_type(ver.atttypid, NULL)),
                                  'Soft delete marks rows in a "deleted_at timestamptz" column.');
        END IF;
    END IF;

    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY', tbl);

    -- The tenant function is wrapped in a scalar sub-select so the planner runs it once per
    -- statement (an InitPlan) and can use an index on the tenant column. The planner folds
    -- _internal_plan_guard() (IMMUTABLE, true) first, which loads steward before it considers
    -- indexes: tenant roles are only given indexes that lead with the tenant column
    -- (extension/src/tenancy/scans.rs, ADR 009).
    cond := format('%I = (SELECT steward.current_tenant()) AND steward._internal_plan_guard()', tenant_column);
    -- Rows are visible (and changeable) in the tenant; with soft delete, only while not deleted.
    -- steward's own soft delete and restore() run as the caller and reach the tenant's deleted
    -- rows of this one table, for the one statement that marks or restores a row.
    vis := cond || CASE WHEN soft_delete
                        -- by name (a regclass constant): a dump restored elsewhere, where the
                        -- table has another OID, keeps pointing at this table
                        THEN format(' AND (deleted_at IS NULL OR (SELECT steward._internal_own_write(%L::regclass::oid)))', tbl)
                        ELSE '' END;
    -- One permissive policy grants the tenant's rows; one restrictive policy per command makes
    -- sure that no other permissive policy on the table can ever widen that.
    EXECUTE format('DROP POLICY IF EXISTS steward_tenant ON %s', tbl);
    EXECUTE format('CREATE POLICY steward_tenant ON %s AS PERMISSIVE FOR ALL USING (%s) WITH CHECK (%s)',
                   tbl, vis, cond);
    FOREACH cmd IN ARRAY ARRAY['select', 'insert', 'update', 'delete'] LOOP
        EXECUTE format('DROP POLICY IF EXISTS %I ON %s', 'steward_' || cmd, tbl);
        EXECUTE format('CREATE POLICY %I ON %s AS RESTRICTIVE FOR %s %s',
                       'steward_' || cmd, tbl, upper(cmd),
                       CASE cmd
                           WHEN 'insert' THEN format('WITH CHECK (%s)', cond)
                           WHEN 'update' THEN format('USING (%s) WITH CHECK (%s)', vis, cond)
                           ELSE format('USING (%s)', vis)
                       END);
    END LOOP;

    EXECUTE format('ALTER TABLE %s ALTER COLUMN %I SET DEFAULT steward.current_tenant()',
                   tbl, tenant_column);

    INSERT INTO steward.governed AS g
           (rel, tenant_column, versioned, version_required, audited, events, soft_delete,
            source_oid, event_name)
    VALUES (_govern.rel, _govern.tenant_column, _govern.versioned, _govern.version_required,
            _govern.audited, _govern.events, _govern.soft_delete, _govern.rel::oid, c.relname)
    ON CONFLICT ON CONSTRAINT governed_pkey DO UPDATE
       SET tenant_column = excluded.tenant_column, versioned = excluded.versioned,
           version_required = excluded.version_required, audited = excluded.audited,
           events = excluded.events, soft_delete = excluded.soft_delete,
           -- A table's row events keep the name it was first governed under (a rename
           -- does not change what consumers receive).
           event_name = coalesce(g.event_name, excluded.event_name);

    -- The one argument list of the table's row triggers (steward._trigger_args).
    args := (SELECT string_agg(quote_literal(a), ', ' ORDER BY o)
               FROM unnest(steward._trigger_args(rel)) WITH ORDINALITY AS t(a, o));
    EXECUTE format('DROP TRIGGER IF EXISTS steward_row_guard ON %s', tbl);
    EXECUTE format('CREATE TRIGGER steward_row_guard BEFORE INSERT OR DELETE ON %s '
                   'FOR EACH ROW EXECUTE FUNCTION steward._internal_row_guard(%s)', tbl, args);
    EXECUTE format('DROP TRIGGER IF EXISTS steward_update_guard ON %s', tbl);
    EXECUTE format('CREATE TRIGGER steward_update_guard BEFORE UPDATE ON %s '
                   'FOR EACH ROW EXECUTE FUNCTION steward._internal_update_guard(%s)', tbl, args);
    EXECUTE format('DROP TRIGGER IF EXISTS steward_truncate_guard ON %s', tbl);
    EXECUTE format('CREATE TRIGGER steward_truncate_guard BEFORE TRUNCATE ON %s '
                   'FOR EACH STATEMENT EXECUTE FUNCTION steward._internal_truncate_guard()', tbl);

    -- The change log: one record per changed row, formed and inserted by an AFTER ROW trigger
    -- in the same transaction.
    FOREACH cmd IN ARRAY ARRAY['insert', 'update', 'delete'] LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS %I ON %s', 'steward_log_' || cmd, tbl);
    END LOOP;
    EXECUTE format('DROP TRIGGER IF EXISTS steward_log ON %s', tbl);
    IF audited OR events THEN
        EXECUTE format('CREATE TRIGGER steward_log AFTER INSERT OR UPDATE OR DELETE ON %s '
                       'FOR EACH ROW EXECUTE FUNCTION steward._internal_log_row(%s)', tbl, args);
    END IF;


    -- The primary key's columns other than the tenant column, sorted.
    SELECT coalesce(array_agg(k ORDER BY k), '{}') INTO keycols
      FROM pg_index p, unnest(p.indkey::int2[]) k
     WHERE p.indrelid = rel AND p.indisprimary AND k <> col.attnum;
    -- Tenant roles' scans get only B-tree indexes that lead with the tenant column (ADR 009).
    -- Lookups by primary key must stay index lookups: when no such index covers the key, one
    -- is built on (tenant column, key columns).
    IF NOT EXISTS (
        SELECT 1 FROM pg_index i
         WHERE i.indrelid = rel AND i.indisvalid AND i.indexprs IS NULL AND i.indpred IS NULL
           AND (SELECT am.amname FROM pg_class ic JOIN pg_am am ON am.oid = ic.relam
                 WHERE ic.oid = i.indexrelid) = 'btree'
           AND i.indkey[0] = col.attnum
           -- the key's other columns come next, in any order
           AND coalesce((SELECT array_agg(k ORDER BY k) FROM unnest(i.indkey[1:cardinality(keycols)]) k), '{}')
               = keycols
    ) THEN
        EXECUTE format('CREATE INDEX ON %s (%s)', tbl,
                       (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY k.ord)
                          FROM unnest(array_prepend(col.attnum, keycols)) WITH ORDINALITY AS k(attnum, ord)
                          JOIN pg_attribute a ON a.attrelid = rel AND a.attnum = k.attnum));
    END IF;
    FOR c IN
        SELECT ic.relname AS index_name
          FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am am ON am.oid = ic.relam
         WHERE i.indrelid = rel AND NOT i.indisprimary
           AND (am.amname <> 'btree' OR i.indkey[0] <> col.attnum)
         ORDER BY ic.relname
    LOOP
        RAISE WARNING 'tenant roles'' scans of % cannot use index %: it is not a B-tree index that leads with %',
                      tbl, c.index_name, quote_ident(tenant_column)
            USING HINT = format('Index (%I, ...) instead: a scan under a tenant''s policy only gets indexes that stay inside the tenant''s entries (docs/dba-guide.md).', tenant_column);
    END LOOP;

    -- What govern cannot make safe (foreign keys across tenants, partitions and inheritance)
    -- is refused, and everything above rolls back with it.
    FOR c IN SELECT * FROM steward._governance_faults(rel) LOOP
        PERFORM steward._raise('ST400', format('cannot govern %s: %s', tbl, c.fault),
                              c.hint);
    END LOOP;
END
$$;

CREATE FUNCTION steward.govern(
    rel regclass,
    tenant_column name DEFAULT 'tenant_id',
    versioned boolean DEFAULT true,
    version_required boolean DEFAULT false,
    audited boolean DEFAULT true,
    events boolean DEFAULT true,
    soft_delete boolean DEFAULT false
)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM steward._internal_governing_begin(rel::oid);
    PERFORM steward._govern(rel, tenant_column, versioned, version_required, audited, events,
                            soft_delete);
    PERFORM steward._internal_governing_end(rel::oid);
END
$$;

-- Every governed table governed again, with the options it was governed with: its policies,
-- triggers and defaults become what this release's govern() makes. An upgrade runs it (each
-- release's upgrade script ends with it); a DBA may run it at any time. All or nothing: a table
-- that can no longer be governed stops it, and nothing changes.
CREATE FUNCTION steward.regovern()
RETURNS SETOF regclass
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    g record;
BEGIN
    PERFORM steward._forget_dropped_roles();
    FOR g IN SELECT * FROM steward.governed ORDER BY rel::oid LOOP
        PERFORM steward.govern(g.rel, g.tenant_column, g.versioned, g.version_required,
                               g.audited, g.events, g.soft_delete);
        RETURN NEXT g.rel;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION steward.regovern() FROM PUBLIC;

CREATE FUNCTION steward._ungovern(rel regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET client_min_messages = warning
AS $$
DECLARE
    g   record;
    tbl text;
    cmd text;
BEGIN
    SELECT * INTO g FROM steward.governed WHERE governed.rel = _ungovern.rel;
    IF g.rel IS NULL THEN
        PERFORM steward._raise('ST400', format('table %s is not governed', coalesce(rel::text, 'NULL')),
                              'steward.governed_tables lists the governed tables.');
    END IF;
    SELECT format('%I.%I', n.nspname, cl.relname) INTO tbl
      FROM pg_class cl JOIN pg_namespace n ON n.oid = cl.relnamespace WHERE cl.oid = rel;
    FOREACH cmd IN ARRAY ARRAY['tenant', 'select', 'insert', 'update', 'delete'] LOOP
        EXECUTE format('DROP POLICY IF EXISTS %I ON %s', 'steward_' || cmd, tbl);
    END LOOP;
    EXECUTE format('DROP TRIGGER IF EXISTS steward_row_guard ON %s', tbl);
    EXECUTE format('DROP TRIGGER IF EXISTS steward_update_guard ON %s', tbl);
    EXECUTE format('DROP TRIGGER IF EXISTS steward_truncate_guard ON %s', tbl);
    EXECUTE format('DROP TRIGGER IF EXISTS steward_log ON %s', tbl);
    EXECUTE format('ALTER TABLE %s ALTER COLUMN %I DROP DEFAULT', tbl, g.tenant_column);
    EXECUTE format('ALTER TABLE %s NO FORCE ROW LEVEL SECURITY, DISABLE ROW LEVEL SECURITY', tbl);
    DELETE FROM steward.governed WHERE governed.rel = _ungovern.rel;
END
$$;

CREATE FUNCTION steward.ungovern(rel regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM steward._internal_governing_begin(rel::oid);
    PERFORM steward._ungovern(rel);
    PERFORM steward._internal_governing_end(rel::oid);
END
$$;

-- What makes a table impossible to govern safely, whatever steward put on it: rules, its tenant,
-- version and deleted_at columns, its primary key, foreign keys that join two tenants' rows,
-- partitions and inheritance. govern() refuses a table with any (through _governance_faults), the
-- DDL guard a command that adds one, and an upgrade checks every governed table with it before it
-- changes anything.
CREATE FUNCTION steward._table_faults(rel oid, tenant_column name, versioned boolean,
                                      soft_delete boolean)
RETURNS TABLE (fault text, hint text)
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cl  record;
    tbl text;
    r   record;
BEGIN
    SELECT c.relkind, c.relispartition, format('%I.%I', n.nspname, c.relname) AS name
      INTO cl
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = _table_faults.rel;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    tbl := cl.name;
    -- Rules run with their owner's privileges and outside row-level security: one can copy
    -- every tenant's rows elsewhere, or divert writes past steward's triggers (DO INSTEAD).
    FOR r IN SELECT w.rulename FROM pg_rewrite w
              WHERE w.ev_class = _table_faults.rel AND w.rulename <> '_RETURN' LOOP
        fault := format('rule %I on %s can copy or divert any tenant''s rows', r.rulename, tbl);
        hint := format('DROP RULE %I ON %s', r.rulename, tbl);
        RETURN NEXT;
    END LOOP;
    IF NOT EXISTS (SELECT 1 FROM pg_attribute a
                    WHERE a.attrelid = _table_faults.rel AND a.attname = tenant_column
                      AND NOT a.attisdropped AND a.atttypid = 'uuid'::regtype AND a.attnotnull
                      AND a.attgenerated = '') THEN
        fault := format('tenant column %I of %s is no longer a uuid not null column', tenant_column, tbl);
        hint := format('Put back %I as "uuid not null" (not generated)', tenant_column);
        RETURN NEXT;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = _table_faults.rel AND i.indisprimary
                                              AND i.indimmediate) THEN
        fault := format('%s has no primary key, or a deferrable one', tbl);
        hint := 'steward names rows by their primary key: put back one that is not deferrable';
        RETURN NEXT;
    END IF;
    IF versioned AND NOT EXISTS (SELECT 1 FROM pg_attribute a
                    WHERE a.attrelid = _table_faults.rel AND a.attname = 'version'
                      AND NOT a.attisdropped AND a.atttypid = 'bigint'::regtype AND a.attnotnull
                      AND a.attgenerated = '') THEN
        fault := format('column "version" of %s is no longer a bigint not null column', tbl);
        hint := 'Put back "version bigint not null default 1" (not generated)';
        RETURN NEXT;
    END IF;
    IF soft_delete AND NOT EXISTS (SELECT 1 FROM pg_attribute a
                    WHERE a.attrelid = _table_faults.rel AND a.attname = 'deleted_at'
                      AND NOT a.attisdropped AND a.atttypid = 'timestamptz'::regtype
                      AND a.attgenerated = '') THEN
        fault := format('column "deleted_at" of %s is no longer a timestamptz column', tbl);
        hint := 'Put back "deleted_at timestamptz"';
        RETURN NEXT;
    END IF;
    -- Foreign keys into this table, and from it into other governed tables: Postgres checks them
    -- without row-level security, so a key without the tenant column lets one tenant's row
    -- reference (and pin) another tenant's. Both sides must be governed and the key must pair
    -- their tenant columns.
    FOR r IN
        SELECT k.conname, k.conrelid, k.confrelid, k.conkey, k.confkey,
               src.tenant_column AS src_tenant, dst.tenant_column AS dst_tenant
          FROM pg_constraint k
          LEFT JOIN steward.governed src ON src.rel = k.conrelid
          LEFT JOIN steward.governed dst ON dst.rel = k.confrelid
         WHERE k.contype = 'f'
           AND (k.confrelid = _table_faults.rel
                OR (k.conrelid = _table_faults.rel AND dst.rel IS NOT NULL))
    LOOP
        IF r.src_tenant IS NULL OR r.dst_tenant IS NULL OR NOT EXISTS (
               SELECT 1 FROM unnest(r.conkey, r.confkey) AS u(s, d)
                 JOIN pg_attribute sa ON sa.attrelid = r.conrelid AND sa.attnum = u.s
                 JOIN pg_attribute da ON da.attrelid = r.confrelid AND da.attnum = u.d
                WHERE sa.attname = r.src_tenant AND da.attname = r.dst_tenant) THEN
            fault := format('foreign key %I of %s references %s without pairing the tenant columns: it can join rows of two tenants',
                            r.conname, r.conrelid::regclass, r.confrelid::regclass);
            hint := format('Govern both tables and make the key composite, e.g. FOREIGN KEY (%I, project_id) REFERENCES %s (%I, id), with a unique key on %s (%I, id)',
                           coalesce(r.src_tenant, 'tenant_id'), r.confrelid::regclass,
                           coalesce(r.dst_tenant, 'tenant_id'), r.confrelid::regclass,
                           coalesce(r.dst_tenant, 'tenant_id'));
            RETURN NEXT;
        END IF;
    END LOOP;
    -- Partitions and inheritance: a query through a parent applies the parent's policies only,
    -- and a child's rows are reached without them (ADR 008).
    IF cl.relkind = 'p' OR cl.relispartition
       OR EXISTS (SELECT 1 FROM pg_inherits i
                   WHERE i.inhparent = _table_faults.rel OR i.inhrelid = _table_faults.rel) THEN
        fault := format('%s is partitioned, a partition, or in an inheritance tree, which steward does not govern', tbl);
        hint := 'Govern plain tables: detach the partition (or NO INHERIT) first, or keep the table out of the tree.';
        RETURN NEXT;
    END IF;
END
$$;

-- Every way a governed table is weaker than govern() left it: RLS off or not forced, a steward
-- policy or trigger gone or disabled, steward's columns changed, a foreign key that joins two
-- tenants' rows, partitions or inheritance. Each with the SQL or step that fixes it. The DDL
-- guard refuses a command that leaves any of these; govern() refuses a table that has one.
CREATE FUNCTION steward._governance_faults(rel oid)
RETURNS TABLE (fault text, hint text)
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
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
$$;

-- steward's append-only tables: the change log, the seals, the sealing state, the tombstones,
-- the transaction-id base and the aliases of restored records. Each has the same guard, ENABLE
-- ALWAYS (attached below, with the change log's face), which lets only steward's own writes
-- through (extension/src/audit.rs).
CREATE FUNCTION steward._append_only_tables()
RETURNS text[] LANGUAGE sql IMMUTABLE
AS $$ SELECT ARRAY['steward.change_log', 'steward.audit_seals', 'steward.seal_state',
                   'steward.outbox_tombstones', 'steward.xid_base', 'steward.rel_aliases'] $$;

-- The faults of the governed tables among `rels` (but the one govern() or ungovern() is changing
-- right now), and of steward's own append-only tables (their guards must stay ENABLE ALWAYS).
CREATE FUNCTION steward._faults_of(rels oid[])
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

-- The DDL guard, at the start of a command: remember what is weak already, so that only what a
-- command makes weaker is refused (pg_restore builds a governed table up command by command).
CREATE FUNCTION steward._ddl_guard_start()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF steward._internal_in_extension_script() THEN
        RETURN;  -- the extension's own script (its _ddl_guard passes too)
    END IF;
    PERFORM steward._internal_ddl_begin(ARRAY(
        SELECT f.fault FROM steward._faults_of(ARRAY(SELECT g.rel::oid FROM steward.governed g)) f));
END
$$;

-- The DDL guard: any DDL that leaves a governed table weaker than govern() made it (see
-- _governance_faults), or that disables the append-only guards of steward's own tables, is
-- refused, superusers included, unless steward.break_glass(reason) is in force in the
-- transaction; then it is recorded in the change log (steward's own chain). govern() and
-- ungovern() pass for their own DDL, and what was weak before the command is not its fault.
-- ENABLE ALWAYS: replica mode does not turn it off.
CREATE FUNCTION steward._ddl_guard()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
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
$$;

CREATE EVENT TRIGGER steward_ddl_guard_start ON ddl_command_start
    EXECUTE FUNCTION steward._ddl_guard_start();
CREATE EVENT TRIGGER steward_ddl_guard ON ddl_command_end
    EXECUTE FUNCTION steward._ddl_guard();
CREATE EVENT TRIGGER steward_ddl_guard_drops ON sql_drop
    EXECUTE FUNCTION steward._ddl_guard();
-- Dropping steward (the extension, or its schema) drops the change log with it: only under
-- break glass. ENABLE ALWAYS.
CREATE FUNCTION steward._extension_guard()
RETURNS event_trigger LANGUAGE c
AS 'MODULE_PATHNAME', 'steward_extension_guard';
CREATE EVENT TRIGGER steward_extension_guard ON ddl_command_start
    WHEN TAG IN ('DROP EXTENSION', 'DROP SCHEMA')
    EXECUTE FUNCTION steward._extension_guard();
ALTER EVENT TRIGGER steward_extension_guard ENABLE ALWAYS;
ALTER EVENT TRIGGER steward_ddl_guard_start ENABLE ALWAYS;
ALTER EVENT TRIGGER steward_ddl_guard ENABLE ALWAYS;
ALTER EVENT TRIGGER steward_ddl_guard_drops ENABLE ALWAYS;

-- What steward governs is changed only by govern() and ungovern() (and forgotten when a table is
-- dropped): plain SQL of any role, superusers included, cannot turn a table's audit or events off
-- or take it out of the DDL guard's sight. Adding a row only makes the guard stricter (pg_restore
-- does it). ENABLE ALWAYS.
CREATE TRIGGER steward_governed_guard BEFORE UPDATE OR DELETE ON steward.governed
    FOR EACH ROW EXECUTE FUNCTION steward._internal_governed_guard();
CREATE TRIGGER steward_governed_guard_truncate BEFORE TRUNCATE ON steward.governed
    FOR EACH STATEMENT EXECUTE FUNCTION steward._internal_governed_guard();
ALTER TABLE steward.governed ENABLE ALWAYS TRIGGER steward_governed_guard,
                             ENABLE ALWAYS TRIGGER steward_governed_guard_truncate;

CREATE VIEW steward.governed_tables AS
SELECT g.rel, g.tenant_column, g.versioned, g.version_required, g.audited, g.events,
       g.soft_delete, g.governed_at
  FROM steward.governed g;

-- Brings back a soft-deleted row of the caller's tenant (recorded as an INSERT). It runs as the
-- caller: the UPDATE needs the caller's UPDATE privilege, and nothing the table owner defined runs
-- with more privilege than the caller has (extension/src/govern.rs).
CREATE FUNCTION steward.restore(rel regclass, row_key jsonb)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT steward._internal_restore(rel::oid, row_key) $$;

-- A dropped table leaves the catalog with it (and a dropped table or view the resources).
CREATE FUNCTION steward._forget_dropped_tables()
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

CREATE EVENT TRIGGER steward_forget_dropped_tables ON sql_drop
    EXECUTE FUNCTION steward._forget_dropped_tables();
