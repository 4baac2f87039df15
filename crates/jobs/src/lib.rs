//! The job lifecycle (SPEC §3), shared by the run, jobs and job-worker components.
//!
//! Every transition updates SQLite first (the source of truth), then records the event
//! in SQLite (for the SSE route), then writes `job:{id}:status` and publishes on
//! `job_updates`. Redis failures are logged and skipped: they never lose a job.
//!
//! No accepted job is lost:
//! - the job row is committed before the 202 is sent;
//! - if `PUBLISH job_created` reaches no subscriber (or Redis is down) the API runs the
//!   job itself, inline, right after its response has gone out (so a tool that traps or
//!   never ends cannot cost the client its answer);
//! - a runner claims with a lease; a job left queued past [`QUEUED_GRACE_MS`] or running
//!   past its lease is claimed again by the next worker invocation or request that
//!   touches it, and failed with `timeout` once [`MAX_ATTEMPTS`] runs have been lost.

use data20_domain::job::JobEventKind;
use data20_domain::time::{now_ms, rfc3339_ms};
use data20_domain::{ApiError, JobEvent, JobId, JobStatus, Registry, Settings, ToolSpec};
use data20_redis::{keys, Redis};
use data20_sqlite::jobs::{Claimed, JobRecord, NewOutput};
use data20_sqlite::{Db, DbError};
use data20_tools::{Deadline, ToolError};
use std::time::Duration;

/// A queued job nobody claimed within this time is run by whoever notices.
pub const QUEUED_GRACE_MS: i64 = 5_000;
/// Added to a tool's timeout to form a runner's lease.
pub const LEASE_GRACE_MS: i64 = 5_000;
/// Runs of one job, counting runs whose runner vanished.
pub const MAX_ATTEMPTS: i64 = 2;

pub fn db_error(e: DbError) -> ApiError {
    ApiError::Unavailable(format!("the job database is unavailable: {e}"))
}

/// How a submitted job was handed off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dispatch {
    /// A worker received `job_created`.
    Worker,
    /// No worker could receive it; the API runs the job itself after answering.
    Inline,
}

impl Dispatch {
    pub fn as_str(self) -> &'static str {
        match self {
            Dispatch::Worker => "worker",
            Dispatch::Inline => "inline",
        }
    }
}

pub struct Jobs<'a> {
    pub db: &'a Db,
    pub redis: &'a Redis,
    pub settings: &'a Settings,
    /// Who is acting: `api` or `worker`; goes into events and runner names.
    pub source: &'static str,
}

