-- steward 0.1.0 -> 0.2.0, run by ALTER EXTENSION steward UPDATE (docs/dba-guide.md, Upgrading).
-- Released: never edited once 0.2.0 is cut (sql/releases.txt; `cargo xtask test` refuses it).
-- One transaction: any failure leaves the database at 0.1.0, as it was.
--
-- 1. Refuses, before it changes anything, what it cannot carry over: an update run by another
--    role than the extension's owner, and tables 0.2.0 cannot govern safely (all of them named).
-- 2. Changes steward's tables, migrating what 0.1.0 stored (grants kept by role OID, seals
--    without their record's txid, consumers' positions in (txid, id) order).
-- 3. Replaces steward's functions, views, policies and triggers with 0.2.0's.
-- 4. Governs every governed table again (steward.regovern()), so that their policies and
--    triggers are 0.2.0's; then adds the DDL guard, and sets the privileges of what it created.
\echo Use "ALTER EXTENSION steward UPDATE" to load this file. \quit

-- pg_dump's choice too: the SQL functions below refer to one another, in no particular order.
SET LOCAL check_function_bodies = false;

------------------------------------------------------------------------------------------------
-- 1. What this update refuses
------------------------------------------------------------------------------------------------
-- What existed before this update keeps its privileges (they are the DBA's); what it creates
-- gets steward's, whatever the database's default privileges say (section 4).
SELECT pg_catalog.set_config('steward_upgrade.kept',
           (SELECT pg_catalog.string_agg(d.objid::text, ',')
              FROM pg_catalog.pg_depend d
             WHERE d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass AND d.deptype = 'e'
               AND d.refobjid = (SELECT e.oid FROM pg_catalog.pg_extension e
                                  WHERE e.extname = 'steward')),
           true);

-- What an update creates belongs to the role that runs it: steward's objects must all be its
-- owner's (the DDL guard runs as it).
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

-- Every governed table must be one 0.2.0 can govern: 0.1.0 checked less (foreign keys that join
-- two tenants' rows, rules, partitions: ADR 007 and 008). All of them are named at once.
-- (0.2.0's check, created here so that it runs before anything changes; section 3 creates it
-- again with the others.)
CREATE OR REPLACE FUNCTION steward._table_faults(rel oid, tenant_column name, versioned boolean, soft_delete boolean)
 RETURNS TABLE(fault text, hint text)
 LANGUAGE plpgsql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
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
$function$;

DO $$
DECLARE
    faults text;
BEGIN
    SELECT string_agg(x.line, E'\n' ORDER BY x.line) INTO faults
      FROM (SELECT format('  %s: %s (%s)', g.rel::text, f.fault, f.hint) AS line
              FROM steward.governed g
              JOIN pg_catalog.pg_class c ON c.oid = g.rel
             CROSS JOIN LATERAL steward._table_faults(g.rel::oid, g.tenant_column, g.versioned,
                                                      g.soft_delete) AS f
            UNION ALL
            SELECT format('  %s: governed, but no such table exists any more (DELETE FROM steward.governed WHERE rel = %s)',
                          g.rel::oid, g.rel::oid)
              FROM steward.governed g
             WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = g.rel)) AS x;
    IF faults IS NOT NULL THEN
        RAISE EXCEPTION E'steward 0.2.0 cannot govern every table 0.1.0 governed:\n%', faults
            USING ERRCODE = 'ST400',
                  HINT = 'Nothing was changed. Under 0.1.0, fix each table as its hint says, or ungovern it: SELECT steward.ungovern(''<table>'') keeps its records but turns its row-level security off, so revoke tenant roles'' privileges on it first. Then run ALTER EXTENSION steward UPDATE again (docs/dba-guide.md, Upgrading).';
    END IF;
END
$$;


-- 2. steward's tables
------------------------------------------------------------------------------------------------

-- Grants are kept as regrole (by name in a dump). A grant whose role no longer exists is
-- removed: its OID could be given to a new role, which would inherit the grant.
DO $$
DECLARE
    n bigint;
BEGIN
    DELETE FROM steward.tenant_grants g
     WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_authid a WHERE a.oid = g.role_oid);
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        RAISE NOTICE 'steward: removed % tenant grant(s) of roles that no longer exist', n;
    END IF;
    DELETE FROM steward.trusted_roles t
     WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_authid a WHERE a.oid = t.role_oid);
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        RAISE NOTICE 'steward: removed % trusted role(s) that no longer exist', n;
    END IF;
END
$$;
-- A dump keeps the grants and trust of roles that exist (bootstrap.sql).
SELECT pg_catalog.pg_extension_config_dump('steward.tenant_grants',
    'WHERE role::oid IN (SELECT oid FROM pg_catalog.pg_roles)');
SELECT pg_catalog.pg_extension_config_dump('steward.trusted_roles',
    'WHERE role::oid IN (SELECT oid FROM pg_catalog.pg_roles)');
ALTER TABLE steward.tenant_grants DROP CONSTRAINT tenant_grants_tenant_id_fkey;
ALTER TABLE steward.tenant_grants RENAME COLUMN role_oid TO role;
ALTER TABLE steward.tenant_grants ALTER COLUMN role TYPE regrole USING role::regrole;
ALTER TABLE steward.trusted_roles RENAME COLUMN role_oid TO role;
ALTER TABLE steward.trusted_roles ALTER COLUMN role TYPE regrole USING role::regrole;

