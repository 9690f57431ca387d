ALTER TABLE messages RESET (fillfactor);
DROP INDEX messages_scheduled_idx;
DROP INDEX messages_due_idx;
CREATE INDEX messages_scheduled_idx ON messages (send_at)
    WHERE status = 'received' AND send_at IS NOT NULL;
CREATE INDEX messages_in_flight_idx ON messages (updated_at)
    WHERE status IN ('received', 'queued', 'processing', 'retrying');
CREATE INDEX messages_project_status_idx ON messages (project_id, status, created_at DESC, id DESC);
ALTER TABLE messages DROP COLUMN due_at;
