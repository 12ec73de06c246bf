-- steward's administrative SQL API. These functions run with the caller's privileges and are
-- not executable by PUBLIC: a DBA (superuser or the extension's owner) calls them, or grants
-- EXECUTE on them to an administrator role.

------------------------------------------------------------------------------------------------
-- Errors
------------------------------------------------------------------------------------------------

-- Every error steward's SQL raises goes through here, as every error its Rust raises goes through
-- extension/src/errors.rs: one of steward's codes (the same ones), a message and a hint, never
-- one without the other. An error steward raises without them is its own bug (XX000).
CREATE FUNCTION steward._raise(code text, message text, hint text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF code IS NULL OR NOT code = ANY (ARRAY['ST001', 'ST002', 'ST400', 'ST403', 'ST409', 'ST422',
                                            'ST428', '42501'])
       OR coalesce(message, '') = '' OR coalesce(hint, '') = '' THEN
        RAISE EXCEPTION USING ERRCODE = 'XX000',
            MESSAGE = format('steward raised %s without a code of its own, a message and a hint: %s',
                             coalesce(code, 'an error'), coalesce(message, '(no message)')),
            HINT = 'This is a bug in steward, not in what was asked of it: report it with the server log around this message.';
    END IF;
    RAISE EXCEPTION USING ERRCODE = code, MESSAGE = message, HINT = hint;
END
$$;

------------------------------------------------------------------------------------------------
-- Tenants
------------------------------------------------------------------------------------------------

CREATE FUNCTION steward.create_tenant(slug text, display_name text)
RETURNS uuid
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    new_id uuid;
BEGIN
    IF slug IS NULL OR slug !~ '^[a-z0-9][a-z0-9_-]{0,62}$' THEN
        PERFORM steward._raise('ST400', format('invalid tenant slug %s', coalesce('"' || slug || '"', 'NULL')),
                              'A slug is 1 to 63 lower-case letters, digits, "_" or "-", starting with a letter or digit.');
    END IF;
    IF EXISTS (SELECT 1 FROM steward.tenants t WHERE t.slug = create_tenant.slug) THEN
        PERFORM steward._raise('ST400', format('tenant "%s" already exists', slug),
                              'Slugs are unique; look the tenant up in steward.tenants.');
    END IF;
    INSERT INTO steward.tenants (slug, display_name)
    VALUES (create_tenant.slug, coalesce(create_tenant.display_name, create_tenant.slug))
    RETURNING tenant_id INTO new_id;
    RETURN new_id;
END
$$;

CREATE FUNCTION steward._tenant_slug(tenant uuid)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    found text;
BEGIN
    SELECT t.slug INTO found FROM steward.tenants t WHERE t.tenant_id = tenant;
    IF found IS NULL THEN
        PERFORM steward._raise('ST400', format('tenant %s does not exist', coalesce(tenant::text, 'NULL')),
                              'Create it with steward.create_tenant(slug, display_name).');
    END IF;
    RETURN found;
END
$$;

CREATE FUNCTION steward.grant_tenant(role regrole, tenant uuid)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM steward._tenant_slug(tenant);
    INSERT INTO steward.tenant_grants (role, tenant_id)
    VALUES (grant_tenant.role, tenant)
    ON CONFLICT DO NOTHING;
END
$$;

-- A tenant's grants go when the tenant does (what ON DELETE CASCADE would do; see bootstrap.sql).
CREATE FUNCTION steward._tenant_gone()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM steward.tenant_grants g WHERE g.tenant_id = OLD.tenant_id;
    RETURN NULL;
END
$$;
CREATE TRIGGER steward_tenant_gone AFTER DELETE ON steward.tenants
    FOR EACH ROW EXECUTE FUNCTION steward._tenant_gone();

CREATE FUNCTION steward.revoke_tenant(role regrole, tenant uuid)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM steward._tenant_slug(tenant);
    DELETE FROM steward.tenant_grants g WHERE g.role = revoke_tenant.role AND g.tenant_id = tenant;
END
$$;

CREATE FUNCTION steward.trust_role(role regrole)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO steward.trusted_roles (role) VALUES (trust_role.role) ON CONFLICT DO NOTHING;
$$;

------------------------------------------------------------------------------------------------
-- Governed tables
------------------------------------------------------------------------------------------------

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

    -- The one argument list of the table's row triggers, written here and read by
    -- extension/src/govern.rs (Args): the protocol, the tenant column, the version column (''
    -- when not versioned), whether the version is required, soft delete, audited, events, the
    -- table's qualified name and its name for event types, then the primary key's columns.
    args := format('%L, %L, %L, %L, %L, %L, %L, %L, %L, %s', 'steward:2', tenant_column,
                   CASE WHEN versioned THEN 'version' ELSE '' END, version_required, soft_delete,
                   audited, events, tbl, c.relname, pk);
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

    INSERT INTO steward.governed AS g
           (rel, tenant_column, versioned, version_required, audited, events, soft_delete,
            source_oid, event_name)
    VALUES (_govern.rel, _govern.tenant_column, _govern.versioned, _govern.version_required,
            _govern.audited, _govern.events, _govern.soft_delete, _govern.rel::oid, c.relname)
    ON CONFLICT ON CONSTRAINT governed_pkey DO UPDATE
       SET tenant_column = excluded.tenant_column, versioned = excluded.versioned,
           version_required = excluded.version_required, audited = excluded.audited,
           events = excluded.events, soft_delete = excluded.soft_delete,
           event_name = excluded.event_name;

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
    g   steward.governed;
    cl  record;
    tbl text;
    r   record;
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
    -- Rules run with their owner's privileges and outside row-level security: one can copy
    -- every tenant's rows elsewhere, or divert writes past steward's triggers (DO INSTEAD).
    FOR r IN SELECT w.rulename FROM pg_rewrite w
              WHERE w.ev_class = _governance_faults.rel AND w.rulename <> '_RETURN' LOOP
        fault := format('rule %I on %s can copy or divert any tenant''s rows', r.rulename, tbl);
        hint := format('DROP RULE %I ON %s', r.rulename, tbl);
        RETURN NEXT;
    END LOOP;
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
    IF NOT EXISTS (SELECT 1 FROM pg_attribute a
                    WHERE a.attrelid = _governance_faults.rel AND a.attname = g.tenant_column
                      AND NOT a.attisdropped AND a.atttypid = 'uuid'::regtype AND a.attnotnull
                      AND a.attgenerated = '') THEN
        fault := format('tenant column %I of %s is no longer a uuid not null column', g.tenant_column, tbl);
        hint := format('Put back %I as "uuid not null" (not generated)', g.tenant_column);
        RETURN NEXT;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = _governance_faults.rel AND i.indisprimary
                                              AND i.indimmediate) THEN
        fault := format('%s has no primary key, or a deferrable one', tbl);
        hint := 'steward names rows by their primary key: put back one that is not deferrable';
        RETURN NEXT;
    END IF;
    IF g.versioned AND NOT EXISTS (SELECT 1 FROM pg_attribute a
                    WHERE a.attrelid = _governance_faults.rel AND a.attname = 'version'
                      AND NOT a.attisdropped AND a.atttypid = 'bigint'::regtype AND a.attnotnull
                      AND a.attgenerated = '') THEN
        fault := format('column "version" of %s is no longer a bigint not null column', tbl);
        hint := 'Put back "version bigint not null default 1" (not generated)';
        RETURN NEXT;
    END IF;
    IF g.soft_delete AND NOT EXISTS (SELECT 1 FROM pg_attribute a
                    WHERE a.attrelid = _governance_faults.rel AND a.attname = 'deleted_at'
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
           AND (k.confrelid = _governance_faults.rel
                OR (k.conrelid = _governance_faults.rel AND dst.rel IS NOT NULL))
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
                   WHERE i.inhparent = _governance_faults.rel OR i.inhrelid = _governance_faults.rel) THEN
        fault := format('%s is partitioned, a partition, or in an inheritance tree, which steward does not govern', tbl);
        hint := 'Govern plain tables: detach the partition (or NO INHERIT) first, or keep the table out of the tree.';
        RETURN NEXT;
    END IF;
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
      FROM unnest(steward._append_only_tables()) AS v(tbl)
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

------------------------------------------------------------------------------------------------
-- The change log and its audit face
------------------------------------------------------------------------------------------------

-- Tenant roles read their own tenant's records, and nothing else.
CREATE POLICY steward_tenant ON steward.change_log FOR SELECT
    USING (tenant_id = (SELECT steward.current_tenant()) AND steward._internal_plan_guard());

-- Append-only, for everyone: plain SQL cannot add, change or remove a record, a seal, the
-- sealing state, a tombstone, the transaction-id base (a smaller offset would put new records
-- before old ones) or an alias, in any session_replication_role (ENABLE ALWAYS). steward's writer
-- inserts without firing triggers; seal_audit(), erase(), prune_outbox() and steward's own
-- bookkeeping are let through by the guard itself (extension/src/audit.rs).
DO $$
DECLARE
    tbl text;
BEGIN
    FOREACH tbl IN ARRAY steward._append_only_tables() LOOP
        EXECUTE format('CREATE TRIGGER steward_append_only BEFORE INSERT OR UPDATE OR DELETE ON %s '
                       'FOR EACH ROW EXECUTE FUNCTION steward._internal_log_guard()', tbl);
        EXECUTE format('CREATE TRIGGER steward_append_only_truncate BEFORE TRUNCATE ON %s '
                       'FOR EACH STATEMENT EXECUTE FUNCTION steward._internal_log_guard()', tbl);
        EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER steward_append_only, '
                       'ENABLE ALWAYS TRIGGER steward_append_only_truncate', tbl);
    END LOOP;