-- The OID each governed table had when it was governed: here, the one it has.
ALTER TABLE steward.governed ADD COLUMN source_oid oid;
UPDATE steward.governed SET source_oid = rel::oid;
-- Each table's name in its row events' types: the one its 0.1.0 log trigger was given (the fifth
-- argument: the name when it was governed), so that a table renamed since keeps sending what
-- its consumers know; govern() keeps it from here on.
ALTER TABLE steward.governed ADD COLUMN event_name text;
UPDATE steward.governed g
   SET event_name = coalesce(
           (SELECT nullif(pg_catalog.split_part(pg_catalog.encode(t.tgargs, 'escape'), '\000', 5), '')
              FROM pg_catalog.pg_trigger t
             WHERE t.tgrelid = g.rel AND t.tgname = 'steward_log' AND t.tgnargs >= 6),
           (SELECT c.relname FROM pg_catalog.pg_class c WHERE c.oid = g.rel));

-- Each seal names its record's txid: copied by a join on the log's 0.1.0 key (id), before that
-- key is replaced below. 0.1.0's append-only guard (replaced in section 3) would refuse the
-- update. A record prune_outbox() removed has no txid left to copy: its seal gets '0', which
-- finds nothing, as the record is gone (its tombstone keeps its digest).
DROP TRIGGER steward_append_only ON steward.audit_seals;
ALTER TABLE steward.audit_seals ADD COLUMN txid xid8;
UPDATE steward.audit_seals s SET txid = c.txid FROM steward.change_log c WHERE c.id = s.record_id;
UPDATE steward.audit_seals s SET txid = '0' WHERE s.txid IS NULL;
ALTER TABLE steward.audit_seals ALTER COLUMN txid SET NOT NULL;
DROP INDEX steward.audit_seals_row;
CREATE INDEX audit_seals_row ON steward.audit_seals (tenant_id, row_hash);

-- The log's key leads with the tenant (ADR 009). Rebuilds the index: on a large log, the
-- upgrade takes as long as building an index over it.
ALTER TABLE steward.change_log DROP CONSTRAINT change_log_pkey;
ALTER TABLE steward.change_log ADD CONSTRAINT change_log_pkey PRIMARY KEY (tenant_id, txid, id);

-- The log's id sequence is steward's writer's only (a default privilege may have given it out).
REVOKE ALL ON SEQUENCE steward.change_log_id_seq FROM PUBLIC;

-- No row until the first seal: a dump's row restores into an empty table.
DELETE FROM steward.seal_state WHERE horizon = '0';

-- Consumers: names scoped per tenant; positions in the commit order (ADR 004). A 0.1.0 position
-- (done NULL) is read as it was and rewritten at the consumer's first poll, ack or seek
-- (steward._consumer_position).
ALTER TABLE steward.consumers DROP CONSTRAINT consumers_pkey;
ALTER TABLE steward.consumers ALTER COLUMN pos_txid DROP NOT NULL,
                              ALTER COLUMN pos_id SET DEFAULT 0;
ALTER TABLE steward.consumers ADD COLUMN done pg_snapshot,
                              ADD COLUMN batch pg_snapshot,
                              ADD COLUMN acked_max bigint NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX consumers_scope_name
    ON steward.consumers ((coalesce(tenant_id, '00000000-0000-0000-0000-000000000000'::uuid)), name);

CREATE TABLE steward.xid_base (
    one               boolean PRIMARY KEY DEFAULT true CHECK (one),
    system_identifier text NOT NULL,
    database_oid      oid NOT NULL,
    xid_offset        bigint NOT NULL CHECK (xid_offset >= 0),
    set_at            timestamptz NOT NULL DEFAULT pg_catalog.now()
);
REVOKE ALL ON steward.xid_base FROM PUBLIC;
GRANT SELECT ON steward.xid_base TO PUBLIC;

CREATE TABLE steward.rel_aliases (
    old_rel     oid PRIMARY KEY,
    rel         oid NOT NULL,
    before_txid xid8
);
REVOKE ALL ON steward.rel_aliases FROM PUBLIC;
GRANT SELECT ON steward.rel_aliases TO PUBLIC;

