-- One-click unsubscribe (RFC 8058), switched on per project: its emails then carry a
-- List-Unsubscribe header with a signed link to this server (and, when unsubscribe_mailto is
-- set, a mailto: address as well), and a POST to that link adds the recipient to the project's
-- suppression list (reason `unsubscribe`, 000024).
--
-- Locks: projects is held ACCESS EXCLUSIVE for the migration's transaction. A boolean column
-- with a constant default and a nullable column are added without a rewrite (PostgreSQL 11+
-- keeps the default in the catalog); the CHECK reads every project once. The table is small
-- (projects per tenant): well under a second on large installs.

ALTER TABLE projects
    ADD COLUMN one_click_unsubscribe BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN unsubscribe_mailto TEXT
        CHECK (unsubscribe_mailto <> '' AND length(unsubscribe_mailto) <= 254);
