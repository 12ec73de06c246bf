-- The relay's SQL surface: webhook endpoints, their secrets, delivery attempts, redeliver(),
-- and the leases by which relays share the sinks (steward-service relay, docs/relay-guide.md).
-- In a database of this file's own, copied from the shared fixture (setup.sql): nothing any
-- other file did is seen here, and this file runs alone with `cargo xtask test pg_regress relay`.
\c postgres
CREATE DATABASE regress_relay TEMPLATE steward_regress;
\c regress_relay
\set SHOW_CONTEXT never
CREATE ROLE relay_svc LOGIN IN ROLE steward_relay;   -- runs steward-service relay
CREATE ROLE web_svc LOGIN;                            -- the web API's role: not trusted
-- outcome() with the random endpoint ids and the relays' names (which relay holds which
-- endpoint follows their random ids) masked, for a stable expected output.
CREATE FUNCTION public.masked(q text) RETURNS text LANGUAGE sql AS $$
  SELECT regexp_replace(regexp_replace(public.outcome(q), '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}', '<id>', 'g'),
                        'relay-[ab]|fence [0-9]+', '<relay or fence>', 'g') $$;
GRANT EXECUTE ON FUNCTION public.masked(text) TO PUBLIC;

-- A tenant creates an endpoint; the secret is shown this once (whsec_ + base64 of 32 bytes).
\c - acme_app
SELECT endpoint_id AS acme_hook, secret AS acme_secret
  FROM steward.create_webhook('https://hooks.acme.example/steward') \gset
SELECT :'acme_secret' ~ '^whsec_[A-Za-z0-9+/]{43}=$' AS secret_shape,
       length(decode(substr(:'acme_secret', 7), 'base64')) AS secret_bytes;
SELECT endpoint_id AS acme_orders_hook
  FROM steward.create_webhook('http://10.0.0.7:8443/orders?x=1', ARRAY['app.tasks.created', 'app.tasks.created']) \gset
SELECT url, event_types, created_by, disabled_at FROM steward.webhook_endpoints ORDER BY url;
\c - globex_app
SELECT endpoint_id AS globex_hook FROM steward.create_webhook('https://globex.example/in') \gset
-- Each tenant sees its own endpoints only.
SELECT url FROM steward.webhook_endpoints ORDER BY url;

-- Bad input: ST400 naming the value, with a hint; no context: ST001, never all endpoints.
\set VERBOSITY verbose
\c - acme_app
SELECT steward.create_webhook('ftp://hooks.acme.example/');
SELECT steward.create_webhook('https://user:pw@hooks.acme.example/');
SELECT steward.create_webhook('https://');
\set VERBOSITY default
SELECT public.outcome($$SELECT steward.create_webhook('https://hooks.acme.example:99999/x')$$);
SELECT public.outcome($$SELECT steward.create_webhook('https://hooks.acme.example:0/x')$$);
SELECT public.outcome($$SELECT steward.create_webhook(E'https://ho\\x01st.example/x')$$);
SELECT public.outcome($$SELECT steward.create_webhook('https://ho[st.example/x')$$);
SELECT public.outcome($$SELECT steward.create_webhook('https://:pw/x')$$);
SELECT public.outcome($$SELECT steward.create_webhook('https://user:pw%40host.example/')$$);
SELECT public.outcome($$SELECT steward.create_webhook('https://hooks.acme.example/a b')$$);
\set VERBOSITY verbose
SELECT steward.create_webhook(NULL);
SELECT steward.create_webhook('https://hooks.acme.example/', '{}');
SELECT steward.create_webhook('https://hooks.acme.example/', ARRAY[NULL]::text[]);
\set VERBOSITY default
SELECT public.masked($$SELECT steward.delete_webhook('$$ || :'globex_hook' || $$')$$);
SELECT public.masked($$SELECT steward.redeliver('$$ || :'globex_hook' || $$', now() - interval '1 hour')$$);
SELECT public.masked($$SELECT steward.redeliver('$$ || :'acme_hook' || $$', NULL)$$);
\set VERBOSITY verbose
\c - nogrant_app
SELECT steward.create_webhook('https://nope.example/');
SELECT count(*) FROM steward.webhook_endpoints;
SELECT count(*) FROM steward.webhook_deliveries;
\c - multi_app
SELECT count(*) FROM steward.webhook_endpoints;
\set VERBOSITY default
-- A tenant has at most 100 endpoints (each is a task in every relay).
\c - globex_app
SELECT count(*) FROM (SELECT steward.create_webhook('https://globex.example/' || g) FROM generate_series(1, 99) g) x;
SELECT public.outcome($$SELECT steward.create_webhook('https://globex.example/one-too-many')$$);
SELECT count(*) FROM (SELECT steward.delete_webhook(endpoint_id) FROM steward.webhook_endpoints
                       WHERE url <> 'https://globex.example/in') x;

