//! The worker's transitions, a batch at a time.
//!
//! Spin's SQLite makes every statement a hop to the host, and a job run one at a time
//! took eleven (the next job, a claim transaction, a completion transaction). A worker
//! now claims up to a batch of queued jobs in one statement, marks each one as it
//! starts with one statement (consecutive quick jobs, see `ToolSpec::runs_quickly`,
//! with one statement for them all), and records the batch's endings in one
//! transaction.
//!
//! Which claimed job is *running now* is what `deadline_ms` says: it is set when a job
//! starts and cleared (by the statement that starts the next job) when its run is
//! over, even if its ending is not recorded yet. So the supervisor kills only for the
//! job really running, and a worker whose instance died fails only that job
//! ([`Db::requeue_waiting`] puts the rest of its batch back in the queue). Quick jobs
//! started together all have a deadline while they run; when such a group's instance
//! dies, the whole group goes back to the queue, its attempts counted.

use crate::jobs::{id_value, record, Claimed, JobRecord, NewOutput, StoredOutput, ROW_COLUMNS};
use crate::{text, Db, DbError, Value};
use data20_domain::job::JobEventKind;
use data20_domain::registry::QUICK_PARAMS_BYTES;
use data20_domain::{JobId, JobStatus};

/// `UPDATE` that claims queued jobs for one runner, oldest first: up to a batch of
/// quick ones (a tool in the `quick` list, parameters of at most `max bytes`: see
/// `ToolSpec::runs_quickly`) whose parameters add up to at most `batch bytes`, or one
/// job alone (one that is not quick, or the first). A claim stops before the first job
/// that is not quick, so no job waits behind one that may run for its whole timeout,
/// and the bytes bound what the jobs of one claim wait for each other. Parameters: the
/// waiting lease, the runner, the quick tools (a JSON array of names), the max bytes,
/// the attempts limit, the batch size, the batch bytes. A claimed job is not started:
/// no `deadline_ms`, no `started_ms`, no attempt counted and no `job_started` until
/// [`start_sql`], so a job whose runner dies before its turn was never run.
pub fn claim_sql() -> String {
    format!(
        "UPDATE jobs SET status = 'running', started_ms = NULL, lease_ms = ?, runner = ?, \
           deadline_ms = NULL \
         WHERE id IN (SELECT id FROM ( \
             SELECT id, row_number() OVER head AS n, \
               sum(NOT (tool IN (SELECT value FROM json_each(?)) AND bytes <= ?)) \
                 OVER head AS slow, \
               sum(bytes) OVER head AS total \
             FROM (SELECT id, tool, length(CAST(params AS BLOB)) AS bytes, created_ms \
                   FROM jobs INDEXED BY jobs_by_status_created \
                   WHERE status = 'queued' AND cancel_requested = 0 AND attempts < ? \
                   ORDER BY created_ms, id LIMIT ?) \
             WINDOW head AS (ORDER BY created_ms, id ROWS UNBOUNDED PRECEDING)) \
           WHERE n = 1 OR (slow = 0 AND total <= ?)) \
         RETURNING params, {ROW_COLUMNS}"
    )
}

/// `UPDATE … FROM (VALUES …)` that starts `starting` claimed jobs (one attempt more
/// each, unless someone asked to cancel it) and ends the runs of `ended` jobs run
/// before them (their endings are recorded later, with the batch's), recording each
/// started job's `job_started` event (migration 7's trigger). Parameters: now, then a
/// row per job, first the started ones: its id, its deadline (NULL for an ended run),
/// its lease (the waiting lease for an ended run), 1 to start it or 0, its
/// `job_started` payload (NULL for an ended run); then the runner. Answers the rows it
/// touched.
pub fn start_sql(starting: usize, ended: usize) -> String {
    format!(
        "UPDATE jobs SET \
           deadline_ms = v.column2, \
           lease_ms = v.column3, \
           started_ms = CASE WHEN v.column4 = 1 THEN ? ELSE jobs.started_ms END, \
           attempts = CASE WHEN v.column4 = 1 AND jobs.cancel_requested = 0 \
             THEN jobs.attempts + 1 ELSE jobs.attempts END, \
           started_event = CASE WHEN v.column4 = 1 AND jobs.cancel_requested = 0 \
             THEN v.column5 ELSE NULL END \
         FROM (VALUES {}) AS v \
         WHERE jobs.id = v.column1 AND jobs.status = 'running' AND jobs.runner = ? \
         RETURNING {ROW_COLUMNS}",
        rows(starting + ended, 5)
    )
}

