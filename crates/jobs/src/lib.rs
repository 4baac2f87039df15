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
//!   past its lease is claimed again by the next worker drain, and failed with `timeout`
//!   once [`MAX_ATTEMPTS`] runs have been lost. Reads never run jobs: a read that sees
//!   one nobody runs wakes the workers, and runs it itself only when no worker can hear
//!   and `inline_runs` allows it (no worker at all, as on Fermyon Cloud);
//! - hard limits (`data20_domain::limits`): a supervisor kills a worker process whose
//!   job ran past its timeout and fails the job; a worker process whose instance
//!   trapped fails the jobs it left running when the supervisor wakes it
//!   ([`Jobs::fail_orphans`]).

use data20_domain::job::{JobEventKind, Progress};
use data20_domain::limits;
use data20_domain::registry::QUICK_PARAMS_BYTES;
use data20_domain::time::{now_ms, rfc3339_ms};
use data20_domain::{ApiError, JobEvent, JobId, JobStatus, Registry, Settings, ToolSpec};
use data20_redis::{keys, Redis, StatusAndMessage};
use data20_sqlite::batch::{Ending, Finish, Start, Starting};
use data20_sqlite::jobs::{
    CancelOutcome, Claimed, IdempotencyKey, InsertOutcome, JobRecord, Lease, NewEvent, NewJob,
    NewOutput, RetryOutcome,
};
use data20_sqlite::{Db, DbError};
use data20_tools::{Deadline, ToolError};
use std::time::Duration;

/// A queued job nobody claimed within this time is run by whoever notices.
pub const QUEUED_GRACE_MS: i64 = 5_000;
/// Added to a tool's timeout to form a runner's lease.
pub const LEASE_GRACE_MS: i64 = 5_000;
// The hard limit strikes before the lease ends: otherwise another runner could take a
// looping job over before its process is killed.
const _: () = assert!(limits::HARD_LIMIT_GRACE_MS < LEASE_GRACE_MS);
/// Runs of one job, counting runs whose runner vanished.
pub const MAX_ATTEMPTS: i64 = 2;

pub fn db_error(e: DbError) -> ApiError {
    ApiError::Unavailable(format!("the job database is unavailable: {e}"))
}

/// How long an `Idempotency-Key` answers with its job: 24 hours.
pub const IDEMPOTENCY_WINDOW_MS: i64 = 24 * 3600 * 1000;

/// What [`Jobs::submit`] did.
#[derive(Debug)]
pub struct Submitted {
    pub record: JobRecord,
    pub dispatch: Dispatch,
    /// The idempotency key had made this job before: nothing new was created.
    pub replayed: bool,
}

/// A job to create without an idempotency key, for [`Jobs::submit_many`].
#[derive(Debug, Clone)]
pub struct Submission {
    pub tool: String,
    /// Its params, as JSON text (already valid against the tool's schema).
    pub params_json: String,
    /// The key making it (closed mode).
    pub owner: Option<String>,
}

/// A job [`Jobs::create_many`] committed, not yet announced.
#[derive(Debug)]
pub struct Created {
    pub record: JobRecord,
    /// Its `job_created` event, as recorded.
    payload: String,
}

/// A transition ready for Redis ([`Jobs::prepare_transitions`]).
struct PreparedTransition<'p> {
    key: String,
    status: Vec<u8>,
    ttl_s: u64,
    message: &'p str,
}

impl PreparedTransition<'_> {
    fn entry(&self) -> StatusAndMessage<'_> {
        StatusAndMessage {
            key: &self.key,
            value: &self.status,
            ttl_s: self.ttl_s,
            message: self.message.as_bytes(),
        }
    }
}

/// What [`Jobs::enforce_hard_limit`] found.
#[derive(Debug, Default)]
pub struct HardLimitCheck {
    /// Jobs failed now: the process running them must be restarted.
    pub failed: Vec<JobId>,
    /// Jobs still running within their limit.
    pub running: usize,
}

/// What [`Jobs::cancel`] did.
#[derive(Debug)]
pub enum Cancel {
    /// Queued: cancelled, it will never run (200).
    Done(JobRecord),
    /// Running: it stops at its tool's next check (202).
    Requested(JobRecord),
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

/// Quick jobs a worker claims at once ([`Jobs::drain`]); a job that is not quick is
/// claimed alone (`data20_sqlite::batch::claim_sql`). A claim, a group's start and a
/// batch's endings are one statement or transaction apiece, about 0.9 ms of a worker's
/// CPU together, against about 0.13 ms per quick job: measured with one worker
/// draining 6 000 queued `text_stats` jobs, 16 jobs a claim cost 182 µs a job and 64
/// cost 131 µs. A claim's parameters add up to at most [`CLAIM_PARAMS_BYTES`] and a
/// group started together's to at most one quick job's ([`QUICK_PARAMS_BYTES`]), so
/// a claimed job waits for a few quick jobs' worth of work at most, and a group runs
/// about as long as one quick job; the endings go out at least every [`FLUSH_EVERY`].
pub const BATCH_SIZE: u32 = 64;
/// The most parameters one claim of quick jobs adds up to: four of the largest quick
/// jobs, or 64 small ones.
pub const CLAIM_PARAMS_BYTES: usize = 4 * QUICK_PARAMS_BYTES;
/// How long a claimed job may wait for its turn in a batch before another runner may
/// take it over (its runner died, or the jobs ahead of it run long).
pub const WAITING_LEASE_MS: i64 = 30_000;
/// How long a drain whose last claim of quick jobs had room for more waits before it
/// claims again, per job that claim took ([`linger_after`]): the jobs that come in
/// meanwhile share the next claim, start and ending. A first claim never waits.
pub const LINGER_PER_JOB: Duration = Duration::from_millis(2);
/// The longest such wait: what a job arriving in a flood may wait at most before its
/// claim.
pub const MAX_LINGER: Duration = Duration::from_millis(100);
/// A batch records the endings it has and announces them at least this often.
pub const FLUSH_EVERY: Duration = Duration::from_millis(20);

/// Finished jobs past their retention deleted per purge (one small transaction), and
/// how many jobs a drain runs between two purges.
pub const PURGE_BATCH: u32 = 200;
const PURGE_EVERY_JOBS: usize = 100;

pub struct Jobs<'a> {
    pub db: &'a Db,
    pub redis: &'a Redis,
    pub settings: &'a Settings,
    /// Who is acting: `api` or `worker`; goes into events and runner names.
    pub source: &'static str,
}