END
$$;

-- The row before a change, whole: an update's record keeps the new row whole and, of the old one,
-- only the values it replaced (no payload stored twice); the old row is the new one with those
-- put back. NULL for an insert, and once erased. No SET clause, so that the faces inline it; the
-- operator is named in full instead.
CREATE FUNCTION steward._old_row(old_values jsonb, new_row jsonb, changed jsonb)
RETURNS jsonb LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT CASE WHEN changed IS NULL THEN old_values ELSE new_row OPERATOR(pg_catalog.||) old_values END $$;

-- One record per row change: who, what, when and why.
CREATE VIEW steward.audit_log WITH (security_invoker = true) AS
SELECT c.id, c.tenant_id, c.txid, c.occurred_at, c.actor, c.reason, c.request_id, c.table_name,
       c.row_key, c.action, steward._old_row(c.old_values, c.new_row, c.changed) AS old_row, c.new_row, c.changed
  FROM steward.change_log c
 WHERE c.audited;
GRANT SELECT ON steward.audit_log TO PUBLIC;

-- A row's records in one tenant: the sealed ones through the seals' (tenant_id, row_hash) index,
-- the unsealed tail (every record at or above the sealed horizon) through the log's
-- (tenant_id, txid, id) index. Every step stays inside the tenant's own index entries, so a
-- tenant role's lookup never visits another tenant's (ADR 009). Nothing on the write path serves
-- the row_hash lookup; seal_audit() keeps the tail short.
-- The table a record belongs to: its `rel`, or for a record restored from a dump, the table of
-- its name in this database (steward.rel_aliases).
CREATE FUNCTION steward._record_table(rel oid, txid xid8)
RETURNS oid
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce((SELECT a.rel FROM steward.rel_aliases a
                      WHERE a.old_rel = _record_table.rel
                        AND (a.before_txid IS NULL OR _record_table.txid < a.before_txid)),
                    _record_table.rel)
