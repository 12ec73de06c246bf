-- Fills a database with steward 0.2.0 the way its users do (0.2.0's own API): tenants, grants
-- and trust (of roles since dropped too), governed tables, records sealed and unsealed, an
-- erasure, a soft delete and a restore, a delete that states its version, events, pruned events
-- and consumers part way through the outbox.
\set ON_ERROR_STOP 1
INSERT INTO steward.tenants (tenant_id, slug, display_name) VALUES
    ('00000000-0000-4000-8000-0000000000a1', 'acme', 'Acme'),
    ('00000000-0000-4000-8000-0000000000b2', 'globex', 'Globex');
SELECT steward.grant_tenant('up_acme', '00000000-0000-4000-8000-0000000000a1');
SELECT steward.grant_tenant('up_globex', '00000000-0000-4000-8000-0000000000b2');
SELECT steward.grant_tenant('up_gone', '00000000-0000-4000-8000-0000000000a1');
SELECT steward.trust_role('up_service');
SELECT steward.trust_role('up_gone_service');

-- First, alone: an event only the outbox needs (notes are not audited), which both consumers
-- are given in a batch of its own and ack, so that prune_outbox() removes it below.
SET SESSION AUTHORIZATION up_service;
BEGIN;
SELECT steward.enter_tenant('00000000-0000-4000-8000-0000000000a1', 'seed');
INSERT INTO shop.notes (id, body) VALUES (1, 'acme note');
COMMIT;
RESET SESSION AUTHORIZATION;
-- Consumers: one for every tenant (the relay's), one of acme's.
SELECT steward.create_consumer('relay', 'earliest');
SELECT steward.ack('relay', (SELECT id FROM steward.poll('relay', 100) ORDER BY id DESC LIMIT 1));
SET SESSION AUTHORIZATION up_acme;
SELECT steward.create_consumer('acme-feed', 'earliest');
SELECT steward.ack('acme-feed', (SELECT id FROM steward.poll('acme-feed', 100) ORDER BY id DESC LIMIT 1));
RESET SESSION AUTHORIZATION;

-- Rows through the front door: the trusted service, one tenant per transaction.
SET SESSION AUTHORIZATION up_service;
BEGIN;
SELECT steward.enter_tenant('00000000-0000-4000-8000-0000000000a1', 'seed');
SELECT steward.annotate(reason => 'first orders');
INSERT INTO shop.orders (id, item, amount) VALUES (1, 'rocket skates', 10), (2, 'giant magnet', 20);
INSERT INTO shop.customers (email, name) VALUES ('wile@acme.test', 'Wile E.'), ('road@acme.test', 'Runner');
SELECT steward.emit('order.placed', 'order', '1', '{"id": 1}');
COMMIT;
BEGIN;
SELECT steward.enter_tenant('00000000-0000-4000-8000-0000000000b2', 'seed');
INSERT INTO shop.orders (id, item, amount) VALUES (3, 'doomsday device', 1000);
INSERT INTO shop.customers (email, name) VALUES ('hank@globex.test', 'Hank');
INSERT INTO shop.notes (id, body) VALUES (2, 'globex note');
COMMIT;
BEGIN;
SELECT steward.enter_tenant('00000000-0000-4000-8000-0000000000a1', 'alice');
UPDATE shop.orders SET amount = 11, version = 1 WHERE id = 1;
DELETE FROM shop.customers WHERE email = 'road@acme.test';
COMMIT;
BEGIN;
SELECT steward.enter_tenant('00000000-0000-4000-8000-0000000000a1', 'alice');
SELECT steward.restore('shop.customers', '{"tenant_id": "00000000-0000-4000-8000-0000000000a1", "email": "road@acme.test"}');
INSERT INTO shop.orders (id, item, amount) VALUES (4, 'bird seed', 2);
SELECT steward.delete_version('shop.orders', '{"id": 4}', 1);
COMMIT;
RESET SESSION AUTHORIZATION;

-- Sealed records, then an erasure, then records left unsealed.
SELECT count(*) > 0 AS sealed FROM steward.seal_audit();
BEGIN;
SELECT steward.enter_tenant('00000000-0000-4000-8000-0000000000a1', 'dpo');
SELECT steward.erase('shop.customers', '{"tenant_id": "00000000-0000-4000-8000-0000000000a1", "email": "wile@acme.test"}', 'right to erasure');
COMMIT;

-- Each consumer acks part of what it is given next.
SELECT steward.ack('relay', (SELECT max(id) FROM (SELECT id FROM steward.poll('relay', 4)) p));
SET SESSION AUTHORIZATION up_acme;
SELECT steward.ack('acme-feed', (SELECT max(id) FROM (SELECT id FROM steward.poll('acme-feed', 2)) p));
RESET SESSION AUTHORIZATION;

SET SESSION AUTHORIZATION up_service;
BEGIN;
SELECT steward.enter_tenant('00000000-0000-4000-8000-0000000000b2', 'bob');
UPDATE shop.orders SET item = 'doomsday device II', version = 1 WHERE id = 3;
INSERT INTO shop.notes (id, body) VALUES (3, 'unsealed note');
COMMIT;
RESET SESSION AUTHORIZATION;

-- Events only the outbox needed, acked by both consumers: pruned (tombstones keep their digests).
SELECT count(*) >= 0 AS sealed FROM steward.seal_audit();
SELECT steward.prune_outbox('0 seconds') AS pruned;

DROP ROLE up_gone;
DROP ROLE up_gone_service;
