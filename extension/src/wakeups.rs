//! Wake-ups for consumers: `NOTIFY steward_outbox` after every commit of a transaction that
//! enqueued, so that a consumer that `LISTEN`s polls as soon as there is something to read.
//!
//! Postgres serializes the commits of notifying transactions across the whole cluster: async.c
//! takes a lock in pre-commit and holds it until the commit is done, so that its queue is in
//! commit order. A NOTIFY from every writing transaction therefore costs concurrent writers
//! about half their throughput at 8 clients (docs/benchmarks.md). Steward sends the wake-up one
//! of two ways, with the same promise to consumers (a notification is delivered after each such
//! commit, possibly one for several commits):
//!
//! - **Preloaded** (`shared_preload_libraries = 'steward'`): the committing backend marks its
//!   database pending in shared memory and sets the latch of that database's *waker*, a
//!   background worker that sends one NOTIFY for everything marked since its last one. Writers
//!   never take the notification lock. The first commit that finds no waker starts one (and
//!   notifies itself); the waker exits after a second with nothing to send, so that it never
//!   keeps a database from being dropped or used as a template for long.
//! - **Loaded on demand**, or while no waker runs for the database (starting, stopping, more
//!   databases busy than `steward.max_wakers`, no free worker process): the committing
//!   transaction sends the NOTIFY itself, in pre-commit.
//!
//! A prepared transaction cannot send one (Postgres forbids NOTIFY in it): the `COMMIT PREPARED`
//! that commits it does, in the session that runs it, where steward is loaded (always, when it is
//! preloaded). ADR 006 records the design.

use std::cell::Cell;
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, SignalWakeFlags};
use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::prelude::*;
use pgrx::{pg_shmem_init, pg_sys, IntoDatum, PGRXSharedMemory, PgLwLock};

/// The channel consumers listen on.
const CHANNEL: &str = "steward_outbox";
/// Slots in shared memory: the most databases that can have a waker at once.
const WAKERS: usize = 32;
/// A waker claimed this long ago that never connected is given up, and its slot claimed anew.
const STALE_START_US: i64 = 10_000_000;
/// A waker with nothing to send for this long exits; the next commit that needs one starts it.
const IDLE_EXIT: Duration = Duration::from_secs(1);
/// After each NOTIFY the waker rests this long, so that under a steady stream of commits it
/// sends at most a few hundred a second instead of taking a core from the writers. A consumer
/// woken then polls until empty: more frequent wake-ups would find nothing more.
const REST: Duration = Duration::from_millis(2);

/// `steward.notify`: whether a transaction that enqueued wakes consumers after it commits. On
/// by default; a superuser setting (tenants cannot turn it off or on). Off, consumers poll on
/// their own schedule.
pub static NOTIFY: GucSetting<bool> = GucSetting::<bool>::new(true);

/// `steward.max_wakers`: how many databases may have a waker at once. Each takes one of
/// `max_worker_processes`, which parallel query and logical replication also use.
pub static MAX_WAKERS: GucSetting<i32> = GucSetting::<i32>::new(4);

/// One database's waker, in shared memory. A slot with `database == 0` is free.
#[derive(Clone, Copy, Default)]
struct Waker {
    database: u32,
    /// Bumped each time the slot is claimed, so that a backend holding a reservation from an
    /// earlier claim never marks a later one.
    generation: u64,
    /// The worker's process id and latch, zero until it runs.
    pid: i32,
    latch: usize,
    /// Transactions between pre-commit and commit or abort that count on this waker: it does not
    /// exit while there are any.
    holders: u32,
    /// A commit since the waker's last NOTIFY.
    pending: bool,
    /// The waker is stopping: no new transaction counts on it.
    closing: bool,
    /// When the slot was claimed (for giving up a start that never came to anything).
    claimed_at: i64,
}

impl Waker {
    /// A free slot. The generation moves on, so that no reservation from before matches it.
    fn freed(generation: u64) -> Waker {
        Waker {
            generation: generation.wrapping_add(1),
            ..Waker::default()
        }
    }
}

#[derive(Clone, Copy)]
struct Wakers([Waker; WAKERS]);

impl Default for Wakers {
    fn default() -> Self {
        Wakers([Waker::default(); WAKERS])
    }
}

// SAFETY: plain integers and flags, no pointers into any one process's memory (the latch is in shared
// memory, the same address in every backend).
unsafe impl PGRXSharedMemory for Wakers {}

