//! steward's transaction ids: the cluster's, plus an offset (ADR 010).
//!
//! Records carry the id of the transaction that wrote them, consumers' positions and the sealing
//! horizon are transaction ids, and the commit-safe order compares them with the oldest running
//! transaction. A dump restored into another cluster brings ids from a counter that has nothing
//! to do with the new cluster's: new records could sort before old ones, and old ones look as if
//! their transactions were still running. So steward keeps its ids in a space of its own: the
//! cluster's id plus `steward.xid_base.xid_offset`. The row names the cluster the offset was set
//! for. When steward first needs the offset in a cluster that is not that one (or in a database
//! that has no row yet), it sets one that puts every id written from now on above every id the
//! database holds (records, positions, horizons), and records the cluster.

use std::cell::Cell;

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::audit::with_cell;
use crate::errors::{or_raise, Result, StewardError};
use crate::tenancy;

thread_local! {
    /// The offset, once read (or set) in this backend. A backend lives in one cluster.
    static OFFSET: Cell<Option<i64>> = const { Cell::new(None) };
    /// True only while steward writes `steward.xid_base` (the append-only guard lets it).
    pub(crate) static REBASING: Cell<bool> = const { Cell::new(false) };
}

/// The offset between the cluster's transaction ids and steward's.
pub fn offset() -> Result<i64> {
    if let Some(known) = OFFSET.get() {
        return Ok(known);
    }
    let found = crate::errors::keeping_codes(|| tenancy::as_extension_owner(read_or_set))?;
    OFFSET.set(Some(found));
    Ok(found)
}

/// The offset for a read: the recorded one, or, where none is recorded yet, the one the first
/// write will record, computed without writing it (a read never takes a transaction id).
pub fn offset_for_reading() -> Result<i64> {
    if let Some(known) = OFFSET.get() {
        return Ok(known);
    }
    crate::errors::keeping_codes(|| {
        tenancy::as_extension_owner(|| {
            let (cluster, _) = here();
            match recorded_for(&cluster)? {
                Some(offset) => {
                    OFFSET.set(Some(offset));
                    Ok(offset)
                }
                None => Ok(needed()?.0),
            }
        })
    })
}

/// steward's id for the cluster's full transaction id `xid`.
pub fn shifted(xid: u64) -> Result<u64> {
    let offset = offset()?;
    xid.checked_add(offset as u64).ok_or_else(|| {
        StewardError::internal(format!(
            "transaction id {xid} plus steward's offset {offset} does not fit in 64 bits"
        ))
    })
}

/// Where this backend is: the cluster (its control file's identifier) and the database.
fn here() -> (String, u32) {
    // SAFETY: reads the control file's identifier and the database, set when the backend
    // started.
    unsafe {
        (
            pg_sys::GetSystemIdentifier().to_string(),
            u32::from(pg_sys::MyDatabaseId),
        )
    }
}

fn read_or_set() -> Result<i64> {
    let (cluster, database) = here();
    if let Some(offset) = recorded_for(&cluster)? {
        return Ok(offset);
    }
    // SAFETY: reads a flag of the backend.
    if unsafe { pg_sys::RecoveryInProgress() } {
        // A standby cannot write: it uses what the primary would set, without keeping it.
        return Ok(needed()?.0);
    }
    // One backend at a time sets it; the others then find it set.
    Spi::run("LOCK TABLE steward.xid_base IN SHARE ROW EXCLUSIVE MODE").map_err(spi)?;
    if let Some(offset) = recorded_for(&cluster)? {
        return Ok(offset);
    }
    let (offset, above) = needed()?;
    with_cell(&REBASING, true, || {
        Spi::run_with_args(
            "INSERT INTO steward.xid_base AS b (one, system_identifier, database_oid, xid_offset)
             VALUES (true, $1, $2, $3)
             ON CONFLICT (one) DO UPDATE
                SET system_identifier = excluded.system_identifier,
                    database_oid = excluded.database_oid,
                    xid_offset = excluded.xid_offset, set_at = pg_catalog.now()",
            &[
                cluster.into(),
                pg_sys::Oid::from(database).into(),
                offset.into(),
            ],
        )?;
        // Restored records' aliases cover what was there before this moment; a table created
        // here may get an old OID, and its records are its own.
        if let Some(above) = above {
            Spi::run_with_args(
                "UPDATE steward.rel_aliases SET before_txid = $1::text::xid8
                  WHERE before_txid IS NULL",
                &[above.clone().into()],
            )?;
            // A governed table renamed since its last record is not found by name; its OID
            // where it was governed is in steward.governed.
            Spi::run_with_args(
                "INSERT INTO steward.rel_aliases (old_rel, rel, before_txid)
                 SELECT g.source_oid, g.rel::oid, $1::text::xid8 FROM steward.governed g
                  WHERE g.source_oid IS NOT NULL AND g.source_oid <> g.rel::oid
                 ON CONFLICT (old_rel) DO NOTHING",
                &[above.into()],
            )?;
        }
        Ok::<_, pgrx::spi::Error>(())
    })
    .map_err(spi)?;
    Ok(offset)
}

