//! The job store. Every state change is a conditional UPDATE … RETURNING, so two
//! runners (two worker processes, or a worker and an inline runner) can never both
//! win a claim, and a runner that lost its lease can no longer finish the job.

use crate::{Db, DbError};
use crate::{QueryResult, Row, Value};
use data20_domain::job::Progress;
use data20_domain::job::{output_url, JobLinks};
use data20_domain::time::rfc3339_ms;
use data20_domain::{Cursor, JobId, JobStatus, JobView, ListFilter, OutputFile};
use serde::Deserialize;

/// A job as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    pub id: JobId,
    pub tool: String,
    pub status: JobStatus,
    pub created_ms: i64,
    pub started_ms: Option<i64>,
    pub finished_ms: Option<i64>,
    pub duration_ms: Option<i64>,
    pub error: Option<String>,
    pub attempts: i64,
    pub lease_ms: Option<i64>,
    pub dispatch: String,
    pub outputs: Vec<StoredOutput>,
    pub cancel_requested: bool,
    pub progress: Option<Progress>,
    pub retry_of: Option<JobId>,
    pub retried_by: Option<JobId>,
    /// The key that created it (closed mode; `None` in open mode).
    pub owner: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct StoredOutput {
    pub name: String,
    pub content_type: String,
    pub size: u64,
}

impl JobRecord {
    /// A job as it is when created: queued, never run, no outputs.
    pub fn queued(id: JobId, tool: &str, created_ms: i64, dispatch: &str) -> JobRecord {
        JobRecord {
            id,
            tool: tool.to_string(),
            status: JobStatus::Queued,
            created_ms,
            started_ms: None,
            finished_ms: None,
            duration_ms: None,
            error: None,
            attempts: 0,
            lease_ms: None,
            dispatch: dispatch.to_string(),
            outputs: Vec::new(),
            cancel_requested: false,
            progress: None,
            retry_of: None,
            retried_by: None,
            owner: None,
        }
    }

    pub fn view(&self) -> JobView {
        JobView {
            job_id: self.id,
            tool: self.tool.clone(),
            status: self.status,
            created_at: rfc3339_ms(self.created_ms),
            started_at: self.started_ms.map(rfc3339_ms),
            finished_at: self.finished_ms.map(rfc3339_ms),
            duration_ms: self.duration_ms,
            error: self.error.clone(),
            attempts: self.attempts,
            dispatch: self.dispatch.clone(),
            output_files: self
                .outputs
                .iter()
                .map(|o| OutputFile {
                    name: o.name.clone(),
                    content_type: o.content_type.clone(),
                    size: o.size,
                    url: output_url(&self.id, &o.name),
                })
                .collect(),
            // Progress belongs to a running job; a final one shows where it ended.
            progress: self
                .progress
                .clone()
                .filter(|_| self.status == JobStatus::Running),
            cancel_requested: self.cancel_requested && !self.status.is_final(),
            retry_of: self.retry_of,
            retried_by: self.retried_by,
            owner: self.owner.clone(),
            links: JobLinks::for_job(&self.id),
        }
    }
}

/// What a runner needs once it has won a claim.
#[derive(Debug, Clone, PartialEq)]
pub struct Claimed {
    /// The job as the claim left it: `running`, no outputs yet (outputs are only ever
    /// written together with `completed`).
    pub record: JobRecord,
    pub params: String,
}

/// A job to insert, with its creation event.
pub struct NewJob<'a> {
    pub id: &'a JobId,
    pub tool: &'a str,
    pub params_json: &'a str,
    pub created_ms: i64,
    pub dispatch: &'a str,
    pub event: &'a str,
    pub event_payload: &'a str,
    /// The key making it (closed mode).
    pub owner: Option<&'a str>,
}

/// An `Idempotency-Key` as stored: per client scope, with a hash of the request body.
pub struct IdempotencyKey<'a> {
    pub scope: &'a str,
    pub key: &'a str,
    pub body_hash: &'a str,
    /// Keys stored before this moment have expired.
    pub valid_since_ms: i64,
}

/// What an insert did.
#[derive(Debug, Clone, PartialEq)]
pub enum InsertOutcome {
    Inserted(Box<JobRecord>),
    /// The key was used before with the same body: the job it made.
    Replayed(JobId),
    /// The key was used before with another body.
    KeyReused,
}

/// Renders an event's payload from the row its transition answered.
pub trait EventPayload {
    fn render(&self, record: &JobRecord) -> String;
}

/// An event to record with a transition, in the transition's transaction.
pub struct NewEvent<'a> {
    pub kind: &'a str,
    pub at_ms: i64,
    pub payload: &'a dyn EventPayload,
}

/// What a cancel request found.
#[derive(Debug, Clone, PartialEq)]
pub enum CancelOutcome {
    /// The job was queued: it is cancelled and will never run.
    Cancelled(JobRecord),
    /// The job is running: it stops at its tool's next check.
    Requested(JobRecord),
    /// The job had already ended.
    Final(JobRecord),
}

