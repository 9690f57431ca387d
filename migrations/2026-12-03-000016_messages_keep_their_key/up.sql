-- A message keeps the id of the API key that sent it, even once the key is gone.
--
-- API keys are revoked (revoked_at), never deleted by the API: a key row goes only with its
-- organization, whose messages go with it. Clearing the deleted keys' ids in their messages
-- (000009, as ON DELETE SET NULL did before) therefore only ever rewrote rows about to be
-- deleted, and it needed an index on messages.api_key_id that nothing else reads: a seventh
-- of the statement that accepts messages (one more index entry per message, written while the
-- request waits). Without both, a key deleted by hand leaves its id in its messages, a record
-- of what sent them; the id still never changes after insert (messages_keep_references).
DROP TRIGGER api_keys_forget_messages ON api_keys;
DROP FUNCTION forget_api_keys_of_messages();
DROP INDEX messages_api_key_idx;
