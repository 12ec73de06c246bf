-- Tamper evidence: each tenant's records are sealed into a SHA-256 hash chain.
-- In a database of this file's own, copied from the shared fixture (setup.sql): nothing any
-- other file did is seen here, and this file runs alone with `cargo xtask test pg_regress sealing`.
\c postgres
CREATE DATABASE regress_sealing TEMPLATE steward_regress;
\c regress_sealing
\set SHOW_CONTEXT never
-- Records to seal: acme's tasks, and one of globex's.
\c - api_service
BEGIN;
SELECT steward.enter_tenant('00000000-0000-4000-8000-00000000000a', 'wile.e@acme.example');
INSERT INTO app.tasks (id, title) VALUES (1, 'order anvil'), (2, 'paint tunnel');
UPDATE app.tasks SET done = true WHERE id = 1;
DELETE FROM app.tasks WHERE id = 2;
COMMIT;
BEGIN;
SELECT steward.enter_tenant('00000000-0000-4000-8000-00000000000b', 'hank@globex.example');
INSERT INTO app.tasks (id, title) VALUES (100, 'globex task');
COMMIT;
\c - postgres
SELECT steward.seal_audit() > 0 AS sealed_something;
-- The first seal emitted one steward.audit.sealed event per tenant (the outbox's witness); the
-- next seals those, and emits no witness for them, so a third has nothing to do.
SELECT steward.seal_audit() AS sealed_the_witness_events;
SELECT steward.seal_audit() AS sealed_again;
-- Every tenant in steward.tenants is reported, with or without a chain.
SELECT t.slug, v.sealed, v.ok, v.first_bad_id
  FROM steward.verify_audit() v JOIN steward.tenants t USING (tenant_id) ORDER BY t.slug;
SELECT count(*) AS heads, bool_and(length(head) = 64) AS sha256_hex FROM steward.audit_heads();
-- Keep the heads outside the database (here: a table that stands for the outside).
CREATE TABLE public.witness AS SELECT jsonb_agg(h) AS heads FROM steward.audit_heads() h;

-- The sealed records of app.tasks, acme's chain, oldest first.
SELECT c.id, c.action, c.row_key FROM steward.change_log c
  JOIN steward.audit_seals s ON s.record_id = c.id
 WHERE c.table_name = 'app.tasks' AND c.tenant_id = '00000000-0000-4000-8000-00000000000a'
 ORDER BY s.seq LIMIT 3;
SELECT min(c.id) AS first_task_record FROM steward.change_log c WHERE c.table_name = 'app.tasks' \gset

-- A superuser who disables the guard edits a sealed record: detected, with the record.
BEGIN;
SELECT steward.break_glass('test: a superuser simulates tampering');
ALTER TABLE steward.change_log DISABLE TRIGGER steward_append_only;
UPDATE steward.change_log SET actor = 'mallory' WHERE id = :first_task_record;
SELECT ok, first_bad_id = :first_task_record AS names_the_record
  FROM steward.verify_audit('00000000-0000-4000-8000-00000000000a');
ROLLBACK;
-- ... edits a payload: detected.
BEGIN;
SELECT steward.break_glass('test: a superuser simulates tampering');
ALTER TABLE steward.change_log DISABLE TRIGGER steward_append_only;
UPDATE steward.change_log SET new_row = jsonb_set(new_row, '{title}', '"forged"') WHERE id = :first_task_record;
SELECT ok, first_bad_id = :first_task_record AS names_the_record
  FROM steward.verify_audit('00000000-0000-4000-8000-00000000000a');
ROLLBACK;
-- ... deletes a sealed record: detected.
BEGIN;
SELECT steward.break_glass('test: a superuser simulates tampering');
ALTER TABLE steward.change_log DISABLE TRIGGER steward_append_only;
DELETE FROM steward.change_log WHERE id = :first_task_record;
SELECT ok, first_bad_id = :first_task_record AS names_the_record
  FROM steward.verify_audit('00000000-0000-4000-8000-00000000000a');
ROLLBACK;
-- ... inserts a record back-dated below the sealed horizon: refused while the guard stands
-- (records are written only by steward's writer, never through SQL) ...
INSERT INTO steward.change_log (tenant_id, txid, actor, action, event_id, audited, evented)
     OVERRIDING SYSTEM VALUE
     SELECT tenant_id, txid, 'mallory', 'INSERT', gen_random_uuid(), true, false
       FROM steward.change_log WHERE id = :first_task_record;
\echo :LAST_ERROR_SQLSTATE
-- ... and detected once the guard is disabled.
BEGIN;
SELECT steward.break_glass('test: a superuser simulates tampering');
ALTER TABLE steward.change_log DISABLE TRIGGER steward_append_only;
INSERT INTO steward.change_log (tenant_id, txid, actor, action, event_id, audited, evented)
     OVERRIDING SYSTEM VALUE
     SELECT tenant_id, txid, 'mallory', 'INSERT', gen_random_uuid(), true, false
       FROM steward.change_log WHERE id = :first_task_record
     RETURNING id AS planted \gset
SELECT ok, first_bad_id = :planted AS names_the_record
  FROM steward.verify_audit('00000000-0000-4000-8000-00000000000a');
ROLLBACK;
-- ... reorders two sealed records (swaps their contents): detected at the first.
BEGIN;
SELECT steward.break_glass('test: a superuser simulates tampering');
ALTER TABLE steward.change_log DISABLE TRIGGER steward_append_only;
UPDATE steward.change_log c SET new_row = o.new_row, old_values = o.old_values, action = o.action, row_key = o.row_key
  FROM steward.change_log o
 WHERE (c.id, o.id) IN ((:first_task_record, :first_task_record + 1), (:first_task_record + 1, :first_task_record));
SELECT ok, first_bad_id = :first_task_record AS names_the_record
  FROM steward.verify_audit('00000000-0000-4000-8000-00000000000a');
ROLLBACK;
-- ... or reorders the seals: detected.
BEGIN;
SELECT steward.break_glass('test: a superuser simulates tampering');
ALTER TABLE steward.audit_seals DISABLE TRIGGER steward_append_only;
UPDATE steward.audit_seals SET seq = -seq WHERE record_id IN (:first_task_record, :first_task_record + 1);
UPDATE steward.audit_seals SET seq = CASE WHEN record_id = :first_task_record THEN -seq + 1 ELSE -seq - 1 END
 WHERE record_id IN (:first_task_record, :first_task_record + 1);
SELECT ok FROM steward.verify_audit('00000000-0000-4000-8000-00000000000a');
ROLLBACK;

-- ... deletes a sealed audit record and leaves a tombstone with its digest, as prune_outbox()
-- does for outbox-only records: detected (the chain says which records may be pruned).
BEGIN;
SELECT steward.break_glass('test: a superuser simulates tampering');
ALTER TABLE steward.change_log DISABLE TRIGGER steward_append_only;
ALTER TABLE steward.outbox_tombstones DISABLE TRIGGER steward_append_only;
INSERT INTO steward.outbox_tombstones (record_id, tenant_id, record_digest)
SELECT c.id, c.tenant_id, steward._record_digest(c, s.payload_digest)
  FROM steward.change_log c JOIN steward.audit_seals s ON s.record_id = c.id WHERE c.id = :first_task_record;
DELETE FROM steward.change_log WHERE id = :first_task_record;
SELECT ok, first_bad_id = :first_task_record AS names_the_record
  FROM steward.verify_audit('00000000-0000-4000-8000-00000000000a');
ROLLBACK;
-- ... marks a record erased and rewrites its payload: detected (an erased record has no
-- payload, and its erasure is on record).
BEGIN;
SELECT steward.break_glass('test: a superuser simulates tampering');
ALTER TABLE steward.change_log DISABLE TRIGGER steward_append_only;
UPDATE steward.change_log SET erased_at = now(), new_row = '{"title": "rewritten"}'
 WHERE id = :first_task_record;
SELECT ok, first_bad_id = :first_task_record AS names_the_record
  FROM steward.verify_audit('00000000-0000-4000-8000-00000000000a');
ROLLBACK;
-- A superuser who rewrites a record AND recomputes the whole chain consistently: the chain
-- alone cannot tell (verify_audit() says ok); the heads kept outside can.
BEGIN;
SELECT steward.break_glass('test: a superuser simulates tampering');
ALTER TABLE steward.change_log DISABLE TRIGGER steward_append_only;
ALTER TABLE steward.audit_seals DISABLE TRIGGER steward_append_only;
UPDATE steward.change_log SET actor = 'mallory' WHERE id = :first_task_record;
\ir ../fixtures/rewrite_chain.sql
SELECT pg_temp.rewrite_chain('00000000-0000-4000-8000-00000000000a');
SELECT ok AS ok_without_witness FROM steward.verify_audit('00000000-0000-4000-8000-00000000000a');
SELECT ok AS ok_with_witness, first_bad_id IS NOT NULL AS names_a_record
  FROM steward.verify_audit('00000000-0000-4000-8000-00000000000a', (SELECT heads FROM public.witness));
ROLLBACK;
-- Untouched, the chains verify against the witness too.
SELECT bool_and(ok) AS all_ok FROM steward.verify_audit(heads => (SELECT heads FROM public.witness));

-- history() finds a row's records on both sides of the sealed horizon: sealed ones through
-- the seals, newer ones in the unsealed tail. Here task 1 has both.
BEGIN;
SELECT steward.enter_tenant('00000000-0000-4000-8000-00000000000a', 'wile.e@acme.example') IS NOT NULL AS entered;
UPDATE app.tasks SET title = 'order two anvils' WHERE id = 1;
SELECT array_agg(h.action ORDER BY h.id) AS history_of_task_1,
       count(*) FILTER (WHERE s.record_id IS NOT NULL) AS sealed,
       count(*) FILTER (WHERE s.record_id IS NULL) AS unsealed,
       count(*) = (SELECT count(*) FROM steward.change_log c
                    WHERE c.table_name = 'app.tasks' AND c.row_key = '{"id": 1}') AS all_found
  FROM steward.history('app.tasks', '{"id": 1}') h
  LEFT JOIN steward.audit_seals s ON s.record_id = h.id;
SELECT steward.row_as_of('app.tasks', '{"id": 1}', now()) ->> 'title' AS title_now;
COMMIT;

-- Erasure: a customer asks to be forgotten. The payload goes; the records, who, when, why and
-- the proof stay.
-- Attack, first: someone who reads the seals (a tenant's analyst, a backup) and guesses the
-- payload exactly cannot confirm the guess from the digest: it is salted per record ...
CREATE TEMP TABLE guesses AS
SELECT c.id, jsonb_build_array(c.old_values, c.new_row, c.changed) AS payload
  FROM steward.change_log c WHERE c.table_name = 'app.tasks' AND c.row_key = '{"id": 1}' AND c.action <> 'ERASE';
SELECT count(*) AS sealed_records,
       count(*) FILTER (WHERE s.payload_digest = sha256(convert_to(g.payload::text, 'UTF8'))) AS confirmed_unsalted
  FROM guesses g JOIN steward.audit_seals s ON s.record_id = g.id;
-- Erasure acts in one tenant: outside any, ST001.
SELECT steward.erase('app.tasks', '{"id": 1}', 'GDPR request 2026-113');
\echo :LAST_ERROR_SQLSTATE
BEGIN;
SELECT steward.enter_tenant('00000000-0000-4000-8000-00000000000a', 'dpo@acme.example') IS NOT NULL AS entered;
SELECT steward.erase('app.tasks', '{"id": 1}', 'GDPR request 2026-113') AS records_erased;
COMMIT;
SELECT action, actor, reason, new_row IS NULL AS payload_gone, erased_at IS NOT NULL AS erased
  FROM steward.change_log WHERE table_name = 'app.tasks' AND row_key = '{"id": 1}' ORDER BY id;
-- ... and once erased, the salt is gone with the payload: the right guess confirms nothing.
SELECT count(*) AS erased_sealed,
       count(*) FILTER (WHERE s.payload_salt IS NULL) AS salt_gone,
       count(*) FILTER (WHERE s.payload_digest = sha256(coalesce(s.payload_salt, ''::bytea)
                                                        || convert_to(g.payload::text, 'UTF8'))) AS confirmed
  FROM guesses g JOIN steward.audit_seals s ON s.record_id = g.id;
SELECT steward.seal_audit() AS sealed_the_erasure;
SELECT bool_and(ok) AS all_ok FROM steward.verify_audit();
SELECT bool_and(ok) AS all_ok_with_witness FROM steward.verify_audit(heads => (SELECT heads FROM public.witness));
SELECT steward.erase('app.tasks', '{"id": 1}', '');
\echo :LAST_ERROR_SQLSTATE
-- Tenant roles cannot seal, verify or erase.
\c - acme_app
SELECT steward.erase('app.tasks', '{"id": 5}', 'curious');
\echo :LAST_ERROR_SQLSTATE
SELECT steward.seal_audit();
\echo :LAST_ERROR_SQLSTATE
-- They read their own tenant's seals (history() finds sealed records through them), no other
-- tenant's, and cannot write any.
SELECT count(DISTINCT tenant_id) AS tenants, bool_and(tenant_id = steward.current_tenant()) AS own_only
  FROM steward.audit_seals;
INSERT INTO steward.audit_seals (record_id, tenant_id, seq, payload_digest, hash, sealed_xmin)
VALUES (1000, steward.current_tenant(), 1000, '', '', '1');
\echo :LAST_ERROR_SQLSTATE
UPDATE steward.seal_state SET horizon = '1';
\echo :LAST_ERROR_SQLSTATE
\c - postgres
DROP TABLE public.witness;
