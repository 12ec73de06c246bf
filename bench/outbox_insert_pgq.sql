INSERT INTO bench.o_pgq (tenant_id, title, qty) VALUES (:tenant, 'new item', 1);