impl Jobs<'_> {
    /// Creates a queued job submitted with an idempotency key (its row, its
    /// `job_created` event and the key in one commit) and announces it.
    /// [`Dispatch::Inline`] means no worker heard: the caller must [`Jobs::run`] it,
    /// after its response. With a key already used for the same body, answers the job
    /// that key made (`replayed`), untouched. Jobs without a key go through
    /// [`Jobs::create_many`].
    pub async fn submit(
        &self,
        spec: &ToolSpec,
        params: &serde_json::Value,
        idempotency: IdempotencyKey<'_>,
        owner: Option<&str>,
    ) -> Result<Submitted, ApiError> {
        let now = now_ms();
        let id = JobId::created_at(now);
        let queued = JobRecord::queued(id, spec.name.as_str(), now, Dispatch::Worker.as_str());
        let payload = self.event_json(&queued, JobEventKind::JobCreated);
        let outcome = self
            .db
            .insert_job(
                &NewJob {
                    id: &id,
                    tool: spec.name.as_str(),
                    params_json: &params.to_string(),
                    created_ms: now,
                    dispatch: Dispatch::Worker.as_str(),
                    event: JobEventKind::JobCreated.as_str(),
                    event_payload: &payload,
                    owner,
                },
                &idempotency,
            )
            .await
            .map_err(db_error)?;
        match outcome {
            InsertOutcome::Inserted(record) => {
                let record = *record;
                let dispatch = self.hand_off(&[(&record, &payload)]).await?;
                Ok(Submitted {
                    record,
                    dispatch,
                    replayed: false,
                })
            }
            InsertOutcome::Replayed(earlier) => {
                let record = self.load(&earlier).await?;
                let dispatch = if record.dispatch == Dispatch::Inline.as_str() {
                    Dispatch::Inline
                } else {
                    Dispatch::Worker
                };
                Ok(Submitted {
                    record,
                    dispatch,
                    replayed: true,
                })
            }
            InsertOutcome::KeyReused => Err(ApiError::IdempotencyKeyReused(
                "this Idempotency-Key was already used with a different request body; \
                 use a new key for a new request"
                    .into(),
            )),
        }
    }

    /// Creates queued jobs without idempotency keys: every row and its `job_created`
    /// event in one statement (one commit, all or none). [`Jobs::announce_created`]
    /// then tells the world. The group commit of `POST /api/run` batches the
    /// submissions of concurrent requests through here.
    pub async fn create_many(&self, batch: &[Submission]) -> Result<Vec<Created>, ApiError> {
        let now = now_ms();
        let created: Vec<Created> = batch
            .iter()
            .map(|s| {
                let mut record = JobRecord::queued(
                    JobId::created_at(now),
                    &s.tool,
                    now,
                    Dispatch::Worker.as_str(),
                );
                let payload = self.event_json(&record, JobEventKind::JobCreated);
                record.owner = s.owner.clone();
                Created { record, payload }
            })
            .collect();
        let rows: Vec<NewJob<'_>> = created
            .iter()
            .zip(batch)
            .map(|(c, s)| NewJob {
                id: &c.record.id,
                tool: &c.record.tool,
                params_json: &s.params_json,
                created_ms: now,
                dispatch: Dispatch::Worker.as_str(),
                event: JobEventKind::JobCreated.as_str(),
                event_payload: &c.payload,
                owner: s.owner.as_deref(),
            })
            .collect();
        self.db.insert_submissions(&rows).await.map_err(db_error)?;
        Ok(created)
    }

    /// Announces jobs [`Jobs::create_many`] committed, in one round trip to Redis that
    /// caches their statuses, publishes their events in order and announces them to
    /// the workers once; [`Dispatch`] is the batch's.
    pub async fn announce_created(
        &self,
        created: Vec<Created>,
    ) -> Result<Vec<Submitted>, ApiError> {
        let announced: Vec<(&JobRecord, &str)> = created
            .iter()
            .map(|c| (&c.record, c.payload.as_str()))
            .collect();
        let dispatch = self.hand_off(&announced).await?;
        Ok(created
            .into_iter()
            .map(|c| Submitted {
                record: c.record,
                dispatch,
                replayed: false,
            })
            .collect())
    }

    /// Publishes new jobs' `job_created` (already recorded) and says who runs them: a
    /// worker that heard, or the caller (no subscriber, or Redis down).
    async fn hand_off(&self, created: &[(&JobRecord, &str)]) -> Result<Dispatch, ApiError> {
        let receivers = self.publish_created(created).await;
        // Under a supervisor (`inline_runs` off) a worker is on its way back (restarted
        // after a kill, or once Redis returns): the job waits for it, queued, and the
        // supervisor wakes it. Tool code never runs in the HTTP process there.
        if receivers.unwrap_or(0) > 0 || !self.settings.inline_runs() {
            return Ok(Dispatch::Worker);
        }
        // Nobody can run them but us: say so in the rows; the caller runs them.
        let ids: Vec<JobId> = created.iter().map(|(record, _)| record.id).collect();
        self.db
            .set_dispatch(&ids, Dispatch::Inline.as_str())
            .await
            .map_err(db_error)?;
        Ok(Dispatch::Inline)
    }

    /// Retries a failed or cancelled job as a new job with the same tool and params.
    pub async fn retry(&self, old: &JobId) -> Result<(JobRecord, Dispatch), ApiError> {
        let now = now_ms();
        let new_id = JobId::created_at(now);
        let created = self.transition_event(JobEventKind::JobCreated, now);
        match self
            .db
            .retry_job(old, &new_id, now, &created.event())
            .await
            .map_err(db_error)?
        {
            RetryOutcome::Created(record) => {
                let payload = created.payload.borrow().clone();
                let dispatch = self.hand_off(&[(&record, &payload)]).await?;
                // The old job's cached status now links to its retry.
                if let Ok(old_record) = self.load(old).await {
                    self.cache_status(&old_record).await;
                }
                Ok((record, dispatch))
            }
            RetryOutcome::NotRetryable(record) => {
                Err(ApiError::Conflict(match record.retried_by {
                    Some(by) => format!("job {old} was already retried by {by}"),
                    None => format!(
                        "job {old} is {}: only failed or cancelled jobs can be retried",
                        record.status.as_str()
                    ),
                }))
            }
            RetryOutcome::NotFound => Err(ApiError::NotFound(format!("no job with id {old}"))),
        }
    }

    /// Cancels a job: a queued one at once (never runs), a running one at its tool's
    /// next check. Final jobs are a conflict.
    pub async fn cancel(&self, id: &JobId) -> Result<Cancel, ApiError> {
        let now = now_ms();
        let cancelled = self.transition_event(JobEventKind::JobCancelled, now);
        match self
            .db
            .cancel_job(id, now, &cancelled.event())
            .await
            .map_err(db_error)?
        {
            Some(CancelOutcome::Cancelled(record)) => {
                cancelled.publish(&record).await;
                Ok(Cancel::Done(record))
            }
            Some(CancelOutcome::Requested(record)) => {
                self.cache_status(&record).await;
                Ok(Cancel::Requested(record))
            }
            Some(CancelOutcome::Final(record)) => Err(ApiError::Conflict(format!(
                "job {id} is already {}",
                record.status.as_str()
            ))),
            None => Err(ApiError::NotFound(format!("no job with id {id}"))),
        }
    }

    /// Deletes finished jobs older than the retention (`job_retention_days`; 0 keeps
    /// them) in one small batch, with their outputs and events. Off the request path.
    pub async fn purge_expired(&self, batch: u32) -> usize {
        let Some(retention_ms) = self.settings.job_retention_ms() else {
            return 0;
        };
        let now = now_ms();
        match self
            .db
            .purge_finished(now - retention_ms, now - IDEMPOTENCY_WINDOW_MS, batch)
            .await
        {
            Ok(purged) => {
                // Their cached status documents go too: a purged job is a 404.
                let keys: Vec<String> = purged.iter().map(keys::job_status).collect();
                if let Err(e) = self.redis.del(&keys).await {
                    if !e.is_unavailable() {
                        log_warn(&format!("cannot drop purged jobs' status: {e}"));
                    }
                }
                purged.len()
            }
            Err(e) => {
                log_warn(&format!("cannot purge old jobs: {e}"));
                0
            }
        }
    }

    /// Runs `work` with the request's database connection and Redis and settings handles
    /// of its own (both connect or read only when used): for work a request leaves for
    /// after its response, when the handles it answered with are gone.
    pub async fn detached(
        db: Db,
        settings: Settings,
        source: &'static str,
        work: impl AsyncFnOnce(&Jobs<'_>),
    ) {
        let redis = Redis::from_settings(&settings);
        work(&Jobs {
            db: &db,
            redis: &redis,
            settings: &settings,
            source,
        })
        .await
    }

    /// Claims and runs a job if nobody else holds it; answers its state afterwards.
    pub async fn run(
        &self,
        registry: &Registry,
        id: &JobId,
        tool: &str,
    ) -> Result<JobRecord, ApiError> {
        let timeout_s = registry
            .get(tool)
            .map_or(data20_domain::registry::MAX_TIMEOUT_S, |t| t.timeout_s);
        let runner = self.runner_name();
        let now = now_ms();
        let deadline_ms = now + timeout_s as i64 * 1000;
        let lease = Lease {
            now_ms: now,
            lease_ms: deadline_ms + LEASE_GRACE_MS,
            deadline_ms,
        };
        let started = self.transition_event(JobEventKind::JobStarted, now);
        match self
            .db
            .claim_job(id, &runner, &lease, MAX_ATTEMPTS, &started.event())
            .await
            .map_err(db_error)?
        {
            Some(claimed) => {
                started.publish(&claimed.record).await;
                self.execute(registry, claimed, &runner).await
            }
            None => {
                let record = self.load(id).await?;
                self.give_up_if_abandoned(record).await
            }
        }
    }

    /// A new runner name: `worker:{worker_id}:loop{n}:{uuid}` in a worker process that
    /// has an id (so its supervisor can tell which process runs what, and each loop
    /// its own runs), else `{source}:{uuid}`.
    fn runner_name(&self) -> String {
        let run = uuid::Uuid::new_v4();
        match self.loop_prefix() {
            Some(prefix) => format!("{prefix}{run}"),
            None => format!("{}:{run}", self.source),
        }
    }

    /// `worker:{id}:` for a worker process with an id: all its loops.
    fn worker_prefix(&self) -> Option<String> {
        (self.source == "worker")
            .then(|| self.settings.worker_id())
            .flatten()
            .map(limits::runner_prefix)
    }

    /// `worker:{id}:loop{n}:`: this loop of the worker process.
    fn loop_prefix(&self) -> Option<String> {
        (self.source == "worker")
            .then(|| self.settings.worker_id())
            .flatten()
            .map(|id| limits::loop_prefix(id, self.settings.worker_loop()))
    }

    /// Fails this loop's own running jobs, when no instance of it is live. A
    /// subscription loop handles its messages one at a time, so while it handles one
    /// (the supervisor's addressed wake-up), a job still running under its name was left by
    /// an instance that trapped (out of memory at the instance cap, or out of stack):
    /// it fails with `resource_exhausted` at once, instead of waiting for its lease,
    /// and is not run again; the rest of its batch runs again. Answers how many it
    /// failed.
    pub async fn fail_orphans(&self) -> usize {
        // Only this loop's runs: the process's other loops may be running theirs.
        let Some(prefix) = self.loop_prefix() else {
            return 0;
        };
        // Of a batch, only the job that was running when the instance ended is to
        // blame: the ones still waiting, or run but not yet recorded, go back to the
        // queue (this wake-up's drain takes them again).
        let running = async || match self.db.running_jobs_of(&prefix).await {
            Ok(o) => Some(o),
            Err(e) => {
                log_warn(&format!("cannot look for orphaned jobs: {e}"));
                None
            }
        };
        self.requeue_orphans(&prefix, false).await;
        let Some(mut orphans) = running().await else {
            return 0;
        };
        if orphans.iter().filter(|j| j.deadline_ms.is_some()).count() > 1 {
            // Quick jobs started together (`run_batch`): none of them is known to be
            // the one that ended the instance. They run again, their attempt counted,
            // so one that ends it every time runs out of attempts and fails alone.
            self.requeue_orphans(&prefix, true).await;
            let Some(left) = running().await else {
                return 0;
            };
            orphans = left;
        }
        let orphans: Vec<JobId> = orphans.into_iter().map(|j| j.id).collect();
        let msg = limits::trapped_error(self.settings.worker_memory_limit());
        let mut failed = 0;
        for id in orphans {
            match self.fail_stopped(&id, &msg, limits::TRAPPED_COUNTER).await {
                Ok(true) => failed += 1,
                Ok(false) => {}
                Err(e) => log_warn(&format!("cannot fail orphaned job {id}: {e}")),
            }
        }
        failed
    }

    /// Puts this loop's claimed jobs back in the queue: the waiting ones, and with
    /// `running_too` the running ones (see [`Jobs::fail_orphans`]).
    async fn requeue_orphans(&self, prefix: &str, running_too: bool) {
        match self
            .db
            .requeue_waiting(prefix, MAX_ATTEMPTS, running_too)
            .await
        {
            Ok(back) if !back.is_empty() => {
                log_info(&format!("{} jobs of a batch back in the queue", back.len()))
            }
            Ok(_) => {}
            Err(e) => log_warn(&format!("cannot requeue a batch's jobs: {e}")),
        }
    }

    /// Fails a running job that something outside its run stopped (a trapped instance,
    /// the hard limit), with its event, and counts it under `counter`. Answers whether
    /// it failed it (`false`: the job had already ended).
    async fn fail_stopped(&self, id: &JobId, msg: &str, counter: &str) -> Result<bool, DbError> {
        let now = now_ms();
        let event = self.transition_event(JobEventKind::JobFailed, now);
        let Some(record) = self.db.fail_job(id, None, now, msg, &event.event()).await? else {
            return Ok(false);
        };
        let _ = self.db.add_counter(counter, 1).await;
        log_warn(&format!("job {id} failed: {msg}"));
        event.publish(&record).await;
        Ok(true)
    }

    /// The hard limit, enforced from inside the worker's own Spin process (SpinKube's
    /// liveness check, `GET /api/health/worker`, where no supervisor can kill one
    /// process): fails this worker's jobs that are past their deadline plus
    /// `limits::PROBED_KILL_AFTER_MS`, with the hard-limit error, and answers them; the caller
    /// then asks for the process to be restarted (Kubernetes kills the container when
    /// its liveness check fails). It also wakes this worker once its running job's
    /// instance has ended (see [`Jobs::fail_orphans`]) and every worker while a job has
    /// waited in the queue for over a second.
    pub async fn enforce_hard_limit(&self) -> Result<HardLimitCheck, ApiError> {
        let prefix = self.worker_prefix().ok_or_else(|| {
            ApiError::NotFound("this process runs no worker with a worker_id".into())
        })?;
        let now = now_ms();
        let running = self.db.running_jobs_of(&prefix).await.map_err(db_error)?;
        let mut check = HardLimitCheck::default();
        for job in &running {
            if !limits::past_hard_limit(job.deadline_ms, now, limits::PROBED_KILL_AFTER_MS) {
                check.running += 1;
                continue;
            }
            let timeout_ms = job.deadline_ms.unwrap_or(now) - job.started_ms;
            let msg = limits::hard_limit_error(&job.tool, timeout_ms);
            // A job that ended on its own just now needs no restart.
            if self
                .fail_stopped(&job.id, &msg, limits::HARD_KILLED_COUNTER)
                .await
                .map_err(db_error)?
            {
                check.failed.push(job.id);
            }
        }
        if check.failed.is_empty() && check.running > 0 {
            self.wake(self.settings.worker_id()).await;
        }
        if self
            .db
            .queued_since(now - limits::QUEUED_WAKE_AFTER_MS)
            .await
            .unwrap_or(false)
        {
            self.wake(None).await;
        }
        Ok(check)
    }

    /// Publishes a wake-up for `worker` (every worker when `None`): answers how many
    /// heard it, or `None` when Redis is unavailable.
    pub async fn wake(&self, worker: Option<&str>) -> Option<i64> {
        let wake = limits::WakeUp::to(worker).to_json();
        match self.redis.publish(keys::JOB_WAKEUPS, wake.as_bytes()).await {
            Ok(heard) => Some(heard),
            Err(e) => {
                if !e.is_unavailable() {
                    log_warn(&format!("cannot wake the workers: {e}"));
                }
                None
            }
        }
    }

    /// Runs queued (and lost) jobs until none is left, `max_jobs` have run or `budget`
    /// has passed: one worker wake-up does the work of many `job_created` messages,
    /// and the wake-ups after it find nothing and leave. Queued quick jobs are claimed
    /// up to [`BATCH_SIZE`] at a time, any other job alone ([`Jobs::run_batch`]); a
    /// running job whose runner lost its lease is taken over alone, once the queue is
    /// empty. Answers how many jobs it picked (a job another runner took over first
    /// counts). The registry (`load_registry`) is read once, before the first claim,
    /// which needs to know the quick tools.
    pub async fn drain(
        &self,
        load_registry: impl AsyncFn() -> Result<std::rc::Rc<Registry>, ApiError>,
        max_jobs: usize,
        budget: Duration,
    ) -> Result<usize, ApiError> {
        let started = std::time::Instant::now();
        let mut registry: Option<(std::rc::Rc<Registry>, String)> = None;
        let (mut ran, mut since_purge) = (0, 0);
        let mut linger = Duration::ZERO;
        while ran < max_jobs && started.elapsed() < budget {
            if !linger.is_zero() {
                // Jobs are coming in about as fast as they run: wait for a fuller batch,
                // which costs the next claim, start and ending one write each.
                data20_host::time::sleep(linger).await;
            }
            // The claim needs to know which tools are quick: one registry read per drain.
            let (reg, bounded) = match &registry {
                Some(loaded) => loaded,
                None => {
                    let reg = load_registry().await?;
                    let bounded = reg.bounded_tools_json();
                    registry.insert((reg, bounded))
                }
            };
            let runner = self.runner_name();
            let batch = self.claim_batch(&runner, bounded).await?;
            linger = linger_after(reg, &batch);
            let picked = if batch.is_empty() {
                let Some((id, tool)) = self.db.next_runnable(now_ms()).await.map_err(db_error)?
                else {
                    break;
                };
                if let Err(e) = self.run(reg, &id, &tool).await {
                    log_warn(&format!("job {id} could not be run: {e}"));
                    // The same job would come back at once: stop here, the next wake-up
                    // (or the lease) tries again.
                    break;
                }
                1
            } else {
                self.run_batch(reg, &runner, batch).await?
            };
            ran += picked;
            since_purge += picked;
            // A drain can last its whole budget when jobs come as fast as they run:
            // retention keeps pace inside it instead of waiting for its end.
            if since_purge >= PURGE_EVERY_JOBS {
                since_purge = 0;
                self.purge_expired(PURGE_BATCH).await;
            }
        }
        Ok(ran)
    }

    /// Claims for `runner` up to [`BATCH_SIZE`] queued quick jobs, or one that is not.
    async fn claim_batch(
        &self,
        runner: &str,
        bounded_tools_json: &str,
    ) -> Result<Vec<Claimed>, ApiError> {
        self.db
            .claim_batch(
                runner,
                now_ms() + WAITING_LEASE_MS,
                bounded_tools_json,
                BATCH_SIZE,
                CLAIM_PARAMS_BYTES,
                MAX_ATTEMPTS,
            )
            .await
            .map_err(db_error)
    }

    /// Runs a claimed batch in order. Each job is marked as it starts, with its own
    /// `job_started` recorded and announced then (so the hard limit and a trapped
    /// instance concern it alone, and a job whose turn never came was never started,
    /// see `data20_sqlite::batch`), except that consecutive quick jobs
    /// ([`ToolSpec::runs_quickly`]: a bounded tool, small parameters) start together,
    /// in one statement and one announcement, as long as their parameters add up to no
    /// more than one quick job's: none of them can run long enough for its start time
    /// to matter. The endings are recorded and announced together, at least every
    /// [`FLUSH_EVERY`]. Answers how many jobs it took.
    async fn run_batch(
        &self,
        registry: &Registry,
        runner: &str,
        batch: Vec<Claimed>,
    ) -> Result<usize, ApiError> {
        let taken = batch.len();
        let quick = |c: &Claimed| is_quick(registry, c);
        let mut ended: Vec<(JobId, Ended)> = Vec::new();
        // Jobs run but whose ending is not recorded yet: the next start ends their runs.
        let mut run_over: Vec<JobId> = Vec::new();
        let mut flushed = std::time::Instant::now();
        let mut claimed = batch.into_iter().peekable();
        while let Some(first) = claimed.next() {
            let mut group = vec![first];
            if quick(&group[0]) {
                // Together no more input than one quick job: the group runs about as
                // long as one, so each start time stays true to within that.
                let mut bytes = group[0].params.len();
                while let Some(next) =
                    claimed.next_if(|c| quick(c) && bytes + c.params.len() <= QUICK_PARAMS_BYTES)
                {
                    bytes += next.params.len();
                    group.push(next);
                }
            }
            let starts = self
                .start_group(registry, runner, &group, &run_over)
                .await?;
            run_over.clear();
            for (Claimed { record, params }, start) in group.into_iter().zip(starts) {
                let id = record.id;
                match start {
                    Start::Lost => continue,
                    Start::CancelRequested => ended.push((id, Ended::Cancelled)),
                    Start::Run(_) => {
                        ended.push((id, self.run_started(registry, runner, &record, &params)))
                    }
                }
                run_over.push(id);
                if flushed.elapsed() >= FLUSH_EVERY {
                    self.record_endings(runner, &mut ended).await?;
                    flushed = std::time::Instant::now();
                    // Recorded endings are final: nothing left to end by the next start.
                    run_over.clear();
                }
            }
        }
        self.record_endings(runner, &mut ended).await?;
        Ok(taken)
    }

    /// Runs a job of a batch that `runner` has just started, and answers how it ended
    /// (recorded later, with the batch's endings).
    fn run_started(
        &self,
        registry: &Registry,
        runner: &str,
        record: &JobRecord,
        params: &str,
    ) -> Ended {
        let supervisor = JobSupervisor {
            jobs: self,
            id: record.id,
            runner,
        };
        let began = std::time::Instant::now();
        let outcome = match registry.get(&record.tool) {
            None => Err(Stopped::Failed(format!(
                "tool {:?} is no longer in the registry",
                record.tool
            ))),
            Some(spec) => run_tool(spec, params, &supervisor),
        };
        let duration_ms = began.elapsed().as_millis() as i64;
        match outcome {
            Ok(outputs) => Ended::Completed {
                duration_ms,
                outputs,
            },
            Err(Stopped::Failed(error)) => Ended::Failed(error),
            Err(Stopped::Cancelled) => Ended::Cancelled,
        }
    }

    /// Starts `group` (claimed by `runner`) in one statement that also ends the runs of
    /// `run_over`, and announces the jobs it started in one round trip, each with the
    /// `job_started` the statement recorded. Answers what it found for each job.
    async fn start_group(
        &self,
        registry: &Registry,
        runner: &str,
        group: &[Claimed],
        run_over: &[JobId],
    ) -> Result<Vec<Start>, ApiError> {
        let now = now_ms();
        // Each job_started is rendered before the start, to be recorded by the start's
        // own statement: the job as it will be once started.
        let events: Vec<String> = group
            .iter()
            .map(|c| {
                let mut starting = c.record.clone();
                starting.started_ms = Some(now);
                self.event_json(&starting, JobEventKind::JobStarted)
            })
            .collect();
        let starting: Vec<Starting<'_>> = group
            .iter()
            .zip(&events)
            .map(|(c, event)| {
                let timeout_s = registry
                    .get(&c.record.tool)
                    .map_or(data20_domain::registry::MAX_TIMEOUT_S, |t| t.timeout_s);
                let deadline_ms = now + timeout_s as i64 * 1000;
                Starting {
                    id: c.record.id,
                    deadline_ms,
                    lease_ms: deadline_ms + LEASE_GRACE_MS,
                    started_event: event,
                }
            })
            .collect();
        let starts = self
            .db
            .start_in_batch(&starting, run_over, runner, now, now + WAITING_LEASE_MS)
            .await
            .map_err(db_error)?;
        // Recorded with the starts; announced as recorded.
        self.publish_all(
            starts
                .iter()
                .zip(&events)
                .filter_map(|(start, event)| match start {
                    Start::Run(started) => {
                        Some((&**started, JobEventKind::JobStarted, event.as_str()))
                    }
                    _ => None,
                }),
        )
        .await;
        Ok(starts)
    }

    /// Records the endings a batch has so far in one transaction and announces them
    /// in one round trip, then forgets them.
    async fn record_endings(
        &self,
        runner: &str,
        ended: &mut Vec<(JobId, Ended)>,
    ) -> Result<(), ApiError> {
        if ended.is_empty() {
            return Ok(());
        }
        let finishes: Vec<Finish<'_>> = ended
            .iter()
            .map(|(id, e)| Finish {
                id: *id,
                ending: e.as_ending(),
            })
            .collect();
        let recorded = self
            .db
            .finish_batch(runner, now_ms(), &finishes, &|record| {
                let kind = match record.status {
                    JobStatus::Completed => JobEventKind::JobCompleted,
                    JobStatus::Cancelled => JobEventKind::JobCancelled,
                    _ => JobEventKind::JobFailed,
                };
                (kind, self.event_json(record, kind))
            })
            .await
            .map_err(db_error)?;
        drop(finishes);
        ended.clear();
        self.publish_all(
            recorded
                .iter()
                .map(|(record, kind, payload)| (record, *kind, payload.as_str())),
        )
        .await;
        Ok(())
    }

    /// A job no claim can take any more (its runs were all lost) fails with `timeout`.
    async fn give_up_if_abandoned(&self, record: JobRecord) -> Result<JobRecord, ApiError> {
        let now = now_ms();
        let lost = record.status == JobStatus::Running && record.lease_ms.is_some_and(|l| l < now);
        if lost && record.cancel_requested {
            // Its runner is gone and nobody wants it any more: it ends cancelled.
            let cancelled = self.transition_event(JobEventKind::JobCancelled, now);
            return match self
                .db
                .finish_cancelled(&record.id, None, now, &cancelled.event())
                .await
                .map_err(db_error)?
            {
                Some(record) => {
                    cancelled.publish(&record).await;
                    Ok(record)
                }
                None => self.load(&record.id).await,
            };
        }
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
        let failed = self.transition_event(JobEventKind::JobFailed, now);
        match self
            .db
            .fail_job(&record.id, None, now, &msg, &failed.event())
            .await
            .map_err(db_error)?
        {
            Some(record) => {
                failed.publish(&record).await;
                Ok(record)
            }
            None => self.load(&record.id).await,
        }
    }

    async fn execute(
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
        let supervisor = JobSupervisor {
            jobs: self,
            id,
            runner,
        };
        let outcome = match registry.get(&started.tool) {
            None => Err(Stopped::Failed(format!(
                "tool {:?} is no longer in the registry",
                started.tool
            ))),
            Some(spec) => run_tool(spec, &params, &supervisor),
        };
        let now = now_ms();
        let (finished, event) = match outcome {
            Err(Stopped::Cancelled) => {
                let cancelled = self.transition_event(JobEventKind::JobCancelled, now);
                let finished = self
                    .db
                    .finish_cancelled(&id, Some(runner), now, &cancelled.event())
                    .await
                    .map_err(db_error)?;
                (finished, cancelled)
            }
            Ok(outputs) => {
                let outs: Vec<NewOutput<'_>> = outputs
                    .iter()
                    .map(|(o, ct)| NewOutput {
                        name: &o.name,
                        content_type: ct,
                        content: &o.bytes,
                    })
                    .collect();
                let completed = self.transition_event(JobEventKind::JobCompleted, now);
                let duration = now - started.started_ms.unwrap_or(now);
                let finished = self
                    .db
                    .complete_job(&id, runner, now, duration, &outs, &completed.event())
                    .await
                    .map_err(db_error)?;
                (finished, completed)
            }
            Err(Stopped::Failed(msg)) => {
                let failed = self.transition_event(JobEventKind::JobFailed, now);
                let finished = self
                    .db
                    .fail_job(&id, Some(runner), now, &msg, &failed.event())
                    .await
                    .map_err(db_error)?;
                (finished, failed)
            }
        };
        // The update answers the finished row; `None` means another runner took the job
        // over (our lease ran out), so it is not ours to announce.
        match finished {
            Some(record) => {
                event.publish(&record).await;
                Ok(record)
            }
            None => self.load(&id).await,
        }
    }

    /// Finishes up to `limit` jobs that nobody is running. Returns how many it touched.
    pub async fn recover(&self, registry: &Registry, limit: u32) -> usize {
        let now = now_ms();
        let stale = match self.db.stale_jobs(now, now - QUEUED_GRACE_MS, limit).await {
            Ok(s) => s,
            Err(e) => {
                log_warn(&format!("cannot look for stale jobs: {e}"));
                return 0;
            }
        };
        for (id, tool) in &stale {
            log_info(&format!("recovering stale job {id}"));
            if let Err(e) = self.run(registry, id, tool).await {
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

    pub async fn load(&self, id: &JobId) -> Result<JobRecord, ApiError> {
        self.db
            .job(id)
            .await
            .map_err(db_error)?
            .ok_or_else(|| ApiError::NotFound(format!("no job with id {id}")))
    }

    /// The event `kind` of `record` as JSON, as published and recorded.
    fn event_json(&self, record: &JobRecord, kind: JobEventKind) -> String {
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
            progress: record
                .progress
                .clone()
                .filter(|_| kind == JobEventKind::JobProgress),
            source: self.source.to_string(),
        };
        serde_json::to_string(&event).unwrap_or_default()
    }

    /// A transition's event: recorded in SQLite by the transition's own transaction,
    /// then published once that has committed.
    fn transition_event(&self, kind: JobEventKind, at_ms: i64) -> Transition<'_> {
        Transition {
            jobs: self,
            kind,
            at_ms,
            payload: std::cell::RefCell::new(String::new()),
        }
    }

    /// Refreshes the status cache and publishes the event `payload` (already recorded
    /// in SQLite) on `job_updates`, and a `job_created` on `job_queue` too. Answers how
    /// many subscribers heard it (for `job_created`, how many workers), or `None` when
    /// Redis is unavailable.
    pub async fn publish(
        &self,
        record: &JobRecord,
        kind: JobEventKind,
        payload: &str,
    ) -> Option<i64> {
        if kind == JobEventKind::JobCreated {
            return self.publish_created(&[(record, payload)]).await;
        }
        // At once: a lone transition may be a run's start, which must show while it runs.
        data20_domain::log::emit(&transition_entry(record, kind, self.source));
        // The status write and the publish share one round trip: the status is cached
        // before anyone hears the event, so a reader woken by it finds the new status.
        let (status, ttl) = self.status_entry(record);
        let key = keys::job_status(&record.id);
        match self
            .redis
            .set_ex_and_publish(&key, &status, ttl, keys::JOB_UPDATES, payload.as_bytes())
            .await
        {
            Ok(n) => Some(n),
            Err(e) => {
                log_warn(&format!("cannot publish {}: {e}", kind.as_str()));
                None
            }
        }
    }

    /// New jobs' statuses cached and their `job_created` published on `job_updates`, in
    /// order, then one announcement to the workers on their own channel (unless one is
    /// still on its way), all in one round trip: answers how many workers listen, so
    /// "someone heard" means a worker did. `None`: Redis is unavailable.
    async fn publish_created(&self, created: &[(&JobRecord, &str)]) -> Option<i64> {
        let prepared = self.prepare_transitions(
            created
                .iter()
                .map(|(record, payload)| (*record, JobEventKind::JobCreated, *payload)),
        );
        let entries: Vec<StatusAndMessage<'_>> =
            prepared.iter().map(PreparedTransition::entry).collect();
        let commits = keys::counter(keys::SUBMISSION_COMMITS);
        let created_jobs = keys::counter(keys::SUBMISSION_JOBS);
        match self
            .redis
            .set_ex_and_announce_all(
                keys::JOB_UPDATES,
                keys::JOB_QUEUE,
                &entries,
                keys::JOB_QUEUE_WOKEN,
                keys::JOB_QUEUE_WOKEN_MS,
                [&commits, &created_jobs],
            )
            .await
        {
            Ok(n) => Some(n),
            Err(e) => {
                log_warn(&format!(
                    "cannot publish {} job_created: {e}",
                    entries.len()
                ));
                None
            }
        }
    }

    /// [`Jobs::publish`] for several transitions in one round trip, in order.
    async fn publish_all<'r>(
        &self,
        transitions: impl Iterator<Item = (&'r JobRecord, JobEventKind, &'r str)>,
    ) {
        let prepared = self.prepare_transitions(transitions);
        if prepared.is_empty() {
            return;
        }
        let entries: Vec<StatusAndMessage<'_>> =
            prepared.iter().map(PreparedTransition::entry).collect();
        if let Err(e) = self
            .redis
            .set_ex_and_publish_all(keys::JOB_UPDATES, &entries)
            .await
        {
            log_warn(&format!("cannot publish {} job events: {e}", entries.len()));
        }
    }

    /// Each transition's status key, cached status and TTL, with its event, logged on
    /// the way (their lines in one write): what one Lua call sets and publishes.
    fn prepare_transitions<'p>(
        &self,
        transitions: impl Iterator<Item = (&'p JobRecord, JobEventKind, &'p str)>,
    ) -> Vec<PreparedTransition<'p>> {
        let mut lines = Vec::new();
        let prepared = transitions
            .map(|(record, kind, message)| {
                lines.extend(data20_domain::log::render(&transition_entry(
                    record,
                    kind,
                    self.source,
                )));
                let (status, ttl_s) = self.status_entry(record);
                PreparedTransition {
                    key: keys::job_status(&record.id),
                    status,
                    ttl_s,
                    message,
                }
            })
            .collect();
        if !lines.is_empty() {
            data20_host::log::write_lines(lines);
        }
        prepared
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
    pub async fn cache_status(&self, record: &JobRecord) {
        let (bytes, ttl) = self.status_entry(record);
        if let Err(e) = self
            .redis
            .set_ex(&keys::job_status(&record.id), &bytes, ttl)
            .await
        {
            if !e.is_unavailable() {
                log_warn(&format!("cannot cache status of {}: {e}", record.id));
            }
        }
    }
}

