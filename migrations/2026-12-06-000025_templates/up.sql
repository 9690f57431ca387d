-- Templates: a project's message text kept in one place. A template belongs to one channel;
-- its `draft` has the shape of that channel's `content`, with each string a MiniJinja template.
-- Publishing copies the draft into an immutable version (1, 2, ...); a send names the template
-- and a version (default: `latest_version`), and what it rendered is stored in the message, with
-- the template and version it came from.

CREATE TABLE templates (
    id               TEXT COLLATE "C" PRIMARY KEY CHECK (id LIKE 'tpl\_%'),
    organization_id  TEXT COLLATE "C" NOT NULL,
    project_id       TEXT COLLATE "C" NOT NULL,
    slug             TEXT NOT NULL CHECK (slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$' AND length(slug) <= 48),
    name             TEXT NOT NULL CHECK (name <> '' AND length(name) <= 100),
    channel          TEXT NOT NULL CHECK (channel IN ('email', 'sms', 'whatsapp', 'discord')),
    draft            JSONB NOT NULL CHECK (jsonb_typeof(draft) = 'object'),
    -- 0 while none is published
    latest_version   INTEGER NOT NULL DEFAULT 0 CHECK (latest_version >= 0),
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (project_id, slug),
    FOREIGN KEY (organization_id, project_id) REFERENCES projects (organization_id, id) ON DELETE CASCADE
);
CREATE INDEX templates_project_list_idx ON templates (project_id, created_at DESC, id DESC);

CREATE TABLE template_versions (
    template_id      TEXT COLLATE "C" NOT NULL REFERENCES templates (id) ON DELETE CASCADE,
    version          INTEGER NOT NULL CHECK (version > 0),
    content          JSONB NOT NULL CHECK (jsonb_typeof(content) = 'object'),
    published_by     TEXT COLLATE "C",
    published_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (template_id, version)
);

-- No foreign key: a message keeps the record of what it was rendered from after the template
-- is deleted (its rendered content is its own). Nullable columns without a default are added
-- without rewriting the table; the check is NOT VALID so that adding it does not scan every
-- message under the table's lock (the existing rows have neither column, so it holds anyway).
ALTER TABLE messages ADD COLUMN template_id TEXT COLLATE "C",
                     ADD COLUMN template_version INTEGER,
                     ADD CONSTRAINT messages_template_check
                         CHECK ((template_id IS NULL) = (template_version IS NULL)) NOT VALID;
