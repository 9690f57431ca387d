-- The webhook path's statements, kept on the indexes they need however far the statistics of
-- its tables drift (found with auto_explain under relayit-bench's webhook phase).
--
-- Numbering an attempt looks up the earlier attempts of one event at one endpoint. With an index
-- on the event alone, the planner, trusting statistics taken when the table was small, combined
-- it with the endpoint's list index and so read every attempt the endpoint ever had (0.4 ms per
-- attempt after a few thousand, and growing). One index on (event, endpoint, attempt) answers
-- the lookup by itself, and still serves the deletes by event the old index served: no more is
-- written per attempt than before.
DROP INDEX webhook_deliveries_event_idx;
CREATE INDEX webhook_deliveries_event_endpoint_idx
    ON webhook_deliveries (event_id, webhook_endpoint_id, attempt);

-- Each attempt checked four foreign keys, and each check locks the row it finds: the event, the
-- endpoint, the message and the organization, the last shared by every message and attempt of
-- the tenant, so concurrent writers made it a multixact. Two suffice for every cascade: deleting
-- a message deletes its events and so their attempts, and deleting an organization deletes its
-- endpoints and messages and so their attempts. The other two go, with the indexes only their
-- cascades read: two index entries fewer per attempt. The columns stay (the API shows them).
ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_organization_id_fkey;
ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_message_id_fkey;
DROP INDEX webhook_deliveries_message_idx;
DROP INDEX webhook_deliveries_org_idx;

-- The outbox is a queue: thousands of rows a second are inserted, marked pushed and deleted, so
-- its dead rows and its statistics go stale long before the default thresholds (a fraction of
-- the table's size, which is small) would vacuum or analyze it. Every few thousand changes
-- instead.
ALTER TABLE webhook_jobs SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 5000,
    autovacuum_analyze_scale_factor = 0,
    autovacuum_analyze_threshold = 5000
);
