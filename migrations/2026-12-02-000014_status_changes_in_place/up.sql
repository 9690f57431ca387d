-- Status changes in place. A delivered message changes status three times (queued ->
-- processing -> sent), and every change that touches an indexed column writes a new entry in
-- each index of messages. With no index reading status or updated_at, the claim (status and
-- updated_at only) is a HOT update: the new row version stays on its page and no index is
-- touched, which halves what a claim costs Postgres.
--
-- What those indexes served moves to due_at: while a message is not final, when it is next
-- due (its sendAt while scheduled, its enqueue while queued, its next attempt while retrying;
-- a claim keeps it); NULL once it is sent, delivered, failed or canceled. The sweeper finds
-- overdue rows through it, the CHECK keeps every writer honest about it. The log's status
-- filter reads the project's list index and tests the status of each row it passes.
--
-- fillfactor leaves each page room for its rows' next versions: without it a claim finds the
-- page full and moves the row, index entries and all. In SQL, 100,000 messages inserted,
-- claimed and sent in batches of 1,000: at 50 every claim stayed on its page, at 70 half did,
-- at 100 none; the heap took 148 MB, 127 MB and 113 MB.

ALTER TABLE messages ADD COLUMN due_at TIMESTAMPTZ;
UPDATE messages SET due_at = CASE
        WHEN status = 'received' AND send_at IS NOT NULL THEN send_at
        WHEN status = 'retrying' THEN COALESCE(next_attempt_at, updated_at)
        ELSE updated_at END
    WHERE status IN ('received', 'queued', 'processing', 'retrying');
ALTER TABLE messages ADD CONSTRAINT messages_due_while_not_final
    CHECK ((due_at IS NULL) = (status IN ('sent', 'delivered', 'failed', 'canceled')));

DROP INDEX messages_project_status_idx;
DROP INDEX messages_in_flight_idx;
DROP INDEX messages_scheduled_idx;
-- every message not final, by when it is due: the sweeper's overdue rows
CREATE INDEX messages_due_idx ON messages (due_at) WHERE due_at IS NOT NULL;
-- scheduled messages by due time: the sweeper's due sends, without the rest of the backlog
-- (a final one's due_at is NULL, past the end of any range it is asked for)
CREATE INDEX messages_scheduled_idx ON messages (due_at) WHERE send_at IS NOT NULL;

ALTER TABLE messages SET (fillfactor = 50);
