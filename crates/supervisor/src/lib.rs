//! The supervisor's decisions, kept pure so they can be tested without processes.
//!
//! Every look (a few a second) the supervisor reads what each worker process is
//! running from SQLite (`runner` names start with `worker:{worker_id}:`, `deadline_ms`
//! is the end of the job's own timeout) and [`plan`] answers what to do:
//! - **kill** a worker process whose job is [`KILL_AFTER_MS`] past its deadline, and
//!   fail the job (within `HARD_LIMIT_GRACE_MS` of its timeout): WebAssembly cannot
//!   pre-empt a guest, so a tool that never checks its deadline is stopped by ending
//!   its process;
//! - **wake one worker** once per job it runs: a worker handles its messages one at a
//!   time, so the wake-up is handled only when the instance running that job has ended.
//!   If the instance trapped (memory cap, stack), the job is still `running` then, and
//!   the worker fails it with `resource_exhausted` at once;
//! - **release the jobs queued behind a long run**: a worker runs a claimed batch in
//!   order, so jobs it claimed behind a job that has run for [`RELEASE_WAITING_AFTER_MS`]
//!   go back to the queue, and every worker is woken to take them. A claim takes a job
//!   that may run long alone (`data20_sqlite::batch::claim_sql`), so this is a
//!   safeguard: it acts only if a claim and its run disagree on which jobs are quick
//!   (the registry changed between them);
//! - **wake every worker** (at most once a second) while some job needs recovering: a
//!   queued job nobody took (it was posted while no worker listened), a running job
//!   whose lease ran out, the jobs a killed process leaves behind.

#![cfg(not(target_arch = "wasm32"))]

use data20_domain::limits::{past_hard_limit, runner_prefix, HARD_LIMIT_GRACE_MS, KILL_AFTER_MS};
use std::collections::HashMap;

/// Between two looks (the supervisor's loop, in `main.rs`).
pub const LOOK_EVERY_MS: i64 = 250;
// One look's delay and the kill itself (well under 200 ms) fit in what is left of the
// promised grace after the kill point.
const _: () = assert!(KILL_AFTER_MS + LOOK_EVERY_MS + 200 <= HARD_LIMIT_GRACE_MS);

/// A job running this long holds up the jobs its runner claimed behind it: they are
/// released. A batch of quick jobs runs each in well under this; a look comes every
/// [`LOOK_EVERY_MS`], so a waiting job is released at most ~350 ms after its batch
/// stalled, which keeps a job behind a looping one within its own hard limit.
pub const RELEASE_WAITING_AFTER_MS: i64 = 100;

/// Between two general wake-ups.
pub const WAKE_ALL_EVERY_MS: i64 = 1_000;
pub use data20_domain::limits::QUEUED_WAKE_AFTER_MS;

/// A running job, as the supervisor reads it from SQLite.
#[derive(Debug, Clone, PartialEq)]
pub struct RunningJob {
    pub id: String,
    pub tool: String,
    pub runner: String,
    /// `None`: claimed in a batch, waiting for its turn (never started).
    pub started_ms: Option<i64>,
    /// The end of the job's own timeout (`None`: claimed by a build without hard limits).
    pub deadline_ms: Option<i64>,
    pub lease_ms: Option<i64>,
}

/// What the supervisor saw in one look.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub now_ms: i64,
    /// Worker processes alive now, by id.
    pub live_workers: Vec<String>,
    pub running: Vec<RunningJob>,
    /// Some queued job is older than [`QUEUED_WAKE_AFTER_MS`].
    pub old_queued: bool,
    /// Subscription loops in each worker process (each runs one job at a time).
    pub loops_per_worker: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// SIGKILL worker `worker`, then fail `job` with `reason`.
    Kill {
        worker: String,
        job: String,
        reason: String,
        /// The process's other jobs already past their own timeout, to fail with it
        /// (`(job, reason)`): a process runs one job per loop, and the kill ends them
        /// all; a job still within its timeout is freed and runs again instead.
        also: Vec<(String, String)>,
    },
    /// Put back in the queue the jobs `runner` claimed but has not started, then wake
    /// everyone to take them.
    ReleaseWaiting(String),
    /// Publish a wake-up addressed to `worker`.
    WakeWorker(String),
    /// Publish an unaddressed wake-up.
    WakeAll,
}