-- A dump keeps the log, its seals, the sealing state, the tombstones and the id sequence.
SELECT pg_catalog.pg_extension_config_dump('steward.change_log', '');
SELECT pg_catalog.pg_extension_config_dump('steward.change_log_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('steward.audit_seals', '');
SELECT pg_catalog.pg_extension_config_dump('steward.seal_state', '');
SELECT pg_catalog.pg_extension_config_dump('steward.outbox_tombstones', '');

DO $$
BEGIN
    CREATE ROLE steward_breakglass NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;

------------------------------------------------------------------------------------------------
-- 3. Functions, views, policies and triggers
------------------------------------------------------------------------------------------------
DROP VIEW steward.consumer_lag;
-- Functions that are gone, or whose arguments or result changed.
DROP FUNCTION steward._consumer(text);
DROP FUNCTION steward._row_records(oid,jsonb);
DROP FUNCTION steward._witness(uuid,bigint,bytea);
DROP FUNCTION steward._consumer_lag();

-- Every function that is new or changed.
CREATE OR REPLACE FUNCTION steward._append_only_tables()
 RETURNS text[]
 LANGUAGE sql
 IMMUTABLE
AS $function$ SELECT ARRAY['steward.change_log', 'steward.audit_seals', 'steward.seal_state',
                   'steward.outbox_tombstones', 'steward.xid_base', 'steward.rel_aliases'] $function$;

CREATE OR REPLACE FUNCTION steward._consumer(name text, lock boolean DEFAULT false)
 RETURNS steward.consumers
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
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
$function$;

CREATE OR REPLACE FUNCTION steward._consumer_lag()
 RETURNS TABLE(consumer text, tenant_id uuid, behind bigint, oldest_unacked_at timestamp with time zone, oldest_unacked_age interval, acked_at timestamp with time zone)
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET enable_seqscan TO 'off'
 SET enable_bitmapscan TO 'off'
AS $function$
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
$function$;

CREATE OR REPLACE FUNCTION steward._consumer_position(k steward.consumers)
 RETURNS steward.consumers
 LANGUAGE plpgsql
 IMMUTABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
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
$function$;

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
    PERFORM steward._internal_ddl_begin(ARRAY(
        SELECT f.fault FROM steward._faults_of(ARRAY(SELECT g.rel::oid FROM steward.governed g)) f));
END
$function$;

CREATE OR REPLACE FUNCTION steward._events_between(scope uuid, base pg_snapshot, upto pg_snapshot)
 RETURNS TABLE(txid xid8, id bigint, occurred_at timestamp with time zone)
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT c.txid, c.id, c.occurred_at FROM steward.change_log c
     WHERE c.txid = ANY (ARRAY(SELECT pg_snapshot_xip(base)))
       AND pg_visible_in_snapshot(c.txid, upto)
       AND c.evented AND (scope IS NULL OR c.tenant_id = scope)
    UNION ALL
    SELECT c.txid, c.id, c.occurred_at FROM steward.change_log c
     WHERE c.txid >= pg_snapshot_xmax(base) AND c.txid < pg_snapshot_xmax(upto)
       AND pg_visible_in_snapshot(c.txid, upto)
       AND c.evented AND (scope IS NULL OR c.tenant_id = scope)
$function$;

CREATE OR REPLACE FUNCTION steward._extension_guard()
 RETURNS event_trigger
 LANGUAGE c
AS '$libdir/steward', $function$steward_extension_guard$function$;

CREATE OR REPLACE FUNCTION steward._faults_of(rels oid[])
 RETURNS TABLE(fault text, hint text)
 LANGUAGE sql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
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
$function$;

CREATE OR REPLACE FUNCTION steward._forget_dropped_roles()
 RETURNS void
 LANGUAGE sql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    DELETE FROM steward.tenant_grants g
     WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.oid = g.role::oid);
    DELETE FROM steward.trusted_roles t
     WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.oid = t.role::oid);
$function$;

CREATE OR REPLACE FUNCTION steward._govern(rel regclass, tenant_column name DEFAULT 'tenant_id'::name, versioned boolean DEFAULT true, version_required boolean DEFAULT false, audited boolean DEFAULT true, events boolean DEFAULT true, soft_delete boolean DEFAULT false)
 RETURNS void
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET client_min_messages TO 'warning'
AS $function$
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
$function$;

CREATE OR REPLACE FUNCTION steward._governance_faults(rel oid)
 RETURNS TABLE(fault text, hint text)
 LANGUAGE plpgsql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
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
    -- of these in one command).
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
                AND x.tgargs IS DISTINCT FROM CASE WHEN e.with_args THEN
                   (SELECT string_agg(convert_to(a, current_setting('server_encoding')) || '\x00'::bytea,
                                      ''::bytea ORDER BY o)
                      FROM unnest(steward._trigger_args(_governance_faults.rel)) WITH ORDINALITY AS t(a, o))
                   ELSE ''::bytea END)
    LOOP
        fault := format('trigger %s on %s is not the one govern() attached: its function, events, condition or arguments were changed',
                        r.tgname, tbl);
        hint := format('SELECT steward.govern(%L, ...) with the options in steward.governed_tables attaches it again', tbl);
        RETURN NEXT;
    END LOOP;
    RETURN QUERY SELECT * FROM steward._table_faults(_governance_faults.rel, g.tenant_column, g.versioned, g.soft_delete);
END
$function$;

CREATE OR REPLACE FUNCTION steward._horizon()
 RETURNS xid8
 LANGUAGE sql
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT (pg_snapshot_xmin(pg_current_snapshot())::text::numeric
            + steward._internal_xid_offset())::text::xid8
$function$;

CREATE OR REPLACE FUNCTION steward._internal_batch_behind(scope uuid, done text, batch text, after text, event_id bigint)
 RETURNS bigint[]
 LANGUAGE c
 STABLE
AS '$libdir/steward', $function$_internal_batch_behind_wrapper$function$;

CREATE OR REPLACE FUNCTION steward._internal_batch_find(scope uuid, done text, batch text, after text, event_id bigint)
 RETURNS bigint[]
 LANGUAGE c
 STABLE
AS '$libdir/steward', $function$_internal_batch_find_wrapper$function$;

