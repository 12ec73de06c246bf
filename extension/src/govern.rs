//! Governed tables: the row triggers that keep rows inside their tenant.
//!
//! `steward.govern()` (hand-written SQL in `sql/govern.sql`) enables and forces row-level security,
//! writes the policies, sets the tenant column's default to `steward.current_tenant()` and attaches
//! the triggers below. The triggers are the per-row hot path: no SQL runs in them, the tenant comes
//! from backend memory, and the columns they rely on are found once per backend (see [`Shape`]).
//!
//! A table owner can change the table after `govern` (retype, rename or drop a column, change the
//! primary key). The triggers never trust what `govern` saw: [`shape`] checks the table as it is
//! now, and a table that no longer fits is refused with ST400 naming the table and the column,
//! never read or written with the wrong type.
//!
//! steward's own writes to a governed table (the soft delete's UPDATE, `steward.restore`) run as
//! the caller, never as a more privileged role: the table owner's triggers, defaults, checks and
//! index expressions fire inside them, and must not gain anything by it.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::CStr;

use pgrx::prelude::*;
use pgrx::{pg_sys, AllocatedByPostgres, IntoDatum, PgTupleDesc, Uuid};

use crate::audit::with_cell;
use crate::errors::{or_raise, StewardError};

use crate::{plans, tenancy};

pub(crate) fn qualified_name(trigger: &PgTrigger<'_>) -> String {
    pgrx::spi::quote_qualified_identifier(
        trigger.table_schema().unwrap_or_default(),
        trigger.table_name().unwrap_or_default(),
    )
}

fn show(u: Option<Uuid>) -> String {
    u.map(|u| u.to_string()).unwrap_or_else(|| "NULL".into())
}

/// UPDATE and DELETE may only touch rows of the context's tenant. Row-level security already
/// hides other rows from tenant roles; this also holds where RLS does not apply (a superuser's
/// or BYPASSRLS role's SECURITY DEFINER function, a view owned by one).
fn check_own_row(
    trigger: &PgTrigger<'_>,
    row: Option<Uuid>,
    verb: &str,
) -> crate::errors::Result<()> {
    let tenant = tenancy::require_tenant()?;
    if row != Some(tenant) {
        // Whose row it is is not said: a message never names or confirms another tenant.
        return Err(StewardError::forbidden(
            format!(
                "cannot {verb} a row of another tenant in {} from tenant {tenant}",
                qualified_name(trigger)
            ),
            "Rows of another tenant are out of reach; enter that tenant to change them.",
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The table as it is now: what the triggers rely on, checked before they rely on it.
// ---------------------------------------------------------------------------------------------

/// Where a governed table keeps what steward's triggers read and write, found by name in the
/// table as it is now (1-based attribute numbers), and checked: each column has the type steward
/// reads and writes, is not generated, and the primary key is the one `govern` saw.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shape {
    pub tenant: Option<usize>,
    pub version: Option<usize>,
    pub deleted_at: Option<usize>,
}

/// What one trigger expects of its table (from its arguments, as `govern` wrote them).
pub(crate) struct Expect<'a> {
    pub tenant: Option<&'a str>,
    pub version: Option<&'a str>,
    pub deleted_at: Need,
    pub pk: Vec<&'a str>,
}

/// Whether a trigger needs the soft-delete column.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    No,
    /// Used if it is there (as timestamptz), else not.
    IfPresent,
    Required,
}

/// Checked shapes by trigger OID, with the table they belong to. An entry goes when the table's
/// relcache entry is invalidated (any ALTER TABLE, index or constraint change); `generation`
/// moves on with every invalidation, so that a lookup an invalidation overtook (reading the
/// table can process invalidations) does not store what it read.
#[derive(Default)]
struct Shapes {
    generation: u64,
    by_trigger: HashMap<pg_sys::Oid, (pg_sys::Oid, Shape)>,
}

thread_local! {
    static SHAPES: RefCell<Shapes> = RefCell::new(Shapes::default());
    /// The table steward itself is updating (soft delete, restore), while it does: its
    /// policies let that statement, run as the caller, reach the tenant's deleted rows, and the
    /// update guard lets it through `version_required`.
    static OWN_WRITE: Cell<pg_sys::Oid> = const { Cell::new(pg_sys::InvalidOid) };
    /// The row steward's soft delete is marking (block, offset), while it does; None for a
    /// restore, which finds its row by key.
    static OWN_ROW: Cell<Option<(u32, u16)>> = const { Cell::new(None) };
}

/// A relation's cache entry was invalidated (steward's one relcache callback, catalog.rs, calls
/// this): that table's shapes go. No borrow of SHAPES is ever held across a call into
/// Postgres, so this cannot collide.
pub(crate) fn relcache_invalidated(relid: pg_sys::Oid) {
    SHAPES.with_borrow_mut(|s| {
        s.generation += 1;
        if relid == pg_sys::InvalidOid {
            s.by_trigger.clear();
        } else {
            s.by_trigger.retain(|_, (rel, _)| *rel != relid);
        }
    });
}

fn changed(table: &str, what: String) -> StewardError {
    StewardError::bad_argument(
        format!("governed table {table} has changed since steward.govern: {what}"),
        format!(
            "Undo the change, or have a DBA run steward.govern('{table}', ...) again with the \
             options shown in steward.governed_tables, so that steward governs the table as it \
             is now."
        ),
    )
}

/// The non-dropped column `name` of `tupdesc`: its (1-based) attribute number and its attribute.
///
/// # Safety
///
/// `tupdesc` is a valid descriptor that outlives `'a` (of a relation the caller holds open).
pub(crate) unsafe fn column<'a>(
    tupdesc: pg_sys::TupleDesc,
    name: &str,
) -> Option<(usize, &'a pg_sys::FormData_pg_attribute)> {
    // SAFETY: tupdesc is a valid descriptor (of a relation the caller holds open) and i stays
    // below natts.
    unsafe {
        (0..(*tupdesc).natts as usize).find_map(|i| {
            let attr = &*(*tupdesc).attrs.as_ptr().add(i);
            (!attr.attisdropped
                && CStr::from_ptr(attr.attname.data.as_ptr()).to_bytes() == name.as_bytes())
            .then_some((i + 1, attr))
        })
    }
}

/// A type's name as SQL shows it.
pub(crate) fn type_name(oid: pg_sys::Oid) -> String {
    // SAFETY: format_type_be returns a palloc'd C string for any type OID, copied out here.
    unsafe {
        CStr::from_ptr(pg_sys::format_type_be(oid))
            .to_string_lossy()
            .into_owned()
    }
}

/// Checks one column steward reads or writes: present, of type `want`, not generated, and (for
/// the tenant column) not null.
///
/// # Safety
///
/// `tupdesc` is a valid descriptor of a relation the caller holds open.
unsafe fn checked_column(
    table: &str,
    tupdesc: pg_sys::TupleDesc,
    role: &str,
    name: &str,
    want: pg_sys::Oid,
    not_null: bool,
) -> crate::errors::Result<usize> {
    // SAFETY: tupdesc is the descriptor of a relation the caller holds open.
    let Some((attnum, attr)) = (unsafe { column(tupdesc, name) }) else {
        return Err(changed(
            table,
            format!("its {role} column \"{name}\" is gone"),
        ));
    };
    if attr.atttypid != want {
        return Err(changed(
            table,
            format!(
                "its {role} column \"{name}\" is {}, not {}",
                type_name(attr.atttypid),
                type_name(want)
            ),
        ));
    }
    if attr.attgenerated != 0 {
        return Err(changed(
            table,
            format!("its {role} column \"{name}\" is a generated column"),
        ));
    }
    if not_null && !attr.attnotnull {
        return Err(changed(
            table,
            format!("its {role} column \"{name}\" is nullable"),
        ));
    }
    Ok(attnum)
}