/// `UPDATE … FROM (VALUES …)` that records `n` endings at once. Parameters: now (the
/// end), now again (for a duration measured in SQL), then per ending its id, status,
/// duration (NULL: from `started_ms`) and error, then the runner.
pub fn finish_sql(n: usize) -> String {
    format!(
        "UPDATE jobs SET status = v.column2, finished_ms = ?, \
           duration_ms = COALESCE(v.column3, \
             CASE WHEN jobs.started_ms IS NULL THEN NULL ELSE ? - jobs.started_ms END), \
           error = v.column4, lease_ms = NULL, deadline_ms = NULL \
         FROM (VALUES {}) AS v \
         WHERE jobs.id = v.column1 AND jobs.status = 'running' AND jobs.runner = ? \
         RETURNING {ROW_COLUMNS}",
        rows(n, 4)
    )
}

/// `INSERT` of `n` outputs: per output its job, name, content type, size and content.
pub fn outputs_sql(n: usize) -> String {
    format!(
        "INSERT OR REPLACE INTO job_outputs (job_id, name, content_type, size, content) VALUES {}",
        rows(n, 5)
    )
}

/// `INSERT` of `n` events: per event its job, kind, time and payload.
pub fn events_sql(n: usize) -> String {
    format!(
        "INSERT INTO job_events (job_id, event, at_ms, payload) VALUES {}",
        rows(n, 4)
    )
}

/// `UPDATE` that puts back in the queue the jobs of `runner_prefix` that were claimed
/// but not running (no `deadline_ms`) and may run again. Parameters: the prefix twice,
/// the attempts limit.
pub const REQUEUE_WAITING_SQL: &str = "UPDATE jobs SET status = 'queued', runner = NULL, \
       lease_ms = NULL, started_ms = NULL \
     WHERE status = 'running' AND deadline_ms IS NULL \
       AND substr(runner, 1, length(?)) = ? AND attempts < ? \
     RETURNING id";

/// The same for every job of `runner_prefix`, running or not: for a group of quick jobs
/// started together, when none of them is known to be the one that ended the run.
pub const REQUEUE_ALL_SQL: &str = "UPDATE jobs SET status = 'queued', runner = NULL, \
       lease_ms = NULL, started_ms = NULL, deadline_ms = NULL \
     WHERE status = 'running' \
       AND substr(runner, 1, length(?)) = ? AND attempts < ? \
     RETURNING id";

/// `(?, ?), (?, ?)` for `n` rows of `width` values.
pub(crate) fn rows(n: usize, width: usize) -> String {
    let row = format!("({})", vec!["?"; width].join(", "));
    vec![row; n].join(", ")
}

/// A claimed job to start ([`Db::start_in_batch`]).
pub struct Starting<'a> {
    pub id: JobId,
    pub deadline_ms: i64,
    pub lease_ms: i64,
    /// Its `job_started` payload, rendered by the caller: the job as it will be once
    /// started.
    pub started_event: &'a str,
}

/// What [`Db::start_in_batch`] found for one job.
#[derive(Debug, Clone, PartialEq)]
pub enum Start {
    /// The job is this runner's and now running (as the row now reads): run it.
    Run(Box<JobRecord>),
    /// Someone asked to cancel it while it waited: end it cancelled, without running.
    CancelRequested,
    /// Another runner has it now (this one's waiting lease ran out): leave it.
    Lost,
}

/// How a job of a batch ended.
pub enum Ending<'a> {
    Completed {
        duration_ms: i64,
        outputs: Vec<NewOutput<'a>>,
    },
    Failed {
        error: String,
    },
    Cancelled,
}

impl Ending<'_> {
    fn status(&self) -> JobStatus {
        match self {
            Ending::Completed { .. } => JobStatus::Completed,
            Ending::Failed { .. } => JobStatus::Failed,
            Ending::Cancelled => JobStatus::Cancelled,
        }
    }
}

/// One job's ending, to record with the rest of its batch.
pub struct Finish<'a> {
    pub id: JobId,
    pub ending: Ending<'a>,
}