/// One transition's event: its payload is rendered from the row the transition's
/// UPDATE answers (inside its transaction), kept, and published after the commit.
struct Transition<'j> {
    jobs: &'j Jobs<'j>,
    kind: JobEventKind,
    at_ms: i64,
    payload: std::cell::RefCell<String>,
}

impl Transition<'_> {
    fn event(&self) -> NewEvent<'_> {
        NewEvent {
            kind: self.kind.as_str(),
            at_ms: self.at_ms,
            payload: self,
        }
    }

    async fn publish(&self, record: &JobRecord) {
        let payload = self.payload.borrow().clone();
        self.jobs.publish(record, self.kind, &payload).await;
    }
}

impl data20_sqlite::jobs::EventPayload for Transition<'_> {
    fn render(&self, record: &JobRecord) -> String {
        let payload = self.jobs.event_json(record, self.kind);
        self.payload.replace(payload.clone());
        payload
    }
}

/// Seconds to cache a job's status: the configured TTL, cut short for a job that is
/// not final so the entry expires when the job would become stale (at least 1 s).
pub fn status_ttl_s(record: &JobRecord, now_ms: i64, configured_s: u64) -> u64 {
    let stale_at = match record.status {
        JobStatus::Queued => Some(record.created_ms + QUEUED_GRACE_MS),
        JobStatus::Running => record.lease_ms,
        JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled => None,
    };
    match stale_at {
        None => configured_s,
        Some(at) => {
            let remaining_s = ((at - now_ms).max(0) as u64).div_ceil(1000);
            remaining_s.clamp(1, configured_s.max(1))
        }
    }
}

