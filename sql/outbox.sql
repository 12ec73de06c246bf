-- The change log's outbox face: the outbox view, consumers (create_consumer, poll, ack, seek,
-- consumer_lag) in commit order (ADR 004), and prune_outbox().

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

-- The consumer `name` of `scope` (NULL: the all-tenant consumers). With `lock`, the row is
-- locked for the caller's update (and a position from before snapshots is rewritten as one).
CREATE FUNCTION steward._consumer_at(name text, scope uuid, lock boolean)
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

-- The consumer `name`, if the caller may use it: a tenant's consumer from inside that tenant,
-- an all-tenant consumer from a trusted role or superuser outside any tenant. Names under
-- `steward.` are steward's own (a webhook endpoint's cursor, docs/relay-guide.md): no caller
-- reaches them through poll, ack or seek.
CREATE FUNCTION steward._consumer(name text, lock boolean DEFAULT false)
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
AS $$ BEGIN RETURN QUERY SELECT * FROM steward._poll(steward._consumer(consumer), max_events); END $$;

-- poll() for the consumer `k` (the relay's sinks call it too, steward.relay_poll). With `ahead`,
-- the caller has put k's position after the events it read last and not acked yet: what follows
-- them in the batch being delivered, and nothing of a batch not opened yet (the consumer's row is
-- not written), so that a relay reads its next events while the last are in flight.
CREATE FUNCTION steward._poll(k steward.consumers, max_events int, ahead boolean DEFAULT false)
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

-- Moves the consumer past `through_id`, an event poll() returned, and everything before it in the
-- order. Acking what is already behind the position does nothing (a relay may ack twice).
CREATE FUNCTION steward.ack(consumer text, through_id bigint)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ BEGIN PERFORM steward._ack(steward._consumer(consumer, lock => true), through_id); END $$;

-- ack() for the consumer `k`, locked by the caller.
CREATE FUNCTION steward._ack(k steward.consumers, through_id bigint)
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
AS $$ BEGIN PERFORM steward._seek(steward._consumer(consumer, lock => true), to_time); END $$;

-- seek() for the consumer `k`, locked by the caller.
CREATE FUNCTION steward._seek(k steward.consumers, to_time timestamptz)
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