$$;

CREATE FUNCTION steward._row_records(rel oid, row_key jsonb, tenant uuid)
RETURNS SETOF steward.change_log
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
-- Index lookups (a few records each), whatever the statistics say: a log that grew since it was
-- last analyzed must not be scanned whole. Each sealed record is fetched by its whole index key
-- (constants, not a join the planner may turn into a filter).
SET enable_seqscan = off
SET enable_bitmapscan = off
AS $$
DECLARE
    o oid;
    h bigint;
    s record;
BEGIN
    -- The table's own OID, and the OIDs its restored records carry.
    FOR o IN SELECT _row_records.rel
             UNION SELECT a.old_rel FROM steward.rel_aliases a WHERE a.rel = _row_records.rel
    LOOP
        h := steward._internal_row_hash(o, row_key);
        FOR s IN SELECT x.txid, x.record_id FROM steward.audit_seals x
                  WHERE x.tenant_id = _row_records.tenant AND x.row_hash = h
        LOOP
            RETURN QUERY
                SELECT c.* FROM steward.change_log c
                 WHERE c.tenant_id = _row_records.tenant AND c.txid = s.txid AND c.id = s.record_id
                   AND c.rel = o AND c.row_key = _row_records.row_key
                   AND steward._record_table(c.rel, c.txid) = _row_records.rel;
        END LOOP;
        RETURN QUERY
            SELECT c.* FROM steward.change_log c
             WHERE c.tenant_id = _row_records.tenant
               AND c.txid >= (SELECT coalesce(max(x.horizon), '0') FROM steward.seal_state x)
               AND c.row_hash = h
               AND c.rel = o AND c.row_key = _row_records.row_key
               AND steward._record_table(c.rel, c.txid) = _row_records.rel;
    END LOOP;
END
$$;

-- A row's records, oldest first.
CREATE FUNCTION steward.history(rel regclass, row_key jsonb)
RETURNS SETOF steward.audit_log
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.id, c.tenant_id, c.txid, c.occurred_at, c.actor, c.reason, c.request_id,
           c.table_name, c.row_key, c.action, steward._old_row(c.old_values, c.new_row, c.changed), c.new_row, c.changed
      FROM steward._row_records(history.rel::oid, history.row_key, steward.current_tenant()) c
     WHERE c.audited
     ORDER BY c.id
$$;

-- The row as it was at a moment, as JSON; NULL when it did not exist then.
CREATE FUNCTION steward.row_as_of(rel regclass, row_key jsonb, at timestamptz)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN c.action = 'DELETE' THEN NULL ELSE c.new_row END
      FROM steward._row_records(row_as_of.rel::oid, row_as_of.row_key, steward.current_tenant()) c
     WHERE c.audited
       AND c.action IN ('INSERT', 'UPDATE', 'DELETE') AND c.occurred_at <= row_as_of.at
     ORDER BY c.id DESC
     LIMIT 1
$$;

------------------------------------------------------------------------------------------------
-- Tamper evidence: a per-tenant SHA-256 hash chain over the change log
------------------------------------------------------------------------------------------------

CREATE POLICY steward_tenant ON steward.audit_seals FOR SELECT
    USING (tenant_id = (SELECT steward.current_tenant()) AND steward._internal_plan_guard());

-- Seals are added only by seal_audit() and lose only their salt, to erase(); the sealing
-- state moves only with seal_audit(). Nothing else writes either, in any replication role (the
-- append-only guard, attached with the change log's).

-- The commit-safe horizon in steward's transaction ids: every transaction below it has
-- finished. The cluster's oldest running transaction id, plus the offset (extension/src/xids.rs).
CREATE FUNCTION steward._horizon()
RETURNS xid8
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT (pg_snapshot_xmin(pg_current_snapshot())::text::numeric
            + steward._internal_xid_offset())::text::xid8
$$;

-- The current snapshot in steward's transaction ids (the cluster's plus the offset): what has
-- become visible, for the outbox's batches (ADR 004). The caller's own transaction, if it has an
-- id, counts as running: its events are not delivered to it before it commits. `persist` false
-- for a read: an offset not recorded yet is computed, not written.
CREATE FUNCTION steward._snapshot(persist boolean DEFAULT true)
RETURNS pg_snapshot
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH s AS (SELECT pg_current_snapshot() AS snap, pg_current_xact_id_if_assigned() AS own,
                      steward._internal_xid_offset(persist)::numeric AS off),
         x AS (SELECT xid::text::numeric AS xid FROM s, pg_snapshot_xip(s.snap) AS xid
               UNION
               SELECT s.own::text::numeric FROM s
                WHERE s.own IS NOT NULL AND s.own < pg_snapshot_xmax(s.snap))
    SELECT format('%s:%s:%s',
                  least(pg_snapshot_xmin(s.snap)::text::numeric,
                        coalesce((SELECT min(x.xid) FROM x), pg_snapshot_xmin(s.snap)::text::numeric)) + s.off,
                  pg_snapshot_xmax(s.snap)::text::numeric + s.off,
                  coalesce((SELECT string_agg((x.xid + s.off)::text, ',' ORDER BY x.xid) FROM x), ''))::pg_snapshot
      FROM s
