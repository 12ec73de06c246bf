-- GET /v1/items?category=eq.N&limit=20, as the service runs it: one pipelined transaction.
\set c random(0, 49)
\startpipeline
BEGIN;
SELECT steward.enter_tenant_token(:token), steward.annotate(NULL, NULL, NULL), pg_catalog.set_config('statement_timeout', '5000', true), steward._check_serving('items');
SELECT (SELECT pg_catalog.row_to_json(x) FROM (SELECT t."id", t."name", t."category", t."qty", t."version") x)::text, t."id"::text FROM "bench"."api_items" t WHERE t."category" = CAST(:c::text AS integer) ORDER BY t."id" ASC LIMIT 21;
COMMIT;
\endpipeline