/// The table's shape as `trigger` needs it, checked; cached per trigger until the table changes.
pub(crate) fn shape<'a>(
    trigger: &'a PgTrigger<'a>,
    expect: impl FnOnce() -> Expect<'a>,
) -> crate::errors::Result<Shape> {
    let tgoid = trigger.trigger().tgoid;
    let (known, generation) =
        SHAPES.with_borrow(|s| (s.by_trigger.get(&tgoid).copied(), s.generation));
    if let Some((_, shape)) = known {
        return Ok(shape);
    }
    let rel = trigger.trigger_data().tg_relation;
    let table = qualified_name(trigger);
    // What the trigger expects is read from its arguments only on a miss (the hot path is a
    // lookup by trigger OID).
    // SAFETY: rel is the trigger's relation, open for the duration of the trigger call.
    let shape = unsafe { read_shape(rel, &table, &expect())? };
    // SAFETY: rel is the trigger's relation, open for the duration of the trigger call.
    let relid = unsafe { (*rel).rd_id };
    SHAPES.with_borrow_mut(|s| {
        if s.generation == generation {
            s.by_trigger.insert(tgoid, (relid, shape));
        }
    });
    Ok(shape)
}

/// # Safety
///
/// `rel` is an open relation (the firing trigger's) for the duration of the call.
unsafe fn read_shape(
    rel: pg_sys::Relation,
    table: &str,
    expect: &Expect<'_>,
) -> crate::errors::Result<Shape> {
    // SAFETY: rel is an open relation; its descriptor, constraints and indexes are read while it
    // stays open, indexes below the counts they come with.
    unsafe {
        let tupdesc = (*rel).rd_att;
        let tenant = expect
            .tenant
            .map(|name| checked_column(table, tupdesc, "tenant", name, pg_sys::UUIDOID, true))
            .transpose()?;
        let version = expect
            .version
            .map(|name| checked_column(table, tupdesc, "version", name, pg_sys::INT8OID, true))
            .transpose()?;
        let deleted_at = match expect.deleted_at {
            Need::Required => Some(checked_column(
                table,
                tupdesc,
                "soft-delete",
                "deleted_at",
                pg_sys::TIMESTAMPTZOID,
                false,
            )?),
            Need::IfPresent => column(tupdesc, "deleted_at")
                .filter(|(_, a)| a.atttypid == pg_sys::TIMESTAMPTZOID)
                .map(|(attnum, _)| attnum),
            Need::No => None,
        };
        // The primary key: the same columns govern named (their order does not matter: a key
        // is shown as a JSON object).
        let mut want = std::ptr::null_mut::<pg_sys::Bitmapset>();
        for name in &expect.pk {
            let Some((attnum, _)) = column(tupdesc, name) else {
                return Err(changed(
                    table,
                    format!("its primary key column \"{name}\" is gone"),
                ));
            };
            want = pg_sys::bms_add_member(
                want,
                attnum as i32 - pg_sys::FirstLowInvalidHeapAttributeNumber,
            );
        }
        if !expect.pk.is_empty() {
            let have = pg_sys::RelationGetIndexAttrBitmap(
                rel,
                pg_sys::IndexAttrBitmapKind::INDEX_ATTR_BITMAP_PRIMARY_KEY,
            );
            if have.is_null() {
                return Err(changed(table, "it has no primary key any more".into()));
            }
            if !pg_sys::bms_equal(want, have) {
                return Err(changed(
                    table,
                    format!("its primary key is no longer ({})", expect.pk.join(", ")),
                ));
            }
        }
        Ok(Shape {
            tenant,
            version,
            deleted_at,
        })
    }
}

/// The arguments a governed table's row triggers are given: one list, the same for the row
/// guard, the update guard and the log trigger, made by `steward._trigger_args` (sql/govern.sql)
/// and read here only. What the triggers know of the table as `govern` saw it; [`shape`] checks the
/// table as it is now against it.
pub(crate) struct Args<'a> {
    pub tenant_column: &'a str,
    /// None when the table is not versioned.
    pub version_column: Option<&'a str>,
    pub version_required: bool,
    pub soft_delete: bool,
    pub audited: bool,
    pub events: bool,
    /// Its name in its row events' types (`<event_name>.created`).
    pub event_name: &'a str,
    /// The primary key's columns.
    pub key: Vec<&'a str>,
}

/// The first argument: which layout follows. A table governed by a release that wrote another
/// layout has triggers this release cannot read; they refuse to run until it is governed again.
const ARGS_LAYOUT: &str = "steward:2";
/// Arguments before the key's columns.
const ARGS_FIXED: usize = 8;

impl<'a> Args<'a> {
    /// `t`'s arguments, or None when they are not in this release's layout.
    pub(crate) fn read(t: &'a pg_sys::Trigger) -> Option<Args<'a>> {
        let n = usize::try_from(t.tgnargs).ok()?;
        if n <= ARGS_FIXED || t.tgargs.is_null() {
            return None;
        }
        let arg = |i: usize| -> Option<&'a str> {
            // SAFETY: i is below tgnargs and tgargs is not NULL (checked above): each argument
            // is a NUL-terminated string of the trigger's cache entry, which outlives `t`.
            unsafe { CStr::from_ptr(*t.tgargs.add(i)) }.to_str().ok()
        };
        // Booleans as their text form ('t', 'f'), as format('%L', boolean) writes them.
        let flag = |i: usize| match arg(i) {
            Some("t") => Some(true),
            Some("f") => Some(false),
            _ => None,
        };
        if arg(0)? != ARGS_LAYOUT {
            return None;
        }
        let version = arg(2)?;
        Some(Args {
            tenant_column: arg(1)?,
            version_column: (!version.is_empty()).then_some(version),
            version_required: flag(3)?,
            soft_delete: flag(4)?,
            audited: flag(5)?,
            events: flag(6)?,
            event_name: arg(7)?,
            key: (ARGS_FIXED..n).map(arg).collect::<Option<Vec<_>>>()?,
        })
    }

    /// The firing trigger's arguments; ST400 when the table was governed by an earlier release
    /// and not since.
    pub(crate) fn of(trigger: &'a PgTrigger<'a>) -> crate::errors::Result<Args<'a>> {
        Args::read(trigger.trigger()).ok_or_else(|| {
            StewardError::bad_argument(
                format!(
                    "{} was governed by an earlier release of steward: its trigger {} has \
                     arguments this release does not read",
                    qualified_name(trigger),
                    trigger.name().unwrap_or("?")
                ),
                "Run ALTER EXTENSION steward UPDATE, which governs every table again (or SELECT \
                 steward.regovern() as a superuser).",
            )
        })
    }

    /// What a trigger with these arguments expects of its table.
    pub(crate) fn expect(&self, deleted_at: Need) -> Expect<'a> {
        Expect {
            tenant: Some(self.tenant_column),
            version: self.version_column,
            deleted_at,
            pk: self.key.clone(),
        }
    }
}

