-- data20 schema, version 5: a job is accepted by one statement. Spin's SQLite runs one
-- statement per call, each a hop to the host, so a submission used to cost four (BEGIN
-- IMMEDIATE, the job, its job_created event, COMMIT). An INSERT into this view is one
-- statement; its trigger writes both rows, and a single autocommit statement is atomic
-- with its trigger: one commit, one fsync, as before.

CREATE VIEW job_submissions (id, tool, params, created_ms, dispatch, event, event_payload) AS
SELECT id, tool, params, created_ms, dispatch, NULL, NULL FROM jobs WHERE 0;

CREATE TRIGGER job_submissions_insert INSTEAD OF INSERT ON job_submissions
BEGIN
    INSERT INTO jobs (id, tool, params, status, created_ms, dispatch)
    VALUES (NEW.id, NEW.tool, NEW.params, 'queued', NEW.created_ms, NEW.dispatch);
    INSERT INTO job_events (job_id, event, at_ms, payload)
    VALUES (NEW.id, NEW.event, NEW.created_ms, NEW.event_payload);
END;

INSERT OR IGNORE INTO schema_version (version, applied_at)
VALUES (5, CAST(strftime('%s', 'now') AS INTEGER) * 1000);
