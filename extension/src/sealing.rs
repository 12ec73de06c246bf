//! Tamper evidence: each tenant's records sealed into a SHA-256 hash chain.
//!
//! `steward.seal_audit()` runs the SQL of `steward._seal_audit` (sql/sealing.sql) as the
//! extension's owner with the seals' guard open for it, and emits one witness event per chain it
//! advances (the new head, for consumers to keep outside the database). `verify_audit()` and
//! `audit_heads()` are SQL.

use pgrx::prelude::*;
use pgrx::{pg_sys, IntoDatum, Uuid};

use crate::audit::{with_cell, SEALING};
use crate::changelog::{text, Col, Record};
use crate::errors::{or_raise, StewardError};
use crate::tenancy;

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
