//! The change log's writer: one append-only record per change to a governed table, and per
//! domain event.
//!
//! `steward.govern()` attaches one AFTER ROW trigger to each audited or evented table. For every
//! changed row it forms the record (the rows as jsonb, the key, the changed columns, the actor
//! and annotations of the transaction) and inserts it with its index entries, in the same
//! transaction, without SQL or the executor. [`Record`] is the same path for domain events
//! (`emit`) and steward's own (seal witnesses, DDL records). The log's two faces are
//! [`crate::audit`] and [`crate::outbox`].

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::CStr;

use pgrx::prelude::*;
use pgrx::{pg_sys, AllocatedByPostgres, IntoDatum, Uuid};

use crate::errors::{or_raise, StewardError};
use crate::tenancy;

extern "C-unwind" {
    /// commands/sequence.h: the next value of a sequence, by OID; `check_permissions` false
    /// skips the caller's USAGE/UPDATE check (steward draws the log's ids for its own records).
    /// Called through [`next_id`] only, which guards the FFI boundary.
    fn nextval_internal(relid: pg_sys::Oid, check_permissions: bool) -> i64;
}

/// The next value of sequence `seq`, with no privilege check.
///
/// # Safety
///
/// `seq` is a sequence's OID; call inside a transaction.
unsafe fn next_id(seq: pg_sys::Oid) -> i64 {
    // SAFETY: a Postgres function that may raise an ERROR: the boundary turns that into a Rust
    // panic that pgrx reports as the ERROR, as for every pg_sys function.
    unsafe { pg_sys::ffi::pg_guard_ffi_boundary(|| nextval_internal(seq, false)) }
}

