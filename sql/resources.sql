-- Resources: the governed tables (and security_invoker views over them) a DBA exposes to the web
-- API, steward-service serve. The service reads steward.exposed_resources to know which
-- resources exist, their key, their columns and their types; it builds every statement from
-- that description, never from a request's text. The tenant column is never exposed.

-- The view itself and every relation it reads, through the views it reads (each once).
CREATE FUNCTION steward._view_relations(view_rel regclass)
RETURNS SETOF oid
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH RECURSIVE used(rel, path) AS (
        SELECT view_rel::oid, ARRAY[view_rel::oid]
        UNION
        SELECT d.refobjid, u.path || d.refobjid
          FROM used u
          JOIN pg_rewrite w ON w.ev_class = u.rel
          JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = w.oid
                          AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> u.rel
         WHERE NOT d.refobjid = ANY (u.path)
    )
    SELECT DISTINCT u.rel FROM used u
$$;

-- (SECURITY DEFINER: exposed_resources calls it for whoever reads the view, and it reads
-- steward.governed; it says only whether a view's relations are governed.)
CREATE FUNCTION steward._view_faults(view_rel regclass)
RETURNS SETOF text
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    -- Every relation the view reads, through the views it reads, must be governed or itself a
    -- security_invoker view: a view that runs as its owner reads across tenants. steward's own
    -- relations are not resources. And every function or operator the views call must be a
    -- built-in one: what a function reads is not in the catalog, and a function can read any
    -- table (as its owner, if SECURITY DEFINER) whatever policy the caller is under.
    WITH used(rel) AS (SELECT * FROM steward._view_relations(view_rel)),
    rules AS (
        SELECT w.oid AS rule FROM used u JOIN pg_rewrite w ON w.ev_class = u.rel
    )
    SELECT DISTINCT f.fault FROM (
        SELECT CASE
                 WHEN c.relnamespace = 'steward'::regnamespace
                     THEN format('%s reads %s, one of steward''s own relations', view_rel, c.oid::regclass)
                 WHEN c.relkind = 'v'
                     THEN format('view %s does not run as its caller (security_invoker)', c.oid::regclass)
                 ELSE format('%s reads %s, which steward does not govern', view_rel, c.oid::regclass) END AS fault
          FROM used u
          JOIN pg_class c ON c.oid = u.rel
         WHERE c.relnamespace = 'steward'::regnamespace
            OR (c.relkind = 'v'
                AND NOT coalesce('security_invoker=true' = ANY (c.reloptions)
                                 OR 'security_invoker=on' = ANY (c.reloptions)
                                 OR 'security_invoker=1' = ANY (c.reloptions), false))
            OR (c.relkind IN ('r', 'p', 'm', 'f')
                AND NOT EXISTS (SELECT 1 FROM steward.governed g WHERE g.rel = c.oid))
        UNION ALL
        SELECT format('%s calls %s, which is not a built-in function: steward cannot tell what it reads',
                      view_rel, p.oid::regprocedure)
          FROM rules r
          JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.rule
                          AND d.refclassid = 'pg_proc'::regclass
          JOIN pg_proc p ON p.oid = d.refobjid
         WHERE p.pronamespace <> 'pg_catalog'::regnamespace
        UNION ALL
        SELECT format('%s uses operator %s, whose function is not a built-in one: steward cannot tell what it reads',
                      view_rel, o.oid::regoperator)
          FROM rules r
          JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.rule
                          AND d.refclassid = 'pg_operator'::regclass
          JOIN pg_operator o ON o.oid = d.refobjid
          JOIN pg_proc p ON p.oid = o.oprcode
         WHERE p.pronamespace <> 'pg_catalog'::regnamespace
    ) f
$$;

-- The tenant columns of the governed tables a view reads (through the views it reads): a view's
-- column of that name is never shown, as a table's tenant column is not.
CREATE FUNCTION steward._view_tenant_columns(view_rel regclass)
RETURNS name[]
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(array_agg(DISTINCT g.tenant_column), '{}')
      FROM steward._view_relations(view_rel) u(rel) JOIN steward.governed g ON g.rel = u.rel
$$;

-- Whether a resource may be served now: the service calls it in each request's transaction,
-- before the statement, so that a resource its cached description still lists is refused the
-- moment it is unexposed, its table ungoverned, or its view weakened.
CREATE FUNCTION steward._check_serving(resource text)
RETURNS void
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r regclass;
    k "char";
BEGIN
    SELECT e.rel, c.relkind INTO r, k
      FROM steward.exposed e JOIN pg_class c ON c.oid = e.rel
     WHERE e.resource = _check_serving.resource;
    IF r IS NULL
       OR (k = 'v' AND EXISTS (SELECT 1 FROM steward._view_faults(r)))
       OR (k <> 'v' AND NOT EXISTS (SELECT 1 FROM steward.governed g WHERE g.rel = r)) THEN
        PERFORM steward._raise('ST400', format('resource %L is not served', resource),
            'It was unexposed, its table is no longer governed, or its view no longer runs as its caller over governed tables only: GET /openapi.json lists what is.');
    END IF;
END
$$;

-- Exposes a governed table, or a security_invoker view over governed tables (read-only), as
-- /v1/<resource>. Calling it again changes the resource's name or columns.
CREATE FUNCTION steward.expose(rel regclass, resource text DEFAULT NULL, columns name[] DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    kind      "char";
    name      text := coalesce(resource, (SELECT c.relname FROM pg_class c WHERE c.oid = rel));
    tcol      name;
    missing   text;
    fault     text;
    taken     regclass;
BEGIN
    IF rel IS NULL THEN
        PERFORM steward._raise('ST400', 'steward.expose: rel must not be NULL',
                               'Name the governed table or view to expose.');
    END IF;
    SELECT c.relkind INTO kind FROM pg_class c WHERE c.oid = rel;
    IF kind = 'v' THEN
        FOR fault IN SELECT * FROM steward._view_faults(rel) LOOP
            PERFORM steward._raise('ST400', format('view %s cannot be exposed: %s', rel, fault),
                'A resource view must be created WITH (security_invoker = true) and read only tables steward governs, so that row-level security applies to the caller.');
        END LOOP;
    ELSIF kind = 'r' THEN
        SELECT g.tenant_column INTO tcol FROM steward.governed g WHERE g.rel = expose.rel;
        IF tcol IS NULL THEN
            PERFORM steward._raise('ST400', format('table %s is not governed by steward', rel),
                format('Run SELECT steward.govern(%L) first: only governed tables are exposed.', rel::text));
        END IF;
    ELSE
        PERFORM steward._raise('ST400', format('%s is neither a table nor a view', rel),
            'Expose a governed table or a security_invoker view over governed tables.');
    END IF;
    IF name IS NULL OR name !~ '^[a-z][a-z0-9_-]{0,62}$' THEN
        PERFORM steward._raise('ST400', format('resource name %L is not usable in a URL', name),
            'A resource name is lower-case letters, digits, "_" and "-", starting with a letter (at most 63 characters): pass resource => ''...''.');
    END IF;
    SELECT e.rel INTO taken FROM steward.exposed e WHERE e.resource = name AND e.rel <> expose.rel;
    IF taken IS NOT NULL THEN
        PERFORM steward._raise('ST400', format('resource %L is already %s', name, taken),
            format('Choose another name with resource => ''...'', or SELECT steward.unexpose(%L) first.', taken::text));
    END IF;
    IF columns IS NOT NULL THEN
        SELECT string_agg(quote_ident(c), ', ') INTO missing
          FROM unnest(columns) c
         WHERE NOT EXISTS (SELECT 1 FROM pg_attribute a
                            WHERE a.attrelid = rel AND a.attname = c AND a.attnum > 0 AND NOT a.attisdropped);
        IF missing IS NOT NULL THEN
            PERFORM steward._raise('ST400', format('%s has no column %s', rel, missing),
                'Name columns of the table (or view) itself.');
        END IF;
        IF tcol = ANY (columns) OR (kind = 'v' AND columns && steward._view_tenant_columns(rel)) THEN
            PERFORM steward._raise('ST400', format('the columns of %s name a tenant column (%s): it is never exposed', rel,
                                   coalesce(quote_ident(tcol), array_to_string(steward._view_tenant_columns(rel), ', '))),
                'Leave the tenant column out: the caller''s token decides the tenant.');
        END IF;
        SELECT string_agg(quote_ident(a.attname), ', ') INTO missing
          FROM pg_index i
          JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
         WHERE i.indrelid = rel AND i.indisprimary AND a.attname <> tcol
           AND NOT a.attname = ANY (columns);
        IF missing IS NOT NULL THEN
            PERFORM steward._raise('ST400', format('the columns of %s leave out its key column %s', rel, missing),
                'A resource''s URLs name its rows by primary key: include every key column but the tenant column.');
        END IF;
    END IF;
    INSERT INTO steward.exposed AS e (rel, resource, columns)
    VALUES (rel, name, columns)
    ON CONFLICT ON CONSTRAINT exposed_pkey
    DO UPDATE SET resource = excluded.resource, columns = excluded.columns, exposed_at = now();
    RETURN name;
END
$$;

CREATE FUNCTION steward.unexpose(rel regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM steward.exposed e WHERE e.rel = unexpose.rel;
    IF NOT FOUND THEN
        PERFORM steward._raise('ST400', format('%s is not exposed', rel),
            'SELECT resource, rel FROM steward.exposed_resources lists what is.');
    END IF;
END
$$;

-- What the service needs of each resource: its key (the primary key's columns but the tenant
-- column, in key order), its columns with their types, which of them a request may write, and
-- how a row's version is kept. Read by the service's role; says nothing of any tenant's rows.
CREATE VIEW steward.exposed_resources AS
SELECT e.resource,
       e.rel,
       CASE c.relkind WHEN 'v' THEN 'view' ELSE 'table' END AS kind,
       coalesce((SELECT array_agg(a.attname::text ORDER BY k.ord)
                   FROM pg_index i
                   CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
                   JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                  WHERE i.indrelid = e.rel AND i.indisprimary
                    AND a.attname IS DISTINCT FROM g.tenant_column), '{}') AS key,
       g.tenant_column::text AS tenant_column,
       -- Every primary key column, the tenant column included where it is one: what
       -- steward.history's row_key names.
       coalesce((SELECT array_agg(a.attname::text ORDER BY k.ord)
                   FROM pg_index i
                   CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
                   JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                  WHERE i.indrelid = e.rel AND i.indisprimary), '{}') AS primary_key,
       coalesce(g.versioned, false) AS versioned,
       coalesce(g.soft_delete, false) AS soft_delete,
       (SELECT jsonb_agg(jsonb_build_object(
                   'name', a.attname,
                   'type', format_type(a.atttypid, NULL),
                   'array', t.typcategory = 'A',
                   'element', CASE WHEN t.typcategory = 'A' THEN format_type(t.typelem, NULL) END,
                   'nullable', NOT a.attnotnull,
                   'has_default', a.atthasdef OR a.attidentity <> '',
                   'writable', c.relkind <> 'v' AND a.attidentity <> 'a' AND a.attgenerated = ''
                               AND NOT (g.versioned AND a.attname = 'version'))
                   ORDER BY a.attnum)
          FROM pg_attribute a
          JOIN pg_type t ON t.oid = a.atttypid
         WHERE a.attrelid = e.rel AND a.attnum > 0 AND NOT a.attisdropped
           AND a.attname IS DISTINCT FROM g.tenant_column
           AND NOT (c.relkind = 'v' AND a.attname = ANY (steward._view_tenant_columns(e.rel)))
           AND (e.columns IS NULL OR a.attname = ANY (e.columns))) AS columns,
       e.exposed_at
  FROM steward.exposed e
  JOIN pg_class c ON c.oid = e.rel
  LEFT JOIN steward.governed g ON g.rel = e.rel
 -- Fail closed: a table no longer governed, or a view that no longer runs as its caller over
 -- governed tables, is no resource (its row stays, and serves again once that is mended).
 WHERE CASE WHEN c.relkind = 'v' THEN NOT EXISTS (SELECT 1 FROM steward._view_faults(e.rel))
            ELSE g.rel IS NOT NULL END;
