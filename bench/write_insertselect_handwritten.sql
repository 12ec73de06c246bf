INSERT INTO bench.w_handwritten (tenant_id, title, qty) SELECT :tenant, 'bulk item', g FROM generate_series(1, 1000) g;
