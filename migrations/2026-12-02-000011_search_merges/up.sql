-- The search indexes' pending lists are merged by the API processes, in bulk and beside the
-- commits (`ingest::merge_search`, every `api.search_merge_interval`), no longer by the insert
-- that crosses their limit. 256 kB (000008) merged every thousand messages or so: small
-- merges, each rewriting the posting lists it touches for a few entries, so that a search row
-- cost Postgres as much as all the rest of its message. The limit is now only a backstop for
-- when no merger runs: 32 MB is about two seconds of search entries at 30,000 messages/s.
ALTER INDEX message_search_recipient_trgm_idx SET (gin_pending_list_limit = 32768);
ALTER INDEX message_search_subject_trgm_idx SET (gin_pending_list_limit = 32768);
