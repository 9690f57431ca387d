ALTER INDEX message_search_recipient_trgm_idx SET (gin_pending_list_limit = 256);
ALTER INDEX message_search_subject_trgm_idx SET (gin_pending_list_limit = 256);