-- The secrets: only steward_relay's members read them; not a tenant role, not the web
-- service's role, even inside a tenant.
\c - acme_app
SELECT public.outcome('SELECT secret FROM steward.webhook_secrets');
SELECT public.outcome('SELECT * FROM steward.webhooks');
\c - web_svc
SELECT public.outcome('SELECT secret FROM steward.webhook_secrets');
SELECT public.outcome($$SELECT steward.enter_tenant('00000000-0000-4000-8000-00000000000a')$$);
SELECT public.outcome('SELECT count(*) FROM steward.webhook_endpoints');
\c - relay_svc
SELECT count(*) AS secrets_the_relay_reads FROM steward.webhook_secrets;
SELECT count(*) AS endpoints_the_relay_sees FROM steward.webhook_endpoints;
-- Nor do tenant roles reach the relay's functions or the endpoints' cursors.
\c - acme_app
SELECT public.outcome($$SELECT * FROM steward.relay_claim('me', '{}', '10 seconds')$$);
SELECT public.outcome($$SELECT * FROM steward.relay_poll('webhook:x', 'me', 1, 10)$$);
SELECT public.masked($$SELECT * FROM steward.poll('steward.webhook.$$ || :'acme_hook' || $$')$$);
SELECT public.masked($$SELECT steward.ack('steward.webhook.$$ || :'acme_hook' || $$', 1)$$);
SELECT public.masked($$SELECT steward.seek('STEWARD.webhook.$$ || :'acme_hook' || $$', now())$$);
SELECT public.outcome($$SELECT steward.create_consumer('steward.mine')$$);
\c - web_svc
SELECT public.outcome($$SELECT * FROM steward.relay_claim('me', '{}', '10 seconds')$$);

-- A relay claims the sinks: every enabled endpoint, and the NATS sink it names (its consumer
-- is created, from the earliest event, if missing).
\c - relay_svc
SELECT sink LIKE 'webhook:%' AS webhook, sink = 'nats:relay' AS nats, surplus
  FROM steward.relay_claim('relay-a', '{nats:relay}', '1 minute') ORDER BY sink;
SELECT consumer, tenant_id IS NULL AS all_tenants FROM steward.consumer_lag WHERE consumer = 'relay';
SELECT public.outcome($$SELECT * FROM steward.relay_claim('relay a!', '{}', '1 minute')$$);
SELECT public.outcome($$SELECT * FROM steward.relay_claim('relay-a', '{kafka:x}', '1 minute')$$);
SELECT public.outcome($$SELECT * FROM steward.relay_claim('relay-a', '{nats:Steward.webhook.x}', '1 minute')$$);
-- Another service's consumer is not the relay's to move.
\c - api_service
SELECT steward.create_consumer('billing');
\c - relay_svc
SELECT public.outcome($$SELECT * FROM steward.relay_claim('relay-a', '{nats:billing}', '1 minute')$$);
-- A second relay: the four sinks are shared, two each; the first gives up its surplus.
SELECT count(*) AS b_holds FROM steward.relay_claim('relay-b', '{nats:relay}', '1 minute');
SELECT count(*) FILTER (WHERE surplus) AS a_surplus, count(*) AS a_holds
  FROM steward.relay_claim('relay-a', '{nats:relay}', '1 minute');
SELECT steward.relay_release('relay-a', l.sink, l.fence)
  FROM (SELECT sink, fence FROM steward.relay_claim('relay-a', '{nats:relay}', '1 minute') WHERE surplus) l;
