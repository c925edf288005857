-- keepwatch schema, SQLite. Times are microseconds since the Unix epoch (UTC).
CREATE TABLE projects (
    id          INTEGER PRIMARY KEY,
    uuid        TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL UNIQUE,
    ping_key    TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
);

CREATE TABLE api_keys (
    id          INTEGER PRIMARY KEY,
    project_id  INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    key_hash    TEXT NOT NULL UNIQUE,   -- SHA-256 of the key; the key itself is never stored
    read_only   BOOLEAN NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE checks (
    id               INTEGER PRIMARY KEY,
    uuid             TEXT NOT NULL UNIQUE,
    project_id       INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    name             TEXT NOT NULL DEFAULT '',
    slug             TEXT NOT NULL DEFAULT '',
    tags             TEXT NOT NULL DEFAULT '',
    descr            TEXT NOT NULL DEFAULT '',
    kind             TEXT NOT NULL,          -- simple | cron | oncalendar
    timeout_secs     INTEGER NOT NULL,
    grace_secs       INTEGER NOT NULL,
    schedule         TEXT NOT NULL DEFAULT '',
    tz               TEXT NOT NULL DEFAULT 'UTC',
    max_runtime_secs INTEGER,
    manual_resume    BOOLEAN NOT NULL DEFAULT FALSE,
    service          TEXT,
    extra            TEXT NOT NULL DEFAULT '{}',  -- Healthchecks fields kept for round-trips
    created_at       INTEGER NOT NULL,
    -- state: written with every status change, and checkpointed from memory otherwise
    status           TEXT NOT NULL DEFAULT 'new',
    down_reason      TEXT,
    last_ping        INTEGER,
    n_pings          INTEGER NOT NULL DEFAULT 0,
    last_duration_ms INTEGER,
    open_runs        TEXT NOT NULL DEFAULT '[]',
    last_seq         INTEGER,                    -- the check's newest ping (head of its chain)
    checkpoint_seq   INTEGER NOT NULL DEFAULT 0  -- pings with seq above this are not in the state yet
);
CREATE INDEX checks_project_slug ON checks(project_id, slug);

-- The ping log. The hot path appends here and nothing else: no secondary index, so a group
-- commit dirties only the last pages. A check's pings form a chain through `prev_seq` from
-- the check's `last_seq`, which is how they are listed; old pings are swept by seq range.
CREATE TABLE pings (
    seq            INTEGER PRIMARY KEY,   -- assigned by the writer, global order
    check_id       INTEGER NOT NULL,
    prev_seq       INTEGER,               -- the check's previous ping
    n              INTEGER NOT NULL,
    at             INTEGER NOT NULL,
    kind           TEXT NOT NULL,
    scheme         TEXT NOT NULL,
    method         TEXT NOT NULL,
    remote_addr    TEXT NOT NULL,
    ua             TEXT NOT NULL,
    rid            TEXT,
    host           TEXT,
    pid            INTEGER,
    volume         INTEGER,
    body           BLOB,
    body_truncated BOOLEAN NOT NULL,
    duration_ms    INTEGER
);

-- Small facts about the database, e.g. `replay_from`: pings after this seq may be missing
-- from the stored check states and are replayed at start-up.
CREATE TABLE meta (
    key    TEXT PRIMARY KEY,
    value  INTEGER NOT NULL
);

CREATE TABLE flips (
    id          INTEGER PRIMARY KEY,
    check_id    INTEGER NOT NULL REFERENCES checks(id) ON DELETE CASCADE,
    at          INTEGER NOT NULL,
    old_status  TEXT NOT NULL,
    new_status  TEXT NOT NULL
);
CREATE INDEX flips_check ON flips(check_id, at);

CREATE TABLE channels (
    id          INTEGER PRIMARY KEY,
    uuid        TEXT NOT NULL UNIQUE,
    project_id  INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL,            -- webhook | email
    config      TEXT NOT NULL,            -- JSON, per kind
    created_at  INTEGER NOT NULL
);

CREATE TABLE check_channels (
    check_id    INTEGER NOT NULL REFERENCES checks(id) ON DELETE CASCADE,
    channel_id  INTEGER NOT NULL REFERENCES channels(id) ON DELETE CASCADE,
    PRIMARY KEY (check_id, channel_id)
);

-- Check events (down, failed, hung, overlap, up), written in the transaction that changed the
-- check. Routing (channels today, on-call later) reads from here.
CREATE TABLE events (
    id          INTEGER PRIMARY KEY,
    check_id    INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    at          INTEGER NOT NULL,
    payload     TEXT NOT NULL
);
CREATE INDEX events_check ON events(check_id, at);

-- One row per message to send; the dispatcher claims due rows with a lease.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    event_id        INTEGER NOT NULL REFERENCES events(id) ON DELETE CASCADE,
    channel_id      INTEGER NOT NULL REFERENCES channels(id) ON DELETE CASCADE,
    state           TEXT NOT NULL DEFAULT 'pending',   -- pending | sent | failed
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    last_error      TEXT
);
CREATE INDEX outbox_due ON outbox(state, next_attempt_at);

CREATE TABLE delivery_attempts (
    id          INTEGER PRIMARY KEY,
    outbox_id   INTEGER NOT NULL REFERENCES outbox(id) ON DELETE CASCADE,
    at          INTEGER NOT NULL,
    ok          BOOLEAN NOT NULL,
    detail      TEXT NOT NULL,
    took_ms     INTEGER NOT NULL
);
CREATE INDEX delivery_attempts_outbox ON delivery_attempts(outbox_id);
