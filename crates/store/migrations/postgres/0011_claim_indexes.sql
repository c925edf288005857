-- The outbox's indexes hold only the rows they serve (sent messages accumulate; pending ones
-- are few), so they stay small and a burst of pages costs fewer index writes.
--
-- A claim takes the due rows of one kind, high urgency first, then oldest first: this index
-- hands them out in that order (no sort of every pending row per claim), and tells which
-- kinds have something due by reading one entry per kind.
CREATE INDEX messages_claim ON messages (kind, urgency, next_attempt_at) WHERE state = 'pending';
-- The next time anything is due.
DROP INDEX messages_due;
CREATE INDEX messages_due ON messages (next_attempt_at) WHERE state = 'pending';
-- The messages sent to an address lately: its rate limit.
DROP INDEX messages_address_sent;
CREATE INDEX messages_address_sent ON messages (address, sent_at) WHERE sent_at IS NOT NULL;
-- The pager reads the alert log's entries people hear of (resolved, finished late, a check's
-- repeated trigger) after its cursor; by kind, so it does not scan every other entry.
CREATE INDEX alert_log_kind ON alert_log (kind, id);