/// What a retry request found.
#[derive(Debug, Clone, PartialEq)]
pub enum RetryOutcome {
    Created(JobRecord),
    /// Queued, running, completed, or already retried.
    NotRetryable(JobRecord),
    NotFound,
}

/// A running job, as a worker process's watcher sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunningJob {
    pub id: JobId,
    pub tool: String,
    pub started_ms: i64,
    /// The end of its own timeout (`None`: claimed before the hard limits existed).
    pub deadline_ms: Option<i64>,
}

/// The times a claim records: now, the end of the runner's lease (after which anyone
/// may take the job over) and the end of the tool's own timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub now_ms: i64,
    pub lease_ms: i64,
    pub deadline_ms: i64,
}

/// An output file to store.
pub struct NewOutput<'a> {
    pub name: &'a str,
    pub content_type: &'a str,
    pub content: &'a [u8],
}

const RECORD_COLUMNS: &str = "id, tool, status, created_ms, started_ms, finished_ms, duration_ms, \
     error, attempts, lease_ms, dispatch, cancel_requested, progress, retry_of, retried_by, owner, \
     (SELECT json_group_array(json_object('name', o.name, 'content_type', o.content_type, 'size', o.size)) \
        FROM (SELECT name, content_type, size FROM job_outputs WHERE job_id = jobs.id ORDER BY name) o) AS outputs";

/// The names of [`RECORD_COLUMNS`], in order, for [`Db::execute_packed`].
const RECORD_NAMES: &[&str] = &[
    "id",
    "tool",
    "status",
    "created_ms",
    "started_ms",
    "finished_ms",
    "duration_ms",
    "error",
    "attempts",
    "lease_ms",
    "dispatch",
    "cancel_requested",
    "progress",
    "retry_of",
    "retried_by",
    "owner",
    "outputs",
];

pub use crate::text;

pub(crate) fn id_value(id: &JobId) -> Value {
    Value::Text(id.to_string())
}

fn opt_i64(row: &Row<'_>, col: &str) -> Option<i64> {
    row.get::<i64>(col)
}

/// The `jobs` columns [`record`] reads, for `RETURNING` (no outputs: an update
/// returning these knows them already).
pub(crate) const ROW_COLUMNS: &str = "id, tool, status, created_ms, started_ms, finished_ms, \
     duration_ms, error, attempts, lease_ms, dispatch, cancel_requested, progress, retry_of, \
     retried_by, owner";

pub(crate) fn record(row: &Row<'_>) -> Result<JobRecord, DbError> {
    let corrupt = |what: &str| DbError::Corrupt(format!("jobs row has a bad {what}"));
    let id = JobId::parse(row.get::<&str>("id").ok_or_else(|| corrupt("id"))?)
        .map_err(|_| corrupt("id"))?;
    let status = JobStatus::parse(row.get::<&str>("status").ok_or_else(|| corrupt("status"))?)
        .map_err(|_| corrupt("status"))?;
    let outputs: Vec<StoredOutput> = match row.get::<&str>("outputs") {
        Some(json) => serde_json::from_str(json).map_err(|_| corrupt("outputs"))?,
        None => Vec::new(),
    };
    Ok(JobRecord {
        id,
        tool: row.get::<&str>("tool").unwrap_or_default().to_string(),
        status,
        created_ms: opt_i64(row, "created_ms").ok_or_else(|| corrupt("created_ms"))?,
        started_ms: opt_i64(row, "started_ms"),
        finished_ms: opt_i64(row, "finished_ms"),
        duration_ms: opt_i64(row, "duration_ms"),
        error: row.get::<&str>("error").map(str::to_string),
        attempts: opt_i64(row, "attempts").unwrap_or(0),
        lease_ms: opt_i64(row, "lease_ms"),
        dispatch: row.get::<&str>("dispatch").unwrap_or("worker").to_string(),
        outputs,
        cancel_requested: opt_i64(row, "cancel_requested").unwrap_or(0) != 0,
        progress: row
            .get::<&str>("progress")
            .and_then(|p| serde_json::from_str(p).ok()),
        retry_of: row
            .get::<&str>("retry_of")
            .and_then(|v| JobId::parse(v).ok()),
        retried_by: row
            .get::<&str>("retried_by")
            .and_then(|v| JobId::parse(v).ok()),
        owner: row.get::<&str>("owner").map(str::to_string),
    })
}

fn records(result: &QueryResult) -> Result<Vec<JobRecord>, DbError> {
    result.rows().map(|r| record(&r)).collect()
}

