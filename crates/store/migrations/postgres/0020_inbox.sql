-- What instances that do not own the checks hand to the one that does (see the engine's
-- `actor`): pings they took (durable here before they answer 200) and check changes made
-- through their API. The owner applies each entry with the ping batch it belongs to and
-- deletes it in the same transaction, so an entry is applied once.
CREATE TABLE inbox (
    id          BIGSERIAL PRIMARY KEY,
    kind        TEXT NOT NULL,    -- ping | reload | pause | resume
    check_uuid  TEXT NOT NULL,
    received_at BIGINT NOT NULL,  -- µs since the epoch, when the instance took it
    instance    TEXT NOT NULL,    -- which instance took it (for the logs)
    request     TEXT NOT NULL DEFAULT '',  -- a ping's fields, JSON
    body        BYTEA
);
