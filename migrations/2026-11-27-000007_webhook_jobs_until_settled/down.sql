DROP INDEX webhook_jobs_event_idx;
DROP INDEX webhook_jobs_pushed_idx;
DROP INDEX webhook_jobs_unpushed_idx;
ALTER TABLE webhook_jobs DROP COLUMN tries;
ALTER TABLE webhook_jobs DROP COLUMN pushed_at;
