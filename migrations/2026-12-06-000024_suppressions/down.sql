ALTER TABLE held_receipts DROP COLUMN suppress;
DROP TABLE suppressions;