impl Jobs<'_> {
    /// Creates a queued job and announces it. [`Dispatch::Inline`] means no worker heard:
    /// the caller must [`Jobs::run`] it, after its response.
    pub fn submit(
        &self,
        spec: &ToolSpec,
        params: &serde_json::Value,
    ) -> Result<(JobRecord, Dispatch), ApiError> {
        let id = JobId::new();
        let params_json = params.to_string();
        let record = self
            .db
            .insert_job(
                &id,
                spec.name.as_str(),
                &params_json,
                now_ms(),
                Dispatch::Worker.as_str(),
            )
            .map_err(db_error)?;
        let receivers = self.announce(&record, JobEventKind::JobCreated);
        if receivers.unwrap_or(0) > 0 {
            return Ok((record, Dispatch::Worker));
        }
        // Nobody can run it but us: say so in the row; the caller runs it.
        self.db
            .set_dispatch(&id, Dispatch::Inline.as_str())
            .map_err(db_error)?;
        Ok((record, Dispatch::Inline))
    }

    /// Runs `work` with the request's database connection and Redis and settings handles
    /// of its own (both connect or read only when used): for work a request leaves for
    /// after its response, when the handles it answered with are gone.
    pub fn detached(
        db: Db,
        settings: Settings,
        source: &'static str,
        work: impl FnOnce(&Jobs<'_>),
    ) {
        let redis = Redis::new(settings.redis_url());
        work(&Jobs {
            db: &db,
            redis: &redis,
            settings: &settings,
            source,
        })
    }

    /// Claims and runs a job if nobody else holds it; answers its state afterwards.
    pub fn run(&self, registry: &Registry, id: &JobId, tool: &str) -> Result<JobRecord, ApiError> {
        let timeout_s = registry
            .get(tool)
            .map_or(data20_domain::registry::MAX_TIMEOUT_S, |t| t.timeout_s);
        let runner = format!("{}:{}", self.source, uuid::Uuid::new_v4());
        let now = now_ms();
        let lease = now + timeout_s as i64 * 1000 + LEASE_GRACE_MS;
        match self
            .db
            .claim_job(id, &runner, now, lease, MAX_ATTEMPTS)
            .map_err(db_error)?
        {
            Some(claimed) => self.execute(registry, claimed, &runner),
            None => {
                let record = self.load(id)?;
                self.give_up_if_abandoned(record)
            }
        }
    }

    /// A job no claim can take any more (its runs were all lost) fails with `timeout`.
    fn give_up_if_abandoned(&self, record: JobRecord) -> Result<JobRecord, ApiError> {
        let now = now_ms();
        let abandoned = record.status == JobStatus::Running
            && record.lease_ms.is_some_and(|l| l < now)
            && record.attempts >= MAX_ATTEMPTS;
        if !abandoned {
            return Ok(record);
        }
        let msg = format!(
            "timeout: the runner stopped before finishing, {} attempts",
            record.attempts
        );
        match self
            .db
            .fail_job(&record.id, None, now, &msg)
            .map_err(db_error)?
        {
            Some(failed) => {
                self.announce(&failed, JobEventKind::JobFailed);
                Ok(failed)
            }
            None => self.load(&record.id),
        }
    }

    fn execute(
        &self,
        registry: &Registry,
        claimed: Claimed,
        runner: &str,
    ) -> Result<JobRecord, ApiError> {
        let Claimed {
            record: started,
            params,
        } = claimed;
        let id = started.id;
        self.announce(&started, JobEventKind::JobStarted);
        let outcome = match registry.get(&started.tool) {
            None => Err(format!(
                "tool {:?} is no longer in the registry",
                started.tool
            )),
            Some(spec) => run_tool(spec, &params),
        };
        let now = now_ms();
        let finished = match outcome {
            Ok(outputs) => {
                let outs: Vec<NewOutput<'_>> = outputs
                    .iter()
                    .map(|(o, ct)| NewOutput {
                        name: &o.name,
                        content_type: ct,
                        content: &o.bytes,
                    })
                    .collect();
                self.db
                    .complete_job(
                        &id,
                        runner,
                        now,
                        now - started.started_ms.unwrap_or(now),
                        &outs,
                    )
                    .map_err(db_error)?
            }
            Err(msg) => self
                .db
                .fail_job(&id, Some(runner), now, &msg)
                .map_err(db_error)?,
        };
        // The update answers the finished row; `None` means another runner took the job
        // over (our lease ran out), so it is not ours to announce.
        match finished {
            Some(record) => {
                let kind = if record.status == JobStatus::Completed {
                    JobEventKind::JobCompleted
                } else {
                    JobEventKind::JobFailed
                };
                self.announce(&record, kind);
                Ok(record)
            }
            None => self.load(&id),
        }
    }

    /// Finishes up to `limit` jobs that nobody is running. Returns how many it touched.
    pub fn recover(&self, registry: &Registry, limit: u32) -> usize {
        let now = now_ms();
        let stale = match self.db.stale_jobs(now, now - QUEUED_GRACE_MS, limit) {
            Ok(s) => s,
            Err(e) => {
                log_warn(&format!("cannot look for stale jobs: {e}"));
                return 0;
            }
        };
        for (id, tool) in &stale {
            log_info(&format!("recovering stale job {id}"));
            if let Err(e) = self.run(registry, id, tool) {
                log_warn(&format!("recovering job {id} failed: {e}"));
            }
        }
        stale.len()
    }

    /// Whether nobody is running `record` any more, so a reader should recover it.
    pub fn is_stale(record: &JobRecord) -> bool {
        let now = now_ms();
        match record.status {
            JobStatus::Queued => record.created_ms < now - QUEUED_GRACE_MS,
            JobStatus::Running => record.lease_ms.is_some_and(|l| l < now),
            _ => false,
        }
    }

    pub fn load(&self, id: &JobId) -> Result<JobRecord, ApiError> {
        self.db
            .job(id)
            .map_err(db_error)?
            .ok_or_else(|| ApiError::NotFound(format!("no job with id {id}")))
    }

    /// Records the event in SQLite, refreshes the status cache and publishes the event.
    /// Answers how many subscribers heard it, or `None` when Redis is unavailable.
    pub fn announce(&self, record: &JobRecord, kind: JobEventKind) -> Option<i64> {
        let event = JobEvent {
            event: kind,
            job_id: record.id,
            tool: record.tool.clone(),
            status: record.status,
            timestamp: rfc3339_ms(now_ms()),
            duration_ms: record.duration_ms.filter(|_| record.status.is_final()),
            output_files: (kind == JobEventKind::JobCompleted)
                .then(|| record.outputs.iter().map(|o| o.name.clone()).collect()),
            error: record
                .error
                .clone()
                .filter(|_| kind == JobEventKind::JobFailed),
            source: self.source.to_string(),
        };
        let payload = serde_json::to_string(&event).unwrap_or_default();
        if let Err(e) = self
            .db
            .record_event(&record.id, kind.as_str(), now_ms(), &payload)
        {
            log_warn(&format!(
                "cannot record event {} for {}: {e}",
                kind.as_str(),
                record.id
            ));
        }
        log_info_job(&event);
        // The status write and the publish share one round trip: the status is cached
        // before anyone hears the event, so a reader woken by it finds the new status.
        let (status, ttl) = self.status_entry(record);
        match self.redis.set_ex_and_publish(
            &keys::job_status(&record.id),
            &status,
            ttl,
            keys::JOB_UPDATES,
            payload.as_bytes(),
        ) {
            Ok(n) => Some(n),
            Err(e) => {
                log_warn(&format!("cannot publish {}: {e}", kind.as_str()));
                None
            }
        }
    }

    /// The cached status document of `record` and its TTL (see [`Jobs::cache_status`]).
    fn status_entry(&self, record: &JobRecord) -> (Vec<u8>, u64) {
        let bytes = serde_json::to_vec(&record.view()).unwrap_or_default();
        let ttl = status_ttl_s(record, now_ms(), self.settings.job_status_ttl_s());
        (bytes, ttl)
    }

    /// Writes `job:{id}:status`. A job that is not final is cached only until the moment
    /// it would count as stale, so a cache HIT can never hide a job that needs recovery:
    /// the next read after that is a MISS, sees it in SQLite and recovers it.
    pub fn cache_status(&self, record: &JobRecord) {
        let (bytes, ttl) = self.status_entry(record);
        if let Err(e) = self
            .redis
            .set_ex(&keys::job_status(&record.id), &bytes, ttl)
        {
            if !e.is_unavailable() {
                log_warn(&format!("cannot cache status of {}: {e}", record.id));
            }
        }
    }
}