// SAFETY: the name is a static NUL-terminated string; pgrx registers the lock when steward is
// preloaded.
static SLOTS: PgLwLock<Wakers> = unsafe { PgLwLock::new(c"steward_wakers") };
/// Set in the postmaster when steward is preloaded; backends inherit it.
static PRELOADED: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Whether this transaction enqueued (and so wakes consumers when it commits).
    static ENQUEUED: Cell<bool> = const { Cell::new(false) };
    /// The waker slot and generation this transaction counts on, from pre-commit to its end.
    static HELD: Cell<Option<(usize, u64)>> = const { Cell::new(None) };
}

/// Registers `steward.notify` and the transaction callback, and, when steward is being
/// preloaded, the wakers' shared memory. Called from `_PG_init`.
pub fn init() {
    GucRegistry::define_bool_guc(
        c"steward.notify",
        c"Send NOTIFY steward_outbox after each commit of a transaction that enqueued events.",
        c"Consumers LISTEN steward_outbox to poll as soon as events commit. Off: consumers poll \
          on their own schedule.",
        &NOTIFY,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"steward.max_wakers",
        c"How many databases may have a steward waker (a background worker) at once.",
        c"Each takes one of max_worker_processes. Beyond it, and at 0, a committing transaction \
          sends its NOTIFY itself. Only where steward is preloaded.",
        &MAX_WAKERS,
        0,
        WAKERS as i32,
        GucContext::Sighup,
        GucFlags::default(),
    );
    // SAFETY: _PG_init runs once per backend, before any transaction can call the callback or
    // hook; shared memory is requested only while the postmaster preloads libraries, as Postgres
    // requires.
    unsafe {
        if pg_sys::process_shared_preload_libraries_in_progress {
            pg_shmem_init!(SLOTS);
            PRELOADED.store(true, Ordering::Relaxed);
        }
        pg_sys::RegisterXactCallback(Some(on_xact_event), std::ptr::null_mut());
        PREV_PROCESS_UTILITY = pg_sys::ProcessUtility_hook;
        pg_sys::ProcessUtility_hook = Some(on_utility);
    }
}

/// Marks this transaction as one that enqueued: consumers are woken when it commits (once,
/// however many events), unless `steward.notify` is off then.
pub fn at_commit() {
    ENQUEUED.set(true);
}

/// `steward._internal_wake_at_commit()`: the same mark, for records written in SQL (the seal's
/// witness events).
#[pg_extern(volatile, parallel_unsafe)]
fn _internal_wake_at_commit() {
    at_commit();
}

/// # Safety
///
/// Called by Postgres only, as a transaction callback.
#[pg_guard]
unsafe extern "C-unwind" fn on_xact_event(event: pg_sys::XactEvent::Type, _arg: *mut c_void) {
    use pg_sys::XactEvent::*;
    match event {
        // The mark is cleared whether or not the setting lets the wake-up out; with no waker
        // to count on, the transaction notifies itself.
        XACT_EVENT_PRE_COMMIT
            if (ENQUEUED.replace(false)
                | (COMMITTED_PREPARED.replace(false) && crate::catalog::installed()))
                && NOTIFY.get()
                && !reserve_waker() =>
        {
            notify_now()
        }
        XACT_EVENT_COMMIT | XACT_EVENT_ABORT | XACT_EVENT_PRE_PREPARE | XACT_EVENT_PREPARE => {
            ENQUEUED.set(false);
            COMMITTED_PREPARED.set(false);
            if let Some(held) = HELD.take() {
                release(held, event == XACT_EVENT_COMMIT);
            }
        }
        _ => {}
    }
}

static mut PREV_PROCESS_UTILITY: pg_sys::ProcessUtility_hook_type = None;

extern "C-unwind" {
    /// Postgres' own, called directly: pgrx's wrapper would catch an error raised inside the
    /// statement and raise it again with XX000 for a code it does not know (steward's ST403).
    #[link_name = "standard_ProcessUtility"]
    fn standard_process_utility(
        pstmt: *mut pg_sys::PlannedStmt,
        query_string: *const std::ffi::c_char,
        read_only_tree: bool,
        context: pg_sys::ProcessUtilityContext::Type,
        params: pg_sys::ParamListInfo,
        query_env: *mut pg_sys::QueryEnvironment,
        dest: *mut pg_sys::DestReceiver,
        qc: *mut pg_sys::QueryCompletion,
    );
}

thread_local! {
    /// This transaction ran COMMIT PREPARED: it wakes consumers at its commit.
    static COMMITTED_PREPARED: Cell<bool> = const { Cell::new(false) };
}

