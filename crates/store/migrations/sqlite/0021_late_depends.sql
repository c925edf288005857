-- Issue #21. `notify_late`: send a low-urgency "late" notice to the check's channels when it
-- enters its grace period. `depends_on`: JSON array of the UUIDs of checks this one depends
-- on; while one of them is down, this check's alerts are held back (suppressed).
ALTER TABLE checks ADD COLUMN notify_late BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE checks ADD COLUMN depends_on TEXT NOT NULL DEFAULT '[]';
