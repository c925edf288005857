-- What instances that do not own the checks hand to the one that does (PostgreSQL only;
-- SQLite has one instance, which owns every check). Kept so both schemas stay one.
CREATE TABLE inbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT NOT NULL,
    check_uuid  TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    instance    TEXT NOT NULL,
    request     TEXT NOT NULL DEFAULT '',
    body        BLOB
);