CREATE OR REPLACE FUNCTION steward._internal_batch_next(scope uuid, done text, batch text, after text, budget bigint)
 RETURNS TABLE(txid bigint, events bigint)
 LANGUAGE c
 STABLE
AS '$libdir/steward', $function$_internal_batch_next_wrapper$function$;

CREATE OR REPLACE FUNCTION steward._internal_break_glass_active()
 RETURNS boolean
 LANGUAGE c
 STABLE PARALLEL RESTRICTED STRICT
AS '$libdir/steward', $function$_internal_break_glass_active_wrapper$function$;

CREATE OR REPLACE FUNCTION steward._internal_ddl_begin(known text[])
 RETURNS void
 LANGUAGE c
AS '$libdir/steward', $function$_internal_ddl_begin_wrapper$function$;

CREATE OR REPLACE FUNCTION steward._internal_ddl_end()
 RETURNS void
 LANGUAGE c
 STRICT
AS '$libdir/steward', $function$_internal_ddl_end_wrapper$function$;

CREATE OR REPLACE FUNCTION steward._internal_ddl_known()
 RETURNS text[]
 LANGUAGE c
 STABLE PARALLEL RESTRICTED STRICT
AS '$libdir/steward', $function$_internal_ddl_known_wrapper$function$;

CREATE OR REPLACE FUNCTION steward._internal_erase(rel oid, row_key jsonb, reason text)
 RETURNS bigint
 LANGUAGE c
AS '$libdir/steward', $function$_internal_erase_wrapper$function$;

CREATE OR REPLACE FUNCTION steward._internal_governed_guard()
 RETURNS trigger
 LANGUAGE c
AS '$libdir/steward', $function$_internal_governed_guard_wrapper$function$;

CREATE OR REPLACE FUNCTION steward._internal_governing(rel oid)
 RETURNS boolean
 LANGUAGE c
 STABLE PARALLEL RESTRICTED STRICT
AS '$libdir/steward', $function$_internal_governing_wrapper$function$;

CREATE OR REPLACE FUNCTION steward._internal_governing_begin(rel oid)
 RETURNS void
 LANGUAGE c
 STRICT
AS '$libdir/steward', $function$_internal_governing_begin_wrapper$function$;

CREATE OR REPLACE FUNCTION steward._internal_governing_end(rel oid)
 RETURNS void
 LANGUAGE c
 STRICT
AS '$libdir/steward', $function$_internal_governing_end_wrapper$function$;

CREATE OR REPLACE FUNCTION steward._internal_own_write(rel oid)
 RETURNS boolean
 LANGUAGE c
 STABLE PARALLEL RESTRICTED STRICT
AS '$libdir/steward', $function$_internal_own_write_wrapper$function$;

CREATE OR REPLACE FUNCTION steward._internal_plan_guard()
 RETURNS boolean
 LANGUAGE c
 IMMUTABLE PARALLEL SAFE STRICT
AS '$libdir/steward', $function$_internal_plan_guard_wrapper$function$;

CREATE OR REPLACE FUNCTION steward._internal_prune_outbox(retention interval)
 RETURNS bigint
 LANGUAGE c
AS '$libdir/steward', $function$_internal_prune_outbox_wrapper$function$;

CREATE OR REPLACE FUNCTION steward._internal_record_ddl(command text, faults text)
 RETURNS void
 LANGUAGE c
AS '$libdir/steward', $function$_internal_record_ddl_wrapper$function$;

CREATE OR REPLACE FUNCTION steward._internal_record_refusal(command text, faults text)
 RETURNS void
 LANGUAGE c
AS '$libdir/steward', $function$_internal_record_refusal_wrapper$function$;

CREATE OR REPLACE FUNCTION steward._internal_restore(rel oid, row_key jsonb)
 RETURNS void
 LANGUAGE c
AS '$libdir/steward', $function$_internal_restore_wrapper$function$;

CREATE OR REPLACE FUNCTION steward._internal_witness(tenant uuid, sealed_through bigint, head bytea)
 RETURNS void
 LANGUAGE c
 STRICT
AS '$libdir/steward', $function$_internal_witness_wrapper$function$;

CREATE OR REPLACE FUNCTION steward._internal_xid_offset(persist boolean DEFAULT true)
 RETURNS bigint
 LANGUAGE c
 STRICT
AS '$libdir/steward', $function$_internal_xid_offset_wrapper$function$;

CREATE OR REPLACE FUNCTION steward._raise(code text, message text, hint text)
 RETURNS void
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
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
$function$;

CREATE OR REPLACE FUNCTION steward._record_table(rel oid, txid xid8)
 RETURNS oid
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT coalesce((SELECT a.rel FROM steward.rel_aliases a
                      WHERE a.old_rel = _record_table.rel
                        AND (a.before_txid IS NULL OR _record_table.txid < a.before_txid)),
                    _record_table.rel)
$function$;

CREATE OR REPLACE FUNCTION steward._reset_privileges(keep oid[])
 RETURNS void
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    o record;
    a record;
