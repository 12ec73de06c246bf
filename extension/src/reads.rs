//! steward's own catalog reads, which never take a transaction id.
//!
//! pgrx's one-value helpers (`Spi::get_one`, `get_two`, ...) run their query as a *mutating*
//! statement and, to do so, assign the transaction an id (`GetCurrentTransactionId`). A read of a
//! governed table whose first steward lookup of the session went through them got an xid: it held
//! back the horizon that sealing uses, took an id in `BEGIN READ ONLY`, and failed on a hot
//! standby ("cannot assign TransactionIds during recovery"). Every read steward makes goes through
//! these helpers instead; the crate's clippy configuration (`clippy.toml`) refuses the others.
//! Writes use `Spi::run` or a kept plan, and take an id because they write.

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi;

/// The first column of the first row, or None (no row, or NULL). `InvalidPosition` (no row) is
/// folded into None.
pub fn one<A: FromDatum + IntoDatum>(
    sql: &str,
    args: &[DatumWithOid<'_>],
) -> spi::Result<Option<A>> {
    match Spi::connect(|c| c.select(sql, Some(1), args)?.first().get_one::<A>()) {
        Err(spi::Error::InvalidPosition) => Ok(None),
        other => other,
    }
}

/// The first two columns of the first row; (None, None) when there is no row.
pub fn two<A: FromDatum + IntoDatum, B: FromDatum + IntoDatum>(
    sql: &str,
    args: &[DatumWithOid<'_>],
) -> spi::Result<(Option<A>, Option<B>)> {
    match Spi::connect(|c| c.select(sql, Some(1), args)?.first().get_two::<A, B>()) {
        Err(spi::Error::InvalidPosition) => Ok((None, None)),
        other => other,
    }
}
