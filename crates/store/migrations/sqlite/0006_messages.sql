-- One outbox for everything keepwatch sends: a check's event to a channel (`channel_event`),
-- a notification to a person's contact (`page`), a contact verification code (sent at once,
-- recorded here with its attempt; `verification_code`), later status updates, reminders and
-- check-ins. The dispatcher claims due rows with a lease. `destination` is what one
-- receiver's rows share (`channel:<id>` for a channel, the address for a contact), so the
-- rows of a receiver that has all it can take are left out of a claim.
CREATE TABLE messages (
    id              INTEGER PRIMARY KEY,
    kind            TEXT NOT NULL,
    destination     TEXT NOT NULL,
    event_id        INTEGER REFERENCES events (id) ON DELETE CASCADE,
    channel_id      INTEGER REFERENCES channels (id) ON DELETE CASCADE,
    alert_id        INTEGER REFERENCES alerts (id) ON DELETE CASCADE,
    person          TEXT,
    contact         TEXT,                     -- the contact's name in the person's entry
    address         TEXT,                     -- URL, email address or topic
    urgency         TEXT,
    state           TEXT NOT NULL DEFAULT 'pending',   -- pending | sent | failed | cancelled
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    sent_at         INTEGER
);
CREATE INDEX messages_due ON messages (state, next_attempt_at);
CREATE INDEX messages_alert ON messages (alert_id);
-- The messages sent to an address lately: its rate limit.
CREATE INDEX messages_address_sent ON messages (address, sent_at);

-- Every attempt to deliver a message.
CREATE TABLE message_attempts (
    id          INTEGER PRIMARY KEY,
    message_id  INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    at          INTEGER NOT NULL,
    ok          BOOLEAN NOT NULL,
    detail      TEXT NOT NULL,
    took_ms     INTEGER NOT NULL
);
CREATE INDEX message_attempts_message ON message_attempts (message_id);

-- Channel events keep their ids (receivers saw them as X-Keepwatch-Delivery); pages follow.
INSERT INTO messages (id, kind, destination, event_id, channel_id, state, attempts,
                      next_attempt_at, last_error, created_at)
    SELECT id, 'channel_event', 'channel:' || channel_id, event_id, channel_id, state, attempts,
           next_attempt_at, last_error, created_at
    FROM outbox ORDER BY id;
INSERT INTO message_attempts (message_id, at, ok, detail, took_ms)
    SELECT outbox_id, at, ok, detail, took_ms FROM delivery_attempts ORDER BY id;
INSERT INTO messages (kind, destination, alert_id, person, contact, address, urgency, state,
                      attempts, next_attempt_at, last_error, created_at, sent_at)
    SELECT 'page', address, alert_id, person, contact, address, urgency, state, attempts,
           next_attempt_at, last_error, created_at, sent_at
    FROM pages ORDER BY id;
DROP TABLE delivery_attempts;
DROP TABLE outbox;
DROP TABLE pages;
