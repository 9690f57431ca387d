-- Suppressions: addresses of a project that no message may go to any more, because they
-- hard-bounced, complained, unsubscribed, or a person put them there. The delivery worker looks
-- up the recipients of each claimed batch here, in one statement, before any provider call.
--
-- One row per (project, channel, address): the address as the worker compares it (an email
-- trimmed and lower-cased, its display name dropped; a phone number or Discord target as sent).
-- A second reason for the same address (a complaint after a bounce) keeps the first entry.
-- `message_id` names the message whose receipt or unsubscribe added the entry; no foreign key,
-- since messages are deleted by retention while the suppression must stay.

CREATE TABLE suppressions (
    id               TEXT COLLATE "C" PRIMARY KEY CHECK (id LIKE 'sup\_%'),
    organization_id  TEXT COLLATE "C" NOT NULL,
    project_id       TEXT COLLATE "C" NOT NULL,
    channel          TEXT NOT NULL CHECK (channel IN ('email', 'sms', 'whatsapp', 'discord')),
    address          TEXT NOT NULL CHECK (address <> '' AND length(address) <= 320),
    reason           TEXT NOT NULL
        CHECK (reason IN ('hard_bounce', 'complaint', 'unsubscribe', 'manual')),
    message_id       TEXT COLLATE "C",
    note             TEXT CHECK (length(note) <= 500),
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (project_id, channel, address),
    FOREIGN KEY (organization_id, project_id) REFERENCES projects (organization_id, id) ON DELETE CASCADE
);
-- The list, newest first. The unique index serves the worker's lookups, the address filter
-- and the cascade from projects (project_id leads it).
CREATE INDEX suppressions_project_list_idx ON suppressions (project_id, created_at DESC, id DESC);

-- A receipt that reports a hard bounce, a complaint or an opt-out suppresses its recipients
-- when it applies; one held until its message is known keeps that to apply with it.
ALTER TABLE held_receipts ADD COLUMN suppress TEXT
    CHECK (suppress IN ('hard_bounce', 'complaint', 'unsubscribe'));
