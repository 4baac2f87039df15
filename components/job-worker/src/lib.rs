//! The job worker: a Redis trigger on `job_updates`.
//!
//! Spin's Redis trigger hands a process's messages to the component one at a time,
//! and every event on the channel wakes it. So a `job_created` wake-up *drains*: it
//! runs every queued job (and any running job whose runner lost its lease) one after
//! another, until none is left. Under load the first wake-up does the work of many
//! messages and the ones queued behind it find nothing and leave after one SELECT.
//! Events other than `job_created` leave before any host call. Several workers may be
//! subscribed: each claim is a conditional UPDATE, so exactly one runs each job. After
//! draining, a wake-up deletes one small batch of jobs past their retention.

// The Spin export macros generate the ABI glue with `unsafe`; our own code has none.
#![allow(unsafe_code)]

use data20_jobs::Jobs;
use data20_sqlite::Db;
use spin_sdk::redis_component;
use std::time::Duration;

/// Jobs one wake-up runs at most, and for how long it keeps picking new ones, so a
/// flood of work never holds one invocation for ever (the next message goes on).
const DRAIN_MAX_JOBS: usize = 1_000;
const DRAIN_BUDGET: Duration = Duration::from_secs(10);
/// Finished jobs past their retention deleted per wake-up.
const PURGE_BATCH: u32 = 200;

#[redis_component]
fn on_message(message: Vec<u8>) -> anyhow::Result<()> {
    if !is_job_created(&message) {
        return Ok(());
    }
    let settings = data20_http::settings();
    let redis = data20_http::redis(&settings);
    // Claims and completions need no fsync; see `Db::open_for_transitions`.
    let db = Db::open_for_transitions()?;
    let jobs = Jobs {
        db: &db,
        redis: &redis,
        settings: &settings,
        source: "worker",
    };
    let registry = || data20_http::registry::fetch(&settings, &redis);
    jobs.drain(registry, DRAIN_MAX_JOBS, DRAIN_BUDGET)?;
    // Retention, in small batches, off every request path.
    jobs.purge_expired(PURGE_BATCH);
    Ok(())
}

/// Whether `message` is a `job_created` event, without parsing the whole event: the
/// worker's own `job_started` and `job_completed` come back to it on the channel.
fn is_job_created(message: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Kind<'a> {
        #[serde(borrow)]
        event: std::borrow::Cow<'a, str>,
    }
    match serde_json::from_slice::<Kind<'_>>(message) {
        Ok(k) => k.event == "job_created",
        Err(e) => {
            data20_http::log_warn(&format!("ignoring a message that is not a job event: {e}"));
            false
        }
    }
}
