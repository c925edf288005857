-- The volumes and durations of a check's last successful runs, for anomaly events (JSON).
ALTER TABLE checks ADD COLUMN history TEXT NOT NULL DEFAULT '{}';