/// A new UUIDv7: a millisecond timestamp, then random bits; sorts by creation time.
#[pg_extern(volatile, parallel_safe)]
fn _internal_uuid_v7() -> pgrx::Uuid {
    pgrx::Uuid::from_bytes(*uuid::Uuid::now_v7().as_bytes())
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

/// # Safety
///
/// Called by Postgres only, as a syscache callback.
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

/// # Safety
///
/// `rowtype` is a composite type's OID; call inside a transaction (it allocates in
/// TopMemoryContext and looks up to_jsonb).
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
///
/// # Safety
///
/// `finfo` comes from [`to_jsonb_for`] for `tupdesc`'s row type, and `tuple` is a valid tuple of
/// `tupdesc`.
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

thread_local! {
    /// `to_jsonb` for a column's type, by type OID (as [`to_jsonb_for`] makes it).
    static VALUE_TO_JSONB: RefCell<HashMap<pg_sys::Oid, usize>> = RefCell::new(HashMap::new());
}

/// `{"qty": 20}`: the columns `columns` (0-based attribute indexes) of a row as a jsonb object,
/// each value as `to_jsonb(value)` makes it: what `to_jsonb(row)` holds under their names,
/// without converting the rest of the row.
///
/// # Safety
///
/// `tuple` is a valid tuple of `tupdesc`, and `columns` are below its `natts`.
unsafe fn columns_jsonb(
    tuple: *mut pg_sys::HeapTupleData,
    tupdesc: pg_sys::TupleDesc,
    columns: &[usize],
) -> pg_sys::Datum {
    // SAFETY: attributes are read from the caller's tuple with its descriptor; each value goes
    // to the to_jsonb made for its type; the parse state's names and values (jsonb containers of
    // this memory context) outlive it: JsonbValueToJsonb copies them.
    unsafe {
        let mut state: *mut pg_sys::JsonbParseState = std::ptr::null_mut();
        pg_sys::pushJsonbValue(
            &mut state,
            pg_sys::JsonbIteratorToken::WJB_BEGIN_OBJECT,
            std::ptr::null_mut(),
        );
        for &i in columns {
            let attr = &*(*tupdesc).attrs.as_ptr().add(i);
            let mut k = jsonb_string(CStr::from_ptr(attr.attname.data.as_ptr()).to_bytes());
            pg_sys::pushJsonbValue(&mut state, pg_sys::JsonbIteratorToken::WJB_KEY, &mut k);
            let mut isnull = false;
            let value = pg_sys::heap_getattr(tuple, (i + 1) as i32, tupdesc, &mut isnull);
            let mut v = pg_sys::JsonbValue::default();
            if isnull {
                v.type_ = pg_sys::jbvType::jbvNull;
            } else {
                let typid = attr.atttypid;
                let finfo = VALUE_TO_JSONB.with_borrow(|m| m.get(&typid).copied());
                let finfo = match finfo {
                    Some(f) => f as *mut pg_sys::FmgrInfo,
                    None => {
                        let f = to_jsonb_for(typid);
                        VALUE_TO_JSONB.with_borrow_mut(|m| m.insert(typid, f as usize));
                        f
                    }
                };
                let j = pg_sys::FunctionCall1Coll(finfo, pg_sys::InvalidOid, value);
                let j = pg_sys::pg_detoast_datum(j.cast_mut_ptr()).cast::<pg_sys::Jsonb>();
                v.type_ = pg_sys::jbvType::jbvBinary;
                v.val.binary = pg_sys::JsonbValue__bindgen_ty_1__bindgen_ty_4 {
                    len: (pgrx::varlena::varsize_any(j.cast()) - pg_sys::VARHDRSZ) as i32,
                    data: &mut (*j).root,
                };
            }
            pg_sys::pushJsonbValue(&mut state, pg_sys::JsonbIteratorToken::WJB_VALUE, &mut v);
        }
        jsonb_finish(&mut state, pg_sys::JsonbIteratorToken::WJB_END_OBJECT)
    }
}

/// # Safety
///
/// Call inside a transaction: the jsonb is palloc'd in the current memory context (and invalid
/// JSON raises).
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

/// # Safety
///
/// `value` is a jsonb datum (not NULL) valid in the current memory context.
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

/// A jsonb string value over `text` (which must outlive the value's use).
fn jsonb_string(text: &[u8]) -> pg_sys::JsonbValue {
    let mut v = pg_sys::JsonbValue {
        type_: pg_sys::jbvType::jbvString,
        ..Default::default()
    };
    v.val.string = pg_sys::JsonbValue__bindgen_ty_1__bindgen_ty_1 {
        len: text.len() as i32,
        val: text.as_ptr().cast_mut().cast(),
    };
    v
}

/// Ends the array or object `state` is building with `end` and returns it as a jsonb datum.
///
/// # Safety
///
/// `state` holds an open array (`end` WJB_END_ARRAY) or object (WJB_END_OBJECT) whose values'
/// strings are still valid; the jsonb is palloc'd in the current memory context.
unsafe fn jsonb_finish(
    state: &mut *mut pg_sys::JsonbParseState,
    end: pg_sys::JsonbIteratorToken::Type,
) -> pg_sys::Datum {
    // SAFETY: as the caller promises; JsonbValueToJsonb copies the values into the result.
    unsafe {
        let built = pg_sys::pushJsonbValue(state, end, std::ptr::null_mut());
        pg_sys::Datum::from(pg_sys::JsonbValueToJsonb(built))
    }
}

/// A jsonb array of strings, built without text: `["qty", "version"]`.
///
/// # Safety
///
/// Call inside a transaction: the jsonb is palloc'd in the current memory context.
unsafe fn jsonb_string_array(items: &[String]) -> pg_sys::Datum {
    // SAFETY: the parse state is built by pushJsonbValue from values whose strings outlive it
    // (JsonbValueToJsonb copies them into the result).
    unsafe {
        let mut state: *mut pg_sys::JsonbParseState = std::ptr::null_mut();
        pg_sys::pushJsonbValue(
            &mut state,
            pg_sys::JsonbIteratorToken::WJB_BEGIN_ARRAY,
            std::ptr::null_mut(),
        );
        for item in items {
            let mut v = jsonb_string(item.as_bytes());
            pg_sys::pushJsonbValue(&mut state, pg_sys::JsonbIteratorToken::WJB_ELEM, &mut v);
        }
        jsonb_finish(&mut state, pg_sys::JsonbIteratorToken::WJB_END_ARRAY)
    }
}

/// `{"id": 42}`: the key's columns taken from the row's jsonb; with its row hash.
///
/// # Safety
///
/// `row` is the row's jsonb datum (from [`row_jsonb`]), valid in the current memory context.
unsafe fn key_jsonb(rel: pg_sys::Oid, row: pg_sys::Datum, pk: &[&str]) -> (pg_sys::Datum, i64) {
    // SAFETY: row is the row's jsonb datum; every datum built here is a jsonb or text datum of
    // this memory context; the parse state's strings (the key's names) outlive it.
    unsafe {
        let mut values = Vec::with_capacity(pk.len());
        for column in pk {
            let name = column.into_datum().expect("text");
            let value = pg_sys::OidFunctionCall2Coll(
                pg_sys::Oid::from(pg_sys::F_JSONB_OBJECT_FIELD),
                pg_sys::InvalidOid,
                row,
                name,
            );
            values.push(value);
        }
        // The usual key's values are scalars (numbers, strings, uuids): the object is built
        // directly. A key column that is an array or a composite goes through text.
        let mut scalars = Vec::with_capacity(values.len());
        for value in &values {
            let jsonb = pg_sys::pg_detoast_datum(value.cast_mut_ptr()).cast::<pg_sys::Jsonb>();
            let mut v = pg_sys::JsonbValue::default();
            if !pg_sys::JsonbExtractScalar(&mut (*jsonb).root, &mut v) {
                break;
            }
            scalars.push(v);
        }
        let key = if scalars.len() == values.len() {
            let mut state: *mut pg_sys::JsonbParseState = std::ptr::null_mut();
            pg_sys::pushJsonbValue(
                &mut state,
                pg_sys::JsonbIteratorToken::WJB_BEGIN_OBJECT,
                std::ptr::null_mut(),
            );
            for (column, mut v) in pk.iter().zip(scalars) {
                let mut k = jsonb_string(column.as_bytes());
                pg_sys::pushJsonbValue(&mut state, pg_sys::JsonbIteratorToken::WJB_KEY, &mut k);
                pg_sys::pushJsonbValue(&mut state, pg_sys::JsonbIteratorToken::WJB_VALUE, &mut v);
            }
            jsonb_finish(&mut state, pg_sys::JsonbIteratorToken::WJB_END_OBJECT)
        } else {
            let parts: Vec<String> = pk
                .iter()
                .zip(&values)
                .map(|(column, value)| {
                    format!(
                        "{}: {}",
                        serde_json::Value::from(*column),
                        jsonb_text(*value)
                    )
                })
                .collect();
            jsonb_from_text(&format!("{{{}}}", parts.join(", ")))
        };
        (key, row_hash(rel, jsonb_text(key).as_bytes()))
    }
}

/// Whether column `i` (0-based) holds the same value in two versions of a row: the same bytes,
/// or, where either side is compressed or stored out of line (a BEFORE trigger's new row is
/// neither yet, the stored old row may be both), the same bytes once decompressed.
///
/// # Safety
///
/// `old` and `new` are valid tuples of `tupdesc`, and `i` is below its `natts`.
unsafe fn same_value(
    old: *mut pg_sys::HeapTupleData,
    new: *mut pg_sys::HeapTupleData,
    tupdesc: pg_sys::TupleDesc,
    i: usize,
) -> bool {
    // SAFETY: the caller's tuples and descriptor; a varlena is read within its own length, and
    // detoasted copies are palloc'd in the current memory context.
    unsafe {
        let attr = &*(*tupdesc).attrs.as_ptr().add(i);
        let (mut onull, mut nnull) = (false, false);
        let ov = pg_sys::heap_getattr(old, (i + 1) as i32, tupdesc, &mut onull);
        let nv = pg_sys::heap_getattr(new, (i + 1) as i32, tupdesc, &mut nnull);
        let bytes = |p: *mut pg_sys::varlena| {
            std::slice::from_raw_parts(p.cast::<u8>(), pgrx::varlena::varsize_any(p))
        };
        match (onull, nnull) {
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
                if bytes(op) == bytes(np) {
                    return true;
                }
                // compressed inline (4-byte header, compressed) or a pointer elsewhere (1-byte
                // header, external)
                let extended = |p: *mut pg_sys::varlena| {
                    pgrx::varlena::varatt_is_4b_c(p) || pgrx::varlena::varatt_is_1b_e(p)
                };
                if !extended(op) && !extended(np) {
                    return false;
                }
                let (op, np) = (
                    pg_sys::pg_detoast_datum_packed(op),
                    pg_sys::pg_detoast_datum_packed(np),
                );
                pgrx::varlena::varsize_any_exhdr(op) == pgrx::varlena::varsize_any_exhdr(np)
                    && std::slice::from_raw_parts(
                        pgrx::varlena::vardata_any(op).cast::<u8>(),
                        pgrx::varlena::varsize_any_exhdr(op),
                    ) == std::slice::from_raw_parts(
                        pgrx::varlena::vardata_any(np).cast::<u8>(),
                        pgrx::varlena::varsize_any_exhdr(np),
                    )
            }
            (false, false) => {
                CStr::from_ptr(ov.cast_mut_ptr()) == CStr::from_ptr(nv.cast_mut_ptr())
            }
            _ => false,
        }
    }
}

