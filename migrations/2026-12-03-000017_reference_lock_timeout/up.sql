-- An insert of messages waits at most a second for the projects and keys it names.
--
-- The reference check (000009) locks each named project and key FOR KEY SHARE, which waits
-- only for a transaction deleting that row (or changing its slug, a unique key). Deleting a
-- project deletes its messages in the same transaction (those the API has not purged in
-- batches before: a deletion by hand, or one whose purge was cut short), minutes for a large
-- project, and an ingestion batch holds the messages of many tenants: one message for the
-- project being deleted kept all of them waiting, and with the project still sending, every
-- commit slot in turn, so that `/v1/send` stalled for everyone until the deletion ended. Now the wait ends after
-- a second with lock_not_available; the committer then commits the batch's requests one by
-- one, so that only the request naming the project being deleted fails (503, to be retried).
-- A slug change holds the lock for milliseconds and is still waited for.
CREATE OR REPLACE FUNCTION messages_check_references() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    locked   bigint;
    -- restored after the locks: the rest of the caller's transaction keeps its own setting
    previous text := current_setting('lock_timeout');
BEGIN
    PERFORM set_config('lock_timeout', '1s', true);
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
    PERFORM set_config('lock_timeout', previous, true);
    RETURN NULL;
END
$$;