$$;

-- The digest of a record's personal payload, salted: a digest of the payload alone would let
-- anyone who reads the seals confirm a guess of an erased payload (an email address, a name).
-- The salt is random per record and erase() removes it with the payload.
CREATE FUNCTION steward._payload_digest(c steward.change_log, salt bytea)
RETURNS bytea LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT sha256(salt || convert_to(jsonb_build_array(c.old_values, c.new_row, c.changed)::text, 'UTF8')) $$;

-- The digest of a record: every field but the payload, which enters through its digest.
CREATE FUNCTION steward._record_digest(c steward.change_log, payload_digest bytea)
RETURNS bytea LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT sha256(convert_to(jsonb_build_array(
        c.id, c.tenant_id, c.txid::text,
        to_char(c.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        c.actor, c.reason, c.request_id, c.traceparent, c.rel, c.table_name, c.row_key, c.action,
        c.event_id, c.event_type, c.audited, c.evented, c.aggregate_type, c.aggregate_id,
        c.schema_version, c.headers, encode(payload_digest, 'hex'))::text, 'UTF8'))
$$;

-- One link of a chain: the previous hash, the record's digest, and whether only the outbox
-- needs the record (then prune_outbox() may replace it by a tombstone; nothing else may).
CREATE FUNCTION steward._chain_step(prev bytea, record_digest bytea, prunable boolean)
RETURNS bytea LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT sha256(prev || record_digest || CASE WHEN prunable THEN '\x01'::bytea ELSE '\x00'::bytea END) $$;

-- Seals every record whose transaction has finished and that is not sealed yet, per tenant, in
-- id order. A record whose transaction is still running is left for a later seal: nothing is
-- skipped and the chain never forks. Sealers take turns (an advisory lock). Each run reads only
-- the records from the previous run's horizon up to its own (the (txid, id) index). Each tenant
-- whose chain advanced gets a `steward.audit.sealed` event carrying its new head, so consumers
-- outside hold a witness (a run that seals only such events emits none, or it never settles).
-- steward.seal_audit() (extension/src/audit.rs) runs this as the extension's owner, with the
-- seals' append-only guard open for it: called any other way, its writes are refused.
CREATE FUNCTION steward._seal_audit()
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    upto    xid8;
    since   xid8;
    r       steward.change_log;
    last    record;
    cur_t   uuid;
    prev    bytea;
    pos     bigint;
    pd      bytea;
    salt    bytea;
    last_id bigint;
    witness boolean := false;
    total   bigint := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('steward.seal_audit'));
    -- After the lock, with a fresh snapshot: what others sealed meanwhile is visible.
    upto := steward._horizon();
    since := (SELECT coalesce(max(x.horizon), '0') FROM steward.seal_state x);
    FOR r IN
        SELECT c.*
          FROM steward.change_log c
         WHERE c.txid >= since AND c.txid < upto
         ORDER BY c.tenant_id, c.id
    LOOP
        IF cur_t IS DISTINCT FROM r.tenant_id THEN
            IF witness THEN
                PERFORM steward._internal_witness(cur_t, last_id, prev);
            END IF;
            cur_t := r.tenant_id;
            witness := false;
            SELECT s.seq, s.hash INTO last
              FROM steward.audit_seals s WHERE s.tenant_id = cur_t ORDER BY s.seq DESC LIMIT 1;
            pos := coalesce(last.seq, 0);
            prev := coalesce(last.hash, ''::bytea);
        END IF;
        salt := uuid_send(gen_random_uuid());   -- 122 random bits
        pd := steward._payload_digest(r, salt);
        pos := pos + 1;
        prev := steward._chain_step(prev, steward._record_digest(r, pd), r.evented AND NOT r.audited);
        INSERT INTO steward.audit_seals
               (record_id, tenant_id, seq, payload_digest, payload_salt, hash, sealed_xmin, row_hash, txid, prunable)
        VALUES (r.id, cur_t, pos, pd, salt, prev, upto, r.row_hash, r.txid, r.evented AND NOT r.audited);
        last_id := r.id;
        witness := witness OR r.event_type IS DISTINCT FROM 'steward.audit.sealed';
        total := total + 1;
    END LOOP;
    IF witness THEN
        PERFORM steward._internal_witness(cur_t, last_id, prev);
    END IF;
    INSERT INTO steward.seal_state AS x (one, horizon) VALUES (true, upto)
    ON CONFLICT (one) DO UPDATE SET horizon = excluded.horizon WHERE x.horizon < excluded.horizon;
    RETURN total;
END
$$;

-- Erasure: removes a row's personal payload from its records, keeps the records and the proof.
CREATE FUNCTION steward.erase(rel regclass, row_key jsonb, reason text)
RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT steward._internal_erase(rel::oid, row_key, reason) $$;

