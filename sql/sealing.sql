-- Tamper evidence: each tenant's records sealed into a SHA-256 hash chain (seal_audit),
-- audit_heads() for witnesses kept outside, verify_audit().

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
