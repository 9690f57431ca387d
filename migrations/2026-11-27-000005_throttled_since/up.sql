-- Throttled deliveries (a provider's 429, or RelayIt's own per-credential rate limits) spend no
-- attempt, so attempts cannot bound them: a message remembers since when it has been throttled
-- without a break, and fails once that exceeds delivery.max_throttled_for. NULL when its last
-- delivery was not throttled. Adding a nullable column without a default rewrites nothing.
ALTER TABLE messages ADD COLUMN throttled_since TIMESTAMPTZ;