/// Why a run ended without outputs.
enum Stopped {
    Failed(String),
    Cancelled,
}

/// How a job of a batch ended, kept until the batch records its endings.
enum Ended {
    Completed {
        duration_ms: i64,
        outputs: Vec<(data20_tools::Output, String)>,
    },
    Failed(String),
    Cancelled,
}

impl Ended {
    fn as_ending(&self) -> Ending<'_> {
        match self {
            Ended::Completed {
                duration_ms,
                outputs,
            } => Ending::Completed {
                duration_ms: *duration_ms,
                outputs: outputs
                    .iter()
                    .map(|(o, ct)| NewOutput {
                        name: &o.name,
                        content_type: ct,
                        content: &o.bytes,
                    })
                    .collect(),
            },
            Ended::Failed(error) => Ending::Failed {
                error: error.clone(),
            },
            Ended::Cancelled => Ending::Cancelled,
        }
    }
}

/// The runner's side of a running tool: the cancel flag in SQLite, and progress
/// stored with a `job_progress` event (the tool's checks throttle both).
struct JobSupervisor<'j> {
    jobs: &'j Jobs<'j>,
    id: JobId,
    runner: &'j str,
}

impl data20_tools::Supervisor for JobSupervisor<'_> {
    // Tools are synchronous code: their checks wait for the database in place, a few
    // times a second at most. Where that cannot be done ([`data20_host::block_on`]: a
    // job run inline by a WASIp3 HTTP component), a run is not cancelled midway and
    // reports no progress; its deadline still holds.
    fn cancelled(&self) -> bool {
        data20_host::block_on(self.jobs.db.cancel_requested(&self.id))
            .and_then(Result::ok)
            .unwrap_or(false)
    }

    fn progress(&self, fraction: f64, message: &str) {
        let progress = Progress {
            fraction: (fraction * 1000.0).round() / 1000.0,
            message: message.chars().take(200).collect(),
        };
        let event = self
            .jobs
            .transition_event(JobEventKind::JobProgress, now_ms());
        data20_host::block_on(async {
            match self
                .jobs
                .db
                .record_progress(&self.id, self.runner, &progress, &event.event())
                .await
            {
                Ok(Some(record)) => event.publish(&record).await,
                Ok(None) => {}
                Err(e) => log_warn(&format!("cannot record progress of {}: {e}", self.id)),
            }
        });
    }
}

