ALTER TABLE messages DROP COLUMN throttled_since;
