DROP TRIGGER messages_keep_search ON messages;
DROP TRIGGER messages_delete_search ON messages;
DROP FUNCTION delete_message_search();
DROP TRIGGER messages_index_search ON messages;
DROP FUNCTION index_message_search();
DROP TABLE message_search;
CREATE INDEX messages_recipient_trgm_idx ON messages USING gin (lower(recipient) gin_trgm_ops)
    WITH (gin_pending_list_limit = 256);
CREATE INDEX messages_subject_trgm_idx ON messages USING gin (lower(content ->> 'subject') gin_trgm_ops)
    WITH (gin_pending_list_limit = 256);
