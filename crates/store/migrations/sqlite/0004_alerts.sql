-- Alerts: created from check events and from inbound integrations (the events API, the
-- Alertmanager receiver), paged under their service's escalation policy. One open alert per
-- (project, dedup key).
CREATE TABLE alerts (
    id              INTEGER PRIMARY KEY,
    project_id      INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    service         TEXT NOT NULL,
    dedup_key       TEXT NOT NULL,
    summary         TEXT NOT NULL,
    source          TEXT NOT NULL,            -- check | events | alertmanager
    details         TEXT NOT NULL DEFAULT '{}',
    status          TEXT NOT NULL,            -- triggered | acknowledged | resolved
    urgency         TEXT NOT NULL,            -- urgency at the trigger: high | low
    triggered_at    INTEGER NOT NULL,
    acknowledged_at INTEGER,
    resolved_at     INTEGER,
    -- The pager has handled every page of the timeline up to this time.
    paged_until     INTEGER NOT NULL
);
CREATE UNIQUE INDEX alerts_open_dedup ON alerts (project_id, dedup_key) WHERE status <> 'resolved';
CREATE INDEX alerts_status ON alerts (status, id);

-- Append-only: every trigger, escalation step, urgency change, notification sent or failed,
-- acknowledgment and resolution, with who and when.
CREATE TABLE alert_log (
    id        INTEGER PRIMARY KEY,
    alert_id  INTEGER NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    at        INTEGER NOT NULL,
    kind      TEXT NOT NULL,
    who       TEXT NOT NULL DEFAULT '',
    detail    TEXT NOT NULL DEFAULT ''
);
CREATE INDEX alert_log_alert ON alert_log (alert_id, id);

-- One row per notification to a person's contact method; the pager's dispatcher claims due
-- rows with a lease, as the channel outbox does.
CREATE TABLE pages (
    id              INTEGER PRIMARY KEY,
    alert_id        INTEGER NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    person          TEXT NOT NULL,
    contact         TEXT NOT NULL,            -- the contact's name in the person's entry
    address         TEXT NOT NULL,            -- URL, email address or topic
    urgency         TEXT NOT NULL,
    state           TEXT NOT NULL DEFAULT 'pending',   -- pending | sent | failed | cancelled
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_until     INTEGER,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    sent_at         INTEGER
);
CREATE INDEX pages_due ON pages (state, next_attempt_at);
CREATE INDEX pages_alert ON pages (alert_id);

-- Process-wide secrets (the key that signs acknowledgment links), made on first start.
CREATE TABLE secrets (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);

-- The pager turns check events into alerts from here on: events from before this version
-- are history, not pages to send on the first start after the upgrade.
INSERT INTO meta (key, value) SELECT 'pager_events', COALESCE(MAX(id), 0) FROM events;
