-- Errors: steward._raise, through which every error steward's SQL raises goes (one of
-- steward's codes, a message and a hint), as extension/src/errors.rs is for Rust.

-- Every error steward's SQL raises goes through here, as every error its Rust raises goes through
-- extension/src/errors.rs: one of steward's codes (the same ones), a message and a hint, never
-- one without the other. An error steward raises without them is its own bug (XX000).
CREATE FUNCTION steward._raise(code text, message text, hint text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF code IS NULL OR NOT code = ANY (ARRAY['ST001', 'ST002', 'ST400', 'ST403', 'ST409', 'ST422',
                                            'ST428', '42501'])
       OR coalesce(message, '') = '' OR coalesce(hint, '') = '' THEN
        RAISE EXCEPTION USING ERRCODE = 'XX000',
            MESSAGE = format('steward raised %s without a code of its own, a message and a hint: %s',
                             coalesce(code, 'an error'), coalesce(message, '(no message)')),
            HINT = 'This is a bug in steward, not in what was asked of it: report it with the server log around this message.';
    END IF;
    RAISE EXCEPTION USING ERRCODE = code, MESSAGE = message, HINT = hint;
END
$$;
