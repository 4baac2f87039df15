-- data20 schema, version 4: hard limits. A claim records when the job's own timeout
-- ends (deadline_ms), so that a supervisor outside the WebAssembly can tell which
-- worker process runs a job past it, kill that process and fail the job.

ALTER TABLE jobs ADD COLUMN deadline_ms INTEGER;

INSERT OR IGNORE INTO schema_version (version, applied_at)
VALUES (4, CAST(strftime('%s', 'now') AS INTEGER) * 1000);
