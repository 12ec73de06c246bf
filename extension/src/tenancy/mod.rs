//! The tenant context: which tenant the current transaction acts in, and as which actor.
//!
//! The context lives here, in this backend's memory, and nowhere a client can reach with `SET`,
//! `set_config`, `RESET` or startup options. It is set only by [`enter_tenant`] and
//! [`enter_tenant_token`], which check the caller, and it is cleared by a transaction callback at
//! COMMIT, ROLLBACK, PREPARE and when the transaction errors. A context entered inside a
//! subtransaction that rolls back is undone with it.
//!
//! The caller is always `session_user`: `SET ROLE` changes which privileges apply, not who is
//! asking, and `SET SESSION AUTHORIZATION` is only open to superusers. A role that holds exactly one
//! tenant grant is in that tenant without any call (the *implicit* context).
//!
//! What the catalogs say (grants, trust, tenant status, the implicit tenant) is cached in this
//! backend across transactions, and dropped the way Postgres drops its own caches: a statement
//! trigger on steward's catalogs sends a relcache invalidation for the catalog at commit, and
//! changes to roles or role memberships send syscache invalidations. Every backend processes
//! those before its next statement that opens a governed table.

pub mod scans;
pub mod token;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::{c_void, CStr};

use pgrx::prelude::*;
use pgrx::{pg_sys, Uuid};

use crate::errors::{or_raise, Result, StewardError};

/// A context set by `enter_tenant` or `enter_tenant_token` in (sub)transaction `subxid`.
#[derive(Clone, Debug)]
struct Entered {
    tenant: Uuid,
    actor: String,
    subxid: pg_sys::SubTransactionId,
}

/// The "why" of the transaction, from `steward.annotate`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Annotations {
    pub reason: Option<String>,
    pub request_id: Option<String>,
    pub traceparent: Option<String>,
}

/// The tenant a statement runs in, and who acts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Context {
    pub tenant: Uuid,
    pub actor: String,
}

#[derive(Default)]
struct State {
    /// Contexts entered in this transaction; the last one is in force.
    entered: Vec<Entered>,
    /// Annotations, with the subtransaction that set them.
    annotations: Vec<(Annotations, pg_sys::SubTransactionId)>,
    /// `steward.break_glass` calls of this transaction, by the subtransaction that made them
    /// (its record rolls back with it, and so does the permission).
    break_glass: Vec<pg_sys::SubTransactionId>,
    /// Tables `steward.govern` / `ungovern` are changing right now, by subtransaction (an
    /// error in govern leaves its mark until the subtransaction or transaction aborts).
    governing: Vec<(pg_sys::Oid, pg_sys::SubTransactionId)>,
    /// What was already weak before each DDL command now running (the DDL guard refuses only
    /// what a command makes weaker), by the subtransaction that started it.
    ddl_before: Vec<(Vec<String>, pg_sys::SubTransactionId)>,
    /// The executor's statements running now, innermost last, and whether each has read the
    /// context: while one that has is running, the tenant cannot change.
    running: Vec<Running>,
    /// The context was read by a statement that started before steward was loaded (so it is not
    /// in `running`): the portal it ran in, until that statement ends.
    unknown_used: Option<usize>,
}

/// One statement the executor is running.
struct Running {
    query: *const pg_sys::QueryDesc,
    subxid: pg_sys::SubTransactionId,
    used: bool,
}

impl State {
    fn clear(&mut self) {
        // A statement cannot outlive its transaction (a WITH HOLD cursor is materialised first).
        LOADED_MID_STATEMENT.set(false);
        self.entered.clear();
        self.annotations.clear();
        self.break_glass.clear();
        self.governing.clear();
        self.running.clear();
        self.unknown_used = None;
        self.ddl_before.clear();
    }
}

/// Catalog answers kept across transactions until an invalidation drops them.
#[derive(Default)]
pub(crate) struct CatalogCache {
    /// steward's catalog tables (tenants, tenant_grants, trusted_roles, signing_keys), learned when the cache
    /// is first filled; a relcache invalidation of any of them empties the cache.
    catalogs: Vec<pg_sys::Oid>,
    pub(crate) owner: Option<pg_sys::Oid>,
    /// The implicit context of each session user.
    implicit: HashMap<pg_sys::Oid, Result<Context>>,
    /// What the catalogs say of (tenant, caller).
    facts: HashMap<([u8; 16], pg_sys::Oid), Option<TenantFacts>>,
    /// Whether a role is a superuser or a member of a trusted role.
    trusted: HashMap<pg_sys::Oid, bool>,
    /// The current signing keys, parsed.
    keys: Option<std::rc::Rc<Vec<token::Key>>>,
    /// Bumped by every invalidation (see `forget`).
    generation: u64,
}