-- Each tenant's chain head: keep these outside the database as a witness.
CREATE FUNCTION steward.audit_heads()
RETURNS TABLE (tenant_id uuid, sealed_through bigint, head text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT DISTINCT ON (s.tenant_id) s.tenant_id, s.record_id, encode(s.hash, 'hex')
      FROM steward.audit_seals s
     ORDER BY s.tenant_id, s.seq DESC
$$;

-- Re-computes every chain (or one tenant's). ok = false, with the first bad record, when a
-- sealed record was edited, deleted, reordered or its payload changed, when a record appears
-- below the sealed horizon unsealed (inserted after the fact), or, given heads kept outside
-- (the jsonb array of audit_heads() rows), when a chain no longer passes through them.
CREATE FUNCTION steward.verify_audit(tenant uuid DEFAULT NULL, heads jsonb DEFAULT NULL)
RETURNS TABLE (tenant_id uuid, sealed bigint, ok boolean, first_bad_id bigint)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t     uuid;
    s     record;
    c     steward.change_log;
    prev  bytea;
    pd    bytea;
    n     bigint;
    bad   bigint;
    h     jsonb;
BEGIN
    -- Every tenant steward knows, every tenant with seals, and every tenant a head kept
    -- outside names: a chain that is gone is reported, not skipped.
    FOR t IN
        SELECT x.tenant_id FROM steward.tenants x
         WHERE verify_audit.tenant IS NULL OR x.tenant_id = verify_audit.tenant
        UNION
        SELECT DISTINCT x.tenant_id FROM steward.audit_seals x
         WHERE verify_audit.tenant IS NULL OR x.tenant_id = verify_audit.tenant
        UNION
        SELECT (e ->> 'tenant_id')::uuid FROM jsonb_array_elements(coalesce(heads, '[]')) e
         WHERE verify_audit.tenant IS NULL OR (e ->> 'tenant_id')::uuid = verify_audit.tenant
        ORDER BY 1
    LOOP
        prev := ''::bytea; n := 0; bad := NULL;
        FOR s IN SELECT * FROM steward.audit_seals x WHERE x.tenant_id = t ORDER BY x.seq LOOP
            n := n + 1;
            SELECT * INTO c FROM steward.change_log x
             WHERE x.tenant_id = t AND x.txid = s.txid AND x.id = s.record_id;
            IF c.id IS NULL THEN
                -- Pruned by prune_outbox(): its tombstone keeps the record's digest. Only a
                -- record sealed as outbox-only may be pruned.
                SELECT x.record_digest INTO pd FROM steward.outbox_tombstones x
                 WHERE x.record_id = s.record_id AND x.tenant_id = t;
                IF NOT FOUND OR s.seq <> n OR NOT s.prunable THEN
                    bad := s.record_id; EXIT;
                END IF;
                prev := steward._chain_step(prev, pd, true);
                IF prev <> s.hash THEN
                    bad := s.record_id; EXIT;
                END IF;
                CONTINUE;
            END IF;
            IF s.seq <> n OR c.tenant_id <> t OR s.prunable <> (c.evented AND NOT c.audited) THEN
                bad := s.record_id; EXIT;
            END IF;
            -- An erased record has no payload, and its erasure is itself on record.
            IF c.erased_at IS NOT NULL AND (c.old_values IS NOT NULL OR c.new_row IS NOT NULL
                 OR NOT EXISTS (SELECT 1 FROM steward._row_records(steward._record_table(c.rel, c.txid), c.row_key, c.tenant_id) e
                                 WHERE e.action = 'ERASE' AND e.id > c.id AND e.tenant_id = c.tenant_id)) THEN
                bad := s.record_id; EXIT;
            END IF;
            pd := CASE WHEN c.erased_at IS NULL THEN steward._payload_digest(c, s.payload_salt) ELSE s.payload_digest END;
            IF pd IS DISTINCT FROM s.payload_digest THEN
                bad := s.record_id; EXIT;
            END IF;
            prev := steward._chain_step(prev, steward._record_digest(c, pd), s.prunable);
            IF prev <> s.hash THEN
                bad := s.record_id; EXIT;
            END IF;
        END LOOP;
        IF bad IS NULL THEN
            -- A record that should have been sealed but is not was added after the fact.
            SELECT min(c2.id) INTO bad
              FROM steward.change_log c2
             WHERE c2.tenant_id = t
               AND c2.txid < greatest((SELECT max(x.sealed_xmin) FROM steward.audit_seals x WHERE x.tenant_id = t),
                                      (SELECT max(y.horizon) FROM steward.seal_state y))
               AND NOT EXISTS (SELECT 1 FROM steward.audit_seals x
                                WHERE x.tenant_id = t AND x.record_id = c2.id);
        END IF;
        IF bad IS NULL AND heads IS NOT NULL THEN
            FOR h IN SELECT e FROM jsonb_array_elements(heads) e WHERE (e ->> 'tenant_id')::uuid = t LOOP
                IF NOT EXISTS (SELECT 1 FROM steward.audit_seals x
                                WHERE x.tenant_id = t
                                  AND x.record_id = (h ->> 'sealed_through')::bigint
                                  AND encode(x.hash, 'hex') = h ->> 'head') THEN
                    bad := coalesce((SELECT min(x.record_id) FROM steward.audit_seals x WHERE x.tenant_id = t),
                                    (h ->> 'sealed_through')::bigint);
                    EXIT;
                END IF;
            END LOOP;
        END IF;
        tenant_id := t; sealed := n; ok := bad IS NULL; first_bad_id := bad;
        RETURN NEXT;
    END LOOP;
END
$$;

------------------------------------------------------------------------------------------------
-- The change log's outbox face
------------------------------------------------------------------------------------------------

-- An event's headers: emit()'s own, and the context's actor, reason, request_id and traceparent
-- where they are set (extension/src/outbox.rs: one pass, for every event a consumer reads).
CREATE FUNCTION steward._internal_headers(headers jsonb, actor text, reason text, request_id text,
                                          traceparent text)
RETURNS jsonb LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'steward_event_headers';

-- One row per event: row events of governed tables with `events`, domain events from emit(),
-- and steward's own (steward.audit.sealed). The same records the audit face shows; nothing is
-- stored twice. Tenant roles see their own tenant's events (the log's RLS).
CREATE VIEW steward.outbox WITH (security_invoker = true) AS
SELECT c.id, c.event_id, c.tenant_id, c.txid, c.occurred_at, c.event_type,
       coalesce(c.aggregate_type, c.table_name) AS aggregate_type,
       coalesce(c.aggregate_id, steward._internal_aggregate_id(c.row_key)) AS aggregate_id,
       c.schema_version,
       CASE WHEN c.action = 'DELETE' THEN steward._old_row(c.old_values, c.new_row, c.changed) ELSE c.new_row END AS payload,
       steward._internal_headers(c.headers, c.actor, c.reason, c.request_id, c.traceparent) AS headers
  FROM steward.change_log c
 WHERE c.evented;
GRANT SELECT ON steward.outbox TO PUBLIC;

CREATE TRIGGER steward_catalog_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON steward.event_types FOR EACH STATEMENT EXECUTE FUNCTION steward._internal_catalog_changed();


-- A consumer's position as steward reads it. A row written before positions were snapshots
-- (done IS NULL) held (pos_txid, pos_id) in the old (txid, id) order: every transaction below
-- pos_txid delivered, and pos_txid's events through pos_id. Such a position was always below
-- the horizon of its time, so pos_txid had ended when an event of it was acked.
CREATE FUNCTION steward._consumer_position(k steward.consumers)
RETURNS steward.consumers
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF k.done IS NULL THEN
        k.done := format('%1$s:%1$s:', greatest(coalesce(k.pos_txid::text::numeric, 1), 1))::pg_snapshot;
        IF k.pos_id > 0 THEN
            k.batch := format('%1$s:%1$s:', k.pos_txid::text::numeric + 1)::pg_snapshot;
            k.acked_max := greatest(k.acked_max, k.pos_id);
        ELSE
            k.pos_txid := NULL;
        END IF;
    END IF;
    RETURN k;
END
$$;

-- The consumer `name`, if the caller may use it: a tenant's consumer from inside that tenant,
-- an all-tenant consumer from a trusted role or superuser outside any tenant. With `lock`, the
-- row is locked for the caller's update (and a position from before snapshots is rewritten as
-- one).
CREATE FUNCTION steward._consumer(name text, lock boolean DEFAULT false)
RETURNS steward.consumers
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    k     steward.consumers;
    scope uuid := steward._internal_consumer_scope();
