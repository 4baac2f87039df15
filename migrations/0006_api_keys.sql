-- data20 schema, version 6: API keys and job ownership (closed mode, `api_token` set).
-- A key is stored only as the SHA-256 digest of the whole key; its id is public (it
-- is part of the key) and finds the row. A revoked key keeps its row, for the list.

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    digest TEXT NOT NULL,
    scopes TEXT NOT NULL,
    rate_limit_max INTEGER,
    created_ms INTEGER NOT NULL,
    revoked_ms INTEGER
);

-- The key that created the job (NULL: open mode, no owner).
ALTER TABLE jobs ADD COLUMN owner TEXT;

CREATE INDEX jobs_by_owner ON jobs (owner, created_ms, id);

-- The one-statement submission (version 5) carries the owner now.
DROP TRIGGER job_submissions_insert;

DROP VIEW job_submissions;

CREATE VIEW job_submissions (id, tool, params, created_ms, dispatch, owner, event, event_payload) AS
SELECT id, tool, params, created_ms, dispatch, owner, NULL, NULL FROM jobs WHERE 0;

CREATE TRIGGER job_submissions_insert INSTEAD OF INSERT ON job_submissions
BEGIN
    INSERT INTO jobs (id, tool, params, status, created_ms, dispatch, owner)
    VALUES (NEW.id, NEW.tool, NEW.params, 'queued', NEW.created_ms, NEW.dispatch, NEW.owner);
    INSERT INTO job_events (job_id, event, at_ms, payload)
    VALUES (NEW.id, NEW.event, NEW.created_ms, NEW.event_payload);
END;

INSERT OR IGNORE INTO schema_version (version, applied_at)
VALUES (6, CAST(strftime('%s', 'now') AS INTEGER) * 1000);