impl CatalogCache {
    /// Drops every answer. The generation moves on, so that a lookup that was running when the
    /// invalidation arrived (a lookup runs SQL, which processes invalidations) does not store
    /// the answer it read before it.
    fn forget(&mut self) {
        let generation = self.generation + 1;
        *self = CatalogCache::default();
        self.generation = generation;
    }
}

/// The cache's generation, read before a lookup.
pub(crate) fn generation() -> u64 {
    CACHE.with_borrow(|c| c.generation)
}

/// Stores what a lookup found, unless the cache was invalidated since it started.
pub(crate) fn remember(generation: u64, store: impl FnOnce(&mut CatalogCache)) {
    CACHE.with_borrow_mut(|c| {
        if c.generation == generation {
            store(c)
        }
    });
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
    static CACHE: RefCell<CatalogCache> = RefCell::new(CatalogCache::default());
}

/// Registers the transaction callbacks that clear the context, and the invalidation callbacks
/// that empty the catalog cache. Called from `_PG_init`.
pub fn init() {
    // SAFETY: registered once per backend, from _PG_init; the callbacks are static functions.
    unsafe {
        pg_sys::RegisterXactCallback(Some(on_xact_event), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(on_subxact_event), std::ptr::null_mut());
        for cache in [
            pg_sys::SysCacheIdentifier::AUTHOID,
            pg_sys::SysCacheIdentifier::AUTHMEMROLEMEM,
        ] {
            pg_sys::CacheRegisterSyscacheCallback(
                cache as i32,
                Some(on_role_invalidation),
                pg_sys::Datum::from(0),
            );
        }
    }
}

static mut PREV_EXECUTOR_START: pg_sys::ExecutorStart_hook_type = None;
static mut PREV_EXECUTOR_END: pg_sys::ExecutorEnd_hook_type = None;

/// Installs the executor hooks that track which statements are running. Called from `_PG_init`.
pub fn install_executor_hooks() {
    // Loaded by shared_preload_libraries, every statement of every backend is seen to start.
    // SAFETY: reads a flag of the backend.
    LOADED_MID_STATEMENT.set(unsafe { !pg_sys::process_shared_preload_libraries_in_progress });
    // SAFETY: _PG_init runs once per backend, before any of these hooks can be called; the
    // previous hooks are kept and called in turn.
    unsafe {
        PREV_EXECUTOR_START = pg_sys::ExecutorStart_hook;
        pg_sys::ExecutorStart_hook = Some(on_executor_start);
        PREV_EXECUTOR_END = pg_sys::ExecutorEnd_hook;
        pg_sys::ExecutorEnd_hook = Some(on_executor_end);
    }
}

fn active_portal() -> usize {
    // SAFETY: reads a pointer-sized global of the backend.
    unsafe { pg_sys::ActivePortal as usize }
}

/// # Safety
///
/// Called by Postgres only, as ExecutorStart_hook, with the query it is starting.
#[pg_guard]
unsafe extern "C-unwind" fn on_executor_start(query: *mut pg_sys::QueryDesc, eflags: i32) {
    let subxid = current_subxid();
    let portal = active_portal();
    STATE.with_borrow_mut(|s| {
        // A statement of another portal starts with nothing of ours running: the statement
        // from before steward was loaded has ended.
        if s.running.is_empty() && s.unknown_used.is_some_and(|p| p != portal) {
            s.unknown_used = None;
        }
        s.running.push(Running {
            query,
            subxid,
            used: false,
        });
    });
    // SAFETY: the next hook in the chain, or the executor itself, with the same arguments.
    unsafe {
        match PREV_EXECUTOR_START {
            Some(prev) => prev(query, eflags),
            None => pg_sys::standard_ExecutorStart(query, eflags),
        }
    }
    // The statement is started and nothing of it has run: where it can, its guards write its
    // records (changelog.rs).
    if eflags & pg_sys::EXEC_FLAG_EXPLAIN_ONLY as i32 == 0 {
        // SAFETY: the query ExecutorStart has just started.
        unsafe { crate::changelog::direct_statement(query) };
    }
}

/// # Safety
///
/// Called by Postgres only, as ExecutorEnd_hook, with the query it is ending.
#[pg_guard]
unsafe extern "C-unwind" fn on_executor_end(query: *mut pg_sys::QueryDesc) {
    STATE.with_borrow_mut(|s| {
        match s
            .running
            .iter()
            .rposition(|r| r.query == query.cast_const())
        {
            Some(i) => {
                s.running.remove(i);
            }
            // The statement that was running when steward was loaded.
            None => {
                s.unknown_used = None;
                LOADED_MID_STATEMENT.set(false);
            }
        }
    });
    // SAFETY: as above.
    unsafe {
        match PREV_EXECUTOR_END {
            Some(prev) => prev(query),
            None => pg_sys::standard_ExecutorEnd(query),
        }
    }
}