impl Db {
    /// Claims for `runner`, in one statement, up to `limit` queued quick jobs (a tool
    /// in `bounded_tools_json`, see `Registry::bounded_tools_json`) whose parameters add
    /// up to at most `limit_bytes`, oldest first, or the oldest job alone when it is not
    /// quick ([`claim_sql`]). A claimed job waits, with the lease `waiting_lease_ms`,
    /// until [`Db::start_in_batch`].
    pub async fn claim_batch(
        &self,
        runner: &str,
        waiting_lease_ms: i64,
        bounded_tools_json: &str,
        limit: u32,
        limit_bytes: usize,
        max_attempts: i64,
    ) -> Result<Vec<Claimed>, DbError> {
        self.with_schema(async |db: &Db| {
            let r = db
                .execute(
                    &claim_sql(),
                    &[
                        Value::Integer(waiting_lease_ms),
                        text(runner),
                        text(bounded_tools_json),
                        Value::Integer(QUICK_PARAMS_BYTES as i64),
                        Value::Integer(max_attempts),
                        Value::Integer(i64::from(limit)),
                        Value::Integer(limit_bytes as i64),
                    ],
                )
                .await?;
            let mut claimed = r
                .rows()
                .map(|row| {
                    Ok(Claimed {
                        record: record(&row)?,
                        params: row.get::<&str>("params").unwrap_or("{}").to_string(),
                    })
                })
                .collect::<Result<Vec<_>, DbError>>()?;
            // RETURNING gives no order: run them as they were queued.
            claimed.sort_by_key(|c| (c.record.created_ms, c.record.id.to_string()));
            Ok(claimed)
        })
        .await
    }

