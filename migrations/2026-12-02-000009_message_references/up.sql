-- messages' references to their project and API key, checked once per statement instead of
-- once per row.
--
-- A foreign key checks each inserted row with its own query (and row lock) on the referenced
-- table. Ingestion inserts thousands of rows a second that all name the same project and key,
-- so those checks were about a sixth of Postgres' work per accepted message (perf, under
-- `relayit-bench`). The same guarantees, per statement:
-- - an insert locks (FOR KEY SHARE, as a foreign key does) each distinct project and key its
--   rows name, and fails with foreign_key_violation when one is missing. A concurrent delete of
--   that project therefore waits for the insert's transaction, and then deletes its rows too;
-- - deleting projects deletes their messages (ON DELETE CASCADE before), and deleting API keys
--   clears the messages' api_key_id (ON DELETE SET NULL before), one statement each;
-- - a message's project and key never change after insert; updating them is refused.

ALTER TABLE messages DROP CONSTRAINT messages_organization_id_project_id_fkey;
ALTER TABLE messages DROP CONSTRAINT messages_api_key_id_fkey;

CREATE FUNCTION messages_check_references() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    locked  bigint;
BEGIN
    PERFORM 1 FROM projects p
    WHERE (p.organization_id, p.id) IN (SELECT organization_id, project_id FROM added)
    FOR KEY SHARE;
    GET DIAGNOSTICS locked = ROW_COUNT;
    IF locked < (SELECT count(DISTINCT (organization_id, project_id)) FROM added) THEN
        -- the words a foreign key would use, for anything that matches them
        RAISE EXCEPTION 'insert or update on table "messages" violates foreign key constraint "messages_organization_id_project_id_fkey"'
            USING ERRCODE = 'foreign_key_violation', TABLE = 'messages',
                  CONSTRAINT = 'messages_organization_id_project_id_fkey';
    END IF;
    PERFORM 1 FROM api_keys k WHERE k.id IN (SELECT api_key_id FROM added) FOR KEY SHARE;
    GET DIAGNOSTICS locked = ROW_COUNT;
    -- count(DISTINCT) leaves out the NULLs: messages sent without a key
    IF locked < (SELECT count(DISTINCT api_key_id) FROM added) THEN
        RAISE EXCEPTION 'insert or update on table "messages" violates foreign key constraint "messages_api_key_id_fkey"'
            USING ERRCODE = 'foreign_key_violation', TABLE = 'messages',
                  CONSTRAINT = 'messages_api_key_id_fkey';
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER messages_check_references AFTER INSERT ON messages
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION messages_check_references();

-- Refuses to change what a message was written with; the trigger names it in its argument.
CREATE FUNCTION messages_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'a message''s % do not change', TG_ARGV[0]
        USING ERRCODE = 'integrity_constraint_violation', TABLE = 'messages';
END
$$;

CREATE TRIGGER messages_keep_references BEFORE UPDATE OF organization_id, project_id, api_key_id
    ON messages FOR EACH ROW
    WHEN (OLD.organization_id IS DISTINCT FROM NEW.organization_id
          OR OLD.project_id IS DISTINCT FROM NEW.project_id
          OR OLD.api_key_id IS DISTINCT FROM NEW.api_key_id AND NEW.api_key_id IS NOT NULL)
    EXECUTE FUNCTION messages_refuse_change('organization, project and API key');

CREATE FUNCTION delete_project_messages() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM messages m USING gone g
    WHERE m.project_id = g.id AND m.organization_id = g.organization_id;
    RETURN NULL;
END
$$;

CREATE TRIGGER projects_delete_messages AFTER DELETE ON projects
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION delete_project_messages();

CREATE FUNCTION forget_api_keys_of_messages() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE messages m SET api_key_id = NULL FROM gone g WHERE m.api_key_id = g.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER api_keys_forget_messages AFTER DELETE ON api_keys
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION forget_api_keys_of_messages();
