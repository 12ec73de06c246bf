DELETE FROM bench.s_governed WHERE id = (SELECT nextval('bench.s_governed_next'));
