DROP INDEX messages_project_final_idx;
ALTER TABLE messages DROP COLUMN final_status;
