CREATE INDEX messages_api_key_idx ON messages (api_key_id) WHERE api_key_id IS NOT NULL;

-- ids of keys deleted meanwhile are cleared, as the trigger would have
UPDATE messages m SET api_key_id = NULL
WHERE api_key_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM api_keys k WHERE k.id = m.api_key_id);

CREATE FUNCTION forget_api_keys_of_messages() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE messages m SET api_key_id = NULL FROM gone g WHERE m.api_key_id = g.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER api_keys_forget_messages AFTER DELETE ON api_keys
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION forget_api_keys_of_messages();
