INSERT INTO bench.w_plain (tenant_id, title, qty) VALUES (:tenant, 'new item', 1);
