DROP TABLE invitations;
DROP TABLE passkeys;
DROP TABLE accounts;
DROP TABLE sessions;
DROP TABLE members;
DROP TABLE organizations;
DROP TABLE users;
-- pg_trgm is left installed: other objects of the database may use it.
