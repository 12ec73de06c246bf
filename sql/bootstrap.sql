-- steward's catalogs. Tenant roles can read none of these: the extension reads them with its
-- owner's privileges, through fixed queries, when it checks a caller.

CREATE TYPE steward.tenant_status AS ENUM ('active', 'suspended', 'offboarded');
CREATE TYPE steward.tenant_isolation AS ENUM ('pooled', 'dedicated');

CREATE TABLE steward.tenants (
    tenant_id    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    slug         text NOT NULL UNIQUE
                 CHECK (slug ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    display_name text NOT NULL,
    status       steward.tenant_status NOT NULL DEFAULT 'active',
    isolation    steward.tenant_isolation NOT NULL DEFAULT 'pooled',
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- Which roles may enter which tenant. A grant to a group role applies to its members that
-- inherit it. Roles are kept by OID, so renaming a role keeps its grants.
CREATE TABLE steward.tenant_grants (
    role_oid   oid NOT NULL,
    tenant_id  uuid NOT NULL REFERENCES steward.tenants ON DELETE CASCADE,
    granted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (role_oid, tenant_id)
);

-- Service roles: may enter any active tenant and name the actor.
CREATE TABLE steward.trusted_roles (
    role_oid   oid PRIMARY KEY,
    trusted_at timestamptz NOT NULL DEFAULT now()
);

-- HS256 keys for steward.enter_tenant_token. Never readable by tenant roles.
CREATE TABLE steward.signing_keys (
    key_id     text PRIMARY KEY,
    secret     bytea NOT NULL CHECK (octet_length(secret) >= 32),
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

-- The governed tables and their options.
CREATE TABLE steward.governed (
    rel              regclass PRIMARY KEY,
    tenant_column    name NOT NULL,
    versioned        boolean NOT NULL,
    version_required boolean NOT NULL,
    audited          boolean NOT NULL,
    events           boolean NOT NULL,
    soft_delete      boolean NOT NULL,
    governed_at      timestamptz NOT NULL DEFAULT now()
);

REVOKE ALL ON steward.tenants, steward.tenant_grants, steward.trusted_roles,
              steward.signing_keys, steward.governed FROM PUBLIC;

-- The catalogs' rows are the DBA's configuration: pg_dump keeps them.
SELECT pg_catalog.pg_extension_config_dump('steward.tenants', '');
SELECT pg_catalog.pg_extension_config_dump('steward.tenant_grants', '');
SELECT pg_catalog.pg_extension_config_dump('steward.trusted_roles', '');
SELECT pg_catalog.pg_extension_config_dump('steward.signing_keys', '');
SELECT pg_catalog.pg_extension_config_dump('steward.governed', '');
