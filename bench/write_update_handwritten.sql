\set id random(1, 100000)
UPDATE bench.w_handwritten SET qty = qty + 1 WHERE id = :id;
