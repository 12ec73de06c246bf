-- steward.enter_tenant_token: tokens signed with a key in steward.signing_keys (HS256 secrets;
-- RS256, ES256 and EdDSA public keys as JWK). A bad token is ST401; a good token for a tenant
-- that may not be entered (suspended, unknown) is ST002.
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

-- Expired: ST401.
SELECT steward.enter_tenant_token(public.test_token(
  json_build_object('tenant_id', '00000000-0000-4000-8000-00000000000b', 'sub', 'jane', 'exp', 1000000000)::jsonb,
  convert_to(repeat('s3cret!', 8), 'utf8')));
\echo :LAST_ERROR_SQLSTATE
-- Signed with another key: ST401.
SELECT steward.enter_tenant_token(public.test_token(
  json_build_object('tenant_id', '00000000-0000-4000-8000-00000000000b', 'sub', 'jane', 'exp', extract(epoch FROM now())::bigint + 600)::jsonb,
  convert_to(repeat('guessed!', 8), 'utf8')));
\echo :LAST_ERROR_SQLSTATE
-- Forged: a good token's payload swapped for another tenant's: ST401.
SELECT steward.enter_tenant_token(
  split_part(t, '.', 1) || '.' ||
  translate(rtrim(encode(convert_to(json_build_object('tenant_id', '00000000-0000-4000-8000-00000000000a', 'sub', 'jane',
      'exp', extract(epoch FROM now())::bigint + 600)::text, 'utf8'), 'base64'), '='), E'+/\n', '-_')
  || '.' || split_part(t, '.', 3))
FROM (SELECT public.test_token(json_build_object('tenant_id', '00000000-0000-4000-8000-00000000000b', 'sub', 'jane',
      'exp', extract(epoch FROM now())::bigint + 600)::jsonb, convert_to(repeat('s3cret!', 8), 'utf8')) AS t) x;
\echo :LAST_ERROR_SQLSTATE
-- alg "none": ST401.
SELECT steward.enter_tenant_token(public.test_token(
  json_build_object('tenant_id', '00000000-0000-4000-8000-00000000000b', 'sub', 'jane', 'exp', extract(epoch FROM now())::bigint + 600)::jsonb,
  convert_to(repeat('s3cret!', 8), 'utf8'), 'none'));
\echo :LAST_ERROR_SQLSTATE
-- Not a token at all: ST401.
SELECT steward.enter_tenant_token('not-a-token');
\echo :LAST_ERROR_SQLSTATE
-- Missing claims: ST401.
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

-- Public keys: the identity provider keeps the private half; the database stores the public JWK.
\c - postgres
INSERT INTO steward.signing_keys (key_id, alg, jwk) VALUES
  ('ed1', 'EdDSA', '{"kty": "OKP", "crv": "Ed25519", "x": "nIFEXkfaPhY_U2ugqnFJa816PFt37ixuneOtUqVQd7I"}'),
  ('ec1', 'ES256', '{"kty": "EC", "crv": "P-256", "x": "p9m14LfEXDRZJDbWai8Bw9RE4R6d94HCgwmQIQnxj7o", "y": "DTClzZwXTdd0wdh4m8ePC8zn0yh-mb-kj_0CbzzH7DY"}'),
  ('rsa1', 'RS256', '{"kty": "RSA", "n": "lJn5zdPgxspixbTJcdFIx8kH4F57lHBizHn_yKIeQU8Inoo_Puo7CGQe1wB-G1EKeXOizIdOhr6bBrTzErl73GKV-_STm1BS7R_0d6L0kd4UrgzPQ8I8u8wfal7PdhktqXkjJHdDXBj_lZpinAZg7pMD8ieBZBgFDD1L400yLoojH7LtpzvJmeZupqBqdV_pDjyoQSzG3JazaTBbr_ucOpM7qNuHudUNLqGLM-GovHpOPErBK_1AHsW-1TXkr8jb1UlimER2iwjfI_s738w4RGwQPDy9Brud2G_8slKxboGbqRUwjyLAYV3toY_UyZWLQYH87GsSFk9Ge1XmMgkmEw", "e": "AQAB"}');
