COPY bench.c_plain (title, qty) FROM 'bench_copy.csv' WITH (FORMAT csv);
