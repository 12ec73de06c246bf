//! The change log and its audit face: one append-only record per change to a governed table.
//!
//! `steward.govern()` attaches one AFTER ROW trigger to each audited or evented table. For every
//! changed row it forms the record (the rows as jsonb, the key, the changed columns, the actor
//! and annotations of the transaction) and inserts it with its index entries, in the same
//! transaction, without SQL or the executor.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::CStr;

use pgrx::prelude::*;
use pgrx::{pg_sys, AllocatedByPostgres, IntoDatum, Uuid};

use crate::errors::{or_raise, StewardError};
use crate::tenancy;

thread_local! {
    /// True only while `steward.erase` rewrites records.
    static ERASING: Cell<bool> = const { Cell::new(false) };
    /// True only while `steward.prune_outbox` removes records it has tombstoned.
    static PRUNING: Cell<bool> = const { Cell::new(false) };
    /// True only while `steward.seal_audit` seals.
    static SEALING: Cell<bool> = const { Cell::new(false) };
}

/// A new UUIDv7: a millisecond timestamp, then random bits; sorts by creation time.
#[pg_extern(volatile, parallel_safe)]
fn _internal_uuid_v7() -> pgrx::Uuid {
    pgrx::Uuid::from_bytes(*uuid::Uuid::now_v7().as_bytes())
}

/// Which of steward's own writes may change one of its append-only tables, by operation. A
/// write no flag allows is refused for everyone, superusers included; the triggers fire in
/// every `session_replication_role` (ENABLE ALWAYS).
fn allowed(table: &str, op: &PgTriggerOperation) -> bool {
    use PgTriggerOperation::*;
    match (table, op) {
        // Records are written by steward's writer, which fires no trigger: an INSERT through
        // SQL is always a forgery.
        ("change_log", Update) => ERASING.get(),
        ("change_log", Delete) => PRUNING.get(),
        ("audit_seals", Insert) => SEALING.get(),
        ("audit_seals", Update) => ERASING.get(),
        ("seal_state", Insert | Update) => SEALING.get(),
        ("outbox_tombstones", Insert) => PRUNING.get(),
        ("xid_base", Insert | Update) => crate::xids::REBASING.get(),
        // Written by a restore's COPY of the log (note_alias) and when steward first writes
        // after it (xids.rs), nothing else: an alias decides whose history a record is.
        ("rel_aliases", Insert | Update) => crate::xids::REBASING.get(),
        _ => false,
    }
}

/// One COPY: the table, the transaction's and the statement's start, and the statement's plan
/// (each statement of a multi-statement string has its own).
type CopyKey = (pg_sys::Oid, i64, i64, usize);

/// The COPY that was let through, and the record tables (OID, name) it has seen.
type Restore = (CopyKey, std::collections::HashSet<(u32, String)>);

thread_local! {
    static RESTORING: RefCell<Option<Restore>> = const { RefCell::new(None) };
}

/// A superuser's COPY into one of steward's append-only tables that was empty when the COPY
/// began: what pg_restore does with a dump's rows (the tables are the extension's configuration
/// data). Nothing that exists is changed by it; a log loaded this way is checked against the
/// heads kept outside (`verify_audit(heads => ...)`), as any restored dump should be.
fn restoring(trigger: &PgTrigger<'_>, relid: pg_sys::Oid) -> bool {
    // SAFETY: reads the current user's flag, the active portal's command tag and the
    // transaction's clocks; the portal pointer is checked before it is read.
    let key = unsafe {
        if !pg_sys::superuser() {
            return false;
        }
        let portal = pg_sys::ActivePortal;
        if portal.is_null() || (*portal).commandTag != pg_sys::CommandTag::CMDTAG_COPY {
            return false;
        }
        (
            relid,
            pg_sys::GetCurrentTransactionStartTimestamp(),
            pg_sys::GetCurrentStatementStartTimestamp(),
            (*portal).stmts as usize,
        )
    };
    if RESTORING.with_borrow(|r| r.as_ref().is_some_and(|(k, _)| *k == key)) {
        note_alias(trigger);
        return true;
    }
    // Only the tables a dump carries (rel_aliases is rebuilt by the restore itself, xid_base by
    // steward's first write after it).
    if !matches!(
        trigger.table_name().unwrap_or_default().as_str(),
        "change_log" | "audit_seals" | "seal_state" | "outbox_tombstones"
    ) {
        return false;
    }
    // Only before steward has written anything in this database: once it has (xids.rs sets
    // the database's transaction-id base at its first write), no table of steward's is loaded
    // from outside again, however empty it is.
    if crate::xids::adopted_here() {
        return false;
    }
    let table = pgrx::spi::quote_qualified_identifier(
        trigger.table_schema().unwrap_or_default(),
        trigger.table_name().unwrap_or_default(),
    );
    // Read-only: a read-write query would advance the command counter, and the COPY's next row
    // would no longer share the key (nor see the table empty).
    let query = format!("SELECT NOT EXISTS (SELECT 1 FROM {table})");
    let empty = Spi::connect(|client| client.select(&query, None, &[])?.first().get_one::<bool>())
        .ok()
        .flatten()
        .unwrap_or(false);
    if empty {
        RESTORING.with_borrow_mut(|r| *r = Some((key, Default::default())));
        note_alias(trigger);
    }
    empty
}

/// A restored record names its table by the OID it had where it was written: the first time a
/// COPY meets an (OID, name) pair, the table of that name here becomes the OID's alias
/// (`steward.rel_aliases`), the later name winning for an OID written under two names.
fn note_alias(trigger: &PgTrigger<'_>) {
    if trigger.table_name().unwrap_or_default() != "change_log" {
        return;
    }
    let Some(row) = trigger.new() else { return };
    let rel = row.get_by_name::<pg_sys::Oid>("rel").ok().flatten();
    let name = row.get_by_name::<String>("table_name").ok().flatten();
    let (Some(rel), Some(name)) = (rel, name) else {
        return;
    };
    let pair = (u32::from(rel), name);
    let fresh = RESTORING.with_borrow_mut(|r| match r {
        Some((_, seen)) => seen.insert(pair.clone()),
        None => false,
    });
    if !fresh {
        return;
    }
    let noted = with_cell(&crate::xids::REBASING, true, || {
        Spi::run_with_args(
            "INSERT INTO steward.rel_aliases (old_rel, rel)
         SELECT $1, pg_catalog.to_regclass($2)::oid
          WHERE pg_catalog.to_regclass($2) IS NOT NULL AND pg_catalog.to_regclass($2)::oid <> $1
         ON CONFLICT (old_rel) DO UPDATE SET rel = excluded.rel, before_txid = NULL",
            &[rel.into(), pair.1.clone().into()],
        )
    });
    if let Err(e) = noted {
        pgrx::warning!(
            "steward: restored records of {} (OID {}) keep their OID: {e}",
            pair.1,
            pair.0
        );
    }
}