thread_local! {
    /// steward was loaded on demand, possibly in the middle of a statement the executor hooks
    /// did not see start: until that statement (or the transaction) ends, a read of the
    /// context with no tracked statement running is that statement's.
    static LOADED_MID_STATEMENT: Cell<bool> = const { Cell::new(false) };
}

/// The running statement has read the context. A read outside any statement the executor runs
/// (a PL/pgSQL simple expression, a COPY's defaults) marks nothing, unless steward was loaded
/// during a statement it did not see start.
fn mark_used() {
    let portal = active_portal();
    STATE.with_borrow_mut(|s| match s.running.last_mut() {
        Some(r) => r.used = true,
        None if LOADED_MID_STATEMENT.get() => s.unknown_used = Some(portal),
        None => {}
    });
}

/// Refuses to change the tenant while a statement that read the context is running: one
/// statement sees one tenant, and every record it writes is filed under it.
fn check_no_switch(to: Uuid) -> Result<()> {
    let busy = STATE.with_borrow(|s| s.unknown_used.is_some() || s.running.iter().any(|r| r.used));
    if !busy {
        return Ok(());
    }
    match current_context() {
        Ok(now) if now.tenant != to => Err(StewardError::forbidden(
            format!(
                "cannot change the tenant context from {} to {to} while a statement that uses it \
                 is running",
                now.tenant
            ),
            "Enter the tenant in a statement of its own (SELECT steward.enter_tenant(...)) \
             before the statements that work in it.",
        )),
        _ => Ok(()),
    }
}

/// A relation's cache entry was invalidated (steward's one relcache callback, catalog.rs, calls
/// this; `relid` is InvalidOid when all were).
pub(crate) fn relcache_invalidated(relid: pg_sys::Oid) {
    CACHE.with_borrow_mut(|c| {
        if relid == pg_sys::InvalidOid || c.catalogs.contains(&relid) {
            c.forget();
        }
    });
}

/// A role, or a role membership, changed somewhere.
///
/// # Safety
///
/// Called by Postgres only, as a syscache callback.
#[pg_guard]
unsafe extern "C-unwind" fn on_role_invalidation(_arg: pg_sys::Datum, _cache: i32, _hash: u32) {
    CACHE.with_borrow_mut(CatalogCache::forget);
}

/// What the cache holds as the extension's owner (for tests of the cache itself).
#[cfg(any(test, feature = "pg_test"))]
pub(crate) fn cached_owner() -> Option<pg_sys::Oid> {
    CACHE.with_borrow(|c| c.owner)
}

/// Drops the cache as an invalidation does (for tests of the cache itself).
#[cfg(any(test, feature = "pg_test"))]
pub(crate) fn invalidate_for_test() {
    CACHE.with_borrow_mut(CatalogCache::forget);
}

/// Called by the statement trigger on steward's catalogs: every backend drops its cache when
/// this transaction commits (and this one at its next command).
pub fn catalog_changed(relid: pg_sys::Oid) {
    // SAFETY: invalidates a relation's cache entry by OID; an OID that names nothing is ignored.
    unsafe { pg_sys::CacheInvalidateRelcacheByRelid(relid) }
}

/// Makes sure the cache knows which relations invalidate it.
fn learn_catalogs() {
    if CACHE.with_borrow(|c| !c.catalogs.is_empty()) {
        return;
    }
    let generation = generation();
    let oids: Vec<pg_sys::Oid> = [
        c"tenants",
        c"tenant_grants",
        c"trusted_roles",
        c"signing_keys",
    ]
    .into_iter()
    .map(crate::catalog::relation)
    .collect();
    remember(generation, |c| c.catalogs = oids);
}

/// # Safety
///
/// Called by Postgres only, as a transaction callback.
#[pg_guard]
unsafe extern "C-unwind" fn on_xact_event(event: pg_sys::XactEvent::Type, _arg: *mut c_void) {
    use pg_sys::XactEvent::*;
    match event {
        XACT_EVENT_COMMIT
        | XACT_EVENT_PARALLEL_COMMIT
        | XACT_EVENT_ABORT
        | XACT_EVENT_PARALLEL_ABORT
        | XACT_EVENT_PREPARE => STATE.with_borrow_mut(State::clear),
        _ => {}
    }
}

