//! Redis key and channel names (SPEC §5). Built only from validated values.

pub const TOOL_REGISTRY: &str = "tool_registry";
pub const JOB_UPDATES: &str = "job_updates";
/// The supervisor's wake-ups (kept apart from `job_updates`, whose readers expect
/// lifecycle events only); see `crate::limits::WakeUp`.
pub const JOB_WAKEUPS: &str = "job_wakeups";
/// Every new job's `job_created` again, for the workers alone: they subscribe here,
/// not to `job_updates`, so the started, progress and completed events of a busy queue
/// (each would instantiate every worker loop's component) never wake them.
pub const JOB_QUEUE: &str = "job_queue";

/// Set while a `job_created` on [`JOB_QUEUE`] is on its way to the workers (its value:
/// how many heard it), deleted by each worker that hears one before it claims. While it
/// is set, new jobs are not announced again: the worker that deletes it claims them.
/// So under load the workers hear one message per drain, not one per job.
pub const JOB_QUEUE_WOKEN: &str = "job_queue:woken";

/// How long [`JOB_QUEUE_WOKEN`] outlives a publish nobody acted on (no worker, or all
/// busy): then the next job is announced again.
pub const JOB_QUEUE_WOKEN_MS: u64 = 200;

/// `job:{uuid}:status`: the caller passes a parsed job id.
pub fn job_status(job_id: &impl std::fmt::Display) -> String {
    format!("job:{job_id}:status")
}

/// `api:{client}:{window}`: one rate-limit counter per client and fixed window (the
/// caller passes a parsed IP address, or `key:{id}` for a key, and the window's index).
pub fn rate_limit(client: &impl std::fmt::Display, window: u64) -> String {
    format!("api:{client}:{window}")
}

/// Counters for the stats route, plain integer keys so that both read paths can
/// `INCRBY` them: `data20:stats:{name}`.
pub fn counter(name: &str) -> String {
    format!("data20:stats:{name}")
}

/// The counter of requests the limiter rejected.
pub const RATE_LIMITED: &str = "rate_limited";

/// The counters of the commits that created jobs and of the jobs they created
/// (`POST /api/run`'s group commit puts several jobs in one commit under load).
pub const SUBMISSION_COMMITS: &str = "submissions:commits";
pub const SUBMISSION_JOBS: &str = "submissions:jobs";

/// The hit and miss counters of a cache (`tool_registry`, `job_status`).
pub fn cache_counters(cache: &str) -> [String; 2] {
    [
        counter(&format!("{cache}:hit")),
        counter(&format!("{cache}:miss")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_layout_matches_the_spec() {
        assert_eq!(job_status(&"0b6c"), "job:0b6c:status");
        let ip: std::net::IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(rate_limit(&ip, 29_000_000), "api:127.0.0.1:29000000");
        let v6: std::net::IpAddr = "::1".parse().unwrap();
        assert_eq!(rate_limit(&v6, 7), "api:::1:7");
        assert_eq!(counter(RATE_LIMITED), "data20:stats:rate_limited");
        assert_eq!(
            cache_counters("job_status"),
            [
                "data20:stats:job_status:hit",
                "data20:stats:job_status:miss"
            ]
        );
    }
}
