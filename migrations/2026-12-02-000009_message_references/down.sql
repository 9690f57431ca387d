DROP TRIGGER api_keys_forget_messages ON api_keys;
DROP FUNCTION forget_api_keys_of_messages();
DROP TRIGGER projects_delete_messages ON projects;
DROP FUNCTION delete_project_messages();
DROP TRIGGER messages_keep_references ON messages;
DROP FUNCTION messages_refuse_change();
DROP TRIGGER messages_check_references ON messages;
DROP FUNCTION messages_check_references();
ALTER TABLE messages ADD FOREIGN KEY (api_key_id) REFERENCES api_keys (id) ON DELETE SET NULL;
ALTER TABLE messages ADD FOREIGN KEY (organization_id, project_id)
    REFERENCES projects (organization_id, id) ON DELETE CASCADE;
