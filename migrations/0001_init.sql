-- data20 schema, version 1. Idempotent: applied on first use by the components, or by
-- hand with `spin up --sqlite @migrations/0001_init.sql`.

CREATE TABLE IF NOT EXISTS schema_version (
    version    INTEGER PRIMARY KEY,
    applied_at INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS jobs (
    id          TEXT PRIMARY KEY,               -- UUID v7, lower-case, hyphenated
    tool        TEXT NOT NULL,
    params      TEXT NOT NULL,                  -- JSON
    status      TEXT NOT NULL CHECK (status IN ('queued', 'running', 'completed', 'failed')),
    created_ms  INTEGER NOT NULL,               -- unix milliseconds
    started_ms  INTEGER,
    finished_ms INTEGER,
    duration_ms INTEGER,
    error       TEXT,
    attempts    INTEGER NOT NULL DEFAULT 0,     -- how many runners claimed it
    lease_ms    INTEGER,                        -- a running job's claim expires here
    runner      TEXT,                           -- who claimed it: worker or inline
    dispatch    TEXT NOT NULL DEFAULT 'worker'  -- how it was handed off at creation
);

-- Keyset pagination, newest first, with and without filters.
CREATE INDEX IF NOT EXISTS jobs_by_created ON jobs (created_ms DESC, id DESC);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status, created_ms DESC, id DESC);
CREATE INDEX IF NOT EXISTS jobs_by_tool ON jobs (tool, created_ms DESC, id DESC);

CREATE TABLE IF NOT EXISTS job_outputs (
    job_id       TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size         INTEGER NOT NULL,
    content      BLOB NOT NULL,
    PRIMARY KEY (job_id, name)
);

CREATE TABLE IF NOT EXISTS job_events (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id  TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    event   TEXT NOT NULL,
    at_ms   INTEGER NOT NULL,
    payload TEXT NOT NULL                       -- the JSON event as published
);
CREATE INDEX IF NOT EXISTS job_events_by_job ON job_events (job_id, seq);

INSERT OR IGNORE INTO schema_version (version, applied_at)
VALUES (1, CAST(strftime('%s', 'now') AS INTEGER) * 1000);
