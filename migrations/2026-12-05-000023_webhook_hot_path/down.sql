ALTER TABLE webhook_jobs RESET (
    autovacuum_vacuum_scale_factor,
    autovacuum_vacuum_threshold,
    autovacuum_analyze_scale_factor,
    autovacuum_analyze_threshold
);
CREATE INDEX webhook_deliveries_org_idx ON webhook_deliveries (organization_id);
CREATE INDEX webhook_deliveries_message_idx ON webhook_deliveries (message_id);
ALTER TABLE webhook_deliveries ADD CONSTRAINT webhook_deliveries_message_id_fkey
    FOREIGN KEY (message_id) REFERENCES messages (id) ON DELETE CASCADE;
ALTER TABLE webhook_deliveries ADD CONSTRAINT webhook_deliveries_organization_id_fkey
    FOREIGN KEY (organization_id) REFERENCES organizations (id) ON DELETE CASCADE;
DROP INDEX webhook_deliveries_event_endpoint_idx;
CREATE INDEX webhook_deliveries_event_idx ON webhook_deliveries (event_id);
