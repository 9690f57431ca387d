-- Messages, their status history, idempotency records and webhook delivery attempts.
-- messages is the hot table: /v1/send inserts into it in batches and workers update it by id,
-- so it has no triggers and only the indexes its list, search and recovery queries need.

CREATE TABLE messages (
    id                      TEXT PRIMARY KEY CHECK (id LIKE 'msg\_%'),
    organization_id         TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    project_id              TEXT NOT NULL,
    api_key_id              TEXT REFERENCES api_keys (id) ON DELETE SET NULL,
    channel                 TEXT NOT NULL CHECK (channel IN ('email', 'sms', 'whatsapp', 'discord')),
    recipient               TEXT NOT NULL,
    -- the credential slug the sender asked for, if any
    requested_provider      TEXT,
    -- the credential that handled (or is handling) the last attempt
    provider_credential_id  TEXT REFERENCES provider_credentials (id) ON DELETE SET NULL,
    provider_type           TEXT CHECK (provider_type IN ('ses', 'smtp', 'sns', 'whatsapp_cloud', 'discord_bot', 'sandbox')),
    status                  TEXT NOT NULL CHECK (status IN (
        'received', 'queued', 'processing', 'retrying', 'sent', 'delivered', 'failed', 'canceled'
    )),
    status_reason           TEXT,
    attempts                INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    content                 JSONB NOT NULL CHECK (jsonb_typeof(content) = 'object'),
    metadata                JSONB NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    provider_message_id     TEXT,
    idempotency_key         TEXT,
    send_at                 TIMESTAMPTZ,
    next_attempt_at         TIMESTAMPTZ,
    created_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    FOREIGN KEY (organization_id, project_id) REFERENCES projects (organization_id, id) ON DELETE CASCADE
);
-- Message log: keyset pagination newest first, optionally filtered by status or channel.
CREATE INDEX messages_project_list_idx ON messages (project_id, created_at DESC, id DESC);
CREATE INDEX messages_project_status_idx ON messages (project_id, status, created_at DESC, id DESC);
CREATE INDEX messages_project_channel_idx ON messages (project_id, channel, created_at DESC, id DESC);
-- Search: substring match on recipient and subject, exact match on provider message id.
CREATE INDEX messages_recipient_trgm_idx ON messages USING gin (lower(recipient) gin_trgm_ops);
CREATE INDEX messages_subject_trgm_idx ON messages USING gin (lower(content ->> 'subject') gin_trgm_ops);
CREATE INDEX messages_provider_message_idx ON messages (provider_message_id)
    WHERE provider_message_id IS NOT NULL;
-- Recovery: the sweeper looks for rows stuck before a terminal state; scheduled sends wait in
-- `received` until send_at.
CREATE INDEX messages_in_flight_idx ON messages (updated_at)
    WHERE status IN ('received', 'queued', 'processing', 'retrying');
CREATE INDEX messages_scheduled_idx ON messages (send_at)
    WHERE status = 'received' AND send_at IS NOT NULL;
CREATE INDEX messages_api_key_idx ON messages (api_key_id) WHERE api_key_id IS NOT NULL;
CREATE INDEX messages_credential_idx ON messages (provider_credential_id)
    WHERE provider_credential_id IS NOT NULL;
CREATE INDEX messages_org_idx ON messages (organization_id);

-- One row per status change: the message's history, and the source of webhook events.
CREATE TABLE message_events (
    id          TEXT PRIMARY KEY CHECK (id LIKE 'evt\_%'),
    message_id  TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    status      TEXT NOT NULL CHECK (status IN (
        'received', 'queued', 'processing', 'retrying', 'sent', 'delivered', 'failed', 'canceled'
    )),
    details     JSONB NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(details) = 'object'),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX message_events_message_idx ON message_events (message_id, created_at, id);

-- Idempotency-Key records for /v1/send, kept 24 h. `in_flight` until the response is known.
CREATE TABLE idempotency_keys (
    project_id       TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    key              TEXT NOT NULL CHECK (char_length(key) BETWEEN 1 AND 255),
    request_hash     BYTEA NOT NULL CHECK (octet_length(request_hash) = 32),
    status           TEXT NOT NULL CHECK (status IN ('in_flight', 'completed')),
    response_status  INTEGER,
    response_body    JSONB,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at       TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (project_id, key),
    CHECK ((status = 'completed') = (response_status IS NOT NULL AND response_body IS NOT NULL))
);
CREATE INDEX idempotency_keys_expires_idx ON idempotency_keys (expires_at);

-- One row per webhook delivery attempt.
CREATE TABLE webhook_deliveries (
    id                   TEXT PRIMARY KEY CHECK (id LIKE 'whd\_%'),
    organization_id      TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    webhook_endpoint_id  TEXT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    message_id           TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    -- the event this delivers; its id is the stable `webhook-id` header across retries
    event_id             TEXT NOT NULL REFERENCES message_events (id) ON DELETE CASCADE,
    event_type           TEXT NOT NULL CHECK (event_type IN (
        'message.received', 'message.queued', 'message.processing', 'message.sent',
        'message.delivered', 'message.failed', 'message.canceled'
    )),
    attempt              INTEGER NOT NULL CHECK (attempt >= 1),
    succeeded            BOOLEAN NOT NULL,
    status_code          INTEGER CHECK (status_code BETWEEN 100 AND 599),
    duration_ms          INTEGER CHECK (duration_ms >= 0),
    response_body        TEXT,
    error                TEXT,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX webhook_deliveries_endpoint_list_idx
    ON webhook_deliveries (webhook_endpoint_id, created_at DESC, id DESC);
CREATE INDEX webhook_deliveries_event_idx ON webhook_deliveries (event_id);
CREATE INDEX webhook_deliveries_message_idx ON webhook_deliveries (message_id);
CREATE INDEX webhook_deliveries_org_idx ON webhook_deliveries (organization_id);
