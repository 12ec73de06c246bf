-- PATCH /v1/items/{id} with If-Match: * and {"qty": N}, as the service runs it.
\set id random(1, 10000)
\set q random(1, 1000)
\startpipeline
BEGIN;
SELECT steward.enter_tenant_token(:token), steward.annotate(NULL, NULL, NULL), pg_catalog.set_config('statement_timeout', '5000', true), steward._check_serving('items');
WITH w AS (UPDATE "bench"."api_items" AS t SET ("qty") = (SELECT r."qty" FROM pg_catalog.jsonb_populate_record(NULL::"bench"."api_items", CAST(('{"qty": ' || :q::text || '}') AS jsonb)) r) WHERE t."id" = CAST(:id::text AS bigint) RETURNING (SELECT pg_catalog.row_to_json(x) FROM (SELECT t."id", t."name", t."category", t."qty", t."version") x)::text AS j, t."version"::text AS e) SELECT w.j, w.e, true FROM w UNION ALL SELECT NULL, (SELECT t."version"::text FROM "bench"."api_items" t WHERE t."id" = CAST(:id::text AS bigint)), false WHERE NOT EXISTS (SELECT 1 FROM w);
COMMIT;
\endpipeline
