INSERT INTO bench.w_governed (title, qty) VALUES ('new item', 1);
