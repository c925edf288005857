-- Shift check-ins: one row per person and shift start of a schedule that asks for them
-- (`checkin` in the on-call file). `state`: pending | acknowledged | missed. `told` is a
-- JSON array of who is told if it is missed (the person on call before, the fallback). The
-- messages (the check-in itself, the notices of a miss) are rows of the one outbox, kind
-- `checkin`, their text written per recipient when queued.
CREATE TABLE checkins (
    id              BIGSERIAL PRIMARY KEY,
    project_id      BIGINT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    schedule        TEXT NOT NULL,
    person          TEXT NOT NULL,
    shift_start     BIGINT NOT NULL,
    shift_end       BIGINT NOT NULL,
    due_at          BIGINT NOT NULL,
    state           TEXT NOT NULL DEFAULT 'pending',
    told            TEXT NOT NULL DEFAULT '[]',
    acknowledged_at BIGINT,
    acknowledged_by TEXT,
    created_at      BIGINT NOT NULL
);
CREATE UNIQUE INDEX checkins_shift ON checkins (project_id, schedule, person, shift_start);
CREATE INDEX checkins_pending ON checkins (due_at) WHERE state = 'pending';
CREATE INDEX checkins_project ON checkins (project_id, id);

ALTER TABLE messages ADD COLUMN checkin_id BIGINT REFERENCES checkins (id) ON DELETE CASCADE;
CREATE INDEX messages_checkin ON messages (checkin_id) WHERE checkin_id IS NOT NULL;
