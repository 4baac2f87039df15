-- data20 schema, version 3: job control. Jobs can be cancelled (a new final status,
-- so the table is rebuilt: SQLite cannot change a CHECK constraint in place), report
-- progress, and be retried (linked both ways); idempotency keys for POST /api/run;
-- counters kept with the data (jobs purged by retention).

CREATE TABLE jobs_v3 (
    id               TEXT PRIMARY KEY,
    tool             TEXT NOT NULL,
    params           TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('queued', 'running', 'completed', 'failed', 'cancelled')),
    created_ms       INTEGER NOT NULL,
    started_ms       INTEGER,
    finished_ms      INTEGER,
    duration_ms      INTEGER,
    error            TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    lease_ms         INTEGER,
    runner           TEXT,
    dispatch         TEXT NOT NULL DEFAULT 'worker',
    cancel_requested INTEGER NOT NULL DEFAULT 0,  -- 1: stop at the tool's next check
    progress         TEXT,                        -- JSON {"fraction", "message"}
    retry_of         TEXT,                        -- the job this one retries
    retried_by       TEXT                         -- the job that retries this one
);

INSERT INTO jobs_v3 (id, tool, params, status, created_ms, started_ms, finished_ms,
                     duration_ms, error, attempts, lease_ms, runner, dispatch)
SELECT id, tool, params, status, created_ms, started_ms, finished_ms,
       duration_ms, error, attempts, lease_ms, runner, dispatch
FROM jobs;

DROP TABLE jobs;
ALTER TABLE jobs_v3 RENAME TO jobs;

CREATE INDEX jobs_by_created ON jobs (created_ms DESC, id DESC);
CREATE INDEX jobs_by_status ON jobs (status, created_ms DESC, id DESC);
CREATE INDEX jobs_by_tool ON jobs (tool, created_ms DESC, id DESC);
CREATE INDEX jobs_by_duration ON jobs (status, duration_ms);
-- Retention finds finished jobs by age.
CREATE INDEX jobs_by_finished ON jobs (finished_ms) WHERE finished_ms IS NOT NULL;

-- Idempotency-Key on POST /api/run, scoped per client (token or IP).
CREATE TABLE idempotency_keys (
    scope      TEXT NOT NULL,
    key        TEXT NOT NULL,
    body_hash  TEXT NOT NULL,
    job_id     TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_ms);

CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);

INSERT OR IGNORE INTO schema_version (version, applied_at)
VALUES (3, CAST(strftime('%s', 'now') AS INTEGER) * 1000);
