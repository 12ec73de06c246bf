UPDATE bench.s_plain SET deleted_at = now() WHERE id = (SELECT nextval('bench.s_plain_next'));
