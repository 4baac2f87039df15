//! Benchmark floors on `spin-sdk` 6.0.0 (WASIp3). Spin 4 keeps such an instance alive
//! across requests (up to 128, 16 at once), so these are the floors of the product
//! once its components move to WASIp3:
//!
//! - `/floor/p3/hello`: no I/O;
//! - `/floor/p3/kv-get`: one GET of the registry-sized value through the key-value
//!   store (the `redis` provider's pooled connection);
//! - `/floor/p3/redis-get`: one outbound Redis GET on a connection the instance keeps
//!   between requests (opened on first use, dropped after any error so the next
//!   request opens a fresh one);
//! - `/floor/p3/gated-get`: the same read the way a rate-limited cached route must do
//!   it, in one round trip on the kept connection: the product's gate script (sliding
//!   window limiter, cache read, hit counter: `data20_redis::gate::SCRIPT`, by its
//!   digest) with no other product logic;
//! - `/floor/p3/accept`: the least a durable job submission does: one row committed in
//!   Spin's SQLite (WAL, `synchronous = FULL`, one statement on a kept connection, as
//!   the product's INSERT behind a 202) and one `PUBLISH job_created` on the kept Redis
//!   connection, on the channel
//!   the variable `channel` names;
//! - `/floor/p3/accept-grouped` (and `/api/run`, for `bench/jobs-floor-p3.toml`): the
//!   same as a group commit, the product's design (`data20_host::group`): requests
//!   that arrive while a commit is under way share the next one, one multi-row INSERT
//!   and one PUBLISH for them all;
//! - `/api/run` with the variable `floor_gate = "true"` (`bench/jobs-floor-p3.toml`
//!   with `SPIN_VARIABLE_FLOOR_GATE=true`): the grouped accept behind the product's
//!   gate round trip (the limiter script, as `/floor/p3/gated-get`), the least a
//!   rate-limited durable submission costs: what `POST /api/run` must do at least.

// The Spin export macros generate the ABI glue with `unsafe`.
#![allow(unsafe_code)]

use data20_host::group::GroupCommit;
use spin_sdk::http::{FullBody, IntoResponse, Request, StatusCode};
use spin_sdk::redis::Connection;
use std::cell::RefCell;
use std::rc::Rc;

thread_local! {
    /// The kept Redis connection. Safe to share between the instance's concurrent
    /// requests: it carries no request's data, and a failed one is dropped.
    static KEPT: RefCell<Option<Rc<Connection>>> = const { RefCell::new(None) };
}

