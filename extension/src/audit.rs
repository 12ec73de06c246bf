//! The change log and its audit face: one append-only record per change to a governed table.
//!
//! `steward.govern()` writes, for each governed table, three statement-level AFTER triggers
//! (INSERT, UPDATE, DELETE) whose argument is the set-based `INSERT INTO steward.change_log ...
//! SELECT ... FROM <transition table>` for that table. Here that SQL is prepared once per backend
//! and trigger, kept, and executed once per statement with the transaction's actor and
//! annotations as parameters: no SQL is parsed per row, and the records are written in the same
//! transaction as the change.

use std::cell::Cell;
use std::ffi::CStr;

use pgrx::prelude::*;
use pgrx::{pg_sys, AllocatedByPostgres, IntoDatum};

use crate::errors::{or_raise, StewardError};
use crate::{plans, tenancy};

thread_local! {
    /// True only while `steward.erase` rewrites records.
    static ERASING: Cell<bool> = const { Cell::new(false) };
}

/// A new UUIDv7: a millisecond timestamp, then random bits; sorts by creation time.
#[pg_extern(volatile, parallel_safe)]
fn _internal_uuid_v7() -> pgrx::Uuid {
    pgrx::Uuid::from_bytes(*uuid::Uuid::now_v7().as_bytes())
}

fn text_param(v: Option<&str>) -> plans::Param {
    plans::Param {
        datum: v.and_then(|s| s.into_datum()),
        type_oid: pg_sys::TEXTOID,
    }
}

fn log_changes(trigger: &PgTrigger<'_>) -> crate::errors::Result<()> {
    let context = tenancy::context()?;
    let notes = tenancy::annotations();
    let t = trigger.trigger();
    if t.tgnargs < 1 || t.tgargs.is_null() {
        pgrx::error!("steward: log trigger {} has no statement", t.tgoid.to_u32());
    }
    let sql = unsafe { CStr::from_ptr(*t.tgargs) };
    let params = [
        text_param(Some(&context.actor)),
        text_param(notes.reason.as_deref()),
        text_param(notes.request_id.as_deref()),
        text_param(notes.traceparent.as_deref()),
    ];
    let trigdata = std::ptr::from_ref(trigger.trigger_data()).cast_mut();
    tenancy::as_extension_owner(|| unsafe {
        if pg_sys::SPI_connect() < 0 {
            pgrx::error!("steward: SPI_connect failed");
        }
        let rc = plans::execute_kept(t.tgoid, sql, &params, Some(trigdata));
        if rc != pg_sys::SPI_OK_INSERT as i32 {
            pgrx::error!("steward: writing the change log failed (SPI code {rc})");
        }
        pg_sys::SPI_finish();
    });
    Ok(())
}

/// AFTER INSERT / UPDATE / DELETE FOR EACH STATEMENT on every audited or evented table.
#[pg_trigger]
fn _internal_log_changes<'a>(
    trigger: &'a PgTrigger<'a>,
) -> std::result::Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, StewardError> {
    or_raise(log_changes(trigger));
    Ok(None)
}

fn log_guard<'a>(
    trigger: &'a PgTrigger<'a>,
) -> crate::errors::Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>> {
    let op = trigger.op().ok();
    if matches!(op, Some(PgTriggerOperation::Update)) && ERASING.get() {
        return Ok(trigger.new());
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

/// Runs `f` with the append-only guard letting updates through (for `steward.erase`).
fn while_erasing<R>(f: impl FnOnce() -> R) -> R {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            ERASING.set(false);
        }
    }
    ERASING.set(true);
    let _reset = Reset;
    f()
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
        while_erasing(|| {
            Spi::connect_mut(|client| {
                let erased = client.update(
                    "UPDATE steward.change_log
                        SET old_row = NULL, new_row = NULL, erased_at = pg_catalog.now()
                      WHERE rel = $1 AND row_key = $2 AND erased_at IS NULL AND action <> 'ERASE'
                  RETURNING tenant_id, table_name",
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
                             (tenant_id, actor, reason, rel, table_name, row_key, action, event_id,
                              audited, evented)
                         VALUES ($1, $2, $3, $4, $5, $6, 'ERASE', steward._internal_uuid_v7(), true, false)",
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
