-- GET /v1/items/{id}, as the service runs it: one pipelined transaction.
\set id random(1, 10000)
\startpipeline
BEGIN;
SELECT steward.enter_tenant_token(:token), steward.annotate(NULL, NULL, NULL), pg_catalog.set_config('statement_timeout', '5000', true), steward._check_serving('items');
SELECT (SELECT pg_catalog.row_to_json(x) FROM (SELECT t."id", t."name", t."category", t."qty", t."version") x)::text, t."version"::text FROM "bench"."api_items" t WHERE t."id" = CAST(:id::text AS bigint);
COMMIT;
\endpipeline