impl Db {
    /// Inserts a queued job submitted with an idempotency key, and its `job_created`
    /// event: the key is looked up and stored with them in one transaction (`BEGIN
    /// IMMEDIATE` serialises writers), so two concurrent requests with one key make one
    /// job. Jobs without a key go through [`Db::insert_submissions`].
    pub async fn insert_job(
        &self,
        new: &NewJob<'_>,
        key: &IdempotencyKey<'_>,
    ) -> Result<InsertOutcome, DbError> {
        self.with_schema(async |db: &Db| {
            db.transaction(async |db: &Db| {
                let found = db
                    .execute(
                        "SELECT job_id, body_hash FROM idempotency_keys \
                         WHERE scope = ? AND key = ? AND created_ms >= ?",
                        &[
                            text(key.scope),
                            text(key.key),
                            Value::Integer(key.valid_since_ms),
                        ],
                    )
                    .await?;
                let earlier = found.rows().next().map(|row| {
                    (
                        row.get::<&str>("job_id").and_then(|v| JobId::parse(v).ok()),
                        row.get::<&str>("body_hash").unwrap_or_default() == key.body_hash,
                    )
                });
                match earlier {
                    Some((Some(job), true)) => return Ok(InsertOutcome::Replayed(job)),
                    Some((_, false)) => return Ok(InsertOutcome::KeyReused),
                    _ => {}
                }
                db.execute(
                    "INSERT OR REPLACE INTO idempotency_keys (scope, key, body_hash, job_id, created_ms) \
                     VALUES (?, ?, ?, ?, ?)",
                    &[
                        text(key.scope),
                        text(key.key),
                        text(key.body_hash),
                        id_value(new.id),
                        Value::Integer(new.created_ms),
                    ],
                )
                .await?;
                db.insert_submission(new).await
            })
            .await
        })
        .await
    }

    /// Inserts queued jobs without idempotency keys, each with its
    /// `job_created` event, in one statement: one autocommit, so one host call and one
    /// commit (one fsync at `synchronous = FULL`) for the whole batch, and all or none
    /// of them. The group commit of `POST /api/run` sends the submissions of the
    /// requests an instance serves at once through here.
    pub async fn insert_submissions(&self, jobs: &[NewJob<'_>]) -> Result<(), DbError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let (sql, params) = submissions_statement(jobs);
        self.with_schema(async |db: &Db| db.execute(&sql, &params).await.map(|_| ()))
            .await
    }

    /// Inserts a queued job and its `job_created` event in one statement: an INSERT
    /// into the `job_submissions` view, whose trigger writes both rows (migration 5).
    /// On its own it is one autocommit, so a job without an idempotency key is one
    /// host call and one commit (one fsync at `synchronous = FULL`).
    async fn insert_submission(&self, new: &NewJob<'_>) -> Result<InsertOutcome, DbError> {
        let (sql, params) = submissions_statement(std::slice::from_ref(new));
        self.execute(&sql, &params).await?;
        // The new row is fully known: no need to read it back.
        let mut record = JobRecord::queued(*new.id, new.tool, new.created_ms, new.dispatch);
        record.owner = new.owner.map(str::to_string);
        Ok(InsertOutcome::Inserted(Box::new(record)))
    }

    /// Records how a job was handed off (`worker` or `inline`).
    /// Sets the dispatch of `ids` in one statement.
    pub async fn set_dispatch(&self, ids: &[JobId], dispatch: &str) -> Result<(), DbError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut params = vec![text(dispatch)];
        params.extend(ids.iter().map(id_value));
        let sql = format!(
            "UPDATE jobs SET dispatch = ? WHERE id IN ({})",
            vec!["?"; ids.len()].join(", ")
        );
        self.with_schema(async |db: &Db| db.execute(&sql, &params).await.map(|_| ()))
            .await
    }

    pub async fn job(&self, id: &JobId) -> Result<Option<JobRecord>, DbError> {
        self.with_schema(async |db: &Db| {
            let r = db
                .execute(
                    &format!("SELECT {RECORD_COLUMNS} FROM jobs WHERE id = ?"),
                    &[id_value(id)],
                )
                .await?;
            Ok(records(&r)?.into_iter().next())
        })
        .await
    }

    /// One page, newest first, plus whether there is another; only `owner`'s jobs
    /// when given.
    pub async fn list_jobs(
        &self,
        f: &ListFilter,
        owner: Option<&str>,
    ) -> Result<(Vec<JobRecord>, bool), DbError> {
        let (sql, params) = list_sql(f, owner);
        self.with_schema(async |db: &Db| {
            // A page is many rows: packed into one (see `Db::execute_packed`).
            let mut rows = records(&db.execute_packed(RECORD_NAMES, &sql, &params).await?)?;
            let more = rows.len() > f.limit as usize;
            rows.truncate(f.limit as usize);
            Ok((rows, more))
        })
        .await
    }

