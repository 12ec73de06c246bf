-- Privileges: what PUBLIC may not execute (the DBA's functions, steward's internals, its
-- trigger functions), and what it may: the schema, the context functions, restore() and
-- delete_version().

-- Default privileges (ALTER DEFAULT PRIVILEGES) apply to what an extension script creates too:
-- where the installing role's defaults grant EXECUTE on new functions to some role, that role
-- would get steward's internals; where they revoke EXECUTE from PUBLIC, no tenant role could
-- call the tenant function its policies evaluate. So steward's objects are first set back to
-- what Postgres gives by default: a function executable by PUBLIC, a relation by its owner and
-- whoever bootstrap.sql granted it to (PUBLIC and steward's own roles), nothing else; then the
-- statements below revoke and grant from there. An upgrade does this for the objects it creates
-- (`keep`: the ones that existed before it, whose privileges are the DBA's).
CREATE FUNCTION steward._reset_privileges(keep oid[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    o record;
    a record;
BEGIN
    FOR o IN
        SELECT d.classid, d.objid,
               CASE WHEN d.classid = 'pg_proc'::regclass THEN 'FUNCTION ' || d.objid::regprocedure::text
                    WHEN c.relkind = 'S' THEN 'SEQUENCE ' || d.objid::regclass::text
                    ELSE 'TABLE ' || d.objid::regclass::text END AS what,
               coalesce(p.proacl, c.relacl) AS acl,
               coalesce(p.proowner, c.relowner) AS owner
          FROM pg_depend d
          LEFT JOIN pg_proc p ON d.classid = 'pg_proc'::regclass AND p.oid = d.objid
          LEFT JOIN pg_class c ON d.classid = 'pg_class'::regclass AND c.oid = d.objid
         WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
           AND d.refobjid = (SELECT e.oid FROM pg_extension e WHERE e.extname = 'steward')
           AND (p.oid IS NOT NULL OR c.relkind IN ('r', 'v', 'S'))
           AND NOT d.objid = ANY (coalesce(keep, '{}'))
    LOOP
        FOR a IN SELECT DISTINCT x.grantee FROM aclexplode(o.acl) x
                  WHERE x.grantee <> o.owner
                    AND (x.grantee <> 0 OR o.what LIKE 'SEQUENCE %')
                    AND NOT (x.grantee <> 0 AND pg_get_userbyid(x.grantee) LIKE 'steward\_%')
        LOOP
            EXECUTE format('REVOKE ALL ON %s FROM %s', o.what,
                           CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END);
        END LOOP;
        IF o.classid = 'pg_proc'::regclass THEN
            EXECUTE format('GRANT EXECUTE ON %s TO PUBLIC', o.what);
        END IF;
    END LOOP;
END
$$;
SELECT steward._reset_privileges('{}');
REVOKE ALL ON FUNCTION steward._reset_privileges(oid[]) FROM PUBLIC;

REVOKE ALL ON FUNCTION
    steward.create_tenant(text, text),
    steward._tenant_slug(uuid),
    steward._forget_dropped_roles(),
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
    steward._table_faults(oid, name, boolean, boolean),
    steward._trigger_args(oid),
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
    steward.expose(regclass, text, name[]),
    steward.unexpose(regclass),
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
    steward._internal_batch_behind(uuid, text, text, text, bigint),
    steward._consumer_at(text, uuid, boolean),
    steward._poll(steward.consumers, integer, boolean),
    steward._ack(steward.consumers, bigint),
    steward._seek(steward.consumers, timestamptz),
    steward._internal_webhook_secret(),
    steward._webhook(uuid),
    steward._sink_consumer(text, boolean),
    steward._relay_holds(text, text, bigint),
    steward._append_only_guard(),
    steward.relay_claim(text, text[], interval),
    steward.relay_release(text, text, bigint),
    steward.relay_poll(text, text, bigint, integer),
    steward.relay_poll_ahead(text, text, bigint, xid8, bigint, integer),
    steward.relay_ack(text, text, bigint, bigint, jsonb, text)
FROM PUBLIC;
-- The relay's functions check membership themselves too.
GRANT EXECUTE ON FUNCTION
    steward.relay_claim(text, text[], interval),
    steward.relay_release(text, text, bigint),
    steward.relay_poll(text, text, bigint, integer),
    steward.relay_poll_ahead(text, text, bigint, xid8, bigint, integer),
    steward.relay_ack(text, text, bigint, bigint, jsonb, text)
TO steward_relay;
-- steward's trigger functions fire for everyone, but only the DBA may attach them: without
-- this, a role that can create a table could attach the log trigger to it and forge records.
REVOKE ALL ON FUNCTION
    steward._internal_row_guard(),
    steward._internal_update_guard(),
    steward._internal_row_guard_and_log(),
    steward._internal_update_guard_and_log(),
    steward._internal_truncate_guard(),
    steward._internal_catalog_changed(),
    steward._internal_check_signing_key(text, text, bytea, jsonb, bigint),
    steward._signing_key_check(),
    steward._internal_log_guard(),
    steward._internal_governed_guard(),
    steward._internal_log_row()
FROM PUBLIC;

-- restore() checks the caller's UPDATE privilege and tenant itself.
GRANT EXECUTE ON FUNCTION steward.restore(regclass, jsonb) TO PUBLIC;
GRANT EXECUTE ON FUNCTION steward.delete_version(regclass, jsonb, bigint) TO PUBLIC;
REVOKE ALL ON steward.governed_tables FROM PUBLIC;
-- The web service reads what it serves; the view shows names and types, never a row.
GRANT SELECT ON steward.exposed_resources TO PUBLIC;

-- Everyone may use the schema (the policies call steward.current_tenant()) and the context
-- functions, which check the caller themselves.
GRANT USAGE ON SCHEMA steward TO PUBLIC;
