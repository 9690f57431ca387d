-- Projects, API keys, provider credentials and webhook endpoints: what a tenant configures.
-- Every row carries organization_id so each query can be scoped by tenant without a join.

CREATE TABLE projects (
    id               TEXT PRIMARY KEY CHECK (id LIKE 'prj\_%'),
    organization_id  TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name             TEXT NOT NULL,
    slug             TEXT NOT NULL CHECK (slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$'),
    metadata         JSONB NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (organization_id, slug),
    -- lets children reference (organization_id, project_id) so a row cannot cross tenants
    UNIQUE (organization_id, id)
);
CREATE INDEX projects_org_list_idx ON projects (organization_id, created_at DESC, id DESC);

CREATE TABLE api_keys (
    id               TEXT PRIMARY KEY CHECK (id LIKE 'key\_%'),
    organization_id  TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    project_id       TEXT,
    name             TEXT NOT NULL,
    key_hash         BYTEA NOT NULL UNIQUE CHECK (octet_length(key_hash) = 32),
    prefix           TEXT NOT NULL,
    scopes           TEXT[] NOT NULL
                     CHECK (cardinality(scopes) > 0 AND scopes <@ ARRAY['send', 'read', 'manage']),
    rate_limit       INTEGER CHECK (rate_limit > 0),
    created_by       TEXT REFERENCES users (id) ON DELETE SET NULL,
    expires_at       TIMESTAMPTZ,
    last_used_at     TIMESTAMPTZ,
    revoked_at       TIMESTAMPTZ,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    FOREIGN KEY (organization_id, project_id) REFERENCES projects (organization_id, id) ON DELETE CASCADE
);
CREATE INDEX api_keys_org_list_idx ON api_keys (organization_id, created_at DESC, id DESC);

CREATE TABLE provider_credentials (
    id                 TEXT PRIMARY KEY CHECK (id LIKE 'prv\_%'),
    organization_id    TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    project_id         TEXT,
    name               TEXT NOT NULL,
    slug               TEXT NOT NULL CHECK (slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$'),
    channel            TEXT NOT NULL CHECK (channel IN ('email', 'sms', 'whatsapp', 'discord')),
    provider_type      TEXT NOT NULL
                       CHECK (provider_type IN ('ses', 'smtp', 'sns', 'whatsapp_cloud', 'discord_bot', 'sandbox')),
    -- AES-256-GCM (nonce || ciphertext || tag) of the credentials JSON, AAD bound to id and
    -- organization; secrets_key_id names the master key that sealed it (rotation).
    sealed_secrets     BYTEA NOT NULL,
    secrets_key_id     TEXT NOT NULL,
    config             JSONB NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(config) = 'object'),
    is_active          BOOLEAN NOT NULL DEFAULT TRUE,
    priority           INTEGER NOT NULL DEFAULT 0,
    -- set when the provider refused the credentials (credential errors fail fast)
    last_error         TEXT,
    last_error_at      TIMESTAMPTZ,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (organization_id, slug),
    CHECK (
        provider_type = 'sandbox'
        OR (provider_type IN ('ses', 'smtp') AND channel = 'email')
        OR (provider_type = 'sns' AND channel = 'sms')
        OR (provider_type = 'whatsapp_cloud' AND channel = 'whatsapp')
        OR (provider_type = 'discord_bot' AND channel = 'discord')
    ),
    FOREIGN KEY (organization_id, project_id) REFERENCES projects (organization_id, id) ON DELETE CASCADE
);
CREATE INDEX provider_credentials_org_list_idx
    ON provider_credentials (organization_id, created_at DESC, id DESC);
-- Routing: active credentials of a channel, lowest priority first.
CREATE INDEX provider_credentials_routing_idx
    ON provider_credentials (organization_id, channel, priority, id) WHERE is_active;
CREATE INDEX provider_credentials_key_idx ON provider_credentials (secrets_key_id);

CREATE TABLE webhook_endpoints (
    id                           TEXT PRIMARY KEY CHECK (id LIKE 'whk\_%'),
    organization_id              TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    project_id                   TEXT NOT NULL,
    url                          TEXT NOT NULL CHECK (url ~ '^https?://'),
    description                  TEXT,
    event_types                  TEXT[] NOT NULL CHECK (
        cardinality(event_types) > 0 AND event_types <@ ARRAY[
            'message.received', 'message.queued', 'message.processing', 'message.sent',
            'message.delivered', 'message.failed', 'message.canceled'
        ]
    ),
    sealed_secret                BYTEA NOT NULL,
    secret_key_id                TEXT NOT NULL,
    -- the secret replaced by the last rotation keeps signing until previous_secret_expires_at
    previous_sealed_secret       BYTEA,
    previous_secret_key_id       TEXT,
    previous_secret_expires_at   TIMESTAMPTZ,
    is_active                    BOOLEAN NOT NULL DEFAULT TRUE,
    disabled_reason              TEXT,
    disabled_at                  TIMESTAMPTZ,
    failing_since                TIMESTAMPTZ,
    created_at                   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at                   TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK ((previous_sealed_secret IS NULL) = (previous_secret_key_id IS NULL)),
    CHECK ((previous_sealed_secret IS NULL) = (previous_secret_expires_at IS NULL)),
    FOREIGN KEY (organization_id, project_id) REFERENCES projects (organization_id, id) ON DELETE CASCADE
);
CREATE INDEX webhook_endpoints_project_list_idx
    ON webhook_endpoints (project_id, created_at DESC, id DESC);
-- Fan-out: the active endpoints of a project.
CREATE INDEX webhook_endpoints_active_idx ON webhook_endpoints (project_id) WHERE is_active;
CREATE INDEX webhook_endpoints_secret_key_idx ON webhook_endpoints (secret_key_id);
CREATE INDEX webhook_endpoints_org_idx ON webhook_endpoints (organization_id);
