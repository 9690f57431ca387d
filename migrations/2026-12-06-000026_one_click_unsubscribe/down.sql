ALTER TABLE projects DROP COLUMN unsubscribe_mailto, DROP COLUMN one_click_unsubscribe;
