-- Webhook fan-out: a transactional outbox filled by Postgres itself.
--
-- Every status change is a message_events row, and message_events is written from several places
-- (ingestion, the delivery worker, receipts, cancel and retry). A statement-level trigger turns
-- the events of each statement into one webhook job per (event, active endpoint of the message's
-- project subscribed to the event's type), in the same transaction: an event is never committed
-- without its jobs, whoever wrote it. The webhook role moves the jobs to the `{relayit}:webhooks`
-- stream and deletes them (see src/webhooks/relay.rs).
--
-- Cost, measured with psql on 100k events inserted in 200 statements of 500 (ingestion's shape)
-- into 100k messages: trigger disabled 0.76-0.93 s; no active endpoint anywhere 0.80-1.00 s (the
-- trigger stops after one probe of webhook_endpoints); an active endpoint in another project only
-- 1.01-1.03 s (one primary-key lookup of each event's message, ~2 us, then a match against the
-- few active endpoints). A first version joining messages directly was planned as a scan and hash
-- of all of messages per statement (a transition table has no statistics) and took several times
-- as long: keep the scalar subquery.

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
    -- The project is looked up per event through the primary key (a scalar subquery, so the
    -- planner, which knows nothing of the transition table's size, cannot choose to scan and hash
    -- all of messages instead), then matched to the few active endpoints.
    INSERT INTO webhook_jobs (organization_id, webhook_endpoint_id, message_id, event_id, event_type)
    SELECT w.organization_id, w.id, e.message_id, e.id, e.event_type
    FROM (
        SELECT n.id, n.message_id, n.created_at, 'message.' || n.status AS event_type,
            (SELECT m.project_id FROM messages m WHERE m.id = n.message_id) AS project_id
        FROM new_events n
    ) e
    JOIN webhook_endpoints w
        ON w.project_id = e.project_id
        AND w.is_active
        AND e.event_type = ANY (w.event_types)
    ORDER BY e.created_at, e.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER message_events_fan_out_webhooks AFTER INSERT ON message_events
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION fan_out_webhook_jobs();
