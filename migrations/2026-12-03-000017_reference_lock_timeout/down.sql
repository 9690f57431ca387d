CREATE OR REPLACE FUNCTION messages_check_references() RETURNS trigger LANGUAGE plpgsql AS $$
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
