-- Default privileges a long-lived database may have: new functions and tables given to the
-- service, and EXECUTE on new functions taken from PUBLIC. What steward creates must get
-- steward's privileges all the same (sql/privileges.sql, steward._reset_privileges).
ALTER DEFAULT PRIVILEGES FOR ROLE postgres GRANT EXECUTE ON FUNCTIONS TO up_service;
ALTER DEFAULT PRIVILEGES FOR ROLE postgres GRANT ALL ON TABLES TO up_service;
ALTER DEFAULT PRIVILEGES FOR ROLE postgres GRANT ALL ON SEQUENCES TO up_service;
ALTER DEFAULT PRIVILEGES FOR ROLE postgres REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
