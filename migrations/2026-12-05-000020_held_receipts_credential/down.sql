ALTER TABLE held_receipts DROP COLUMN provider_credential_id;
