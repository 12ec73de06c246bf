//! steward's own catalog objects, found one way, and the one relcache callback through which
//! every cache of steward's learns that a relation changed.
//!
//! - [`relation`] finds one of steward's tables (`steward.NAME`) by syscache lookups, never by
//!   SQL (no query, no snapshot, no transaction id), and keeps the answer in this backend until
//!   that relation's relcache entry is invalidated: a dropped and re-created extension has new
//!   OIDs. [`known`] answers from what is kept, without a lookup (for invalidation callbacks).
//! - [`installed`] says whether steward is installed in this database.
//! - [`init`] registers the callback. Postgres allows ten per backend, for all extensions
//!   together, and running out is FATAL: steward has one. Each module that caches something of a
//!   relation has a `relcache_invalidated(relid)`, called from [`on_relcache_invalidation`]
//!   (`relid` is InvalidOid when every entry was invalidated).

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::CStr;

use pgrx::pg_guard;
use pgrx::pg_sys;

thread_local! {
    /// steward's tables found so far in this backend, by name.
    static KNOWN: RefCell<Vec<(&'static CStr, pg_sys::Oid)>> = const { RefCell::new(Vec::new()) };
}

/// The OID of `steward.<name>` as kept in this backend, if it has been looked up.
pub(crate) fn known(name: &CStr) -> Option<pg_sys::Oid> {
    KNOWN.with_borrow(|k| k.iter().find(|(n, _)| *n == name).map(|(_, oid)| *oid))
}

/// The OID of `steward.<name>`; InvalidOid when there is no such table (steward is not installed
/// in this database, or is being dropped).
pub(crate) fn relation(name: &'static CStr) -> pg_sys::Oid {
    if let Some(oid) = known(name) {
        return oid;
    }
    // SAFETY: syscache lookups by NUL-terminated names, inside a transaction; missing_ok, so an
    // absent schema raises nothing.
    let oid = unsafe {
        let ns = pg_sys::get_namespace_oid(c"steward".as_ptr(), true);
        if ns == pg_sys::InvalidOid {
            pg_sys::InvalidOid
        } else {
            pg_sys::get_relname_relid(name.as_ptr(), ns)
        }
    };
    if oid != pg_sys::InvalidOid {
        KNOWN.with_borrow_mut(|k| k.push((name, oid)));
    }
    oid
}

/// Whether `func` is `steward.<name>` (syscache lookups; no SQL).
pub(crate) fn is_function(func: pg_sys::Oid, name: &CStr) -> bool {
    // SAFETY: syscache lookups by OID inside a transaction; get_func_name returns NULL for an OID
    // that names no function, else a palloc'd NUL-terminated name.
    unsafe {
        let ns = pg_sys::get_namespace_oid(c"steward".as_ptr(), true);
        if ns == pg_sys::InvalidOid || pg_sys::get_func_namespace(func) != ns {
            return false;
        }
        let found = pg_sys::get_func_name(func);
        !found.is_null() && CStr::from_ptr(found) == name
    }
}

/// Whether the steward extension is installed in this database.
pub(crate) fn installed() -> bool {
    // SAFETY: a syscache lookup by name inside a transaction; missing_ok, so it does not raise.
    unsafe { pg_sys::get_extension_oid(c"steward".as_ptr(), true) != pg_sys::InvalidOid }
}

/// Drops what a cache keyed by relation OID holds of `relid`, or everything when `relid` is
/// InvalidOid (every relation's entry was invalidated).
pub(crate) fn forget<V>(cache: &mut HashMap<pg_sys::Oid, V>, relid: pg_sys::Oid) {
    if relid == pg_sys::InvalidOid {
        cache.clear();
    } else {
        cache.remove(&relid);
    }
}

/// Registers steward's one relcache callback. Called once, from `_PG_init`.
pub(crate) fn init() {
    // SAFETY: registered once per backend, from _PG_init.
    unsafe {
        pg_sys::CacheRegisterRelcacheCallback(
            Some(on_relcache_invalidation),
            pg_sys::Datum::from(0),
        );
    }
}

/// A relation's cache entry was invalidated (`relid` is InvalidOid when all were): each cache
/// drops what it holds of it, and then this module forgets the relation's OID (the modules may
/// ask [`known`] which table it was).
///
/// # Safety
///
/// Called by Postgres only, as a relcache callback, in a backend with a transaction state that
/// allows catalog access.
#[pg_guard]
unsafe extern "C-unwind" fn on_relcache_invalidation(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    crate::tenancy::relcache_invalidated(relid);
    crate::tenancy::scans::relcache_invalidated(relid);
    crate::govern::relcache_invalidated(relid);
    crate::changelog::relcache_invalidated(relid);
    crate::outbox::relcache_invalidated(relid);
    KNOWN.with_borrow_mut(|k| k.retain(|(_, oid)| relid != pg_sys::InvalidOid && *oid != relid));
}
