//! The change log's outbox face: domain events and event schemas.
//!
//! Row events need nothing here: the audit trigger's record is the event (`steward.outbox` is
//! a view over the same change log). This module adds `steward.emit` (an explicit domain event,
//! validated against the JSON Schema registered for its type), `register_event_type`, and the
//! checks behind the consumer functions (written in SQL, sql/outbox.sql). Waking consumers at
//! commit is `wakeups`' work.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use pgrx::prelude::*;
use pgrx::{pg_sys, IntoDatum, JsonB, Uuid};

use crate::audit::{with_cell, PRUNING};
use crate::changelog::{text, Col, Record};
use crate::errors::{or_raise, Result, StewardError};
use crate::tenancy;

/// The schema in force for an event type: its highest registered version, compiled.
type Registered = Option<(i32, Rc<jsonschema::Validator>)>;

thread_local! {
    /// Compiled schemas by event type; emptied when steward.event_types changes.
    static SCHEMAS: RefCell<HashMap<String, Registered>> = RefCell::new(HashMap::new());
}

/// A relation's cache entry was invalidated (steward's one relcache callback, catalog.rs, calls
/// this): the schema cache goes when steward.event_types changes.
pub(crate) fn relcache_invalidated(relid: pg_sys::Oid) {
    if relid == pg_sys::InvalidOid || crate::catalog::known(c"event_types") == Some(relid) {
        SCHEMAS.with_borrow_mut(HashMap::clear);
    }
}

/// Event types are names such as `invoice.paid`; `steward.` is steward's own.
fn check_event_type(event_type: &str, function: &str) -> Result<()> {
    let ok = !event_type.is_empty()
        && event_type.len() <= 128
        && event_type
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && !event_type.starts_with('.')
        && !event_type.ends_with('.');
    if !ok {
        return Err(StewardError::bad_argument(
            format!("{function}: event type \"{event_type}\" is not a valid name"),
            "Use letters, digits, '_', '-' and '.', at most 128 characters, e.g. 'invoice.paid'.",
        ));
    }
    if event_type
        .get(..8)
        .is_some_and(|p| p.eq_ignore_ascii_case("steward."))
    {
        return Err(StewardError::bad_argument(
            format!("{function}: event type \"{event_type}\" is reserved"),
            "Event types under 'steward.' are emitted by steward itself; choose another prefix.",
        ));
    }
    Ok(())
}

/// A governed table's row events are steward's to write: `emit()` may not use their names, or a
/// consumer could not tell a forged `invoices.updated` (any payload, from any role that can
/// emit) from a real one. The names are those the tables' log triggers use
/// (`steward.governed.event_name`), for the tables whose row events are on.
fn check_not_row_event(event_type: &str) -> Result<()> {
    let Some((table, action)) = event_type.rsplit_once('.') else {
        return Ok(());
    };
    if !matches!(action, "created" | "updated" | "deleted") {
        return Ok(());
    }
    let emitter = tenancy::as_extension_owner(|| {
        crate::reads::one::<String>(
            "SELECT g.rel::pg_catalog.regclass::text FROM steward.governed g
              WHERE g.events AND g.event_name = $1
              ORDER BY g.rel LIMIT 1",
            &[table.into()],
        )
    });
    match emitter {
        Ok(None) => Ok(()),
        Ok(Some(rel)) => Err(StewardError::bad_argument(
            format!("steward.emit: event type \"{event_type}\" is a row event of {rel}"),
            "Row events are written by steward when the table's rows change; name a domain \
             event otherwise (e.g. 'invoice.approved'), or govern the table with events => \
             false and emit your own.",
        )),
        Err(e) => Err(StewardError::internal(format!(
            "steward: reading the governed tables failed: {e}"
        ))),
    }
}

fn event_types_oid() -> pg_sys::Oid {
    crate::catalog::relation(c"event_types")
}

fn compile(event_type: &str, schema: &serde_json::Value) -> Result<jsonschema::Validator> {
    jsonschema::validator_for(schema).map_err(|e| {
        StewardError::bad_argument(
            format!("event type \"{event_type}\": the JSON Schema is not valid: {e}"),
            "Pass a JSON Schema document (draft 2020-12, 2019-09, 7, 6 or 4); remote $refs are \
             not fetched.",
        )
    })
}

