-- The demo schema: two tenants sharing one invoices table, each with an analyst role that
-- connects directly with psql, and a trusted service role like the web API's.
CREATE EXTENSION steward;

INSERT INTO steward.tenants (tenant_id, slug, display_name) VALUES
    ('0193a4d2-0000-7000-8000-0000000000a1', 'acme', 'Acme Corp'),
    ('0193a4d2-0000-7000-8000-0000000000b1', 'globex', 'Globex Inc');

DO $$
DECLARE r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['acme_analyst', 'globex_analyst', 'api_service'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('CREATE ROLE %I LOGIN', r);
        END IF;
    END LOOP;
END $$;

SELECT steward.grant_tenant('acme_analyst', '0193a4d2-0000-7000-8000-0000000000a1');
SELECT steward.grant_tenant('globex_analyst', '0193a4d2-0000-7000-8000-0000000000b1');
SELECT steward.trust_role('api_service');

CREATE SCHEMA app;
CREATE TABLE app.invoices (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id uuid NOT NULL,
    customer  text NOT NULL,
    amount    numeric(12, 2) NOT NULL,
    issued_on date NOT NULL DEFAULT current_date
);
CREATE INDEX invoices_tenant_idx ON app.invoices (tenant_id, id);
GRANT USAGE ON SCHEMA app TO PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON app.invoices TO acme_analyst, globex_analyst, api_service;
SELECT steward.govern('app.invoices');

-- The service writes each tenant's rows inside that tenant, naming the end user as actor.
SET ROLE api_service;
BEGIN;
SELECT steward.enter_tenant('0193a4d2-0000-7000-8000-0000000000a1', 'wile.e@acme.example');
INSERT INTO app.invoices (customer, amount) VALUES
    ('Road Runner Ltd', 1200.00), ('Desert Supplies', 349.90), ('Rocket Skates Co', 89.00);
COMMIT;
BEGIN;
SELECT steward.enter_tenant('0193a4d2-0000-7000-8000-0000000000b1', 'hank@globex.example');
INSERT INTO app.invoices (customer, amount) VALUES
    ('Cypress Creek Utilities', 15000.00), ('Doomsday Devices GmbH', 999999.99);
COMMIT;
RESET ROLE;
