-- Fills a database with steward 0.1.0 the way its users did (0.1.0's own API): tenants, grants
-- and trust (of roles since dropped too), governed tables (one partitioned, one with a foreign
-- key 0.2.0 refuses: tests/upgrade/remedy-0.1.0.sql), records sealed and unsealed, an erasure,
-- events, pruned events and consumers part way through the outbox.
\set ON_ERROR_STOP 1
INSERT INTO steward.tenants (tenant_id, slug, display_name) VALUES
    ('00000000-0000-4000-8000-0000000000a1', 'acme', 'Acme'),
    ('00000000-0000-4000-8000-0000000000b2', 'globex', 'Globex');
SELECT steward.grant_tenant('up_acme', '00000000-0000-4000-8000-0000000000a1');
SELECT steward.grant_tenant('up_globex', '00000000-0000-4000-8000-0000000000b2');
SELECT steward.grant_tenant('up_gone', '00000000-0000-4000-8000-0000000000a1');
SELECT steward.trust_role('up_service');
SELECT steward.trust_role('up_gone_service');

-- A partitioned table: 0.1.0 governed it; 0.2.0 refuses to (the suite shows the refusal, then
-- ungoverns it under 0.1.0, as docs/dba-guide.md tells a DBA to).
SET ROLE up_owner;
CREATE TABLE shop.ledger (
    tenant_id uuid NOT NULL,
    day       date NOT NULL,
    entry     text,
    PRIMARY KEY (tenant_id, day)
) PARTITION BY RANGE (day);
CREATE TABLE shop.ledger_2026 PARTITION OF shop.ledger FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
GRANT SELECT, INSERT ON shop.ledger TO PUBLIC;
-- A foreign key that does not pair the tenant columns: 0.1.0 let one tenant's line reference
-- another tenant's order.
CREATE TABLE shop.order_lines (
    id        bigint PRIMARY KEY,
    tenant_id uuid NOT NULL,
    order_id  bigint NOT NULL REFERENCES shop.orders (id)
);
GRANT SELECT, INSERT ON shop.order_lines TO PUBLIC;
RESET ROLE;
SELECT steward.govern('shop.ledger', versioned => false);
SELECT steward.govern('shop.order_lines', versioned => false);

-- Rows through the front door: the trusted service, one tenant per transaction.
SET SESSION AUTHORIZATION up_service;
BEGIN;
SELECT steward.enter_tenant('00000000-0000-4000-8000-0000000000a1', 'seed');
SELECT steward.annotate(reason => 'first orders');
-- First: an event only the outbox needs (notes are not audited), which both consumers ack below
-- and prune_outbox() then removes.
INSERT INTO shop.notes (id, body) VALUES (1, 'acme note');
INSERT INTO shop.orders (id, item, amount) VALUES (1, 'rocket skates', 10), (2, 'giant magnet', 20);
INSERT INTO shop.customers (email, name) VALUES ('wile@acme.test', 'Wile E.'), ('road@acme.test', 'Runner');
INSERT INTO shop.ledger (day, entry) VALUES ('2026-03-01', 'acme opened');
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
RESET SESSION AUTHORIZATION;

-- Sealed records, then an erasure, then records left unsealed.
SELECT count(*) > 0 AS sealed FROM steward.seal_audit();
SELECT steward.erase('shop.customers', '{"tenant_id": "00000000-0000-4000-8000-0000000000a1", "email": "wile@acme.test"}', 'right to erasure');

-- Consumers: one for every tenant (the relay's), one of acme's; each acks part of what it polled.
SELECT steward.create_consumer('relay', 'earliest');
SELECT steward.ack('relay', (SELECT max(id) FROM (SELECT id FROM steward.poll('relay', 4)) p));
SET SESSION AUTHORIZATION up_acme;
SELECT steward.create_consumer('acme-feed', 'earliest');
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