\set ed_tok 'eyJhbGciOiJFZERTQSIsImtpZCI6ImVkMSIsInR5cCI6IkpXVCJ9.eyJ0ZW5hbnRfaWQiOiIwMDAwMDAwMC0wMDAwLTQwMDAtODAwMC0wMDAwMDAwMDAwMGIiLCJzdWIiOiJpZHA6amFuZSIsImV4cCI6NDEwMjQ0NDgwMH0.Mx8C6hq6vYYq5ePUnw76Iw4-2sUnwNBoVeqc2uhGLhTnnSvN3TkjuC51wLNYzuyRBrxFmNrY8Q0bLnoipbM6AQ'
\set ec_tok 'eyJhbGciOiJFUzI1NiIsImtpZCI6ImVjMSIsInR5cCI6IkpXVCJ9.eyJ0ZW5hbnRfaWQiOiIwMDAwMDAwMC0wMDAwLTQwMDAtODAwMC0wMDAwMDAwMDAwMGIiLCJzdWIiOiJpZHA6amFuZSIsImV4cCI6NDEwMjQ0NDgwMH0.OdX6D8iWnw2-bPAQO691yyo6HEYAzpJdzRntYry-6YV6DTtGXL6WXovR5carifyZ37ZahmkyWYhw1q-Y9DeLaQ'
\set rsa_tok 'eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTEiLCJ0eXAiOiJKV1QifQ.eyJ0ZW5hbnRfaWQiOiIwMDAwMDAwMC0wMDAwLTQwMDAtODAwMC0wMDAwMDAwMDAwMGIiLCJzdWIiOiJpZHA6amFuZSIsImV4cCI6NDEwMjQ0NDgwMH0.ffRDqNObsx3niWplNnMgD9SC7Sxi3qVz4ypew3Indk83vF7CTwvaUKHkcmnclbk_bQoJMtDaKsIb3rtUY6dKrwRYbsQO_Q9hAXfHw9SdtLBYvMWJNR4nAZnqf8wLdiPE8Q63qX-GSC_gdphKLFfkA_2Es_3HaKUfc0wQMCb-5op69BMlwacjb2zxYcAAQDG-RD7LF13n0Vw2LK7UTsUaQeUJIrkqtj5-pw2OaCxZ--quZxnhR6oSdD6KAbPTL1YKsvEHyOngAoT6UMtal2a-qe3jpu85rPjn7BHV3aLezWD8_sVt5kRVjHf4iMVYfYSiadWVJ5SqGbKYkVaDfFvB3Q'
\c - nogrant_app
BEGIN;
SELECT steward.enter_tenant_token(:'ed_tok');
SELECT steward.current_tenant(), steward.current_actor();
ROLLBACK;
BEGIN;
SELECT steward.enter_tenant_token(:'ec_tok');
SELECT steward.current_actor();
ROLLBACK;
BEGIN;
SELECT steward.enter_tenant_token(:'rsa_tok');
SELECT steward.current_actor();
ROLLBACK;
-- Key confusion: an HS256 token "signed" with the RSA key's public JWK as the secret: ST401.
SELECT steward.enter_tenant_token('eyJhbGciOiJIUzI1NiIsImtpZCI6InJzYTEifQ.eyJ0ZW5hbnRfaWQiOiIwMDAwMDAwMC0wMDAwLTQwMDAtODAwMC0wMDAwMDAwMDAwMGIiLCJzdWIiOiJpZHA6amFuZSIsImV4cCI6NDEwMjQ0NDgwMH0.pw2VmbLfGFxFkrqx09DGsjrIEhx8KQ9BqRPe2X5EN8k');
\echo :LAST_ERROR_SQLSTATE
-- An ES256 token whose kid names the EdDSA key: ST401.
SELECT steward.enter_tenant_token('eyJhbGciOiJFUzI1NiIsImtpZCI6ImVkMSIsInR5cCI6IkpXVCJ9.eyJ0ZW5hbnRfaWQiOiIwMDAwMDAwMC0wMDAwLTQwMDAtODAwMC0wMDAwMDAwMDAwMGIiLCJzdWIiOiJpZHA6amFuZSIsImV4cCI6NDEwMjQ0NDgwMH0.M0AG09D4kTBoV8Yfm0iuO5YMt5m2D10xpRwFA-Qp8qOJYFiLhy5eUWOUgK9SBp5PZos2xqjRA0y7oXrkz2PnRQ');
\echo :LAST_ERROR_SQLSTATE
-- A key revoked is unknown at once, in this session too.
\c - postgres
UPDATE steward.signing_keys SET revoked_at = now() WHERE key_id = 'ec1';
\c - nogrant_app
SELECT steward.enter_tenant_token(:'ec_tok');
\echo :LAST_ERROR_SQLSTATE

-- A key may name its issuer and audience, and bound a token's lifetime.
\c - postgres
INSERT INTO steward.signing_keys (key_id, secret, issuer, audience, max_lifetime)
  VALUES ('idp', convert_to(repeat('idp-key!', 8), 'utf8'), 'https://idp.example', 'steward', '1 hour');