BEGIN
    FOR o IN
        SELECT d.classid, d.objid,
               CASE WHEN d.classid = 'pg_proc'::regclass THEN 'FUNCTION ' || d.objid::regprocedure::text
                    WHEN c.relkind = 'S' THEN 'SEQUENCE ' || d.objid::regclass::text
                    ELSE 'TABLE ' || d.objid::regclass::text END AS what,
               coalesce(p.proacl, c.relacl) AS acl,
               coalesce(p.proowner, c.relowner) AS owner
          FROM pg_depend d
          LEFT JOIN pg_proc p ON d.classid = 'pg_proc'::regclass AND p.oid = d.objid
          LEFT JOIN pg_class c ON d.classid = 'pg_class'::regclass AND c.oid = d.objid
         WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
           AND d.refobjid = (SELECT e.oid FROM pg_extension e WHERE e.extname = 'steward')
           AND (p.oid IS NOT NULL OR c.relkind IN ('r', 'v', 'S'))
           AND NOT d.objid = ANY (coalesce(keep, '{}'))
    LOOP
        FOR a IN SELECT DISTINCT x.grantee FROM aclexplode(o.acl) x
                  WHERE x.grantee <> o.owner
                    AND (x.grantee <> 0 OR o.what LIKE 'SEQUENCE %')
                    AND NOT (x.grantee <> 0 AND pg_get_userbyid(x.grantee) LIKE 'steward\_%')
        LOOP
            EXECUTE format('REVOKE ALL ON %s FROM %s', o.what,
                           CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END);
        END LOOP;
        IF o.classid = 'pg_proc'::regclass THEN
            EXECUTE format('GRANT EXECUTE ON %s TO PUBLIC', o.what);
        END IF;
    END LOOP;
END
$function$;

CREATE OR REPLACE FUNCTION steward._row_records(rel oid, row_key jsonb, tenant uuid)
 RETURNS SETOF steward.change_log
 LANGUAGE plpgsql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET enable_seqscan TO 'off'
 SET enable_bitmapscan TO 'off'
AS $function$
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
$function$;

CREATE OR REPLACE FUNCTION steward._seal_audit()
 RETURNS bigint
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
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
$function$;

CREATE OR REPLACE FUNCTION steward._snapshot(persist boolean DEFAULT true)
 RETURNS pg_snapshot
 LANGUAGE sql
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
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
$function$;

CREATE OR REPLACE FUNCTION steward._table_faults(rel oid, tenant_column name, versioned boolean, soft_delete boolean)
 RETURNS TABLE(fault text, hint text)
 LANGUAGE plpgsql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
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
$function$;

CREATE OR REPLACE FUNCTION steward._tenant_gone()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
BEGIN
    DELETE FROM steward.tenant_grants g WHERE g.tenant_id = OLD.tenant_id;
    RETURN NULL;
END
$function$;

CREATE OR REPLACE FUNCTION steward._tenant_slug(tenant uuid)
 RETURNS text
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
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
$function$;

CREATE OR REPLACE FUNCTION steward._trigger_args(rel oid)
 RETURNS text[]
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
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
$function$;

CREATE OR REPLACE FUNCTION steward._ungovern(rel regclass)
 RETURNS void
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET client_min_messages TO 'warning'
AS $function$
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
$function$;

CREATE OR REPLACE FUNCTION steward.ack(consumer text, through_id bigint)
 RETURNS void
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET enable_seqscan TO 'off'
 SET enable_bitmapscan TO 'off'
AS $function$
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
$function$;

CREATE OR REPLACE FUNCTION steward.break_glass(reason text)
 RETURNS void
 LANGUAGE c
AS '$libdir/steward', $function$break_glass_wrapper$function$;

CREATE OR REPLACE FUNCTION steward.create_consumer(name text, start text DEFAULT 'latest'::text)
 RETURNS void
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
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
$function$;

CREATE OR REPLACE FUNCTION steward.create_tenant(slug text, display_name text)
 RETURNS uuid
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
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
$function$;

CREATE OR REPLACE FUNCTION steward.delete_version(rel regclass, row_key jsonb, version bigint)
 RETURNS boolean
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
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
$function$;

CREATE OR REPLACE FUNCTION steward.enter_tenant_token(token text)
 RETURNS void
 LANGUAGE c
AS '$libdir/steward', $function$enter_tenant_token_wrapper$function$;

CREATE OR REPLACE FUNCTION steward.govern(rel regclass, tenant_column name DEFAULT 'tenant_id'::name, versioned boolean DEFAULT true, version_required boolean DEFAULT false, audited boolean DEFAULT true, events boolean DEFAULT true, soft_delete boolean DEFAULT false)
 RETURNS void
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
BEGIN
    PERFORM steward._internal_governing_begin(rel::oid);
    PERFORM steward._govern(rel, tenant_column, versioned, version_required, audited, events,
                            soft_delete);
    PERFORM steward._internal_governing_end(rel::oid);
END
$function$;

CREATE OR REPLACE FUNCTION steward.grant_tenant(role regrole, tenant uuid)
 RETURNS void
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
BEGIN
    PERFORM steward._tenant_slug(tenant);
    PERFORM steward._forget_dropped_roles();
    INSERT INTO steward.tenant_grants (role, tenant_id)
    VALUES (grant_tenant.role, tenant)
    ON CONFLICT DO NOTHING;
END
$function$;

CREATE OR REPLACE FUNCTION steward.history(rel regclass, row_key jsonb)
 RETURNS SETOF steward.audit_log
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT c.id, c.tenant_id, c.txid, c.occurred_at, c.actor, c.reason, c.request_id,
           c.table_name, c.row_key, c.action, steward._old_row(c.old_values, c.new_row, c.changed), c.new_row, c.changed
      FROM steward._row_records(history.rel::oid, history.row_key, steward.current_tenant()) c
     WHERE c.audited
     ORDER BY c.id
