-- Fewer pages written per job. A single-job commit wrote about 13 pages to the WAL;
-- after this, about 8 (measured on a copy of the schema with 5 000 jobs).

-- Ascending indexes. A new job's keys are the largest (created_ms is now), so they land
-- at an ascending index's right edge, where SQLite appends to the last page; at a
-- descending index's left edge every insert rebalanced two or three pages. SQLite
-- reads an ascending index backwards for the newest-first list. New names: the
-- claim names `jobs_by_status_asc` (INDEXED BY), so a database at version 7 fails
-- its first claim with "no such index" and is migrated (see `Db::with_schema`).
DROP INDEX jobs_by_created;
CREATE INDEX jobs_by_created_asc ON jobs (created_ms, id);
DROP INDEX jobs_by_status;
CREATE INDEX jobs_by_status_asc ON jobs (status, created_ms, id);
DROP INDEX jobs_by_tool;
CREATE INDEX jobs_by_tool_asc ON jobs (tool, created_ms, id);

-- Partial indexes: only rows their queries can match. Durations are read only where
-- they exist (stats), and owners only where there is one (a key's own jobs), so a new
-- job (no duration yet; no owner in open mode) skips them.
DROP INDEX jobs_by_duration;
CREATE INDEX jobs_by_duration ON jobs (status, duration_ms) WHERE duration_ms IS NOT NULL;
DROP INDEX jobs_by_owner;
CREATE INDEX jobs_by_owner ON jobs (owner, created_ms, id) WHERE owner IS NOT NULL;

-- Events without AUTOINCREMENT, which wrote sqlite_sequence on every insert. seq is
-- then one more than the largest in the table, so it still grows within a job while
-- the job exists: a number is reused only after the newest events were deleted with
-- their job, and readers ask for one job's events after a seq of that job.
-- The triggers that write events name the table: they go while it is rebuilt and come
-- back as migrations 6 and 7 made them.
DROP TRIGGER job_submissions_insert;
DROP TRIGGER jobs_started_event;
CREATE TABLE job_events_v8 (
    seq     INTEGER PRIMARY KEY,
    job_id  TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    event   TEXT NOT NULL,
    at_ms   INTEGER NOT NULL,
    payload TEXT NOT NULL
);
INSERT INTO job_events_v8 (seq, job_id, event, at_ms, payload)
SELECT seq, job_id, event, at_ms, payload FROM job_events;
DROP TABLE job_events;
ALTER TABLE job_events_v8 RENAME TO job_events;
CREATE INDEX job_events_by_job ON job_events (job_id, seq);
CREATE TRIGGER job_submissions_insert INSTEAD OF INSERT ON job_submissions
BEGIN
    INSERT INTO jobs (id, tool, params, status, created_ms, dispatch, owner)
    VALUES (NEW.id, NEW.tool, NEW.params, 'queued', NEW.created_ms, NEW.dispatch, NEW.owner);
    INSERT INTO job_events (job_id, event, at_ms, payload)
    VALUES (NEW.id, NEW.event, NEW.created_ms, NEW.event_payload);
END;
CREATE TRIGGER jobs_started_event AFTER UPDATE OF started_event ON jobs
WHEN NEW.started_event IS NOT NULL
BEGIN
    INSERT INTO job_events (job_id, event, at_ms, payload)
    VALUES (NEW.id, 'job_started', NEW.started_ms, NEW.started_event);
    UPDATE jobs SET started_event = NULL WHERE id = NEW.id;
END;

INSERT OR IGNORE INTO schema_version (version, applied_at)
VALUES (8, CAST(strftime('%s', 'now') AS INTEGER) * 1000);