/// The schema in force for `event_type`, if one is registered.
fn registered(event_type: &str) -> Result<Registered> {
    event_types_oid();
    if let Some(found) = SCHEMAS.with_borrow(|m| m.get(event_type).cloned()) {
        return Ok(found);
    }
    let row = tenancy::as_extension_owner(|| {
        crate::reads::two::<i32, JsonB>(
            "SELECT schema_version, json_schema FROM steward.event_types
              WHERE event_type = $1 ORDER BY schema_version DESC LIMIT 1",
            &[event_type.into()],
        )
    });
    let found = match row {
        Ok((Some(version), Some(schema))) => {
            Some((version, Rc::new(compile(event_type, &schema.0)?)))
        }
        Ok(_) => None,
        Err(e) => crate::errors::bug(format!("steward: reading steward.event_types failed: {e}")),
    };
    SCHEMAS.with_borrow_mut(|m| m.insert(event_type.to_string(), found.clone()));
    Ok(found)
}

/// A jsonb argument kept as Postgres gave it: steward stores an event's payload exactly, without
/// a round trip through Rust's JSON (which would bound its nesting and, without care, alter its
/// numbers). It is parsed only to validate it against a registered schema.
pub struct RawJsonb(pg_sys::Datum);

impl pgrx::FromDatum for RawJsonb {
    /// # Safety
    ///
    /// As [`pgrx::FromDatum::from_polymorphic_datum`]: `datum` is a jsonb datum unless `is_null`.
    unsafe fn from_polymorphic_datum(
        datum: pg_sys::Datum,
        is_null: bool,
        _typoid: pg_sys::Oid,
    ) -> Option<Self> {
        // SAFETY: a jsonb argument; detoasted here (a no-op for a plain value) so that the
        // record never holds a pointer into another table's TOAST.
        (!is_null).then(|| unsafe {
            RawJsonb(pg_sys::Datum::from(pg_sys::pg_detoast_datum_packed(
                datum.cast_mut_ptr(),
            )))
        })
    }
}

// SAFETY: the argument is unboxed through FromDatum, as pgrx does for its own types.
unsafe impl<'fcx> pgrx::callconv::ArgAbi<'fcx> for RawJsonb {
    /// # Safety
    ///
    /// As [`pgrx::callconv::ArgAbi::unbox_arg_unchecked`]: `arg` is an argument of SQL type jsonb.
    unsafe fn unbox_arg_unchecked(arg: pgrx::callconv::Arg<'_, 'fcx>) -> Self {
        let index = arg.index();
        // SAFETY: called by pgrx with an argument of this function, whose SQL type is jsonb
        // (RawJsonb's SqlTranslatable).
        unsafe { arg.unbox_arg_using_from_datum() }
            .unwrap_or_else(|| crate::errors::bug(format!("argument {index} must not be null")))
    }
}

// SAFETY: it is a jsonb in SQL, and only ever an argument.
unsafe impl pgrx::pgrx_sql_entity_graph::metadata::SqlTranslatable for RawJsonb {
    const TYPE_IDENT: &'static str = pgrx::pgrx_resolved_type!(RawJsonb);
    const TYPE_ORIGIN: pgrx::pgrx_sql_entity_graph::metadata::TypeOrigin =
        pgrx::pgrx_sql_entity_graph::metadata::TypeOrigin::External;
    const ARGUMENT_SQL: std::result::Result<
        pgrx::pgrx_sql_entity_graph::metadata::SqlMappingRef,
        pgrx::pgrx_sql_entity_graph::metadata::ArgumentError,
    > = Ok(pgrx::pgrx_sql_entity_graph::metadata::SqlMappingRef::literal("jsonb"));
    const RETURN_SQL: std::result::Result<
        pgrx::pgrx_sql_entity_graph::metadata::ReturnsRef,
        pgrx::pgrx_sql_entity_graph::metadata::ReturnsError,
    > = Ok(pgrx::pgrx_sql_entity_graph::metadata::ReturnsRef::One(
        pgrx::pgrx_sql_entity_graph::metadata::SqlMappingRef::literal("jsonb"),
    ));
}

impl RawJsonb {
    /// The jsonb datum, detoasted.
    pub fn datum(&self) -> pg_sys::Datum {
        self.0
    }

