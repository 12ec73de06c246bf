-- The upgrade suite's roles (cluster-wide, so created once; pg_regress's roles are others).
CREATE ROLE up_owner LOGIN;      -- owns the shop's tables
CREATE ROLE up_service LOGIN;    -- the trusted web service
CREATE ROLE up_acme LOGIN;       -- granted acme only: in acme without any call
CREATE ROLE up_globex LOGIN;     -- granted globex only
CREATE ROLE up_gone LOGIN;       -- granted acme, then dropped (its grant must not survive)
CREATE ROLE up_gone_service LOGIN;  -- trusted, then dropped (its trust must not survive)
