-- The web API's demo: the domain steward was designed for. Each tenant is an architecture
-- workspace holding applications, the dependencies between them, architecture decision records
-- and diagram metadata (with a JSONB column of custom fields). Run by `cargo xtask demo` after
-- sql/demo.sql, as a superuser.

UPDATE steward.tenants SET display_name = 'Acme platform workspace'
 WHERE tenant_id = '0193a4d2-0000-7000-8000-0000000000a1';
UPDATE steward.tenants SET display_name = 'Globex architecture workspace'
 WHERE tenant_id = '0193a4d2-0000-7000-8000-0000000000b1';

-- The service's role: an ordinary role. No trust_role, no grant: it enters a tenant only with
-- the token each request brings.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'steward_api') THEN
        CREATE ROLE steward_api LOGIN;
    END IF;
END $$;

-- The relay's role (steward-service relay): reads every tenant's events and the webhook
-- secrets, enters no tenant.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'demo_relay') THEN
        CREATE ROLE demo_relay LOGIN;
    END IF;
END $$;
GRANT steward_relay TO demo_relay;

CREATE SCHEMA arch;

CREATE TABLE arch.applications (
    id        bigint GENERATED ALWAYS AS IDENTITY,
    tenant_id uuid NOT NULL,
    name      text NOT NULL,
    owner     text,
    tier      text NOT NULL DEFAULT 'standard' CHECK (tier IN ('critical', 'standard', 'experimental')),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, name)
);

-- "application_id depends on depends_on": the key is both, so /v1/dependencies/{app},{dep}.
CREATE TABLE arch.dependencies (
    tenant_id      uuid NOT NULL,
    application_id bigint NOT NULL,
    depends_on     bigint NOT NULL,
    kind           text NOT NULL DEFAULT 'runtime',
    PRIMARY KEY (tenant_id, application_id, depends_on),
    FOREIGN KEY (tenant_id, application_id) REFERENCES arch.applications (tenant_id, id),
    FOREIGN KEY (tenant_id, depends_on) REFERENCES arch.applications (tenant_id, id),
    CHECK (application_id <> depends_on)
);

CREATE TABLE arch.decisions (
    id             bigint GENERATED ALWAYS AS IDENTITY,
    tenant_id      uuid NOT NULL,
    number         int NOT NULL,
    title          text NOT NULL,
    status         text NOT NULL DEFAULT 'proposed'
                   CHECK (status IN ('proposed', 'accepted', 'superseded', 'rejected')),
    application_id bigint,
    body           text,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, number),
    FOREIGN KEY (tenant_id, application_id) REFERENCES arch.applications (tenant_id, id)
);

CREATE TABLE arch.diagrams (
    id             bigint GENERATED ALWAYS AS IDENTITY,
    tenant_id      uuid NOT NULL,
    application_id bigint,
    title          text NOT NULL,
    notation       text NOT NULL DEFAULT 'c4',
    custom_fields  jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, application_id) REFERENCES arch.applications (tenant_id, id)
);

-- Every application that depends on another, directly or through others, with the shortest
-- distance. security_invoker: it runs as the caller, so row-level security keeps it inside the
-- caller's workspace.
CREATE VIEW arch.blast_radius WITH (security_invoker = true) AS
WITH RECURSIVE impact (application_id, dependent_id, depth, path) AS (
    SELECT d.depends_on, d.application_id, 1, ARRAY[d.depends_on, d.application_id]
      FROM arch.dependencies d
    UNION ALL
    SELECT i.application_id, d.application_id, i.depth + 1, i.path || d.application_id
      FROM impact i
      JOIN arch.dependencies d ON d.depends_on = i.dependent_id
     WHERE NOT d.application_id = ANY (i.path)
)
SELECT i.application_id, a.name AS application, i.dependent_id, b.name AS dependent,
       min(i.depth) AS depth
  FROM impact i
  JOIN arch.applications a ON a.id = i.application_id
  JOIN arch.applications b ON b.id = i.dependent_id
 GROUP BY i.application_id, a.name, i.dependent_id, b.name;

GRANT USAGE ON SCHEMA arch TO steward_api, acme_analyst, globex_analyst;
GRANT SELECT, INSERT, UPDATE, DELETE ON arch.applications, arch.dependencies, arch.decisions,
      arch.diagrams TO steward_api, acme_analyst, globex_analyst;
GRANT SELECT ON arch.blast_radius TO steward_api, acme_analyst, globex_analyst;

-- The tables whose keys reference applications first: a key into a governed table must come
-- from a governed table (its tenant column paired), so applications is governed last.
SELECT steward.govern('arch.dependencies');
SELECT steward.govern('arch.decisions');
SELECT steward.govern('arch.diagrams');
SELECT steward.govern('arch.applications');

SELECT steward.expose('arch.applications');
SELECT steward.expose('arch.dependencies');
SELECT steward.expose('arch.decisions');
SELECT steward.expose('arch.diagrams');
SELECT steward.expose('arch.blast_radius', 'blast-radius');

-- Each workspace's architecture, written inside its tenant (a superuser may enter any).
BEGIN;
SELECT steward.enter_tenant('0193a4d2-0000-7000-8000-0000000000a1', 'seed');
SELECT steward.annotate('demo: initial landscape');
INSERT INTO arch.applications (name, owner, tier) VALUES
    ('ledger', 'payments-team', 'critical'),
    ('payments', 'payments-team', 'critical'),
    ('checkout', 'web-team', 'standard'),
    ('storefront', 'web-team', 'standard'),
    ('reporting', 'data-team', 'experimental');
INSERT INTO arch.dependencies (application_id, depends_on)
SELECT a.id, b.id FROM (VALUES ('payments', 'ledger'), ('checkout', 'payments'),
                               ('storefront', 'checkout'), ('reporting', 'ledger')) AS e(app, dep)
  JOIN arch.applications a ON a.name = e.app
  JOIN arch.applications b ON b.name = e.dep;
INSERT INTO arch.decisions (number, title, status, application_id, body)
SELECT 7, 'The ledger is append-only', 'accepted', id, 'Corrections are new entries, never edits.'
  FROM arch.applications WHERE name = 'ledger';
INSERT INTO arch.diagrams (application_id, title, custom_fields)
SELECT id, 'Payments context', '{"layer": "container", "reviewed": true, "tags": ["pci"]}'
  FROM arch.applications WHERE name = 'payments';
COMMIT;

BEGIN;
SELECT steward.enter_tenant('0193a4d2-0000-7000-8000-0000000000b1', 'seed');
SELECT steward.annotate('demo: initial landscape');
INSERT INTO arch.applications (name, owner, tier) VALUES
    ('doomsday-device', 'hank', 'critical'),
    ('volcano-lair', 'facilities', 'standard');
INSERT INTO arch.dependencies (application_id, depends_on)
SELECT a.id, b.id FROM arch.applications a, arch.applications b
 WHERE a.name = 'doomsday-device' AND b.name = 'volcano-lair';
COMMIT;