/// # Safety
///
/// Called by Postgres only, as a subtransaction callback.
#[pg_guard]
unsafe extern "C-unwind" fn on_subxact_event(
    event: pg_sys::SubXactEvent::Type,
    my_subid: pg_sys::SubTransactionId,
    parent_subid: pg_sys::SubTransactionId,
    _arg: *mut c_void,
) {
    use pg_sys::SubXactEvent::*;
    STATE.with_borrow_mut(|s| match event {
        SUBXACT_EVENT_ABORT_SUB => {
            s.entered.retain(|e| e.subxid != my_subid);
            s.annotations.retain(|(_, id)| *id != my_subid);
            s.break_glass.retain(|id| *id != my_subid);
            s.governing.retain(|(_, id)| *id != my_subid);
            // Statements that failed inside it never reach ExecutorEnd.
            s.running.retain(|r| r.subxid != my_subid);
            s.ddl_before.retain(|(_, id)| *id != my_subid);
        }
        SUBXACT_EVENT_COMMIT_SUB => {
            // What the subtransaction set now belongs to its parent, and dies with it.
            for e in s.entered.iter_mut().filter(|e| e.subxid == my_subid) {
                e.subxid = parent_subid;
            }
            for (_, id) in s.annotations.iter_mut().filter(|(_, id)| *id == my_subid) {
                *id = parent_subid;
            }
            for id in s.break_glass.iter_mut().filter(|id| **id == my_subid) {
                *id = parent_subid;
            }
            for (_, id) in s.governing.iter_mut().filter(|(_, id)| *id == my_subid) {
                *id = parent_subid;
            }
            for r in s.running.iter_mut().filter(|r| r.subxid == my_subid) {
                r.subxid = parent_subid;
            }
            for (_, id) in s.ddl_before.iter_mut().filter(|(_, id)| *id == my_subid) {
                *id = parent_subid;
            }
        }
        _ => {}
    });
}

fn current_subxid() -> pg_sys::SubTransactionId {
    // SAFETY: reads the current subtransaction id of this backend.
    unsafe { pg_sys::GetCurrentSubTransactionId() }
}

/// The role that is asking: `session_user`, which `SET ROLE` does not change.
fn session_user() -> pg_sys::Oid {
    // SAFETY: reads the session user id, set when the backend started.
    unsafe { pg_sys::GetSessionUserId() }
}

pub fn role_name(role: pg_sys::Oid) -> String {
    // SAFETY: GetUserNameFromId with noerr returns NULL or a palloc'd C string, copied out here.
    unsafe {
        let p = pg_sys::GetUserNameFromId(role, true);
        if p.is_null() {
            format!("oid {}", role.to_u32())
        } else {
            CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    }
}

/// Runs `f` with `search_path = pg_catalog, pg_temp`, as a function with that SET clause
/// would: statements steward runs then resolve every function and operator in pg_catalog (or
/// as schema-qualified), never in a schema the caller put first. The setting is restored when
/// `f` returns or fails.
pub fn with_pinned_search_path<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(i32);
    impl Drop for Restore {
        fn drop(&mut self) {
            // SAFETY: pops exactly the GUC nest level pushed below.
            unsafe { pg_sys::AtEOXact_GUC(true, self.0) }
        }
    }
    // SAFETY: a GUC nest level is pushed and the setting saved in it, as fmgr_security_definer
    // does for a function's SET clause.
    let nest = unsafe {
        let nest = pg_sys::NewGUCNestLevel();
        pg_sys::set_config_option(
            c"search_path".as_ptr(),
            c"pg_catalog, pg_temp".as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
        nest
    };
    let _restore = Restore(nest);
    f()
}

/// Runs `f` with the privileges of the extension's owner, so that steward's own catalogs (which
/// tenant roles cannot read) can be consulted. Only fixed, schema-qualified queries over
/// steward's own tables and the system catalogs run inside, never anything a table owner or
/// user can define (a governed table's triggers, defaults, checks or index expressions), and
/// with the search path pinned ([`with_pinned_search_path`]): otherwise the caller's search path
/// could put its own `=` operator or `now()` in front of pg_catalog's, and steward would run it
/// with the owner's privileges.
pub fn as_extension_owner<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(pg_sys::Oid, i32);
    impl Drop for Restore {
        fn drop(&mut self) {
            // SAFETY: restores the user and security context saved below.
            unsafe { pg_sys::SetUserIdAndSecContext(self.0, self.1) }
        }
    }
    let owner = extension_owner();
    with_pinned_search_path(|| {
        let (mut uid, mut ctx) = (pg_sys::InvalidOid, 0i32);
        // SAFETY: saves the current user and context, then switches as SECURITY DEFINER does.
        unsafe {
            pg_sys::GetUserIdAndSecContext(&mut uid, &mut ctx);
            // A security-restricted operation, as for a maintenance command run as a table's
            // owner: whatever runs inside cannot SET ROLE, create temporary objects or leave
            // anything behind for the caller.
            pg_sys::SetUserIdAndSecContext(
                owner,
                ctx | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32
                    | pg_sys::SECURITY_RESTRICTED_OPERATION as i32,
            );
        }
        let _restore = Restore(uid, ctx);
        f()
    })
}

