//! `data20-supervisor`: runs data20's job workers under hard limits.
//!
//! It starts `DATA20_WORKERS` worker processes (`spin up -c job-worker`), each with its
//! own `worker_id`, and every 250 ms:
//! - starts again any worker that exited, once Redis answers (Spin stops a Redis
//!   trigger whose Redis went away); a worker that died with jobs running has their
//!   leases ended at once, so the next drain takes them over;
//! - reads the running jobs from SQLite and acts on [`data20_supervisor::plan`]: kills a
//!   process whose job ran past its timeout (SIGKILL, since a busy Spin process ignores
//!   SIGTERM), fails the job with `timeout` (its event recorded and published like any
//!   transition; it is never run again), ends the leases of the other jobs that process
//!   held, and publishes the wake-ups that make workers fail trapped runs and recover
//!   lost jobs.
//!
//! Settings (environment, as `scripts/up` passes them): `DATA20_WORKERS` (default 1),
//! `DATA20_WORKER_LOOPS` (subscription loops per worker process, 1 to 4, default 1),
//! `DATA20_STATE_DIR` (default `.spin`; the SQLite file is `sqlite_db.db` in it),
//! `DATA20_MANIFEST` (default `spin.toml`), `DATA20_RUNTIME_CONFIG` (optional),
//! `SPIN_VARIABLE_REDIS_URL`, `SPIN_MAX_INSTANCE_MEMORY` (passed on to the workers so
//! their errors name it), `TOKIO_WORKER_THREADS` (the workers' runtime threads; default
//! one per loop). SIGTERM or SIGINT stops every worker it started.

// pre_exec (setpgid, PR_SET_PDEATHSIG) and kill(2) on the workers' process groups.
#![allow(unsafe_code)]

use anyhow::{Context, Result};
use data20_domain::keys;
use data20_domain::limits::{runner_prefix, WakeUp, HARD_KILLED_COUNTER};
use data20_domain::{JobEvent, JobEventKind, JobId, JobStatus};
use data20_supervisor::{plan, Action, Memory, RunningJob, Snapshot, QUEUED_WAKE_AFTER_MS};
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const LOOK_EVERY: Duration = Duration::from_millis(data20_supervisor::LOOK_EVERY_MS as u64);
/// A worker that exited is started again no sooner than this.
const RESTART_PAUSE: Duration = Duration::from_millis(500);
/// How long workers get to stop on SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(3);

struct Config {
    workers: usize,
    loops: usize,
    state_dir: PathBuf,
    manifest: String,
    runtime_config: Option<String>,
    redis_url: String,
    memory_limit: Option<String>,
    /// Tokio worker threads per worker process (`TOKIO_WORKER_THREADS`).
    runtime_threads: String,
}

impl Config {
    fn from_env() -> Result<Config> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let workers = match var("DATA20_WORKERS") {
            Some(n) => n
                .trim()
                .parse()
                .with_context(|| format!("DATA20_WORKERS={n:?} is not a whole number"))?,
            None => 1,
        };
        let loops = match var("DATA20_WORKER_LOOPS") {
            Some(n) => worker_loops(&n)?,
            None => DEFAULT_LOOPS,
        };
        Ok(Config {
            workers,
            loops,
            state_dir: PathBuf::from(var("DATA20_STATE_DIR").unwrap_or_else(|| ".spin".into())),
            manifest: var("DATA20_MANIFEST").unwrap_or_else(|| "spin.toml".into()),
            runtime_config: var("DATA20_RUNTIME_CONFIG"),
            redis_url: var("SPIN_VARIABLE_REDIS_URL")
                .unwrap_or_else(|| data20_domain::settings::defaults::REDIS_URL.into()),
            memory_limit: var("SPIN_MAX_INSTANCE_MEMORY"),
            runtime_threads: runtime_threads(var("TOKIO_WORKER_THREADS"), loops),
        })
    }
}

/// Subscription loops per worker process, when `DATA20_WORKER_LOOPS` is unset. Every
/// `job_created` wakes every loop, and a wake-up costs the worker a fresh instance and a
/// Redis connection even when another loop has already taken the job: with two worker
/// processes, one loop each completed the most jobs per second end to end
/// (docs/BENCHMARKS.md); more loops cut the drain lag instead.
const DEFAULT_LOOPS: usize = 1;
/// The loops the manifest declares: `job-worker`, then `job-worker-loop2` and on.
const MAX_LOOPS: usize = 4;