    /// Claims a job for `runner` until `lease.lease_ms`: a queued job, or a running one
    /// whose runner let its lease expire, while attempts remain. `None`: someone else
    /// has it. The claim records when the job's own timeout ends (`deadline_ms`): what
    /// a supervisor outside the WebAssembly enforces.
    pub async fn claim_job(
        &self,
        id: &JobId,
        runner: &str,
        lease: &Lease,
        max_attempts: i64,
        event: &NewEvent<'_>,
    ) -> Result<Option<Claimed>, DbError> {
        self.with_schema(async |db: &Db| {
            db.transaction(async |db: &Db| {
                let r = db
                    .execute(
                        &format!(
                    "UPDATE jobs SET status = 'running', started_ms = ?, lease_ms = ?, runner = ?, \
                       deadline_ms = ?, attempts = attempts + 1 \
                     WHERE id = ? AND attempts < ? AND cancel_requested = 0 \
                       AND (status = 'queued' OR (status = 'running' AND lease_ms < ?)) \
                     RETURNING params, {ROW_COLUMNS}"
                ),
                        &[
                            Value::Integer(lease.now_ms),
                            Value::Integer(lease.lease_ms),
                            text(runner),
                            Value::Integer(lease.deadline_ms),
                            id_value(id),
                            Value::Integer(max_attempts),
                            Value::Integer(lease.now_ms),
                        ],
                    )
                    .await?;
                let claimed = r
                    .rows()
                    .next()
                    .map(|row| {
                        Ok::<_, DbError>(Claimed {
                            record: record(&row)?,
                            params: row.get::<&str>("params").unwrap_or("{}").to_string(),
                        })
                    })
                    .transpose()?;
                if let Some(c) = &claimed {
                    db.insert_event(
                        id,
                        event.kind,
                        event.at_ms,
                        &event.payload.render(&c.record),
                    )
                    .await?;
                }
                Ok(claimed)
            })
            .await
        })
        .await
    }