/// A row's primary key, for messages: `{"id": "42"}` (values in their text form). [`shape`]
/// checked the key's columns exist.
pub(crate) fn key_text(trigger: &PgTrigger<'_>, key: &[&str]) -> String {
    // The row the trigger fired for: the old row of an UPDATE or DELETE, the new row of an INSERT.
    let raw = trigger.trigger_data().tg_trigtuple;
    if raw.is_null() {
        return "{}".into();
    }
    // SAFETY: the trigger's relation is open for the duration of the trigger call.
    let tupdesc = unsafe { (*trigger.trigger_data().tg_relation).rd_att };
    let mut parts = Vec::new();
    for &column_name in key {
        // SAFETY: the tuple and descriptor are the trigger's own; the output function is the
        // column's type's, so the datum has the type it expects.
        let value = unsafe {
            column(tupdesc, column_name).and_then(|(attnum, attr)| {
                let mut isnull = false;
                let datum = pg_sys::heap_getattr(raw, attnum as i32, tupdesc, &mut isnull);
                if isnull {
                    return None;
                }
                let (mut out, mut varlena) = (pg_sys::InvalidOid, false);
                pg_sys::getTypeOutputInfo(attr.atttypid, &mut out, &mut varlena);
                let text = pg_sys::OidOutputFunctionCall(out, datum);
                Some(CStr::from_ptr(text).to_string_lossy().into_owned())
            })
        }
        .unwrap_or_else(|| "NULL".into());
        parts.push(format!(
            "{}: {}",
            serde_json::Value::from(column_name),
            serde_json::Value::from(value)
        ));
    }
    format!("{{{}}}", parts.join(", "))
}

/// True when two versions of a row hold the same bytes, so every value is the same. (Different
/// bytes may still hold equal values, e.g. a value compressed in one and not in the other: such an
/// update counts as a change.)
pub(crate) fn same_bytes(old: *mut pg_sys::HeapTupleData, new: *mut pg_sys::HeapTupleData) -> bool {
    // SAFETY: both are the trigger's tuples; only their headers and data are read, within t_len.
    unsafe {
        let (o, n) = (&*old, &*new);
        if o.t_len != n.t_len || o.t_data.is_null() || n.t_data.is_null() {
            return false;
        }
        let (oh, nh) = (&*o.t_data, &*n.t_data);
        let natts =
            |h: &pg_sys::HeapTupleHeaderData| h.t_infomask2 & pg_sys::HEAP_NATTS_MASK as u16;
        let nulls = |h: &pg_sys::HeapTupleHeaderData| h.t_infomask & pg_sys::HEAP_HASNULL as u16;
        if oh.t_hoff != nh.t_hoff || natts(oh) != natts(nh) || nulls(oh) != nulls(nh) {
            return false;
        }
        // From the null bitmap to the end: bitmap, alignment padding (zeroed) and the values.
        let start = std::mem::offset_of!(pg_sys::HeapTupleHeaderData, t_bits);
        let len = o.t_len as usize - start;
        let ob = std::slice::from_raw_parts((o.t_data as *const u8).add(start), len);
        let nb = std::slice::from_raw_parts((n.t_data as *const u8).add(start), len);
        ob == nb
    }
}

/// True when an update changed no value: the same bytes, or the same value in every column
/// (a row written before columns were added stores fewer attributes than its new version, and
/// a value may be compressed in one version and not yet in the other).
pub(crate) fn unchanged(
    old: *mut pg_sys::HeapTupleData,
    new: *mut pg_sys::HeapTupleData,
    tupdesc: pg_sys::TupleDesc,
) -> bool {
    if same_bytes(old, new) {
        return true;
    }
    // SAFETY: both are the trigger's tuples of this descriptor.
    unsafe {
        if (*old).t_data.is_null() || (*new).t_data.is_null() {
            return false;
        }
        // A row written before columns were added stores fewer of them, and a BEFORE trigger's
        // new row is not yet compressed: the same values in other bytes.
        crate::changelog::same_values(old, new, tupdesc)
    }
}

/// The tenant of a row: the uuid in column `attnum`, which [`shape`] checked is a uuid.
pub(crate) fn row_tenant(
    tuple: *mut pg_sys::HeapTupleData,
    tupdesc: pg_sys::TupleDesc,
    attnum: usize,
) -> Option<Uuid> {
    // SAFETY: a uuid datum is a pointer to its 16 bytes (uuid is passed by reference).
    unsafe {
        let mut isnull = false;
        let datum = pg_sys::heap_getattr(tuple, attnum as i32, tupdesc, &mut isnull);
        if isnull {
            return None;
        }
        let bytes = std::slice::from_raw_parts(datum.cast_mut_ptr::<u8>(), 16);
        Uuid::from_slice(bytes).ok()
    }
}

fn row_guard<'a>(
    trigger: &'a PgTrigger<'a>,
) -> crate::errors::Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>> {
    let args = Args::of(trigger)?;
    let shape = shape(trigger, || {
        args.expect(if args.soft_delete {
            Need::Required
        } else {
            Need::No
        })
    })?;
    let tenant_attnum = shape.tenant.expect("the guards name the tenant column");
    let data = trigger.trigger_data();
    // SAFETY: the trigger's relation is open for the duration of the trigger call.
    let tupdesc = unsafe { (*data.tg_relation).rd_att };
    match trigger.op() {
        Ok(PgTriggerOperation::Insert) => {
            let new = trigger.new().expect("an INSERT row trigger has a new row");
            let tenant = tenancy::require_tenant()?;
            crate::versioning::check_insert(trigger, &new, &shape)?;
            match row_tenant(data.tg_trigtuple, tupdesc, tenant_attnum) {
                Some(row) if row != tenant => Err(StewardError::forbidden(
                    format!(
                        "cannot insert a row of tenant {row} into {} from tenant {tenant}",
                        qualified_name(trigger)
                    ),
                    format!(
                        "Leave \"{}\" out: steward fills it from the tenant context.",
                        args.tenant_column
                    ),
                )),
                _ => Ok(Some(new)),
            }
        }
        Ok(PgTriggerOperation::Delete) => {
            let old = trigger.old().expect("a DELETE row trigger has an old row");
            check_own_row(
                trigger,
                row_tenant(data.tg_trigtuple, tupdesc, tenant_attnum),
                "delete",
            )?;
            let Some(deleted_at) = shape.deleted_at else {
                return Ok(Some(old));
            };
            soft_delete(trigger, deleted_at)?;
            // The row stays, marked deleted and hidden by the policies: skip the DELETE.
            Ok(None)
        }
        _ => Ok(trigger.new()),
    }
}

/// The table's qualified name, from its OID.
fn relation_name(rel: pg_sys::Relation) -> String {
    // SAFETY: an open relation's rd_rel and namespace OID are valid.
    unsafe {
        let ns = pg_sys::get_namespace_name((*(*rel).rd_rel).relnamespace);
        pgrx::spi::quote_qualified_identifier(
            CStr::from_ptr(ns).to_string_lossy(),
            CStr::from_ptr((*(*rel).rd_rel).relname.data.as_ptr()).to_string_lossy(),
        )
    }
}