    /// Starts `starting`, claimed by `runner`, each until its deadline, and ends the
    /// runs of `ended` (this runner's jobs run before them, whose endings are not
    /// recorded yet; their lease goes back to `waiting_lease_ms`), in one statement.
    /// The same statement records each job's `job_started` unless a cancel is pending
    /// (migration 7's trigger). Answers what it found for each of `starting`, in order.
    pub async fn start_in_batch(
        &self,
        starting: &[Starting<'_>],
        ended: &[JobId],
        runner: &str,
        now_ms: i64,
        waiting_lease_ms: i64,
    ) -> Result<Vec<Start>, DbError> {
        if starting.is_empty() {
            return Ok(Vec::new());
        }
        let mut params = Vec::with_capacity(2 + 5 * (starting.len() + ended.len()));
        params.push(Value::Integer(now_ms));
        for s in starting {
            params.extend([
                id_value(&s.id),
                Value::Integer(s.deadline_ms),
                Value::Integer(s.lease_ms),
                Value::Integer(1),
                text(s.started_event),
            ]);
        }
        for id in ended {
            params.extend([
                id_value(id),
                Value::Null,
                Value::Integer(waiting_lease_ms),
                Value::Integer(0),
                Value::Null,
            ]);
        }
        params.push(text(runner));
        let sql = start_sql(starting.len(), ended.len());
        let r = self
            .with_schema(async |db: &Db| db.execute(&sql, &params).await)
            .await?;
        let touched = r
            .rows()
            .map(|row| record(&row))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(starting
            .iter()
            .map(|s| match touched.iter().find(|t| t.id == s.id) {
                None => Start::Lost,
                Some(t) if t.cancel_requested => Start::CancelRequested,
                Some(t) => Start::Run(Box::new(t.clone())),
            })
            .collect())
    }

    /// Records the endings of jobs `runner` still holds, with their outputs and their
    /// events (`render` gives each finished job's event kind and payload), in one
    /// transaction. Answers the jobs it finished, in `finished`'s order, with their
    /// payloads; a job another runner took over is left alone and left out.
    pub async fn finish_batch(
        &self,
        runner: &str,
        now_ms: i64,
        finished: &[Finish<'_>],
        render: &dyn Fn(&JobRecord) -> (JobEventKind, String),
    ) -> Result<Vec<(JobRecord, JobEventKind, String)>, DbError> {
        if finished.is_empty() {
            return Ok(Vec::new());
        }
        let mut params = vec![Value::Integer(now_ms), Value::Integer(now_ms)];
        for f in finished {
            params.push(id_value(&f.id));
            params.push(text(f.ending.status().as_str()));
            params.push(match &f.ending {
                Ending::Completed { duration_ms, .. } => Value::Integer(*duration_ms),
                _ => Value::Null,
            });
            params.push(match &f.ending {
                Ending::Failed { error } => text(error),
                _ => Value::Null,
            });
        }
        params.push(text(runner));
        self.with_schema(async |db: &Db| {
            db.transaction(async |db: &Db| {
                let r = db.execute(&finish_sql(finished.len()), &params).await?;
                let mut won = r
                    .rows()
                    .map(|row| record(&row))
                    .collect::<Result<Vec<_>, _>>()?;
                let outputs: Vec<(&JobId, &NewOutput<'_>)> = finished
                    .iter()
                    .filter(|f| won.iter().any(|w| w.id == f.id))
                    .flat_map(|f| match &f.ending {
                        Ending::Completed { outputs, .. } => {
                            outputs.iter().map(|o| (&f.id, o)).collect()
                        }
                        _ => Vec::new(),
                    })
                    .collect();
                if !outputs.is_empty() {
                    let mut params = Vec::with_capacity(outputs.len() * 5);
                    for (id, o) in &outputs {
                        params.extend([
                            id_value(id),
                            text(o.name),
                            text(o.content_type),
                            Value::Integer(o.content.len() as i64),
                            Value::Blob(o.content.to_vec()),
                        ]);
                    }
                    db.execute(&outputs_sql(outputs.len()), &params).await?;
                }
                // What was just written: no read-back needed, in the order a read gives
                // them (by name).
                for w in &mut won {
                    w.outputs = outputs
                        .iter()
                        .filter(|(id, _)| **id == w.id)
                        .map(|(_, o)| StoredOutput {
                            name: o.name.to_string(),
                            content_type: o.content_type.to_string(),
                            size: o.content.len() as u64,
                        })
                        .collect();
                    w.outputs.sort_by(|a, b| a.name.cmp(&b.name));
                }
                // In the order the jobs ran, not the order RETURNING gave.
                let ordered: Vec<(JobRecord, JobEventKind, String)> = finished
                    .iter()
                    .filter_map(|f| won.iter().position(|w| w.id == f.id))
                    .map(|i| {
                        let (kind, payload) = render(&won[i]);
                        (won[i].clone(), kind, payload)
                    })
                    .collect();
                let mut params = Vec::with_capacity(ordered.len() * 4);
                for (rec, kind, payload) in &ordered {
                    params.extend([
                        id_value(&rec.id),
                        text(kind.as_str()),
                        Value::Integer(now_ms),
                        text(payload),
                    ]);
                }
                if !ordered.is_empty() {
                    db.execute(&events_sql(ordered.len()), &params).await?;
                }
                Ok(ordered)
            })
            .await
        })
        .await
    }

    /// Puts back in the queue the jobs a runner of `runner_prefix` had claimed but was
    /// not running when its instance ended (waiting, or run but not yet recorded), so
    /// they run again; answers them. With `running_too`, the jobs it was running go
    /// back as well. A job out of attempts stays for the caller to fail.
    pub async fn requeue_waiting(
        &self,
        runner_prefix: &str,
        max_attempts: i64,
        running_too: bool,
    ) -> Result<Vec<JobId>, DbError> {
        let sql = if running_too {
            REQUEUE_ALL_SQL
        } else {
            REQUEUE_WAITING_SQL
        };
        self.with_schema(async |db: &Db| {
            let r = db
                .execute(
                    sql,
                    &[
                        text(runner_prefix),
                        text(runner_prefix),
                        Value::Integer(max_attempts),
                    ],
                )
                .await?;
            Ok(r.rows()
                .filter_map(|row| JobId::parse(row.get::<&str>("id")?).ok())
                .collect())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_follow_rows_and_width() {
        assert_eq!(rows(1, 2), "(?, ?)");
        assert_eq!(rows(3, 1), "(?), (?), (?)");
        assert_eq!(finish_sql(2).matches('?').count(), 2 + 2 * 4 + 1);
        assert_eq!(start_sql(2, 1).matches('?').count(), 1 + 3 * 5 + 1);
        assert_eq!(claim_sql().matches('?').count(), 7);
    }
}
