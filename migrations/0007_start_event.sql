-- data20 schema, version 7: a batch job's start and its job_started event in one
-- statement. The worker's start UPDATE sets started_event to the event it renders for
-- the job (only the job it starts, and only when no cancel is pending); this trigger
-- writes it to job_events and clears the column, inside that statement. A start used
-- to be two writes (the UPDATE, then the event's INSERT), each taking SQLite's write
-- lock; every write the workers make is one more chance for the API's INSERT of a new
-- job to find the lock held and sleep in SQLite's busy handler (1 ms at least).

ALTER TABLE jobs ADD COLUMN started_event TEXT;

CREATE TRIGGER jobs_started_event AFTER UPDATE OF started_event ON jobs
WHEN NEW.started_event IS NOT NULL
BEGIN
    INSERT INTO job_events (job_id, event, at_ms, payload)
    VALUES (NEW.id, 'job_started', NEW.started_ms, NEW.started_event);
    UPDATE jobs SET started_event = NULL WHERE id = NEW.id;
END;

INSERT OR IGNORE INTO schema_version (version, applied_at)
VALUES (7, CAST(strftime('%s', 'now') AS INTEGER) * 1000);
