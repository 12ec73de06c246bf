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
use pgrx::{pg_sys, AllocatedByPostgres, IntoDatum};

use crate::errors::{or_raise, StewardError};
use crate::tenancy;

thread_local! {
    /// True only while `steward.erase` rewrites records.
    static ERASING: Cell<bool> = const { Cell::new(false) };
    /// True only while `steward.prune_outbox` removes records it has tombstoned.
    static PRUNING: Cell<bool> = const { Cell::new(false) };
}

/// A new UUIDv7: a millisecond timestamp, then random bits; sorts by creation time.
#[pg_extern(volatile, parallel_safe)]
fn _internal_uuid_v7() -> pgrx::Uuid {
    pgrx::Uuid::from_bytes(*uuid::Uuid::now_v7().as_bytes())
}

fn log_guard<'a>(
    trigger: &'a PgTrigger<'a>,
) -> crate::errors::Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>> {
    let op = trigger.op().ok();
    if matches!(op, Some(PgTriggerOperation::Update)) && ERASING.get() {
        return Ok(trigger.new());
    }
    if matches!(op, Some(PgTriggerOperation::Delete)) && PRUNING.get() {
        return Ok(trigger.old());
    }
    let verb = match op {
        Some(PgTriggerOperation::Update) => "UPDATE",
        Some(PgTriggerOperation::Delete) => "DELETE",
        Some(PgTriggerOperation::Truncate) => "TRUNCATE",
        _ => "change",
    };
    let table = pgrx::spi::quote_qualified_identifier(
        trigger.table_schema().unwrap_or_default(),
        trigger.table_name().unwrap_or_default(),
    );
    Err(StewardError::forbidden(
        format!("{table} is append-only: {verb} of its records is forbidden"),
        "Audit records are never changed or removed; steward.erase(rel, row_key, reason) \
         removes personal payload and keeps the record.",
    ))
}

/// BEFORE UPDATE OR DELETE (each row) and BEFORE TRUNCATE on steward.change_log: nobody,
/// owner and superuser included, changes or removes a record with plain SQL.
#[pg_trigger]
fn _internal_log_guard<'a>(
    trigger: &'a PgTrigger<'a>,
) -> std::result::Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, StewardError> {
    Ok(or_raise(log_guard(trigger)))
}