fn log_guard<'a>(
    trigger: &'a PgTrigger<'a>,
) -> crate::errors::Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>> {
    let table_name = trigger.table_name().unwrap_or_default();
    let op = trigger.op().ok();
    if let Some(op) = &op {
        // steward's own writes first: a restore's own bookkeeping (note_alias) is one of them,
        // and must not be taken for another COPY.
        if allowed(&table_name, op)
            || (matches!(op, PgTriggerOperation::Insert)
                && trigger
                    .relation()
                    .is_ok_and(|r| restoring(trigger, r.oid())))
        {
            return Ok(match op {
                PgTriggerOperation::Delete => trigger.old(),
                _ => trigger.new(),
            });
        }
    }
    let verb = match op {
        Some(PgTriggerOperation::Insert) => "INSERT",
        Some(PgTriggerOperation::Update) => "UPDATE",
        Some(PgTriggerOperation::Delete) => "DELETE",
        Some(PgTriggerOperation::Truncate) => "TRUNCATE",
        _ => "change",
    };
    let table = pgrx::spi::quote_qualified_identifier(
        trigger.table_schema().unwrap_or_default(),
        table_name,
    );
    Err(StewardError::forbidden(
        format!("{table} is append-only: {verb} through SQL is forbidden"),
        "Audit records, seals and the sealing state are written only by steward (the change \
         log's writer, seal_audit, erase, prune_outbox); steward.erase(rel, row_key, reason) \
         removes personal payload and keeps the record.",
    ))
}

/// BEFORE INSERT, UPDATE OR DELETE (each row) and BEFORE TRUNCATE on steward's append-only
/// tables (the change log, the seals, the sealing state, the tombstones): nobody, owner and
/// superuser included, writes them with plain SQL, under any session_replication_role.
#[pg_trigger]
fn _internal_log_guard<'a>(
    trigger: &'a PgTrigger<'a>,
) -> std::result::Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, StewardError> {
    Ok(or_raise(log_guard(trigger)))
}

/// Runs `f` with `cell` set to `value`, and puts back what it held when `f` returns or fails:
/// the append-only guard's flags (steward's own rewrites for `steward.erase`,
/// `steward.prune_outbox`, `steward.seal_audit`) and the governed table steward writes to
/// (`govern`).
pub(crate) fn with_cell<T: Copy + 'static, R>(
    cell: &'static std::thread::LocalKey<Cell<T>>,
    value: T,
    f: impl FnOnce() -> R,
) -> R {
    struct Reset<T: Copy + 'static>(&'static std::thread::LocalKey<Cell<T>>, T);
    impl<T: Copy + 'static> Drop for Reset<T> {
        fn drop(&mut self) {
            self.0.set(self.1);
        }
    }
    let _reset = Reset(cell, cell.replace(value));
    f()
}

/// `steward.seal_audit()`: seals what is final (the SQL in `steward._seal_audit`, run as the
/// extension's owner with the seals' guard open for it).
fn seal() -> crate::errors::Result<i64> {
    crate::errors::keeping_codes(|| {
        Ok(tenancy::as_extension_owner(|| {
            with_cell(&SEALING, true, || {
                Spi::connect_mut(|c| {
                    c.update("SELECT steward._seal_audit()", Some(1), &[])?
                        .first()
                        .get_one::<i64>()
                })
                .unwrap_or_else(|e| crate::errors::bug(format!("steward: sealing failed: {e}")))
                .unwrap_or(0)
            })
        }))
    })
}

/// Seals every committed record that is not sealed yet into its tenant's hash chain; returns
/// how many it sealed.
#[pg_extern(volatile, parallel_unsafe)]
fn seal_audit() -> i64 {
    or_raise(seal())
}

/// The witness event of a seal: the tenant's new head, in the shape audit_heads() returns, so a
/// consumer can pass the heads it kept to verify_audit(heads => ...). Only while sealing.
fn witness(tenant: Uuid, sealed_through: i64, head: &[u8]) -> crate::errors::Result<()> {
    if !SEALING.get() {
        return Err(StewardError::forbidden(
            "steward._internal_witness is steward.seal_audit's own",
            "Run steward.seal_audit(): it emits the witness of every chain it advances.",
        ));
    }
    let hex: String = head.iter().map(|b| format!("{b:02x}")).collect();
    let payload = serde_json::json!({
        "tenant_id": tenant.to_string(), "sealed_through": sealed_through, "head": hex,
    });
    let mut record = Record::bare(
        tenant,
        // SAFETY: reads the session user id, set when the backend started.
        &tenancy::role_name(unsafe { pg_sys::GetSessionUserId() }),
    );
    record.set(Col::Action, text(Some("EVENT")));
    record.set(Col::NewRow, pgrx::JsonB(payload).into_datum());
    record.set(Col::EventType, text(Some("steward.audit.sealed")));
    record.set(Col::Audited, false.into_datum());
    record.set(Col::Evented, true.into_datum());
    record.set(Col::AggregateType, text(Some("steward.audit")));
    record.set(Col::AggregateId, text(Some(&tenant.to_string())));
    record.set(Col::SchemaVersion, 1i32.into_datum());
    record.insert()?;
    Ok(())
}

#[pg_extern(volatile, parallel_unsafe, strict)]
fn _internal_witness(tenant: Uuid, sealed_through: i64, head: &[u8]) {
    or_raise(witness(tenant, sealed_through, head))
}

/// Removes records only the outbox face needed: events not shown by the audit face, sealed,
/// older than `retention`, and acked by every consumer that can read them. Each leaves a
/// tombstone with its record digest, so the chain still verifies.
fn prune(retention: pgrx::datum::Interval) -> crate::errors::Result<i64> {
    crate::errors::keeping_codes(|| prune_now(retention))
}

