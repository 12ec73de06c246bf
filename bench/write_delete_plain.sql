DELETE FROM bench.d_plain WHERE id = (SELECT nextval('bench.d_plain_next'));