$function$;

CREATE OR REPLACE FUNCTION steward.poll(consumer text, max_events integer DEFAULT 100)
 RETURNS SETOF steward.outbox
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET enable_seqscan TO 'off'
 SET enable_bitmapscan TO 'off'
AS $function$
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
$function$;

CREATE OR REPLACE FUNCTION steward.register_event_type(event_type text, schema_version integer, json_schema jsonb)
 RETURNS void
 LANGUAGE c
AS '$libdir/steward', $function$register_event_type_wrapper$function$;

CREATE OR REPLACE FUNCTION steward.regovern()
 RETURNS SETOF regclass
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
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
$function$;

CREATE OR REPLACE FUNCTION steward.restore(rel regclass, row_key jsonb)
 RETURNS void
 LANGUAGE sql
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$ SELECT steward._internal_restore(rel::oid, row_key) $function$;

CREATE OR REPLACE FUNCTION steward.revoke_tenant(role regrole, tenant uuid)
 RETURNS void
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
BEGIN
    PERFORM steward._tenant_slug(tenant);
    DELETE FROM steward.tenant_grants g WHERE g.role = revoke_tenant.role AND g.tenant_id = tenant;
END
$function$;

CREATE OR REPLACE FUNCTION steward.row_as_of(rel regclass, row_key jsonb, at timestamp with time zone)
 RETURNS jsonb
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT CASE WHEN c.action = 'DELETE' THEN NULL ELSE c.new_row END
      FROM steward._row_records(row_as_of.rel::oid, row_as_of.row_key, steward.current_tenant()) c
     WHERE c.audited
       AND c.action IN ('INSERT', 'UPDATE', 'DELETE') AND c.occurred_at <= row_as_of.at
     ORDER BY c.id DESC
     LIMIT 1
$function$;

CREATE OR REPLACE FUNCTION steward.seal_audit()
 RETURNS bigint
 LANGUAGE c
 STRICT
AS '$libdir/steward', $function$seal_audit_wrapper$function$;

CREATE OR REPLACE FUNCTION steward.seek(consumer text, to_time timestamp with time zone)
 RETURNS void
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
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
$function$;

CREATE OR REPLACE FUNCTION steward.trust_role(role regrole)
 RETURNS void
 LANGUAGE sql
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT steward._forget_dropped_roles();
    INSERT INTO steward.trusted_roles (role) VALUES (trust_role.role) ON CONFLICT DO NOTHING;
$function$;

CREATE OR REPLACE FUNCTION steward.ungovern(rel regclass)
 RETURNS void
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
BEGIN
    PERFORM steward._internal_governing_begin(rel::oid);
    PERFORM steward._ungovern(rel);
    PERFORM steward._internal_governing_end(rel::oid);
END
$function$;

CREATE OR REPLACE FUNCTION steward.verify_audit(tenant uuid DEFAULT NULL::uuid, heads jsonb DEFAULT NULL::jsonb)
 RETURNS TABLE(tenant_id uuid, sealed bigint, ok boolean, first_bad_id bigint)
 LANGUAGE plpgsql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
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
$function$;

CREATE VIEW steward.consumer_lag AS SELECT * FROM steward._consumer_lag();
GRANT SELECT ON steward.consumer_lag TO PUBLIC;

DROP POLICY steward_tenant ON steward.change_log;
CREATE POLICY steward_tenant ON steward.change_log FOR SELECT
    USING (tenant_id = (SELECT steward.current_tenant()) AND steward._internal_plan_guard());
DROP POLICY steward_tenant ON steward.audit_seals;
CREATE POLICY steward_tenant ON steward.audit_seals FOR SELECT
    USING (tenant_id = (SELECT steward.current_tenant()) AND steward._internal_plan_guard());

-- Append-only for everyone, inserts included, in any session_replication_role.
DO $$
DECLARE
    tbl text;
BEGIN
    FOREACH tbl IN ARRAY steward._append_only_tables() LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS steward_append_only ON %s', tbl);
        EXECUTE format('DROP TRIGGER IF EXISTS steward_append_only_truncate ON %s', tbl);
        EXECUTE format('CREATE TRIGGER steward_append_only BEFORE INSERT OR UPDATE OR DELETE ON %s '
                       'FOR EACH ROW EXECUTE FUNCTION steward._internal_log_guard()', tbl);
        EXECUTE format('CREATE TRIGGER steward_append_only_truncate BEFORE TRUNCATE ON %s '
                       'FOR EACH STATEMENT EXECUTE FUNCTION steward._internal_log_guard()', tbl);
        EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER steward_append_only, '
                       'ENABLE ALWAYS TRIGGER steward_append_only_truncate', tbl);
    END LOOP;
END
$$;

CREATE TRIGGER steward_tenant_gone AFTER DELETE ON steward.tenants
    FOR EACH ROW EXECUTE FUNCTION steward._tenant_gone();
CREATE TRIGGER steward_governed_guard BEFORE UPDATE OR DELETE ON steward.governed
    FOR EACH ROW EXECUTE FUNCTION steward._internal_governed_guard();
