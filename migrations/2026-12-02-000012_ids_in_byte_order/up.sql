-- Ids (and the columns naming them) compare as bytes: COLLATE "C".
--
-- The database's collation (C.UTF-8 here, often en_US.UTF-8) orders text by locale rules, so
-- every B-tree comparison of two ids went through strcoll. Ids are ASCII (a type prefix and a
-- UUIDv7 in hex), so byte order is the order they had anyway, and equality is unchanged; only
-- the cost falls. Every status change inserts into each index of `messages` (the row moves),
-- and most of those indexes are keyed by ids: per 1,000 messages, two status updates took
-- 12% less time, and inserts 6% less (against the same schema under C.UTF-8).
--
-- All id columns change together: comparing a "C" column with one under the database's
-- collation is an error ("could not determine which collation to use"), so joins need both
-- sides alike. Rebuilds the indexes of these columns: on a large install, plan for the time.

DROP TRIGGER messages_keep_references ON messages;

DO $$
DECLARE
    c record;
BEGIN
    FOR c IN
        SELECT table_name, column_name FROM information_schema.columns
        WHERE table_schema = 'public' AND data_type = 'text'
          AND (column_name = 'id' OR column_name LIKE '%\_id')
          AND table_name <> '__diesel_schema_migrations'
        ORDER BY table_name, column_name
    LOOP
        EXECUTE format('ALTER TABLE %I ALTER COLUMN %I TYPE text COLLATE "C"',
                       c.table_name, c.column_name);
    END LOOP;
END
$$;

-- as in 000009; it names columns changed above, so it had to go while they changed
CREATE TRIGGER messages_keep_references BEFORE UPDATE OF organization_id, project_id, api_key_id
    ON messages FOR EACH ROW
    WHEN (OLD.organization_id IS DISTINCT FROM NEW.organization_id
          OR OLD.project_id IS DISTINCT FROM NEW.project_id
          OR OLD.api_key_id IS DISTINCT FROM NEW.api_key_id AND NEW.api_key_id IS NOT NULL)
    EXECUTE FUNCTION messages_refuse_change('organization, project and API key');
