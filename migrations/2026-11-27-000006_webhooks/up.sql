-- Webhook fan-out: a transactional outbox filled by Postgres itself.
--
-- Every status change is a message_events row, and message_events is written from several places
-- (ingestion, the delivery worker, receipts, cancel and retry). A statement-level trigger turns
-- the events of each statement into one webhook job per (event, active endpoint of the message's
-- project subscribed to the event's type), in the same transaction: an event is never committed
-- without its jobs, whoever wrote it. The webhook role moves the jobs to the `{relayit}:webhooks`
-- stream and deletes them (see src/webhooks/relay.rs).
--
-- Cost when nobody listens: the trigger runs once per statement, not per row. When no active
-- endpoint exists at all it stops after one probe of the partial index below; otherwise it joins
-- the statement's events to their messages (primary key) and to the active endpoints of their
-- projects (the same partial index), which finds nothing for projects without endpoints.

CREATE TABLE webhook_jobs (
    id                   BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organization_id      TEXT NOT NULL,
    webhook_endpoint_id  TEXT NOT NULL,
    message_id           TEXT NOT NULL,
    -- the event delivered; its id is the stable `webhook-id` header
    event_id             TEXT NOT NULL,
    event_type           TEXT NOT NULL,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- No foreign keys: a job lives for milliseconds, and one whose endpoint, message or event is gone
-- by delivery time is simply dropped then.

CREATE FUNCTION fan_out_webhook_jobs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM webhook_endpoints WHERE is_active) THEN
        RETURN NULL;
    END IF;
    INSERT INTO webhook_jobs (organization_id, webhook_endpoint_id, message_id, event_id, event_type)
    SELECT w.organization_id, w.id, e.message_id, e.id, 'message.' || e.status
    FROM new_events e
    JOIN messages m ON m.id = e.message_id
    JOIN webhook_endpoints w
        ON w.project_id = m.project_id
        AND w.is_active
        AND ('message.' || e.status) = ANY (w.event_types)
    ORDER BY e.created_at, e.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER message_events_fan_out_webhooks AFTER INSERT ON message_events
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION fan_out_webhook_jobs();
