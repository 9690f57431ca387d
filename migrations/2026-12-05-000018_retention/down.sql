DROP INDEX sessions_user_list_idx;
CREATE INDEX sessions_user_idx ON sessions (user_id);
ALTER TABLE sessions DROP COLUMN last_seen_at;
ALTER TABLE projects DROP COLUMN message_retention_days;