BEGIN
    -- Names are scoped to the caller's tenant (or to the all-tenant consumers): another
    -- scope's consumer of the same name is not there for the caller, not even as a name.
    IF lock THEN
        SELECT * INTO k FROM steward.consumers x
         WHERE x.name = _consumer.name AND coalesce(x.tenant_id, '00000000-0000-0000-0000-000000000000'::uuid) = coalesce(scope, '00000000-0000-0000-0000-000000000000'::uuid)
           FOR UPDATE;
    ELSE
        SELECT * INTO k FROM steward.consumers x
         WHERE x.name = _consumer.name AND coalesce(x.tenant_id, '00000000-0000-0000-0000-000000000000'::uuid) = coalesce(scope, '00000000-0000-0000-0000-000000000000'::uuid);
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

-- A named cursor. 'latest' starts after what is visible now; 'earliest' replays every retained
-- event. Created inside a tenant, it reads that tenant's events; by a trusted role or superuser
-- outside any tenant, every tenant's.
CREATE FUNCTION steward.create_consumer(name text, start text DEFAULT 'latest')
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
    INSERT INTO steward.consumers (name, tenant_id, done, created_by)
    VALUES (create_consumer.name, scope,
            CASE start WHEN 'earliest' THEN '1:1:'::pg_snapshot ELSE steward._snapshot() END,
            session_user);
EXCEPTION WHEN unique_violation THEN
    PERFORM steward._raise('ST400', format('consumer "%s" already exists', name),
                          'Use it, move it with steward.seek(), or pick another name.');
END
$$;

-- The events of `scope` (NULL: every tenant) whose transactions are visible in `upto` and not in
-- `base`: those in base's in-progress list, and those from its xmax on (everything else below
-- base's xmax was visible in it, or rolled back). Two index ranges, never the log before base.
CREATE FUNCTION steward._events_between(scope uuid, base pg_snapshot, upto pg_snapshot)
RETURNS TABLE (txid xid8, id bigint, occurred_at timestamptz)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.txid, c.id, c.occurred_at FROM steward.change_log c
     WHERE c.txid = ANY (ARRAY(SELECT pg_snapshot_xip(base)))
       AND pg_visible_in_snapshot(c.txid, upto)
       AND c.evented AND (scope IS NULL OR c.tenant_id = scope)
    UNION ALL
    SELECT c.txid, c.id, c.occurred_at FROM steward.change_log c
     WHERE c.txid >= pg_snapshot_xmax(base) AND c.txid < pg_snapshot_xmax(upto)
       AND pg_visible_in_snapshot(c.txid, upto)
       AND c.evented AND (scope IS NULL OR c.tenant_id = scope)
