ALTER FUNCTION messages_check_references() RESET lock_timeout;
