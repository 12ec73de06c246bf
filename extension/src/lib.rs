//! steward: tenant isolation, audit trail and outbox for shared PostgreSQL tables.
//!
//! This file only wires the modules together; each concept has its own module.

use pgrx::prelude::*;

pub mod audit;
pub mod catalog;
pub mod changelog;
pub mod errors;
pub mod govern;
pub mod outbox;
pub mod plans;
pub mod reads;
pub mod relay;
pub mod sealing;
pub mod tenancy;
pub mod versioning;
pub mod wakeups;
pub mod xids;

pg_module_magic!(name, version);

// The tables come first (bootstrap.sql); then the hand-written SQL, one file per concept (errors,
// tenancy, govern, versioning, changelog, sealing, outbox, resources, relay), each after the one before
// it and after the Rust functions its statements need when they run; the privileges last (finalize),
// once everything they name exists.
extension_sql_file!("../../sql/bootstrap.sql", name = "bootstrap", bootstrap);
extension_sql_file!("../../sql/errors.sql", name = "errors_sql");
extension_sql_file!(
    "../../sql/tenancy.sql",
    name = "tenancy_sql",
    requires = [
        "errors_sql",
        govern::_internal_catalog_changed,
        tenancy::_internal_check_signing_key
    ]
);
extension_sql_file!(
    "../../sql/govern.sql",
    name = "govern_sql",
    requires = [
        "tenancy_sql",
        tenancy::current_tenant,
        tenancy::scans::_internal_plan_guard,
        govern::_internal_row_guard,
        govern::_internal_update_guard,
        govern::_internal_truncate_guard,
        govern::_internal_governed_guard,
        govern::_internal_governing,
        govern::_internal_governing_begin,
        govern::_internal_governing_end,
        govern::_internal_own_write,
        govern::_internal_restore,
        govern::_internal_ddl_begin,
        govern::_internal_ddl_end,
        govern::_internal_ddl_known,
        govern::_internal_in_extension_script,
        govern::_internal_break_glass_active,
        govern::_internal_record_ddl,
        govern::_internal_record_refusal,
        govern::break_glass,
        changelog::_internal_log_row
    ]
);
extension_sql_file!(
    "../../sql/versioning.sql",
    name = "versioning_sql",
    requires = ["govern_sql"]
);
extension_sql_file!(
    "../../sql/changelog.sql",
    name = "changelog_sql",
    requires = [
        "versioning_sql",
        changelog::_internal_row_hash,
        audit::_internal_log_guard,
        audit::_internal_erase
    ]
);
extension_sql_file!(
    "../../sql/sealing.sql",
    name = "sealing_sql",
    requires = [
        "changelog_sql",
        sealing::seal_audit,
        sealing::_internal_witness,
        xids::_internal_xid_offset
    ]
);
extension_sql_file!(
    "../../sql/outbox.sql",
    name = "outbox_sql",
    requires = [
        "sealing_sql",
        outbox::_internal_aggregate_id,
        outbox::_internal_batch_next,
        outbox::_internal_batch_find,
        outbox::_internal_batch_behind,
        outbox::_internal_consumer_scope,
        outbox::_internal_consumer_visible,
        outbox::_internal_prune_outbox
    ]
);
extension_sql_file!(
    "../../sql/resources.sql",
    name = "resources_sql",
    requires = ["outbox_sql"]
);
extension_sql_file!(
    "../../sql/relay.sql",
    name = "relay_sql",
    requires = ["resources_sql", relay::_internal_webhook_secret]
);
extension_sql_file!("../../sql/privileges.sql", name = "privileges", finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    // A Postgres error that passes through Rust frames is reported with a Rust backtrace in
    // DETAIL when the server's environment asks for backtraces (RUST_BACKTRACE): clients must
    // never see steward's internals. Backtrace capture reads this before RUST_BACKTRACE.
    std::env::set_var("RUST_LIB_BACKTRACE", "0");
    tenancy::init();
    tenancy::install_executor_hooks();
    tenancy::scans::install();
    catalog::init();
    wakeups::init();
    changelog::init();
    // No setting under steward.* can exist but steward's own (steward.notify, superuser-only):
    // a client's `SET steward.tenant = ...` is an error once the library is loaded, and a
    // placeholder set before that is removed with a warning.
    // SAFETY: called from _PG_init with a static NUL-terminated prefix.
    unsafe { pgrx::pg_sys::MarkGUCPrefixReserved(c"steward".as_ptr()) };
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
#[allow(clippy::disallowed_methods)] // tests may take transaction ids
mod tests {
    // Units that need a backend. The SQL surface as users see it is specified by pg_regress/.
    use pgrx::pg_sys;
    use pgrx::prelude::*;

    const A: &str = "00000000-0000-4000-8000-00000000000a";
    const B: &str = "00000000-0000-4000-8000-00000000000b";

    /// Runs `sql` in a subtransaction and returns "ok" or the SQLSTATE it failed with, then
    /// its message and hint.
    fn outcome(sql: &str) -> (String, String, String) {
        Spi::run(
            "CREATE OR REPLACE FUNCTION pg_temp.outcome(q text, OUT code text, OUT msg text, OUT hint text)
             LANGUAGE plpgsql AS $f$
             BEGIN
               EXECUTE q; code := 'ok';
             EXCEPTION WHEN OTHERS THEN
               GET STACKED DIAGNOSTICS code = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
             END $f$",
        )
        .unwrap();
        let (code, msg, hint) = Spi::get_three_with_args::<String, String, String>(
            "SELECT * FROM pg_temp.outcome($1)",
            &[sql.into()],
        )
        .unwrap();
        (
            code.unwrap_or_default(),
            msg.unwrap_or_default(),
            hint.unwrap_or_default(),
        )
    }

    fn fixture() {
        Spi::run(&format!(
            "INSERT INTO steward.tenants (tenant_id, slug, display_name)
                  VALUES ('{A}', 'a', 'A'), ('{B}', 'b', 'B');
             CREATE TABLE public.t (id int PRIMARY KEY, tenant_id uuid NOT NULL, v text);
             SELECT steward.govern('public.t');"
        ))
        .unwrap();
    }

    #[pg_test]
    fn no_context_is_st001_with_a_message_and_a_hint() {
        let (code, msg, hint) = outcome("SELECT steward.current_tenant()");
        assert_eq!(code, "ST001");
        assert!(msg.starts_with("no tenant context"), "{msg}");
        assert!(hint.contains("steward.enter_tenant"), "{hint}");
    }

    #[pg_test]
    fn entered_context_is_current_and_a_failed_subtransaction_undoes_it() {
        fixture();
        Spi::run(&format!("SELECT steward.enter_tenant('{A}', 'alice')")).unwrap();
        let t = Spi::get_one::<String>("SELECT steward.current_tenant()::text").unwrap();
        assert_eq!(t.as_deref(), Some(A));
        // Entered inside a subtransaction that fails: back to A.
        let (code, _, _) = outcome(&format!(
            "DO $$ BEGIN PERFORM steward.enter_tenant('{B}', 'bob'); PERFORM 1/0; END $$"
        ));
        assert_eq!(code, "22012");
        let actor = Spi::get_one::<String>("SELECT steward.current_actor()").unwrap();
        assert_eq!(actor.as_deref(), Some("alice"));
    }

    #[pg_test]
    fn row_guard_rejects_other_tenants_and_fills_the_column() {
        fixture();
        Spi::run(&format!("SELECT steward.enter_tenant('{A}')")).unwrap();
        Spi::run("INSERT INTO public.t (id, v) VALUES (1, 'mine')").unwrap();
        let t =
            Spi::get_one::<String>("SELECT tenant_id::text FROM public.t WHERE id = 1").unwrap();
        assert_eq!(t.as_deref(), Some(A));
        let (code, msg, _) = outcome(&format!(
            "INSERT INTO public.t (id, tenant_id) VALUES (2, '{B}')"
        ));
        assert_eq!(code, "ST403");
        assert!(msg.contains("public.t") && msg.contains(B), "{msg}");
        let (code, msg, _) = outcome(&format!("UPDATE public.t SET tenant_id = '{B}'"));
        assert_eq!(code, "ST403");
        assert!(msg.contains(A) && msg.contains(B), "{msg}");
        let (code, _, _) = outcome("TRUNCATE public.t");
        assert_eq!(code, "ST403");
    }

    #[pg_test]
    fn untrusted_actor_and_unknown_tenant_are_st002() {
        fixture();
        Spi::run(
            "CREATE ROLE pgtest_tenant LOGIN;
             SELECT steward.grant_tenant('pgtest_tenant', '00000000-0000-4000-8000-00000000000a');",
        )
        .unwrap();
        // SET SESSION AUTHORIZATION changes session_user, which is who steward asks about.
        Spi::run("SET SESSION AUTHORIZATION pgtest_tenant").unwrap();
        let (code, _, _) = outcome(&format!("SELECT steward.enter_tenant('{B}')"));
        assert_eq!(code, "ST002");
        let (code, msg, _) = outcome(&format!(
            "SELECT steward.enter_tenant('{A}', 'someone-else')"
        ));
        assert_eq!(code, "ST002");
        assert!(msg.contains("someone-else"), "{msg}");
        let t = Spi::get_one::<String>("SELECT steward.current_tenant()::text").unwrap();
        assert_eq!(t.as_deref(), Some(A), "one grant: implicit context");
        Spi::run("RESET SESSION AUTHORIZATION").unwrap();
    }

    #[pg_test]
    fn an_answer_read_before_an_invalidation_is_not_kept() {
        // A lookup runs SQL, and SQL processes invalidations: the answer it read may already be
        // stale when it comes back. The cache keeps it only if no invalidation came between.
        crate::tenancy::invalidate_for_test();
        let before = crate::tenancy::generation();
        crate::tenancy::invalidate_for_test(); // arrives while the lookup runs
        crate::tenancy::remember(before, |c| c.owner = Some(pg_sys::Oid::from(4242)));
        assert_eq!(
            crate::tenancy::cached_owner(),
            None,
            "a stale answer was kept"
        );
        let now = crate::tenancy::generation();
        crate::tenancy::remember(now, |c| c.owner = Some(pg_sys::Oid::from(4242)));
        assert_eq!(
            crate::tenancy::cached_owner(),
            Some(pg_sys::Oid::from(4242))
        );
        crate::tenancy::invalidate_for_test();
    }

    #[pg_test]
    fn a_superuser_is_never_implicitly_in_a_tenant() {
        // pg_has_role() is true for a superuser and any role: with exactly one tenant grant in
        // the database, a superuser must still not find itself in that tenant (nor would a
        // consumer it creates be scoped to it).
        fixture();
        Spi::run(&format!(
            "CREATE ROLE pgtest_only LOGIN; SELECT steward.grant_tenant('pgtest_only', '{A}');"
        ))
        .unwrap();
        let (code, _, _) = outcome("SELECT steward.current_tenant()");
        assert_eq!(code, "ST001");
        let scope = Spi::get_one::<String>("SELECT steward._internal_consumer_scope()::text");
        assert_eq!(
            scope.unwrap(),
            None,
            "a superuser's consumer reads every tenant"
        );
    }
}

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