/// Runs the tool against its declared outputs: an undeclared file fails the job.
fn run_tool(
    spec: &ToolSpec,
    params_json: &str,
    supervisor: &dyn data20_tools::Supervisor,
) -> Result<Vec<(data20_tools::Output, String)>, Stopped> {
    let params: serde_json::Value = serde_json::from_str(params_json)
        .map_err(|e| Stopped::Failed(format!("stored params are not JSON: {e}")))?;
    let timeout = || {
        Stopped::Failed(format!(
            "timeout: {} ran longer than {} s",
            spec.name, spec.timeout_s
        ))
    };
    let deadline = Deadline::supervised(Duration::from_secs(spec.timeout_s), supervisor);
    let outputs =
        data20_tools::run(spec.name.as_str(), &params, &deadline).map_err(|e| match e {
            ToolError::Timeout(_) => timeout(),
            ToolError::Cancelled => Stopped::Cancelled,
            other => Stopped::Failed(other.to_string()),
        })?;
    deadline.check().map_err(|e| match e {
        ToolError::Cancelled => Stopped::Cancelled,
        _ => timeout(),
    })?;
    outputs
        .into_iter()
        .map(|o| match spec.output(&o.name) {
            Some(decl) => {
                let ct = decl.content_type.clone();
                Ok((o, ct))
            }
            None => Err(Stopped::Failed(format!(
                "tool wrote an undeclared output {:?}",
                o.name
            ))),
        })
        .collect()
}

