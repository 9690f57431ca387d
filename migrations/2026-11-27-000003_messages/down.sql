DROP TABLE webhook_deliveries;
DROP TABLE idempotency_keys;
DROP TABLE message_events;
DROP TABLE messages;