/// Runs `f` with `flag` set, so that the append-only guard lets steward's own rewrite through
/// (updates for `steward.erase`, deletes for `steward.prune_outbox`).
fn with_flag<R>(flag: &'static std::thread::LocalKey<Cell<bool>>, f: impl FnOnce() -> R) -> R {
    struct Reset(&'static std::thread::LocalKey<Cell<bool>>);
    impl Drop for Reset {
        fn drop(&mut self) {
            self.0.set(false);
        }
    }
    flag.set(true);
    let _reset = Reset(flag);
    f()
}

/// Removes records only the outbox face needed: events not shown by the audit face, sealed,
/// older than `retention`, and acked by every consumer that can read them. Each leaves a
/// tombstone with its record digest, so the chain still verifies.
fn prune(retention: pgrx::datum::Interval) -> crate::errors::Result<i64> {
    tenancy::as_extension_owner(|| {
        with_flag(&PRUNING, || {
            Spi::connect_mut(|client| {
                let pruned = client.update(
                    "WITH doomed AS (
                         SELECT c.id, c.tenant_id, steward._record_digest(c, s.payload_digest) AS digest
                           FROM steward.change_log c
                           JOIN steward.audit_seals s ON s.record_id = c.id
                          WHERE c.evented AND NOT c.audited AND s.prunable
                            AND c.occurred_at < pg_catalog.now() - $1
                            AND NOT EXISTS (
                                SELECT 1 FROM steward.consumers k
                                 WHERE (k.tenant_id IS NULL OR k.tenant_id = c.tenant_id)
                                   AND (c.txid, c.id) > (k.pos_txid, k.pos_id))
                     ), tombstoned AS (
                         INSERT INTO steward.outbox_tombstones (record_id, tenant_id, record_digest)
                         SELECT id, tenant_id, digest FROM doomed
                         RETURNING record_id
                     )
                     DELETE FROM steward.change_log c USING tombstoned t
                      WHERE c.id = t.record_id
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
fn _internal_prune_outbox(retention: pgrx::datum::Interval) -> i64 {
    or_raise(prune(retention))
}

fn erase(rel: pg_sys::Oid, row_key: pgrx::JsonB, reason: &str) -> crate::errors::Result<i64> {
    if reason.trim().is_empty() {
        return Err(StewardError::bad_argument(
            "steward.erase needs a reason",
            "Say why, e.g. steward.erase('app.customers', '{\"id\": 7}', 'GDPR request 2026-113').",
        ));
    }
    let actor = tenancy::context()
        .map(|c| c.actor)
        .unwrap_or_else(|_| tenancy::role_name(unsafe { pg_sys::GetSessionUserId() }));
    let key = row_key.0.clone();
    tenancy::as_extension_owner(|| {
        with_flag(&ERASING, || {
            Spi::connect_mut(|client| {
                // The payload goes, and with it the salt of its sealed digest.
                let erased = client.update(
                    "WITH erased AS (
                         UPDATE steward.change_log
                            SET old_values = NULL, new_row = NULL, erased_at = pg_catalog.now()
                          WHERE id IN (SELECT r.id FROM steward._row_records($1, $2) r)
                            AND erased_at IS NULL AND action <> 'ERASE'
                      RETURNING id, tenant_id, table_name
                     ), unsalted AS (
                         UPDATE steward.audit_seals s SET payload_salt = NULL
                           FROM erased e WHERE s.record_id = e.id
                     )
                     SELECT tenant_id, table_name FROM erased",
                    None,
                    &[rel.into(), pgrx::JsonB(key.clone()).into()],
                )?;
                let count = erased.len() as i64;
                let first = match erased.into_iter().next() {
                    Some(row) => Some((row.get::<pgrx::Uuid>(1)?, row.get::<String>(2)?)),
                    None => None,
                };
                if let Some((Some(tenant), table)) = first {
                    client.update(
                        "INSERT INTO steward.change_log
                             (tenant_id, actor, reason, rel, table_name, row_key, row_hash, action,
                              event_id, audited, evented)
                         VALUES ($1, $2, $3, $4, $5, $6, steward._internal_row_hash($4, $6), 'ERASE',
                                 steward._internal_uuid_v7(), true, false)",
                        None,
                        &[
                            tenant.into(),
                            actor.as_str().into(),
                            reason.into(),
                            rel.into(),
                            table.into(),
                            pgrx::JsonB(key.clone()).into(),
                        ],
                    )?;
                }
                Ok::<_, pgrx::spi::Error>(count)
            })
        })
    })
    .map_err(|e| StewardError::bad_argument(format!("steward.erase failed: {e}"), "Check the table and key."))
}

/// Removes the personal payload (old and new row) of a row's records and records the erasure
/// (who and why). The records, their keys and the seal chain stay; `verify_audit` stays ok.
#[pg_extern(volatile, parallel_unsafe)]
fn _internal_erase(rel: pg_sys::Oid, row_key: pgrx::JsonB, reason: &str) -> i64 {
    or_raise(erase(rel, row_key, reason))
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
}

/// The trigger's arguments, as `govern` writes them.
struct LogArgs<'a> {
    audited: bool,
    evented: bool,
    soft_delete: bool,
    table_name: &'a str,
    short_name: &'a str,
    pk: Vec<&'a str>,
}

fn log_args<'a>(trigger: &'a PgTrigger<'a>) -> LogArgs<'a> {
    let arg = |n: usize| crate::govern::trigger_arg(trigger, n);
    LogArgs {
        audited: arg(0) == "t",
        evented: arg(1) == "t",
        soft_delete: arg(2) == "t",
        table_name: arg(3),
        short_name: arg(4),
        pk: (5..trigger.trigger().tgnargs as usize).map(arg).collect(),
    }
}

unsafe fn to_jsonb_for(rowtype: pg_sys::Oid) -> *mut pg_sys::FmgrInfo {
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

unsafe fn jsonb_text(value: pg_sys::Datum) -> String {
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

/// The row hash of a key given as jsonb, for SQL (history, row_as_of, erase).
#[pg_extern(immutable, parallel_safe, strict)]
fn _internal_row_hash(rel: pg_sys::Oid, row_key: pgrx::JsonB) -> i64 {
    let datum = row_key.into_datum().expect("jsonb");
    row_hash(rel, unsafe { jsonb_text(datum) }.as_bytes())
}

/// `{"id": 42}`: the key's columns taken from the row's jsonb; with its row hash.
unsafe fn key_jsonb(rel: pg_sys::Oid, row: pg_sys::Datum, pk: &[&str]) -> (pg_sys::Datum, i64) {
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
unsafe fn compare_columns(
    old: *mut pg_sys::HeapTupleData,
    new: *mut pg_sys::HeapTupleData,
    tupdesc: pg_sys::TupleDesc,
) -> (Vec<String>, Vec<String>) {
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

fn attnum_of(tupdesc: pg_sys::TupleDesc, name: &str) -> Option<usize> {
    unsafe {
        (0..(*tupdesc).natts as usize).find(|&i| {
            let attr = &*(*tupdesc).attrs.as_ptr().add(i);
            !attr.attisdropped
                && CStr::from_ptr(attr.attname.data.as_ptr()).to_bytes() == name.as_bytes()
        })
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

/// The change log's column names, in the order of `Col`.
const COLUMNS: [&str; Col::COUNT] = [
    "id",
    "tenant_id",
    "txid",
    "occurred_at",
    "actor",
    "reason",
    "request_id",
    "traceparent",
    "rel",
    "table_name",
    "row_key",
    "row_hash",
    "action",
    "old_values",
    "new_row",
    "changed",
    "event_id",
    "event_type",
    "audited",
    "evented",
    "aggregate_type",
    "aggregate_id",
    "schema_version",
    "headers",
];

/// Where each column sits in `steward.change_log`, and the sequence behind its id: looked up
/// once per backend for a given change_log (a re-created extension has a new OID).
#[derive(Clone, Copy)]
struct LogLayout {
    attnums: [Option<usize>; Col::COUNT],
    id_sequence: pg_sys::Oid,
}

thread_local! {
    static LOG_LAYOUT: RefCell<Option<(pg_sys::Oid, LogLayout)>> = const { RefCell::new(None) };
}

unsafe fn log_layout(log_oid: pg_sys::Oid, log_desc: pg_sys::TupleDesc) -> LogLayout {
    if let Some((oid, layout)) = LOG_LAYOUT.with_borrow(|l| *l) {
        if oid == log_oid {
            return layout;
        }
    }
    let mut attnums = [None; Col::COUNT];
    for (i, name) in COLUMNS.iter().enumerate() {
        attnums[i] = attnum_of(log_desc, name);
    }
    let id_attnum = attnums[Col::Id as usize].expect("change_log.id") + 1;
    let id_sequence = unsafe { pg_sys::getIdentitySequence(log_oid, id_attnum as i16, false) };
    let layout = LogLayout {
        attnums,
        id_sequence,
    };
    LOG_LAYOUT.with_borrow_mut(|l| *l = Some((log_oid, layout)));
    layout
}

pub fn text(v: Option<&str>) -> Option<pg_sys::Datum> {
    v.and_then(|s| s.into_datum())
}

/// A change-log record being formed: the value of each column it sets (unset ones are NULL).
pub struct Record {
    values: [Option<pg_sys::Datum>; Col::COUNT],
}

impl Record {
    /// A record of the current transaction by `context`'s actor in its tenant, with the
    /// transaction's annotations.
    pub fn new(context: &tenancy::Context) -> Record {
        let notes = tenancy::annotations();
        let mut r = Record {
            values: [None; Col::COUNT],
        };
        r.set(Col::TenantId, context.tenant.into_datum());
        r.set(Col::Actor, text(Some(&context.actor)));
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
    pub fn insert(mut self) -> pgrx::Uuid {
        let event_id = pgrx::Uuid::from_bytes(*uuid::Uuid::now_v7().as_bytes());
        let evented = self.values[Col::Evented as usize] == true.into_datum();
        unsafe {
            let ns = pg_sys::get_namespace_oid(c"steward".as_ptr(), false);
            let log_oid = pg_sys::get_relname_relid(c"change_log".as_ptr(), ns);
            let log = pg_sys::table_open(log_oid, pg_sys::RowExclusiveLock as i32);
            let log_desc = (*log).rd_att;
            let layout = log_layout(log_oid, log_desc);
            // The record is steward's write, not the caller's: nextval checks privileges.
            let id = tenancy::as_extension_owner(|| {
                pg_sys::OidFunctionCall1Coll(
                    pg_sys::Oid::from(pg_sys::F_NEXTVAL),
                    pg_sys::InvalidOid,
                    pg_sys::Datum::from(layout.id_sequence),
                )
            });
            self.set(Col::Id, Some(id));
            self.set(
                Col::Txid,
                Some(pg_sys::Datum::from(pg_sys::GetTopFullTransactionId().value)),
            );
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
                if let (Some(i), Some(v)) = (layout.attnums[column], value) {
                    values[i] = *v;
                    nulls[i] = false;
                }
            }
            let tuple = pg_sys::heap_form_tuple(log_desc, values.as_mut_ptr(), nulls.as_mut_ptr());
            pg_sys::CatalogTupleInsert(log, tuple);
            pg_sys::table_close(log, pg_sys::NoLock as i32);
        }
        if evented {
            crate::wakeups::at_commit();
        }
        event_id
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
    if !old.is_null() && !new.is_null() && crate::govern::same_bytes(old, new) {
        return Ok(()); // an update that changed nothing writes nothing
    }
    let context = tenancy::context()?;
    let args = log_args(trigger);
    let tgoid = trigger.trigger().tgoid;
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
        let (row_key, key_hash) = key_jsonb((*table).rd_id, any_row, &args.pk);

        let (mut action, mut suffix) = match (old.is_null(), new.is_null()) {
            (true, false) => ("INSERT", "created"),
            (false, false) => ("UPDATE", "updated"),
            _ => ("DELETE", "deleted"),
        };
        let mut changed = None;
        if action == "UPDATE" {
            let (names, unchanged) = compare_columns(old, new, tupdesc);
            if args.soft_delete && names.iter().any(|n| n == "deleted_at") {
                if let Some(i) = attnum_of(tupdesc, "deleted_at") {
                    let (mut onull, mut nnull) = (false, false);
                    pg_sys::heap_getattr(old, (i + 1) as i32, tupdesc, &mut onull);
                    pg_sys::heap_getattr(new, (i + 1) as i32, tupdesc, &mut nnull);
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
        let event_type = format!("{}.{suffix}", args.short_name);

        // The guards made sure the row is in the context's tenant.
        let mut record = Record::new(&context);
        record.set(Col::Rel, Some(pg_sys::Datum::from((*table).rd_id)));
        record.set(Col::TableName, text(Some(args.table_name)));
        record.set(Col::RowKey, Some(row_key));
        record.set(Col::RowHash, Some(pg_sys::Datum::from(key_hash)));
        record.set(Col::Action, text(Some(action)));
        record.set(Col::OldValues, old_json);
        record.set(Col::NewRow, new_json);
        record.set(Col::Changed, changed);
        record.set(Col::EventType, text(Some(&event_type)));
        record.set(Col::Audited, args.audited.into_datum());
        record.set(Col::Evented, args.evented.into_datum());
        record.insert();
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