#[spin_sdk::http_service]
async fn handle(req: Request) -> impl IntoResponse {
    let value = match req.uri().path() {
        "/floor/p3/hello" => return reply(StatusCode::OK, b"hello".to_vec()),
        "/floor/p3/kv-get" => kv_get().await,
        "/floor/p3/redis-get" => kept_get().await,
        "/floor/p3/gated-get" => gated_get(true).await,
        // `/api/run` in `bench/jobs-floor-p3.toml`.
        "/floor/p3/accept" | "/floor/p3/accept-grouped" | "/api/run" => {
            let path = req.uri().path().to_string();
            if path == "/api/run" && gate_first().await {
                // Not tallied, as the product's `POST /api/run` reads the registry.
                if let Err(e) = gated_get(false).await {
                    return reply(StatusCode::SERVICE_UNAVAILABLE, e.into_bytes());
                }
            }
            let body = req.into_body();
            let accepted = if path == "/floor/p3/accept" {
                accept(body).await
            } else {
                accept_grouped(body).await
            };
            return match accepted {
                Ok(id) => reply(
                    StatusCode::ACCEPTED,
                    format!(r#"{{"job_id":{id}}}"#).into_bytes(),
                ),
                Err(e) => reply(StatusCode::SERVICE_UNAVAILABLE, e.into_bytes()),
            };
        }
        other => {
            return reply(
                StatusCode::NOT_FOUND,
                format!("no floor at {other}").into_bytes(),
            )
        }
    };
    match value {
        Ok(Some(bytes)) => reply(StatusCode::OK, bytes),
        Ok(None) => reply(StatusCode::NOT_FOUND, b"bench:floor is not set".to_vec()),
        Err(e) => reply(StatusCode::SERVICE_UNAVAILABLE, e.into_bytes()),
    }
}

async fn kv_get() -> Result<Option<Vec<u8>>, String> {
    let store = spin_sdk::key_value::Store::open("default")
        .await
        .map_err(|e| format!("key-value: {e:?}"))?;
    store
        .get("bench:floor")
        .await
        .map_err(|e| format!("key-value: {e:?}"))
}

async fn kept_get() -> Result<Option<Vec<u8>>, String> {
    let conn = kept().await?;
    let value = conn.get("bench:floor").await;
    if value.is_err() {
        KEPT.with(|k| *k.borrow_mut() = None);
    }
    value.map_err(|e| format!("redis: {e}"))
}

/// The gate script's keys and arguments as the product passes them for one client of a
/// never-reached limit; its body goes once (`SCRIPT LOAD`) when the server lacks it.
/// `tallied`: the cache read moves the hit or miss counter, as the tools route's does.
async fn gated_get(tallied: bool) -> Result<Option<Vec<u8>>, String> {
    use spin_sdk::redis::{RedisParameter as P, RedisResult as R};
    let conn = kept().await?;
    let script = data20_redis::gate::SCRIPT;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let window = now_ms / 60_000;
    let text = |s: &str| P::Binary(s.as_bytes().to_vec());
    let [hit, miss] = if tallied {
        ["data20:stats:bench:hit", "data20:stats:bench:miss"]
    } else {
        ["", ""]
    };
    let args = vec![
        text(script.sha1),
        P::Int64(6),
        text(&format!("api:bench:{window}")),
        text(&format!("api:bench:{}", window - 1)),
        text("bench:floor"),
        text("data20:stats:bench_rejected"),
        text(hit),
        text(miss),
        P::Int64(1_000_000_000),
        P::Int64(60_000),
        P::Int64(now_ms % 60_000),
        P::Int64(120),
    ];
    let mut reply = conn.execute("EVALSHA", args.clone()).await;
    if matches!(&reply, Err(e) if e.to_string().contains("NoScript")) {
        conn.execute("SCRIPT", [text("LOAD"), text(script.body)])
            .await
            .map_err(|e| format!("redis: {e}"))?;
        reply = conn.execute("EVALSHA", args).await;
    }
    match reply {
        Ok(values) => Ok(match values.into_iter().nth(2) {
            Some(R::Binary(b)) => Some(b),
            _ => None,
        }),
        Err(e) => {
            KEPT.with(|k| *k.borrow_mut() = None);
            Err(format!("redis: {e}"))
        }
    }
}

/// Made on first use, as the product's migrations do (the same table as the wasip2
/// accept floor's).
const SCHEMA: &[&str] = &[
    "PRAGMA journal_mode = WAL",
    "CREATE TABLE IF NOT EXISTS floor_jobs (id INTEGER PRIMARY KEY, body TEXT NOT NULL, \
     status TEXT NOT NULL DEFAULT 'queued')",
    "CREATE INDEX IF NOT EXISTS floor_jobs_queued ON floor_jobs (id) WHERE status = 'queued'",
];

thread_local! {
    /// The kept SQLite connection: one autocommit INSERT per request, so sharing it
    /// between the instance's concurrent requests is safe (SPEC §7), as the product's
    /// submissions do.
    static KEPT_DB: RefCell<Option<Rc<spin_sdk::sqlite::Connection>>> = const { RefCell::new(None) };
}

/// One durable INSERT on the instance's kept connection and one PUBLISH.
async fn accept<B>(body: B) -> Result<i64, String>
where
    B: http_body::Body<Data = bytes::Bytes>,
    B::Error: std::fmt::Display,
{
    let body = read_body(body).await?;
    commit_and_publish(&[body])
        .await?
        .first()
        .copied()
        .ok_or_else(|| "sqlite: no id".to_string())
}

thread_local! {
    /// The instance's group commit: submissions that arrive while one commits share
    /// the next commit (the product's `POST /api/run` design, `data20_host::group`).
    static GROUP: Rc<GroupCommit<String, Result<i64, String>>> = Rc::new(GroupCommit::new(64));
}

/// [`accept`] as a group commit: the requests the instance serves at once share one
/// multi-row INSERT and one PUBLISH.
async fn accept_grouped<B>(body: B) -> Result<i64, String>
where
    B: http_body::Body<Data = bytes::Bytes>,
    B::Error: std::fmt::Display,
{
    let body = read_body(body).await?;
    let group = GROUP.with(Rc::clone);
    let flush = async |bodies: Vec<String>| match commit_and_publish(&bodies).await {
        Ok(ids) => ids.into_iter().map(Ok).collect(),
        Err(e) => bodies.iter().map(|_| Err(e.clone())).collect(),
    };
    group
        .submit(body, flush)
        .await
        .unwrap_or_else(|e| Err(e.to_string()))
}

async fn read_body<B>(body: B) -> Result<String, String>
where
    B: http_body::Body<Data = bytes::Bytes>,
    B::Error: std::fmt::Display,
{
    use http_body_util::BodyExt;
    let bytes = body
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// One INSERT of every body (one autocommit, one fsync) on the kept connection, then
/// one PUBLISH of `job_created` on the kept Redis connection: answers the new ids.
async fn commit_and_publish(bodies: &[String]) -> Result<Vec<i64>, String> {
    use spin_sdk::sqlite::{Connection as Sqlite, Value};
    let db = match KEPT_DB.with(|k| k.borrow().clone()) {
        Some(db) => db,
        None => {
            let db = Rc::new(
                Sqlite::open_default()
                    .await
                    .map_err(|e| format!("sqlite: {e}"))?,
            );
            KEPT_DB.with(|k| *k.borrow_mut() = Some(db.clone()));
            db
        }
    };
    let insert = format!(
        "INSERT INTO floor_jobs (body) VALUES {} RETURNING id",
        vec!["(?)"; bodies.len()].join(", ")
    );
    let rows = || {
        bodies
            .iter()
            .map(|b| Value::Text(b.clone()))
            .collect::<Vec<_>>()
    };
    // WASIp3's SQLite reports a missing table when the rows are read.
    let first = match db.execute(insert.as_str(), rows()).await {
        Ok(r) => r.collect().await.ok(),
        Err(_) => None,
    };
    let inserted = match first {
        Some(rows) => rows,
        None => {
            for sql in SCHEMA {
                db.execute(*sql, [])
                    .await
                    .map_err(|e| format!("sqlite: {e}"))?;
            }
            let r = db
                .execute(insert.as_str(), rows())
                .await
                .map_err(|e| format!("sqlite: {e}"))?;
            r.collect().await.map_err(|e| format!("sqlite: {e}"))?
        }
    };
    let ids: Vec<i64> = inserted
        .iter()
        .map(|row| match row.values.first() {
            Some(Value::Integer(id)) => *id,
            _ => 0,
        })
        .collect();
    let channel = spin_sdk::variables::get("channel")
        .await
        .unwrap_or_else(|_| "job_updates".into());
    let last = ids.iter().max().copied().unwrap_or_default();
    let event = format!(r#"{{"event":"job_created","job_id":{last}}}"#);
    let conn = kept().await?;
    if let Err(e) = conn.publish(&channel, event.as_bytes()).await {
        KEPT.with(|k| *k.borrow_mut() = None);
        return Err(format!("redis: {e}"));
    }
    Ok(ids)
}

thread_local! {
    static GATE_FIRST: std::cell::Cell<Option<bool>> = const { std::cell::Cell::new(None) };
}

/// Whether `/api/run` passes the gate first (`floor_gate`, read once per instance).
async fn gate_first() -> bool {
    if let Some(on) = GATE_FIRST.with(std::cell::Cell::get) {
        return on;
    }
    let on = spin_sdk::variables::get("floor_gate")
        .await
        .is_ok_and(|v| v == "true");
    GATE_FIRST.with(|g| g.set(Some(on)));
    on
}

/// The instance's kept connection, opened on first use.
async fn kept() -> Result<Rc<Connection>, String> {
    match KEPT.with(|k| k.borrow().clone()) {
        None => {
            let url = spin_sdk::variables::get("redis_url")
                .await
                .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
            let conn = Rc::new(
                Connection::open(&url)
                    .await
                    .map_err(|e| format!("redis: {e}"))?,
            );
            KEPT.with(|k| *k.borrow_mut() = Some(conn.clone()));
            Ok(conn)
        }
        Some(conn) => Ok(conn),
    }
}

fn reply(status: StatusCode, body: Vec<u8>) -> (StatusCode, FullBody<bytes::Bytes>) {
    (status, FullBody::new(body.into()))
}
