//! The job store. Every state change is a conditional UPDATE … RETURNING, so two
//! runners (two worker processes, or a worker and an inline runner) can never both
//! win a claim, and a runner that lost its lease can no longer finish the job.

use crate::{Db, DbError};
use data20_domain::job::{output_url, JobLinks};
use data20_domain::time::rfc3339_ms;
use data20_domain::{Cursor, JobId, JobStatus, JobView, ListFilter, OutputFile};
use serde::Deserialize;
use spin_sdk::sqlite::{QueryResult, Row, Value};

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

/// An output file to store.
pub struct NewOutput<'a> {
    pub name: &'a str,
    pub content_type: &'a str,
    pub content: &'a [u8],
}

const RECORD_COLUMNS: &str = "id, tool, status, created_ms, started_ms, finished_ms, duration_ms, \
     error, attempts, lease_ms, dispatch, \
     (SELECT json_group_array(json_object('name', o.name, 'content_type', o.content_type, 'size', o.size)) \
        FROM (SELECT name, content_type, size FROM job_outputs WHERE job_id = jobs.id ORDER BY name) o) AS outputs";

pub use crate::text;

fn id_value(id: &JobId) -> Value {
    Value::Text(id.to_string())
}

fn opt_i64(row: &Row<'_>, col: &str) -> Option<i64> {
    row.get::<i64>(col)
}

/// The `jobs` columns [`record`] reads, for `RETURNING` (no outputs: an update
/// returning these knows them already).
const ROW_COLUMNS: &str = "id, tool, status, created_ms, started_ms, finished_ms, \
     duration_ms, error, attempts, lease_ms, dispatch";

fn record(row: &Row<'_>) -> Result<JobRecord, DbError> {
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
    })
}

fn records(result: &QueryResult) -> Result<Vec<JobRecord>, DbError> {
    result.rows().map(|r| record(&r)).collect()
}

impl Db {
    pub fn insert_job(
        &self,
        id: &JobId,
        tool: &str,
        params_json: &str,
        created_ms: i64,
        dispatch: &str,
    ) -> Result<JobRecord, DbError> {
        self.with_schema(|db| {
            db.execute(
                "INSERT INTO jobs (id, tool, params, status, created_ms, dispatch) \
                 VALUES (?, ?, ?, 'queued', ?, ?)",
                &[
                    id_value(id),
                    text(tool),
                    text(params_json),
                    Value::Integer(created_ms),
                    text(dispatch),
                ],
            )
            .map(|_| ())
        })?;
        // The new row is fully known: no need to read it back.
        Ok(JobRecord::queued(*id, tool, created_ms, dispatch))
    }

    /// Records how a job was handed off (`worker` or `inline`).
    pub fn set_dispatch(&self, id: &JobId, dispatch: &str) -> Result<(), DbError> {
        self.with_schema(|db| {
            db.execute(
                "UPDATE jobs SET dispatch = ? WHERE id = ?",
                &[text(dispatch), id_value(id)],
            )
            .map(|_| ())
        })
    }

    pub fn job(&self, id: &JobId) -> Result<Option<JobRecord>, DbError> {
        self.with_schema(|db| {
            let r = db.execute(
                &format!("SELECT {RECORD_COLUMNS} FROM jobs WHERE id = ?"),
                &[id_value(id)],
            )?;
            Ok(records(&r)?.into_iter().next())
        })
    }

    /// One page, newest first, plus whether there is another.
    pub fn list_jobs(&self, f: &ListFilter) -> Result<(Vec<JobRecord>, bool), DbError> {
        let mut sql = format!("SELECT {RECORD_COLUMNS} FROM jobs WHERE 1 = 1");
        let mut params = Vec::new();
        if let Some(status) = f.status {
            sql.push_str(" AND status = ?");
            params.push(text(status.as_str()));
        }
        if let Some(tool) = &f.tool {
            sql.push_str(" AND tool = ?");
            params.push(text(tool.as_str()));
        }
        if let Some(Cursor { created_ms, id }) = &f.cursor {
            sql.push_str(" AND (created_ms < ? OR (created_ms = ? AND id < ?))");
            params.extend([
                Value::Integer(*created_ms),
                Value::Integer(*created_ms),
                id_value(id),
            ]);
        }
        sql.push_str(" ORDER BY created_ms DESC, id DESC LIMIT ?");
        params.push(Value::Integer(i64::from(f.limit) + 1));
        self.with_schema(|db| {
            let mut rows = records(&db.execute(&sql, &params)?)?;
            let more = rows.len() > f.limit as usize;
            rows.truncate(f.limit as usize);
            Ok((rows, more))
        })
    }

    /// Claims a job for `runner` until `lease_ms`: a queued job, or a running one whose
    /// runner let its lease expire, while attempts remain. `None`: someone else has it.
    pub fn claim_job(
        &self,
        id: &JobId,
        runner: &str,
        now_ms: i64,
        lease_ms: i64,
        max_attempts: i64,
    ) -> Result<Option<Claimed>, DbError> {
        self.with_schema(|db| {
            let r = db.execute(
                &format!(
                    "UPDATE jobs SET status = 'running', started_ms = ?, lease_ms = ?, runner = ?, \
                       attempts = attempts + 1 \
                     WHERE id = ? AND attempts < ? \
                       AND (status = 'queued' OR (status = 'running' AND lease_ms < ?)) \
                     RETURNING params, {ROW_COLUMNS}"
                ),
                &[
                    Value::Integer(now_ms),
                    Value::Integer(lease_ms),
                    text(runner),
                    id_value(id),
                    Value::Integer(max_attempts),
                    Value::Integer(now_ms),
                ],
            )?;
            let claimed = r
                .rows()
                .next()
                .map(|row| {
                    Ok(Claimed {
                        record: record(&row)?,
                        params: row.get::<&str>("params").unwrap_or("{}").to_string(),
                    })
                })
                .transpose();
            claimed
        })
    }