fn extension_owner() -> pg_sys::Oid {
    if let Some(oid) = CACHE.with_borrow(|c| c.owner) {
        return oid;
    }
    let generation = generation();
    let owner = crate::reads::one::<pg_sys::Oid>(
        "SELECT extowner FROM pg_catalog.pg_extension
          WHERE extname OPERATOR(pg_catalog.=) 'steward'::pg_catalog.name",
        &[],
    )
    .ok()
    .flatten()
    .unwrap_or(pg_sys::Oid::from(pg_sys::BOOTSTRAP_SUPERUSERID));
    remember(generation, |c| c.owner = Some(owner));
    owner
}

/// Whether the session user is a superuser or a member of a trusted (service) role.
pub fn caller_trusted() -> bool {
    role_trusted(session_user())
}

fn role_trusted(caller: pg_sys::Oid) -> bool {
    if let Some(known) = CACHE.with_borrow(|c| c.trusted.get(&caller).copied()) {
        return known;
    }
    let generation = generation();
    learn_catalogs();
    const Q: &str = "
        SELECT coalesce((SELECT rolsuper FROM pg_catalog.pg_roles WHERE oid = $1), false)
               OR EXISTS (SELECT 1 FROM steward.trusted_roles x
                            JOIN pg_catalog.pg_roles r ON r.oid = x.role::pg_catalog.oid
                           WHERE pg_catalog.pg_has_role($1, r.oid, 'USAGE'))";
    let trusted = as_extension_owner(|| crate::reads::one::<bool>(Q, &[caller.into()]))
        .unwrap_or_else(|e| {
            crate::errors::bug(format!("steward: reading trusted roles failed: {e}"))
        })
        .unwrap_or(false);
    remember(generation, |c| {
        c.trusted.insert(caller, trusted);
    });
    trusted
}

/// What the catalogs say about one tenant, from the point of view of the session user.
#[derive(Clone, Debug)]
struct TenantFacts {
    slug: String,
    status: String,
    caller_trusted: bool,
    caller_granted: bool,
}

fn tenant_facts(tenant: Uuid, caller: pg_sys::Oid) -> Option<TenantFacts> {
    let key = (*tenant.as_bytes(), caller);
    if let Some(found) = CACHE.with_borrow(|c| c.facts.get(&key).cloned()) {
        return found;
    }
    let generation = generation();
    learn_catalogs();
    let found = read_tenant_facts(tenant, caller);
    remember(generation, |c| {
        c.facts.insert(key, found.clone());
    });
    found
}

fn read_tenant_facts(tenant: Uuid, caller: pg_sys::Oid) -> Option<TenantFacts> {
    // pg_has_role is evaluated on rows of pg_roles, so a grant to a dropped role is simply
    // ignored instead of raising "role with OID ... does not exist".
    const Q: &str = "
        SELECT t.slug, t.status::text,
               EXISTS (SELECT 1 FROM steward.tenant_grants g
                         JOIN pg_catalog.pg_roles r ON r.oid = g.role::pg_catalog.oid
                        WHERE g.tenant_id = t.tenant_id
                          AND pg_catalog.pg_has_role($2, r.oid, 'USAGE'))
          FROM steward.tenants t
         WHERE t.tenant_id = $1";
    let caller_trusted = role_trusted(caller);
    as_extension_owner(|| {
        Spi::connect(|client| {
            let rows = client.select(Q, Some(1), &[tenant.into(), caller.into()])?;
            if rows.is_empty() {
                return Ok::<_, pgrx::spi::Error>(None);
            }
            let row = rows.first();
            Ok(Some(TenantFacts {
                slug: row.get::<String>(1)?.unwrap_or_default(),
                status: row.get::<String>(2)?.unwrap_or_default(),
                caller_trusted,
                caller_granted: row.get::<bool>(3)?.unwrap_or(false),
            }))
        })
    })
    .unwrap_or_else(|e| {
        crate::errors::bug(format!("steward: reading the tenant catalog failed: {e}"))
    })
}