/// What the supervisor remembers between looks.
#[derive(Debug, Default)]
pub struct Memory {
    /// The last job each worker was woken for.
    woken_for: HashMap<String, String>,
    last_wake_all_ms: Option<i64>,
}

impl Memory {
    /// Forgets a worker process that is gone.
    pub fn forget(&mut self, worker: &str) {
        self.woken_for.remove(worker);
    }
}

/// The worker (among `live`) whose runs `runner` names.
pub fn owner<'a>(runner: &str, live: &'a [String]) -> Option<&'a String> {
    live.iter().find(|w| runner.starts_with(&runner_prefix(w)))
}

/// Decides this look's actions (see the crate doc), updating `memory`.
pub fn plan(snap: &Snapshot, memory: &mut Memory) -> Vec<Action> {
    let now = snap.now_ms;
    let mut actions = Vec::new();
    let mut killed: Vec<&String> = Vec::new();
    for job in &snap.running {
        let Some(worker) = owner(&job.runner, &snap.live_workers) else {
            continue;
        };
        if past_hard_limit(job.deadline_ms, now, KILL_AFTER_MS) && !killed.contains(&worker) {
            killed.push(worker);
            let reason = |j: &RunningJob| {
                let timeout_ms = j.deadline_ms.unwrap_or(now) - j.started_ms.unwrap_or(now);
                data20_domain::limits::hard_limit_error(&j.tool, timeout_ms)
            };
            let also = snap
                .running
                .iter()
                .filter(|other| {
                    other.id != job.id && other.runner.starts_with(&runner_prefix(worker))
                })
                .filter(|other| other.deadline_ms.is_some_and(|d| d < now))
                .map(|other| (other.id.clone(), reason(other)))
                .collect();
            actions.push(Action::Kill {
                worker: worker.clone(),
                job: job.id.clone(),
                reason: reason(job),
                also,
            });
        }
    }
    // The waiting jobs of every runner stalled on a long run (not of one being killed:
    // the kill frees them), when some loop is free to take them: with none, they would
    // only wait in the queue instead.
    let busy_loops = snap
        .running
        .iter()
        .filter(|j| j.deadline_ms.is_some() && owner(&j.runner, &snap.live_workers).is_some())
        .count();
    let free_loop = busy_loops < snap.live_workers.len() * snap.loops_per_worker;
    for job in snap.running.iter().filter(|_| free_loop) {
        let stalled = job.deadline_ms.is_some()
            && job
                .started_ms
                .is_some_and(|s| now - s >= RELEASE_WAITING_AFTER_MS);
        let has_waiting = || {
            snap.running.iter().any(|w| {
                w.runner == job.runner && w.started_ms.is_none() && w.deadline_ms.is_none()
            })
        };
        let live = owner(&job.runner, &snap.live_workers).is_some_and(|w| !killed.contains(&w));
        if stalled && live && has_waiting() {
            actions.push(Action::ReleaseWaiting(job.runner.clone()));
        }
    }
    // One addressed wake-up per job a live worker runs, queued behind that run.
    for worker in snap.live_workers.iter().filter(|w| !killed.contains(w)) {
        let newest = snap
            .running
            .iter()
            .filter(|j| owner(&j.runner, &snap.live_workers) == Some(worker))
            .max_by_key(|j| j.started_ms);
        if let Some(job) = newest {
            if memory.woken_for.get(worker) != Some(&job.id) {
                memory.woken_for.insert(worker.clone(), job.id.clone());
                actions.push(Action::WakeWorker(worker.clone()));
            }
        }
    }
    let needs_recovery = snap.old_queued
        || !killed.is_empty()
        || snap.running.iter().any(|j| {
            j.lease_ms.is_some_and(|l| l < now) && owner(&j.runner, &snap.live_workers).is_none()
        });
    let due = memory
        .last_wake_all_ms
        .is_none_or(|at| now - at >= WAKE_ALL_EVERY_MS);
    if needs_recovery && due {
        memory.last_wake_all_ms = Some(now);
        actions.push(Action::WakeAll);
    }
    actions
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn job(id: &str, worker: &str, started_ms: i64, timeout_ms: i64) -> RunningJob {
        RunningJob {
            id: id.into(),
            tool: "json_query".into(),
            runner: format!("worker:{worker}:0000-run"),
            started_ms: Some(started_ms),
            deadline_ms: Some(started_ms + timeout_ms),
            lease_ms: Some(started_ms + timeout_ms + 5_000),
        }
    }

    fn snap(now_ms: i64, live: &[&str], running: Vec<RunningJob>) -> Snapshot {
        Snapshot {
            now_ms,
            live_workers: live.iter().map(|w| w.to_string()).collect(),
            running,
            old_queued: false,
            loops_per_worker: 1,
        }
    }

    fn kills(actions: &[Action]) -> Vec<(&str, &str)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Kill { worker, job, .. } => Some((worker.as_str(), job.as_str())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_kill_fails_the_process_s_other_overdue_job_and_frees_the_rest() {
        // Loops 1, 2 and 3 of worker w: one far past its limit, one just past its own
        // timeout, one well within it.
        let mut looping = job("a", "w", 0, 10_000);
        looping.runner = "worker:w:loop1:r1".into();
        let mut overdue = job("b", "w", 50, 10_000);
        overdue.runner = "worker:w:loop2:r2".into();
        let mut fine = job("c", "w", 9_000, 10_000);
        fine.runner = "worker:w:loop3:r3".into();
        let actions = plan(
            &snap(
                10_000 + KILL_AFTER_MS + 1,
                &["w"],
                vec![looping, overdue, fine],
            ),
            &mut Memory::default(),
        );
        let Some(Action::Kill { job, also, .. }) = actions.first() else {
            panic!("{actions:?}");
        };
        assert_eq!(job, "a");
        assert_eq!(
            also.iter().map(|(j, _)| j.as_str()).collect::<Vec<_>>(),
            ["b"]
        );
    }

    #[test]
    fn a_job_is_killed_only_once_past_its_timeout_and_the_grace() {
        let mut memory = Memory::default();
        let running = vec![job("j1", "1-aa", 0, 10_000)];
        // At the timeout, and until the kill point: the tool may still stop itself.
        for now in [10_000, 10_000 + KILL_AFTER_MS] {
            let actions = plan(&snap(now, &["1-aa"], running.clone()), &mut memory);
            assert!(kills(&actions).is_empty(), "{now}: {actions:?}");
        }
        let now = 10_001 + KILL_AFTER_MS;
        let actions = plan(&snap(now, &["1-aa"], running), &mut memory);
        assert_eq!(kills(&actions), [("1-aa", "j1")]);
        let Some(Action::Kill { reason, .. }) = actions.first() else {
            panic!("{actions:?}")
        };
        assert!(reason.starts_with("timeout: json_query") && reason.contains("10 s"));
        // The kill leaves a job to fail: everyone is woken to do it.
        assert!(actions.contains(&Action::WakeAll));
    }

    #[test]
    fn the_process_killed_is_the_one_whose_runner_name_holds_the_job() {
        let mut memory = Memory::default();
        let running = vec![
            job("late", "2-bb", 0, 1_000),
            job("fine", "1-aa", 0, 60_000),
            // A worker id that is a prefix of another must not match it.
            job("other", "2-bbx", 0, 60_000),
        ];
        let live = ["1-aa", "2-bb", "2-bbx"];
        let actions = plan(&snap(10_000, &live, running), &mut memory);
        assert_eq!(kills(&actions), [("2-bb", "late")]);
    }

    #[test]
    fn jobs_of_processes_not_ours_are_not_killed() {
        let mut memory = Memory::default();
        let foreign = job("j2", "9-zz", 0, 1_000);
        let mut api = job("j3", "x", 0, 1_000);
        api.runner = "api:0000".into();
        let actions = plan(&snap(100_000, &["1-aa"], vec![foreign, api]), &mut memory);
        assert!(kills(&actions).is_empty(), "{actions:?}");
        // Their leases are over: wake everyone to take them over.
        assert_eq!(actions, [Action::WakeAll]);
    }

    #[test]
    fn each_job_gets_one_addressed_wake_up_behind_its_run() {
        let mut memory = Memory::default();
        let s = snap(
            1_000,
            &["1-aa", "2-bb"],
            vec![job("j1", "1-aa", 500, 10_000)],
        );
        assert_eq!(plan(&s, &mut memory), [Action::WakeWorker("1-aa".into())]);
        assert!(plan(&s, &mut memory).is_empty(), "once per job");
        let next = snap(
            2_000,
            &["1-aa", "2-bb"],
            vec![job("j2", "1-aa", 1_500, 10_000)],
        );
        assert_eq!(
            plan(&next, &mut memory),
            [Action::WakeWorker("1-aa".into())]
        );
        // A restarted process (new id) starts afresh.
        memory.forget("1-aa");
        assert_eq!(
            plan(&next, &mut memory),
            [Action::WakeWorker("1-aa".into())]
        );
    }

    #[test]
    fn lost_and_waiting_jobs_wake_everyone_at_most_once_a_second() {
        let mut memory = Memory::default();
        let mut s = snap(10_000, &["1-aa"], vec![]);
        assert!(plan(&s, &mut memory).is_empty(), "nothing to do");
        s.old_queued = true;
        assert_eq!(plan(&s, &mut memory), [Action::WakeAll]);
        s.now_ms += WAKE_ALL_EVERY_MS - 1;
        assert!(plan(&s, &mut memory).is_empty());
        s.now_ms += 1;
        assert_eq!(plan(&s, &mut memory), [Action::WakeAll]);
        // A running job of a process that is gone, past its lease.
        let mut memory = Memory::default();
        let lost = snap(100_000, &["1-aa"], vec![job("j", "0-old", 0, 1_000)]);
        assert_eq!(plan(&lost, &mut memory), [Action::WakeAll]);
        // Before its lease ends it is not lost yet.
        let mut memory = Memory::default();
        let early = snap(2_000, &["1-aa"], vec![job("j", "0-old", 0, 1_000)]);
        assert!(plan(&early, &mut memory).is_empty());
    }

    #[test]
    fn one_kill_per_process_per_look() {
        let mut memory = Memory::default();
        let running = vec![job("a", "1-aa", 0, 1_000), job("b", "1-aa", 0, 1_000)];
        let actions = plan(&snap(60_000, &["1-aa"], running), &mut memory);
        assert_eq!(kills(&actions).len(), 1, "{actions:?}");
        assert!(
            !actions.contains(&Action::WakeWorker("1-aa".into())),
            "no wake-up for a process being killed"
        );
    }

    #[test]
    fn jobs_claimed_behind_a_long_run_are_released_and_only_theirs() {
        let mut memory = Memory::default();
        let waiting = |id: &str, runner: &str| RunningJob {
            started_ms: None,
            deadline_ms: None,
            runner: runner.into(),
            ..job(id, "w", 0, 10_000)
        };
        let mut long = job("long", "w", 1_000, 10_000);
        long.runner = "worker:w:loop1:r1".into();
        let mut quick = job("quick", "w", 1_000 + RELEASE_WAITING_AFTER_MS, 10_000);
        quick.runner = "worker:w:loop2:r2".into();
        // Run but not recorded yet: started, no deadline. Not waiting: never released.
        let mut ended = waiting("ended", "worker:w:loop1:r1");
        ended.started_ms = Some(900);
        let running = vec![
            long,
            quick,
            ended,
            waiting("behind-long", "worker:w:loop1:r1"),
            waiting("behind-quick", "worker:w:loop2:r2"),
        ];
        // One process of three loops, two of them busy.
        let at = |now: i64| {
            let mut s = snap(now, &["w"], running.clone());
            s.loops_per_worker = 3;
            plan(&s, &mut Memory::default())
        };
        let releases = |actions: &[Action]| -> Vec<String> {
            actions
                .iter()
                .filter_map(|a| match a {
                    Action::ReleaseWaiting(r) => Some(r.clone()),
                    _ => None,
                })
                .collect()
        };
        assert!(releases(&at(1_000 + RELEASE_WAITING_AFTER_MS - 1)).is_empty());
        // Both loops of the only process busy: nobody could take them.
        let mut all_busy = snap(1_000 + RELEASE_WAITING_AFTER_MS, &["w"], running.clone());
        all_busy.loops_per_worker = 2;
        assert!(releases(&plan(&all_busy, &mut Memory::default())).is_empty());
        all_busy.loops_per_worker = 3;
        assert_eq!(
            releases(&plan(&all_busy, &mut Memory::default())),
            ["worker:w:loop1:r1"]
        );
        assert_eq!(
            releases(&at(1_000 + RELEASE_WAITING_AFTER_MS)),
            ["worker:w:loop1:r1"]
        );
        // A process being killed: its jobs are freed by the kill, not released.
        let actions = plan(&snap(11_001 + KILL_AFTER_MS, &["w"], running), &mut memory);
        assert_eq!(kills(&actions).len(), 1);
        assert!(releases(&actions).is_empty(), "{actions:?}");
    }
}
