-- Delivery receipts that arrive before their message's send is recorded. A provider may report
-- a message delivered within moments of accepting it, while the worker's outcome write (which
-- stores the provider's message id) is still on its way, or held up by a slow database; such a
-- receipt matches no message yet. It waits here, and the workers' sweeper applies it once its
-- message carries that provider message id (`receipts::apply_held`). What still matches nothing
-- for a quarter of an hour (`HOLD_RECEIPTS_FOR`: ids of messages sent outside RelayIt with the
-- same credentials) is dropped.
CREATE TABLE held_receipts (
    id                   BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organization_id      TEXT COLLATE "C" NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    channel              TEXT NOT NULL,
    provider_message_id  TEXT COLLATE "C" NOT NULL,
    -- the statuses the message may be in for the change to apply, and the one it moves to
    from_statuses        TEXT[] NOT NULL CHECK (cardinality(from_statuses) > 0 AND from_statuses <@ ARRAY[
        'received', 'queued', 'processing', 'retrying', 'sent', 'delivered', 'failed', 'canceled'
    ]),
    to_status            TEXT NOT NULL CHECK (to_status IN (
        'received', 'queued', 'processing', 'retrying', 'sent', 'delivered', 'failed', 'canceled'
    )),
    reason               TEXT,
    details              JSONB NOT NULL CHECK (jsonb_typeof(details) = 'object'),
    received_at          TIMESTAMPTZ NOT NULL
);
CREATE INDEX held_receipts_received_idx ON held_receipts (received_at);
CREATE INDEX held_receipts_org_idx ON held_receipts (organization_id);
