-- The message hot path, measured (relayit-bench, and pgbench on the ingestion statements):
-- - message_events' foreign key to messages ran a per-row check for every event, which cost
--   about a third of each ingestion transaction (two events per message). Events are only
--   written in the transaction that writes or locks their message, so the reference cannot
--   dangle at insert time; what the key still did was delete a message's events with it, and a
--   statement-level trigger does that in one statement per delete.
-- - messages reached organizations twice: directly, and through (organization_id, project_id)
--   -> projects, which cascades an organization's deletion just the same. The direct key and
--   its index go.
-- - The channel filter of the message log is served by the project's list index (four values,
--   filtered on the fly); its own index cost every insert and every status change.

ALTER TABLE message_events DROP CONSTRAINT message_events_message_id_fkey;

CREATE FUNCTION delete_message_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM message_events e USING gone g WHERE e.message_id = g.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER messages_delete_events AFTER DELETE ON messages
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION delete_message_events();

ALTER TABLE messages DROP CONSTRAINT messages_organization_id_fkey;
DROP INDEX messages_org_idx;
DROP INDEX messages_project_channel_idx;
