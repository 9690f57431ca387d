-- The message log's status filter, without an index that reads the status. Any index reading
-- status (even in its predicate) would make every claim move its row again (migration 000014),
-- so the status a message ends in is kept apart: final_status is the status once it is sent,
-- delivered, failed or canceled, and NULL before. Derived by Postgres, it changes only on the
-- writes that move the row anyway (a claim leaves it NULL, so the claim stays HOT). A filter
-- on final statuses ("failed") reads this index instead of walking the whole log; unfinished
-- statuses are few by nature and walk the list.

ALTER TABLE messages ADD COLUMN final_status TEXT GENERATED ALWAYS AS (
    CASE WHEN status IN ('sent', 'delivered', 'failed', 'canceled') THEN status END
) STORED;

CREATE INDEX messages_project_final_idx ON messages (project_id, final_status, created_at DESC, id DESC)
    WHERE final_status IS NOT NULL;
