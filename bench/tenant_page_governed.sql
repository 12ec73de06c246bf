-- A 10-row keyset page of the caller's tenant; steward's policy supplies the tenant.
\set after random(0, 990000)
SELECT id, title FROM bench.items_governed WHERE id > :after ORDER BY id LIMIT 10;
