-- The credential a held receipt came in for, when it names one (SES: a credential takes the
-- receipts of its own SNS topics), so that the sweeper applies it, as `receipts::apply` does,
-- only to a message that credential sent. NULL: any credential of the organization (WhatsApp's
-- receipts, and those held before this column).
-- No foreign key: a held receipt lives a quarter of an hour at most, and once its credential is
-- deleted no message names that credential (their reference is set to NULL): it can move
-- nothing, and goes when its message turns up or its hold ends.
-- A nullable column without a default: a catalog change only.
ALTER TABLE held_receipts ADD COLUMN provider_credential_id TEXT COLLATE "C";
