-- Users, their sessions, OAuth accounts and passkeys, organizations and memberships.
-- Ids are prefixed, time-sortable strings (`usr_` + UUIDv7); secrets and tokens never appear in
-- plaintext: tokens as SHA-256 hashes, OAuth tokens sealed with the master key.

CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE users (
    id              TEXT PRIMARY KEY CHECK (id LIKE 'usr\_%'),
    email           TEXT NOT NULL UNIQUE CHECK (email = lower(btrim(email)) AND email <> ''),
    name            TEXT NOT NULL,
    password_hash   TEXT,
    email_verified  BOOLEAN NOT NULL DEFAULT FALSE,
    image           TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE organizations (
    id          TEXT PRIMARY KEY CHECK (id LIKE 'org\_%'),
    name        TEXT NOT NULL,
    slug        TEXT NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$'),
    logo        TEXT,
    metadata    JSONB NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE members (
    id               TEXT PRIMARY KEY CHECK (id LIKE 'mem\_%'),
    organization_id  TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id          TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role             TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (organization_id, user_id)
);
CREATE INDEX members_user_idx ON members (user_id);

CREATE TABLE sessions (
    id                      TEXT PRIMARY KEY CHECK (id LIKE 'ses\_%'),
    user_id                 TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash              BYTEA NOT NULL UNIQUE CHECK (octet_length(token_hash) = 32),
    active_organization_id  TEXT REFERENCES organizations (id) ON DELETE SET NULL,
    expires_at              TIMESTAMPTZ NOT NULL,
    ip_address              TEXT,
    user_agent              TEXT,
    created_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at              TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX sessions_user_idx ON sessions (user_id);
CREATE INDEX sessions_expires_idx ON sessions (expires_at);

-- Sign-in through an external identity provider (OAuth / OIDC).
CREATE TABLE accounts (
    id                       TEXT PRIMARY KEY CHECK (id LIKE 'acc\_%'),
    user_id                  TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider_id              TEXT NOT NULL,
    account_id               TEXT NOT NULL,
    sealed_tokens            BYTEA,
    tokens_key_id            TEXT,
    access_token_expires_at  TIMESTAMPTZ,
    scope                    TEXT,
    created_at               TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at               TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (provider_id, account_id),
    CHECK ((sealed_tokens IS NULL) = (tokens_key_id IS NULL))
);
CREATE INDEX accounts_user_idx ON accounts (user_id);

-- WebAuthn credentials; `passkey` holds the serialized public-key credential and its counter.
CREATE TABLE passkeys (
    id             TEXT PRIMARY KEY CHECK (id LIKE 'pky\_%'),
    user_id        TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name           TEXT,
    credential_id  BYTEA NOT NULL UNIQUE,
    passkey        JSONB NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_used_at   TIMESTAMPTZ
);
CREATE INDEX passkeys_user_idx ON passkeys (user_id);

CREATE TABLE invitations (
    id               TEXT PRIMARY KEY CHECK (id LIKE 'inv\_%'),
    organization_id  TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    email            TEXT NOT NULL CHECK (email = lower(btrim(email)) AND email <> ''),
    role             TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    status           TEXT NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'accepted', 'canceled')),
    token_hash       BYTEA NOT NULL UNIQUE CHECK (octet_length(token_hash) = 32),
    inviter_id       TEXT REFERENCES users (id) ON DELETE SET NULL,
    expires_at       TIMESTAMPTZ NOT NULL,
    accepted_at      TIMESTAMPTZ,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX invitations_org_idx ON invitations (organization_id, created_at DESC, id DESC);
-- One open invitation per address and organization.
CREATE UNIQUE INDEX invitations_pending_email_idx ON invitations (organization_id, email)
    WHERE status = 'pending';
