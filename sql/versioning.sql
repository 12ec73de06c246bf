-- Versions: delete_version(), the DELETE that states the version it read. The UPDATE's checks
-- are Rust (extension/src/versioning.rs).

-- Deletes a row of the caller's tenant only if it is still at `version`: what a DELETE with
-- If-Match asks. Returns true when the row is gone (deleted, or soft-deleted), false when the key
-- names no row the caller can see; a row at another version is ST409 naming the table, the key,
-- the version stated and the row's. Runs as the caller (its privileges, its tenant's rows).
CREATE FUNCTION steward.delete_version(rel regclass, row_key jsonb, version bigint)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cond   text;
    actual bigint;
    n      bigint;
BEGIN
    IF rel IS NULL OR row_key IS NULL OR version IS NULL THEN
        PERFORM steward._raise('ST400', format('steward.delete_version needs a table, a key and a version, not %s, %s, %s', coalesce(rel::text, 'NULL'), coalesce(row_key::text, 'NULL'), coalesce(version::text, 'NULL')),
                              'e.g. steward.delete_version(''app.orders'', ''{"id": 7}'', 3): the version is the one you read.');
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_attribute a
                    WHERE a.attrelid = rel AND a.attname = 'version' AND a.attnum > 0
                      AND NOT a.attisdropped AND a.atttypid = 'bigint'::regtype) THEN
        PERFORM steward._raise('ST400', format('table %s has no version', rel),
                              'Only tables governed with versioned => true have versions; delete by key instead.');
    END IF;
    -- The key's columns, compared with the key's values cast to their types.
    SELECT string_agg(format('%I = ($1 OPERATOR(pg_catalog.->>) %L)::%s', a.attname, a.attname,
                             format_type(a.atttypid, a.atttypmod)), ' AND ' ORDER BY k.ord)
      INTO cond
      FROM pg_index i
     CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
     WHERE i.indrelid = rel AND i.indisprimary;
    IF cond IS NULL OR (SELECT count(*) FROM jsonb_object_keys(row_key)) <>
                       (SELECT cardinality(i.indkey) FROM pg_index i WHERE i.indrelid = rel AND i.indisprimary) THEN
        PERFORM steward._raise('ST400', format('key %s does not name a row of %s', row_key, rel),
                              'Give every column of the primary key, e.g. {"id": 7}.');
    END IF;
    EXECUTE format('SELECT version FROM %s WHERE %s', rel, cond) INTO actual USING row_key;
    IF actual IS NULL THEN
        RETURN false;
    END IF;
    IF actual <> version THEN
        PERFORM steward._raise('ST409', format('version conflict on %s row %s: expected version %s, actual %s', rel, row_key, version, actual),
                              'Someone else changed the row since you read it: read it again, and delete with the version you read.');
    END IF;
    EXECUTE format('DELETE FROM %s WHERE %s AND version = $2', rel, cond) USING row_key, version;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n = 0 THEN
        -- Soft-deleted (the row is out of sight now), or changed meanwhile.
        EXECUTE format('SELECT version FROM %s WHERE %s', rel, cond) INTO actual USING row_key;
        IF actual IS NOT NULL THEN
            PERFORM steward._raise('ST409', format('version conflict on %s row %s: expected version %s, actual %s', rel, row_key, version, actual),
                                  'Someone else changed the row since you read it: read it again, and delete with the version you read.');
        END IF;
    END IF;
    RETURN true;
END
$$;
