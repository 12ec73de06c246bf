INSERT INTO bench.w_handwritten (tenant_id, title, qty) VALUES (:tenant, 'new item', 1);
