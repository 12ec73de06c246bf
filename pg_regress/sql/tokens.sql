-- steward.enter_tenant_token: HS256 tokens signed with a key in steward.signing_keys.
-- In a database of this file's own, copied from the shared fixture (setup.sql): nothing any
-- other file did is seen here, and this file runs alone with `cargo xtask test pg_regress tokens`.
\c postgres
CREATE DATABASE regress_tokens TEMPLATE steward_regress;
\c regress_tokens
\set SHOW_CONTEXT never
CREATE EXTENSION IF NOT EXISTS pgcrypto;
-- A test helper that signs claims the way the service's identity provider would.
CREATE FUNCTION public.test_token(claims jsonb, key bytea, alg text DEFAULT 'HS256') RETURNS text
LANGUAGE sql AS $$
  WITH p AS (
    SELECT translate(rtrim(encode(convert_to(json_build_object('alg', alg, 'typ', 'JWT')::text, 'utf8'), 'base64'), '='), E'+/\n', '-_') AS h,
           translate(rtrim(encode(convert_to(claims::text, 'utf8'), 'base64'), '='), E'+/\n', '-_') AS c
  )
  SELECT h || '.' || c || '.' || translate(rtrim(encode(hmac(convert_to(h || '.' || c, 'utf8'), key, 'sha256'), 'base64'), '='), E'+/\n', '-_')
  FROM p
$$;
GRANT EXECUTE ON FUNCTION public.test_token(jsonb, bytea, text) TO PUBLIC;
INSERT INTO steward.signing_keys (key_id, secret) VALUES ('k1', convert_to(repeat('s3cret!', 8), 'utf8'));
-- Keys must be long enough for HMAC-SHA256.
\set VERBOSITY terse
INSERT INTO steward.signing_keys (key_id, secret) VALUES ('short', 'tiny');
\set VERBOSITY default
\echo :LAST_ERROR_SQLSTATE

\c - nogrant_app
-- Tenant roles cannot read the keys.
SELECT * FROM steward.signing_keys;
\echo :LAST_ERROR_SQLSTATE

-- A good token is the authority: even a role with no grant enters its tenant, as its subject.
BEGIN;
SELECT steward.enter_tenant_token(public.test_token(
  json_build_object('tenant_id', '00000000-0000-4000-8000-00000000000b', 'sub', 'jane@globex.example',
                    'exp', extract(epoch FROM now())::bigint + 600)::jsonb,
  convert_to(repeat('s3cret!', 8), 'utf8')));
SELECT steward.current_tenant(), steward.current_actor();
SELECT name FROM app.projects ORDER BY id;
COMMIT;
SELECT count(*) FROM app.projects;
\echo :LAST_ERROR_SQLSTATE

-- Expired: ST002.
SELECT steward.enter_tenant_token(public.test_token(
  json_build_object('tenant_id', '00000000-0000-4000-8000-00000000000b', 'sub', 'jane', 'exp', 1000000000)::jsonb,
  convert_to(repeat('s3cret!', 8), 'utf8')));
\echo :LAST_ERROR_SQLSTATE
-- Signed with another key: ST002.
SELECT steward.enter_tenant_token(public.test_token(
  json_build_object('tenant_id', '00000000-0000-4000-8000-00000000000b', 'sub', 'jane', 'exp', extract(epoch FROM now())::bigint + 600)::jsonb,
  convert_to(repeat('guessed!', 8), 'utf8')));
\echo :LAST_ERROR_SQLSTATE
-- Forged: a good token's payload swapped for another tenant's: ST002.
SELECT steward.enter_tenant_token(
  split_part(t, '.', 1) || '.' ||
  translate(rtrim(encode(convert_to(json_build_object('tenant_id', '00000000-0000-4000-8000-00000000000a', 'sub', 'jane',
      'exp', extract(epoch FROM now())::bigint + 600)::text, 'utf8'), 'base64'), '='), E'+/\n', '-_')
  || '.' || split_part(t, '.', 3))
FROM (SELECT public.test_token(json_build_object('tenant_id', '00000000-0000-4000-8000-00000000000b', 'sub', 'jane',
      'exp', extract(epoch FROM now())::bigint + 600)::jsonb, convert_to(repeat('s3cret!', 8), 'utf8')) AS t) x;
\echo :LAST_ERROR_SQLSTATE
-- alg "none": ST002.
SELECT steward.enter_tenant_token(public.test_token(
  json_build_object('tenant_id', '00000000-0000-4000-8000-00000000000b', 'sub', 'jane', 'exp', extract(epoch FROM now())::bigint + 600)::jsonb,
  convert_to(repeat('s3cret!', 8), 'utf8'), 'none'));
\echo :LAST_ERROR_SQLSTATE
-- Not a token at all: ST002.
SELECT steward.enter_tenant_token('not-a-token');
\echo :LAST_ERROR_SQLSTATE
-- Missing claims: ST002.
SELECT steward.enter_tenant_token(public.test_token(
  json_build_object('tenant_id', '00000000-0000-4000-8000-00000000000b', 'exp', extract(epoch FROM now())::bigint + 600)::jsonb,
  convert_to(repeat('s3cret!', 8), 'utf8')));
\echo :LAST_ERROR_SQLSTATE
-- A good token for a suspended tenant: ST002.
SELECT steward.enter_tenant_token(public.test_token(
  json_build_object('tenant_id', '00000000-0000-4000-8000-00000000000c', 'sub', 'x', 'exp', extract(epoch FROM now())::bigint + 600)::jsonb,
  convert_to(repeat('s3cret!', 8), 'utf8')));
\echo :LAST_ERROR_SQLSTATE

-- A revoked key no longer verifies.
\c - postgres
UPDATE steward.signing_keys SET revoked_at = now() WHERE key_id = 'k1';
\c - nogrant_app
SELECT steward.enter_tenant_token(public.test_token(
  json_build_object('tenant_id', '00000000-0000-4000-8000-00000000000b', 'sub', 'jane', 'exp', extract(epoch FROM now())::bigint + 600)::jsonb,
  convert_to(repeat('s3cret!', 8), 'utf8')));
\echo :LAST_ERROR_SQLSTATE