/// Whether `claimed` runs quickly ([`ToolSpec::runs_quickly`]) by `registry`.
fn is_quick(registry: &Registry, claimed: &Claimed) -> bool {
    registry
        .get(&claimed.record.tool)
        .is_some_and(|t| t.runs_quickly(&claimed.params))
}

/// How long a drain waits after `claimed` before its next claim: nothing after a full
/// claim (more are waiting), a slow job or none; else [`LINGER_PER_JOB`] for each job
/// it took, at most [`MAX_LINGER`]. So the wait follows the arrival rate: jobs trickling
/// in (a claim of one or two) wait a few milliseconds, while under a flood each wait
/// lets the next claim grow, until claims are full or the wait reaches its cap. The
/// turn is where a draining worker's share of the arrivals passes one job per
/// `LINGER_PER_JOB` (500 a second): then a claim of k jobs is followed by one of more
/// than k. Under `jobs-compare.sh`'s load this cut the workers' CPU per job by about
/// 30 % against a fixed 20 ms wait, and the API, which shares the two cores and
/// the write lock with them, accepted about 16 % more jobs (docs/BENCHMARKS.md).
fn linger_after(registry: &Registry, claimed: &[Claimed]) -> Duration {
    if drained_the_queue(registry, claimed) {
        (LINGER_PER_JOB * claimed.len() as u32).min(MAX_LINGER)
    } else {
        Duration::ZERO
    }
}