/// Marks the row the trigger fired for as deleted: `UPDATE ONLY <this table> SET deleted_at =
/// now() WHERE ctid = $1`, prepared once per table and backend. It runs as the caller, with
/// the caller's privileges (UPDATE of deleted_at) and its tenant's policies, so that nothing the
/// table owner defined (triggers, checks, index expressions) runs with more privilege than the
/// caller has. ONLY and the table the trigger fired on (a partition, an inheritance child)
/// make sure the row is this one, not one at the same ctid elsewhere. It fires the update guard
/// and the change log like any update; the log records it as a DELETE.
fn soft_delete(trigger: &PgTrigger<'_>, deleted_at: usize) -> crate::errors::Result<()> {
    let data = trigger.trigger_data();
    let rel = data.tg_relation;
    // SAFETY: rel is the trigger's relation, open for the duration of the trigger call.
    let relid = unsafe { (*rel).rd_id };
    if !may_update(relid, deleted_at) {
        return Err(StewardError::InsufficientPrivilege {
            message: format!(
                "permission denied to delete from {}: a soft delete updates \"deleted_at\"",
                qualified_name(trigger)
            ),
            hint: format!(
                "The table soft-deletes: a DBA grants UPDATE (deleted_at) ON {} to the role that \
                 deletes.",
                qualified_name(trigger)
            ),
        });
    }
    let sql = std::ffi::CString::new(format!(
        "UPDATE ONLY {} SET deleted_at = pg_catalog.now() WHERE ctid OPERATOR(pg_catalog.=) $1",
        relation_name(rel)
    ))
    .expect("no NUL in a quoted name");
    // SAFETY: a row trigger on DELETE has its old tuple (tg_trigtuple).
    let mut ctid = unsafe { (*data.tg_trigtuple).t_self };
    let param = plans::Param {
        datum: Some(pg_sys::Datum::from(std::ptr::from_mut(&mut ctid))),
        type_oid: pg_sys::TIDOID,
    };
    let row = position(&ctid);
    let (rc, processed) = crate::errors::keeping_codes(|| {
        Ok(tenancy::with_pinned_search_path(|| {
            with_cell(&OWN_WRITE, relid, || {
                with_cell(&OWN_ROW, Some(row), || {
                    // SAFETY: SPI is connected for the one statement and finished after it (an error
                    // leaves the cleanup to the transaction's abort, as SPI expects).
                    unsafe {
                        if pg_sys::SPI_connect() < 0 {
                            crate::errors::bug("steward: SPI_connect failed");
                        }
                        // Kept per table and text; Postgres re-plans it when the table changes.
                        let rc = plans::execute_kept(relid, &sql, &[param]);
                        let processed = pg_sys::SPI_processed;
                        pg_sys::SPI_finish();
                        (rc, processed)
                    }
                })
            })
        }))
    })?;
    if rc != pg_sys::SPI_OK_UPDATE as i32 {
        crate::errors::bug(format!(
            "steward: the soft delete of a row of {} failed (SPI code {rc})",
            qualified_name(trigger)
        ));
    }
    if processed != 1 {
        // A BEFORE UPDATE trigger of the table returned NULL, or one of its own policies hides
        // the row from the caller: the row is not marked, and the DELETE must not pass as done.
        return Err(StewardError::forbidden(
            format!(
                "the soft delete of a row of {} did not happen: the table's own trigger or policy \
                 skipped the update that marks it deleted",
                qualified_name(trigger)
            ),
            "A soft delete is an UPDATE of deleted_at; make the table's BEFORE UPDATE triggers \
             and policies let it through.",
        ));
    }
    Ok(())
}

/// Whether the current user may update column `attnum` of `relid` (on the table or the column).
fn may_update(relid: pg_sys::Oid, attnum: usize) -> bool {
    // SAFETY: catalog lookups by OID.
    unsafe {
        let user = pg_sys::GetUserId();
        pg_sys::pg_class_aclcheck(relid, user, pg_sys::ACL_UPDATE as _)
            == pg_sys::AclResult::ACLCHECK_OK
            || pg_sys::pg_attribute_aclcheck(relid, attnum as i16, user, pg_sys::ACL_UPDATE as _)
                == pg_sys::AclResult::ACLCHECK_OK
    }
}

/// BEFORE INSERT OR DELETE FOR EACH ROW on every governed table.
#[pg_trigger]
fn _internal_row_guard<'a>(
    trigger: &'a PgTrigger<'a>,
) -> std::result::Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, StewardError> {
    Ok(or_raise(row_guard(trigger)))
}

fn truncate_guard(trigger: &PgTrigger<'_>) -> crate::errors::Result<()> {
    Err(StewardError::forbidden(
        format!(
            "TRUNCATE of governed table {} is forbidden",
            qualified_name(trigger)
        ),
        "TRUNCATE would empty every tenant at once; DELETE the rows of one tenant, or have a DBA \
         run steward.ungovern() first.",
    ))
}

/// A tuple's position, as OWN_ROW keeps it.
fn position(tid: &pg_sys::ItemPointerData) -> (u32, u16) {
    let block = (u32::from(tid.ip_blkid.bi_hi) << 16) | u32::from(tid.ip_blkid.bi_lo);
    (block, tid.ip_posid)
}

/// Whether this update is steward's own soft delete (of exactly the row it marks) or restore
/// (of the table it restores a row of, in the statement it runs), whatever else the table's own
/// triggers changed in the row.
fn is_own_write(trigger: &PgTrigger<'_>) -> bool {
    let data = trigger.trigger_data();
    // SAFETY: the trigger's relation is open for the duration of the trigger call.
    let relid = unsafe { (*data.tg_relation).rd_id };
    if OWN_WRITE.get() != relid || relid == pg_sys::InvalidOid {
        return false;
    }
    match OWN_ROW.get() {
        None => true,
        // SAFETY: the trigger's old tuple.
        Some(row) => position(unsafe { &(*data.tg_trigtuple).t_self }) == row,
    }
}

fn update_guard<'a>(
    trigger: &'a PgTrigger<'a>,
) -> crate::errors::Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>> {
    let data = trigger.trigger_data();
    // The update guard does not know whether the table soft-deletes: deleted_at is looked up
    // only to recognise steward's own writes, and only if it is there.
    // SAFETY: the trigger's relation is open for the duration of the trigger call.
    let tupdesc = unsafe { (*data.tg_relation).rd_att };
    let args = Args::of(trigger)?;
    let shape = shape(trigger, || args.expect(Need::IfPresent))?;
    let tenant_attnum = shape.tenant.expect("the guards name the tenant column");
    let old = trigger.old().expect("an UPDATE row trigger has an old row");
    let new = trigger.new().expect("an UPDATE row trigger has a new row");
    let from = row_tenant(data.tg_trigtuple, tupdesc, tenant_attnum);
    let to = row_tenant(data.tg_newtuple, tupdesc, tenant_attnum);
    // First that the row is the caller's: then the tenant it is moved from may be named.
    check_own_row(trigger, from, "update")?;
    if from != to {
        return Err(StewardError::forbidden(
            format!(
                "cannot move a row of {} from tenant {} to tenant {}",
                qualified_name(trigger),
                show(from),
                show(to)
            ),
            format!(
                "\"{}\" never changes; copy the row into the other tenant instead.",
                args.tenant_column
            ),
        ));
    }
    let own_write = is_own_write(trigger);
    let bump = crate::versioning::check_update(trigger, &args, &old, &new, &shape, own_write)?;
    // An update that changes nothing leaves the version alone (and writes no change record).
    let Some((attnum, actual)) = bump else {
        return Ok(Some(new));
    };
    if unchanged(data.tg_trigtuple, data.tg_newtuple, tupdesc) {
        return Ok(Some(new));
    }
    Ok(Some(crate::versioning::bumped(trigger, attnum, actual)))
}

