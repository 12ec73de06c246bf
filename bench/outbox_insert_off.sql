INSERT INTO bench.o_off (title, qty) VALUES ('new item', 1);
