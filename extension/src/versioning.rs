//! Optimistic versions: a stale write fails clearly instead of overwriting.
//!
//! A versioned governed table has `version bigint not null default 1` (`govern` adds it). The
//! guards of [`crate::govern`] call these for each row, with the table's checked [`Shape`]:
//! - an INSERT states no version but 1 (ST409 otherwise: a client never sets a version);
//! - an UPDATE that names `version` states the version it read: ST409 naming the table, the key,
//!   the version stated and the actual one when they differ;
//! - with `version_required`, an UPDATE that does not name it is refused (ST428), but for
//!   steward's own writes (soft delete, restore);
//! - an UPDATE that changes the row raises the version by exactly one; one that changes nothing
//!   leaves it.
//!
//! `steward.delete_version(rel, key, version)` (sql/versioning.sql) is the same check for a DELETE.

use pgrx::heap_tuple::PgHeapTuple;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::{AllocatedByPostgres, PgTupleDesc};

use crate::errors::StewardError;
use crate::govern::{key_text, qualified_name, Args, Shape};

/// An INSERT into a versioned table starts at version 1.
pub(crate) fn check_insert(
    trigger: &PgTrigger<'_>,
    new: &PgHeapTuple<'_, AllocatedByPostgres>,
    shape: &Shape,
) -> crate::errors::Result<()> {
    let Some(attnum) = shape.version.and_then(std::num::NonZeroUsize::new) else {
        return Ok(());
    };
    let stated = new.get_by_index::<i64>(attnum).ok().flatten();
    if stated != Some(1) {
        return Err(StewardError::VersionPreset {
            table: qualified_name(trigger),
            stated: stated.unwrap_or(-1),
        });
    }
    Ok(())
}

/// Checks an UPDATE's version: Some((the version column, the row's version)) when the table is
/// versioned and the update may go on, to be raised by [`bumped`] if the row changes.
pub(crate) fn check_update(
    trigger: &PgTrigger<'_>,
    args: &Args<'_>,
    old: &PgHeapTuple<'_, AllocatedByPostgres>,
    new: &PgHeapTuple<'_, AllocatedByPostgres>,
    shape: &Shape,
    own_write: bool,
) -> crate::errors::Result<Option<(usize, i64)>> {
    let Some(attnum) = shape.version.and_then(std::num::NonZeroUsize::new) else {
        return Ok(None);
    };
    let actual: i64 = old.get_by_index(attnum).ok().flatten().unwrap_or(0);
    let updated_cols = trigger.trigger_data().tg_updatedcols;
    let offset = attnum.get() as i32 - pg_sys::FirstLowInvalidHeapAttributeNumber;
    // SAFETY: a bitmapset read by a member test; NULL is the empty set.
    let named = unsafe { pg_sys::bms_is_member(offset, updated_cols) };
    if named {
        let stated: Option<i64> = new.get_by_index(attnum).ok().flatten();
        if stated != Some(actual) {
            return Err(StewardError::VersionConflict {
                table: qualified_name(trigger),
                key: key_text(trigger, &args.key),
                expected: stated.unwrap_or(-1),
                actual,
            });
        }
    } else if args.version_required && !own_write {
        return Err(StewardError::VersionRequired {
            table: qualified_name(trigger),
            key: key_text(trigger, &args.key),
        });
    }
    Ok(Some((attnum.get(), actual)))
}

/// The UPDATE's new row with the version raised to `actual + 1`, formed once from the row the
/// UPDATE made (no copy of it first); palloc'd in the trigger's memory context, which Postgres
/// frees.
pub(crate) fn bumped<'a>(
    trigger: &'a PgTrigger<'a>,
    attnum: usize,
    actual: i64,
) -> PgHeapTuple<'a, AllocatedByPostgres> {
    let data = trigger.trigger_data();
    // SAFETY: the trigger's relation and new tuple are valid for the duration of the trigger
    // call; shape() checked that the column is a bigint, so an int8 datum is what it holds.
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
        PgHeapTuple::from_heap_tuple(PgTupleDesc::from_pg_unchecked(tupdesc), bumped)
    }
}