\c - nogrant_app
CREATE FUNCTION pg_temp.idp(extra jsonb) RETURNS text LANGUAGE sql AS $$
  SELECT public.test_token(jsonb_strip_nulls(jsonb_build_object(
      'tenant_id', '00000000-0000-4000-8000-00000000000b', 'sub', 'jane',
      'iss', 'https://idp.example', 'aud', 'steward',
      'iat', extract(epoch FROM now())::bigint, 'exp', extract(epoch FROM now())::bigint + 600) || extra),
    convert_to(repeat('idp-key!', 8), 'utf8'))
$$;
BEGIN;
SELECT steward.enter_tenant_token(pg_temp.idp('{}'));
SELECT steward.current_actor();
ROLLBACK;
BEGIN;
SELECT steward.enter_tenant_token(pg_temp.idp('{"aud": ["billing", "steward"]}'));
SELECT steward.current_actor();
ROLLBACK;
-- Another issuer, no issuer, another audience: ST401.
SELECT steward.enter_tenant_token(pg_temp.idp('{"iss": "https://evil.example"}'));
\echo :LAST_ERROR_SQLSTATE
SELECT steward.enter_tenant_token(pg_temp.idp('{"iss": null}'));
\echo :LAST_ERROR_SQLSTATE
SELECT steward.enter_tenant_token(pg_temp.idp('{"aud": "billing"}'));
\echo :LAST_ERROR_SQLSTATE
-- Living longer than the key allows, from issue or from now: ST401. (These messages carry times
-- taken from the clock: only their SQLSTATE is shown.)
\set VERBOSITY sqlstate
SELECT steward.enter_tenant_token(pg_temp.idp(jsonb_build_object('exp', extract(epoch FROM now())::bigint + 7200)));
\echo :LAST_ERROR_SQLSTATE
SELECT steward.enter_tenant_token(pg_temp.idp(jsonb_build_object('iat', extract(epoch FROM now())::bigint - 7000)));
\echo :LAST_ERROR_SQLSTATE
-- Not valid yet (nbf beyond the 30 s leeway): ST401; within it, accepted.
SELECT steward.enter_tenant_token(pg_temp.idp(jsonb_build_object('nbf', extract(epoch FROM now())::bigint + 300)));
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
BEGIN;
SELECT steward.enter_tenant_token(pg_temp.idp(jsonb_build_object('nbf', extract(epoch FROM now())::bigint + 5)));
SELECT steward.current_actor();
ROLLBACK;
-- A good token naming a tenant that does not exist: ST002, as enter_tenant says.
SELECT steward.enter_tenant_token(pg_temp.idp('{"tenant_id": "00000000-0000-4000-8000-0000000000ff"}'));
\echo :LAST_ERROR_SQLSTATE

-- Keys that could never verify are refused when stored (ST400), whoever stores them.
\c - postgres
\set VERBOSITY terse
INSERT INTO steward.signing_keys (key_id, alg, jwk) VALUES ('priv', 'EdDSA', '{"kty": "OKP", "crv": "Ed25519", "x": "nIFEXkfaPhY_U2ugqnFJa816PFt37ixuneOtUqVQd7I", "d": "q4xO1NX6p6jWb8V09mCn6CQsTe-YpNeTV-V7kzwqAiQ"}');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO steward.signing_keys (key_id, alg, jwk) VALUES ('wrongkty', 'ES256', '{"kty": "OKP", "crv": "Ed25519", "x": "nIFEXkfaPhY_U2ugqnFJa816PFt37ixuneOtUqVQd7I"}');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO steward.signing_keys (key_id, alg, jwk) VALUES ('small', 'RS256', '{"kty": "RSA", "n": "AQAB", "e": "AQAB"}');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO steward.signing_keys (key_id, alg, jwk) VALUES ('offcurve', 'ES256',
  '{"kty": "EC", "crv": "P-256", "x": "AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM", "y": "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE"}');
\echo :LAST_ERROR_SQLSTATE
UPDATE steward.signing_keys SET jwk = jwk - 'x' WHERE key_id = 'ed1';
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
-- Neither column for the other's algorithm, and no algorithm steward does not verify.
INSERT INTO steward.signing_keys (key_id, alg, secret) VALUES ('hs512', 'HS512', convert_to(repeat('s3cret!', 8), 'utf8'));
\echo :LAST_ERROR_SQLSTATE
INSERT INTO steward.signing_keys (key_id, alg, secret) VALUES ('rsasecret', 'RS256', convert_to(repeat('s3cret!', 8), 'utf8'));
\echo :LAST_ERROR_SQLSTATE
SELECT key_id, alg, issuer, audience, max_lifetime, revoked_at IS NOT NULL AS revoked
  FROM steward.signing_keys ORDER BY key_id;
