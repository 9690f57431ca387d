ALTER INDEX messages_recipient_trgm_idx RESET (gin_pending_list_limit);
ALTER INDEX messages_subject_trgm_idx RESET (gin_pending_list_limit);
