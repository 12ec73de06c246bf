-- The upgrade suite's tables, governed the way every release since 0.1.0 governs them. Run in
-- the database filled under an old release, and in a fresh install of this one: after the
-- upgrade, both must have the same schema.
CREATE SCHEMA shop AUTHORIZATION up_owner;
SET ROLE up_owner;
CREATE TABLE shop.orders (
    id        bigint PRIMARY KEY,
    tenant_id uuid NOT NULL,
    item      text NOT NULL,
    amount    numeric NOT NULL
);
CREATE INDEX ON shop.orders (tenant_id, id);
CREATE TABLE shop.customers (
    tenant_id uuid NOT NULL,
    email     text NOT NULL,
    name      text,
    PRIMARY KEY (tenant_id, email)
);
CREATE TABLE shop.notes (
    id        bigint PRIMARY KEY,
    tenant_id uuid NOT NULL,
    body      text
);
GRANT USAGE ON SCHEMA shop TO PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON shop.orders, shop.customers, shop.notes TO PUBLIC;
RESET ROLE;
SELECT steward.govern('shop.orders');
SELECT steward.govern('shop.customers', versioned => false, soft_delete => true);
SELECT steward.govern('shop.notes', versioned => false, audited => false);