/// `COMMIT PREPARED` runs in a transaction of its own, in whatever session the transaction
/// manager uses. A prepared transaction cannot NOTIFY (Postgres forbids it), so the commit of one
/// wakes consumers instead: in a database where steward is installed, that transaction counts as
/// one that enqueued (decided in pre-commit). It does so whether or not the prepared transaction
/// enqueued (its records are not visible before it commits): a spare wake-up costs a poll that
/// finds nothing.
///
/// Not `#[pg_guard]`, and nothing here owns anything that needs dropping: an error raised by the
/// statement passes through this frame as it does through Postgres' own (a longjmp to the
/// nearest handler), keeping its SQLSTATE, detail and hint.
///
/// # Safety
///
/// Called by Postgres only, as ProcessUtility_hook, with the arguments ProcessUtility was given.
#[allow(clippy::too_many_arguments)] // the hook's signature is Postgres'
unsafe extern "C-unwind" fn on_utility(
    pstmt: *mut pg_sys::PlannedStmt,
    query_string: *const std::ffi::c_char,
    read_only_tree: bool,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    query_env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    // SAFETY: the statement Postgres is about to run; it is read, never changed.
    let commit_prepared = unsafe {
        let stmt = (*pstmt).utilityStmt;
        !stmt.is_null()
            && (*stmt).type_ == pg_sys::NodeTag::T_TransactionStmt
            && (*stmt.cast::<pg_sys::TransactionStmt>()).kind
                == pg_sys::TransactionStmtKind::TRANS_STMT_COMMIT_PREPARED
    };
    // SAFETY: the next hook in the chain, or Postgres itself, with the same arguments; this
    // frame holds only plain values across the call (see above).
    unsafe {
        let next = PREV_PROCESS_UTILITY.unwrap_or(standard_process_utility);
        next(
            pstmt,
            query_string,
            read_only_tree,
            context,
            params,
            query_env,
            dest,
            qc,
        );
    }
    if commit_prepared {
        COMMITTED_PREPARED.set(true);
    }
}

/// Queues the NOTIFY in this transaction: Postgres sends it at commit.
fn notify_now() {
    // SAFETY: pg_notify with two text datums, inside a transaction (pre-commit, or the waker's
    // own).
    unsafe {
        pg_sys::OidFunctionCall2Coll(
            pg_sys::Oid::from(pg_sys::F_PG_NOTIFY),
            pg_sys::InvalidOid,
            CHANNEL.into_datum().expect("text"),
            "".into_datum().expect("text"),
        );
    }
}

/// In pre-commit: counts this transaction on its database's running waker. False when there is
/// none to count on (steward not preloaded, none running yet, no slot): the caller then notifies
/// itself, and, if the database has no waker, this starts one for the transactions after it.
fn reserve_waker() -> bool {
    let max = MAX_WAKERS.get().max(0) as usize;
    if !PRELOADED.load(Ordering::Relaxed) || max == 0 {
        return false;
    }
    // SAFETY: reads the backend's database OID, set when it connected.
    let database = unsafe { pg_sys::MyDatabaseId }.to_u32();
    // The clock is read only off the common path (a running waker to count on).
    // SAFETY: reads the clock.
    let now = || unsafe { pg_sys::GetCurrentTimestamp() };
    let claimed = {
        let mut slots = SLOTS.exclusive();
        let claim = |w: &mut Waker, at: i64| {
            *w = Waker {
                database,
                generation: w.generation.wrapping_add(1),
                claimed_at: at,
                ..Waker::default()
            };
        };
        if let Some(i) = slots.0.iter().position(|w| w.database == database) {
            let w = &mut slots.0[i];
            if w.pid != 0 && !w.closing {
                w.holders += 1;
                HELD.set(Some((i, w.generation)));
                return true;
            }
            // Starting or stopping. A start that never connected is given up after a while.
            let at = now();
            if w.pid != 0 || at - w.claimed_at < STALE_START_US {
                return false;
            }
            claim(w, at);
            (i, w.generation)
        } else {
            if slots.0.iter().filter(|w| w.database != 0).count() >= max {
                return false;
            }
            let Some(i) = slots.0.iter().position(|w| w.database == 0) else {
                return false;
            };
            claim(&mut slots.0[i], now());
            (i, slots.0[i].generation)
        }
    };
    // Started without waiting for it: this transaction notifies itself.
    let (index, generation) = claimed;
    let registered = BackgroundWorkerBuilder::new("steward waker")
        .set_type("steward waker")
        .set_library("steward")
        .set_function("steward_waker_main")
        .enable_spi_access()
        .set_argument((index as i32).into_datum())
        .load_dynamic()
        .is_ok();
    if !registered {
        free_if_mine(index, generation);
    }
    false
}

