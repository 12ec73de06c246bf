COPY bench.c_handwritten (title, qty) FROM 'bench_copy.csv' WITH (FORMAT csv);
