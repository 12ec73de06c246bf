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
