COPY bench.c_governed (title, qty) FROM 'bench_copy.csv' WITH (FORMAT csv);
