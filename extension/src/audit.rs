//! The change log's audit face, and the guard of steward's append-only tables.
//!
//! - The append-only guard (`_internal_log_guard`, ENABLE ALWAYS on the log, the seals, the
//!   sealing state, the tombstones, the transaction-id base and the aliases): plain SQL of any
//!   role cannot add, change or remove a row; steward's own writes (sealing, erasure, pruning,
//!   its bookkeeping) open it with a flag around fixed SQL, and a restore's COPY into an empty
//!   table passes (ADR 010).
//! - Erasure (`steward.erase`): removes a row's personal payload from its records and keeps the
//!   records and the proof.
//!
//! History and as-of queries are SQL (sql/changelog.sql); the writer of the records is
//! [`crate::changelog`]; sealing is [`crate::sealing`].

use std::cell::{Cell, RefCell};

use pgrx::prelude::*;
use pgrx::{pg_sys, AllocatedByPostgres, IntoDatum};

use crate::changelog::{jsonb_text, row_hash, text, Col, Record};
use crate::errors::{or_raise, StewardError};
use crate::tenancy;

thread_local! {
    /// True only while `steward.erase` rewrites records.
    static ERASING: Cell<bool> = const { Cell::new(false) };
    /// True only while `steward.prune_outbox` removes records it has tombstoned.
    pub(crate) static PRUNING: Cell<bool> = const { Cell::new(false) };
    /// True only while `steward.seal_audit` seals.
    pub(crate) static SEALING: Cell<bool> = const { Cell::new(false) };
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
