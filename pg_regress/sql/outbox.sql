-- The change log's outbox face: row events, domain events, schemas and consumers.
-- In a database of this file's own, copied from the shared fixture (setup.sql): nothing any
-- other file did is seen here, and this file runs alone with `cargo xtask test pg_regress outbox`.
\c postgres
CREATE DATABASE regress_outbox TEMPLATE steward_regress;
\c regress_outbox
\set SHOW_CONTEXT never
CREATE TABLE app.invoices (
    id        int PRIMARY KEY,
    tenant_id uuid NOT NULL,
    amount    numeric NOT NULL
);
GRANT SELECT, INSERT, UPDATE, DELETE ON app.invoices TO PUBLIC;
SELECT steward.govern('app.invoices');
-- A table with events off writes the same one record, which the outbox face does not show.
CREATE TABLE app.notes (id int PRIMARY KEY, tenant_id uuid NOT NULL, body text);
GRANT SELECT, INSERT, UPDATE, DELETE ON app.notes TO PUBLIC;
SELECT steward.govern('app.notes', events => false);

-- Consumers: one for every tenant (a trusted role outside any tenant), one for acme only.
\c - api_service
SELECT steward.create_consumer('relay');
SELECT steward.create_consumer('replayer', 'earliest');
SELECT steward.create_consumer('relay');
\echo :LAST_ERROR_SQLSTATE
SELECT steward.create_consumer('later', 'tomorrow');
\echo :LAST_ERROR_SQLSTATE
SELECT steward.create_consumer('no spaces allowed');
\echo :LAST_ERROR_SQLSTATE
\c - acme_app
SELECT steward.create_consumer('acme-bi');

