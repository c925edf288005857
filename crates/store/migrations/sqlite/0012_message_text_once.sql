-- A summary of many pages is one message: its text is stored once, with its first page, and
-- the others point to that row (they were 100 copies of a 7 KB text per summary).
ALTER TABLE messages ADD COLUMN text_with INTEGER;
