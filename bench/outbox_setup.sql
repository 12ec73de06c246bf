-- Outbox benchmarks (run after write_setup.sql): the same INSERT with steward's row events on,
-- off, and into a PgQ queue; queues for PgQ's drain and latency runs.
CREATE EXTENSION pgq;
CREATE TABLE bench.o_on (LIKE bench.w_plain INCLUDING ALL);
CREATE TABLE bench.o_off (LIKE bench.w_plain INCLUDING ALL);
CREATE TABLE bench.o_pgq (LIKE bench.w_plain INCLUDING ALL);
SELECT steward.govern('bench.o_on');                    -- audited, events on (the defaults)
SELECT steward.govern('bench.o_off', events => false);  -- audited, events off: one record either way
SELECT pgq.create_queue('bench_rows');
CREATE TRIGGER o_pgq_events AFTER INSERT OR UPDATE OR DELETE ON bench.o_pgq
    FOR EACH ROW EXECUTE FUNCTION pgq.jsontriga('bench_rows');
GRANT SELECT, INSERT ON bench.o_on, bench.o_off, bench.o_pgq TO bench_tenant;
GRANT pgq_writer TO bench_tenant;

-- Drain: ticks of 100 events (the bench calls pgq.ticker after each 100-event transaction).
SELECT pgq.create_queue('bench_drain');
SELECT pgq.set_queue_config('bench_drain', 'ticker_max_count', '100');
SELECT pgq.register_consumer('bench_drain', 'drainer');
-- Latency: PgQ's default ticker settings, ticked once a second as pgqd does.
SELECT pgq.create_queue('bench_latency');
SELECT pgq.register_consumer('bench_latency', 'reader');
-- steward's consumers, for every tenant (created by a superuser outside any tenant).
SELECT steward.create_consumer('drainer', 'latest');
SELECT steward.create_consumer('reader', 'latest');

-- bench_quiet: bench_tenant's privileges and tenant (through membership), with steward.notify
-- off, for the workloads that measure the write without the wake-up.
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bench_quiet') THEN
    CREATE ROLE bench_quiet LOGIN IN ROLE bench_tenant;
  END IF;
END $$;
ALTER ROLE bench_quiet SET steward.notify = off;
