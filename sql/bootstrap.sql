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
-- inherit it. Roles are kept as regrole: by OID inside the cluster (renaming a role keeps its
-- grants), by name in a dump (restored into another cluster, where the same role has another
-- OID, each grant lands on the role of that name, never on whichever role got the old OID).
-- No foreign key to steward.tenants: pg_restore -j loads the two tables' rows in parallel, and a
-- key would refuse grants whose tenant is not loaded yet. grant_tenant() checks the tenant, and
-- a deleted tenant's grants go with it (steward_tenant_gone, sql/tenancy.sql).
CREATE TABLE steward.tenant_grants (
    role       regrole NOT NULL,
    tenant_id  uuid NOT NULL,
    granted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (role, tenant_id)
);

-- Service roles: may enter any active tenant and name the actor. regrole, as above.
CREATE TABLE steward.trusted_roles (
    role       regrole PRIMARY KEY,
    trusted_at timestamptz NOT NULL DEFAULT now()
);

-- The keys steward.enter_tenant_token verifies tokens with. Never readable by tenant roles (nor
-- by the service: it holds no key). HS256 keys are shared secrets; RS256, ES256 and EdDSA keys
-- are the identity provider's public keys as JWK (RFC 7517). A key that names an issuer or an
-- audience accepts only tokens whose iss / aud match; max_lifetime bounds how long a token it
-- verifies may live. A token's kid, when present, names its key (key_id). Rows are checked by
-- steward_signing_key_check (sql/tenancy.sql); columns after revoked_at came in 0.3.0.
CREATE TABLE steward.signing_keys (
    key_id       text PRIMARY KEY,
    secret       bytea CHECK (octet_length(secret) >= 32),
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz,
    alg          text NOT NULL DEFAULT 'HS256'
                 CHECK (alg IN ('HS256', 'RS256', 'ES256', 'EdDSA')),
    jwk          jsonb,
    issuer       text,
    audience     text,
    max_lifetime interval CHECK (max_lifetime > interval '0'),
    CONSTRAINT signing_keys_material CHECK (
        CASE WHEN alg = 'HS256' THEN secret IS NOT NULL AND jwk IS NULL
             ELSE secret IS NULL AND jwk IS NOT NULL END)
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
    governed_at      timestamptz NOT NULL DEFAULT now(),
    source_oid       oid,             -- the table's OID when it was first governed: a dump
                                      -- restored elsewhere maps its records' OID to the table
    event_name       text             -- the table's name in its row events' types
                                      -- ('<event_name>.created'), as it was last governed
);

-- The resources the web API serves (sql/resources.sql); came in 0.3.0.
CREATE TABLE steward.exposed (
    rel        regclass PRIMARY KEY,
    resource   text NOT NULL UNIQUE,
    columns    name[],            -- NULL: every column but the tenant column
    exposed_at timestamptz NOT NULL DEFAULT now()
);

REVOKE ALL ON steward.tenants, steward.tenant_grants, steward.trusted_roles,
              steward.signing_keys, steward.governed, steward.exposed FROM PUBLIC;

-- The catalogs' rows are the DBA's configuration: pg_dump keeps them.
SELECT pg_catalog.pg_extension_config_dump('steward.tenants', '');
-- A dump keeps the grants and trust of roles that exist: a row naming a dropped role (a bare OID)
-- would land on whichever role has that OID where the dump is restored.
SELECT pg_catalog.pg_extension_config_dump('steward.tenant_grants',
    'WHERE role::oid IN (SELECT oid FROM pg_catalog.pg_roles)');
SELECT pg_catalog.pg_extension_config_dump('steward.trusted_roles',
    'WHERE role::oid IN (SELECT oid FROM pg_catalog.pg_roles)');
SELECT pg_catalog.pg_extension_config_dump('steward.signing_keys', '');
SELECT pg_catalog.pg_extension_config_dump('steward.governed', '');
SELECT pg_catalog.pg_extension_config_dump('steward.exposed', '');