/// Seconds to cache a job's status: the configured TTL, cut short for a job that is
/// not final so the entry expires when the job would become stale (at least 1 s).
pub fn status_ttl_s(record: &JobRecord, now_ms: i64, configured_s: u64) -> u64 {
    let stale_at = match record.status {
        JobStatus::Queued => Some(record.created_ms + QUEUED_GRACE_MS),
        JobStatus::Running => record.lease_ms,
        JobStatus::Completed | JobStatus::Failed => None,
    };
    match stale_at {
        None => configured_s,
        Some(at) => {
            let remaining_s = ((at - now_ms).max(0) as u64).div_ceil(1000);
            remaining_s.clamp(1, configured_s.max(1))
        }
    }
}

/// Runs the tool against its declared outputs: an undeclared file fails the job.
fn run_tool(
    spec: &ToolSpec,
    params_json: &str,
) -> Result<Vec<(data20_tools::Output, String)>, String> {
    let params: serde_json::Value = serde_json::from_str(params_json)
        .map_err(|e| format!("stored params are not JSON: {e}"))?;
    let deadline = Deadline::after(Duration::from_secs(spec.timeout_s));
    let outputs =
        data20_tools::run(spec.name.as_str(), &params, &deadline).map_err(|e| match e {
            ToolError::Timeout(_) => format!(
                "timeout: {} ran longer than {} s",
                spec.name, spec.timeout_s
            ),
            other => other.to_string(),
        })?;
    deadline.check().map_err(|_| {
        format!(
            "timeout: {} ran longer than {} s",
            spec.name, spec.timeout_s
        )
    })?;
    outputs
        .into_iter()
        .map(|o| match spec.output(&o.name) {
            Some(decl) => {
                let ct = decl.content_type.clone();
                Ok((o, ct))
            }
            None => Err(format!("tool wrote an undeclared output {:?}", o.name)),
        })
        .collect()
}

use data20_domain::log::{info as log_info, warn as log_warn};

/// One structured line per job transition.
fn log_info_job(event: &JobEvent) {
    data20_domain::log::emit(&serde_json::json!({
        "level": "info", "msg": "job transition", "event": event.event.as_str(),
        "job_id": event.job_id.to_string(), "tool": event.tool, "status": event.status.as_str(),
        "duration_ms": event.duration_ms, "error": event.error, "source": event.source,
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(status: JobStatus, created_ms: i64, lease_ms: Option<i64>) -> JobRecord {
        JobRecord {
            status,
            lease_ms,
            ..JobRecord::queued(JobId::new(), "build_graph", created_ms, "worker")
        }
    }

    #[test]
    fn final_jobs_use_the_configured_ttl() {
        assert_eq!(
            status_ttl_s(&record(JobStatus::Completed, 0, None), 1_000, 600),
            600
        );
        assert_eq!(
            status_ttl_s(&record(JobStatus::Failed, 0, None), 1_000, 600),
            600
        );
    }

    #[test]
    fn unfinished_jobs_expire_when_they_would_turn_stale() {
        let now = 1_000_000;
        let queued = record(JobStatus::Queued, now, None);
        assert_eq!(
            status_ttl_s(&queued, now, 600),
            (QUEUED_GRACE_MS / 1000) as u64
        );
        let running = record(JobStatus::Running, now, Some(now + 25_000));
        assert_eq!(status_ttl_s(&running, now, 600), 25);
        assert_eq!(
            status_ttl_s(&running, now, 10),
            10,
            "never above the configured TTL"
        );
        let overdue = record(JobStatus::Running, now, Some(now - 5_000));
        assert_eq!(status_ttl_s(&overdue, now, 600), 1, "at least one second");
    }
}