/// BEFORE UPDATE FOR EACH ROW on every governed table: rows stay in their tenant, and a
/// versioned row's version is checked (when the UPDATE names it) and raised by exactly one.
#[pg_trigger]
fn _internal_update_guard<'a>(
    trigger: &'a PgTrigger<'a>,
) -> std::result::Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, StewardError> {
    Ok(or_raise(update_guard(trigger)))
}

/// A guard, for a statement whose records the guards write (changelog::direct_statement): the
/// guard itself, then the record of the row it lets through. `rows` says, of the row the guard
/// returns, what the record's old and new rows are (None: no record here).
fn guard_and_record<'a>(
    trigger: &'a PgTrigger<'a>,
    guard: GuardFn<'a>,
    need: fn(&Args<'_>) -> Need,
    rows: impl FnOnce(*mut pg_sys::HeapTupleData) -> Option<Rows>,
) -> crate::errors::Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>> {
    crate::changelog::check_taken_over(trigger)?;
    let Some(row) = guard(trigger)? else {
        return Ok(None);
    };
    let args = Args::of(trigger)?;
    let shape = shape(trigger, || args.expect(need(&args)))?;
    // The update guard's shape has deleted_at only if it is there; the record of a
    // soft-deleting table needs it.
    if args.soft_delete && shape.deleted_at.is_none() {
        return Err(changed(
            &qualified_name(trigger),
            "its soft-delete column \"deleted_at\" is gone or no longer timestamptz".into(),
        ));
    }
    // SAFETY: the trigger's relation is open for the duration of the trigger call.
    let tupdesc =
        unsafe { PgTupleDesc::from_pg_unchecked((*trigger.trigger_data().tg_relation).rd_att) };
    let row = row.into_pg();
    if let Some((old, new)) = rows(row) {
        crate::changelog::record_change(trigger, old, new, &args, &shape)?;
    }
    // SAFETY: the tuple the guard returned, of the trigger's relation.
    Ok(Some(unsafe { PgHeapTuple::from_heap_tuple(tupdesc, row) }))
}

type GuardFn<'a> =
    fn(&'a PgTrigger<'a>) -> crate::errors::Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>>;
/// A record's old and new row (NULL for the side an INSERT or DELETE has not).
type Rows = (*mut pg_sys::HeapTupleData, *mut pg_sys::HeapTupleData);

/// BEFORE INSERT OR DELETE FOR EACH ROW, for one statement: the row guard, and the record. A soft
/// delete records nothing here (the guard returns no row): its UPDATE records itself.
#[pg_trigger]
fn _internal_row_guard_and_log<'a>(
    trigger: &'a PgTrigger<'a>,
) -> std::result::Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, StewardError> {
    let need = |args: &Args<'_>| {
        if args.soft_delete {
            Need::Required
        } else {
            Need::No
        }
    };
    Ok(or_raise(guard_and_record(
        trigger,
        row_guard,
        need,
        |row| match trigger.op() {
            Ok(PgTriggerOperation::Insert) => Some((std::ptr::null_mut(), row)),
            Ok(PgTriggerOperation::Delete) => Some((row, std::ptr::null_mut())),
            _ => None,
        },
    )))
}

/// BEFORE UPDATE FOR EACH ROW, for one statement: the update guard, and the record of the old
/// row and the row as it will be written (the version raised).
#[pg_trigger]
fn _internal_update_guard_and_log<'a>(
    trigger: &'a PgTrigger<'a>,
) -> std::result::Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, StewardError> {
    let old = trigger.trigger_data().tg_trigtuple;
    Ok(or_raise(guard_and_record(
        trigger,
        update_guard,
        |_| Need::IfPresent,
        |row| Some((old, row)),
    )))
}

/// AFTER INSERT, UPDATE, DELETE or TRUNCATE FOR EACH STATEMENT on steward's own catalogs: every
/// backend's cached view of grants, trust and tenant status is dropped at commit.
#[pg_trigger]
fn _internal_catalog_changed<'a>(
    trigger: &'a PgTrigger<'a>,
) -> std::result::Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, StewardError> {
    if let Ok(relid) = trigger.relid() {
        tenancy::catalog_changed(relid);
    }
    Ok(None)
}

/// BEFORE TRUNCATE FOR EACH STATEMENT on every governed table.
#[pg_trigger]
fn _internal_truncate_guard<'a>(
    trigger: &'a PgTrigger<'a>,
) -> std::result::Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, StewardError> {
    or_raise(truncate_guard(trigger));
    Ok(None)
}

// ---------------------------------------------------------------------------------------------
// steward.restore(rel, row_key)
// ---------------------------------------------------------------------------------------------

/// Whether steward itself is soft-deleting or restoring a row of table `rel` right now. The
/// policies of a soft-deleting table call it (once per statement), so that those UPDATEs, which
/// run as the caller, reach the caller's tenant's deleted rows (restore's target, and the soft
/// delete's new row), and nothing else ever does.
#[pg_extern(stable, parallel_restricted, strict)]
fn _internal_own_write(rel: pg_sys::Oid) -> bool {
    rel != pg_sys::InvalidOid && OWN_WRITE.get() == rel
}