fn check_active(tenant: Uuid, facts: &TenantFacts) -> Result<()> {
    if facts.status != "active" {
        return Err(StewardError::not_permitted(
            format!("tenant \"{}\" ({tenant}) is {}", facts.slug, facts.status),
            "A suspended or offboarded tenant cannot be entered; a DBA can set its status back \
             to 'active' in steward.tenants.",
        ));
    }
    Ok(())
}

fn unknown_tenant(tenant: Uuid, caller: &str) -> StewardError {
    StewardError::not_permitted(
        format!("tenant {tenant} does not exist or is not permitted for role \"{caller}\""),
        "Check the tenant id; a DBA grants access with steward.grant_tenant(role, tenant).",
    )
}

/// `steward.enter_tenant`: checks the caller and sets the context for this transaction.
pub fn enter(tenant: Uuid, actor: Option<&str>) -> Result<()> {
    let caller = session_user();
    let caller_name = role_name(caller);
    let facts = tenant_facts(tenant, caller).ok_or_else(|| unknown_tenant(tenant, &caller_name))?;
    let actor = if facts.caller_trusted {
        actor
            .filter(|a| !a.is_empty())
            .unwrap_or(&caller_name)
            .to_string()
    } else {
        if !facts.caller_granted {
            // Word for word what an unknown tenant gets: a role learns nothing of a tenant it
            // may not enter, not even that it exists.
            return Err(unknown_tenant(tenant, &caller_name));
        }
        match actor {
            Some(a) if a != caller_name => {
                return Err(StewardError::not_permitted(
                    format!(
                        "role \"{caller_name}\" may not name actor \"{a}\": only trusted roles \
                         act on behalf of others"
                    ),
                    "Leave the actor out (it is always session_user for this role), or have a DBA \
                     mark the service role with steward.trust_role(role).",
                ));
            }
            _ => caller_name,
        }
    };
    check_active(tenant, &facts)?;
    check_no_switch(tenant)?;
    push(tenant, actor);
    Ok(())
}

fn push(tenant: Uuid, actor: String) {
    let subxid = current_subxid();
    STATE.with_borrow_mut(|s| {
        s.entered.push(Entered {
            tenant,
            actor,
            subxid,
        })
    });
}

/// The current (not revoked) rows of `steward.signing_keys`, parsed once per backend until the
/// table changes. A row that does not parse (the table's trigger refuses such rows; only a
/// superuser with triggers disabled could store one) verifies nothing.
fn signing_keys() -> std::rc::Rc<Vec<token::Key>> {
    if let Some(keys) = CACHE.with_borrow(|c| c.keys.clone()) {
        return keys;
    }
    let generation = generation();
    learn_catalogs();
    const Q: &str = "SELECT key_id, alg, secret, jwk, issuer, audience,
                            extract(epoch FROM max_lifetime)::bigint
                       FROM steward.signing_keys
                      WHERE revoked_at IS NULL
                      ORDER BY key_id";
    let keys: Vec<token::Key> = as_extension_owner(|| {
        Spi::connect(|client| {
            let mut keys = Vec::new();
            for row in client.select(Q, None, &[])? {
                let id = row.get::<String>(1)?.unwrap_or_default();
                let alg = row.get::<String>(2)?.unwrap_or_default();
                let secret = row.get::<Vec<u8>>(3)?;
                let jwk = row.get::<pgrx::JsonB>(4)?.map(|j| j.0);
                if let Ok(key) = token::Key::parse(
                    &id,
                    &alg,
                    secret.as_deref(),
                    jwk.as_ref(),
                    row.get::<String>(5)?,
                    row.get::<String>(6)?,
                    row.get::<i64>(7)?,
                ) {
                    keys.push(key);
                }
            }
            Ok::<_, pgrx::spi::Error>(keys)
        })
    })
    .unwrap_or_else(|e| crate::errors::bug(format!("steward: reading signing keys failed: {e}")));
    let keys = std::rc::Rc::new(keys);
    remember(generation, |c| c.keys = Some(keys.clone()));
    keys
}

/// Checks a row of `steward.signing_keys` as `Key::parse` reads it (the table's trigger).
pub fn check_signing_key(
    id: &str,
    alg: &str,
    secret: Option<&[u8]>,
    jwk: Option<&serde_json::Value>,
    max_lifetime: Option<i64>,
) -> Result<()> {
    token::Key::parse(id, alg, secret, jwk, None, None, max_lifetime)
        .map(|_| ())
        .map_err(|e| {
            StewardError::bad_argument(
                format!("signing key \"{id}\" cannot be used: {e}"),
                "HS256 keys have a secret of at least 32 bytes; RS256, ES256 and EdDSA keys have \
                 the public key as a JWK (kty RSA with n and e, EC P-256 with x and y, OKP \
                 Ed25519 with x) and no private members.",
            )
        })
}

