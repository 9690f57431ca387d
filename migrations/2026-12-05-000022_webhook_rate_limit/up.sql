-- An endpoint's optional rate: requests per second, shared by every webhook process (NULL: none).
ALTER TABLE webhook_endpoints ADD COLUMN rate_limit integer
    CHECK (rate_limit IS NULL OR rate_limit BETWEEN 1 AND 10000);
