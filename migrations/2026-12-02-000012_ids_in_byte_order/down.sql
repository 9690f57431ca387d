-- back to the database's collation

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
        EXECUTE format('ALTER TABLE %I ALTER COLUMN %I TYPE text COLLATE "default"',
                       c.table_name, c.column_name);
    END LOOP;
END
$$;

CREATE TRIGGER messages_keep_references BEFORE UPDATE OF organization_id, project_id, api_key_id
    ON messages FOR EACH ROW
    WHEN (OLD.organization_id IS DISTINCT FROM NEW.organization_id
          OR OLD.project_id IS DISTINCT FROM NEW.project_id
          OR OLD.api_key_id IS DISTINCT FROM NEW.api_key_id AND NEW.api_key_id IS NOT NULL)
    EXECUTE FUNCTION messages_refuse_change('organization, project and API key');
