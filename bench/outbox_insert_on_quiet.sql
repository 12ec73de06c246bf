INSERT INTO bench.o_on (title, qty) VALUES ('new item', 1);
