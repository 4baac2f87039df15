//! GET /api/stats: jobs by status and tool and their durations (SQLite aggregates),
//! cache hits and misses and rate-limit rejections (counters the gate keeps in Redis),
//! and Redis's own figures from `INFO`. With Redis down the SQLite figures remain and
//! `redis.available` is false.

use data20_domain::access::Scope;
use data20_domain::limits;
use data20_http::gate::{gated, Need};
use data20_http::{Request, Response};
use data20_jobs::db_error;
use data20_redis::{keys, Redis};
use data20_sqlite::Db;
use serde_json::{json, Value};
use std::collections::HashMap;

pub async fn handle(req: Request) -> Response {
    let settings = data20_http::settings().await;
    let redis = data20_http::redis(&settings);
    gated(
        &req,
        &settings,
        &redis,
        None,
        Need::Scope(Scope::Admin),
        async |_, _| match stats(&redis).await {
            Ok(v) => {
                let mut resp = data20_http::json(200, &v);
                resp.set_header("cache-control", "no-store");
                resp
            }
            Err(e) => data20_http::error(&e),
        },
    )
    .await
}

/// Jobs created per commit (`POST /api/run`'s group commit; Redis's counters).
fn submissions(counters: &HashMap<&str, i64>) -> Value {
    let commits = counters.get(keys::SUBMISSION_COMMITS).copied().unwrap_or(0);
    let jobs = counters.get(keys::SUBMISSION_JOBS).copied().unwrap_or(0);
    let per_commit = if commits == 0 {
        Value::Null
    } else {
        json!((jobs as f64 / commits as f64 * 100.0).round() / 100.0)
    };
    json!({"commits": commits, "jobs": jobs, "jobs_per_commit": per_commit})
}

async fn stats(redis: &Redis) -> Result<Value, data20_domain::ApiError> {
    let db = Db::open().await.map_err(db_error)?;
    let jobs = db.job_stats().await.map_err(db_error)?;
    let names = [
        keys::RATE_LIMITED,
        "tool_registry:hit",
        "tool_registry:miss",
        "job_status:hit",
        "job_status:miss",
        keys::SUBMISSION_COMMITS,
        keys::SUBMISSION_JOBS,
    ];
    let counter_keys: Vec<String> = names.iter().map(|n| keys::counter(n)).collect();
    let key_refs: Vec<&str> = counter_keys.iter().map(String::as_str).collect();
    let counters: HashMap<&str, i64> = redis
        .mget(&key_refs)
        .await
        .unwrap_or_default()
        .into_iter()
        .zip(names)
        .filter_map(|(v, name)| Some((name, v?.parse().ok()?)))
        .collect();
    let cache = |name: &str| {
        let hits = counters
            .get(format!("{name}:hit").as_str())
            .copied()
            .unwrap_or(0);
        let misses = counters
            .get(format!("{name}:miss").as_str())
            .copied()
            .unwrap_or(0);
        let ratio = if hits + misses == 0 {
            Value::Null
        } else {
            json!(((hits as f64 / (hits + misses) as f64) * 10_000.0).round() / 10_000.0)
        };
        json!({"hits": hits, "misses": misses, "hit_ratio": ratio})
    };
    let redis_info = match redis.info().await {
        Ok(info) => {
            let mut v = json!(info);
            v["available"] = json!(true);
            v
        }
        Err(_) => json!({"available": false}),
    };
    Ok(json!({
        "jobs": {"total": jobs.total, "by_status": jobs.by_status, "by_tool": jobs.by_tool},
        "durations_ms": jobs.durations_ms,
        "cache": {"tool_registry": cache("tool_registry"), "job_status": cache("job_status")},
        "submissions": submissions(&counters),
        "rate_limit": {"rejections": counters.get(keys::RATE_LIMITED).copied().unwrap_or(0)},
        "retention": {"purged": db.counter("jobs_purged").await.map_err(db_error)?},
        // Jobs stopped from outside the WebAssembly (their worker process killed), and
        // jobs failed because their instance trapped (memory cap, stack).
        "limits": {
            "hard_killed": db.counter(limits::HARD_KILLED_COUNTER).await.map_err(db_error)?,
            "resource_exhausted": db.counter(limits::TRAPPED_COUNTER).await.map_err(db_error)?,
        },
        "redis": redis_info,
    }))
}
