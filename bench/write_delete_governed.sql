DELETE FROM bench.d_governed WHERE id = (SELECT nextval('bench.d_governed_next'));
