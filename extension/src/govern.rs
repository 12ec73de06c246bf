//! Governed tables: the row triggers that keep rows inside their tenant.
//!
//! `steward.govern()` (hand-written SQL in `sql/api.sql`) enables and forces row-level security,
//! writes the policies, sets the tenant column's default to `steward.current_tenant()` and attaches
//! the triggers below. The triggers are the per-row hot path: no SQL runs in them, the tenant comes
//! from backend memory, and the tenant column is found by name in the tuple descriptor.

use std::ffi::CStr;

use pgrx::prelude::*;
use pgrx::{pg_sys, AllocatedByPostgres, IntoDatum, PgTupleDesc, Uuid};

use crate::errors::{or_raise, StewardError};

use crate::{plans, tenancy};

fn qualified_name(trigger: &PgTrigger<'_>) -> String {
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
        return Err(StewardError::forbidden(
            format!(
                "cannot {verb} a row of tenant {} in {} from tenant {tenant}",
                show(row),
                qualified_name(trigger)
            ),
            "Rows of another tenant are out of reach; enter that tenant to change them.",
        ));
    }
    Ok(())
}

/// The trigger's `n`th argument (0-based), as `govern` wrote it, if there is one.
pub(crate) fn trigger_arg_cstr<'a>(trigger: &'a PgTrigger<'a>, n: usize) -> Option<&'a CStr> {
    let t = trigger.trigger();
    if (t.tgnargs as usize) <= n || t.tgargs.is_null() {
        return None;
    }
    Some(unsafe { CStr::from_ptr(*t.tgargs.add(n)) })
}

/// The trigger's `n`th argument (0-based) as text; "" when absent.
pub(crate) fn trigger_arg<'a>(trigger: &'a PgTrigger<'a>, n: usize) -> &'a str {
    trigger_arg_cstr(trigger, n)
        .and_then(|c| c.to_str().ok())
        .unwrap_or("")
}

/// The tenant column, passed as the trigger's first argument by `govern`.
fn tenant_column<'a>(trigger: &'a PgTrigger<'a>) -> &'a str {
    let column = trigger_arg(trigger, 0);
    if column.is_empty() {
        pgrx::error!(
            "steward row guard on {} has no tenant column argument",
            qualified_name(trigger)
        );
    }
    column
}

