-- steward 0.2.0 -> 0.3.0, run by ALTER EXTENSION steward UPDATE (docs/dba-guide.md, Upgrading).
-- Not released yet: every change main makes to steward's schema goes here as well
-- (docs/contributing.md, Releases); frozen once 0.3.0 is cut.
-- One transaction: any failure leaves the database at 0.2.0, as it was.
\echo Use "ALTER EXTENSION steward UPDATE" to load this file. \quit

SET LOCAL check_function_bodies = false;

-- What existed before this update keeps its privileges (they are the DBA's); what it creates
-- gets steward's, whatever the database's default privileges say (at the end).
SELECT pg_catalog.set_config('steward_upgrade.kept',
           (SELECT pg_catalog.string_agg(d.objid::text, ',')
              FROM pg_catalog.pg_depend d
             WHERE d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass AND d.deptype = 'e'
               AND d.refobjid = (SELECT e.oid FROM pg_catalog.pg_extension e
                                  WHERE e.extname = 'steward')),
           true);

-- What an update creates belongs to the role that runs it: steward's objects must all be its
-- owner's.
DO $$
BEGIN
    IF (SELECT e.extowner FROM pg_catalog.pg_extension e WHERE e.extname = 'steward')
       <> (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = current_user) THEN
        RAISE EXCEPTION 'steward''s update must be run by the extension''s owner, %, not %',
                        (SELECT e.extowner::regrole FROM pg_catalog.pg_extension e WHERE e.extname = 'steward'),
                        current_user
            USING ERRCODE = 'ST400',
                  HINT = 'Nothing was changed. Connect (or SET ROLE) as the owner and run ALTER EXTENSION steward UPDATE again.';
    END IF;
END
$$;

-- (0.3.0's changes to steward's tables, functions, views, policies and triggers go here.)

-- Every governed table governed again, as this release governs.
SELECT count(*) AS regoverned FROM steward.regovern();

-- The privileges of what this update created.
SELECT steward._reset_privileges(
           pg_catalog.string_to_array(pg_catalog.current_setting('steward_upgrade.kept'), ',')::oid[]);
