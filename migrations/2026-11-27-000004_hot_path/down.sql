CREATE INDEX messages_project_channel_idx ON messages (project_id, channel, created_at DESC, id DESC);
CREATE INDEX messages_org_idx ON messages (organization_id);
ALTER TABLE messages ADD CONSTRAINT messages_organization_id_fkey
    FOREIGN KEY (organization_id) REFERENCES organizations (id) ON DELETE CASCADE;
DROP TRIGGER messages_delete_events ON messages;
DROP FUNCTION delete_message_events();
DELETE FROM message_events e WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = e.message_id);
ALTER TABLE message_events ADD CONSTRAINT message_events_message_id_fkey
    FOREIGN KEY (message_id) REFERENCES messages (id) ON DELETE CASCADE;