/// A row's primary key, for messages: `{"id": "42"}` (values in their text form). The key's
/// columns are the trigger's arguments from `first_pk_arg` on.
fn key_text(trigger: &PgTrigger<'_>, first_pk_arg: usize) -> String {
    let t = trigger.trigger();
    // The row the trigger fired for: the old row of an UPDATE or DELETE, the new row of an INSERT.
    let raw = trigger.trigger_data().tg_trigtuple;
    let Some(tuple) = trigger.old().or_else(|| trigger.new()) else {
        return "{}".into();
    };
    let tupdesc = unsafe { (*trigger.trigger_data().tg_relation).rd_att };
    let mut parts = Vec::new();
    for n in first_pk_arg..t.tgnargs as usize {
        let column = trigger_arg(trigger, n);
        let value = tuple
            .get_attribute_by_name(column)
            .and_then(|(attnum, attr)| unsafe {
                let datum = pgrx::heap_getattr_raw(raw, attnum, tupdesc)?;
                let (mut out, mut varlena) = (pg_sys::InvalidOid, false);
                pg_sys::getTypeOutputInfo(attr.atttypid, &mut out, &mut varlena);
                let text = pg_sys::OidOutputFunctionCall(out, datum);
                Some(CStr::from_ptr(text).to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| "NULL".into());
        parts.push(format!(
            "{}: {}",
            serde_json::Value::from(column),
            serde_json::Value::from(value)
        ));
    }
    format!("{{{}}}", parts.join(", "))
}

/// True when two versions of a row hold the same bytes, so every value is the same. (Different
/// bytes may still hold equal values, e.g. a value compressed in one and not in the other: such an
/// update counts as a change.)
pub(crate) fn same_bytes(old: *mut pg_sys::HeapTupleData, new: *mut pg_sys::HeapTupleData) -> bool {
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

fn row_tenant(tuple: &PgHeapTuple<'_, AllocatedByPostgres>, column: &str) -> Option<Uuid> {
    tuple.get_by_name::<Uuid>(column).unwrap_or_else(|e| {
        pgrx::error!("steward: tenant column \"{column}\" cannot be read as uuid: {e}")
    })
}

fn row_guard<'a>(
    trigger: &'a PgTrigger<'a>,
) -> crate::errors::Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>> {
    let column = tenant_column(trigger);
    match trigger.op() {
        Ok(PgTriggerOperation::Insert) => {
            let new = trigger.new().expect("an INSERT row trigger has a new row");
            let tenant = tenancy::require_tenant()?;
            let version_column = trigger_arg(trigger, 1);
            if !version_column.is_empty() {
                let stated = new.get_by_name::<i64>(version_column).ok().flatten();
                if stated != Some(1) {
                    return Err(StewardError::VersionPreset {
                        table: qualified_name(trigger),
                        stated: stated.unwrap_or(-1),
                    });
                }
            }
            match row_tenant(&new, column) {
                Some(row) if row != tenant => Err(StewardError::forbidden(
                    format!(
                        "cannot insert a row of tenant {row} into {} from tenant {tenant}",
                        qualified_name(trigger)
                    ),
                    format!("Leave \"{column}\" out: steward fills it from the tenant context."),
                )),
                _ => Ok(Some(new)),
            }
        }
        Ok(PgTriggerOperation::Delete) => {
            let old = trigger.old().expect("a DELETE row trigger has an old row");
            check_own_row(trigger, row_tenant(&old, column), "delete")?;
            if trigger_arg(trigger, 2).is_empty() {
                return Ok(Some(old));
            }
            soft_delete(trigger);
            // The row stays, marked deleted and hidden by the policies: skip the DELETE.
            Ok(None)
        }
        _ => Ok(trigger.new()),
    }
}

/// Marks the row the trigger fired for as deleted, with the statement `govern` wrote for the
/// table (`UPDATE ... SET deleted_at = now() WHERE ctid = $1`). It runs with the extension
/// owner's privileges and fires the update guard and the change log like any update; the log
/// records it as a DELETE.
fn soft_delete<'a>(trigger: &'a PgTrigger<'a>) {
    let t = trigger.trigger();
    let sql = trigger_arg_cstr(trigger, 2).expect("row_guard checked the soft-delete statement");
    let mut ctid = unsafe { (*trigger.trigger_data().tg_trigtuple).t_self };
    let param = plans::Param {
        datum: Some(pg_sys::Datum::from(std::ptr::from_mut(&mut ctid))),
        type_oid: pg_sys::TIDOID,
    };
    tenancy::as_extension_owner(|| unsafe {
        if pg_sys::SPI_connect() < 0 {
            pgrx::error!("steward: SPI_connect failed");
        }
        let rc = plans::execute_kept(t.tgoid, sql, &[param]);
        if rc != pg_sys::SPI_OK_UPDATE as i32 {
            pgrx::error!("steward: soft delete failed (SPI code {rc})");
        }
        pg_sys::SPI_finish();
    });
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

/// What a stale or missing version looks like for this update, if anything.
fn check_version(
    trigger: &PgTrigger<'_>,
    old: &PgHeapTuple<'_, AllocatedByPostgres>,
    new: &PgHeapTuple<'_, AllocatedByPostgres>,
    version_column: &str,
) -> crate::errors::Result<Option<(usize, i64)>> {
    let Some((attnum, _)) = old.get_attribute_by_name(version_column) else {
        return Ok(None);
    };
    let actual: i64 = old.get_by_index(attnum).ok().flatten().unwrap_or(0);
    let updated_cols = trigger.trigger_data().tg_updatedcols;
    let offset = attnum.get() as i32 - pg_sys::FirstLowInvalidHeapAttributeNumber;
    let named = unsafe { pg_sys::bms_is_member(offset, updated_cols) };
    if named {
        let stated: Option<i64> = new.get_by_index(attnum).ok().flatten();
        if stated != Some(actual) {
            return Err(StewardError::VersionConflict {
                table: qualified_name(trigger),
                key: key_text(trigger, 3),
                expected: stated.unwrap_or(-1),
                actual,
            });
        }
    } else if trigger_arg(trigger, 2) == "t" {
        return Err(StewardError::VersionRequired {
            table: qualified_name(trigger),
            key: key_text(trigger, 3),
        });
    }
    Ok(Some((attnum.get(), actual)))
}

fn update_guard<'a>(
    trigger: &'a PgTrigger<'a>,
) -> crate::errors::Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>> {
    let column = tenant_column(trigger);
    let old = trigger.old().expect("an UPDATE row trigger has an old row");
    let new = trigger.new().expect("an UPDATE row trigger has a new row");
    let (from, to) = (row_tenant(&old, column), row_tenant(&new, column));
    if from != to {
        return Err(StewardError::forbidden(
            format!(
                "cannot move a row of {} from tenant {} to tenant {}",
                qualified_name(trigger),
                show(from),
                show(to)
            ),
            format!("\"{column}\" never changes; copy the row into the other tenant instead."),
        ));
    }
    check_own_row(trigger, from, "update")?;
    let version_column = trigger_arg(trigger, 1);
    let bump = if version_column.is_empty() {
        None
    } else {
        check_version(trigger, &old, &new, version_column)?
    };
    // An update that changes nothing leaves the version alone (and writes no change record).
    let data = trigger.trigger_data();
    let Some((attnum, actual)) = bump else {
        return Ok(Some(new));
    };
    if same_bytes(data.tg_trigtuple, data.tg_newtuple) {
        return Ok(Some(new));
    }
    // The new row with the version raised, formed once from the row the UPDATE made (no copy
    // of it first); palloc'd in the trigger's memory context, which Postgres frees.
    unsafe {
        let tupdesc = (*data.tg_relation).rd_att;
        let mut column = attnum as i32;
        let mut value = (actual + 1).into_datum().expect("bigint");
        let mut isnull = false;
        let bumped = pg_sys::heap_modify_tuple_by_cols(
            data.tg_newtuple,
            tupdesc,
            1,
            &mut column,
            &mut value,
            &mut isnull,
        );
        Ok(Some(PgHeapTuple::from_heap_tuple(
            PgTupleDesc::from_pg_unchecked(tupdesc),
            bumped,
        )))
    }
}

/// BEFORE UPDATE FOR EACH ROW on every governed table: rows stay in their tenant, and a
/// versioned row's version is checked (when the UPDATE names it) and raised by exactly one.
#[pg_trigger]
fn _internal_update_guard<'a>(
    trigger: &'a PgTrigger<'a>,
) -> std::result::Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, StewardError> {
    Ok(or_raise(update_guard(trigger)))
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
