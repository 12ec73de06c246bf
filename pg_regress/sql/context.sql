-- The tenant context: who may enter which tenant, and what the context functions return.
-- In a database of this file's own, copied from the shared fixture (setup.sql): nothing any
-- other file did is seen here, and this file runs alone with `cargo xtask test pg_regress context`.
\c postgres
CREATE DATABASE regress_context TEMPLATE steward_regress;
\c regress_context
\set SHOW_CONTEXT never

-- A role granted exactly one tenant is in it without any call.
\c - acme_app
SELECT steward.current_tenant(), steward.current_actor();
-- ... and it may enter that tenant explicitly too; its actor is always session_user.
BEGIN;
SELECT steward.enter_tenant('00000000-0000-4000-8000-00000000000a');
SELECT steward.current_actor();
ROLLBACK;

-- A group role's grant reaches the members that inherit it.
\c - carol
SELECT steward.current_tenant();

-- Entering a tenant it was not granted: ST002.
\c - acme_app
SELECT steward.enter_tenant('00000000-0000-4000-8000-00000000000b');
\echo :LAST_ERROR_SQLSTATE
-- Naming another actor: ST002 (only trusted roles act on behalf of others).
SELECT steward.enter_tenant('00000000-0000-4000-8000-00000000000a', 'ceo@acme.example');
\echo :LAST_ERROR_SQLSTATE
-- A tenant that does not exist: ST002, without saying whether it exists.
SELECT steward.enter_tenant('00000000-0000-4000-8000-0000000000ff');
\echo :LAST_ERROR_SQLSTATE

-- Two grants and no enter_tenant: ST001, never all rows.
\c - multi_app
SELECT steward.current_tenant();
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM app.projects;
\echo :LAST_ERROR_SQLSTATE
BEGIN;
SELECT steward.enter_tenant('00000000-0000-4000-8000-00000000000b');
SELECT name FROM app.projects ORDER BY id;
COMMIT;

-- No grant at all: ST001, never rows.
\c - nogrant_app
SELECT count(*) FROM app.projects;
\echo :LAST_ERROR_SQLSTATE
SELECT steward.enter_tenant('00000000-0000-4000-8000-00000000000a');
\echo :LAST_ERROR_SQLSTATE
SELECT steward.current_actor() IS NULL AS no_actor;

-- A suspended tenant cannot be entered, implicitly or explicitly: ST002.
\c - hooli_app
SELECT count(*) FROM app.projects;
\echo :LAST_ERROR_SQLSTATE
SELECT steward.enter_tenant('00000000-0000-4000-8000-00000000000c');
\echo :LAST_ERROR_SQLSTATE
\c - api_service
SELECT steward.enter_tenant('00000000-0000-4000-8000-00000000000c');
\echo :LAST_ERROR_SQLSTATE

-- A trusted role enters any active tenant and names the actor.
BEGIN;
SELECT steward.enter_tenant('00000000-0000-4000-8000-00000000000b', 'jane@globex.example');
SELECT steward.current_tenant(), steward.current_actor();
SELECT steward.annotate('ADR-042: quarterly cleanup', 'req-1', '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
SELECT steward._internal_annotations();
COMMIT;
-- Annotations end with the transaction.
SELECT steward._internal_annotations();

-- The administrative functions are not for tenant roles.
\c - acme_app
SELECT steward.create_tenant('evil', 'Evil');
\echo :LAST_ERROR_SQLSTATE
SELECT steward.grant_tenant('acme_app', '00000000-0000-4000-8000-00000000000b');
\echo :LAST_ERROR_SQLSTATE
SELECT steward.trust_role('acme_app');
\echo :LAST_ERROR_SQLSTATE
SELECT steward.govern('app.projects');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM steward.tenant_grants;
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM steward.trusted_roles;
\echo :LAST_ERROR_SQLSTATE

-- create_tenant, as a DBA.
\c - postgres
SELECT steward.create_tenant('initech', 'Initech') IS NOT NULL AS created;
SELECT slug, display_name, status, isolation FROM steward.tenants WHERE slug = 'initech';
SELECT steward.create_tenant('initech', 'Initech again');
\echo :LAST_ERROR_SQLSTATE
SELECT steward.create_tenant('Not A Slug!', 'x');
\echo :LAST_ERROR_SQLSTATE
SELECT steward.grant_tenant('acme_app', '00000000-0000-4000-8000-0000000000ff');
\echo :LAST_ERROR_SQLSTATE