/// Whether a claim of quick jobs found fewer than it could take (by count and by
/// bytes, with room left for the largest quick job): the queue is empty, or it
/// stopped before a slow job, which is claimed alone. A claim of a slow job says
/// nothing of the queue.
fn drained_the_queue(registry: &Registry, claimed: &[Claimed]) -> bool {
    let bytes: usize = claimed.iter().map(|c| c.params.len()).sum();
    !claimed.is_empty()
        && claimed.len() < BATCH_SIZE as usize
        && bytes + QUICK_PARAMS_BYTES <= CLAIM_PARAMS_BYTES
        && claimed.iter().all(|c| is_quick(registry, c))
}

use data20_domain::log::{info as log_info, warn as log_warn};

/// The structured log entry of a job transition.
fn transition_entry(record: &JobRecord, kind: JobEventKind, source: &str) -> serde_json::Value {
    serde_json::json!({
        "level": "info", "msg": "job transition", "event": kind.as_str(),
        "job_id": record.id.to_string(), "tool": record.tool, "status": record.status.as_str(),
        "duration_ms": record.duration_ms, "error": record.error, "source": source,
    })
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

    fn claimed(tool: &str, params_bytes: usize) -> Claimed {
        let text = "x".repeat(params_bytes.saturating_sub(11));
        Claimed {
            record: JobRecord::queued(JobId::new(), tool, 0, "worker"),
            params: serde_json::json!({ "text": text }).to_string(),
        }
    }

    fn shipped_registry() -> Registry {
        Registry::load_dir(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../registry"
        )))
        .unwrap()
    }

    /// A claim of `n` small quick jobs.
    fn small(n: usize) -> Vec<Claimed> {
        (0..n).map(|_| claimed("text_stats", 200)).collect()
    }

    #[test]
    fn a_drain_lingers_only_after_a_claim_that_could_have_taken_more() {
        let registry = shipped_registry();
        assert!(drained_the_queue(&registry, &small(3)));
        assert!(
            !drained_the_queue(&registry, &small(BATCH_SIZE as usize)),
            "full by count"
        );
        let large: Vec<Claimed> = (0..4).map(|_| claimed("text_stats", 13 * 1024)).collect();
        assert!(!drained_the_queue(&registry, &large), "full by bytes");
        assert!(
            !drained_the_queue(&registry, &[claimed("json_query", 200)]),
            "a slow job"
        );
        assert!(!drained_the_queue(&registry, &[]), "nothing claimed");
    }

    #[test]
    fn a_drain_lingers_longer_the_more_its_last_claim_took() {
        let registry = shipped_registry();
        assert_eq!(linger_after(&registry, &small(1)), LINGER_PER_JOB);
        assert_eq!(linger_after(&registry, &small(10)), LINGER_PER_JOB * 10);
        assert!(linger_after(&registry, &small(10)) < MAX_LINGER);
        assert_eq!(linger_after(&registry, &small(63)), MAX_LINGER, "capped");
        assert_eq!(
            linger_after(&registry, &small(BATCH_SIZE as usize)),
            Duration::ZERO,
            "a full claim: more are waiting"
        );
        assert_eq!(linger_after(&registry, &[]), Duration::ZERO);
    }
}
