-- Tenancy: tenants, which roles may enter them (grants) and which may name the actor (trusted
-- roles); the caches every backend keeps of them are dropped when they change. The context
-- itself lives in Rust (extension/src/tenancy).

CREATE FUNCTION steward.create_tenant(slug text, display_name text)
RETURNS uuid
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    new_id uuid;
BEGIN
    IF slug IS NULL OR slug !~ '^[a-z0-9][a-z0-9_-]{0,62}$' THEN
        PERFORM steward._raise('ST400', format('invalid tenant slug %s', coalesce('"' || slug || '"', 'NULL')),
                              'A slug is 1 to 63 lower-case letters, digits, "_" or "-", starting with a letter or digit.');
    END IF;
    IF EXISTS (SELECT 1 FROM steward.tenants t WHERE t.slug = create_tenant.slug) THEN
        PERFORM steward._raise('ST400', format('tenant "%s" already exists', slug),
                              'Slugs are unique; look the tenant up in steward.tenants.');
    END IF;
    INSERT INTO steward.tenants (slug, display_name)
    VALUES (create_tenant.slug, coalesce(create_tenant.display_name, create_tenant.slug))
    RETURNING tenant_id INTO new_id;
    RETURN new_id;
END
$$;

CREATE FUNCTION steward._tenant_slug(tenant uuid)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    found text;
BEGIN
    SELECT t.slug INTO found FROM steward.tenants t WHERE t.tenant_id = tenant;
    IF found IS NULL THEN
        PERFORM steward._raise('ST400', format('tenant %s does not exist', coalesce(tenant::text, 'NULL')),
                              'Create it with steward.create_tenant(slug, display_name).');
    END IF;
    RETURN found;
END
$$;

-- Grants and trust of roles that no longer exist: a role is kept by OID, and a new role could
-- one day be given a dropped one's (a dump leaves them out: their extcondition in bootstrap.sql).
-- Removed whenever a grant or trust is given, and by regovern().
CREATE FUNCTION steward._forget_dropped_roles()
RETURNS void
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    DELETE FROM steward.tenant_grants g
     WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.oid = g.role::oid);
    DELETE FROM steward.trusted_roles t
     WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.oid = t.role::oid);
$$;

CREATE FUNCTION steward.grant_tenant(role regrole, tenant uuid)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM steward._tenant_slug(tenant);
    PERFORM steward._forget_dropped_roles();
    INSERT INTO steward.tenant_grants (role, tenant_id)
    VALUES (grant_tenant.role, tenant)
    ON CONFLICT DO NOTHING;
END
$$;

-- A tenant's grants go when the tenant does (what ON DELETE CASCADE would do; see bootstrap.sql).
CREATE FUNCTION steward._tenant_gone()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM steward.tenant_grants g WHERE g.tenant_id = OLD.tenant_id;
    RETURN NULL;
END
$$;
CREATE TRIGGER steward_tenant_gone AFTER DELETE ON steward.tenants
    FOR EACH ROW EXECUTE FUNCTION steward._tenant_gone();

CREATE FUNCTION steward.revoke_tenant(role regrole, tenant uuid)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM steward._tenant_slug(tenant);
    DELETE FROM steward.tenant_grants g WHERE g.role = revoke_tenant.role AND g.tenant_id = tenant;
END
$$;

CREATE FUNCTION steward.trust_role(role regrole)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT steward._forget_dropped_roles();
    INSERT INTO steward.trusted_roles (role) VALUES (trust_role.role) ON CONFLICT DO NOTHING;
$$;

-- Every backend caches what these catalogs say; a change to any of them drops those caches
-- when it commits.
CREATE TRIGGER steward_catalog_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON steward.tenants FOR EACH STATEMENT EXECUTE FUNCTION steward._internal_catalog_changed();
CREATE TRIGGER steward_catalog_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON steward.tenant_grants FOR EACH STATEMENT EXECUTE FUNCTION steward._internal_catalog_changed();
CREATE TRIGGER steward_catalog_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON steward.trusted_roles FOR EACH STATEMENT EXECUTE FUNCTION steward._internal_catalog_changed();
CREATE TRIGGER steward_catalog_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON steward.signing_keys FOR EACH STATEMENT EXECUTE FUNCTION steward._internal_catalog_changed();

-- A signing key is checked when it is stored, as enter_tenant_token will read it: a JWK that is
-- not a public key of its algorithm, a private JWK, a short secret are refused (ST400) instead
-- of verifying nothing later.
CREATE FUNCTION steward._signing_key_check()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM steward._internal_check_signing_key(NEW.key_id, NEW.alg, NEW.secret, NEW.jwk,
                                                extract(epoch FROM NEW.max_lifetime)::bigint);
    RETURN NEW;
END
$$;
CREATE TRIGGER steward_signing_key_check BEFORE INSERT OR UPDATE ON steward.signing_keys
    FOR EACH ROW EXECUTE FUNCTION steward._signing_key_check();