fn restore(rel: Option<pg_sys::Oid>, row_key: Option<pgrx::JsonB>) -> crate::errors::Result<()> {
    let (Some(rel), Some(row_key)) = (rel, row_key) else {
        return Err(StewardError::bad_argument(
            "steward.restore needs a table and a row key",
            "Pass both, e.g. steward.restore('app.docs', '{\"id\": 7}').",
        ));
    };
    // SAFETY: a catalog lookup by OID and name.
    let deleted_at = unsafe { pg_sys::get_attnum(rel, c"deleted_at".as_ptr()) };
    if deleted_at > 0 && !may_update(rel, deleted_at as usize) {
        return Err(StewardError::InsufficientPrivilege {
            message: format!(
                "permission denied to restore rows of {}",
                regclass_text(rel)
            ),
            hint: "Restoring a row updates \"deleted_at\": it needs UPDATE on the table or that \
                   column."
                .into(),
        });
    }
    let tenant = tenancy::require_tenant()?;
    // What govern recorded, read as the extension's owner (steward.governed is not readable by
    // tenant roles); only steward's catalogs and builtins are read.
    let found = tenancy::as_extension_owner(|| {
        Spi::connect(|client| {
            let rows = client.select(
                "SELECT g.soft_delete, g.tenant_column::text,
                        pg_catalog.format('%I.%I', n.nspname, c.relname),
                        (SELECT pg_catalog.string_agg(pg_catalog.format('t.%I = k.%I', a.attname, a.attname), ' AND ')
                           FROM pg_catalog.pg_index i
                          CROSS JOIN LATERAL pg_catalog.unnest(i.indkey) AS k(attnum)
                           JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                          WHERE i.indrelid = g.rel AND i.indisprimary)
                   FROM steward.governed g
                   JOIN pg_catalog.pg_class c ON c.oid = g.rel
                   JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                  WHERE g.rel = $1",
                Some(1),
                &[rel.into()],
            )?;
            if rows.is_empty() {
                return Ok::<_, pgrx::spi::Error>(None);
            }
            let row = rows.first();
            Ok(Some((
                row.get::<bool>(1)?.unwrap_or(false),
                row.get::<String>(2)?.unwrap_or_default(),
                row.get::<String>(3)?.unwrap_or_default(),
                row.get::<String>(4)?,
            )))
        })
    })
    .unwrap_or_else(|e| crate::errors::bug(format!("steward: reading the governed tables failed: {e}")));
    let Some((true, tenant_column, table, Some(keycond))) = found else {
        return Err(StewardError::bad_argument(
            format!("table {} does not soft-delete", regclass_text(rel)),
            "Govern it with soft_delete => true to keep deleted rows.",
        ));
    };
    // As the caller: its UPDATE privilege, its tenant's policies, and the table owner's
    // triggers with the caller's privileges only.
    let sql = format!(
        "UPDATE {table} t SET deleted_at = NULL
           FROM pg_catalog.jsonb_populate_record(NULL::{table}, $1) k
          WHERE {keycond} AND t.{} OPERATOR(pg_catalog.=) $2 AND t.deleted_at IS NOT NULL",
        pgrx::spi::quote_identifier(&tenant_column)
    );
    let n = crate::errors::keeping_codes(|| {
        Ok(tenancy::with_pinned_search_path(|| {
            with_cell(&OWN_WRITE, rel, || {
                with_cell(&OWN_ROW, None, || {
                    Spi::connect_mut(|client| {
                        client
                            .update(
                                &sql,
                                None,
                                &[pgrx::JsonB(row_key.0.clone()).into(), tenant.into()],
                            )
                            .map(|t| t.len())
                    })
                })
            })
        }))
    })?
    .unwrap_or_else(|e| {
        crate::errors::bug(format!("steward: restoring a row of {table} failed: {e}"))
    });
    if n == 0 {
        return Err(StewardError::bad_argument(
            format!(
                "no deleted row of {table} with key {} in tenant {tenant}",
                crate::changelog::jsonb_display(row_key.0)
            ),
            "steward.history(rel, row_key) shows what happened to the row.",
        ));
    }
    Ok(())
}

/// `steward.restore(rel, row_key)`: brings back a soft-deleted row of the caller's tenant
/// (recorded as an INSERT).
#[pg_extern(volatile, parallel_unsafe)]
fn _internal_restore(rel: Option<pg_sys::Oid>, row_key: Option<pgrx::JsonB>) {
    or_raise(restore(rel, row_key))
}

/// A relation's name as regclass prints it (its OID when there is no such relation).
fn regclass_text(rel: pg_sys::Oid) -> String {
    // SAFETY: regclassout takes any OID.
    unsafe {
        let text = pg_sys::OidOutputFunctionCall(
            pg_sys::Oid::from(pg_sys::F_REGCLASSOUT),
            pg_sys::Datum::from(rel),
        );
        CStr::from_ptr(text).to_string_lossy().into_owned()
    }
}

// ---------------------------------------------------------------------------------------------
// The DDL guard: govern() and ungovern() may change what they own; anyone else's DDL that
// weakens a governed table needs steward.break_glass(reason) in the same transaction.
// ---------------------------------------------------------------------------------------------

/// steward's own chain: records about the database rather than one tenant (break-glass access,
/// DDL let through under it). Tenant roles never see it; `verify_audit` checks it like any other.
pub fn steward_tenant() -> Uuid {
    Uuid::from_bytes([0; 16])
}

/// `steward.govern` and `ungovern` mark the table they change for the length of their own DDL
/// (not executable by PUBLIC; a mark left by an error goes with the (sub)transaction).
#[pg_extern(volatile, parallel_unsafe, strict)]
fn _internal_governing_begin(rel: pg_sys::Oid) {
    tenancy::set_governing(rel, true)
}

#[pg_extern(volatile, parallel_unsafe, strict)]
fn _internal_governing_end(rel: pg_sys::Oid) {
    tenancy::set_governing(rel, false)
}

/// Whether the DDL running on `rel` now is govern's or ungovern's own. The DDL guard asks.
#[pg_extern(stable, parallel_restricted, strict)]
fn _internal_governing(rel: pg_sys::Oid) -> bool {
    tenancy::governing(rel)
}

fn governed_guard<'a>(
    trigger: &'a PgTrigger<'a>,
) -> crate::errors::Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>> {
    let op = trigger.op().ok();
    if let Some(old) = trigger.old() {
        // The governed table: the row's first column, `rel`.
        let rel: Option<pg_sys::Oid> = old
            .get_by_index(std::num::NonZeroUsize::new(1).expect("1"))
            .ok()
            .flatten();
        if let Some(rel) = rel {
            // SAFETY: a syscache probe by OID.
            let exists = unsafe {
                pg_sys::SearchSysCacheExists(
                    pg_sys::SysCacheIdentifier::RELOID as i32,
                    pg_sys::Datum::from(rel),
                    pg_sys::Datum::from(0),
                    pg_sys::Datum::from(0),
                    pg_sys::Datum::from(0),
                )
            };
            let dropped = matches!(op, Some(PgTriggerOperation::Delete)) && !exists;
            if tenancy::governing(rel) || dropped {
                return Ok(match op {
                    Some(PgTriggerOperation::Delete) => Some(old),
                    _ => trigger.new(),
                });
            }
        }
    }
    Err(StewardError::forbidden(
        "steward.governed is changed only by steward.govern() and steward.ungovern()",
        "Govern the table again with the options you want, or ungovern it.",
    ))
}

/// BEFORE UPDATE OR DELETE (each row) and BEFORE TRUNCATE on steward.governed.
#[pg_trigger]
fn _internal_governed_guard<'a>(
    trigger: &'a PgTrigger<'a>,
) -> std::result::Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, StewardError> {
    Ok(or_raise(governed_guard(trigger)))
}

/// Whether an extension's script (CREATE or ALTER EXTENSION) is running. The DDL guard lets its
/// commands through, as it does those `pg_event_trigger_ddl_commands()` marks `in_extension`,
/// without first checking every governed table at each of them (an upgrade's `regovern()` runs a
/// few dozen commands per table).
#[pg_extern(stable, parallel_restricted)]
fn _internal_in_extension_script() -> bool {
    // SAFETY: reads a flag of the backend, set only while an extension's script runs.
    unsafe { pg_sys::creating_extension }
}

/// The DDL guard at the start of a command: what is already weak (it refuses only what a
/// command makes weaker, so that a table being built up, as pg_restore does, is not refused).
#[pg_extern(volatile, parallel_unsafe)]
fn _internal_ddl_begin(known: Option<Vec<Option<String>>>) {
    tenancy::ddl_begin(known.unwrap_or_default().into_iter().flatten().collect())
}

/// What was weak when the running DDL command started.
#[pg_extern(stable, parallel_restricted)]
fn _internal_ddl_known() -> Vec<String> {
    tenancy::ddl_known()
}

