-- The message log's status filter, without an index that reads the status. Any index reading
-- status (even in its predicate) would make every claim move its row again (migration 000014),
-- so the status a message ends in is kept apart: final_status is the status once it is sent,
-- delivered, failed or canceled, and NULL before. It is written only by the final write and by
-- receipts, which move the row anyway. A filter on final statuses ("failed") reads this index
-- instead of walking the whole log; unfinished statuses are few by nature and walk the list.

ALTER TABLE messages ADD COLUMN final_status TEXT;
UPDATE messages SET final_status = status
    WHERE status IN ('sent', 'delivered', 'failed', 'canceled');
-- (due_at IS NULL exactly when the status is final: migration 000014)
ALTER TABLE messages ADD CONSTRAINT messages_final_status_is_status
    CHECK (CASE WHEN due_at IS NULL THEN final_status IS NOT DISTINCT FROM status
                ELSE final_status IS NULL END);

CREATE INDEX messages_project_final_idx ON messages (project_id, final_status, created_at DESC, id DESC)
    WHERE final_status IS NOT NULL;
