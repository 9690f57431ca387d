-- The search indexes (trigram GIN on recipient and subject) gather new entries in a pending list
-- and merge it into the index when it outgrows gin_pending_list_limit (4 MB by default). The
-- insert that crosses the limit does the merge inside its own commit: under a sustained
-- /v1/send load that was a stall of tens of milliseconds every few seconds, the whole p99 of the
-- ingestion path (relayit-bench, 64 connections: p99 34-39 ms at 4 MB, 14-16 ms at 256 kB, the
-- same throughput). Smaller lists merge more often and each merge is short.
ALTER INDEX messages_recipient_trgm_idx SET (gin_pending_list_limit = 256);
ALTER INDEX messages_subject_trgm_idx SET (gin_pending_list_limit = 256);