/// The DDL guard at the end of a command.
#[pg_extern(volatile, parallel_unsafe)]
fn _internal_ddl_end() {
    tenancy::ddl_end()
}

/// Whether steward.break_glass is in force in this transaction. The DDL guard asks.
#[pg_extern(stable, parallel_restricted)]
fn _internal_break_glass_active() -> bool {
    tenancy::break_glass_active()
}

fn own_record(
    event_type: &str,
    reason: &str,
    details: serde_json::Value,
) -> crate::errors::Result<()> {
    // SAFETY: reads the session user id, set when the backend started.
    let who = tenancy::role_name(unsafe { pg_sys::GetSessionUserId() });
    own_record_by(&who, event_type, reason, details)
}

fn own_record_by(
    who: &str,
    event_type: &str,
    reason: &str,
    details: serde_json::Value,
) -> crate::errors::Result<()> {
    let mut record = crate::changelog::Record::bare(steward_tenant(), who);
    record.set(
        crate::changelog::Col::Reason,
        crate::changelog::text(Some(reason)),
    );
    record.set(
        crate::changelog::Col::Action,
        crate::changelog::text(Some("EVENT")),
    );
    record.set(
        crate::changelog::Col::EventType,
        crate::changelog::text(Some(event_type)),
    );
    record.set(
        crate::changelog::Col::NewRow,
        pgrx::JsonB(details).into_datum(),
    );
    record.set(crate::changelog::Col::Audited, true.into_datum());
    record.set(crate::changelog::Col::Evented, false.into_datum());
    record.insert()?;
    Ok(())
}

fn open_glass(reason: Option<&str>) -> crate::errors::Result<()> {
    let reason = reason.map(str::trim).unwrap_or("");
    if reason.is_empty() {
        return Err(StewardError::bad_argument(
            "steward.break_glass needs a reason",
            "Say why, e.g. steward.break_glass('INC-2291: restore the tenant column type').",
        ));
    }
    let member = crate::reads::one::<bool>(
        "SELECT pg_catalog.pg_has_role(session_user, 'steward_breakglass', 'MEMBER')",
        &[],
    )
    .ok()
    .flatten()
    .unwrap_or(false);
    if !member {
        return Err(StewardError::InsufficientPrivilege {
            message: format!(
                "role \"{}\" may not break glass",
                // SAFETY: reads the session user id, set when the backend started.
                tenancy::role_name(unsafe { pg_sys::GetSessionUserId() })
            ),
            hint: "Only members of role steward_breakglass may; a superuser grants it \
                   (GRANT steward_breakglass TO ...)."
                .into(),
        });
    }
    // On record before it takes effect: if the record cannot be written, nothing is allowed.
    own_record(
        "steward.break_glass",
        reason,
        // SAFETY: reads the session user id, set when the backend started.
        serde_json::json!({ "session_user": tenancy::role_name(unsafe { pg_sys::GetSessionUserId() }) }),
    )?;
    tenancy::set_break_glass();
    Ok(())
}

/// Lets this transaction run DDL that weakens a governed table (the DDL guard records each such
/// command). Only for members of `steward_breakglass`; recorded in the change log first.
#[pg_extern(volatile, parallel_unsafe)]
fn break_glass(reason: Option<&str>) {
    or_raise(open_glass(reason))
}

fn record_ddl(command: Option<&str>, faults: Option<&str>) -> crate::errors::Result<()> {
    if !tenancy::break_glass_active() {
        return Err(StewardError::forbidden(
            "steward._internal_record_ddl is the DDL guard's own",
            "DDL that weakens a governed table needs steward.break_glass(reason) first.",
        ));
    }
    let command = command.unwrap_or("DDL");
    own_record(
        "steward.ddl",
        &format!("{command} under break_glass"),
        serde_json::json!({ "command": command, "weakens": faults.unwrap_or("") }),
    )
}

/// The DDL guard records a command that break_glass let through.
#[pg_extern(volatile, parallel_unsafe)]
fn _internal_record_ddl(command: Option<&str>, faults: Option<&str>) {
    or_raise(record_ddl(command, faults))
}

// ---------------------------------------------------------------------------------------------
// Refused DDL is on record too. The refusal aborts the transaction, and every record it wrote
// with it, so the record is written by a background worker in a transaction of its own, which
// the refused command waits for (ADR 008).
// ---------------------------------------------------------------------------------------------

/// How long the recorder waits for a lock (the refused command may hold one on the log itself:
/// then the attempt is only in the server log).
const RECORDER_LOCK_TIMEOUT: &str = "2s";
/// How long the refused command waits for its record. The recorder goes on after that (what it
/// reads is its own copy), so the record is late, not lost; the wait stays interruptible.
const RECORDER_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// What could not be put on record goes to the server log, in full.
fn log_unrecorded(why: &str, payload: &str) {
    pgrx::log!("steward: a refused command is not in the change log ({why}): {payload}");
}

fn record_refusal(command: Option<&str>, faults: Option<&str>) -> crate::errors::Result<()> {
    let command = command.unwrap_or("DDL");
    // SAFETY: reads the backend's globals (database, session user, the statement's text).
    let (database, who, statement) = unsafe {
        let text = if pg_sys::debug_query_string.is_null() {
            String::new()
        } else {
            CStr::from_ptr(pg_sys::debug_query_string)
                .to_string_lossy()
                .chars()
                .take(4000)
                .collect()
        };
        (
            u32::from(pg_sys::MyDatabaseId),
            tenancy::role_name(pg_sys::GetSessionUserId()),
            text,
        )
    };
    let payload = serde_json::json!({
        "database": database,
        "who": who,
        "command": command,
        "weakens": faults.unwrap_or(""),
        "statement": statement,
    })
    .to_string();
    let bytes = payload.as_bytes();
    // SAFETY: a segment of 4 + len bytes, written before the worker is started. It is pinned:
    // it outlives this backend's mapping (a cancelled or failed statement detaches it) until the
    // recorder has read it and unpins it, or until the worker could not be started.
    unsafe {
        let segment = pg_sys::dsm_create(
            4 + bytes.len(),
            pg_sys::DSM_CREATE_NULL_IF_MAXSEGMENTS as i32,
        );
        if segment.is_null() {
            pgrx::warning!(
                "steward: the refused {command} is not in the change log: no shared memory \
                 segment left (it is in the server log)"
            );
            log_unrecorded("no shared memory segment", &payload);
            return Ok(());
        }
        let at = pg_sys::dsm_segment_address(segment).cast::<u8>();
        std::ptr::copy_nonoverlapping((bytes.len() as u32).to_ne_bytes().as_ptr(), at, 4);
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), at.add(4), bytes.len());
        let handle = pg_sys::dsm_segment_handle(segment);
        pg_sys::dsm_pin_segment(segment);
        let started = pgrx::bgworkers::BackgroundWorkerBuilder::new("steward recorder")
            .set_type("steward recorder")
            .set_library("steward")
            .set_function("steward_recorder_main")
            .enable_spi_access()
            .set_argument(Some(pg_sys::Datum::from(handle)))
            .set_notify_pid(pg_sys::MyProcPid)
            .load_dynamic();
        match started {
            Ok(worker) => {
                let since = std::time::Instant::now();
                while let Ok(_) | Err(pgrx::bgworkers::BackgroundWorkerStatus::NotYetStarted) =
                    worker.pid()
                {
                    if since.elapsed() >= RECORDER_WAIT {
                        pgrx::warning!(
                            "steward: the refused {command} is recorded late: the recorder is \
                             still waiting"
                        );
                        break;
                    }
                    pg_sys::WaitLatch(
                        pg_sys::MyLatch,
                        (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH)
                            as i32,
                        20,
                        pg_sys::PG_WAIT_EXTENSION,
                    );
                    pg_sys::ResetLatch(pg_sys::MyLatch);
                    pgrx::check_for_interrupts!();
                }
            }
            Err(_) => {
                pg_sys::dsm_unpin_segment(handle);
                pgrx::warning!(
                    "steward: the refused {command} is not in the change log: no background \
                     worker slot (max_worker_processes; it is in the server log)"
                );
                log_unrecorded("no background worker slot", &payload);
            }
        }
        pg_sys::dsm_detach(segment);
    }
    Ok(())
}

