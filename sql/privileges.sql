-- Privileges: what PUBLIC may not execute (the DBA's functions, steward's internals, its
-- trigger functions), and what it may: the schema, the context functions, restore() and
-- delete_version().

REVOKE ALL ON FUNCTION
    steward.create_tenant(text, text),
    steward._tenant_slug(uuid),
    steward.grant_tenant(regrole, uuid),
    steward.revoke_tenant(regrole, uuid),
    steward.trust_role(regrole),
    steward.govern(regclass, name, boolean, boolean, boolean, boolean, boolean),
    steward._govern(regclass, name, boolean, boolean, boolean, boolean, boolean),
    steward._internal_governing_begin(oid),
    steward._internal_governing_end(oid),
    steward.ungovern(regclass),
    steward._ungovern(regclass),
    steward._governance_faults(oid),
    steward._ddl_guard(),
    steward._ddl_guard_start(),
    steward._faults_of(oid[]),
    steward._internal_ddl_begin(text[]),
    steward._internal_ddl_end(),
    steward._internal_record_ddl(text, text),
    steward._internal_record_refusal(text, text),
    steward._tenant_gone(),
    steward._extension_guard(),
    steward._forget_dropped_tables(),
    steward.seal_audit(),
    steward._seal_audit(),
    steward._internal_witness(uuid, bigint, bytea),
    steward.audit_heads(),
    steward.verify_audit(uuid, jsonb),
    steward.erase(regclass, jsonb, text),
    steward._internal_erase(oid, jsonb, text),
    steward.register_event_type(text, integer, jsonb),
    steward.prune_outbox(interval),
    steward._internal_prune_outbox(interval),
    steward._internal_batch_next(uuid, text, text, text, bigint),
    steward._internal_batch_find(uuid, text, text, text, bigint),
    steward._internal_batch_behind(uuid, text, text, text, bigint)
FROM PUBLIC;
-- steward's trigger functions fire for everyone, but only the DBA may attach them: without
-- this, a role that can create a table could attach the log trigger to it and forge records.
REVOKE ALL ON FUNCTION
    steward._internal_row_guard(),
    steward._internal_update_guard(),
    steward._internal_truncate_guard(),
    steward._internal_catalog_changed(),
    steward._internal_log_guard(),
    steward._internal_governed_guard(),
    steward._internal_log_row()
FROM PUBLIC;

-- restore() checks the caller's UPDATE privilege and tenant itself.
GRANT EXECUTE ON FUNCTION steward.restore(regclass, jsonb) TO PUBLIC;
GRANT EXECUTE ON FUNCTION steward.delete_version(regclass, jsonb, bigint) TO PUBLIC;
REVOKE ALL ON steward.governed_tables FROM PUBLIC;

-- Everyone may use the schema (the policies call steward.current_tenant()) and the context
-- functions, which check the caller themselves.
GRANT USAGE ON SCHEMA steward TO PUBLIC;
