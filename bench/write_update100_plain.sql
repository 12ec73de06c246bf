\set s random(0, 999) * 100
UPDATE bench.w_plain SET qty = qty + 1 WHERE id > :s AND id <= :s + 100;
