-- A webhook job stays in the outbox until the attempt that settles it (success, dead letter,
-- endpoint gone), so a Redis that loses its data (restarted without persistence) loses no job:
-- the relay pushes again the rows it pushed long ago that nothing settled.
-- `pushed_at`: when the job was last put on the stream, or when its next attempt is due while it
-- waits in the delayed set; NULL until first pushed. `tries`: attempts made, for the schedule.
ALTER TABLE webhook_jobs ADD COLUMN pushed_at TIMESTAMPTZ;
ALTER TABLE webhook_jobs ADD COLUMN tries INTEGER NOT NULL DEFAULT 0;
CREATE INDEX webhook_jobs_unpushed_idx ON webhook_jobs (id) WHERE pushed_at IS NULL;
CREATE INDEX webhook_jobs_pushed_idx ON webhook_jobs (pushed_at) WHERE pushed_at IS NOT NULL;
CREATE INDEX webhook_jobs_event_idx ON webhook_jobs (event_id, webhook_endpoint_id);
