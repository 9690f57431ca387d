-- Linked OAuth / OpenID Connect accounts name the email the provider gave and the kind of
-- provider (github, google, oidc) at the time they were linked, so the list still reads well
-- after the operator renames or removes a provider from the configuration. The table was
-- empty until now, so the new columns need no default.
ALTER TABLE accounts
    ADD COLUMN email TEXT NOT NULL CHECK (email = lower(btrim(email))),
    ADD COLUMN kind  TEXT NOT NULL CHECK (kind IN ('github', 'google', 'oidc'));
