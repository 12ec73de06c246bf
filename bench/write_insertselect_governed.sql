INSERT INTO bench.w_governed (title, qty) SELECT 'bulk item', g FROM generate_series(1, 1000) g;
