-- NULL and junk arguments to steward's functions get a clear SQLSTATE and message, never XX000
-- and never a Rust backtrace in DETAIL. JSON passes through steward exactly: numbers of any
-- size and precision, deep nesting, keys of any type.
-- In a database of this file's own, copied from the shared fixture (setup.sql): nothing any
-- other file did is seen here, and this file runs alone with `cargo xtask test pg_regress arguments`.
\c postgres
CREATE DATABASE regress_arguments TEMPLATE steward_regress;
\c regress_arguments
\set SHOW_CONTEXT never

-- The DBA's functions.
SELECT q AS call, public.outcome(q) AS outcome FROM unnest(ARRAY[
  'SELECT steward.create_tenant(NULL, NULL)',
  'SELECT steward.govern(NULL)',
  'SELECT steward.ungovern(NULL)',
  'SELECT steward.erase(NULL, NULL, NULL)',
  'SELECT steward.erase(''app.projects'', NULL, ''why'')',
  'SELECT steward.erase(''app.projects'', ''{"id": 1}'', NULL)',
  'SELECT steward.prune_outbox(NULL)',
  'SELECT steward.register_event_type(NULL, 1, ''{}'')',
  'SELECT steward.register_event_type(''a.b'', NULL, ''{}'')',
  'SELECT steward.register_event_type(''a.b'', 1, NULL)',
  'SELECT steward.register_event_type(''a.b'', 1, ''{"type": 12}'')',
  'SELECT steward.restore(NULL, NULL)',
  'SELECT steward.enter_tenant(NULL)',
  'SELECT steward.enter_tenant_token(NULL)',
  'SELECT steward.enter_tenant_token(''junk'')',
  'SELECT steward.create_consumer(NULL)',
  'SELECT steward.poll(NULL)',
  'SELECT steward.ack(NULL, NULL)',
  'SELECT steward.seek(NULL, NULL)'
]) q;

-- A tenant role's view of the same.
\c - acme_app
SELECT q AS call, public.outcome(q) AS outcome FROM unnest(ARRAY[
  'SELECT steward.enter_tenant(NULL)',
  'SELECT steward.enter_tenant(NULL, NULL)',
  'SELECT steward.emit(NULL, NULL, NULL, NULL)',
  'SELECT steward.emit(''invoice.paid'', NULL, NULL, NULL)',
  'SELECT steward.emit(''invoice.paid'', NULL, NULL, ''{}'', ''[1, 2]'')',
  'SELECT steward.annotate(NULL)',
  'SELECT steward.restore(''app.projects'', NULL)',
  'SELECT steward.history(NULL, NULL)',
  'SELECT steward.row_as_of(NULL, NULL, NULL)'
]) q;
-- A tenant that exists but is not granted reads exactly like one that does not exist.
SELECT public.outcome('SELECT steward.enter_tenant(''00000000-0000-4000-8000-00000000000b'')') AS not_granted,
       public.outcome('SELECT steward.enter_tenant(''00000000-0000-4000-8000-0000000000ff'')') AS unknown;

-- Exact JSON: an emitted payload keeps large integers, long decimals and trailing zeros, and
-- nesting deeper than Rust's JSON parser takes.
BEGIN;
SELECT steward.emit('measure.taken', 'probe', 'p-1',
       '{"big": 123456789012345678901234567890, "precise": 0.1000000000000000055511151231257827, "scale": 1.10}') IS NOT NULL AS emitted;
SELECT payload::text FROM steward.outbox WHERE event_type = 'measure.taken';
SELECT steward.emit('measure.deep', 'probe', 'p-2',
       (repeat('[', 1000) || '1' || repeat(']', 1000))::jsonb) IS NOT NULL AS deep_emitted;
SELECT payload = (repeat('[', 1000) || '1' || repeat(']', 1000))::jsonb AS deep_kept
  FROM steward.outbox WHERE event_type = 'measure.deep';
SELECT steward.emit('measure.headers', 'probe', 'p-3', '{}', '{"n": 98765432109876543210}') IS NOT NULL AS emitted;
SELECT headers ->> 'n' AS header_n FROM steward.outbox WHERE event_type = 'measure.headers';
ROLLBACK;

-- Keys of any type: a numeric primary key of any size and precision, found by history() and
-- erased by erase().
\c - postgres
CREATE TABLE app.readings (id numeric PRIMARY KEY, tenant_id uuid NOT NULL, owner_email text);
GRANT SELECT, INSERT, UPDATE, DELETE ON app.readings TO PUBLIC;
SELECT steward.govern('app.readings');
\c - acme_app
INSERT INTO app.readings (id, owner_email) VALUES
    (12345678901234567890123, 'big@acme.example'), (1.10, 'scaled@acme.example');
SELECT action, row_key::text FROM steward.history('app.readings', '{"id": 12345678901234567890123}');
SELECT action, row_key::text FROM steward.history('app.readings', '{"id": 1.10}');
SELECT aggregate_id FROM steward.outbox WHERE aggregate_type = 'app.readings' ORDER BY id;
\c - postgres
BEGIN;
SELECT steward.enter_tenant('00000000-0000-4000-8000-00000000000a', 'dpo@acme.example') IS NOT NULL AS entered;
SELECT steward.erase('app.readings', '{"id": 12345678901234567890123}', 'request 1') AS erased_big,
       steward.erase('app.readings', '{"id": 1.10}', 'request 2') AS erased_scaled;
COMMIT;
SELECT count(*) FILTER (WHERE new_row::text LIKE '%acme.example%') AS payloads_left
  FROM steward.change_log WHERE table_name = 'app.readings';
-- A key nested deeper than Rust's JSON parser takes: history() answers, and a row event of a
-- table keyed by such jsonb does not make poll() fail.
\c - acme_app
SELECT count(*) AS deep_key_history
  FROM steward.history('app.readings', (repeat('[', 300) || '1' || repeat(']', 300))::jsonb);
\c - postgres
CREATE TABLE app.docs_by_json (k jsonb PRIMARY KEY, tenant_id uuid NOT NULL);
GRANT SELECT, INSERT ON app.docs_by_json TO PUBLIC;
SELECT steward.govern('app.docs_by_json');
\c - acme_app
INSERT INTO app.docs_by_json (k) VALUES ((repeat('[', 300) || '1' || repeat(']', 300))::jsonb);
SELECT length(aggregate_id) AS deep_aggregate_id FROM steward.outbox WHERE aggregate_type = 'app.docs_by_json';
\c - postgres
-- Every error steward's SQL raises goes through steward._raise with one of steward's codes, a
-- message and a hint; one without is steward's own bug (XX000), never a silent success.
SELECT q AS call, public.outcome(q) AS outcome FROM unnest(ARRAY[
    $q$SELECT steward._raise('ST400', 'a message', 'a hint')$q$,
    $q$SELECT steward._raise('ST400', 'a message', NULL)$q$,
    $q$SELECT steward._raise('ST400', '', 'a hint')$q$,
    $q$SELECT steward._raise('22012', 'a message', 'a hint')$q$,
    $q$SELECT steward._raise(NULL, 'a message', 'a hint')$q$
]) AS q;