/// The DDL guard records a command it refuses, in a transaction of its own.
#[pg_extern(volatile, parallel_unsafe)]
fn _internal_record_refusal(command: Option<&str>, faults: Option<&str>) {
    or_raise(record_refusal(command, faults))
}

/// The recorder: reads what was refused from the segment it is given, writes the record in the
/// refusing command's database, commits, exits.
#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn steward_recorder_main(arg: pg_sys::Datum) {
    use pgrx::bgworkers::{BackgroundWorker, SignalWakeFlags};
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGTERM);
    // SAFETY: the pinned segment the refusing backend created; its first four bytes are the
    // length of what follows. Unpinned once read: it goes when the last mapping does.
    let payload = unsafe {
        let handle = arg.value() as pg_sys::dsm_handle;
        let segment = pg_sys::dsm_attach(handle);
        if segment.is_null() {
            return;
        }
        let at = pg_sys::dsm_segment_address(segment).cast::<u8>();
        let mut len = [0u8; 4];
        std::ptr::copy_nonoverlapping(at, len.as_mut_ptr(), 4);
        let bytes = std::slice::from_raw_parts(at.add(4), u32::from_ne_bytes(len) as usize);
        let text = String::from_utf8_lossy(bytes).into_owned();
        pg_sys::dsm_unpin_segment(handle);
        pg_sys::dsm_detach(segment);
        text
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&payload) else {
        return;
    };
    let database = v["database"].as_u64().unwrap_or(0) as u32;
    if database == 0 {
        return;
    }
    // SAFETY: connects this worker to the refusing command's database as the bootstrap
    // superuser, even while that database does not accept connections.
    unsafe {
        pg_sys::BackgroundWorkerInitializeConnectionByOid(
            pg_sys::Oid::from(database),
            pg_sys::InvalidOid,
            pg_sys::BGWORKER_BYPASS_ALLOWCONN,
        );
    }
    BackgroundWorker::transaction(move || {
        Spi::run(&format!(
            "SET LOCAL lock_timeout = '{RECORDER_LOCK_TIMEOUT}'"
        ))
        .expect("SET LOCAL");
        let who = v["who"].as_str().unwrap_or("").to_string();
        let command = v["command"].as_str().unwrap_or("DDL").to_string();
        let details = serde_json::json!({
            "command": command,
            "weakens": v["weakens"],
            "statement": v["statement"],
        });
        // A Postgres error (a lock it waited for too long) ends this worker; what it was to
        // record goes to the server log first.
        let result = pgrx::PgTryBuilder::new(|| {
            own_record_by(
                &who,
                "steward.ddl.refused",
                &format!("{command} refused"),
                details.clone(),
            )
        })
        .catch_others(|e| {
            log_unrecorded("the recorder failed", &payload);
            e.rethrow()
        })
        .execute();
        if let Err(e) = result {
            log_unrecorded(&e.message(), &payload);
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Dropping steward drops the log: only under break glass.
// ---------------------------------------------------------------------------------------------

/// Version-1 calling convention record for [`steward_extension_guard`].
#[no_mangle]
pub extern "C" fn pg_finfo_steward_extension_guard() -> &'static pg_sys::Pg_finfo_record {
    static V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

/// Whether a DROP statement names steward: `DROP EXTENSION steward` or `DROP SCHEMA steward`
/// (which would take the extension with it).
///
/// # Safety
/// `tree` is a parse tree node from the event trigger's data.
unsafe fn drops_steward(tree: *mut pg_sys::Node) -> bool {
    // SAFETY: tree is a parse tree node or NULL; its type is checked before it is read as a
    // DropStmt, and each object's node type before it is read as a String.
    unsafe {
        if tree.is_null() || (*tree).type_ != pg_sys::NodeTag::T_DropStmt {
            return false;
        }
        let drop = tree.cast::<pg_sys::DropStmt>();
        if (*drop).removeType != pg_sys::ObjectType::OBJECT_EXTENSION
            && (*drop).removeType != pg_sys::ObjectType::OBJECT_SCHEMA
        {
            return false;
        }
        let objects = pgrx::PgList::<pg_sys::Node>::from_pg((*drop).objects);
        let named = objects.iter_ptr().any(|name| {
            !name.is_null()
                && (*name).type_ == pg_sys::NodeTag::T_String
                && CStr::from_ptr((*name.cast::<pg_sys::String>()).sval).to_bytes() == b"steward"
        });
        named
    }
}

/// `ddl_command_start` for DROP EXTENSION and DROP SCHEMA: dropping steward would drop the change
/// log, its seals and every governed table's policies with it; refused (ST403) unless
/// `steward.break_glass` is in force in the transaction.
///
/// # Safety
///
/// Called by Postgres only, as an event trigger function (through fmgr, with its
/// FunctionCallInfo).
#[no_mangle]
#[pg_guard]
pub unsafe extern "C-unwind" fn steward_extension_guard(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    // SAFETY: called by the event trigger machinery, whose context is its EventTriggerData.
    let refuse = unsafe {
        let context = (*fcinfo).context;
        !context.is_null()
            && (*context).type_ == pg_sys::NodeTag::T_EventTriggerData
            && drops_steward((*context.cast::<pg_sys::EventTriggerData>()).parsetree)
    } && !tenancy::break_glass_active();
    if refuse {
        // On record like every refused command (the worker writes it in a transaction of its
        // own). Whatever happens there, the drop is refused.
        // SAFETY: refuse is true only when the context is EventTriggerData whose parse tree is a
        // DropStmt (checked above).
        let tag = unsafe {
            let context = (*fcinfo).context.cast::<pg_sys::EventTriggerData>();
            if (*(*context).parsetree.cast::<pg_sys::DropStmt>()).removeType
                == pg_sys::ObjectType::OBJECT_SCHEMA
            {
                "DROP SCHEMA"
            } else {
                "DROP EXTENSION"
            }
        };
        let _ = record_refusal(
            Some(tag),
            Some("drops steward, its change log and its seals"),
        );
        crate::errors::raise(StewardError::forbidden(
            "dropping steward is refused: it would drop the change log and its seals with it",
            "A member of steward_breakglass runs SELECT steward.break_glass('<reason>') in the \
             same transaction first. Keep the heads from steward.audit_heads() and a dump \
             before you do.",
        ));
    }
    pg_sys::Datum::from(0)
}
