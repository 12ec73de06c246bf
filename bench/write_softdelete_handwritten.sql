DELETE FROM bench.s_handwritten WHERE id = (SELECT nextval('bench.s_handwritten_next'));
