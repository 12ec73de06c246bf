DELETE FROM bench.d_handwritten WHERE id = (SELECT nextval('bench.d_handwritten_next'));
