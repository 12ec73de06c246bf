-- The change log and its audit face: the log's policy and append-only guards, audit_log,
-- history() and row_as_of(), erase(). The writer is Rust (extension/src/changelog.rs).

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

-- Erasure: removes a row's personal payload from its records, keeps the records and the proof.
CREATE FUNCTION steward.erase(rel regclass, row_key jsonb, reason text)
RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT steward._internal_erase(rel::oid, row_key, reason) $$;
