-- A project's on-call configuration as last applied (`keepwatch apply`), and the secret
-- tokens of its calendar feeds (one per schedule and per person, kept across applies).
CREATE TABLE oncall_configs (
    project_id  BIGINT PRIMARY KEY REFERENCES projects (id) ON DELETE CASCADE,
    source      TEXT NOT NULL,
    applied_at  BIGINT NOT NULL
);

CREATE TABLE calendar_feeds (
    token       TEXT PRIMARY KEY,
    project_id  BIGINT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    kind        TEXT NOT NULL,   -- 'schedule' or 'person'
    name        TEXT NOT NULL,
    UNIQUE (project_id, kind, name)
);