fn prune_now(retention: pgrx::datum::Interval) -> crate::errors::Result<i64> {
    tenancy::as_extension_owner(|| {
        with_cell(&PRUNING, true, || {
            Spi::connect_mut(|client| {
                let pruned = client.update(
                    "WITH doomed AS (
                         SELECT c.id, c.tenant_id, c.txid, steward._record_digest(c, s.payload_digest) AS digest
                           FROM steward.change_log c
                           JOIN steward.audit_seals s ON s.record_id = c.id
                          WHERE c.evented AND NOT c.audited AND s.prunable
                            AND c.occurred_at < pg_catalog.now() - $1
                            AND NOT EXISTS (
                                SELECT 1 FROM steward.consumers k
                                 WHERE (k.tenant_id IS NULL OR k.tenant_id = c.tenant_id)
                                   AND NOT pg_catalog.pg_visible_in_snapshot(
                                           c.txid, (steward._consumer_position(k)).done))
                     ), tombstoned AS (
                         INSERT INTO steward.outbox_tombstones (record_id, tenant_id, record_digest)
                         SELECT id, tenant_id, digest FROM doomed
                         RETURNING record_id
                     )
                     DELETE FROM steward.change_log c USING doomed d
                      WHERE c.tenant_id = d.tenant_id AND c.txid = d.txid AND c.id = d.id
                        AND d.id IN (SELECT t.record_id FROM tombstoned t)
                     RETURNING c.id",
                    None,
                    &[retention.into()],
                )?;
                Ok::<_, pgrx::spi::Error>(pruned.len() as i64)
            })
        })
    })
    .map_err(|e| {
        StewardError::bad_argument(
            format!("steward.prune_outbox failed: {e}"),
            "Check the retention interval.",
        )
    })
}

/// `steward.prune_outbox(retention)`: see [`prune`]. Returns how many records it removed.
#[pg_extern(volatile, parallel_unsafe)]
fn _internal_prune_outbox(retention: Option<pgrx::datum::Interval>) -> i64 {
    or_raise(
        crate::errors::required(retention, "steward.prune_outbox", "retention").and_then(prune),
    )
}

fn erase(rel: pg_sys::Oid, row_key: pgrx::JsonB, reason: &str) -> crate::errors::Result<i64> {
    if reason.trim().is_empty() {
        return Err(StewardError::bad_argument(
            "steward.erase needs a reason",
            "Say why, e.g. steward.erase('app.customers', '{\"id\": 7}', 'GDPR request 2026-113').",
        ));
    }
    // Only the caller's tenant's records: a key that is not unique across tenants (a primary
    // key without the tenant column) names one row in each tenant.
    let context = tenancy::context()?;
    let key = row_key.0.clone();
    let erased = crate::errors::keeping_codes(|| {
        Ok(tenancy::as_extension_owner(|| {
            with_cell(&ERASING, true, || {
                Spi::connect_mut(|client| {
                    // The payload goes, and with it the salt of its sealed digest.
                    let erased = client.update(
                        "WITH erased AS (
                         UPDATE steward.change_log
                            SET old_values = NULL, new_row = NULL, erased_at = pg_catalog.now()
                          WHERE (tenant_id, txid, id) IN
                                (SELECT r.tenant_id, r.txid, r.id FROM steward._row_records($1, $2, $3) r)
                            AND erased_at IS NULL AND action <> 'ERASE'
                      RETURNING id, tenant_id, table_name
                     ), unsalted AS (
                         UPDATE steward.audit_seals s SET payload_salt = NULL
                           FROM erased e WHERE s.record_id = e.id
                     )
                     SELECT tenant_id, table_name FROM erased",
                        None,
                        &[
                            rel.into(),
                            pgrx::JsonB(key.clone()).into(),
                            context.tenant.into(),
                        ],
                    )?;
                    let count = erased.len() as i64;
                    let first = match erased.into_iter().next() {
                        Some(row) => Some((row.get::<pgrx::Uuid>(1)?, row.get::<String>(2)?)),
                        None => None,
                    };
                    Ok::<_, pgrx::spi::Error>((count, first))
                })
            })
        }))
    })?
    .map_err(|e| {
        StewardError::bad_argument(
            format!("steward.erase failed: {e}"),
            "Check the table and key.",
        )
    })?;
    let (count, first) = erased;
    // The erasure itself is on record: who, why, which row (its key), no payload.
    if let Some((Some(tenant), table)) = first {
        let mut record = Record::bare(tenant, &context.actor);
        record.set(Col::Reason, text(Some(reason)));
        record.set(Col::Rel, Some(pg_sys::Datum::from(rel)));
        record.set(Col::TableName, text(table.as_deref()));
        let key_datum = pgrx::JsonB(key).into_datum().expect("jsonb");
        // SAFETY: key_datum is the jsonb datum built on the line above.
        let hash = row_hash(rel, unsafe { jsonb_text(key_datum) }.as_bytes());
        record.set(Col::RowKey, Some(key_datum));
        record.set(Col::RowHash, Some(pg_sys::Datum::from(hash)));
        record.set(Col::Action, text(Some("ERASE")));
        record.set(Col::Audited, true.into_datum());
        record.set(Col::Evented, false.into_datum());
        record.insert()?;
    }
    Ok(count)
}

/// Removes the personal payload (old and new row) of a row's records and records the erasure
/// (who and why). The records, their keys and the seal chain stay; `verify_audit` stays ok.
#[pg_extern(volatile, parallel_unsafe)]
fn _internal_erase(
    rel: Option<pg_sys::Oid>,
    row_key: Option<pgrx::JsonB>,
    reason: Option<&str>,
) -> i64 {
    use crate::errors::required;
    or_raise((|| {
        erase(
            required(rel, "steward.erase", "rel")?,
            required(row_key, "steward.erase", "row_key")?,
            required(reason, "steward.erase", "reason")?,
        )
    })())
}

// ---------------------------------------------------------------------------------------------
// Writing records: one AFTER ROW trigger per governed table forms the change-log tuple and
// inserts it with its index entries. No SQL, no executor: the profile in docs/benchmarks.md
// showed that running a statement per statement cost more than the records themselves.
// ---------------------------------------------------------------------------------------------

/// What the log trigger of one table needs, built on its first row in this backend.
struct TableLog {
    /// `to_jsonb` for the table's row type: an FmgrInfo whose `fn_expr` names the argument type
    /// (to_jsonb is polymorphic and asks for it), kept in TopMemoryContext.
    to_jsonb: *mut pg_sys::FmgrInfo,
}

