ALTER TABLE messages DROP CONSTRAINT messages_template_check,
                     DROP COLUMN template_version,
                     DROP COLUMN template_id;
DROP TABLE template_versions;
DROP TABLE templates;