-- The change log: one append-only record per change to a governed table (and, later, per
-- domain event). steward.audit_log and steward.outbox are its two faces.
CREATE TABLE steward.change_log (
    id          bigint GENERATED ALWAYS AS IDENTITY,
    tenant_id   uuid NOT NULL,
    txid        xid8 NOT NULL DEFAULT pg_catalog.pg_current_xact_id(),
    occurred_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    actor       text,
    reason      text,
    request_id  text,
    traceparent text,
    rel         oid,                -- the governed table (NULL for domain events)
    table_name  text,               -- its qualified name when the record was written
    row_key     jsonb,              -- its primary key, e.g. {"id": 42}
    row_hash    bigint,             -- steward._internal_row_hash(rel, row_key): finds a row's records
    action      text NOT NULL CHECK (action IN ('INSERT', 'UPDATE', 'DELETE', 'ERASE', 'EVENT')),
    old_values  jsonb,              -- what the change replaced: the whole row (DELETE), or only the
                                    -- changed columns' old values (UPDATE; the faces show
                                    -- new_row || old_values as old_row: steward._old_row)
    new_row     jsonb,              -- the row after the change, whole
    changed     jsonb,              -- the names of the columns that changed (UPDATE)
    event_id    uuid NOT NULL,      -- UUIDv7: the outbox's id for this record
    event_type  text,               -- e.g. projects.updated
    audited     boolean NOT NULL,   -- shown by steward.audit_log
    evented     boolean NOT NULL,   -- shown by steward.outbox
    erased_at   timestamptz,        -- set when steward.erase() removed the personal payload
    -- Domain events only (steward.emit); a row event's are derived from rel and row_key.
    aggregate_type text,
    aggregate_id   text,
    schema_version integer,
    headers        jsonb              -- the headers emit() was given, beyond actor and annotations
);
-- By transaction: a record whose transaction id is below the oldest running one is final (no
-- transaction can add below it), so sealing walks (txid, id); consumers find a batch's
-- transactions by their ids (ADR 004). Both indexes
-- grow at their right edge; nothing on the write path lands on a random page. A row's records
-- are found through the seals (sealed records) and this index (the unsealed tail): see
-- steward._row_records.
CREATE INDEX change_log_order ON steward.change_log (txid, id);
-- The key leads with tenant_id: a tenant role's scans of the log get only indexes that do (ADR
-- 009). It serves history() (a sealed record by its whole key, the unsealed tail from the
-- horizon), erase() and verify_audit() without visiting another tenant's entries, and grows at
-- each tenant's right edge. Two indexes per record, as before: the id alone is never looked up
-- (ack() finds an event from the consumer's batch, by its transaction).
ALTER TABLE steward.change_log ADD CONSTRAINT change_log_pkey PRIMARY KEY (tenant_id, txid, id);

-- Tenant roles read their tenant's records; nobody writes them but steward.
ALTER TABLE steward.change_log ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
REVOKE ALL ON steward.change_log FROM PUBLIC;
GRANT SELECT ON steward.change_log TO PUBLIC;

-- Seals: each tenant's records form a SHA-256 hash chain. One row per sealed record; rows are
-- only ever added. hash = sha256(previous hash || record digest); the record digest covers the
-- record's fields and a digest of its personal payload, so erasure keeps the chain valid.
CREATE TABLE steward.audit_seals (
    record_id      bigint PRIMARY KEY,
    tenant_id      uuid NOT NULL,
    seq            bigint NOT NULL,           -- position in the tenant's chain, from 1
    payload_digest bytea NOT NULL,             -- sha256(payload_salt || the record's payload)
    payload_salt   bytea,                     -- random, per record; erase() removes it, so an
                                              -- erased payload cannot be confirmed by guessing
    hash           bytea NOT NULL,
    sealed_xmin    xid8 NOT NULL,             -- every transaction below this had finished
    sealed_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    row_hash       bigint,                    -- the record's row_hash: finds a row's sealed records
    prunable       boolean NOT NULL DEFAULT false, -- only the outbox needs the record (in the hash)
    txid           xid8 NOT NULL,             -- the record's txid: (tenant_id, txid, record_id)
                                              -- finds it by the log's key (0.2.0: added last, as
                                              -- the upgrade adds it)
    UNIQUE (tenant_id, seq)
);
-- Leads with tenant_id, like every index a tenant role's scan may use (ADR 009): a lookup by
-- row_hash never visits another tenant's seals (a key-existence oracle otherwise).
CREATE INDEX audit_seals_row ON steward.audit_seals (tenant_id, row_hash);
-- A tenant role reads its own tenant's seals (history() finds sealed records through them).
ALTER TABLE steward.audit_seals ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON steward.audit_seals FROM PUBLIC;
GRANT SELECT ON steward.audit_seals TO PUBLIC;

-- How far sealing has come: every record whose txid is below `horizon` is sealed. One row,
-- written only by steward.seal_audit(); history() scans the log only from here.
-- No row until the first seal (horizon 0): a dump's row restores into an empty table.
CREATE TABLE steward.seal_state (
    one     boolean PRIMARY KEY DEFAULT true CHECK (one),
    horizon xid8 NOT NULL
);
REVOKE ALL ON steward.seal_state FROM PUBLIC;
GRANT SELECT ON steward.seal_state TO PUBLIC;

-- steward's transaction ids are the cluster's plus `xid_offset` (extension/src/xids.rs, ADR
-- 010): records, positions and horizons are in that space, so a dump restored into another
-- cluster, whose transaction ids are unrelated, keeps its order. The row names the cluster
-- (pg_control_system().system_identifier) the offset was set for; without a row (a restored
-- database: the row is not dumped) or in another cluster, steward sets a new offset above
-- everything the database holds before it writes or reads a position. Written only by steward,
-- when it first needs the offset. A copy made with CREATE DATABASE ... TEMPLATE keeps the row:
-- same cluster, same ids, same table OIDs.
CREATE TABLE steward.xid_base (
    one               boolean PRIMARY KEY DEFAULT true CHECK (one),
    system_identifier text NOT NULL,
    database_oid      oid NOT NULL,                  -- and the database (for the DBA's eyes)
    xid_offset        bigint NOT NULL CHECK (xid_offset >= 0),
    set_at            timestamptz NOT NULL DEFAULT pg_catalog.now()
);
REVOKE ALL ON steward.xid_base FROM PUBLIC;
GRANT SELECT ON steward.xid_base TO PUBLIC;

-- A record names its table by OID (`rel`, in the record's digest). Restored into another
-- database, the table has another OID: the restore notes, for each OID the restored records name,
-- the table of the name they were written under (`table_name`), so that history(), row_as_of()
-- and erase() find them. An alias covers the records below `before_txid` (set when steward first
-- writes after the restore; NULL: every record), since a new table may get the old OID.
-- Rebuilt by every restore, never dumped.
CREATE TABLE steward.rel_aliases (
    old_rel     oid PRIMARY KEY,
    rel         oid NOT NULL,
    before_txid xid8
);
REVOKE ALL ON steward.rel_aliases FROM PUBLIC;
GRANT SELECT ON steward.rel_aliases TO PUBLIC;

-- The log, its seals, the sealing state, the tombstones and the id sequence are data a dump must
-- keep (they restore into empty tables: extension/src/audit.rs lets a superuser's COPY into an
-- empty append-only table through, which is what pg_restore does).
SELECT pg_catalog.pg_extension_config_dump('steward.change_log', '');
SELECT pg_catalog.pg_extension_config_dump('steward.change_log_id_seq', '');
-- Only steward's writer draws ids (setval by anyone else would break the order).
REVOKE ALL ON SEQUENCE steward.change_log_id_seq FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('steward.audit_seals', '');
SELECT pg_catalog.pg_extension_config_dump('steward.seal_state', '');

-- The outbox face's consumers: named cursors into the commit order (ADR 004): batches of what
-- became visible between two snapshots, each transaction whole. tenant_id NULL: every tenant (created by a
-- trusted role or superuser outside any tenant); else one tenant's events only.
CREATE TABLE steward.consumers (
    name       text NOT NULL CHECK (name ~ '^[A-Za-z0-9_.:-]{1,128}$'),
    tenant_id  uuid,
    -- The position (ADR 004): every transaction visible in `done` is delivered; `batch` is the
    -- batch being delivered, what became visible between `done` and it, in the order of each
    -- transaction's last event; of it, the transactions before `pos_txid` and `pos_txid`'s events
    -- through `pos_id` are delivered. `done` is NULL only in a row from before this layout,
    -- whose (pos_txid, pos_id) was a position in (txid, id) order (steward._consumer reads it).
    pos_txid   xid8,
    pos_id     bigint NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    created_by text NOT NULL,
    acked_at   timestamptz,
    -- (0.2.0: added last, as the upgrade adds them)
    done       pg_snapshot,
    batch      pg_snapshot,
    acked_max  bigint NOT NULL DEFAULT 0     -- the highest event id ever acked (ack below it: no-op)
);
-- Names are scoped: each tenant has its own, and the all-tenant consumers theirs, so no tenant
-- can take (or learn of) a name another tenant or the relay uses.
CREATE UNIQUE INDEX consumers_scope_name
    ON steward.consumers ((coalesce(tenant_id, '00000000-0000-0000-0000-000000000000'::uuid)), name);
REVOKE ALL ON steward.consumers FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('steward.consumers', '');

-- JSON Schemas for event types: emit() validates a payload against its type's highest version.
CREATE TABLE steward.event_types (
    event_type     text NOT NULL,
    schema_version integer NOT NULL CHECK (schema_version >= 1),
    json_schema    jsonb NOT NULL,
    registered_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (event_type, schema_version)
);
REVOKE ALL ON steward.event_types FROM PUBLIC;
GRANT SELECT ON steward.event_types TO PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('steward.event_types', '');

-- What prune_outbox() removed: the record's digest stands in for it in the seal chain.
CREATE TABLE steward.outbox_tombstones (
    record_id     bigint PRIMARY KEY,
    tenant_id     uuid NOT NULL,
    record_digest bytea NOT NULL,
    pruned_at     timestamptz NOT NULL DEFAULT pg_catalog.now()
);
REVOKE ALL ON steward.outbox_tombstones FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('steward.outbox_tombstones', '');

-- Who may break glass (steward.break_glass): roles are the cluster's, so the role may already
-- exist from another database.
DO $$
BEGIN
    CREATE ROLE steward_breakglass NOLOGIN;
-- (unique_violation: another database's CREATE EXTENSION made it at the same moment)
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;
