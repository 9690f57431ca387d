DROP TRIGGER message_events_fan_out_webhooks ON message_events;
DROP FUNCTION fan_out_webhook_jobs();
DROP TABLE webhook_jobs;
