//! Governed tables: the row triggers that keep rows inside their tenant.
//!
//! `steward.govern()` (hand-written SQL in `sql/api.sql`) enables and forces row-level security,
//! writes the policies, sets the tenant column's default to `steward.current_tenant()` and attaches
//! the triggers below. The triggers are the per-row hot path: no SQL runs in them, the tenant comes
//! from backend memory, and the tenant column is found by name in the tuple descriptor.

use std::ffi::CStr;

use pgrx::prelude::*;
use pgrx::{AllocatedByPostgres, Uuid};

use crate::errors::{or_raise, StewardError};

use crate::tenancy;

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

/// The tenant column, passed as the trigger's first argument by `govern`.
fn tenant_column<'a>(trigger: &'a PgTrigger<'a>) -> &'a str {
    let t = trigger.trigger();
    if t.tgnargs < 1 || t.tgargs.is_null() {
        pgrx::error!(
            "steward row guard on {} has no tenant column argument",
            qualified_name(trigger)
        );
    }
    unsafe { CStr::from_ptr(*t.tgargs) }
        .to_str()
        .unwrap_or("tenant_id")
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
        Ok(PgTriggerOperation::Update) => {
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
                    format!(
                        "\"{column}\" never changes; copy the row into the other tenant instead."
                    ),
                ));
            }
            check_own_row(trigger, from, "update")?;
            Ok(Some(new))
        }
        Ok(PgTriggerOperation::Delete) => {
            let old = trigger.old().expect("a DELETE row trigger has an old row");
            check_own_row(trigger, row_tenant(&old, column), "delete")?;
            Ok(Some(old))
        }
        _ => Ok(trigger.new()),
    }
}

/// BEFORE INSERT OR UPDATE OR DELETE FOR EACH ROW on every governed table.
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