fn now_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `steward.enter_tenant_token`: the token's signature is the authority; the actor is its `sub`.
pub fn enter_token(jwt: &str) -> Result<()> {
    let keys = signing_keys();
    let claims =
        token::verify(jwt, &keys, now_seconds()).map_err(|e| StewardError::InvalidToken {
            message: format!("token refused: {e}"),
            hint: "Obtain a fresh token from the identity provider, signed with a current key \
                   in steward.signing_keys, with tenant_id, sub and exp claims."
                .into(),
        })?;
    let tenant = Uuid::from_bytes(claims.tenant_id);
    let facts = tenant_facts(tenant, session_user())
        .ok_or_else(|| unknown_tenant(tenant, &role_name(session_user())))?;
    check_active(tenant, &facts)?;
    check_no_switch(tenant)?;
    push(tenant, claims.sub);
    Ok(())
}

/// The context in force: the one entered last in this transaction, else the implicit one. The
/// running statement is marked as one that used it.
pub fn context() -> Result<Context> {
    mark_used();
    current_context()
}

fn current_context() -> Result<Context> {
    if let Some(e) = STATE.with_borrow(|s| s.entered.last().cloned()) {
        return Ok(Context {
            tenant: e.tenant,
            actor: e.actor,
        });
    }
    let caller = session_user();
    if let Some(cached) = CACHE.with_borrow(|c| c.implicit.get(&caller).cloned()) {
        return cached;
    }
    let generation = generation();
    learn_catalogs();
    let found = implicit_context();
    remember(generation, |c| {
        c.implicit.insert(caller, found.clone());
    });
    found
}

/// The tenant of a role granted exactly one tenant.
fn implicit_context() -> Result<Context> {
    let caller = session_user();
    let caller_name = role_name(caller);
    const Q: &str = "
        SELECT t.tenant_id, t.slug, t.status::text
          FROM steward.tenants t
         WHERE EXISTS (SELECT 1 FROM steward.tenant_grants g
                         JOIN pg_catalog.pg_roles r ON r.oid = g.role::pg_catalog.oid
                        WHERE g.tenant_id = t.tenant_id
                          AND pg_catalog.pg_has_role($1, r.oid, 'USAGE'))
           -- pg_has_role is true for a superuser and every role: no implicit tenant for one.
           AND NOT coalesce((SELECT rolsuper FROM pg_catalog.pg_roles WHERE oid = $1), false)
         LIMIT 2";
    let granted: Vec<(Uuid, String, String)> = as_extension_owner(|| {
        Spi::connect(|client| {
            let mut out = Vec::new();
            for row in client.select(Q, None, &[caller.into()])? {
                out.push((
                    row.get::<Uuid>(1)?.expect("tenant_id is not null"),
                    row.get::<String>(2)?.unwrap_or_default(),
                    row.get::<String>(3)?.unwrap_or_default(),
                ));
            }
            Ok::<_, pgrx::spi::Error>(out)
        })
    })
    .unwrap_or_else(|e| crate::errors::bug(format!("steward: reading tenant grants failed: {e}")));
    match granted.as_slice() {
        [] => Err(StewardError::NoTenantContext {
            what: format!(
                "role \"{caller_name}\" has not entered a tenant and holds no tenant grant"
            ),
            hint: "Call steward.enter_tenant(tenant) first, or have a DBA run \
                   steward.grant_tenant(role, tenant)."
                .into(),
        }),
        [(tenant, slug, status)] => {
            check_active(
                *tenant,
                &TenantFacts {
                    slug: slug.clone(),
                    status: status.clone(),
                    caller_trusted: false,
                    caller_granted: true,
                },
            )?;
            Ok(Context {
                tenant: *tenant,
                actor: caller_name,
            })
        }
        _ => Err(StewardError::NoTenantContext {
            what: format!(
                "role \"{caller_name}\" is granted more than one tenant and has not chosen one"
            ),
            hint: "Call steward.enter_tenant(tenant) at the start of each transaction.".into(),
        }),
    }
}

/// The tenant in force, or the ST001 (or ST002) that `context` gives.
pub fn require_tenant() -> Result<Uuid> {
    context().map(|c| c.tenant)
}

/// Whether `steward.break_glass` is in force in this transaction.
pub fn break_glass_active() -> bool {
    STATE.with_borrow(|s| !s.break_glass.is_empty())
}

