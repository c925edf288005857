-- What each message said, as sent (plain text; an email's HTML part is made from the same
-- words), shown with its delivery record. NULL for messages sent before this version and for
-- verification codes (their text is the code).
ALTER TABLE messages ADD COLUMN text TEXT;

-- An alert's urgency is its current one: the pager sets it to high when it raises a
-- low-urgency alert nobody acknowledged, and records when here (the timeline is computed from
-- the urgency at the trigger, which was low when this is set).
ALTER TABLE alerts ADD COLUMN raised_at BIGINT;