/// `DATA20_WORKER_LOOPS`: 1 to [`MAX_LOOPS`].
fn worker_loops(raw: &str) -> Result<usize> {
    match raw.trim().parse::<usize>() {
        Ok(n @ 1..=MAX_LOOPS) => Ok(n),
        _ => anyhow::bail!(
            "DATA20_WORKER_LOOPS={raw:?} is not a whole number from 1 to {MAX_LOOPS} \
             (the manifest declares {MAX_LOOPS} worker loops)"
        ),
    }
}

/// Tokio worker threads for a worker process: the caller's `TOKIO_WORKER_THREADS`, or
/// one per subscription loop. Spin's default is one per core; a loop handles one message
/// at a time, so more threads only wake each other (with one thread per process the
/// workers spent about a tenth less CPU per job, docs/BENCHMARKS.md).
fn runtime_threads(inherited: Option<String>, loops: usize) -> String {
    inherited.unwrap_or_else(|| loops.to_string())
}

/// The `spin up -c` arguments that run `loops` worker loops in one process.
fn loop_components(loops: usize) -> Vec<String> {
    (1..=loops)
        .flat_map(|n| {
            let component = match n {
                1 => "job-worker".to_string(),
                n => format!("job-worker-loop{n}"),
            };
            ["-c".to_string(), component]
        })
        .collect()
}

fn log(msg: &str) {
    eprintln!("data20-supervisor: {msg}");
}

fn now_ms() -> i64 {
    data20_domain::time::now_ms()
}

/// One worker process: `spin up` as the leader of its own process group.
struct Worker {
    id: String,
    child: Child,
}