    /// The value as JSON: numbers keep their digits (serde_json's arbitrary precision);
    /// nesting deeper than Rust's JSON parser takes (128 levels) is an error, which each caller
    /// turns into its own clear one.
    fn json(&self) -> std::result::Result<serde_json::Value, serde_json::Error> {
        // SAFETY: a detoasted jsonb datum.
        serde_json::from_str(&unsafe { crate::changelog::jsonb_text(self.0) })
    }
}

/// Header names steward sets itself from the context and annotations.
const OWN_HEADERS: [&str; 4] = ["actor", "reason", "request_id", "traceparent"];

fn emit_event(
    event_type: &str,
    aggregate_type: Option<&str>,
    aggregate_id: Option<&str>,
    payload: RawJsonb,
    headers: Option<RawJsonb>,
) -> Result<Uuid> {
    let context = tenancy::context()?;
    check_event_type(event_type, "steward.emit")?;
    check_not_row_event(event_type)?;
    let parsed = match &headers {
        None => None,
        Some(h) => Some(h.json().map_err(|e| {
            StewardError::bad_argument(
                format!("steward.emit: headers cannot be read ({e})"),
                "Headers are a flat JSON object of short values, e.g. '{\"source\": \"billing\"}'.",
            )
        })?),
    };
    let headers = match parsed {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Object(map)) => {
            if let Some(own) = OWN_HEADERS.iter().find(|k| map.contains_key(**k)) {
                return Err(StewardError::bad_argument(
                    format!("steward.emit: header \"{own}\" is set by steward"),
                    "actor comes from the tenant context, reason, request_id and traceparent \
                     from steward.annotate(); leave them out of headers.",
                ));
            }
            // Stored as given, not as Rust re-serialized it.
            (!map.is_empty()).then(|| headers.expect("parsed from it").0)
        }
        Some(other) => {
            return Err(StewardError::bad_argument(
                format!("steward.emit: headers must be a JSON object, not {other}"),
                "Pass headers as a jsonb object, e.g. '{\"source\": \"billing\"}'.",
            ))
        }
    };
    let schema_version = match registered(event_type)? {
        Some((version, validator)) => {
            let value = payload.json().map_err(|e| StewardError::SchemaViolation {
                event_type: event_type.to_string(),
                schema_version: version,
                path: String::new(),
                problem: format!(
                    "the payload cannot be validated ({e}): at most 128 levels of nesting"
                ),
            })?;
            if let Err(e) = validator.validate(&value) {
                return Err(StewardError::SchemaViolation {
                    event_type: event_type.to_string(),
                    schema_version: version,
                    path: e.instance_path().to_string(),
                    problem: e.to_string(),
                });
            }
            Some(version)
        }
        None => None,
    };
    let mut record = Record::new(&context);
    record.set(Col::Action, text(Some("EVENT")));
    record.set(Col::EventType, text(Some(event_type)));
    record.set(Col::AggregateType, text(aggregate_type));
    record.set(Col::AggregateId, text(aggregate_id));
    record.set(Col::SchemaVersion, schema_version.into_datum());
    record.set(Col::NewRow, Some(payload.0));
    record.set(Col::Headers, headers);
    record.set(Col::Audited, false.into_datum());
    record.set(Col::Evented, true.into_datum());
    record.insert()
}

/// An explicit domain event in the caller's transaction, under its tenant. Returns its
/// event id (a UUIDv7).
#[pg_extern(volatile, parallel_unsafe)]
fn emit(
    event_type: Option<&str>,
    aggregate_type: Option<&str>,
    aggregate_id: Option<&str>,
    payload: Option<RawJsonb>,
    headers: default!(Option<RawJsonb>, "'{}'"),
) -> Uuid {
    use crate::errors::required;
    or_raise((|| {
        emit_event(
            required(event_type, "steward.emit", "event_type")?,
            aggregate_type,
            aggregate_id,
            required(payload, "steward.emit", "payload")?,
            headers,
        )
    })())
}