$$;

-- steward._internal_batch_next(scope, done, batch, after, budget) (extension/src/outbox.rs):
-- the transactions of a consumer's batch after `after`, in delivery order, until they hold
-- `budget` events, each as (txid, events). The order is computed once per batch and backend.
-- steward._internal_batch_find(scope, done, batch, after, event_id): of those poll() can have
-- returned, the transactions whose event ids span `event_id` (where ack() looks for it).

-- The next events after the consumer's position, in commit order (ADR 004). A batch is what
-- became visible between two snapshots; each transaction's events come together, in the order
-- they were written, and transactions in the order of their last event. A batch is opened (its
-- snapshot stored) when the one before is delivered; an event of a transaction still running
-- belongs to a later batch, so it is never skipped, and it holds nothing back. poll() does not
-- move the position: ack() does.
CREATE FUNCTION steward.poll(consumer text, max_events int DEFAULT 100)
RETURNS SETOF steward.outbox
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
-- Always walk the (txid, id) index: with stale statistics the planner may otherwise read far
-- more of the log than a batch holds.
SET enable_seqscan = off
SET enable_bitmapscan = off
AS $$
DECLARE
    k      steward.consumers := steward._consumer(consumer);
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
        -- No batch, or it is delivered: the next one is what has become visible since.
        upto := steward._snapshot();
        base := coalesce(k.batch, k.done);
        IF NOT EXISTS (SELECT 1 FROM steward._events_between(k.tenant_id, base, upto)) THEN
            RETURN;
        END IF;
        -- Another poll or an ack of this consumer may have moved it meanwhile: then again.
        fresh := steward._consumer(consumer, lock => true);
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

-- Moves the consumer past `through_id`, an event poll() returned, and everything before it in the
-- order. Acking what is already behind the position does nothing (a relay may ack twice).
CREATE FUNCTION steward.ack(consumer text, through_id bigint)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
SET enable_bitmapscan = off
AS $$
DECLARE
    k    steward.consumers := steward._consumer(consumer, lock => true);
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
        PERFORM steward._raise('ST400', format('steward.ack: event %s is not an event consumer "%s" has read', coalesce(through_id::text, 'NULL'), consumer),
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

-- Moves the consumer back (to replay) or forward (to skip) so that every event that occurred at
-- or after `to_time` is delivered again, and possibly some just before it. Forward, what occurred
-- before the time is skipped; back, nothing that was not delivered yet is (an event occurs when
-- its transaction starts, and one that started before the time may commit after it). Never past
-- a transaction still running.
CREATE FUNCTION steward.seek(consumer text, to_time timestamptz)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    k    steward.consumers := steward._consumer(consumer, lock => true);
    upto pg_snapshot := steward._snapshot();
    x    numeric;
    d    pg_snapshot := k.done;
    goal pg_snapshot;
BEGIN
    IF to_time IS NULL THEN
        PERFORM steward._raise('ST400', format('steward.seek: consumer "%s" needs a time to seek to', consumer),
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

-- Per consumer: the events it has not acked (behind) and the oldest one's age.
CREATE FUNCTION steward._consumer_lag()
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
    FOR raw IN SELECT * FROM steward.consumers x
                WHERE steward._internal_consumer_visible(x.tenant_id) ORDER BY x.name LOOP
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
CREATE VIEW steward.consumer_lag AS SELECT * FROM steward._consumer_lag();
GRANT SELECT ON steward.consumer_lag TO PUBLIC;

-- Removes what no face needs any more: events the audit face does not show, sealed, older than
-- `retention`, and acked by every consumer that can read them. Each leaves a tombstone with its
-- record digest; verify_audit() stays ok.
CREATE FUNCTION steward.prune_outbox(retention interval DEFAULT '7 days')
RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT steward._internal_prune_outbox(retention) $$;

-- Deletes a row of the caller's tenant only if it is still at `version`: what a DELETE with
-- If-Match asks. Returns true when the row is gone (deleted, or soft-deleted), false when the key
-- names no row the caller can see; a row at another version is ST409 naming the table, the key,
-- the version stated and the row's. Runs as the caller (its privileges, its tenant's rows).
CREATE FUNCTION steward.delete_version(rel regclass, row_key jsonb, version bigint)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cond   text;
    actual bigint;
    n      bigint;
BEGIN
    IF rel IS NULL OR row_key IS NULL OR version IS NULL THEN
        PERFORM steward._raise('ST400', format('steward.delete_version needs a table, a key and a version, not %s, %s, %s', coalesce(rel::text, 'NULL'), coalesce(row_key::text, 'NULL'), coalesce(version::text, 'NULL')),
                              'e.g. steward.delete_version(''app.orders'', ''{"id": 7}'', 3): the version is the one you read.');
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_attribute a
                    WHERE a.attrelid = rel AND a.attname = 'version' AND a.attnum > 0
                      AND NOT a.attisdropped AND a.atttypid = 'bigint'::regtype) THEN
        PERFORM steward._raise('ST400', format('table %s has no version', rel),
                              'Only tables governed with versioned => true have versions; delete by key instead.');
    END IF;
    -- The key's columns, compared with the key's values cast to their types.
    SELECT string_agg(format('%I = ($1 OPERATOR(pg_catalog.->>) %L)::%s', a.attname, a.attname,
                             format_type(a.atttypid, a.atttypmod)), ' AND ' ORDER BY k.ord)
      INTO cond
      FROM pg_index i
     CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
     WHERE i.indrelid = rel AND i.indisprimary;
    IF cond IS NULL OR (SELECT count(*) FROM jsonb_object_keys(row_key)) <>
                       (SELECT cardinality(i.indkey) FROM pg_index i WHERE i.indrelid = rel AND i.indisprimary) THEN
        PERFORM steward._raise('ST400', format('key %s does not name a row of %s', row_key, rel),
                              'Give every column of the primary key, e.g. {"id": 7}.');
    END IF;
    EXECUTE format('SELECT version FROM %s WHERE %s', rel, cond) INTO actual USING row_key;
    IF actual IS NULL THEN
        RETURN false;
    END IF;
    IF actual <> version THEN
        PERFORM steward._raise('ST409', format('version conflict on %s row %s: expected version %s, actual %s', rel, row_key, version, actual),
                              'Someone else changed the row since you read it: read it again, and delete with the version you read.');
    END IF;
    EXECUTE format('DELETE FROM %s WHERE %s AND version = $2', rel, cond) USING row_key, version;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n = 0 THEN
        -- Soft-deleted (the row is out of sight now), or changed meanwhile.
        EXECUTE format('SELECT version FROM %s WHERE %s', rel, cond) INTO actual USING row_key;
        IF actual IS NOT NULL THEN
            PERFORM steward._raise('ST409', format('version conflict on %s row %s: expected version %s, actual %s', rel, row_key, version, actual),
                                  'Someone else changed the row since you read it: read it again, and delete with the version you read.');
        END IF;
    END IF;
    RETURN true;