CREATE TRIGGER steward_governed_guard_truncate BEFORE TRUNCATE ON steward.governed
    FOR EACH STATEMENT EXECUTE FUNCTION steward._internal_governed_guard();
ALTER TABLE steward.governed ENABLE ALWAYS TRIGGER steward_governed_guard,
                             ENABLE ALWAYS TRIGGER steward_governed_guard_truncate;

------------------------------------------------------------------------------------------------
-- 4. The governed tables, governed as 0.2.0 governs
------------------------------------------------------------------------------------------------
SELECT count(*) AS regoverned FROM steward.regovern();

-- The DDL guard, once the tables are governed (its checks would run for every command of every
-- govern() above).
CREATE EVENT TRIGGER steward_ddl_guard_start ON ddl_command_start
    EXECUTE FUNCTION steward._ddl_guard_start();
CREATE EVENT TRIGGER steward_ddl_guard ON ddl_command_end
    EXECUTE FUNCTION steward._ddl_guard();
CREATE EVENT TRIGGER steward_ddl_guard_drops ON sql_drop
    EXECUTE FUNCTION steward._ddl_guard();
CREATE EVENT TRIGGER steward_extension_guard ON ddl_command_start
    WHEN TAG IN ('DROP EXTENSION', 'DROP SCHEMA')
    EXECUTE FUNCTION steward._extension_guard();
ALTER EVENT TRIGGER steward_extension_guard ENABLE ALWAYS;
ALTER EVENT TRIGGER steward_ddl_guard_start ENABLE ALWAYS;
ALTER EVENT TRIGGER steward_ddl_guard ENABLE ALWAYS;
ALTER EVENT TRIGGER steward_ddl_guard_drops ENABLE ALWAYS;

-- The privileges of what this update created (steward._reset_privileges, sql/privileges.sql),
-- then steward's.
SELECT steward._reset_privileges(
           pg_catalog.string_to_array(pg_catalog.current_setting('steward_upgrade.kept'), ',')::oid[]);