SELECT count(*) AS b_holds FROM steward.relay_claim('relay-b', '{nats:relay}', '1 minute');
SELECT relay, count(*) FROM steward.relay_leases GROUP BY relay ORDER BY relay;

-- Events reach the endpoint's cursor in its tenant's commit order.
\c - acme_app
INSERT INTO app.tasks (id, title) VALUES (1, 'first'), (2, 'second');
\c - globex_app
INSERT INTO app.tasks (id, title) VALUES (3, 'globex');
\c - relay_svc
SELECT l.relay AS acme_relay, l.fence AS acme_fence FROM steward.relay_leases l
 WHERE l.sink = 'webhook:' || :'acme_hook' \gset
SELECT event_type, payload->>'title' AS title
  FROM steward.relay_poll('webhook:' || :'acme_hook', :'acme_relay', :acme_fence, 10) ORDER BY id;
-- Reading ahead: what follows an event read and not acked yet, without moving the cursor (a
-- relay reads its next batch while the last is in flight); nothing past the batch's end.
SELECT txid AS first_txid, id AS first_id
  FROM steward.relay_poll('webhook:' || :'acme_hook', :'acme_relay', :acme_fence, 1) \gset
SELECT payload->>'title' AS ahead
  FROM steward.relay_poll_ahead('webhook:' || :'acme_hook', :'acme_relay', :acme_fence, :'first_txid', :first_id, 10);
SELECT payload->>'title' AS still_first
  FROM steward.relay_poll('webhook:' || :'acme_hook', :'acme_relay', :acme_fence, 1);
SELECT txid AS last_txid, id AS last_id
  FROM steward.relay_poll('webhook:' || :'acme_hook', :'acme_relay', :acme_fence, 10)
 ORDER BY id DESC LIMIT 1 \gset
SELECT count(*) AS past_the_end
  FROM steward.relay_poll_ahead('webhook:' || :'acme_hook', :'acme_relay', :acme_fence, :'last_txid', :last_id, 10);
SELECT count(*) AS from_a_foreign_position
  FROM steward.relay_poll_ahead('webhook:' || :'acme_hook', :'acme_relay', :acme_fence, '1', 1, 10);
SELECT public.masked($$SELECT * FROM steward.relay_poll_ahead('webhook:$$ || :'acme_hook' || $$', 'relay-x', $$ || :acme_fence || $$, '$$ || :'first_txid' || $$', $$ || :first_id || $$, 10)$$);
-- Only the holder, under its fence: ST409 otherwise.
SELECT public.masked($$SELECT * FROM steward.relay_poll('webhook:$$ || :'acme_hook' || $$', 'relay-x', $$ || :acme_fence || $$, 10)$$);
SELECT public.masked($$SELECT steward.relay_ack('webhook:$$ || :'acme_hook' || $$', '$$ || :'acme_relay' || $$', $$ || (:acme_fence + 1000) || $$, NULL)$$);
-- The attempts and the cursor's move, in one call.
SELECT max(id) AS last_id, min(event_id::text) AS first_event, max(event_id::text) AS second_event
  FROM steward.relay_poll('webhook:' || :'acme_hook', :'acme_relay', :acme_fence, 10) \gset
SELECT steward.relay_ack('webhook:' || :'acme_hook', :'acme_relay', :acme_fence, :last_id,
    jsonb_build_array(
        jsonb_build_object('event_id', :'first_event', 'attempt', 1, 'status', 'failed', 'http_status', 503, 'error', 'HTTP 503'),
        jsonb_build_object('event_id', :'first_event', 'attempt', 2, 'status', 'delivered', 'http_status', 200),
        jsonb_build_object('event_id', :'second_event', 'attempt', 1, 'status', 'delivered', 'http_status', 204)));
SELECT count(*) AS left_to_send FROM steward.relay_poll('webhook:' || :'acme_hook', :'acme_relay', :acme_fence, 10);

-- A tenant sees its own endpoints' attempts; another tenant sees none of them.
\c - acme_app
SELECT attempt, status, http_status, error, relay = :'acme_relay' AS by_the_relay
  FROM steward.webhook_deliveries ORDER BY id;
