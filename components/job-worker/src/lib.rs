//! The job worker: a Redis trigger on `job_updates`. It reacts to `job_created` only
//! (so it ignores the `job_started`/`job_completed`/`job_failed` it publishes itself),
//! claims the job atomically in SQLite, runs it, and then finishes any stale job it
//! finds. Several workers may be subscribed: the claim lets exactly one run each job.

// The Spin export macros generate the ABI glue with `unsafe`; our own code has none.
#![allow(unsafe_code)]

use data20_domain::job::JobEventKind;
use data20_domain::JobEvent;
use data20_jobs::Jobs;
use data20_redis::Redis;
use data20_sqlite::Db;
use spin_sdk::redis_component;

/// Stale jobs finished per invocation, besides the announced one.
const RECOVER_PER_MESSAGE: u32 = 3;

#[redis_component]
fn on_message(message: Vec<u8>) -> anyhow::Result<()> {
    let event: JobEvent = match serde_json::from_slice(&message) {
        Ok(e) => e,
        Err(e) => {
            data20_http::log_warn(&format!("ignoring a message that is not a job event: {e}"));
            return Ok(());
        }
    };
    if event.event != JobEventKind::JobCreated {
        return Ok(());
    }
    let settings = data20_http::settings();
    let redis = Redis::new(settings.redis_url());
    let registry = data20_http::registry::fetch(&settings, &redis)?;
    let db = Db::open()?;
    let jobs = Jobs {
        db: &db,
        redis: &redis,
        settings: &settings,
        source: "worker",
    };
    if let Err(e) = jobs.run(&registry, &event.job_id, &event.tool) {
        data20_http::log_warn(&format!("job {} could not be run: {e}", event.job_id));
    }
    jobs.recover(&registry, RECOVER_PER_MESSAGE);
    Ok(())
}
