-- The same page written by hand against the ungoverned copy: an explicit tenant predicate.
\set after random(0, 990000)
SELECT id, title FROM bench.items_plain WHERE tenant_id = :tenant AND id > :after ORDER BY id LIMIT 10;