/// At the end of a transaction that counted on a waker: after a commit, marks its database
/// pending and wakes the waker. Takes a lock and sets a latch; nothing here can fail.
fn release((index, generation): (usize, u64), committed: bool) {
    let latch = {
        let mut slots = SLOTS.exclusive();
        let w = &mut slots.0[index];
        if w.generation != generation {
            // The waker died after this transaction reserved it (see `waker_exited`).
            return;
        }
        w.holders -= 1;
        // Only the commit that makes the database pending wakes the waker: it reads the mark
        // after every wake, so later commits before that are seen with this one.
        let wake = committed && !w.pending;
        w.pending |= committed;
        if wake {
            w.latch
        } else {
            0
        }
    };
    if latch != 0 {
        // SAFETY: a waker's process latch, read from its slot under the lock: it lives in the
        // waker's PGPROC, in shared memory for the server's lifetime, so setting it after the
        // waker has exited wakes at worst the process that took that PGPROC, spuriously.
        unsafe { pg_sys::SetLatch(latch as *mut pg_sys::Latch) };
    }
}

/// The waker of one database (its slot is the argument): sends `NOTIFY steward_outbox` once for
/// all commits marked since the last, until it has had nothing to send for `IDLE_EXIT`, or is
/// asked to stop (then it first serves the transactions already counting on it).
#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn steward_waker_main(arg: pg_sys::Datum) {
    let index = arg.value();
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let (database, generation) = {
        let slots = SLOTS.share();
        (slots.0[index].database, slots.0[index].generation)
    };
    if database == 0 {
        return;
    }
    MINE.set(Some((index, generation)));
    // SAFETY: registers a static callback for this process's exit.
    unsafe {
        pg_sys::before_shmem_exit(Some(waker_exited), pg_sys::Datum::from(0));
        // Connects even to a database that does not allow connections now: its writers still
        // count on a wake-up.
        pg_sys::BackgroundWorkerInitializeConnectionByOid(
            pg_sys::Oid::from(database),
            pg_sys::InvalidOid,
            pg_sys::BGWORKER_BYPASS_ALLOWCONN,
        );
    }
    {
        let mut slots = SLOTS.exclusive();
        let w = &mut slots.0[index];
        if w.generation != generation {
            return; // given up on while starting; the slot is someone else's now
        }
        // SAFETY: reads this process's id.
        w.pid = unsafe { pg_sys::MyProcPid };
        // SAFETY: this process's latch, in shared memory; the slot is cleared before the process
        // exits.
        w.latch = unsafe { pg_sys::MyLatch } as usize;
    }
    let mut last = Instant::now();
    let mut stopping: Option<Instant> = None;
    loop {
        if stopping.is_none() && BackgroundWorker::sigterm_received() {
            stopping = Some(Instant::now());
        }
        let send = {
            let mut slots = SLOTS.exclusive();
            let w = &mut slots.0[index];
            w.closing |= stopping.is_some();
            let drained =
                w.holders == 0 || stopping.is_some_and(|since| since.elapsed() >= IDLE_EXIT);
            if w.pending {
                w.pending = false;
                true
            } else if drained && (stopping.is_some() || last.elapsed() >= IDLE_EXIT) {
                // Free the slot under the lock: a transaction that finds it free starts anew.
                *w = Waker::freed(generation);
                return;
            } else {
                false
            }
        };
        if send {
            BackgroundWorker::transaction(notify_now);
            last = Instant::now();
            // SAFETY: sleeps; a signal interrupts it.
            unsafe { pg_sys::pg_usleep(REST.as_micros() as std::ffi::c_long) };
        } else if stopping.is_some() {
            // Transactions between pre-commit and commit: they finish in moments.
            // SAFETY: sleeps; a signal interrupts it.
            unsafe { pg_sys::pg_usleep(1000) };
        } else if !BackgroundWorker::wait_latch(Some(IDLE_EXIT)) {
            stopping = Some(Instant::now());
        }
    }
}

thread_local! {
    /// In a waker: its slot and generation.
    static MINE: Cell<Option<(usize, u64)>> = const { Cell::new(None) };
}

/// A waker's last act, however it exits: frees its slot if it still holds it. A commit marked
/// after the waker's last NOTIFY and before this is woken by the next commit (the waker is
/// started again) or by the consumer's scheduled poll.
///
/// # Safety
///
/// Called by Postgres only, as an on_shmem_exit callback of the waker's process.
#[pg_guard]
unsafe extern "C-unwind" fn waker_exited(_code: i32, _arg: pg_sys::Datum) {
    if let Some((index, generation)) = MINE.take() {
        free_if_mine(index, generation);
    }
}

/// Frees slot `index` if it is still the claim of `generation`.
fn free_if_mine(index: usize, generation: u64) {
    let mut slots = SLOTS.exclusive();
    let w = &mut slots.0[index];
    if w.generation == generation {
        *w = Waker::freed(generation);
    }
}
