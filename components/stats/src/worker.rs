//! GET /api/health/worker: the liveness check of one worker process, SpinKube's
//! stand-in for `data20-supervisor` (nothing there can kill one process, but the
//! kubelet restarts a container whose liveness check fails).
//!
//! Served by this component inside the worker's own Spin process (the worker SpinApp
//! runs `job-worker` and `stats`), with `worker_id` set to the pod's name. A job of
//! this worker past its deadline plus `PROBED_KILL_AFTER_MS` is failed here, with the
//! hard-limit error, and the answer is 503 so that the kubelet kills the container
//! (and with it the instance that loops); otherwise 200. It also sends the wake-ups the
//! supervisor would (a trapped run, jobs waiting in the queue). Not rate-limited: a
//! 429 would read as a failed check. 404 where no `worker_id` is set (the API's own
//! processes).

use data20_http::{Request, Response};
use data20_jobs::{db_error, Jobs};
use data20_sqlite::Db;
use serde_json::json;

pub async fn handle(_req: Request) -> Response {
    let settings = data20_http::settings().await;
    let redis = data20_http::redis(&settings);
    let checked = match Db::open().await.map_err(db_error) {
        Ok(db) => {
            Jobs {
                db: &db,
                redis: &redis,
                settings: &settings,
                source: "worker",
            }
            .enforce_hard_limit()
            .await
        }
        Err(e) => Err(e),
    };
    let mut resp = match checked {
        Ok(check) if !check.failed.is_empty() => data20_http::json(
            503,
            &json!({"status": "restart", "worker": settings.worker_id(), "failed": check.failed}),
        ),
        Ok(check) => data20_http::json(
            200,
            &json!({"status": "ok", "worker": settings.worker_id(), "running": check.running}),
        ),
        // The database being away is no reason to restart the worker.
        Err(e @ data20_domain::ApiError::Unavailable(_)) => data20_http::json(
            200,
            &json!({"status": "unknown", "worker": settings.worker_id(), "reason": e.to_string()}),
        ),
        Err(e) => data20_http::error(&e),
    };
    resp.set_header("cache-control", "no-store");
    resp
}
