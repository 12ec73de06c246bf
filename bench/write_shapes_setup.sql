-- The write shapes beyond single-row INSERT and UPDATE (issue 21): single-row DELETE, DELETE of
-- a soft-deleting table, a 100-row UPDATE, INSERT ... SELECT of 1,000 rows and COPY of 100,000
-- rows, each written four ways. Run after write_setup.sql (same database: the floor's log
-- bench.w_floor_log and the hand-written trigger bench.hw_audit_and_outbox are shared).

-- DELETE: 1,000,000 rows per way; each transaction deletes the next one, by id, from a sequence
-- of its own (bench.d_*_next), so that every DELETE finds its row. The bench checks that no
-- sequence ran past the rows.
CREATE TABLE bench.d_plain (LIKE bench.w_plain INCLUDING ALL);
CREATE TABLE bench.d_floor (LIKE bench.w_plain INCLUDING ALL);
CREATE TABLE bench.d_governed (LIKE bench.w_plain INCLUDING ALL);
CREATE TABLE bench.d_handwritten (LIKE bench.w_plain INCLUDING ALL);
CREATE TRIGGER hw_audit_and_outbox AFTER INSERT OR UPDATE OR DELETE ON bench.d_handwritten
    FOR EACH ROW EXECUTE FUNCTION bench.hw_audit_and_outbox();

-- DELETE of a soft-deleting table: the row stays, with deleted_at set. (a) and (b) say so with
-- an UPDATE; (c) is governed with soft_delete => true and runs DELETE; (d) turns the DELETE into
-- that UPDATE with a PL/pgSQL BEFORE DELETE trigger, the way it is written by hand, and logs the
-- UPDATE with the same AFTER trigger as the other (d) tables.
CREATE TABLE bench.s_plain (LIKE bench.w_plain INCLUDING ALL, deleted_at timestamptz);
CREATE TABLE bench.s_floor (LIKE bench.s_plain INCLUDING ALL);
CREATE TABLE bench.s_governed (LIKE bench.s_plain INCLUDING ALL);
CREATE TABLE bench.s_handwritten (LIKE bench.s_plain INCLUDING ALL);
CREATE FUNCTION bench.hw_soft_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE bench.s_handwritten SET deleted_at = now() WHERE id = OLD.id AND deleted_at IS NULL;
    RETURN NULL;
END $$;
CREATE TRIGGER hw_soft_delete BEFORE DELETE ON bench.s_handwritten
    FOR EACH ROW EXECUTE FUNCTION bench.hw_soft_delete();
CREATE TRIGGER hw_audit_and_outbox AFTER INSERT OR UPDATE OR DELETE ON bench.s_handwritten
    FOR EACH ROW EXECUTE FUNCTION bench.hw_audit_and_outbox();

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['d_plain', 'd_floor', 'd_governed', 'd_handwritten',
                             's_plain', 's_floor', 's_governed', 's_handwritten'] LOOP
        EXECUTE format('CREATE SEQUENCE bench.%I', t || '_next');
        EXECUTE format('ALTER TABLE bench.%I DISABLE TRIGGER USER', t);
        EXECUTE format('INSERT INTO bench.%I (tenant_id, title, qty) '
                       'SELECT ''00000000-0000-4000-8000-000000000001'', ''item '' || g, 0 '
                       'FROM generate_series(1, 1000000) g', t);
        EXECUTE format('ALTER TABLE bench.%I ENABLE TRIGGER USER', t);
        EXECUTE format('GRANT USAGE ON SEQUENCE bench.%I TO bench_tenant', t || '_next');
    END LOOP;
END $$;
SELECT steward.govern('bench.d_governed');
SELECT steward.govern('bench.s_governed', soft_delete => true);
GRANT SELECT, DELETE ON bench.d_plain, bench.d_floor, bench.d_governed, bench.d_handwritten,
                       bench.s_governed, bench.s_handwritten TO bench_tenant;
GRANT SELECT, UPDATE ON bench.s_plain, bench.s_floor, bench.s_governed, bench.s_handwritten TO bench_tenant;

-- COPY of 100,000 rows: from a file the server reads (bench_copy.csv, in the data directory).
-- COPY FROM is refused for roles that row-level security applies to, so it runs as
-- bench_loader: a member of bench_tenant (so in its tenant) with BYPASSRLS, the way a DBA's
-- migration role loads a tenant's data. The floor (b) is one plain statement reading the same
-- file through file_fdw and writing the rows and their records (INSERT ... SELECT ...
-- RETURNING into the log), as the INSERT floor does.
DO $$ BEGIN
  EXECUTE format('COPY (SELECT ''copied item '' || g, g FROM generate_series(1, 100000) g) TO %L WITH (FORMAT csv)',
                 current_setting('data_directory') || '/bench_copy.csv');
END $$;
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bench_loader') THEN
    CREATE ROLE bench_loader LOGIN BYPASSRLS IN ROLE bench_tenant;
  END IF;
END $$;
GRANT pg_read_server_files TO bench_loader;
CREATE TABLE bench.c_plain (LIKE bench.w_plain INCLUDING ALL);
ALTER TABLE bench.c_plain ALTER COLUMN tenant_id SET DEFAULT '00000000-0000-4000-8000-000000000001';
CREATE TABLE bench.c_floor (LIKE bench.c_plain INCLUDING ALL);
CREATE TABLE bench.c_governed (LIKE bench.w_plain INCLUDING ALL);
CREATE TABLE bench.c_handwritten (LIKE bench.c_plain INCLUDING ALL);
CREATE TRIGGER hw_audit_and_outbox AFTER INSERT OR UPDATE OR DELETE ON bench.c_handwritten
    FOR EACH ROW EXECUTE FUNCTION bench.hw_audit_and_outbox();
SELECT steward.govern('bench.c_governed');
GRANT SELECT, INSERT ON bench.c_plain, bench.c_floor, bench.c_governed, bench.c_handwritten TO bench_loader;
GRANT INSERT ON bench.w_floor_log, bench.hw_audit, bench.hw_outbox TO bench_loader;
CREATE EXTENSION IF NOT EXISTS file_fdw;
CREATE SERVER bench_files FOREIGN DATA WRAPPER file_fdw;
CREATE FOREIGN TABLE bench.copy_source (title text, qty int)
    SERVER bench_files OPTIONS (filename 'bench_copy.csv', format 'csv');
GRANT SELECT ON bench.copy_source TO bench_loader;

VACUUM ANALYZE bench.d_plain, bench.d_floor, bench.d_governed, bench.d_handwritten,
               bench.s_plain, bench.s_floor, bench.s_governed, bench.s_handwritten,
               bench.c_plain, bench.c_floor, bench.c_governed, bench.c_handwritten;