/// Puts `steward.break_glass` in force until the end of this transaction (or of the
/// subtransaction that called it, if that rolls back).
pub fn set_break_glass() {
    let subxid = current_subxid();
    STATE.with_borrow_mut(|s| s.break_glass.push(subxid));
}

/// Marks table `rel` as being changed by govern/ungovern (`on`), or no longer.
pub fn set_governing(rel: pg_sys::Oid, on: bool) {
    let subxid = current_subxid();
    STATE.with_borrow_mut(|s| {
        if on {
            s.governing.push((rel, subxid));
        } else if let Some(i) = s.governing.iter().rposition(|(r, _)| *r == rel) {
            s.governing.remove(i);
        }
    });
}

/// The DDL guard, at the start of a command: what is weak already.
pub fn ddl_begin(known: Vec<String>) {
    let subxid = current_subxid();
    STATE.with_borrow_mut(|s| s.ddl_before.push((known, subxid)));
}

/// What was weak when the innermost running DDL command started (nothing if none is known).
pub fn ddl_known() -> Vec<String> {
    STATE.with_borrow(|s| {
        s.ddl_before
            .last()
            .map(|(k, _)| k.clone())
            .unwrap_or_default()
    })
}

/// The DDL guard, at the end of a command.
pub fn ddl_end() {
    STATE.with_borrow_mut(|s| {
        s.ddl_before.pop();
    });
}

/// Whether govern/ungovern is changing table `rel` right now.
pub fn governing(rel: pg_sys::Oid) -> bool {
    STATE.with_borrow(|s| s.governing.iter().any(|(r, _)| *r == rel))
}

pub fn annotations() -> Annotations {
    STATE.with_borrow(|s| {
        s.annotations
            .last()
            .map(|(a, _)| a.clone())
            .unwrap_or_default()
    })
}

// ---------------------------------------------------------------------------------------------
// The SQL functions.
// ---------------------------------------------------------------------------------------------

/// Sets the tenant context for the current transaction.
#[pg_extern(volatile, parallel_unsafe)]
fn enter_tenant(tenant: Option<Uuid>, actor: default!(Option<&str>, "NULL")) {
    or_raise(
        crate::errors::required(tenant, "steward.enter_tenant", "tenant")
            .and_then(|t| enter(t, actor)),
    )
}

/// Sets the tenant context from a JWT (HS256, RS256, ES256 or EdDSA) with `tenant_id`, `sub` and
/// `exp` claims, verified against `steward.signing_keys`.
#[pg_extern(volatile, parallel_unsafe)]
fn enter_tenant_token(token: Option<&str>) {
    or_raise(enter_token(token.unwrap_or("")))
}

/// Checks a row of `steward.signing_keys` (its BEFORE trigger calls this).
#[pg_extern(stable, parallel_safe)]
fn _internal_check_signing_key(
    key_id: Option<&str>,
    alg: Option<&str>,
    secret: Option<&[u8]>,
    jwk: Option<pgrx::JsonB>,
    max_lifetime_seconds: Option<i64>,
) {
    let jwk = jwk.map(|j| j.0);
    or_raise(check_signing_key(
        key_id.unwrap_or(""),
        alg.unwrap_or(""),
        secret,
        jwk.as_ref(),
        max_lifetime_seconds,
    ))
}

/// The tenant of the current transaction; ST001 when there is none. The policies call it once
/// per statement, as an InitPlan.
#[pg_extern(stable, parallel_restricted)]
fn current_tenant() -> Uuid {
    or_raise(require_tenant())
}

/// The actor of the current transaction, or NULL when there is no tenant context.
#[pg_extern(stable, parallel_restricted)]
fn current_actor() -> Option<String> {
    context().ok().map(|c| c.actor)
}

/// Records why this transaction runs, for the audit and outbox rows it writes.
#[pg_extern(volatile, parallel_unsafe)]
fn annotate(
    reason: Option<&str>,
    request_id: default!(Option<&str>, "NULL"),
    traceparent: default!(Option<&str>, "NULL"),
) {
    let a = Annotations {
        reason: reason.map(str::to_string),
        request_id: request_id.map(str::to_string),
        traceparent: traceparent.map(str::to_string),
    };
    let subxid = current_subxid();
    STATE.with_borrow_mut(|s| s.annotations.push((a, subxid)));
}

/// The annotations of the current transaction, as JSON (for tests and the service's logs).
#[pg_extern(stable, parallel_restricted)]
fn _internal_annotations() -> pgrx::JsonB {
    let a = annotations();
    pgrx::JsonB(serde_json::json!({
        "reason": a.reason, "request_id": a.request_id, "traceparent": a.traceparent,
    }))
}
