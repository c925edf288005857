-- Every on-call configuration applied, with who applied it and the changes it made, so
-- `keepwatch export --at <time>` returns the file as it was and alert logs say who changed
-- what. The configurations applied before this table existed are its first rows.
CREATE TABLE oncall_history (
    id          INTEGER PRIMARY KEY,
    project_id  INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    applied_at  INTEGER NOT NULL,
    source      TEXT NOT NULL,
    applied_by  TEXT NOT NULL DEFAULT '',
    -- JSON array of the change lines `keepwatch apply` printed.
    changes     TEXT NOT NULL DEFAULT '[]'
);

CREATE INDEX oncall_history_by_project ON oncall_history (project_id, applied_at);

INSERT INTO oncall_history (project_id, applied_at, source)
    SELECT project_id, applied_at, source FROM oncall_configs;
