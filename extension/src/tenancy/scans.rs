//! Which indexes a scan under a tenant's policy may use (ADR 009).
//!
//! Row-level security filters rows *after* a scan has found them. An index that does not lead
//! with the tenant column makes the scan visit other tenants' entries first, and what it visited
//! shows: `EXPLAIN ANALYZE`'s "Rows Removed by Filter", buffer counts, the per-table counters of
//! `pg_stat_xact_*`, time. With a leakproof comparison (text `=`, `<`) a tenant can read another
//! tenant's values that way, one character at a time, or test whether a key exists.
//!
//! So when the planner builds the paths of a governed table (or of steward's own tenant-scoped
//! tables) for a query that row-level security applies to, it gets only the B-tree indexes whose
//! first column is the tenant column. The policy's `tenant = (SELECT steward.current_tenant())`
//! is then always an index condition of such a path, and the scan starts and stops inside the
//! tenant's own entries. A sequential scan visits every row the same way whatever their values.
//! Roles that row-level security does not apply to (superusers, BYPASSRLS, the extension owner in
//! steward's own SECURITY DEFINER functions) plan as usual.
//!
//! The hook is installed when steward is loaded. Every steward policy calls an IMMUTABLE steward
//! function that the planner folds before it looks at indexes, so steward is loaded before the
//! first such plan of a session is made, preloaded or not.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::CStr;

use pgrx::pg_sys;
use pgrx::prelude::*;

/// A governed table's tenant column that cannot be found: matches no index.
const NO_COLUMN: i16 = i16::MIN;

static mut PREV_GET_RELATION_INFO: pg_sys::get_relation_info_hook_type = None;

thread_local! {
    /// The tenant column's attribute number by relation, or None for a relation steward does
    /// not scope to tenants. Dropped by relcache invalidation (lib.rs' one callback).
    static TENANT_COLUMN: RefCell<HashMap<pg_sys::Oid, Option<i16>>> = RefCell::new(HashMap::new());
}

/// Installs the planner hook. Called once per backend, from `_PG_init`.
pub fn install() {
    // SAFETY: _PG_init runs once per backend, before the planner can call the hook; the
    // previous hook is kept and called first.
    unsafe {
        PREV_GET_RELATION_INFO = pg_sys::get_relation_info_hook;
        pg_sys::get_relation_info_hook = Some(on_relation_info);
    }
}

pub(crate) fn relcache_invalidated(relid: pg_sys::Oid) {
    TENANT_COLUMN.with_borrow_mut(|m| crate::catalog::forget(m, relid));
}

/// `steward._internal_plan_guard()`: always true. IMMUTABLE, so the planner evaluates it while
/// it simplifies a policy's condition, which loads steward (and this hook) before any index is
/// considered.
#[pg_extern(immutable, parallel_safe)]
fn _internal_plan_guard() -> bool {
    true
}

/// # Safety
///
/// Called by Postgres only, as get_relation_info_hook, with the planner's own arguments.
#[pg_guard]
unsafe extern "C-unwind" fn on_relation_info(
    root: *mut pg_sys::PlannerInfo,
    relid: pg_sys::Oid,
    inhparent: bool,
    rel: *mut pg_sys::RelOptInfo,
) {
    // SAFETY: the previous hook, with the arguments the planner gave this one.
    unsafe {
        if let Some(prev) = PREV_GET_RELATION_INFO {
            prev(root, relid, inhparent, rel);
        }
    }
    let Some(tenant) = tenant_column(relid) else {
        return;
    };
    // SAFETY: the planner passes its own PlannerInfo and the RelOptInfo it is building; the
    // relation's range table entry is at rel->relid in simple_rte_array (planner_rt_fetch).
    unsafe {
        let rte = *(*root).simple_rte_array.add((*rel).relid as usize);
        if rte.is_null() {
            return;
        }
        let rls = pg_sys::check_enable_rls(relid, (*rte).checkAsUser, true);
        if rls != pg_sys::CheckEnableRlsResult::RLS_ENABLED as i32 {
            return;
        }
        let mut kept: *mut pg_sys::List = std::ptr::null_mut();
        let indexes = pgrx::PgList::<pg_sys::IndexOptInfo>::from_pg((*rel).indexlist);
        for index in indexes.iter_ptr() {
            if tenant_leading(&*index, tenant) {
                kept = pg_sys::lappend(kept, index.cast());
            }
        }
        (*rel).indexlist = kept;
    }
}

/// A B-tree index whose first key column is the tenant column (not an expression of it).
fn tenant_leading(index: &pg_sys::IndexOptInfo, tenant: i16) -> bool {
    // SAFETY: indexkeys has ncolumns entries (plancat.c fills them for every index).
    index.relam == pg_sys::BTREE_AM_OID
        && index.nkeycolumns >= 1
        && unsafe { *index.indexkeys } == i32::from(tenant)
}

/// The tenant column of a governed table (the first argument of its steward_row_guard trigger)
/// or of steward's change log and seals; None for every other relation. A governed table whose
/// tenant column is no longer there (renamed, dropped) keeps no index at all ([`NO_COLUMN`]):
/// the policy still filters by the column it was written for, and scans stay whole.
fn tenant_column(relid: pg_sys::Oid) -> Option<i16> {
    if let Some(known) = TENANT_COLUMN.with_borrow(|m| m.get(&relid).copied()) {
        return known;
    }
    let found = read_tenant_column(relid);
    TENANT_COLUMN.with_borrow_mut(|m| m.insert(relid, found));
    found
}

fn read_tenant_column(relid: pg_sys::Oid) -> Option<i16> {
    // SAFETY: the planner holds a lock on every relation it plans; the relcache entry is
    // pinned between RelationIdGetRelation and RelationClose, and only read.
    unsafe {
        let rel = pg_sys::RelationIdGetRelation(relid);
        if rel.is_null() {
            return None;
        }
        let form = &*(*rel).rd_rel;
        let mut name: Option<String> = None;
        if form.relrowsecurity {
            if relid == crate::catalog::relation(c"change_log")
                || relid == crate::catalog::relation(c"audit_seals")
            {
                name = Some("tenant_id".into());
            } else if !(*rel).trigdesc.is_null() {
                let desc = &*(*rel).trigdesc;
                for i in 0..desc.numtriggers as usize {
                    let trigger = &*desc.triggers.add(i);
                    if CStr::from_ptr(trigger.tgname).to_bytes() == b"steward_row_guard" {
                        // A trigger of that name that is not steward's row guard (the DDL guard
                        // refuses one), or arguments in an earlier release's layout (a table not
                        // governed again since an upgrade): no column, so no index.
                        let ours =
                            crate::catalog::is_function(trigger.tgfoid, c"_internal_row_guard");
                        name = Some(
                            crate::govern::Args::read(trigger)
                                .filter(|_| ours)
                                .map(|a| a.tenant_column.to_owned())
                                .unwrap_or_default(),
                        );
                    }
                }
            }
        }
        pg_sys::RelationClose(rel);
        let Ok(name) = std::ffi::CString::new(name?) else {
            return Some(NO_COLUMN);
        };
        let attnum = pg_sys::get_attnum(relid, name.as_ptr());
        Some(if attnum > 0 { attnum } else { NO_COLUMN })
    }
}
