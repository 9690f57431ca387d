ALTER TABLE webhook_endpoints DROP COLUMN rate_limit;