REVOKE ALL ON FUNCTION steward._append_only_tables() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION steward._append_only_tables() TO PUBLIC;
REVOKE ALL ON FUNCTION steward._chain_step(bytea,bytea,boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION steward._chain_step(bytea,bytea,boolean) TO PUBLIC;
REVOKE ALL ON FUNCTION steward._consumer(text,boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION steward._consumer(text,boolean) TO PUBLIC;
REVOKE ALL ON FUNCTION steward._consumer_lag() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION steward._consumer_lag() TO PUBLIC;
REVOKE ALL ON FUNCTION steward._consumer_position(steward.consumers) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION steward._consumer_position(steward.consumers) TO PUBLIC;
REVOKE ALL ON FUNCTION steward._ddl_guard() FROM PUBLIC;
REVOKE ALL ON FUNCTION steward._ddl_guard_start() FROM PUBLIC;
REVOKE ALL ON FUNCTION steward._events_between(uuid,pg_snapshot,pg_snapshot) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION steward._events_between(uuid,pg_snapshot,pg_snapshot) TO PUBLIC;
REVOKE ALL ON FUNCTION steward._extension_guard() FROM PUBLIC;
REVOKE ALL ON FUNCTION steward._faults_of(oid[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION steward._forget_dropped_roles() FROM PUBLIC;
REVOKE ALL ON FUNCTION steward._govern(regclass,name,boolean,boolean,boolean,boolean,boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION steward._governance_faults(oid) FROM PUBLIC;
REVOKE ALL ON FUNCTION steward._horizon() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION steward._horizon() TO PUBLIC;
REVOKE ALL ON FUNCTION steward._internal_aggregate_id(jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION steward._internal_aggregate_id(jsonb) TO PUBLIC;
REVOKE ALL ON FUNCTION steward._internal_annotations() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION steward._internal_annotations() TO PUBLIC;
REVOKE ALL ON FUNCTION steward._internal_batch_behind(uuid,text,text,text,bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION steward._internal_batch_find(uuid,text,text,text,bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION steward._internal_batch_next(uuid,text,text,text,bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION steward._internal_break_glass_active() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION steward._internal_break_glass_active() TO PUBLIC;
REVOKE ALL ON FUNCTION steward._internal_consumer_scope() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION steward._internal_consumer_scope() TO PUBLIC;
REVOKE ALL ON FUNCTION steward._internal_consumer_visible(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION steward._internal_consumer_visible(uuid) TO PUBLIC;
REVOKE ALL ON FUNCTION steward._internal_ddl_begin(text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION steward._internal_ddl_end() FROM PUBLIC;
REVOKE ALL ON FUNCTION steward._internal_ddl_known() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION steward._internal_ddl_known() TO PUBLIC;
REVOKE ALL ON FUNCTION steward._internal_governed_guard() FROM PUBLIC;
REVOKE ALL ON FUNCTION steward._internal_governing(oid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION steward._internal_governing(oid) TO PUBLIC;
REVOKE ALL ON FUNCTION steward._internal_governing_begin(oid) FROM PUBLIC;
REVOKE ALL ON FUNCTION steward._internal_governing_end(oid) FROM PUBLIC;
REVOKE ALL ON FUNCTION steward._internal_headers(jsonb,text,text,text,text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION steward._internal_headers(jsonb,text,text,text,text) TO PUBLIC;
REVOKE ALL ON FUNCTION steward._internal_own_write(oid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION steward._internal_own_write(oid) TO PUBLIC;
REVOKE ALL ON FUNCTION steward._internal_plan_guard() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION steward._internal_plan_guard() TO PUBLIC;
REVOKE ALL ON FUNCTION steward._internal_record_ddl(text,text) FROM PUBLIC;
REVOKE ALL ON FUNCTION steward._internal_record_refusal(text,text) FROM PUBLIC;
REVOKE ALL ON FUNCTION steward._internal_restore(oid,jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION steward._internal_restore(oid,jsonb) TO PUBLIC;
REVOKE ALL ON FUNCTION steward._internal_row_hash(oid,jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION steward._internal_row_hash(oid,jsonb) TO PUBLIC;
REVOKE ALL ON FUNCTION steward._internal_uuid_v7() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION steward._internal_uuid_v7() TO PUBLIC;
REVOKE ALL ON FUNCTION steward._internal_wake_at_commit() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION steward._internal_wake_at_commit() TO PUBLIC;
REVOKE ALL ON FUNCTION steward._internal_witness(uuid,bigint,bytea) FROM PUBLIC;
REVOKE ALL ON FUNCTION steward._internal_xid_offset(boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION steward._internal_xid_offset(boolean) TO PUBLIC;
REVOKE ALL ON FUNCTION steward._old_row(jsonb,jsonb,jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION steward._old_row(jsonb,jsonb,jsonb) TO PUBLIC;
REVOKE ALL ON FUNCTION steward._payload_digest(steward.change_log,bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION steward._payload_digest(steward.change_log,bytea) TO PUBLIC;
REVOKE ALL ON FUNCTION steward._raise(text,text,text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION steward._raise(text,text,text) TO PUBLIC;
REVOKE ALL ON FUNCTION steward._record_digest(steward.change_log,bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION steward._record_digest(steward.change_log,bytea) TO PUBLIC;
REVOKE ALL ON FUNCTION steward._record_table(oid,xid8) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION steward._record_table(oid,xid8) TO PUBLIC;
REVOKE ALL ON FUNCTION steward._reset_privileges(oid[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION steward._row_records(oid,jsonb,uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION steward._row_records(oid,jsonb,uuid) TO PUBLIC;
REVOKE ALL ON FUNCTION steward._seal_audit() FROM PUBLIC;
REVOKE ALL ON FUNCTION steward._snapshot(boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION steward._snapshot(boolean) TO PUBLIC;
REVOKE ALL ON FUNCTION steward._table_faults(oid,name,boolean,boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION steward._tenant_gone() FROM PUBLIC;
REVOKE ALL ON FUNCTION steward._trigger_args(oid) FROM PUBLIC;
REVOKE ALL ON FUNCTION steward._ungovern(regclass) FROM PUBLIC;
REVOKE ALL ON FUNCTION steward.ack(text,bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION steward.ack(text,bigint) TO PUBLIC;
REVOKE ALL ON FUNCTION steward.annotate(text,text,text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION steward.annotate(text,text,text) TO PUBLIC;
REVOKE ALL ON FUNCTION steward.break_glass(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION steward.break_glass(text) TO PUBLIC;
REVOKE ALL ON FUNCTION steward.create_consumer(text,text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION steward.create_consumer(text,text) TO PUBLIC;
REVOKE ALL ON FUNCTION steward.current_actor() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION steward.current_actor() TO PUBLIC;
REVOKE ALL ON FUNCTION steward.current_tenant() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION steward.current_tenant() TO PUBLIC;
REVOKE ALL ON FUNCTION steward.delete_version(regclass,jsonb,bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION steward.delete_version(regclass,jsonb,bigint) TO PUBLIC;
REVOKE ALL ON FUNCTION steward.emit(text,text,text,jsonb,jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION steward.emit(text,text,text,jsonb,jsonb) TO PUBLIC;
REVOKE ALL ON FUNCTION steward.enter_tenant(uuid,text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION steward.enter_tenant(uuid,text) TO PUBLIC;
REVOKE ALL ON FUNCTION steward.enter_tenant_token(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION steward.enter_tenant_token(text) TO PUBLIC;
REVOKE ALL ON FUNCTION steward.history(regclass,jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION steward.history(regclass,jsonb) TO PUBLIC;
REVOKE ALL ON FUNCTION steward.poll(text,integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION steward.poll(text,integer) TO PUBLIC;
REVOKE ALL ON FUNCTION steward.regovern() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION steward.regovern() TO PUBLIC;
REVOKE ALL ON FUNCTION steward.row_as_of(regclass,jsonb,timestamp with time zone) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION steward.row_as_of(regclass,jsonb,timestamp with time zone) TO PUBLIC;
REVOKE ALL ON FUNCTION steward.seek(text,timestamp with time zone) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION steward.seek(text,timestamp with time zone) TO PUBLIC;
-- steward's transaction-id base (ADR 010): this cluster's ids, recorded now, so that the
-- append-only tables are steward's own from here on.
SELECT steward._internal_xid_offset();