-- Row events: created, updated, deleted, with the context's actor and annotations as headers.
\c - api_service
BEGIN;
SELECT steward.enter_tenant('00000000-0000-4000-8000-00000000000a', 'wile.e@acme.example') IS NOT NULL AS entered;
SELECT steward.annotate('ADR-7: billing run', 'req-1', '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
INSERT INTO app.invoices (id, amount) VALUES (1, 100), (2, 250);
UPDATE app.invoices SET amount = 120 WHERE id = 1;
UPDATE app.invoices SET amount = amount WHERE id = 2;   -- changes nothing: no event
DELETE FROM app.invoices WHERE id = 2;
INSERT INTO app.notes (id, body) VALUES (1, 'events off');
COMMIT;
-- Nothing on rollback.
BEGIN;
SELECT steward.enter_tenant('00000000-0000-4000-8000-00000000000a', 'wile.e@acme.example') IS NOT NULL AS entered;
INSERT INTO app.invoices (id, amount) VALUES (3, 999);
ROLLBACK;
BEGIN;
SELECT steward.enter_tenant('00000000-0000-4000-8000-00000000000b', 'hank@globex.example') IS NOT NULL AS entered;
INSERT INTO app.invoices (id, amount) VALUES (10, 5);
COMMIT;

\c - acme_app
-- acme sees its own events only, from the same records as the audit face.
SELECT event_type, aggregate_type, aggregate_id, payload ->> 'amount' AS amount, headers,
       event_id::text ~ '^[0-9a-f]{8}-[0-9a-f]{4}-7' AS uuid_v7
  FROM steward.outbox WHERE aggregate_type = 'app.invoices' ORDER BY id;
SELECT count(*) AS outbox_records_that_are_audit_records
  FROM steward.outbox o JOIN steward.audit_log a USING (id)
 WHERE o.aggregate_type = 'app.invoices';
SELECT count(*) AS events_from_notes FROM steward.outbox WHERE aggregate_type = 'app.notes';

-- Domain events under the caller's tenant.
BEGIN;
SELECT steward.emit('invoice.reminded', 'invoice', '1', '{"days_overdue": 3}', '{"source": "dunning"}') IS NOT NULL AS emitted;
COMMIT;
SELECT event_type, aggregate_type, aggregate_id, schema_version, payload, headers
  FROM steward.outbox WHERE event_type = 'invoice.reminded';
-- Headers steward sets cannot be forged; steward's own event types are reserved.
SELECT steward.emit('invoice.reminded', 'invoice', '1', '{}', '{"actor": "someone else"}');
\echo :LAST_ERROR_SQLSTATE
SELECT steward.emit('steward.audit.sealed', 'steward.audit', 'x', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT steward.emit('Steward.Audit.Sealed', 'steward.audit', 'x', '{}');
\echo :LAST_ERROR_SQLSTATE
-- Attack: a role that may emit forges a row event, hoping consumers apply it as a change to the
-- table: refused (ST400) while the table's row events are on ...
SELECT steward.emit('invoices.updated', 'app.invoices', '1', '{"id": 1, "amount": 0}');
\echo :LAST_ERROR_SQLSTATE
-- ... a table with row events off leaves its names to the application's own events.
BEGIN;
SELECT steward.emit('notes.updated', 'app.notes', '1', '{}') IS NOT NULL AS emitted;
ROLLBACK;
SELECT steward.emit('bad type!', 'invoice', '1', '{}');
\echo :LAST_ERROR_SQLSTATE
SELECT steward.emit('invoice.reminded', 'invoice', '1', '{}', '[1]');
\echo :LAST_ERROR_SQLSTATE
-- Without a tenant, no event.
\c - nogrant_app
SELECT steward.emit('invoice.reminded', 'invoice', '1', '{}');
\echo :LAST_ERROR_SQLSTATE

-- Schemas: only a DBA registers them; later emits are validated (ST422 naming the path).
\c - acme_app
SELECT steward.register_event_type('invoice.paid', 1, '{"type": "object"}');
\echo :LAST_ERROR_SQLSTATE
\c - postgres
SELECT steward.register_event_type('invoice.paid', 1,
  '{"type": "object", "required": ["invoice_id", "amount"],
    "properties": {"invoice_id": {"type": "integer"},
                   "amount": {"type": "number", "minimum": 0},
                   "lines": {"type": "array", "items": {"type": "object", "required": ["sku"]}}}}');
SELECT steward.register_event_type('invoice.paid', 1, '{"type": "object"}');
\echo :LAST_ERROR_SQLSTATE
SELECT steward.register_event_type('invoice.paid', 0, '{"type": "object"}');
\echo :LAST_ERROR_SQLSTATE
SELECT steward.register_event_type('invoice.paid', 2, '{"type": "no such type"}');
\echo :LAST_ERROR_SQLSTATE
\c - acme_app
SELECT steward.emit('invoice.paid', 'invoice', '1', '{"invoice_id": 1, "amount": -5}');
\echo :LAST_ERROR_SQLSTATE
SELECT steward.emit('invoice.paid', 'invoice', '1', '{"invoice_id": 1, "amount": 5, "lines": [{"sku": "A"}, {"qty": 2}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT steward.emit('invoice.paid', 'invoice', '1', '{"amount": 5}');
\echo :LAST_ERROR_SQLSTATE
SELECT steward.emit('invoice.paid', 'invoice', '1', '{"invoice_id": 1, "amount": 5}') IS NOT NULL AS valid_one_emitted;
SELECT event_type, schema_version FROM steward.outbox WHERE event_type = 'invoice.paid';

-- acme's consumer reads acme's events in order; poll does not move it, ack does.
SELECT event_type, aggregate_id FROM steward.poll('acme-bi', 3);
SELECT event_type, aggregate_id FROM steward.poll('acme-bi', 3);
SELECT steward.ack('acme-bi', (SELECT max(id) FROM steward.poll('acme-bi', 3)));
SELECT event_type, aggregate_id FROM steward.poll('acme-bi');
-- Acking again, or behind the position, changes nothing; an unknown id is refused.
SELECT steward.ack('acme-bi', (SELECT min(id) FROM steward.outbox));
SELECT count(*) AS still_pending FROM steward.poll('acme-bi');
SELECT steward.ack('acme-bi', -1);
\echo :LAST_ERROR_SQLSTATE
SELECT steward.poll('acme-bi', 0);
\echo :LAST_ERROR_SQLSTATE
-- Another tenant's consumer, or the all-tenant one, cannot be used from acme: names are
-- scoped, so for acme they do not exist (ST400).
SELECT * FROM steward.poll('relay');
\echo :LAST_ERROR_SQLSTATE
SELECT steward.seek('relay', '-infinity');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM steward.poll('nobody');
\echo :LAST_ERROR_SQLSTATE
-- Nor can a tenant role move a consumer by hand.
UPDATE steward.consumers SET pos_id = 0;
\echo :LAST_ERROR_SQLSTATE
SELECT consumer, behind FROM steward.consumer_lag;
-- Another tenant cannot use acme's consumer: for it, the name does not exist (ST400); nothing
-- says the name is taken elsewhere, or by whom.
\c - globex_app
SELECT * FROM steward.poll('acme-bi');
\echo :LAST_ERROR_SQLSTATE
-- Names are scoped to the tenant: globex takes the names acme and the relay use, and that
-- neither squats them nor reaches their positions.
SELECT steward.create_consumer('acme-bi');
SELECT steward.create_consumer('relay');
SELECT count(*) AS globex_consumers FROM steward.consumer_lag;
SELECT steward.create_consumer('relay');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS consumers_globex_sees FROM steward.consumer_lag;

-- The all-tenant consumer sees both tenants; 'earliest' replays everything retained, and
-- seek() rewinds.
\c - api_service
SELECT tenant_id, count(*) FROM steward.poll('relay', 1000) GROUP BY 1 ORDER BY 1;
SELECT (SELECT count(*) FROM steward.poll('replayer', 1000))
       > (SELECT count(*) FROM steward.poll('relay', 1000)) AS earliest_sees_older_events_too,
       NOT EXISTS (SELECT id FROM steward.poll('relay', 1000)
                   EXCEPT SELECT id FROM steward.poll('replayer', 1000)) AS and_all_that_latest_sees;
SELECT steward.ack('replayer', (SELECT max(id) FROM steward.poll('replayer', 1000)));
SELECT count(*) AS after_ack FROM steward.poll('replayer');
SELECT steward.seek('replayer', '-infinity');
SELECT count(*) > 0 AS replayed_after_seek FROM steward.poll('replayer', 1000);
SELECT steward.seek('replayer', 'infinity');
SELECT count(*) AS nothing_after_seek_to_the_future FROM steward.poll('replayer');
SELECT steward.seek('replayer', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT consumer, tenant_id, behind FROM steward.consumer_lag ORDER BY consumer;

-- A consumer positioned before positions were snapshots (its row still holds (pos_txid, pos_id)
-- in the old (txid, id) order, as an upgrade leaves it) goes on from where it was: it gets the
-- same events the old order had after its position, the rest of its transaction first.
\c - postgres
SELECT steward.create_consumer('old-relay');
UPDATE steward.consumers k SET done = NULL, batch = NULL, pos_txid = e.txid, pos_id = e.id
  FROM (SELECT o.txid, min(o.id) AS id FROM steward.outbox o
         WHERE o.txid = (SELECT x.txid FROM steward.outbox x GROUP BY x.txid HAVING count(*) > 1
                         ORDER BY x.txid LIMIT 1)
         GROUP BY o.txid) e
 WHERE k.name = 'old-relay';
SELECT (steward._consumer('old-relay')).pos_id IS NOT NULL AS read_as_before;
-- Drained the way a relay does: poll, ack the last event returned, until nothing is left.
CREATE TEMP TABLE got (n serial, id bigint, txid xid8);
DO $$
DECLARE r record; last bigint;
BEGIN
    LOOP
        last := NULL;
        FOR r IN SELECT * FROM steward.poll('old-relay', 1000) LOOP
            INSERT INTO got (id, txid) VALUES (r.id, r.txid);
            last := r.id;
        END LOOP;
        EXIT WHEN last IS NULL;
        PERFORM steward.ack('old-relay', last);
    END LOOP;
END $$;
SELECT (SELECT array_agg(id ORDER BY id) FROM got)
     = (SELECT array_agg(o.id ORDER BY o.id) FROM steward.outbox o
         WHERE (o.txid, o.id) > (SELECT e.txid, e.id FROM steward.outbox e
                                  WHERE e.txid = (SELECT g.txid FROM got g WHERE g.n = 1)
                                  ORDER BY e.id LIMIT 1)) AS same_events_as_the_old_order,
       (SELECT g.txid FROM got g WHERE g.n = 1) < (SELECT g.txid FROM got g WHERE g.n = 2)
           AS rest_of_its_transaction_first;
SELECT done IS NOT NULL AS now_a_snapshot, batch IS NOT NULL AS in_a_batch
  FROM steward.consumers WHERE name = 'old-relay';
DROP TABLE got;
\c - api_service

-- prune_outbox is the DBA's.
SELECT steward.prune_outbox();
\echo :LAST_ERROR_SQLSTATE

-- Two-phase commit works for a transaction that enqueued (a prepared transaction cannot hold a
-- NOTIFY: COMMIT PREPARED sends the wake-up, tests/tests/outbox.rs shows it).
\c - api_service
BEGIN;
SELECT steward.enter_tenant('00000000-0000-4000-8000-00000000000a', 'wile.e@acme.example') IS NOT NULL AS entered;
INSERT INTO app.invoices (id, amount) VALUES (20, 1);
SELECT steward.emit('invoice.prepared', 'invoice', '20', '{}') IS NOT NULL AS emitted;
PREPARE TRANSACTION 'steward_2pc';
COMMIT PREPARED 'steward_2pc';
\c - acme_app
SELECT event_type, aggregate_id FROM steward.outbox WHERE aggregate_id = '20' ORDER BY id;

-- Wake-ups: steward.notify is the DBA's. A tenant role can neither turn them off nor on, with
-- SET, set_config, or before steward's library is loaded.
\c - acme_app
SET steward.notify = off;                  -- before the library is loaded: a mere placeholder ...
SELECT steward.current_tenant() IS NOT NULL AS loaded;
SHOW steward.notify;                       -- ... which loading it refuses
SET steward.notify = off;
\echo :LAST_ERROR_SQLSTATE
SELECT set_config('steward.notify', 'off', false);
\echo :LAST_ERROR_SQLSTATE
SHOW steward.notify;
\c - postgres
SET steward.notify = off;
SHOW steward.notify;
RESET steward.notify;

-- Tombstones are append-only like the log (only prune_outbox() adds them), and not for
-- tenants to read.
INSERT INTO steward.outbox_tombstones (record_id, tenant_id, record_digest)
VALUES (-1, '00000000-0000-4000-8000-00000000000a', '\x00');
\echo :LAST_ERROR_SQLSTATE
TRUNCATE steward.outbox_tombstones;
\echo :LAST_ERROR_SQLSTATE
\c - acme_app
SELECT * FROM steward.outbox_tombstones;
\echo :LAST_ERROR_SQLSTATE

-- The headers of every event a consumer reads are formed in one pass; they equal the plain SQL
-- they replace, for every combination of unset values, with and without emit()'s own headers.
SELECT count(*) AS combinations,
       count(*) FILTER (WHERE steward._internal_headers(h, a, r, q, t)
                              = coalesce(h, '{}') || jsonb_strip_nulls(jsonb_build_object(
                                    'actor', a, 'reason', r, 'request_id', q, 'traceparent', t))) AS same
  FROM (VALUES (NULL::jsonb), ('{"source": "x", "n": {"deep": [1, null]}}')) hh(h),
       (VALUES (NULL::text), ('alice "quoted" é ' || repeat('x', 3000))) aa(a),
       (VALUES (NULL::text), ('why')) rr(r), (VALUES (NULL::text), ('req-1')) qq(q),
       (VALUES (NULL::text), ('00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01')) tt(t);
