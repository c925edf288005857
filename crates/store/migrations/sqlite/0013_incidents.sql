-- Incidents: an owner, stakeholders and a cadence of status updates until an all-clear.
-- `stakeholder_groups` (names from the on-call file) and `extra` (addresses named on the
-- incident) are JSON arrays; `postmortem` is a JSON object. `next_update_at` is NULL when the
-- incident has no cadence (SEV4 by default) or is resolved; `cadence_stage` is how far the
-- reminders for that due time went (0 none, 1 before, 2 due, 3 escalated).
CREATE TABLE incidents (
    id                 INTEGER PRIMARY KEY,
    project_id         INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    title              TEXT NOT NULL,
    severity           TEXT NOT NULL,
    status             TEXT NOT NULL,
    owner              TEXT NOT NULL,
    service            TEXT NOT NULL DEFAULT '',
    impact             TEXT NOT NULL DEFAULT '',
    stakeholder_groups TEXT NOT NULL DEFAULT '[]',
    extra              TEXT NOT NULL DEFAULT '[]',
    update_every       INTEGER,
    next_update_at     INTEGER,
    cadence_stage      INTEGER NOT NULL DEFAULT 0,
    token              TEXT NOT NULL,
    declared_at        INTEGER NOT NULL,
    declared_by        TEXT NOT NULL,
    last_update_at     INTEGER,
    resolved_at        INTEGER,
    postmortem         TEXT NOT NULL DEFAULT '{}'
);
CREATE UNIQUE INDEX incidents_token ON incidents (token);
CREATE INDEX incidents_project ON incidents (project_id, id);
CREATE INDEX incidents_due ON incidents (next_update_at) WHERE next_update_at IS NOT NULL;

CREATE TABLE incident_alerts (
    incident_id INTEGER NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    alert_id    INTEGER NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    attached_at INTEGER NOT NULL,
    PRIMARY KEY (incident_id, alert_id)
);
CREATE INDEX incident_alerts_alert ON incident_alerts (alert_id);

-- Linked checks, by UUID (a check deleted later still names itself in the postmortem).
CREATE TABLE incident_checks (
    incident_id INTEGER NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    check_uuid  TEXT NOT NULL,
    PRIMARY KEY (incident_id, check_uuid)
);
CREATE INDEX incident_checks_check ON incident_checks (check_uuid);

-- Append-only: declared, updates (with the status and whether on time), notes, owner
-- changes, reminders, escalations, recurrences, all-clear, reopen.
CREATE TABLE incident_log (
    id          INTEGER PRIMARY KEY,
    incident_id INTEGER NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    at          INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    who         TEXT NOT NULL DEFAULT '',
    status      TEXT,
    text        TEXT NOT NULL DEFAULT '',
    due_at      INTEGER,
    on_time     BOOLEAN
);
CREATE INDEX incident_log_incident ON incident_log (incident_id, id);

-- Stakeholder updates (`incident_update`) and owner reminders (`incident_reminder`) are
-- messages of the one outbox; their text is written per recipient when they are queued.
ALTER TABLE messages ADD COLUMN incident_id INTEGER REFERENCES incidents (id) ON DELETE CASCADE;
CREATE INDEX messages_incident ON messages (incident_id) WHERE incident_id IS NOT NULL;