    /// Stores the outputs and marks the job completed, if `runner` still holds it.
    /// Returns false (and stores nothing) when the claim was lost.
    pub fn complete_job(
        &self,
        id: &JobId,
        runner: &str,
        now_ms: i64,
        duration_ms: i64,
        outputs: &[NewOutput<'_>],
    ) -> Result<Option<JobRecord>, DbError> {
        self.with_schema(|db| {
            db.transaction(|db| {
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
                )?;
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
                    )?;
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
                Ok(Some(finished))
            })
        })
    }

    /// Marks the job failed. With `runner`, only if that runner still holds it; without,
    /// for any job not yet final (recovery of abandoned jobs).
    pub fn fail_job(
        &self,
        id: &JobId,
        runner: Option<&str>,
        now_ms: i64,
        error: &str,
    ) -> Result<Option<JobRecord>, DbError> {
        self.with_schema(|db| {
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
            )?;
            // A failed job has no outputs (they are stored only on completion).
            let failed = r.rows().next().map(|row| record(&row)).transpose();
            failed
        })
    }

    /// Jobs that nobody is running any more: queued since before `queued_before_ms`,
    /// or running with an expired lease. Oldest first.
    pub fn stale_jobs(
        &self,
        now_ms: i64,
        queued_before_ms: i64,
        limit: u32,
    ) -> Result<Vec<(JobId, String)>, DbError> {
        self.with_schema(|db| {
            let r = db.execute(
                "SELECT id, tool FROM jobs WHERE status = 'queued' AND created_ms < ? \
                 UNION ALL \
                 SELECT id, tool FROM jobs WHERE status = 'running' AND lease_ms < ? \
                 LIMIT ?",
                &[
                    Value::Integer(queued_before_ms),
                    Value::Integer(now_ms),
                    Value::Integer(i64::from(limit)),
                ],
            )?;
            Ok(r.rows()
                .filter_map(|row| {
                    let id = JobId::parse(row.get::<&str>("id")?).ok()?;
                    Some((id, row.get::<&str>("tool")?.to_string()))
                })
                .collect())
        })
    }

    /// An output's content type and bytes.
    pub fn job_output(&self, id: &JobId, name: &str) -> Result<Option<(String, Vec<u8>)>, DbError> {
        self.with_schema(|db| {
            let r = db.execute(
                "SELECT content_type, content FROM job_outputs WHERE job_id = ? AND name = ?",
                &[id_value(id), text(name)],
            )?;
            let output = r.rows().next().map(|row| {
                let ct = row
                    .get::<&str>("content_type")
                    .unwrap_or("application/octet-stream");
                let bytes = match r.rows[0].values.get(1) {
                    Some(Value::Blob(b)) => b.clone(),
                    Some(Value::Text(t)) => t.clone().into_bytes(),
                    _ => Vec::new(),
                };
                (ct.to_string(), bytes)
            });
            Ok(output)
        })
    }

    pub fn record_event(
        &self,
        id: &JobId,
        event: &str,
        at_ms: i64,
        payload: &str,
    ) -> Result<(), DbError> {
        self.with_schema(|db| {
            db.execute(
                "INSERT INTO job_events (job_id, event, at_ms, payload) VALUES (?, ?, ?, ?)",
                &[
                    id_value(id),
                    text(event),
                    Value::Integer(at_ms),
                    text(payload),
                ],
            )
            .map(|_| ())
        })
    }

    /// Events of a job after sequence number `after`, as `(seq, payload)`.
    pub fn events_after(&self, id: &JobId, after: i64) -> Result<Vec<(i64, String)>, DbError> {
        self.with_schema(|db| {
            let r = db.execute(
                "SELECT seq, payload FROM job_events WHERE job_id = ? AND seq > ? ORDER BY seq",
                &[id_value(id), Value::Integer(after)],
            )?;
            Ok(r.rows()
                .filter_map(|row| {
                    Some((
                        row.get::<i64>("seq")?,
                        row.get::<&str>("payload")?.to_string(),
                    ))
                })
                .collect())
        })
    }

    /// Runs `f` in a `BEGIN IMMEDIATE` transaction; rolls back on error or `Ok(false)`-style
    /// outcomes are the caller's business (commit happens whenever `f` returns Ok).
    pub fn transaction<T>(&self, f: impl FnOnce(&Db) -> Result<T, DbError>) -> Result<T, DbError> {
        self.execute("BEGIN IMMEDIATE", &[])?;
        match f(self) {
            Ok(v) => {
                self.execute("COMMIT", &[])?;
                Ok(v)
            }
            Err(e) => {
                let _ = self.execute("ROLLBACK", &[]);
                Err(e)
            }
        }
    }
}
