-- Identity strings in the canonical form the service now writes: names and emails in NFC (email-validator's
-- normal form; the unique index on lower(email) then compares canonical addresses, so NFC and NFD spellings of
-- one address are one address). Nicknames were already limited to ASCII, which is its own canonical form.
-- A row whose canonical email already belongs to an older user keeps its stored spelling: no user is lost or
-- merged here, and the service refuses the duplicate spelling from now on. Each such row is reported.
UPDATE users SET first_name = normalize(first_name, NFC) WHERE first_name IS NOT NFC NORMALIZED;
UPDATE users SET last_name = normalize(last_name, NFC) WHERE last_name IS NOT NFC NORMALIZED;

DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT id, email FROM users WHERE email IS NOT NFC NORMALIZED ORDER BY created_at, id LOOP
        BEGIN
            UPDATE users SET email = normalize(r.email, NFC) WHERE id = r.id;
        EXCEPTION WHEN unique_violation THEN
            RAISE WARNING 'user % keeps a non-canonical email: an older user has its canonical form', r.id;
        END;
    END LOOP;
END
$$;
