-- The worker (stream consumer) holding a message's claim: when its liveness key expires, another
-- worker may claim the message at once instead of after delivery.visibility_timeout.
-- A nullable column without a default: a catalog change only, no table rewrite; the ACCESS
-- EXCLUSIVE lock is held for milliseconds.
ALTER TABLE messages ADD COLUMN claimed_by text;
