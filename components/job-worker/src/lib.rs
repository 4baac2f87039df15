//! The job worker: a Redis trigger on `job_updates`.
//!
//! Spin's Redis trigger hands a process's messages to the component one at a time,
//! and every message wakes it. So a `job_created` wake-up *drains*: it runs every
//! queued job (and any running job whose runner lost its lease), in batches, until
//! none is left. A job is announced on `job_queue` only while no announcement is on its
//! way (`keys::JOB_QUEUE_WOKEN`): a wake-up deletes that key *before* it claims, so a
//! job committed before the delete is claimed by this drain, and a job committed after
//! it is announced again. Under load the workers hear one message per drain instead
//! of one per job (each costs an instance and a Redis connection). A drain that stops at
//! its limits with jobs left announces them again itself. Events other than
//! `job_created` leave before any host call. Several workers may be subscribed: each claim is a conditional
//! UPDATE, so exactly one runs each job. After draining, a wake-up deletes one small
//! batch of jobs past their retention.
//!
//! It also listens on `job_wakeups`, where the supervisor (`data20-supervisor`, run by
//! `scripts/up`) wakes it to recover lost jobs and to fail the jobs it left running
//! when an instance trapped (see `data20_domain::limits`).

// The Spin export macros generate the ABI glue with `unsafe`; our own code has none.
#![allow(unsafe_code)]

// The build's SDK, as the export macros name it (SPEC §7): WASIp3 by default, the
// 5.2 line for the compatibility build.
#[cfg(feature = "sdk5")]
extern crate sdk5 as spin_sdk;
#[cfg(feature = "sdk6")]
extern crate sdk6 as spin_sdk;

use data20_domain::limits::WakeUp;
use data20_jobs::Jobs;
use data20_redis::keys;
use data20_sqlite::Db;
use std::time::Duration;

/// Jobs one wake-up runs at most, and for how long it keeps picking new ones, so a
/// flood of work never holds one invocation for ever (the next message goes on).
const DRAIN_MAX_JOBS: usize = 1_000;
const DRAIN_BUDGET: Duration = Duration::from_secs(10);

data20_host::redis_export!(on_message);

async fn on_message(message: Vec<u8>) -> Result<(), String> {
    drain(message).await.map_err(|e| e.to_string())
}

async fn drain(message: Vec<u8>) -> anyhow::Result<()> {
    let Some(wake) = wake(&message) else {
        return Ok(());
    };
    let settings = data20_http::settings().await;
    // A wake-up addressed to another worker process leaves after one variable read.
    if let Wake::Supervisor(w) = &wake {
        if !w.is_for(settings.worker_id()) {
            return Ok(());
        }
    }
    let redis = data20_http::redis(&settings);
    if matches!(wake, Wake::Created) {
        // Before the claim: every job committed from here on is announced again. Redis
        // down: nothing was suppressed, drain anyway.
        let _ = redis.del(&[keys::JOB_QUEUE_WOKEN.to_string()]).await;
    }
    // Claims and completions need no fsync; see `Db::open_for_transitions`.
    let db = Db::open_for_transitions().await?;
    let jobs = Jobs {
        db: &db,
        redis: &redis,
        settings: &settings,
        source: "worker",
    };
    if matches!(wake, Wake::Supervisor(_)) {
        // This process is between messages, so none of its instances is live: what it
        // left running was lost with a trapped instance.
        jobs.fail_orphans().await;
    }
    let registry = async || data20_http::registry::fetch(&settings, &redis).await;
    let started = std::time::Instant::now();
    let ran = jobs.drain(registry, DRAIN_MAX_JOBS, DRAIN_BUDGET).await?;
    if ran >= DRAIN_MAX_JOBS || started.elapsed() >= DRAIN_BUDGET {
        // Stopped at a limit, maybe with jobs left that nobody will announce again.
        let _ = redis
            .publish(keys::JOB_QUEUE, br#"{"event":"job_created"}"#)
            .await;
    }
    // Retention, in small batches, off every request path.
    jobs.purge_expired(data20_jobs::PURGE_BATCH).await;
    Ok(())
}

/// Why a message wakes this worker.
enum Wake {
    /// `job_created` on `job_queue`.
    Created,
    /// The supervisor's wake-up on `job_wakeups`.
    Supervisor(WakeUp),
}

/// What `message` asks of the worker, without parsing a whole event: the worker's own
/// `job_started` and `job_completed` come back to it on `job_updates` and leave here.
fn wake(message: &[u8]) -> Option<Wake> {
    #[derive(serde::Deserialize)]
    struct Head<'a> {
        #[serde(borrow)]
        event: std::borrow::Cow<'a, str>,
    }
    match serde_json::from_slice::<Head<'_>>(message) {
        Ok(head) if head.event == "job_created" => Some(Wake::Created),
        Ok(head) if head.event == "wake_up" => match serde_json::from_slice::<WakeUp>(message) {
            Ok(w) => Some(Wake::Supervisor(w)),
            Err(e) => {
                data20_http::log_warn(&format!("ignoring a malformed wake-up: {e}"));
                None
            }
        },
        Ok(_) => None,
        Err(e) => {
            data20_http::log_warn(&format!("ignoring a message that is not a job event: {e}"));
            None
        }
    }
}