\c - globex_app
SELECT count(*) AS acme_attempts_globex_sees FROM steward.webhook_deliveries;

-- Attempts are append-only, for everyone (the superuser's plain SQL included), and their
-- guards cannot be turned off or dropped (the DDL guard).
\c - postgres
SELECT public.outcome('ALTER TABLE steward.webhook_attempts DISABLE TRIGGER ALL');
SELECT public.outcome('DROP TRIGGER steward_append_only ON steward.webhook_attempts');
SELECT public.outcome('UPDATE steward.webhook_attempts SET status = ''delivered''');
SELECT public.outcome('DELETE FROM steward.webhook_attempts');
SELECT public.outcome('TRUNCATE steward.webhook_attempts');
SET session_replication_role = replica;
SELECT public.outcome('DELETE FROM steward.webhook_attempts');
RESET session_replication_role;
SELECT count(*) AS attempts_kept FROM steward.webhook_attempts;

-- redeliver() moves the endpoint's cursor back (never before the endpoint existed): the relay
-- reads on from there. It writes nothing the relays lock: a tenant holding its transaction open
-- stalls no relay (the claim below runs while it is open, under a lock timeout).
\c - acme_app
BEGIN;
SELECT steward.redeliver(:'acme_hook', now() - interval '1 hour');
\! psql -X -q -At -h "$PGHOST" -p "$PGPORT" -U relay_svc -d regress_relay -c "SET lock_timeout = '2s'" -c "SELECT 'claimed while the tenant''s transaction is open' FROM (SELECT count(*) FROM steward.relay_claim('relay-c', '{}', '1 second')) x"
COMMIT;
\c - relay_svc
SELECT count(*) AS sent_again FROM steward.relay_poll('webhook:' || :'acme_hook', :'acme_relay', :acme_fence, 10);
SELECT steward.relay_release('relay-c', NULL, NULL);

-- 410 Gone: the relay disables the endpoint with the reason; no relay claims it then;
-- redeliver() enables it again.
SELECT steward.relay_ack('webhook:' || :'acme_hook', :'acme_relay', :acme_fence, NULL,
    jsonb_build_array(jsonb_build_object('event_id', :'first_event', 'attempt', 1, 'status', 'gone', 'http_status', 410)),
    'HTTP 410 Gone from https://hooks.acme.example/steward');
SELECT count(*) AS leases_on_it FROM steward.relay_leases WHERE sink = 'webhook:' || :'acme_hook';
SELECT count(*) FILTER (WHERE sink = 'webhook:' || :'acme_hook') AS claimed
  FROM steward.relay_claim(:'acme_relay', '{nats:relay}', '1 minute');
\c - acme_app
SELECT url, disabled_at IS NOT NULL AS disabled, disabled_reason FROM steward.webhook_endpoints ORDER BY url;
SELECT steward.redeliver(:'acme_hook', now() - interval '1 hour');
SELECT url, disabled_at IS NOT NULL AS disabled FROM steward.webhook_endpoints ORDER BY url;

-- A suspended tenant's endpoints are no relay's sink: its events wait in the log.
\c - postgres
UPDATE steward.tenants SET status = 'suspended' WHERE slug = 'globex';
\c - relay_svc
SELECT count(*) FILTER (WHERE sink = 'webhook:' || :'globex_hook') AS globex_claimed
  FROM steward.relay_claim(:'acme_relay', '{nats:relay}', '1 minute');
\c - postgres
UPDATE steward.tenants SET status = 'active' WHERE slug = 'globex';

-- delete_webhook: the endpoint, its secret and its cursor go (its lease is void); its attempts stay.
\c - acme_app
SELECT steward.delete_webhook(:'acme_hook');
SELECT url FROM steward.webhook_endpoints ORDER BY url;
SELECT count(*) AS attempts_kept FROM steward.webhook_deliveries;
\c - relay_svc
SELECT count(*) AS secrets FROM steward.webhook_secrets;
SELECT count(*) AS cursors FROM steward.consumer_lag WHERE consumer LIKE 'steward.webhook.%';
