-- Leases of background work between instances on one database (see the engine's `lease`):
-- one row per kind of work, claimed and renewed by compare-and-set in one statement. An
-- instance may do the work while `holder` is its id and `expires_at` (µs since the epoch) is
-- ahead. `version` is the highest version of that work's code that has claimed it: an instance
-- whose code is older stops claiming it (a rolling upgrade hands the work to the new binary).
CREATE TABLE leases (
    work        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    version     INTEGER NOT NULL,
    expires_at  BIGINT NOT NULL,
    acquired_at BIGINT NOT NULL
);