    /// Stores the outputs and marks the job completed, if `runner` still holds it.
    /// Returns false (and stores nothing) when the claim was lost.
    pub async fn complete_job(
        &self,
        id: &JobId,
        runner: &str,
        now_ms: i64,
        duration_ms: i64,
        outputs: &[NewOutput<'_>],
        event: &NewEvent<'_>,
    ) -> Result<Option<JobRecord>, DbError> {
        self.with_schema(async |db: &Db| {
            db.transaction(async |db: &Db| {
                let won = db.execute(
                    &format!(
                        "UPDATE jobs SET status = 'completed', finished_ms = ?, duration_ms = ?, \
                           lease_ms = NULL, error = NULL \
                         WHERE id = ? AND status = 'running' AND runner = ? RETURNING {ROW_COLUMNS}"
                    ),
                    &[
                        Value::Integer(now_ms),
                        Value::Integer(duration_ms),
                        id_value(id),
                        text(runner),
                    ],
                ).await?;
                let Some(row) = won.rows().next() else {
                    return Ok(None);
                };
                let mut finished = record(&row)?;
                for out in outputs {
                    db.execute(
                        "INSERT OR REPLACE INTO job_outputs (job_id, name, content_type, size, content) \
                         VALUES (?, ?, ?, ?, ?)",
                        &[
                            id_value(id),
                            text(out.name),
                            text(out.content_type),
                            Value::Integer(out.content.len() as i64),
                            Value::Blob(out.content.to_vec()),
                        ],
                    ).await?;
                }
                // What was just written: no read-back needed.
                finished.outputs = outputs
                    .iter()
                    .map(|o| StoredOutput {
                        name: o.name.to_string(),
                        content_type: o.content_type.to_string(),
                        size: o.content.len() as u64,
                    })
                    .collect();
                // In the order a read gives them (by name).
                finished.outputs.sort_by(|a, b| a.name.cmp(&b.name));
                db.insert_event(id, event.kind, event.at_ms, &event.payload.render(&finished)).await?;
                Ok(Some(finished))
            }).await
        }).await
    }

    /// Marks the job failed. With `runner`, only if that runner still holds it; without,
    /// for any job not yet final (recovery of abandoned jobs).
    pub async fn fail_job(
        &self,
        id: &JobId,
        runner: Option<&str>,
        now_ms: i64,
        error: &str,
        event: &NewEvent<'_>,
    ) -> Result<Option<JobRecord>, DbError> {
        self.with_schema(async |db: &Db| {
            db.transaction(async |db: &Db| {
            let (cond, mut params) = match runner {
                Some(r) => ("status = 'running' AND runner = ?", vec![text(r)]),
                None => ("status IN ('queued', 'running')", vec![]),
            };
            let mut all = vec![Value::Integer(now_ms), Value::Integer(now_ms), text(error), id_value(id)];
            all.append(&mut params);
            let r = db.execute(
                &format!(
                    "UPDATE jobs SET status = 'failed', finished_ms = ?, \
                       duration_ms = CASE WHEN started_ms IS NULL THEN NULL ELSE ? - started_ms END, \
                       lease_ms = NULL, error = ? \
                     WHERE id = ? AND {cond} RETURNING {ROW_COLUMNS}"
                ),
                &all,
            ).await?;
            // A failed job has no outputs (they are stored only on completion).
            let failed = r.rows().next().map(|row| record(&row)).transpose()?;
            if let Some(f) = &failed {
                db.insert_event(id, event.kind, event.at_ms, &event.payload.render(f)).await?;
            }
            Ok(failed)
            }).await
        }).await
    }

    /// Jobs that nobody is running any more: queued since before `queued_before_ms`,
    /// or running with an expired lease. Oldest first.
    pub async fn stale_jobs(
        &self,
        now_ms: i64,
        queued_before_ms: i64,
        limit: u32,
    ) -> Result<Vec<(JobId, String)>, DbError> {
        self.with_schema(async |db: &Db| {
            let r = db
                .execute(
                    "SELECT id, tool FROM jobs WHERE status = 'queued' AND created_ms < ? \
                 UNION ALL \
                 SELECT id, tool FROM jobs WHERE status = 'running' AND lease_ms < ? \
                 LIMIT ?",
                    &[
                        Value::Integer(queued_before_ms),
                        Value::Integer(now_ms),
                        Value::Integer(i64::from(limit)),
                    ],
                )
                .await?;
            Ok(r.rows()
                .filter_map(|row| {
                    let id = JobId::parse(row.get::<&str>("id")?).ok()?;
                    Some((id, row.get::<&str>("tool")?.to_string()))
                })
                .collect())
        })
        .await
    }

    /// An output's content type and bytes.
    pub async fn job_output(
        &self,
        id: &JobId,
        name: &str,
    ) -> Result<Option<(String, Vec<u8>)>, DbError> {
        self.with_schema(async |db: &Db| {
            let r = db
                .execute(
                    "SELECT content_type, content FROM job_outputs WHERE job_id = ? AND name = ?",
                    &[id_value(id), text(name)],
                )
                .await?;
            let output = r.rows().next().map(|row| {
                let ct = row
                    .get::<&str>("content_type")
                    .unwrap_or("application/octet-stream");
                let bytes = row
                    .get::<&[u8]>("content")
                    .map(<[u8]>::to_vec)
                    .unwrap_or_default();
                (ct.to_string(), bytes)
            });
            Ok(output)
        })
        .await
    }

    /// Cancels a queued job at once (`Cancelled`), or asks a running one to stop at its
    /// tool's next check (`Requested`). `None`: no such job; a final job comes back as
    /// `Final`.
    pub async fn cancel_job(
        &self,
        id: &JobId,
        now_ms: i64,
        event: &NewEvent<'_>,
    ) -> Result<Option<CancelOutcome>, DbError> {
        let outcome = self
            .with_schema(async |db: &Db| {
                db.transaction(async |db: &Db| {
                    let queued = db
                        .execute(
                            &format!(
                        "UPDATE jobs SET status = 'cancelled', finished_ms = ?, lease_ms = NULL \
                         WHERE id = ? AND status = 'queued' RETURNING {ROW_COLUMNS}"
                    ),
                            &[Value::Integer(now_ms), id_value(id)],
                        )
                        .await?;
                    if let Some(row) = queued.rows().next() {
                        let cancelled = record(&row)?;
                        db.insert_event(
                            id,
                            event.kind,
                            event.at_ms,
                            &event.payload.render(&cancelled),
                        )
                        .await?;
                        return Ok(Some(CancelOutcome::Cancelled(cancelled)));
                    }
                    let running = db
                        .execute(
                            &format!(
                                "UPDATE jobs SET cancel_requested = 1 \
                         WHERE id = ? AND status = 'running' RETURNING {ROW_COLUMNS}"
                            ),
                            &[id_value(id)],
                        )
                        .await?;
                    if let Some(row) = running.rows().next() {
                        return Ok(Some(CancelOutcome::Requested(record(&row)?)));
                    }
                    Ok(None)
                })
                .await
            })
            .await?;
        match outcome {
            Some(o) => Ok(Some(o)),
            None => Ok(self.job(id).await?.map(CancelOutcome::Final)),
        }
    }

    /// Whether a cancel was asked for this job (the runner's cooperative check).
    pub async fn cancel_requested(&self, id: &JobId) -> Result<bool, DbError> {
        let r = self
            .execute(
                "SELECT cancel_requested FROM jobs WHERE id = ?",
                &[id_value(id)],
            )
            .await?;
        let requested = r
            .rows()
            .next()
            .and_then(|row| row.get::<i64>("cancel_requested"))
            .unwrap_or(0);
        Ok(requested != 0)
    }

    /// Ends a running job as cancelled: held by `runner`, or (without one) a job whose
    /// runner is gone and whose cancel was asked for.
    pub async fn finish_cancelled(
        &self,
        id: &JobId,
        runner: Option<&str>,
        now_ms: i64,
        event: &NewEvent<'_>,
    ) -> Result<Option<JobRecord>, DbError> {
        self.with_schema(async |db: &Db| {
            db.transaction(async |db: &Db| {
                let (cond, extra) = match runner {
                    Some(r) => ("runner = ?", Some(text(r))),
                    None => ("cancel_requested = 1", None),
                };
                let mut params = vec![Value::Integer(now_ms), Value::Integer(now_ms), id_value(id)];
                params.extend(extra);
                let r = db.execute(
                    &format!(
                        "UPDATE jobs SET status = 'cancelled', finished_ms = ?, \
                           duration_ms = CASE WHEN started_ms IS NULL THEN NULL ELSE ? - started_ms END, \
                           lease_ms = NULL \
                         WHERE id = ? AND status = 'running' AND {cond} RETURNING {ROW_COLUMNS}"
                    ),
                    &params,
                ).await?;
                let cancelled = r.rows().next().map(|row| record(&row)).transpose()?;
                if let Some(c) = &cancelled {
                    db.insert_event(id, event.kind, event.at_ms, &event.payload.render(c)).await?;
                }
                Ok(cancelled)
            }).await
        }).await
    }

    /// Stores a running job's progress with its `job_progress` event, if `runner` still
    /// holds the job.
    pub async fn record_progress(
        &self,
        id: &JobId,
        runner: &str,
        progress: &Progress,
        event: &NewEvent<'_>,
    ) -> Result<Option<JobRecord>, DbError> {
        let progress_json = serde_json::to_string(progress).unwrap_or_default();
        self.transaction(async |db: &Db| {
            let r = db.execute(
                &format!(
                    "UPDATE jobs SET progress = ? WHERE id = ? AND status = 'running' AND runner = ? \
                     RETURNING {ROW_COLUMNS}"
                ),
                &[text(&progress_json), id_value(id), text(runner)],
            ).await?;
            let updated = r.rows().next().map(|row| record(&row)).transpose()?;
            if let Some(u) = &updated {
                db.insert_event(id, event.kind, event.at_ms, &event.payload.render(u)).await?;
            }
            Ok(updated)
        }).await
    }

    /// Creates `new_id`, a queued retry of the failed or cancelled job `old`, with the
    /// same tool and params, linked both ways, and its `job_created` event; one commit.
    /// A job is retried once: its retry can be retried in turn.
    pub async fn retry_job(
        &self,
        old: &JobId,
        new_id: &JobId,
        now_ms: i64,
        event: &NewEvent<'_>,
    ) -> Result<RetryOutcome, DbError> {
        let outcome = self
            .with_schema(async |db: &Db| {
                db.transaction(async |db: &Db| {
                    let linked = db
                        .execute(
                            "UPDATE jobs SET retried_by = ? \
                     WHERE id = ? AND status IN ('failed', 'cancelled') AND retried_by IS NULL \
                     RETURNING tool, owner",
                            &[id_value(new_id), id_value(old)],
                        )
                        .await?;
                    let Some((tool, owner)) = linked.rows().next().and_then(|row| {
                        let tool = row.get::<&str>("tool")?.to_string();
                        Some((tool, row.get::<&str>("owner").map(str::to_string)))
                    }) else {
                        return Ok(None);
                    };
                    // The retry belongs to the original's owner.
                    db.execute(
                    "INSERT INTO jobs (id, tool, params, status, created_ms, dispatch, retry_of, owner) \
                     SELECT ?, tool, params, 'queued', ?, 'worker', id, owner FROM jobs WHERE id = ?",
                    &[id_value(new_id), Value::Integer(now_ms), id_value(old)],
                ).await?;
                    let mut created = JobRecord::queued(*new_id, &tool, now_ms, "worker");
                    created.retry_of = Some(*old);
                    created.owner = owner;
                    db.insert_event(
                        new_id,
                        event.kind,
                        event.at_ms,
                        &event.payload.render(&created),
                    )
                    .await?;
                    Ok(Some(created))
                })
                .await
            })
            .await?;
        match outcome {
            Some(created) => Ok(RetryOutcome::Created(created)),
            None => Ok(match self.job(old).await? {
                Some(record) => RetryOutcome::NotRetryable(record),
                None => RetryOutcome::NotFound,
            }),
        }
    }

    /// Deletes up to `limit` jobs that finished before `before_ms`, with their outputs
    /// and events, and idempotency keys older than `keys_before_ms`; adds the count to
    /// the `jobs_purged` counter. One transaction. Answers the jobs that went.
    pub async fn purge_finished(
        &self,
        before_ms: i64,
        keys_before_ms: i64,
        limit: u32,
    ) -> Result<Vec<JobId>, DbError> {
        self.with_schema(async |db: &Db| {
            let r = db
                .execute(
                    "SELECT id FROM jobs INDEXED BY jobs_by_finished \
                 WHERE finished_ms IS NOT NULL AND finished_ms < ? LIMIT ?",
                    &[Value::Integer(before_ms), Value::Integer(i64::from(limit))],
                )
                .await?;
            let purged: Vec<JobId> = r
                .rows()
                .filter_map(|row| JobId::parse(row.get::<&str>("id")?).ok())
                .collect();
            if purged.is_empty() {
                return Ok(purged);
            }
            let ids: Vec<Value> = purged.iter().map(id_value).collect();
            let marks = vec!["?"; ids.len()].join(", ");
            db.transaction(async |db: &Db| {
                for table in ["job_outputs", "job_events"] {
                    db.execute(
                        &format!("DELETE FROM {table} WHERE job_id IN ({marks})"),
                        &ids,
                    )
                    .await?;
                }
                db.execute(&format!("DELETE FROM jobs WHERE id IN ({marks})"), &ids)
                    .await?;
                db.execute(
                    "DELETE FROM idempotency_keys WHERE created_ms < ?",
                    &[Value::Integer(keys_before_ms)],
                )
                .await?;
                db.execute(
                    "INSERT INTO counters (name, value) VALUES ('jobs_purged', ?) \
                     ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
                    &[Value::Integer(ids.len() as i64)],
                )
                .await?;
                Ok(purged.clone())
            })
            .await
        })
        .await
    }

    /// Adds `delta` to a counter kept with the data.
    pub async fn add_counter(&self, name: &str, delta: i64) -> Result<(), DbError> {
        self.with_schema(async |db: &Db| {
            db.execute(
                "INSERT INTO counters (name, value) VALUES (?, ?) \
                 ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
                &[text(name), Value::Integer(delta)],
            )
            .await
            .map(|_| ())
        })
        .await
    }

    /// A counter kept with the data (0 when never set).
    pub async fn counter(&self, name: &str) -> Result<i64, DbError> {
        self.with_schema(async |db: &Db| {
            let r = db
                .execute("SELECT value FROM counters WHERE name = ?", &[text(name)])
                .await?;
            let value = r.rows().next().and_then(|row| row.get::<i64>("value"));
            Ok(value.unwrap_or(0))
        })
        .await
    }

    /// Appends an event to the job's log (what the SSE route replays).
    pub async fn insert_event(
        &self,
        id: &JobId,
        event: &str,
        at_ms: i64,
        payload: &str,
    ) -> Result<(), DbError> {
        self.execute(
            "INSERT INTO job_events (job_id, event, at_ms, payload) VALUES (?, ?, ?, ?)",
            &[
                id_value(id),
                text(event),
                Value::Integer(at_ms),
                text(payload),
            ],
        )
        .await
        .map(|_| ())
    }

    /// The next job a worker should run: the oldest queued one, else a running one
    /// whose runner let its lease expire.
    pub async fn next_runnable(&self, now_ms: i64) -> Result<Option<(JobId, String)>, DbError> {
        self.with_schema(async |db: &Db| {
            let r = db
                .execute(
                    "SELECT id, tool FROM (SELECT id, tool FROM jobs INDEXED BY jobs_by_status_created \
                   WHERE status = 'queued' ORDER BY created_ms, id LIMIT 1) \
                 UNION ALL \
                 SELECT id, tool FROM (SELECT id, tool FROM jobs INDEXED BY jobs_by_status_created \
                   WHERE status = 'running' AND lease_ms < ? LIMIT 1) \
                 LIMIT 1",
                    &[Value::Integer(now_ms)],
                )
                .await?;
            let next = r.rows().next().and_then(|row| {
                let id = JobId::parse(row.get::<&str>("id")?).ok()?;
                Some((id, row.get::<&str>("tool")?.to_string()))
            });
            Ok(next)
        })
        .await
    }

    /// The running jobs whose runner name starts with `runner_prefix` (a worker
    /// process's own runs).
    pub async fn running_jobs_of(&self, runner_prefix: &str) -> Result<Vec<RunningJob>, DbError> {
        self.with_schema(async |db: &Db| {
            let r = db
                .execute(
                    "SELECT id, tool, started_ms, deadline_ms FROM jobs INDEXED BY jobs_by_status_created \
                 WHERE status = 'running' AND substr(runner, 1, length(?)) = ?",
                    &[text(runner_prefix), text(runner_prefix)],
                )
                .await?;
            Ok(r.rows()
                .filter_map(|row| {
                    Some(RunningJob {
                        id: JobId::parse(row.get::<&str>("id")?).ok()?,
                        tool: row.get::<&str>("tool")?.to_string(),
                        started_ms: row.get::<i64>("started_ms").unwrap_or(0),
                        deadline_ms: row.get::<i64>("deadline_ms"),
                    })
                })
                .collect())
        })
        .await
    }

    /// Whether some job has been queued since before `before_ms`.
    pub async fn queued_since(&self, before_ms: i64) -> Result<bool, DbError> {
        self.with_schema(async |db: &Db| {
            let r = db
                .execute(
                    "SELECT EXISTS (SELECT 1 FROM jobs INDEXED BY jobs_by_status_created \
                   WHERE status = 'queued' AND created_ms < ?) AS waiting",
                    &[Value::Integer(before_ms)],
                )
                .await?;
            let waiting = r
                .rows()
                .next()
                .and_then(|row| row.get::<i64>("waiting"))
                .is_some_and(|w| w == 1);
            Ok(waiting)
        })
        .await
    }

    /// Events of a job after sequence number `after`, as `(seq, payload)`.
    pub async fn events_after(
        &self,
        id: &JobId,
        after: i64,
    ) -> Result<Vec<(i64, String)>, DbError> {
        self.with_schema(async |db: &Db| {
            let r = db
                .execute(
                    "SELECT seq, payload FROM job_events WHERE job_id = ? AND seq > ? ORDER BY seq",
                    &[id_value(id), Value::Integer(after)],
                )
                .await?;
            Ok(r.rows()
                .filter_map(|row| {
                    Some((
                        row.get::<i64>("seq")?,
                        row.get::<&str>("payload")?.to_string(),
                    ))
                })
                .collect())
        })
        .await
    }

    /// Runs `f` in a `BEGIN IMMEDIATE` transaction; rolls back on error or `Ok(false)`-style
    /// outcomes are the caller's business (commit happens whenever `f` returns Ok).
    pub async fn transaction<T>(
        &self,
        f: impl AsyncFnOnce(&Db) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        if self.is_shared() {
            return Err(DbError::Sqlite(
                "a transaction needs a connection of its own (Db::open), not the shared one".into(),
            ));
        }
        self.execute("BEGIN IMMEDIATE", &[]).await?;
        match f(self).await {
            Ok(v) => {
                self.execute("COMMIT", &[]).await?;
                Ok(v)
            }
            Err(e) => {
                let _ = self.execute("ROLLBACK", &[]).await;
                Err(e)
            }
        }
    }
}

/// The INSERT into the `job_submissions` view for `rows` jobs (its trigger runs per
/// row), eight parameters a row: id, tool, params, created_ms, dispatch, owner, event,
/// event_payload.
pub fn submissions_sql(rows: usize) -> String {
    format!(
        "INSERT INTO job_submissions (id, tool, params, created_ms, dispatch, owner, event, event_payload) VALUES {}",
        crate::batch::rows(rows, 8)
    )
}

/// [`submissions_sql`] for `jobs`, with its parameters.
fn submissions_statement(jobs: &[NewJob<'_>]) -> (String, Vec<Value>) {
    let mut params = Vec::with_capacity(jobs.len() * 8);
    for new in jobs {
        params.extend([
            id_value(new.id),
            text(new.tool),
            text(new.params_json),
            Value::Integer(new.created_ms),
            text(new.dispatch),
            new.owner.map_or(Value::Null, text),
            text(new.event),
            text(new.event_payload),
        ]);
    }
    (submissions_sql(jobs.len()), params)
}

/// The query of one page of the job list, newest first, and its parameters (one row
/// more than the page, to tell whether there is another).
pub fn list_sql(f: &ListFilter, owner: Option<&str>) -> (String, Vec<Value>) {
    let mut sql = format!("SELECT {RECORD_COLUMNS} FROM jobs WHERE 1 = 1");
    let mut params = Vec::new();
    if let Some(owner) = owner {
        sql.push_str(" AND owner = ?");
        params.push(text(owner));
    }
    if let Some(status) = f.status {
        sql.push_str(" AND status = ?");
        params.push(text(status.as_str()));
    }
    if let Some(tool) = &f.tool {
        sql.push_str(" AND tool = ?");
        params.push(text(tool.as_str()));
    }
    // Unfiltered, the list reads the primary key's index: a job's id sorts as its
    // (created_ms, id) does (`JobId::created_at`, migration 9). A filter reads its own
    // index, in (created_ms, id) order.
    let by_id = owner.is_none() && f.status.is_none() && f.tool.is_none();
    if let Some(Cursor { created_ms, id }) = &f.cursor {
        if by_id {
            sql.push_str(" AND id < ?");
            params.push(id_value(id));
        } else {
            sql.push_str(" AND (created_ms < ? OR (created_ms = ? AND id < ?))");
            params.extend([
                Value::Integer(*created_ms),
                Value::Integer(*created_ms),
                id_value(id),
            ]);
        }
    }
    sql.push_str(if by_id {
        " ORDER BY id DESC LIMIT ?"
    } else {
        " ORDER BY created_ms DESC, id DESC LIMIT ?"
    });
    params.push(Value::Integer(i64::from(f.limit) + 1));
    (sql, params)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The packed list reads its columns by these names: they must be the names the
    /// columns of `RECORD_COLUMNS` carry, in the same order.
    #[test]
    fn record_names_follow_record_columns() {
        let mut names = Vec::new();
        let (mut depth, mut start) = (0, 0);
        for (i, c) in RECORD_COLUMNS.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                ',' if depth == 0 => {
                    names.push(&RECORD_COLUMNS[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        names.push(&RECORD_COLUMNS[start..]);
        let names: Vec<&str> = names
            .iter()
            .map(|column| column.split_whitespace().last().unwrap_or_default())
            .collect();
        assert_eq!(names, RECORD_NAMES);
    }
}
