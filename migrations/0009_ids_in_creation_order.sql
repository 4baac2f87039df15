-- One index fewer for a new job to write. A job's id is a UUID v7 whose timestamp is
-- its created_ms exactly (`JobId::created_at`), so ids sort as (created_ms, id) does
-- and the newest-first list of all jobs reads the primary key's index backwards.
-- `jobs_by_created_asc` wrote one more page to the WAL per submission.
DROP INDEX jobs_by_created_asc;

-- The same index under a new name: the claim names it (INDEXED BY), so a database at
-- version 8 fails its first claim with "no such index" and is migrated (see
-- `Db::with_schema`), as migration 8 did.
DROP INDEX jobs_by_status_asc;
CREATE INDEX jobs_by_status_created ON jobs (status, created_ms, id);

INSERT OR IGNORE INTO schema_version (version, applied_at)
VALUES (9, CAST(strftime('%s', 'now') AS INTEGER) * 1000);