/// Whether steward has written in this database: its transaction-id base names this cluster (a
/// dump does not carry the row; a template copy does). Until then (a database being restored, or
/// one steward never wrote in), its append-only tables may be loaded by a superuser's COPY while
/// they are empty.
pub fn adopted_here() -> bool {
    let (cluster, _) = here();
    recorded_for(&cluster).ok().flatten().is_some()
}

/// The offset recorded for this cluster, if the row is this cluster's.
fn recorded_for(cluster: &str) -> Result<Option<i64>> {
    let row = Spi::connect(|client| {
        let rows = client.select(
            "SELECT system_identifier, xid_offset FROM steward.xid_base",
            None,
            &[],
        )?;
        match rows.into_iter().next() {
            Some(row) => Ok::<_, pgrx::spi::Error>(Some((
                row.get::<String>(1)?.unwrap_or_default(),
                row.get::<i64>(2)?.unwrap_or(0),
            ))),
            None => Ok(None),
        }
    })
    .map_err(spi)?;
    // The cluster decides, not the database: a copy made with CREATE DATABASE ... TEMPLATE has
    // another OID but the same transaction ids and table OIDs, and is steward's already.
    Ok(row.and_then(|(c, offset)| (c == cluster).then_some(offset)))
}

/// The smallest offset that puts every transaction id written from now on above every id this
/// database holds (records, consumers' positions, the sealing horizon; every seal's horizon is
/// at or below it): the oldest transaction still running is the lowest that can write. With it,
/// the first id above what the database holds (as text), or None when it holds none.
fn needed() -> Result<(i64, Option<String>)> {
    let (offset, above) = crate::reads::two::<i64, String>(
        "WITH m AS (
             SELECT greatest(
                        (SELECT max(c.txid) FROM steward.change_log c),
                        (SELECT max(greatest(k.pos_txid, pg_snapshot_xmax(k.done),
                                             pg_snapshot_xmax(k.batch)))
                           FROM steward.consumers k),
                        (SELECT max(x.horizon) FROM steward.seal_state x))::text::numeric + 1 AS above)
         SELECT greatest(0, coalesce(m.above, 0)
                            - pg_snapshot_xmin(pg_current_snapshot())::text::numeric)::bigint,
                m.above::text
           FROM m",
        &[],
    )
    .map_err(spi)?;
    Ok((offset.unwrap_or(0), above))
}

fn spi(e: pgrx::spi::Error) -> StewardError {
    StewardError::internal(format!("steward: reading steward.xid_base failed: {e}"))
}

/// `steward._internal_xid_offset(persist)`: see [`offset`]; with `persist` false,
/// [`offset_for_reading`].
#[pg_extern(volatile, parallel_unsafe)]
fn _internal_xid_offset(persist: default!(bool, true)) -> i64 {
    or_raise(if persist {
        offset()
    } else {
        offset_for_reading()
    })
}
