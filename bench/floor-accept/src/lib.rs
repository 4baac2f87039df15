//! Benchmark floor for `POST /api/run`: the least a durable accept costs in this
//! runtime, with none of data20's own work (no limiter, registry, schema or status
//! cache).
//!
//! - `/floor/accept` (and `/api/run` in `bench/jobs-floor.toml`): one row committed in
//!   Spin's SQLite (WAL, `synchronous = FULL`, as the product's INSERT behind a 202) and
//!   one `PUBLISH job_created` through outbound Redis (a connection per request, as for
//!   every Spin component that publishes) on the channel the variable `channel` names;
//! - `/floor/insert`: the commit alone;
//! - `/floor/publish`: the publish alone;
//! - `/api/stats`: the rows not yet completed, in the shape `jobs-compare.sh` reads.

// The Spin export macros generate the ABI glue with `unsafe`.
#![allow(unsafe_code)]

use spin_sdk::http::{Request, Response};
use spin_sdk::http_component;
use spin_sdk::redis::{Connection as Redis, RedisParameter};
use spin_sdk::sqlite::{Connection as Sqlite, Value};

/// Made on first use, as the product's migrations do.
const SCHEMA: &[&str] = &[
    "PRAGMA journal_mode = WAL",
    "CREATE TABLE IF NOT EXISTS floor_jobs (id INTEGER PRIMARY KEY, body TEXT NOT NULL, \
     status TEXT NOT NULL DEFAULT 'queued')",
    // The draining worker's "next queued job", as the product's own index.
    "CREATE INDEX IF NOT EXISTS floor_jobs_queued ON floor_jobs (id) WHERE status = 'queued'",
];

#[http_component]
fn handle(req: Request) -> Response {
    let (insert, publish) = match req.path().rsplit('/').next() {
        Some("accept" | "run") => (true, true),
        Some("insert") => (true, false),
        Some("publish") => (false, true),
        Some("stats") => return stats(),
        _ => return Response::new(404, "unknown floor"),
    };
    let body = req.body();
    let id = if insert {
        match insert_row(body) {
            Ok(id) => id,
            Err(e) => return Response::new(503, format!("sqlite: {e}")),
        }
    } else {
        0
    };
    if publish {
        let url = spin_sdk::variables::get("redis_url")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        // `bench/spin.toml` moves it off `job_updates`, where the product's worker
        // listens on the same Redis.
        let channel = spin_sdk::variables::get("channel").unwrap_or_else(|_| "job_updates".into());
        let event = format!(r#"{{"event":"job_created","job_id":{id}}}"#);
        let sent = Redis::open(&url).and_then(|c| {
            c.execute(
                "PUBLISH",
                &[
                    RedisParameter::Binary(channel.into_bytes()),
                    RedisParameter::Binary(event.into_bytes()),
                ],
            )
        });
        if let Err(e) = sent {
            return Response::new(503, format!("redis: {e}"));
        }
    }
    Response::new(202, format!(r#"{{"job_id":{id}}}"#))
}

fn insert_row(body: &[u8]) -> Result<i64, spin_sdk::sqlite::Error> {
    let db = Sqlite::open_default()?;
    let row = [Value::Text(String::from_utf8_lossy(body).into_owned())];
    let insert = "INSERT INTO floor_jobs (body) VALUES (?) RETURNING id";
    let result = match db.execute(insert, &row) {
        Ok(r) => r,
        Err(_) => {
            for sql in SCHEMA {
                db.execute(sql, &[])?;
            }
            db.execute(insert, &row)?
        }
    };
    let id = result.rows().next().and_then(|r| r.get::<i64>("id"));
    Ok(id.unwrap_or(0))
}

fn stats() -> Response {
    let busy = Sqlite::open_default()
        .and_then(|db| {
            db.execute(
                "SELECT count(*) AS n FROM floor_jobs WHERE status != 'completed'",
                &[],
            )
        })
        .ok()
        .and_then(|r| r.rows().next().and_then(|row| row.get::<i64>("n")))
        .unwrap_or(0);
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(format!(r#"{{"jobs":{{"by_status":{{"queued":{busy}}}}}}}"#))
        .build()
}
