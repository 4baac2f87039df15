//! Hard limits: what a supervisor outside the WebAssembly enforces, and the messages
//! that pass between it and the workers.
//!
//! WebAssembly cannot pre-empt a guest, and Spin sets no deadline on an instance, so a
//! tool that loops without checking its deadline (a jq `def f: f; f`) runs for as
//! long as its process lives. The bound therefore comes from the process that runs
//! tools: a supervisor reads what every worker process is running (the `runner` and
//! `deadline_ms` of each running job in SQLite), kills a process whose job ran
//! [`KILL_AFTER_MS`] past its timeout, fails the job, and wakes the workers on
//! `job_wakeups` ([`crate::keys::JOB_WAKEUPS`]) to pick up the rest.

use serde::{Deserialize, Serialize};

/// The promise: a job that runs on past its `timeout_s` is failed within this much
/// more, 2 s. Long enough that a tool which checks its deadline always fails itself
/// first, with its own `timeout` (the check, the failure's commit and its publish take
/// well under 100 ms); short enough to stay well inside the lease's 5 s grace, so no
/// other runner takes a looping job over before it is killed.
pub const HARD_LIMIT_GRACE_MS: i64 = 2_000;

/// When the supervisor kills: 1 s past the deadline, leaving the rest of the grace for
/// the look that notices it (one every 250 ms), the kill, the failure's commit and a
/// replacement worker's start (about 0.4 s here), so that a job queued behind a killed
/// one can still end within the grace of its own posting. A tool that checks its
/// deadline still stops itself first (it does within milliseconds).
pub const KILL_AFTER_MS: i64 = 1_000;

/// When a liveness check that runs once a second (SpinKube's, the shortest period the
/// kubelet allows) fails a job: 0.8 s past its deadline, so that the check after it
/// comes no later than 1.8 s past it and the job is failed within the grace. A tool
/// that checks its deadline still stops itself first (it does within milliseconds).
pub const PROBED_KILL_AFTER_MS: i64 = 800;
const _: () = assert!(PROBED_KILL_AFTER_MS + 1_000 + 200 <= HARD_LIMIT_GRACE_MS);

/// A queued job older than this wakes the workers (it was posted while none listened).
pub const QUEUED_WAKE_AFTER_MS: i64 = 1_000;

/// Whether a job whose own timeout ends at `deadline_ms` is, at `now_ms`, more than
/// `kill_after_ms` past it ([`KILL_AFTER_MS`] or [`PROBED_KILL_AFTER_MS`]).
pub fn past_hard_limit(deadline_ms: Option<i64>, now_ms: i64, kill_after_ms: i64) -> bool {
    deadline_ms.is_some_and(|d| now_ms > d + kill_after_ms)
}

/// The error prefix of a job stopped by the hard limit (the soft limit's is the same
/// `timeout:`, so clients see one kind of failure for "ran too long").
pub const TIMEOUT: &str = "timeout";
/// The error prefix of a job whose instance trapped: memory cap, stack exhausted.
pub const RESOURCE_EXHAUSTED: &str = "resource_exhausted";

/// The counter (SQLite `counters`) of jobs the hard limit stopped.
pub const HARD_KILLED_COUNTER: &str = "jobs_hard_killed";
/// The counter of jobs failed because their instance trapped.
pub const TRAPPED_COUNTER: &str = "jobs_resource_exhausted";

/// A wake-up on `job_wakeups`: `{"event": "wake_up", "worker": "<id>"?}`.
/// Addressed to one worker process (`worker`), or to all. Whoever handles one is
/// between messages, so none of its instances is live: it fails any job still running
/// under its name (lost with a trapped instance), then drains.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WakeUp {
    pub event: WakeUpEvent,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WakeUpEvent {
    WakeUp,
}

impl WakeUp {
    pub fn to(worker: Option<&str>) -> WakeUp {
        WakeUp {
            event: WakeUpEvent::WakeUp,
            worker: worker.map(str::to_string),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Whether worker `me` should act on this wake-up.
    pub fn is_for(&self, me: Option<&str>) -> bool {
        match &self.worker {
            None => true,
            Some(to) => Some(to.as_str()) == me,
        }
    }
}

/// The prefix of the runner names a worker process uses: `worker:{id}:`.
pub fn runner_prefix(worker_id: &str) -> String {
    format!("worker:{worker_id}:")
}

/// The runner names of one subscription loop of a worker process:
/// `worker:{worker_id}:loop{n}:`, inside [`runner_prefix`]. A process's loops run at
/// once, so a loop that finds a run under its process's name cannot tell it was left
/// by a trapped instance unless it is its own loop's.
pub fn loop_prefix(worker_id: &str, worker_loop: u32) -> String {
    format!("{}loop{worker_loop}:", runner_prefix(worker_id))
}

/// The error of a job killed by the hard limit.
pub fn hard_limit_error(tool: &str, timeout_ms: i64) -> String {
    format!(
        "{TIMEOUT}: {tool} ran past its {} s timeout and the {} s grace without stopping, \
         so the hard limit killed the worker process running it; it is not run again",
        (timeout_ms.max(0) as u64).div_ceil(1000),
        HARD_LIMIT_GRACE_MS / 1000
    )
}

/// The error of a job whose instance trapped (out of memory at the instance cap,
/// stack exhausted): `memory_limit` is the cap in bytes when known.
pub fn trapped_error(memory_limit: Option<u64>) -> String {
    let cap = match memory_limit {
        Some(bytes) => format!(
            "the {} MiB memory cap of an instance",
            bytes / (1024 * 1024)
        ),
        None => "the memory cap of an instance".to_string(),
    };
    format!(
        "{RESOURCE_EXHAUSTED}: the tool's WebAssembly instance trapped before it finished: \
         it hit {cap}, or exhausted its call stack (deep recursion); it is not run again"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wake_ups_round_trip_and_know_their_addressee() {
        let all = WakeUp::to(None);
        assert_eq!(all.to_json(), r#"{"event":"wake_up"}"#);
        assert!(all.is_for(None) && all.is_for(Some("1-ab")));
        let one = WakeUp::to(Some("1-ab"));
        assert_eq!(one.to_json(), r#"{"event":"wake_up","worker":"1-ab"}"#);
        assert_eq!(
            serde_json::from_str::<WakeUp>(&one.to_json()).ok(),
            Some(one.clone())
        );
        assert!(one.is_for(Some("1-ab")));
        assert!(!one.is_for(Some("2-cd")) && !one.is_for(None));
        assert!(serde_json::from_str::<WakeUp>(r#"{"event":"job_created"}"#).is_err());
    }

    #[test]
    fn errors_name_their_limit() {
        let hard = hard_limit_error("json_query", 10_000);
        assert!(hard.starts_with("timeout: json_query"), "{hard}");
        assert!(
            hard.contains("10 s timeout") && hard.contains("2 s grace"),
            "{hard}"
        );
        let trapped = trapped_error(Some(256 * 1024 * 1024));
        assert!(trapped.starts_with("resource_exhausted: "), "{trapped}");
        assert!(trapped.contains("256 MiB"), "{trapped}");
        assert!(trapped_error(None).contains("memory cap"));
    }

    #[test]
    fn runner_names_start_with_the_worker_id() {
        assert_eq!(runner_prefix("1-ab"), "worker:1-ab:");
        assert_eq!(loop_prefix("1-ab", 2), "worker:1-ab:loop2:");
        assert!(loop_prefix("1-ab", 2).starts_with(&runner_prefix("1-ab")));
    }
}