fn register(event_type: &str, schema_version: i32, json_schema: JsonB) -> Result<()> {
    check_event_type(event_type, "steward.register_event_type")?;
    if schema_version < 1 {
        return Err(StewardError::bad_argument(
            format!(
                "steward.register_event_type: schema_version of \"{event_type}\" must be 1 or \
                 more, not {schema_version}"
            ),
            "Number a type's schemas 1, 2, 3, ...; emit() validates against the highest.",
        ));
    }
    compile(event_type, &json_schema.0)?;
    let existing = crate::reads::one::<JsonB>(
        "SELECT json_schema FROM steward.event_types WHERE event_type = $1 AND schema_version = $2",
        &[event_type.into(), schema_version.into()],
    );
    match existing {
        Ok(Some(old)) if old.0 == json_schema.0 => Ok(()),
        Ok(Some(_)) => Err(StewardError::bad_argument(
            format!(
                "steward.register_event_type: \"{event_type}\" version {schema_version} is \
                 already registered with another schema"
            ),
            "A registered version never changes (consumers may rely on it): register the new \
             schema as the next version.",
        )),
        Ok(None) => {
            Spi::run_with_args(
                "INSERT INTO steward.event_types (event_type, schema_version, json_schema)
                 VALUES ($1, $2, $3)",
                &[event_type.into(), schema_version.into(), json_schema.into()],
            )
            .unwrap_or_else(|e| {
                crate::errors::bug(format!("steward: registering the event type failed: {e}"))
            });
            Ok(())
        }
        Err(e) => crate::errors::bug(format!("steward: reading steward.event_types failed: {e}")),
    }
}

/// Registers a JSON Schema for an event type; later `emit`s of that type are validated
/// against the highest registered version (ST422).
#[pg_extern(volatile, parallel_unsafe)]
fn register_event_type(
    event_type: Option<&str>,
    schema_version: Option<i32>,
    json_schema: Option<JsonB>,
) {
    use crate::errors::required;
    const F: &str = "steward.register_event_type";
    or_raise((|| {
        register(
            required(event_type, F, "event_type")?,
            required(schema_version, F, "schema_version")?,
            required(json_schema, F, "json_schema")?,
        )
    })())
}

/// Which tenant's events the caller may consume: its context's tenant, or every tenant (NULL)
/// for a trusted role or superuser outside any tenant. ST001 for anyone else.
#[pg_extern(stable, parallel_restricted)]
fn _internal_consumer_scope() -> Option<Uuid> {
    or_raise(consumer_scope())
}