END
$$;

-- Brings back a soft-deleted row of the caller's tenant (recorded as an INSERT). It runs as the
-- caller: the UPDATE needs the caller's UPDATE privilege, and nothing the table owner defined runs
-- with more privilege than the caller has (extension/src/govern.rs).
CREATE FUNCTION steward.restore(rel regclass, row_key jsonb)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT steward._internal_restore(rel::oid, row_key) $$;

-- A dropped table leaves the catalog with it.
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
END
$$;

CREATE EVENT TRIGGER steward_forget_dropped_tables ON sql_drop
    EXECUTE FUNCTION steward._forget_dropped_tables();

-- Every backend caches what these catalogs say; a change to any of them drops those caches
-- when it commits.
CREATE TRIGGER steward_catalog_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON steward.tenants FOR EACH STATEMENT EXECUTE FUNCTION steward._internal_catalog_changed();
CREATE TRIGGER steward_catalog_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON steward.tenant_grants FOR EACH STATEMENT EXECUTE FUNCTION steward._internal_catalog_changed();
CREATE TRIGGER steward_catalog_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON steward.trusted_roles FOR EACH STATEMENT EXECUTE FUNCTION steward._internal_catalog_changed();

------------------------------------------------------------------------------------------------
-- Privileges
------------------------------------------------------------------------------------------------

REVOKE ALL ON FUNCTION
    steward.create_tenant(text, text),
    steward._tenant_slug(uuid),
    steward.grant_tenant(regrole, uuid),
    steward.revoke_tenant(regrole, uuid),
    steward.trust_role(regrole),
    steward.govern(regclass, name, boolean, boolean, boolean, boolean, boolean),
    steward._govern(regclass, name, boolean, boolean, boolean, boolean, boolean),
    steward._internal_governing_begin(oid),
    steward._internal_governing_end(oid),
    steward.ungovern(regclass),
    steward._ungovern(regclass),
    steward._governance_faults(oid),
    steward._ddl_guard(),
    steward._ddl_guard_start(),
    steward._faults_of(oid[]),
    steward._internal_ddl_begin(text[]),
    steward._internal_ddl_end(),
    steward._internal_record_ddl(text, text),
    steward._internal_record_refusal(text, text),
    steward._tenant_gone(),
    steward._extension_guard(),
    steward._forget_dropped_tables(),
    steward.seal_audit(),
    steward._seal_audit(),
    steward._internal_witness(uuid, bigint, bytea),
    steward.audit_heads(),
    steward.verify_audit(uuid, jsonb),
    steward.erase(regclass, jsonb, text),
    steward._internal_erase(oid, jsonb, text),
    steward.register_event_type(text, integer, jsonb),
    steward.prune_outbox(interval),
    steward._internal_prune_outbox(interval),
    steward._internal_batch_next(uuid, text, text, text, bigint),
    steward._internal_batch_find(uuid, text, text, text, bigint),
    steward._internal_batch_behind(uuid, text, text, text, bigint)
FROM PUBLIC;
-- steward's trigger functions fire for everyone, but only the DBA may attach them: without
-- this, a role that can create a table could attach the log trigger to it and forge records.
REVOKE ALL ON FUNCTION
    steward._internal_row_guard(),
    steward._internal_update_guard(),
    steward._internal_truncate_guard(),
    steward._internal_catalog_changed(),
    steward._internal_log_guard(),
    steward._internal_governed_guard(),
    steward._internal_log_row()
FROM PUBLIC;

-- restore() checks the caller's UPDATE privilege and tenant itself.
GRANT EXECUTE ON FUNCTION steward.restore(regclass, jsonb) TO PUBLIC;
GRANT EXECUTE ON FUNCTION steward.delete_version(regclass, jsonb, bigint) TO PUBLIC;
REVOKE ALL ON steward.governed_tables FROM PUBLIC;

-- Everyone may use the schema (the policies call steward.current_tenant()) and the context
-- functions, which check the caller themselves.
GRANT USAGE ON SCHEMA steward TO PUBLIC;