impl Worker {
    fn start(config: &Config, slot: usize) -> Result<Worker> {
        let id = format!("{slot}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let mut cmd = Command::new("spin");
        cmd.env("TOKIO_WORKER_THREADS", &config.runtime_threads)
            .arg("up")
            .arg("-f")
            .arg(&config.manifest)
            .arg("--state-dir")
            .arg(&config.state_dir);
        if let Some(rc) = &config.runtime_config {
            cmd.arg("--runtime-config-file").arg(rc);
        }
        cmd.args(loop_components(config.loops))
            .arg("--variable")
            .arg(format!("worker_id={id}"));
        if let Some(limit) = &config.memory_limit {
            cmd.arg("--variable")
                .arg(format!("worker_memory_limit={limit}"));
        }
        // Its own process group, so a kill reaches the trigger process Spin starts
        // under it; and it goes when the supervisor goes, however that happens.
        unsafe {
            cmd.pre_exec(|| {
                libc::setpgid(0, 0);
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .context("cannot start `spin up -c job-worker`")?;
        let pid_file = config.state_dir.join(format!("worker-{slot}.pid"));
        std::fs::write(&pid_file, format!("{}\n", child.id()))
            .with_context(|| format!("cannot write {}", pid_file.display()))?;
        log(&format!(
            "started job worker {slot} as {id} (pid {}, {} loops)",
            child.id(),
            config.loops
        ));
        Ok(Worker { id, child })
    }

    fn signal(&self, signal: i32) {
        unsafe {
            libc::kill(-(self.child.id() as i32), signal);
        }
    }

    /// SIGKILL to the whole group, and wait for the leader.
    fn kill(mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
    }
}

#[derive(Default)]
struct Slot {
    worker: Option<Worker>,
    exited_at: Option<Instant>,
}

impl Slot {
    /// Empty, and past the pause after its worker exited.
    fn due(&self) -> bool {
        self.worker.is_none()
            && self
                .exited_at
                .is_none_or(|at| at.elapsed() >= RESTART_PAUSE)
    }
}

/// The SQLite database the workers share, opened once it exists (Spin creates it).
struct Store {
    path: PathBuf,
    conn: Option<Connection>,
}

impl Store {
    fn conn(&mut self) -> Option<&mut Connection> {
        if self.conn.is_none() && self.path.exists() {
            let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
            match Connection::open_with_flags(&self.path, flags) {
                Ok(c) => {
                    let _ = c.busy_timeout(Duration::from_secs(2));
                    self.conn = Some(c);
                }
                Err(e) => log(&format!("cannot open {}: {e}", self.path.display())),
            }
        }
        self.conn.as_mut()
    }

    /// Running jobs and whether a queued one has waited too long. A database not yet
    /// migrated to the hard-limit columns has nothing to supervise yet.
    fn look(&mut self, now: i64) -> Result<(Vec<RunningJob>, bool)> {
        let Some(conn) = self.conn() else {
            return Ok((Vec::new(), false));
        };
        let mut stmt = conn.prepare_cached(
            "SELECT id, tool, runner, started_ms, deadline_ms, lease_ms \
             FROM jobs WHERE status = 'running'",
        )?;
        let running = stmt
            .query_map([], |row| {
                Ok(RunningJob {
                    id: row.get(0)?,
                    tool: row.get(1)?,
                    runner: row.get::<_, Option<String>>(2)?.unwrap_or_default(),
                    started_ms: row.get(3)?,
                    deadline_ms: row.get(4)?,
                    lease_ms: row.get(5)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let old_queued: bool = conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM jobs WHERE status = 'queued' AND created_ms < ?)",
            )?
            .query_row([now - QUEUED_WAKE_AFTER_MS], |row| row.get(0))?;
        Ok((running, old_queued))
    }

    /// After killing `worker`: fails `job` with `reason` (if it is still running: it may
    /// have ended just before the kill), with its `job_failed` event, counts it, and
    /// frees the other jobs the process held. One transaction. Answers the event to
    /// publish, when the job was failed here.
    fn record_kill(&mut self, worker: &str, job: &str, reason: &str) -> Result<Option<String>> {
        let conn = self.conn().context("no database")?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let now = now_ms();
        let failed = tx
            .query_row(
                "UPDATE jobs SET status = 'failed', finished_ms = ?1, \
                   duration_ms = CASE WHEN started_ms IS NULL THEN NULL ELSE ?1 - started_ms END, \
                   lease_ms = NULL, error = ?2 \
                 WHERE id = ?3 AND status = 'running' RETURNING tool, duration_ms",
                rusqlite::params![now, reason, job],
                |row| Ok((row.get::<_, String>(0)?, row.get::<_, Option<i64>>(1)?)),
            )
            .optional()?;
        let event = match failed {
            None => None,
            Some((tool, duration_ms)) => {
                let event = JobEvent {
                    event: JobEventKind::JobFailed,
                    job_id: JobId::parse(job).context("a running job with a bad id")?,
                    tool,
                    status: JobStatus::Failed,
                    timestamp: data20_domain::time::rfc3339_ms(now),
                    duration_ms,
                    output_files: None,
                    error: Some(reason.to_string()),
                    progress: None,
                    source: "supervisor".into(),
                };
                let payload = serde_json::to_string(&event)?;
                tx.execute(
                    "INSERT INTO job_events (job_id, event, at_ms, payload) VALUES (?, ?, ?, ?)",
                    rusqlite::params![job, JobEventKind::JobFailed.as_str(), now, payload],
                )?;
                tx.execute(
                    "INSERT INTO counters (name, value) VALUES (?, 1) \
                     ON CONFLICT (name) DO UPDATE SET value = value + 1",
                    [HARD_KILLED_COUNTER],
                )?;
                Some(payload)
            }
        };
        free_leases(&tx, worker)?;
        tx.commit()?;
        Ok(event)
    }

    /// Puts back in the queue the jobs `runner` claimed and has not started (see
    /// `data20_sqlite::batch`: no `started_ms`, no `deadline_ms`). A job it has run but
    /// not recorded yet has a `started_ms` and stays. Answers how many.
    fn release_waiting(&mut self, runner: &str) -> Result<usize> {
        let conn = self.conn().context("no database")?;
        Ok(conn.execute(
            "UPDATE jobs SET status = 'queued', runner = NULL, lease_ms = NULL \
             WHERE status = 'running' AND runner = ? \
               AND started_ms IS NULL AND deadline_ms IS NULL",
            [runner],
        )?)
    }

    /// After `worker` died on its own: its running jobs may be taken over at once.
    fn record_exit(&mut self, worker: &str) -> Result<usize> {
        let conn = self.conn().context("no database")?;
        Ok(free_leases(conn, worker)?)
    }
}

/// Ends the leases of `worker`'s running jobs: the next drain takes them over.
fn free_leases(conn: &Connection, worker: &str) -> rusqlite::Result<usize> {
    let prefix = runner_prefix(worker);
    conn.execute(
        "UPDATE jobs SET lease_ms = ? WHERE status = 'running' \
           AND substr(runner, 1, length(?)) = ?",
        rusqlite::params![now_ms() - 1, prefix, prefix],
    )
}

/// Redis, for PING and the wake-ups; reconnects after any error.
struct Bus {
    url: String,
    conn: Option<redis::Connection>,
}

impl Bus {
    fn with_conn<T>(
        &mut self,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Option<T> {
        if self.conn.is_none() {
            let client = redis::Client::open(self.url.as_str()).ok()?;
            let conn = client
                .get_connection_with_timeout(Duration::from_secs(1))
                .ok()?;
            let _ = conn.set_read_timeout(Some(Duration::from_secs(1)));
            let _ = conn.set_write_timeout(Some(Duration::from_secs(1)));
            self.conn = Some(conn);
        }
        let conn = self.conn.as_mut()?;
        match f(conn) {
            Ok(v) => Some(v),
            Err(_) => {
                self.conn = None;
                None
            }
        }
    }

    fn answers(&mut self) -> bool {
        self.with_conn(|c| redis::cmd("PING").query::<String>(c))
            .is_some()
    }

    /// A job's status changed behind the cache: drop the cached document (the next
    /// read is a MISS and sees SQLite) and publish the event on `job_updates`.
    fn announce(&mut self, job: &str, payload: &str) {
        let key = keys::job_status(&job);
        let sent = self.with_conn(|c| {
            redis::pipe()
                .cmd("DEL")
                .arg(&key)
                .ignore()
                .cmd("PUBLISH")
                .arg(keys::JOB_UPDATES)
                .arg(payload)
                .query::<(i64,)>(c)
        });
        if sent.is_none() {
            log(&format!(
                "cannot announce the failure of job {job} (Redis down?)"
            ));
        }
    }

    fn wake(&mut self, worker: Option<&str>) {
        let payload = WakeUp::to(worker).to_json();
        self.with_conn(|c| {
            redis::cmd("PUBLISH")
                .arg(keys::JOB_WAKEUPS)
                .arg(&payload)
                .query::<i64>(c)
        });
    }
}

fn main() -> Result<()> {
    let config = Config::from_env()?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("cannot install signal handlers")?;
    }
    let mut slots: Vec<Slot> = (0..config.workers).map(|_| Slot::default()).collect();
    let mut store = Store {
        path: config.state_dir.join("sqlite_db.db"),
        conn: None,
    };
    let mut bus = Bus {
        url: config.redis_url.clone(),
        conn: None,
    };
    let mut memory = Memory::default();
    while !stop.load(Ordering::Relaxed) {
        reap(&mut slots, &mut store, &mut memory);
        if slots.iter().any(Slot::due) && bus.answers() {
            for (i, slot) in slots.iter_mut().enumerate() {
                if slot.due() {
                    match Worker::start(&config, i + 1) {
                        Ok(w) => slot.worker = Some(w),
                        Err(e) => log(&format!("{e:#}")),
                    }
                    slot.exited_at = None;
                }
            }
        }
        let now = now_ms();
        match store.look(now) {
            Ok((running, old_queued)) => {
                let snapshot = Snapshot {
                    now_ms: now,
                    live_workers: slots
                        .iter()
                        .filter_map(|s| s.worker.as_ref().map(|w| w.id.clone()))
                        .collect(),
                    running,
                    old_queued,
                    loops_per_worker: config.loops,
                };
                for action in plan(&snapshot, &mut memory) {
                    act(action, &mut slots, &mut store, &mut bus, &mut memory);
                }
            }
            // Not created or not migrated yet, or busy: look again next time.
            Err(e) => {
                if !e.to_string().contains("no such") {
                    log(&format!("cannot read the jobs: {e:#}"));
                }
                store.conn = None;
            }
        }
        std::thread::sleep(LOOK_EVERY);
    }
    shutdown(slots);
    Ok(())
}

/// Notices workers that exited on their own.
fn reap(slots: &mut [Slot], store: &mut Store, memory: &mut Memory) {
    for (i, slot) in slots.iter_mut().enumerate() {
        let Some(worker) = slot.worker.as_mut() else {
            continue;
        };
        let Ok(Some(status)) = worker.child.try_wait() else {
            continue;
        };
        let id = worker.id.clone();
        // Whatever the trigger left behind in the group.
        worker.signal(libc::SIGKILL);
        slot.worker = None;
        slot.exited_at = Some(Instant::now());
        memory.forget(&id);
        log(&format!(
            "job worker {} ({id}) exited ({status}); starting it again once Redis answers",
            i + 1
        ));
        match store.record_exit(&id) {
            Ok(0) => {}
            Ok(n) => log(&format!("{n} job(s) of {id} may be taken over now")),
            Err(e) => log(&format!("cannot free the jobs of {id}: {e:#}")),
        }
    }
}

fn act(action: Action, slots: &mut [Slot], store: &mut Store, bus: &mut Bus, memory: &mut Memory) {
    match action {
        Action::Kill {
            worker,
            job,
            reason,
            also,
        } => {
            let Some(slot) = slots
                .iter_mut()
                .find(|s| s.worker.as_ref().is_some_and(|w| w.id == worker))
            else {
                return;
            };
            if let Some(w) = slot.worker.take() {
                log(&format!(
                    "job {job} is past its hard limit: killing worker {worker}"
                ));
                w.kill();
            }
            memory.forget(&worker);
            // Started again on the next look, without the usual pause.
            slot.exited_at = None;
            for (job, reason) in std::iter::once((job, reason)).chain(also) {
                match store.record_kill(&worker, &job, &reason) {
                    Ok(Some(event)) => {
                        log(&format!("job {job} failed: {reason}"));
                        bus.announce(&job, &event);
                    }
                    Ok(None) => {}
                    Err(e) => log(&format!("cannot fail job {job}: {e:#}")),
                }
            }
        }
        Action::ReleaseWaiting(runner) => match store.release_waiting(&runner) {
            Ok(0) => {}
            Ok(n) => {
                log(&format!(
                    "{n} job(s) claimed by {runner} wait behind a long run: back in the queue"
                ));
                bus.wake(None);
            }
            Err(e) => log(&format!(
                "cannot release the jobs waiting on {runner}: {e:#}"
            )),
        },
        Action::WakeWorker(worker) => bus.wake(Some(&worker)),
        Action::WakeAll => bus.wake(None),
    }
}

fn shutdown(slots: Vec<Slot>) {
    let workers: Vec<Worker> = slots.into_iter().filter_map(|s| s.worker).collect();
    for w in &workers {
        w.signal(libc::SIGTERM);
    }
    let deadline = Instant::now() + STOP_GRACE;
    for mut w in workers {
        while Instant::now() < deadline && matches!(w.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        // A Spin process whose instance is busy in a loop ignores SIGTERM.
        w.kill();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// A database at the newest schema, made by the real migration files.
    fn store() -> (Store, PathBuf) {
        let dir = std::env::temp_dir().join(format!("data20-supervisor-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sqlite_db.db");
        let conn = Connection::open(&path).unwrap();
        for migration in data20_sqlite::migrations::MIGRATIONS {
            conn.execute_batch(migration.sql).unwrap();
        }
        (Store { path, conn: None }, dir)
    }

    fn running(store: &mut Store, id: &str, runner: &str, deadline_ms: i64) {
        store
            .conn()
            .unwrap()
            .execute(
                "INSERT INTO jobs (id, tool, params, status, created_ms, started_ms, attempts, \
                   lease_ms, runner, deadline_ms) \
                 VALUES (?, 'json_query', '{}', 'running', 0, 0, 1, ?, ?, ?)",
                rusqlite::params![id, deadline_ms + 5_000, runner, deadline_ms],
            )
            .unwrap();
    }

    const LOOPING: &str = "00000000-0000-7000-8000-000000000001";
    const BESIDE: &str = "00000000-0000-7000-8000-000000000002";
    const ELSEWHERE: &str = "00000000-0000-7000-8000-000000000003";

    #[test]
    fn loops_name_the_manifest_s_worker_components() {
        assert_eq!(loop_components(1), ["-c", "job-worker"]);
        assert_eq!(
            loop_components(3),
            [
                "-c",
                "job-worker",
                "-c",
                "job-worker-loop2",
                "-c",
                "job-worker-loop3"
            ]
        );
        assert_eq!(worker_loops(" 4 ").unwrap(), 4);
        for bad in ["0", "5", "two", ""] {
            assert!(worker_loops(bad).is_err(), "{bad:?}");
        }
        // Every loop the supervisor can ask for is in the manifest.
        let manifest = include_str!("../../../spin.toml");
        for component in loop_components(MAX_LOOPS).iter().skip(1).step_by(2) {
            assert!(
                manifest.contains(&format!("component = \"{component}\"")),
                "{component} has no trigger in spin.toml"
            );
        }
    }

    #[test]
    fn a_worker_runs_a_runtime_thread_per_loop_unless_told_otherwise() {
        assert_eq!(runtime_threads(None, 1), "1");
        assert_eq!(runtime_threads(None, 3), "3");
        assert_eq!(runtime_threads(Some("2".into()), 1), "2");
    }

    #[test]
    fn releasing_puts_back_only_the_runner_s_jobs_that_never_started() {
        let (mut store, dir) = store();
        let far = now_ms() + 60_000;
        running(&mut store, LOOPING, "worker:1-aa:run1", far);
        running(&mut store, BESIDE, "worker:1-aa:run1", far);
        running(&mut store, ELSEWHERE, "worker:1-aa:run2", far);
        let conn = store.conn().unwrap();
        // BESIDE was claimed and waits; ELSEWHERE waits too, on another runner; LOOPING
        // is the one running.
        conn.execute(
            "UPDATE jobs SET started_ms = NULL, deadline_ms = NULL WHERE id IN (?, ?)",
            [BESIDE, ELSEWHERE],
        )
        .unwrap();
        assert_eq!(store.release_waiting("worker:1-aa:run1").unwrap(), 1);
        let conn = store.conn().unwrap();
        let row = |id: &str| -> (String, Option<String>, Option<i64>) {
            conn.query_row(
                "SELECT status, runner, lease_ms FROM jobs WHERE id = ?",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap()
        };
        assert_eq!(row(BESIDE), ("queued".into(), None, None));
        assert_eq!(row(LOOPING).0, "running");
        assert_eq!(row(ELSEWHERE).0, "running");
        // Once released, nothing is left to release.
        assert_eq!(store.release_waiting("worker:1-aa:run1").unwrap(), 0);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_kill_fails_the_job_with_its_event_and_frees_the_rest_of_that_process() {
        let (mut store, dir) = store();
        let far = now_ms() + 60_000;
        running(&mut store, LOOPING, "worker:1-aa:run1", 10_000);
        running(&mut store, BESIDE, "worker:1-aa:run2", far);
        running(&mut store, ELSEWHERE, "worker:1-aab:run3", far);
        let (seen, _) = store.look(now_ms()).unwrap();
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[0].deadline_ms, Some(10_000));

        let reason = data20_domain::limits::hard_limit_error("json_query", 10_000);
        let event = store
            .record_kill("1-aa", LOOPING, &reason)
            .unwrap()
            .unwrap();
        let event: serde_json::Value = serde_json::from_str(&event).unwrap();
        assert_eq!(event["event"], "job_failed");
        assert_eq!(event["status"], "failed");
        assert_eq!(event["job_id"], LOOPING);
        assert_eq!(event["error"], reason.as_str());

        let conn = store.conn().unwrap();
        let (status, error, lease): (String, String, Option<i64>) = conn
            .query_row(
                "SELECT status, error, lease_ms FROM jobs WHERE id = ?",
                [LOOPING],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(
            (status.as_str(), error, lease),
            ("failed", reason.clone(), None)
        );
        let recorded: String = conn
            .query_row(
                "SELECT payload FROM job_events WHERE job_id = ?",
                [LOOPING],
                |r| r.get(0),
            )
            .unwrap();
        assert!(recorded.contains("job_failed"));
        let killed: i64 = conn
            .query_row(
                "SELECT value FROM counters WHERE name = ?",
                [HARD_KILLED_COUNTER],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(killed, 1);
        // The killed process's other job may be taken over now; another process's not.
        let lease = |id: &str| -> i64 {
            conn.query_row("SELECT lease_ms FROM jobs WHERE id = ?", [id], |r| r.get(0))
                .unwrap()
        };
        assert!(lease(BESIDE) < now_ms());
        assert_eq!(lease(ELSEWHERE), far + 5_000);

        // A job that ended before the kill is left alone, and counted once.
        assert!(store
            .record_kill("1-aa", LOOPING, &reason)
            .unwrap()
            .is_none());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn no_database_yet_is_nothing_to_supervise() {
        let mut store = Store {
            path: std::env::temp_dir().join("data20-supervisor-none/sqlite_db.db"),
            conn: None,
        };
        assert_eq!(store.look(now_ms()).unwrap(), (Vec::new(), false));
        assert!(
            !store.path.exists(),
            "the supervisor must not create the database"
        );
    }
}