/// Whether two versions of a row hold the same value in every column ([`same_value`]).
///
/// # Safety
///
/// `old` and `new` are valid tuples of `tupdesc`.
pub(crate) unsafe fn same_values(
    old: *mut pg_sys::HeapTupleData,
    new: *mut pg_sys::HeapTupleData,
    tupdesc: pg_sys::TupleDesc,
) -> bool {
    // SAFETY: the caller's tuples and descriptor; attribute indexes stay below natts.
    unsafe {
        (0..(*tupdesc).natts as usize).all(|i| {
            (*(*tupdesc).attrs.as_ptr().add(i)).attisdropped || same_value(old, new, tupdesc, i)
        })
    }
}

/// The names of the columns whose value differs between two versions of a row
/// ([`same_value`]), and their (0-based) attribute indexes.
///
/// # Safety
///
/// `old` and `new` are valid tuples of `tupdesc`, a descriptor of a relation the caller holds
/// open.
pub(crate) unsafe fn compare_columns(
    old: *mut pg_sys::HeapTupleData,
    new: *mut pg_sys::HeapTupleData,
    tupdesc: pg_sys::TupleDesc,
) -> (Vec<String>, Vec<usize>) {
    // SAFETY: old and new are valid tuples of the relation described by tupdesc (the trigger's),
    // and attribute numbers stay below natts.
    unsafe {
        let (mut changed, mut changed_at) = (Vec::new(), Vec::new());
        for i in 0..(*tupdesc).natts as usize {
            let attr = &*(*tupdesc).attrs.as_ptr().add(i);
            if attr.attisdropped || same_value(old, new, tupdesc, i) {
                continue;
            }
            changed.push(
                CStr::from_ptr(attr.attname.data.as_ptr())
                    .to_string_lossy()
                    .into_owned(),
            );
            changed_at.push(i);
        }
        (changed, changed_at)
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

/// A relation's cache entry was invalidated (steward's one relcache callback, catalog.rs, calls
/// this): the log's layout goes when the log changes.
pub(crate) fn relcache_invalidated(relid: pg_sys::Oid) {
    // A rename invalidates the table's entry: its name is looked up again.
    TABLE_NAMES.with_borrow_mut(|m| crate::catalog::forget(m, relid));
    direct_invalidated(relid);
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
///
/// # Safety
///
/// `log` is `steward.change_log`, open, with a lock the caller holds until it is closed.
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
///
/// # Safety
///
/// `log` is the change log, open with RowExclusiveLock; `tuple` was formed in its descriptor with
/// the layout `layout` describes, from [`log_layout`] of the same relation.
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
            let log_oid = crate::catalog::relation(c"change_log");
            if log_oid == pg_sys::InvalidOid {
                return Err(StewardError::internal(
                    "steward.change_log is missing: is the extension being dropped?",
                ));
            }
            let log = pg_sys::table_open(log_oid, pg_sys::RowExclusiveLock as i32);
            let layout = match log_layout(log) {
                Ok(layout) => layout,
                Err(e) => {
                    pg_sys::table_close(log, pg_sys::NoLock as i32);
                    return Err(e);
                }
            };
            let log_desc = (*log).rd_att;
            // The record is steward's write, not the caller's: the log's own sequence, without
            // the privilege check nextval() makes (the caller has no right to it, nor needs one).
            let id = next_id(layout.id_sequence);
            self.set(Col::Id, Some(pg_sys::Datum::from(id)));
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
    let args = crate::govern::Args::of(trigger)?;
    let shape = crate::govern::shape(trigger, || crate::govern::Expect {
        version: None,
        ..args.expect(if args.soft_delete {
            crate::govern::Need::Required
        } else {
            crate::govern::Need::No
        })
    })?;
    record_change(trigger, old, new, &args, &shape)
}

/// Writes the record of one change to a row of the trigger's table: `old` is NULL for an
/// INSERT, `new` for a DELETE. An update that changed nothing writes nothing. Called by the AFTER
/// trigger with the rows as written, and by the guards (BEFORE) with the rows as they will be
/// written, where [`direct_statement`] made that certain.
pub(crate) fn record_change(
    trigger: &PgTrigger<'_>,
    old: *mut pg_sys::HeapTupleData,
    new: *mut pg_sys::HeapTupleData,
    args: &crate::govern::Args<'_>,
    shape: &crate::govern::Shape,
) -> crate::errors::Result<()> {
    let data = trigger.trigger_data();
    if !old.is_null()
        && !new.is_null()
        // SAFETY: the trigger's relation is open for the duration of the trigger call.
        && crate::govern::unchanged(old, new, unsafe { (*data.tg_relation).rd_att })
    {
        return Ok(()); // an update that changed nothing writes nothing
    }
    let context = tenancy::context()?;
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
        // An update's old row is not made whole: only its changed columns are stored.
        let update = !old.is_null() && !new.is_null();
        let mut old_json = (!old.is_null() && !update).then(|| row_jsonb(finfo, old, tupdesc));
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
            let (names, changed_at) = compare_columns(old, new, tupdesc);
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
            changed = Some(jsonb_string_array(&names));
            // The new row is stored whole; of the old one, only what the update replaced.
            old_json = Some(columns_jsonb(old, tupdesc, &changed_at));
        }
        let event_type = format!("{}.{suffix}", args.event_name);

        // The record is filed under the tenant the row belongs to, whatever the context says
        // by the time this AFTER trigger runs (the guards checked the row against the context
        // the statement started with).
        let row_tenant =
            crate::govern::row_tenant(
                if new.is_null() { old } else { new },
                tupdesc,
                shape
                    .tenant
                    .expect("the log trigger names the tenant column"),
            )
            .ok_or_else(|| {
                StewardError::forbidden(
                format!("a row of {} has no tenant", name_now(trigger, (*table).rd_id)),
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
                    name_now(trigger, (*table).rd_id),
                    context.tenant
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

// ---------------------------------------------------------------------------------------------
// Records from the BEFORE guards (ADR 002, amended by issue 21). The AFTER trigger above is
// always correct: it sees the rows as written. It also costs an entry in the AFTER-trigger queue
// per row, a second trigger call, and fetching the rows again at the end of the statement. Where
// the row a guard returns is certainly the row that will be written, the guard writes the record
// itself and the statement does without the AFTER trigger. That is decided per statement, when
// the executor starts it, from its plan and the table's triggers; the decision is made in the
// statement's own copy of the trigger list (each result relation has one), so it holds for
// exactly that statement and no other.
// ---------------------------------------------------------------------------------------------

/// A governed table whose statements may have their records written by the guards: its
/// steward triggers, and which of its statements' kinds qualify.
#[derive(Clone, Copy)]
struct Direct {
    log_trigger: pg_sys::Oid,
    log_fn: pg_sys::Oid,
    /// (trigger OID, its function, the function that guards and records) for the row guard
    /// (INSERT, DELETE) and the update guard.
    row_guard: (pg_sys::Oid, pg_sys::Oid, pg_sys::Oid),
    update_guard: (pg_sys::Oid, pg_sys::Oid, pg_sys::Oid),
    insert: bool,
    update: bool,
    delete: bool,
}

thread_local! {
    /// Per table, what [`direct_for`] found; None: its statements keep the AFTER trigger. An
    /// entry goes when the table's relcache entry is invalidated (any trigger, column or
    /// constraint change); the generation moves on with every invalidation, so that a lookup
    /// an invalidation overtook does not store what it found.
    static DIRECT: RefCell<(u64, HashMap<pg_sys::Oid, Option<Direct>>)> =
        RefCell::new((0, HashMap::new()));
}

fn direct_invalidated(relid: pg_sys::Oid) {
    DIRECT.with_borrow_mut(|(generation, m)| {
        *generation += 1;
        crate::catalog::forget(m, relid);
    });
}

/// The OID of `<ns>.<name>()` (a trigger function: no arguments), InvalidOid if there is none.
/// A syscache lookup: no privilege is checked (the caller may have no USAGE on the schema).
///
/// # Safety
///
/// Call inside a transaction (catalog lookups).
unsafe fn trigger_function(ns: pg_sys::Oid, name: &CStr) -> pg_sys::Oid {
    // SAFETY: the keys are a NUL-terminated name, an empty oidvector of this memory context and
    // a namespace OID, as the PROCNAMEARGSNSP cache takes them.
    unsafe {
        let no_args = pg_sys::buildoidvector(std::ptr::null(), 0);
        pg_sys::GetSysCacheOid(
            pg_sys::SysCacheIdentifier::PROCNAMEARGSNSP as i32,
            pg_sys::Anum_pg_proc_oid as i16,
            pg_sys::Datum::from(name.as_ptr()),
            pg_sys::Datum::from(no_args),
            pg_sys::Datum::from(ns),
            pg_sys::Datum::from(0),
        )
    }
}

const ROW: i16 = pg_sys::TRIGGER_TYPE_ROW as i16;
const BEFORE: i16 = pg_sys::TRIGGER_TYPE_BEFORE as i16;
const INSERT: i16 = pg_sys::TRIGGER_TYPE_INSERT as i16;
const DELETE: i16 = pg_sys::TRIGGER_TYPE_DELETE as i16;
const UPDATE: i16 = pg_sys::TRIGGER_TYPE_UPDATE as i16;
const INSTEAD: i16 = pg_sys::TRIGGER_TYPE_INSTEAD as i16;
const DISABLED: std::ffi::c_char = pg_sys::TRIGGER_DISABLED as std::ffi::c_char;

/// The triggers of a trigger list.
///
/// # Safety
///
/// `td` is a valid trigger list (a relation's or a result relation's copy).
unsafe fn triggers<'a>(td: *mut pg_sys::TriggerDesc) -> &'a mut [pg_sys::Trigger] {
    // SAFETY: a TriggerDesc holds numtriggers triggers at `triggers`.
    unsafe {
        if td.is_null() || (*td).numtriggers <= 0 || (*td).triggers.is_null() {
            return &mut [];
        }
        std::slice::from_raw_parts_mut((*td).triggers, (*td).numtriggers as usize)
    }
}

/// The arguments of a trigger, as strings.
///
/// # Safety
///
/// `t` is a valid trigger of a trigger list.
unsafe fn trigger_args(t: &pg_sys::Trigger) -> Vec<&CStr> {
    // SAFETY: tgargs holds tgnargs NUL-terminated strings when it is not NULL.
    unsafe {
        if t.tgargs.is_null() {
            return Vec::new();
        }
        (0..t.tgnargs.max(0) as usize)
            .map(|i| CStr::from_ptr(*t.tgargs.add(i)))
            .collect()
    }
}

/// Whether the table's statements may have their records written by the guards, and how: its
/// steward triggers as govern() attached them (no condition, enabled alike, the same
/// arguments), a plain table (not a partition: an UPDATE may move a row out of one, and the
/// guards of the partition it leaves see an UPDATE that is written as a DELETE and an INSERT),
/// no stored generated columns (computed after the BEFORE triggers), and for each kind of
/// statement, no BEFORE ROW trigger of the table that fires after the guard (it could change
/// or skip the row the guard recorded).
///
/// # Safety
///
/// `rel` is an open relation; call inside a transaction.
unsafe fn direct_for(rel: pg_sys::Relation) -> Option<Direct> {
    // SAFETY: rel is open: its class row, descriptor and trigger list are valid.
    unsafe {
        let form = &*(*rel).rd_rel;
        if form.relkind != pg_sys::RELKIND_RELATION as std::ffi::c_char || form.relispartition {
            return None;
        }
        let constr = (*(*rel).rd_att).constr;
        if !constr.is_null() && (*constr).has_generated_stored {
            return None;
        }
        // steward's functions are found by syscache lookups, which check no privilege (the
        // statement's role may have no USAGE on the schema, and the table may not be steward's
        // at all); they come before the trigger list is read: a lookup may process
        // invalidations, which may rebuild it. The answer is kept per table.
        if triggers((*rel).trigdesc).is_empty() {
            return None;
        }
        let ns = pg_sys::get_namespace_oid(c"steward".as_ptr(), true);
        if ns == pg_sys::InvalidOid {
            return None;
        }
        let [log_fn, row_fn, update_fn, row_fast, update_fast] = [
            c"_internal_log_row",
            c"_internal_row_guard",
            c"_internal_update_guard",
            c"_internal_row_guard_and_log",
            c"_internal_update_guard_and_log",
        ]
        .map(|name| trigger_function(ns, name));
        if [log_fn, row_fn, update_fn, row_fast, update_fast].contains(&pg_sys::InvalidOid) {
            return None;
        }
        let all = triggers((*rel).trigdesc);
        let find = |func: pg_sys::Oid, tgtype: i16| {
            all.iter().position(|t| {
                t.tgfoid == func
                    && t.tgtype == tgtype
                    && t.tgqual.is_null()
                    && t.tgoldtable.is_null()
                    && t.tgnewtable.is_null()
                    && t.tgnattr == 0
            })
        };
        let log = find(log_fn, ROW | INSERT | UPDATE | DELETE)?;
        let row_guard = find(row_fn, ROW | BEFORE | INSERT | DELETE)?;
        let update_guard = find(update_fn, ROW | BEFORE | UPDATE)?;
        let enabled = all[log].tgenabled;
        let args = trigger_args(&all[log]);
        for g in [row_guard, update_guard] {
            if all[g].tgenabled != enabled || trigger_args(&all[g]) != args {
                return None;
            }
        }
        if enabled == DISABLED {
            return None;
        }
        // Trigger lists are sorted by name, the order BEFORE ROW triggers fire in.
        let later_before_row = |guard: usize, event: i16| {
            all[guard + 1..].iter().any(|t| {
                t.tgtype & (ROW | BEFORE) == ROW | BEFORE
                    && t.tgtype & INSTEAD == 0
                    && t.tgtype & event != 0
                    && t.tgenabled != DISABLED
            })
        };
        Some(Direct {
            log_trigger: all[log].tgoid,
            log_fn: all[log].tgfoid,
            row_guard: (all[row_guard].tgoid, all[row_guard].tgfoid, row_fast),
            update_guard: (
                all[update_guard].tgoid,
                all[update_guard].tgfoid,
                update_fast,
            ),
            insert: !later_before_row(row_guard, INSERT),
            update: !later_before_row(update_guard, UPDATE),
            delete: !later_before_row(row_guard, DELETE),
        })
    }
}

/// Called when the executor has started a statement: each INSERT, UPDATE or DELETE in it (the
/// statement's own, and those of its WITH clauses) whose target qualifies has its records
/// written by the guards. Not for INSERT ... ON CONFLICT (the guard of an INSERT runs before the
/// conflict is found: the row may not be inserted, or be an UPDATE of another row) and not for
/// MERGE; their statements keep the AFTER trigger.
///
/// # Safety
///
/// `query` is the query the executor has just started (ExecutorStart done, not EXPLAIN only).
pub(crate) unsafe fn direct_statement(query: *mut pg_sys::QueryDesc) {
    // SAFETY: a started query's plan state tree and executor state are valid until it ends.
    unsafe {
        let estate = (*query).estate;
        let planned = (*query).plannedstmt;
        if estate.is_null()
            || planned.is_null()
            || ((*query).operation == pg_sys::CmdType::CMD_SELECT && !(*planned).hasModifyingCTE)
        {
            return; // a read: nothing to look at (reads are the hot path of every tenant page)
        }
        direct_node((*query).planstate);
        let subplans = (*estate).es_subplanstates;
        if !subplans.is_null() {
            for i in 0..(*subplans).length as usize {
                direct_node((*(*subplans).elements.add(i)).ptr_value.cast());
            }
        }
    }
}

/// # Safety
///
/// `node` is NULL or a plan state node of a started query.
unsafe fn direct_node(node: *mut pg_sys::PlanState) {
    // SAFETY: a ModifyTableState's plan is a ModifyTable, and it holds mt_nrels result
    // relations; each one's relation is open and its trigger list is its own copy, which only
    // this statement uses.
    unsafe {
        if node.is_null() || (*node).type_ != pg_sys::NodeTag::T_ModifyTableState {
            return;
        }
        let mt = node.cast::<pg_sys::ModifyTableState>();
        let plan = (*node).plan.cast::<pg_sys::ModifyTable>();
        if plan.is_null() || (*plan).onConflictAction != pg_sys::OnConflictAction::ONCONFLICT_NONE {
            return;
        }
        let op = (*mt).operation;
        if !matches!(
            op,
            pg_sys::CmdType::CMD_INSERT | pg_sys::CmdType::CMD_UPDATE | pg_sys::CmdType::CMD_DELETE
        ) {
            return;
        }
        for i in 0..(*mt).mt_nrels.max(0) as usize {
            let rri = (*mt).resultRelInfo.add(i);
            let td = (*rri).ri_TrigDesc;
            let rel = (*rri).ri_RelationDesc;
            if td.is_null() || rel.is_null() {
                continue;
            }
            let relid = (*rel).rd_id;
            let (generation, known) = DIRECT.with_borrow(|(g, m)| (*g, m.get(&relid).copied()));
            let direct = match known {
                Some(known) => known,
                None => {
                    let found = direct_for(rel);
                    DIRECT.with_borrow_mut(|(g, m)| {
                        if *g == generation {
                            m.insert(relid, found);
                        }
                    });
                    found
                }
            };
            if let Some(d) = direct {
                take_over(td, &d, op);
            }
        }
    }
}

/// In one statement's copy of a table's trigger list: the guard becomes the guard that also
/// records, and the AFTER trigger is off. Nothing is changed unless the copy holds the triggers
/// `d` describes, as they were.
///
/// # Safety
///
/// `td` is the trigger list of a result relation of a started statement, not yet fired.
unsafe fn take_over(td: *mut pg_sys::TriggerDesc, d: &Direct, op: pg_sys::CmdType::Type) {
    let (guard, event) = match op {
        pg_sys::CmdType::CMD_INSERT if d.insert => (d.row_guard, INSERT),
        pg_sys::CmdType::CMD_DELETE if d.delete => (d.row_guard, DELETE),
        pg_sys::CmdType::CMD_UPDATE if d.update => (d.update_guard, UPDATE),
        _ => return,
    };
    // SAFETY: the caller's trigger list; its triggers are modified in place, before any fired
    // (the function of a trigger is looked up at its first call).
    unsafe {
        let all = triggers(td);
        let Some(g) = all.iter().position(|t| t.tgoid == guard.0) else {
            return;
        };
        let Some(l) = all.iter().position(|t| t.tgoid == d.log_trigger) else {
            return;
        };
        if all[g].tgfoid != guard.1 || all[l].tgfoid != d.log_fn || all[l].tgenabled == DISABLED {
            return;
        }
        all[g].tgfoid = guard.2;
        all[l].tgenabled = DISABLED;
        // The queue is skipped altogether when no other AFTER ROW trigger of this event is left.
        let others = all.iter().any(|t| {
            t.tgtype & (ROW | BEFORE | INSTEAD) == ROW
                && t.tgtype & event != 0
                && t.tgenabled != DISABLED
        });
        match event {
            INSERT => (*td).trig_insert_after_row = others,
            UPDATE => (*td).trig_update_after_row = others,
            _ => (*td).trig_delete_after_row = others,
        }
    }
}

/// The guards that record run only where [`take_over`] put them: in a statement's copy of the
/// trigger list, for a trigger whose catalog entry runs the plain guard. Attached by CREATE
/// TRIGGER (only a superuser could: EXECUTE is revoked), they would record beside the AFTER
/// trigger.
pub(crate) fn check_taken_over(trigger: &PgTrigger<'_>) -> crate::errors::Result<()> {
    let t = trigger.trigger();
    // SAFETY: the firing trigger's relation is open; its relcache trigger list is the catalog's.
    let catalog = unsafe { triggers((*trigger.trigger_data().tg_relation).trigdesc) }
        .iter()
        .find(|c| c.tgoid == t.tgoid)
        .map(|c| c.tgfoid);
    match catalog {
        Some(f) if f != t.tgfoid => Ok(()),
        _ => Err(StewardError::forbidden(
            format!(
                "trigger {} runs a function of steward's that only steward attaches, for one \
                 statement at a time",
                trigger.name().unwrap_or("?")
            ),
            "Drop the trigger; steward.govern() attaches the table's triggers.",
        )),
    }
}
