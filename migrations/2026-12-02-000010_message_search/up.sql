-- The message log's substring search moves to its own table, written once per message.
--
-- The trigram indexes of recipient and subject were on messages, whose rows change status
-- three or more times each (processing, then sent or retrying, then delivered). PostgreSQL
-- re-inserts an updated row into every index of its table unless no indexed column changed,
-- and status is indexed, so each of those updates re-extracted and re-inserted some thirty
-- trigrams into the two GIN indexes: about a fifth of Postgres' work per delivered message
-- (perf, under `relayit-bench`). Here the searchable text is written once, when the message
-- is, by a statement-level trigger on the same transition table as the reference check;
-- deleting messages deletes their rows too. Recipient and content never change after insert.
--
-- On a large install this migration takes a while, and holds messages locked meanwhile (the
-- triggers and the DROP INDEX lock it, in the migration's one transaction): it copies every
-- message's text and builds two GIN indexes, 12 s for 1.4M messages on the benchmark machine.
-- Plan the upgrade's downtime for it.

CREATE TABLE message_search (
    message_id  TEXT PRIMARY KEY,
    project_id  TEXT NOT NULL,
    -- lower(recipient) and lower(content ->> 'subject') of the message
    recipient   TEXT NOT NULL,
    subject     TEXT
);

INSERT INTO message_search (message_id, project_id, recipient, subject)
SELECT id, project_id, lower(recipient), lower(content ->> 'subject') FROM messages;

-- Small pending lists, as the indexes they replace had (see 000008).
CREATE INDEX message_search_recipient_trgm_idx ON message_search
    USING gin (recipient gin_trgm_ops) WITH (gin_pending_list_limit = 256);
CREATE INDEX message_search_subject_trgm_idx ON message_search
    USING gin (subject gin_trgm_ops) WITH (gin_pending_list_limit = 256);

DROP INDEX messages_recipient_trgm_idx;
DROP INDEX messages_subject_trgm_idx;

CREATE FUNCTION index_message_search() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO message_search (message_id, project_id, recipient, subject)
    SELECT id, project_id, lower(recipient), lower(content ->> 'subject') FROM added;
    RETURN NULL;
END
$$;

CREATE TRIGGER messages_index_search AFTER INSERT ON messages
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION index_message_search();

CREATE FUNCTION delete_message_search() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM message_search s USING gone g WHERE s.message_id = g.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER messages_delete_search AFTER DELETE ON messages
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION delete_message_search();

-- what is searched must stay what was written
CREATE TRIGGER messages_keep_search BEFORE UPDATE OF recipient, content ON messages
    FOR EACH ROW
    WHEN (OLD.recipient IS DISTINCT FROM NEW.recipient OR OLD.content IS DISTINCT FROM NEW.content)
    EXECUTE FUNCTION messages_refuse_change('recipient and content');
