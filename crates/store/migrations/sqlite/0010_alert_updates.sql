-- Alert updates: a short message (kind `alert_update`) to each person who was paged for an
-- alert, when it is resolved or recovers, or when its hung run finishes late. `note` is what
-- the message says; pages and channel events leave it empty.
ALTER TABLE messages ADD COLUMN note TEXT;