thread_local! {
    static TABLE_LOGS: RefCell<HashMap<pg_sys::Oid, TableLog>> = RefCell::new(HashMap::new());
    /// Each governed table's qualified name as it is now, by OID (dropped when the table's
    /// relcache entry is invalidated, which a rename does).
    static TABLE_NAMES: RefCell<HashMap<pg_sys::Oid, String>> = RefCell::new(HashMap::new());
}

/// Registers what keeps the names right when a schema is renamed (that invalidates no table's
/// relcache entry). Called from `_PG_init`.
pub fn init() {
    // SAFETY: registered once per backend, from _PG_init.
    unsafe {
        pg_sys::CacheRegisterSyscacheCallback(
            pg_sys::SysCacheIdentifier::NAMESPACEOID as i32,
            Some(on_namespace_invalidation),
            pg_sys::Datum::from(0),
        );
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_namespace_invalidation(
    _arg: pg_sys::Datum,
    _cache: i32,
    _hash: u32,
) {
    TABLE_NAMES.with_borrow_mut(HashMap::clear);
}

/// The table's qualified name now.
fn name_now(trigger: &PgTrigger<'_>, relid: pg_sys::Oid) -> String {
    if let Some(name) = TABLE_NAMES.with_borrow(|m| m.get(&relid).cloned()) {
        return name;
    }
    let name = pgrx::spi::quote_qualified_identifier(
        trigger.table_schema().unwrap_or_default(),
        trigger.table_name().unwrap_or_default(),
    );
    TABLE_NAMES.with_borrow_mut(|m| m.insert(relid, name.clone()));
    name
}

unsafe fn to_jsonb_for(rowtype: pg_sys::Oid) -> *mut pg_sys::FmgrInfo {
    // SAFETY: the FmgrInfo and its call expression are allocated with TopMemoryContext current
    // (restored before returning), so they live as long as the backend's cache that keeps them;
    // fmgr_info fills it for a built-in function (to_jsonb).
    unsafe {
        let old = pg_sys::MemoryContextSwitchTo(pg_sys::TopMemoryContext);
        let finfo =
            pg_sys::palloc0(std::mem::size_of::<pg_sys::FmgrInfo>()).cast::<pg_sys::FmgrInfo>();
        let func = pg_sys::Oid::from(pg_sys::F_TO_JSONB);
        pg_sys::fmgr_info(func, finfo);
        let arg = pg_sys::makeNullConst(rowtype, -1, pg_sys::InvalidOid);
        let args = pg_sys::lappend(std::ptr::null_mut(), arg.cast());
        let call = pg_sys::makeFuncExpr(
            func,
            pg_sys::JSONBOID,
            args,
            pg_sys::InvalidOid,
            pg_sys::InvalidOid,
            pg_sys::CoercionForm::COERCE_EXPLICIT_CALL,
        );
        (*finfo).fn_expr = call.cast();
        pg_sys::MemoryContextSwitchTo(old);
        finfo
    }
}

/// The row as jsonb, exactly as `to_jsonb(row)` in SQL.
unsafe fn row_jsonb(
    finfo: *mut pg_sys::FmgrInfo,
    tuple: *mut pg_sys::HeapTupleData,
    tupdesc: pg_sys::TupleDesc,
) -> pg_sys::Datum {
    // SAFETY: the caller passes a valid tuple with its descriptor and the FmgrInfo from
    // to_jsonb_for.
    unsafe {
        let row = pg_sys::heap_copy_tuple_as_datum(tuple, tupdesc);
        pg_sys::FunctionCall1Coll(finfo, pg_sys::InvalidOid, row)
    }
}

/// `row` (a row as jsonb) without the keys `drop`: `row - drop`.
unsafe fn without_keys(row: pg_sys::Datum, drop: Vec<String>) -> pg_sys::Datum {
    if drop.is_empty() {
        return row;
    }
    let drop = drop.into_datum().expect("a text[]");
    // SAFETY: row is a jsonb datum and drop a text[] datum: what jsonb - text[] takes.
    unsafe {
        pg_sys::OidFunctionCall2Coll(
            pg_sys::Oid::from(pg_sys::F_JSONB_DELETE_JSONB__TEXT),
            pg_sys::InvalidOid,
            row,
            drop,
        )
    }
}

unsafe fn jsonb_from_text(text: &str) -> pg_sys::Datum {
    // SAFETY: jsonb_in takes a NUL-terminated C string, which the CString is.
    unsafe {
        let c = std::ffi::CString::new(text).unwrap_or_default();
        pg_sys::OidFunctionCall1Coll(
            pg_sys::Oid::from(pg_sys::F_JSONB_IN),
            pg_sys::InvalidOid,
            pg_sys::Datum::from(c.as_ptr()),
        )
    }
}

/// FNV-1a over the table's OID and the key's canonical text (`jsonb_out`): the same value for
/// the same key, however it was written. Used only to find a row's records; the key itself is
/// compared after.
pub fn row_hash(rel: pg_sys::Oid, canonical_key: &[u8]) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in rel.to_u32().to_le_bytes().iter().chain(canonical_key) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h as i64
}

pub(crate) unsafe fn jsonb_text(value: pg_sys::Datum) -> String {
    // SAFETY: the caller passes a jsonb datum; jsonb_out returns a palloc'd C string, copied out
    // here.
    unsafe {
        let text = pg_sys::OidFunctionCall1Coll(
            pg_sys::Oid::from(pg_sys::F_JSONB_OUT),
            pg_sys::InvalidOid,
            value,
        );
        CStr::from_ptr(text.cast_mut_ptr::<std::ffi::c_char>())
            .to_string_lossy()
            .into_owned()
    }
}

/// A JSON value as Postgres prints jsonb (`{"id": 1}`), for messages.
pub fn jsonb_display(value: serde_json::Value) -> String {
    match pgrx::JsonB(value).into_datum() {
        // SAFETY: a jsonb datum just formed.
        Some(datum) => unsafe { jsonb_text(datum) },
        None => "NULL".into(),
    }
}

/// The row hash of a key given as jsonb, for SQL (history, row_as_of, erase).
#[pg_extern(immutable, parallel_safe, strict)]
fn _internal_row_hash(rel: pg_sys::Oid, row_key: crate::outbox::RawJsonb) -> i64 {
    // SAFETY: a detoasted jsonb datum; jsonb_out is Postgres' own, for any nesting.
    row_hash(rel, unsafe { jsonb_text(row_key.datum()) }.as_bytes())
}

/// `{"id": 42}`: the key's columns taken from the row's jsonb; with its row hash.
unsafe fn key_jsonb(rel: pg_sys::Oid, row: pg_sys::Datum, pk: &[&str]) -> (pg_sys::Datum, i64) {
    // SAFETY: row is the row's jsonb datum; every datum built here is a jsonb or text datum of
    // this memory context.
    unsafe {
        let mut parts = Vec::with_capacity(pk.len());
        for column in pk {
            let name = column.into_datum().expect("text");
            let value = pg_sys::OidFunctionCall2Coll(
                pg_sys::Oid::from(pg_sys::F_JSONB_OBJECT_FIELD),
                pg_sys::InvalidOid,
                row,
                name,
            );
            parts.push(format!(
                "{}: {}",
                serde_json::Value::from(*column),
                jsonb_text(value)
            ));
        }
        let key = jsonb_from_text(&format!("{{{}}}", parts.join(", ")));
        (key, row_hash(rel, jsonb_text(key).as_bytes()))
    }
}

/// The names of the columns whose bytes differ between two versions of a row, and of those
/// that are the same.
pub(crate) unsafe fn compare_columns(
    old: *mut pg_sys::HeapTupleData,
    new: *mut pg_sys::HeapTupleData,
    tupdesc: pg_sys::TupleDesc,
) -> (Vec<String>, Vec<String>) {
    // SAFETY: old and new are valid tuples of the relation described by tupdesc (the trigger's),
    // and attribute numbers stay below natts.
    unsafe {
        let (mut changed, mut same_cols) = (Vec::new(), Vec::new());
        let natts = (*tupdesc).natts as usize;
        for i in 0..natts {
            let attr = &*(*tupdesc).attrs.as_ptr().add(i);
            if attr.attisdropped {
                continue;
            }
            let (mut onull, mut nnull) = (false, false);
            let ov = pg_sys::heap_getattr(old, (i + 1) as i32, tupdesc, &mut onull);
            let nv = pg_sys::heap_getattr(new, (i + 1) as i32, tupdesc, &mut nnull);
            let same = match (onull, nnull) {
                (true, true) => true,
                (false, false) if attr.attbyval => ov == nv,
                (false, false) if attr.attlen > 0 => {
                    let n = attr.attlen as usize;
                    std::slice::from_raw_parts(ov.cast_mut_ptr::<u8>(), n)
                        == std::slice::from_raw_parts(nv.cast_mut_ptr::<u8>(), n)
                }
                (false, false) if attr.attlen == -1 => {
                    let (op, np) = (
                        ov.cast_mut_ptr::<pg_sys::varlena>(),
                        nv.cast_mut_ptr::<pg_sys::varlena>(),
                    );
                    let (ol, nl) = (
                        pgrx::varlena::varsize_any(op),
                        pgrx::varlena::varsize_any(np),
                    );
                    ol == nl
                        && std::slice::from_raw_parts(op.cast::<u8>(), ol)
                            == std::slice::from_raw_parts(np.cast::<u8>(), nl)
                }
                (false, false) => {
                    CStr::from_ptr(ov.cast_mut_ptr()) == CStr::from_ptr(nv.cast_mut_ptr())
                }
                _ => false,
            };
            let name = CStr::from_ptr(attr.attname.data.as_ptr())
                .to_string_lossy()
                .into_owned();
            if same { &mut same_cols } else { &mut changed }.push(name);
        }
        (changed, same_cols)
    }
}

/// The change log's columns that a record sets.
#[derive(Clone, Copy)]
pub enum Col {
    Id,
    TenantId,
    Txid,
    OccurredAt,
    Actor,
    Reason,
    RequestId,
    Traceparent,
    Rel,
    TableName,
    RowKey,
    RowHash,
    Action,
    OldValues,
    NewRow,
    Changed,
    EventId,
    EventType,
    Audited,
    Evented,
    AggregateType,
    AggregateId,
    SchemaVersion,
    Headers,
}

impl Col {
    const COUNT: usize = Col::Headers as usize + 1;
}

/// The change log's columns, in the order of `Col`, with the type steward writes into each.
const COLUMNS: [(&str, pg_sys::Oid); Col::COUNT] = [
    ("id", pg_sys::INT8OID),
    ("tenant_id", pg_sys::UUIDOID),
    ("txid", pg_sys::XID8OID),
    ("occurred_at", pg_sys::TIMESTAMPTZOID),
    ("actor", pg_sys::TEXTOID),
    ("reason", pg_sys::TEXTOID),
    ("request_id", pg_sys::TEXTOID),
    ("traceparent", pg_sys::TEXTOID),
    ("rel", pg_sys::OIDOID),
    ("table_name", pg_sys::TEXTOID),
    ("row_key", pg_sys::JSONBOID),
    ("row_hash", pg_sys::INT8OID),
    ("action", pg_sys::TEXTOID),
    ("old_values", pg_sys::JSONBOID),
    ("new_row", pg_sys::JSONBOID),
    ("changed", pg_sys::JSONBOID),
    ("event_id", pg_sys::UUIDOID),
    ("event_type", pg_sys::TEXTOID),
    ("audited", pg_sys::BOOLOID),
    ("evented", pg_sys::BOOLOID),
    ("aggregate_type", pg_sys::TEXTOID),
    ("aggregate_id", pg_sys::TEXTOID),
    ("schema_version", pg_sys::INT4OID),
    ("headers", pg_sys::JSONBOID),
];

/// Where each column sits in `steward.change_log`, and the sequence behind its id: looked up
/// per backend, checked, and looked up again whenever the log's relcache entry is invalidated
/// (any ALTER TABLE, index, trigger or constraint change on it).
#[derive(Clone, Copy)]
struct LogLayout {
    attnums: [usize; Col::COUNT],
    id_sequence: pg_sys::Oid,
    /// The log has CHECK constraints beyond steward's own (on `action`, which the writer
    /// always satisfies): they are checked for every record.
    foreign_checks: bool,
    /// Every index of the log is a plain one (no expression, no predicate, no exclusion, not
    /// deferred) and there are no foreign CHECKs: the record goes in as a catalog tuple does
    /// (heap insert, then each index's entry), without an executor state per record.
    plain: bool,
}

#[derive(Default)]
struct LayoutCache {
    generation: u64,
    layout: Option<(pg_sys::Oid, LogLayout)>,
}

thread_local! {
    static LOG_LAYOUT: RefCell<LayoutCache> = RefCell::new(LayoutCache::default());
}

/// A relation's cache entry was invalidated (steward's one relcache callback, lib.rs, calls
/// this): the log's layout goes when the log changes.
pub(crate) fn relcache_invalidated(relid: pg_sys::Oid) {
    // A rename invalidates the table's entry: its name is looked up again.
    TABLE_NAMES.with_borrow_mut(|m| {
        if relid == pg_sys::InvalidOid {
            m.clear();
        } else {
            m.remove(&relid);
        }
    });
    LOG_LAYOUT.with_borrow_mut(|c| {
        if relid == pg_sys::InvalidOid || c.layout.is_some_and(|(oid, _)| oid == relid) {
            c.generation += 1;
            c.layout = None;
        }
    });
}

fn log_altered(what: String) -> StewardError {
    StewardError::bad_argument(
        format!("steward.change_log has been altered: {what}"),
        "steward writes every record itself; restore the table as CREATE EXTENSION made it \
         (a DBA drops what was added), then write again. Indexes of any kind are fine.",
    )
}

/// The log's layout, checked: every column steward writes is there with its type, no column
/// steward does not write needs a value (a default, NOT NULL, a generated expression), and no
/// trigger steward did not put there expects to see inserts (steward's writer fires none: a
/// foreign key's or a DBA's trigger would be silently skipped).
unsafe fn log_layout(log: pg_sys::Relation) -> crate::errors::Result<LogLayout> {
    // SAFETY: log is an open relation the caller holds a lock on.
    let log_oid = unsafe { (*log).rd_id };
    let (known, generation) = LOG_LAYOUT.with_borrow(|c| (c.layout, c.generation));
    if let Some((oid, layout)) = known {
        if oid == log_oid {
            return Ok(layout);
        }
    }
    // SAFETY: log is an open, locked relation: its rd_rel, rd_att, rd_rules and trigdesc are
    // valid for as long as the caller keeps it open, and indexes stay below the counts they come
    // with.
    unsafe {
        let form = &*(*log).rd_rel;
        if form.relkind as u8 != pg_sys::RELKIND_RELATION || form.relispartition {
            return Err(log_altered(
                "it is no longer a plain table (partitioned, a partition, or a foreign or \
                 other kind of table)"
                    .into(),
            ));
        }
        // The rules themselves, not relhasrules: Postgres clears that flag only at the next
        // VACUUM after the last rule is dropped.
        let rules = (*log).rd_rules;
        if form.relhasrules && !rules.is_null() && (*rules).numLocks > 0 {
            return Err(log_altered(
                "it has rules, which steward's writer does not apply".into(),
            ));
        }
        let log_desc = (*log).rd_att;
        let mut attnums = [0usize; Col::COUNT];
        for (i, (name, want)) in COLUMNS.iter().enumerate() {
            let Some((attnum, attr)) = crate::govern::column(log_desc, name) else {
                return Err(log_altered(format!("its column \"{name}\" is gone")));
            };
            if attr.atttypid != *want || attr.attgenerated != 0 {
                return Err(log_altered(format!(
                    "its column \"{name}\" is not the {} column steward writes",
                    crate::govern::type_name(*want)
                )));
            }
            attnums[i] = attnum - 1;
        }
        for i in 0..(*log_desc).natts as usize {
            let attr = &*(*log_desc).attrs.as_ptr().add(i);
            if attr.attisdropped || attnums.contains(&i) {
                continue;
            }
            // A domain may be NOT NULL or have a default of its own.
            let domain =
                pg_sys::get_typtype(attr.atttypid) == pg_sys::TYPTYPE_DOMAIN as std::ffi::c_char;
            if attr.attnotnull || attr.atthasdef || attr.attgenerated != 0 || domain {
                return Err(log_altered(format!(
                    "column \"{}\" was added with a default, NOT NULL, a domain or an \
                     expression, which steward's writer does not fill",
                    CStr::from_ptr(attr.attname.data.as_ptr()).to_string_lossy()
                )));
            }
        }
        let triggers = (*log).trigdesc;
        if !triggers.is_null() {
            for t in 0..(*triggers).numtriggers as usize {
                let trig = &*(*triggers).triggers.add(t);
                let name = CStr::from_ptr(trig.tgname).to_bytes();
                // steward's writer fires no trigger, and erase/prune/seal run as the extension's
                // owner: a trigger of anyone else's on the log is refused, whatever it fires on.
                if name != b"steward_append_only" && name != b"steward_append_only_truncate" {
                    return Err(log_altered(format!(
                        "trigger \"{}\" is not steward's, and steward's writer fires no triggers",
                        String::from_utf8_lossy(name)
                    )));
                }
            }
        }
        let constr = (*log_desc).constr;
        let foreign_checks = !constr.is_null()
            && (0..(*constr).num_check as usize).any(|i| {
                let check = &*(*constr).check.add(i);
                CStr::from_ptr(check.ccname).to_bytes() != b"change_log_action_check"
            });
        let mut plain = !foreign_checks;
        let indexes = pg_sys::RelationGetIndexList(log);
        if !indexes.is_null() {
            for i in 0..(*indexes).length as usize {
                let oid = (*(*indexes).elements.add(i)).oid_value;
                let index = pg_sys::index_open(oid, pg_sys::AccessShareLock as i32);
                let form = &*(*index).rd_index;
                let simple = pg_sys::RelationGetIndexExpressions(index).is_null()
                    && pg_sys::RelationGetIndexPredicate(index).is_null()
                    && !form.indisexclusion
                    && form.indimmediate;
                pg_sys::index_close(index, pg_sys::AccessShareLock as i32);
                plain &= simple;
            }
        }
        let id_attnum = attnums[Col::Id as usize] + 1;
        let id_sequence = pg_sys::getIdentitySequence(log_oid, id_attnum as i16, true);
        if id_sequence == pg_sys::InvalidOid {
            return Err(log_altered(
                "its column \"id\" is no longer an identity column".into(),
            ));
        }
        let layout = LogLayout {
            attnums,
            id_sequence,
            foreign_checks,
            plain,
        };
        LOG_LAYOUT.with_borrow_mut(|c| {
            if c.generation == generation {
                c.layout = Some((log_oid, layout));
            }
        });
        Ok(layout)
    }
}

/// Inserts `tuple` into `log` with its index entries, as the executor would for an INSERT: a
/// DBA's CHECK constraints are checked, and every index gets its entry, including
/// expression and partial indexes (their expressions are evaluated, their predicates decide),
/// unique and exclusion constraints. Only triggers are not fired: `log_layout` refuses a log with
/// an INSERT trigger steward did not put there.
unsafe fn insert_with_indexes(
    log: pg_sys::Relation,
    tuple: *mut pg_sys::HeapTupleData,
    layout: &LogLayout,
) {
    // SAFETY: log is the change log, opened and locked RowExclusiveLock by the caller, tuple a
    // tuple of its descriptor; the executor state, result relation and slot are created and freed
    // here.
    unsafe {
        let estate = pg_sys::CreateExecutorState();
        let rri = pg_sys::palloc0(std::mem::size_of::<pg_sys::ResultRelInfo>())
            .cast::<pg_sys::ResultRelInfo>();
        (*rri).type_ = pg_sys::NodeTag::T_ResultRelInfo;
        pg_sys::InitResultRelInfo(rri, log, 0, std::ptr::null_mut(), 0);
        pg_sys::ExecOpenIndices(rri, false);
        let slot = pg_sys::ExecInitExtraTupleSlot(estate, (*log).rd_att, &pg_sys::TTSOpsHeapTuple);
        pg_sys::ExecStoreHeapTuple(tuple, slot, false);
        // steward's own CHECK and NOT NULL constraints hold by construction (each record sets
        // every NOT NULL column, and `action` is one of steward's); a DBA's are checked.
        if layout.foreign_checks {
            pg_sys::ExecConstraints(rri, slot, estate);
        }
        pg_sys::simple_table_tuple_insert(log, slot);
        if (*rri).ri_NumIndices > 0 {
            pg_sys::ExecInsertIndexTuples(
                rri,
                slot,
                estate,
                false,
                false,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            );
        }
        pg_sys::ExecCloseIndices(rri);
        pg_sys::ExecResetTupleTable((*estate).es_tupleTable, false);
        pg_sys::FreeExecutorState(estate);
    }
}

pub fn text(v: Option<&str>) -> Option<pg_sys::Datum> {
    v.and_then(|s| s.into_datum())
}

/// A change-log record being formed: the value of each column it sets (unset ones are NULL).
pub struct Record {
    values: [Option<pg_sys::Datum>; Col::COUNT],
}

impl Record {
    /// A record of the current transaction by `actor` in `tenant`, with nothing else set.
    pub fn bare(tenant: Uuid, actor: &str) -> Record {
        let mut r = Record {
            values: [None; Col::COUNT],
        };
        r.set(Col::TenantId, tenant.into_datum());
        r.set(Col::Actor, text(Some(actor)));
        r
    }

    /// A record of the current transaction by `context`'s actor in its tenant, with the
    /// transaction's annotations.
    pub fn new(context: &tenancy::Context) -> Record {
        let notes = tenancy::annotations();
        let mut r = Record::bare(context.tenant, &context.actor);
        r.set(Col::Reason, text(notes.reason.as_deref()));
        r.set(Col::RequestId, text(notes.request_id.as_deref()));
        r.set(Col::Traceparent, text(notes.traceparent.as_deref()));
        r
    }

    pub fn set(&mut self, column: Col, value: Option<pg_sys::Datum>) {
        self.values[column as usize] = value;
    }

    /// Inserts the record with its index entries, in the current transaction: the id from the
    /// log's sequence, the transaction's id and start time, a fresh UUIDv7 event id. An evented
    /// record makes sure `NOTIFY steward_outbox` goes out at commit. Returns the event id.
    pub fn insert(mut self) -> crate::errors::Result<pgrx::Uuid> {
        let event_id = pgrx::Uuid::from_bytes(*uuid::Uuid::now_v7().as_bytes());
        let evented = self.values[Col::Evented as usize] == true.into_datum();
        // SAFETY: the log is opened and locked for the insert and closed after it; the tuple is
        // formed from datums of the types log_layout checked, in its descriptor.
        unsafe {
            let ns = pg_sys::get_namespace_oid(c"steward".as_ptr(), false);
            let log_oid = pg_sys::get_relname_relid(c"change_log".as_ptr(), ns);
            let log = pg_sys::table_open(log_oid, pg_sys::RowExclusiveLock as i32);
            let layout = match log_layout(log) {
                Ok(layout) => layout,
                Err(e) => {
                    pg_sys::table_close(log, pg_sys::NoLock as i32);
                    return Err(e);
                }
            };
            let log_desc = (*log).rd_att;
            // The record is steward's write, not the caller's: nextval checks privileges.
            let id = tenancy::as_extension_owner(|| {
                pg_sys::OidFunctionCall1Coll(
                    pg_sys::Oid::from(pg_sys::F_NEXTVAL),
                    pg_sys::InvalidOid,
                    pg_sys::Datum::from(layout.id_sequence),
                )
            });
            self.set(Col::Id, Some(id));
            // steward's transaction id: the cluster's plus the offset (xids.rs).
            let txid = match crate::xids::shifted(pg_sys::GetTopFullTransactionId().value) {
                Ok(txid) => txid,
                Err(e) => {
                    pg_sys::table_close(log, pg_sys::RowExclusiveLock as i32);
                    return Err(e);
                }
            };
            self.set(Col::Txid, Some(pg_sys::Datum::from(txid)));
            self.set(
                Col::OccurredAt,
                Some(pg_sys::Datum::from(
                    pg_sys::GetCurrentTransactionStartTimestamp(),
                )),
            );
            self.set(Col::EventId, event_id.into_datum());
            let natts = (*log_desc).natts as usize;
            let mut values = vec![pg_sys::Datum::from(0); natts];
            let mut nulls = vec![true; natts];
            for (column, value) in self.values.iter().enumerate() {
                if let Some(v) = value {
                    values[layout.attnums[column]] = *v;
                    nulls[layout.attnums[column]] = false;
                }
            }
            let tuple = pg_sys::heap_form_tuple(log_desc, values.as_mut_ptr(), nulls.as_mut_ptr());
            if layout.plain {
                // Plain btree (or other) indexes with plain columns: what CatalogTupleInsert
                // maintains correctly, at a fraction of an executor state's cost per record.
                pg_sys::CatalogTupleInsert(log, tuple);
            } else {
                insert_with_indexes(log, tuple, &layout);
            }
            pg_sys::table_close(log, pg_sys::NoLock as i32);
        }
        if evented {
            crate::wakeups::at_commit();
        }
        Ok(event_id)
    }
}

fn log_row(trigger: &PgTrigger<'_>) -> crate::errors::Result<()> {
    let data = trigger.trigger_data();
    let (old, new) = match trigger.op() {
        Ok(PgTriggerOperation::Insert) => (std::ptr::null_mut(), data.tg_trigtuple),
        Ok(PgTriggerOperation::Update) => (data.tg_trigtuple, data.tg_newtuple),
        Ok(PgTriggerOperation::Delete) => (data.tg_trigtuple, std::ptr::null_mut()),
        _ => return Ok(()),
    };
    if !old.is_null()
        && !new.is_null()
        // SAFETY: the trigger's relation is open for the duration of the trigger call.
        && crate::govern::unchanged(old, new, unsafe { (*data.tg_relation).rd_att })
    {
        return Ok(()); // an update that changed nothing writes nothing
    }
    let context = tenancy::context()?;
    let args = crate::govern::Args::of(trigger)?;
    let shape = crate::govern::shape(trigger, || crate::govern::Expect {
        version: None,
        ..args.expect(if args.soft_delete {
            crate::govern::Need::Required
        } else {
            crate::govern::Need::No
        })
    })?;
    let tgoid = trigger.trigger().tgoid;
    // SAFETY: the trigger's relation and tuples are valid for the duration of the trigger call;
    // the FmgrInfo kept per trigger lives in TopMemoryContext.
    unsafe {
        let table = data.tg_relation;
        let tupdesc = (*table).rd_att;
        let finfo = TABLE_LOGS.with_borrow_mut(|m| {
            m.entry(tgoid)
                .or_insert_with(|| TableLog {
                    to_jsonb: to_jsonb_for((*tupdesc).tdtypeid),
                })
                .to_jsonb
        });
        let mut old_json = (!old.is_null()).then(|| row_jsonb(finfo, old, tupdesc));
        let new_json = (!new.is_null()).then(|| row_jsonb(finfo, new, tupdesc));
        let any_row = new_json.or(old_json).expect("a row");
        let (row_key, key_hash) = key_jsonb((*table).rd_id, any_row, &args.key);

        let (mut action, mut suffix) = match (old.is_null(), new.is_null()) {
            (true, false) => ("INSERT", "created"),
            (false, false) => ("UPDATE", "updated"),
            _ => ("DELETE", "deleted"),
        };
        let mut changed = None;
        if action == "UPDATE" {
            let (names, unchanged) = compare_columns(old, new, tupdesc);
            if args.soft_delete && names.iter().any(|n| n == "deleted_at") {
                if let Some(attnum) = shape.deleted_at {
                    let (mut onull, mut nnull) = (false, false);
                    pg_sys::heap_getattr(old, attnum as i32, tupdesc, &mut onull);
                    pg_sys::heap_getattr(new, attnum as i32, tupdesc, &mut nnull);
                    match (onull, nnull) {
                        (true, false) => (action, suffix) = ("DELETE", "deleted"),
                        (false, true) => (action, suffix) = ("INSERT", "created"),
                        _ => {}
                    }
                }
            }
            changed = Some(jsonb_from_text(
                &serde_json::to_string(&names).expect("names as JSON"),
            ));
            // The new row is stored whole; of the old one, only what the update replaced.
            old_json = old_json.map(|o| without_keys(o, unchanged));
        }
        let event_type = format!("{}.{suffix}", args.event_name);

        // The record is filed under the tenant the row belongs to, whatever the context says
        // by the time this AFTER trigger runs (the guards checked the row against the context
        // the statement started with).
        let row_tenant = crate::govern::row_tenant(
            if new.is_null() { old } else { new },
            tupdesc,
            shape
                .tenant
                .expect("the log trigger names the tenant column"),
        )
        .ok_or_else(|| {
            StewardError::forbidden(
                format!("a row of {} has no tenant", args.table_name),
                "Every row of a governed table belongs to a tenant; steward fills the column from \
                 the tenant context.",
            )
        })?;
        // The guards checked the row against the context before the table's own BEFORE
        // triggers that sort after them ran; one of those may have moved the row (RLS stops
        // that for tenant roles, not for roles that bypass it). The context cannot change
        // while a statement runs, so a row of another tenant here was moved behind the guard.
        if row_tenant != context.tenant {
            return Err(StewardError::forbidden(
                format!(
                    "a row of {} ended in another tenant than {}: a trigger of the table changed \
                     its tenant column after steward's guard",
                    args.table_name, context.tenant
                ),
                "Rows never change tenant; drop or fix the table's trigger that sets the tenant \
                 column.",
            ));
        }
        let mut record = Record::new(&context);
        record.set(Col::TenantId, row_tenant.into_datum());
        record.set(Col::Rel, Some(pg_sys::Datum::from((*table).rd_id)));
        // The table's name now (it may have been renamed since govern): a restore elsewhere
        // finds the table of a record by it.
        let name_now = name_now(trigger, (*table).rd_id);
        record.set(Col::TableName, text(Some(&name_now)));
        record.set(Col::RowKey, Some(row_key));
        record.set(Col::RowHash, Some(pg_sys::Datum::from(key_hash)));
        record.set(Col::Action, text(Some(action)));
        record.set(Col::OldValues, old_json);
        record.set(Col::NewRow, new_json);
        record.set(Col::Changed, changed);
        record.set(Col::EventType, text(Some(&event_type)));
        record.set(Col::Audited, args.audited.into_datum());
        record.set(Col::Evented, args.events.into_datum());
        record.insert()?;
    }
    Ok(())
}

/// AFTER INSERT OR UPDATE OR DELETE FOR EACH ROW on every audited or evented table: one
/// change-log record per changed row, in the same transaction.
#[pg_trigger]
fn _internal_log_row<'a>(
    trigger: &'a PgTrigger<'a>,
) -> std::result::Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, StewardError> {
    or_raise(log_row(trigger));
    Ok(None)
}