fn consumer_scope() -> Result<Option<Uuid>> {
    match tenancy::context() {
        Ok(c) => Ok(Some(c.tenant)),
        Err(_) if tenancy::caller_trusted() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether the caller may see a consumer of `tenant` (NULL: all tenants); never raises.
#[pg_extern(stable, parallel_restricted)]
fn _internal_consumer_visible(tenant: Option<Uuid>) -> bool {
    matches!(consumer_scope(), Ok(scope) if scope == tenant)
}

/// A row event's aggregate id: the key's value when the key has one column (`{"id": 42}` →
/// `42`), else the key as JSON text.
#[pg_extern(immutable, parallel_safe, strict)]
fn _internal_aggregate_id(row_key: RawJsonb) -> String {
    // A key nested deeper than Rust's parser takes is shown as its JSON text: an event of such
    // a row must never make poll() fail for the consumers that reach it.
    let Ok(key) = row_key.json() else {
        // SAFETY: a detoasted jsonb datum.
        return unsafe { crate::changelog::jsonb_text(row_key.datum()) };
    };
    match &key {
        serde_json::Value::Object(map) if map.len() == 1 => match map.values().next() {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
            None => String::new(),
        },
        other => other.to_string(),
    }
}

/// Version-1 calling convention record for [`steward_event_headers`].
#[no_mangle]
pub extern "C" fn pg_finfo_steward_event_headers() -> &'static pg_sys::Pg_finfo_record {
    static V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

/// `steward._internal_headers(headers jsonb, actor text, reason text, request_id text,
/// traceparent text) → jsonb`: an event's headers, as the outbox face shows them, for every
/// event a consumer reads. It forms the object of the non-NULL context values in one pass
/// (`jsonb_build_object`, `jsonb_strip_nulls` and `||` made three), and merges emit()'s own
/// headers when there are any (they never hold these four keys: emit refuses them).
///
/// # Safety
///
/// Called by Postgres only, through fmgr, with its FunctionCallInfo (the function's SQL
/// declaration in sql/outbox.sql fixes the argument types).
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn steward_event_headers(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    const KEYS: [&str; 4] = ["actor", "reason", "request_id", "traceparent"];
    // SAFETY: called by fmgr with five arguments, as the SQL declaration says; text arguments are
    // detoasted before their bytes are read, and the pushJsonbValue calls build one object in
    // this memory context.
    unsafe {
        let args = (*fcinfo).args.as_slice(5);
        let mut state: *mut pg_sys::JsonbParseState = std::ptr::null_mut();
        pg_sys::pushJsonbValue(
            &mut state,
            pg_sys::JsonbIteratorToken::WJB_BEGIN_OBJECT,
            std::ptr::null_mut(),
        );
        for (key, arg) in KEYS.iter().zip(&args[1..]) {
            if arg.isnull {
                continue;
            }
            let text = pg_sys::pg_detoast_datum_packed(arg.value.cast_mut_ptr());
            let mut k = string_value(key.as_ptr().cast_mut().cast(), key.len());
            let mut v = string_value(
                pgrx::varlena::vardata_any(text).cast_mut(),
                pgrx::varlena::varsize_any_exhdr(text),
            );
            pg_sys::pushJsonbValue(&mut state, pg_sys::JsonbIteratorToken::WJB_KEY, &mut k);
            pg_sys::pushJsonbValue(&mut state, pg_sys::JsonbIteratorToken::WJB_VALUE, &mut v);
        }
        let own = pg_sys::pushJsonbValue(
            &mut state,
            pg_sys::JsonbIteratorToken::WJB_END_OBJECT,
            std::ptr::null_mut(),
        );
        let own = pg_sys::Datum::from(pg_sys::JsonbValueToJsonb(own));
        if args[0].isnull {
            return own;
        }
        pg_sys::OidFunctionCall2Coll(
            pg_sys::Oid::from(pg_sys::F_JSONB_CONCAT),
            pg_sys::InvalidOid,
            args[0].value,
            own,
        )
    }
}

fn string_value(ptr: *mut std::ffi::c_char, len: usize) -> pg_sys::JsonbValue {
    pg_sys::JsonbValue {
        type_: pg_sys::jbvType::jbvString,
        val: pg_sys::JsonbValue__bindgen_ty_1 {
            string: pg_sys::JsonbValue__bindgen_ty_1__bindgen_ty_1 {
                len: len as std::ffi::c_int,
                val: ptr,
            },
        },
    }
}

/// One transaction of a batch: its id, how many events the consumer reads of it, and the first
/// and last of their ids.
#[derive(Clone, Copy)]
struct Member {
    txid: i64,
    events: i64,
    first: i64,
    last: i64,
}

impl Member {
    /// Whether `event_id` lies between this transaction's first and last event ids (the event
    /// may be this transaction's).
    fn spans(&self, event_id: i64) -> bool {
        self.first <= event_id && event_id <= self.last
    }
}

/// A consumer's batch in delivery order: its transactions ordered by their last event's id
/// (ADR 004), and where each transaction stands in that order.
struct Batch {
    order: Vec<Member>,
    index: HashMap<i64, usize>,
}

/// Batches kept: (user, scope, done, batch) → the batch. A consumer's batch is fixed once its
/// snapshot is stored, so its order is computed once per backend; the user is part of the key
/// because the log's row-level security decides what a caller's query reads.
type BatchKey = (pg_sys::Oid, Option<String>, String, String);

/// At most this many batches are kept per backend (a relay uses one or two consumers).
const KEPT_BATCHES: usize = 8;

thread_local! {
    static BATCHES: RefCell<HashMap<BatchKey, Rc<Batch>>> = RefCell::new(HashMap::new());
}

fn batch_order(scope: Option<Uuid>, done: &str, batch: &str) -> Result<Rc<Batch>> {
    // SAFETY: reads the current user id of this backend.
    let user = unsafe { pg_sys::GetUserId() };
    let key = (
        user,
        scope.map(|u| u.to_string()),
        done.to_string(),
        batch.to_string(),
    );
    if let Some(found) = BATCHES.with_borrow(|b| b.get(&key).cloned()) {
        return Ok(found);
    }
    let order = Spi::connect(|client| {
        let rows = client.select(
            "SELECT e.txid::text::bigint, pg_catalog.count(*), pg_catalog.min(e.id),
                    pg_catalog.max(e.id)
               FROM steward._events_between($1, $2::pg_snapshot, $3::pg_snapshot) e
              GROUP BY e.txid
              ORDER BY pg_catalog.max(e.id)",
            None,
            &[scope.into(), done.into(), batch.into()],
        )?;
        let mut order = Vec::with_capacity(rows.len());
        for row in rows {
            order.push(Member {
                txid: row.get::<i64>(1)?.unwrap_or_default(),
                events: row.get::<i64>(2)?.unwrap_or_default(),
                first: row.get::<i64>(3)?.unwrap_or_default(),
                last: row.get::<i64>(4)?.unwrap_or_default(),
            });
        }
        Ok::<_, pgrx::spi::Error>(order)
    })
    .map_err(|e| {
        StewardError::internal(format!("steward: reading a consumer's batch failed: {e}"))
    })?;
    let index = order.iter().enumerate().map(|(i, m)| (m.txid, i)).collect();
    let found = Rc::new(Batch { order, index });
    BATCHES.with_borrow_mut(|b| {
        if b.len() >= KEPT_BATCHES {
            b.clear();
        }
        b.insert(key, found.clone());
    });
    Ok(found)
}

/// The batch a consumer's snapshots name (None when either is NULL), and `after` as a transaction
/// id: what the three batch functions below take.
fn batch_of(
    scope: Option<Uuid>,
    done: Option<&str>,
    batch: Option<&str>,
    after: Option<&str>,
) -> Option<(Rc<Batch>, Option<i64>)> {
    let (done, batch) = (done?, batch?);
    let after = after.and_then(|a| a.parse::<i64>().ok());
    let order = or_raise(crate::errors::keeping_codes(|| {
        batch_order(scope, done, batch)
    }));
    Some((order, after))
}

/// The transactions after `after` (from the first when None or not in the batch), until they
/// hold `budget` events.
fn next_in(batch: &Batch, after: Option<i64>, budget: i64) -> impl Iterator<Item = &Member> {
    let start = after.and_then(|t| batch.index.get(&t)).map_or(0, |i| i + 1);
    let mut taken = 0i64;
    batch.order[start.min(batch.order.len())..]
        .iter()
        .take_while(move |m| {
            let more = taken < budget;
            taken = taken.saturating_add(m.events);
            more
        })
}

/// `steward._internal_batch_next(scope, done, batch, after, budget)`: see sql/outbox.sql.
#[pg_extern(stable, parallel_unsafe)]
fn _internal_batch_next(
    scope: Option<Uuid>,
    done: Option<&str>,
    batch: Option<&str>,
    after: Option<&str>,
    budget: Option<i64>,
) -> TableIterator<'static, (name!(txid, i64), name!(events, i64))> {
    let Some((order, after)) = batch_of(scope, done, batch, after) else {
        return TableIterator::new(Vec::new());
    };
    let next: Vec<(i64, i64)> = next_in(&order, after, budget.unwrap_or(100).max(1))
        .map(|m| (m.txid, m.events))
        .collect();
    TableIterator::new(next)
}

/// `steward._internal_batch_behind(scope, done, batch, after, event_id)`: the transactions up to
/// and including `after` whose event ids span `event_id`: where ack() finds an event it is given
/// again, already behind the position (a no-op then).
#[pg_extern(stable, parallel_unsafe)]
fn _internal_batch_behind(
    scope: Option<Uuid>,
    done: Option<&str>,
    batch: Option<&str>,
    after: Option<&str>,
    event_id: Option<i64>,
) -> Vec<i64> {
    let Some(((order, Some(after)), event_id)) = batch_of(scope, done, batch, after).zip(event_id)
    else {
        return Vec::new();
    };
    let Some(&upto) = order.index.get(&after) else {
        return Vec::new();
    };
    order.order[..=upto]
        .iter()
        .filter(|m| m.spans(event_id))
        .map(|m| m.txid)
        .collect()
}

/// `steward._internal_batch_find(scope, done, batch, after, event_id)`: the transactions after
/// `after`, among those `poll()` can have returned (10,000 events' worth), whose event ids span
/// `event_id`: where ack() looks for the event it is given (the log has no index on the id).
#[pg_extern(stable, parallel_unsafe)]
fn _internal_batch_find(
    scope: Option<Uuid>,
    done: Option<&str>,
    batch: Option<&str>,
    after: Option<&str>,
    event_id: Option<i64>,
) -> Vec<i64> {
    let Some(((order, after), event_id)) = batch_of(scope, done, batch, after).zip(event_id) else {
        return Vec::new();
    };
    next_in(&order, after, 10_000)
        .filter(|m| m.spans(event_id))
        .map(|m| m.txid)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Pruning: what no face needs any more.
// ---------------------------------------------------------------------------------------------

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
