-- data20 schema, version 2: percentiles of job durations read an index, not the table.
CREATE INDEX IF NOT EXISTS jobs_by_duration ON jobs (status, duration_ms);

INSERT OR IGNORE INTO schema_version (version, applied_at)
VALUES (2, CAST(strftime('%s', 'now') AS INTEGER) * 1000);
