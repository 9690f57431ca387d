-- Retention, and sessions a user can see and revoke.
--
-- The workers' retention duty (`delivery::retention`) deletes, in batches, what has outlived its
-- use: expired idempotency keys and sessions, old webhook delivery attempts, and messages in a
-- final status (with their events, search rows and webhook attempts) older than the retention
-- period. A project may keep its messages for another number of days than the server's
-- `retention.messages`: message_retention_days, NULL for the server's, 0 for ever.
--
-- Every delete of the duty is served by an index that already exists: idempotency_keys and
-- sessions by expires_at, webhook_deliveries by (webhook_endpoint_id, created_at), messages by
-- (project_id, created_at); a message's events, search row and webhook attempts by their
-- message_id indexes. messages gets no new index: each would be one more entry written per
-- message on the hot path.
--
-- Sessions gain last_seen_at (when the session was last used, to some minutes: it is written
-- with the sliding expiry, not on every request), and their user's list is served newest first
-- by (user_id, created_at DESC, id DESC), which replaces the index on user_id alone.
--
-- Locks: projects and sessions are held ACCESS EXCLUSIVE for the migration's transaction. The
-- new project column is nullable without a default (no rewrite; its CHECK reads every project
-- once); sessions are read twice (the backfill, then SET NOT NULL) and their new index built.
-- Both tables are small (projects per tenant, sessions per signed-in user): well under a
-- second on large installs. messages is not touched.

ALTER TABLE projects ADD COLUMN message_retention_days INTEGER
    CHECK (message_retention_days BETWEEN 0 AND 36500);

ALTER TABLE sessions ADD COLUMN last_seen_at TIMESTAMPTZ;
-- updated_at was written by the sliding expiry: the last use known
UPDATE sessions SET last_seen_at = updated_at;
ALTER TABLE sessions ALTER COLUMN last_seen_at SET NOT NULL,
    ALTER COLUMN last_seen_at SET DEFAULT now();

DROP INDEX sessions_user_idx;
CREATE INDEX sessions_user_list_idx ON sessions (user_id, created_at DESC, id DESC);
