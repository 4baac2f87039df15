//! Benchmark floor for the job worker: the least a Spin Redis-trigger worker does for a
//! job in this runtime, with no tool and no product logic: a claim and a completion
//! committed in SQLite (each a conditional UPDATE at `synchronous = NORMAL`, as the
//! product's transitions) and one `PUBLISH job_completed` through outbound Redis.
//! Events other than `job_created` leave before any host call.
//!
//! Two shapes, chosen by the variable `floor_drain`:
//! - `false`: one job per `job_created` message (the job the message names): the plain
//!   Redis-trigger design, one instance and one outbound connection per job;
//! - `true`: a `job_created` drains every queued job in one instance and one
//!   connection, as the product's worker does; later messages find nothing.

// The Spin export macros generate the ABI glue with `unsafe`.
#![allow(unsafe_code)]

use spin_sdk::redis::{Connection as Redis, RedisParameter};
use spin_sdk::redis_component;
use spin_sdk::sqlite::{Connection as Sqlite, Value};

#[redis_component]
fn on_message(message: Vec<u8>) -> anyhow::Result<()> {
    let text = String::from_utf8_lossy(&message);
    if !text.contains(r#""event":"job_created""#) {
        return Ok(());
    }
    let drain = spin_sdk::variables::get("floor_drain")? == "true";
    let db = Sqlite::open_default()?;
    db.execute("PRAGMA synchronous = NORMAL", &[])?;
    let mut redis = None;
    if drain {
        while let Some(id) = claim(
            &db,
            "UPDATE floor_jobs SET status = 'running' WHERE id = \
             (SELECT id FROM floor_jobs WHERE status = 'queued' ORDER BY id LIMIT 1) \
             AND status = 'queued' RETURNING id",
            &[],
        )? {
            complete(&db, &mut redis, id)?;
        }
    } else {
        let named: i64 = text
            .rsplit(':')
            .next()
            .and_then(|s| s.trim_end_matches('}').trim().parse().ok())
            .unwrap_or(0);
        let sql = "UPDATE floor_jobs SET status = 'running' WHERE id = ? AND status = 'queued' RETURNING id";
        if let Some(id) = claim(&db, sql, &[Value::Integer(named)])? {
            complete(&db, &mut redis, id)?;
        }
    }
    Ok(())
}

fn claim(db: &Sqlite, sql: &str, params: &[Value]) -> anyhow::Result<Option<i64>> {
    let claimed = db.execute(sql, params)?;
    let id = claimed.rows().next().and_then(|r| r.get::<i64>("id"));
    Ok(id)
}

fn complete(db: &Sqlite, redis: &mut Option<Redis>, id: i64) -> anyhow::Result<()> {
    db.execute(
        "UPDATE floor_jobs SET status = 'completed' WHERE id = ?",
        &[Value::Integer(id)],
    )?;
    if redis.is_none() {
        *redis = Some(Redis::open(&spin_sdk::variables::get("redis_url")?)?);
    }
    let event = format!(r#"{{"event":"job_completed","job_id":{id}}}"#);
    redis.as_ref().map_or(Ok(()), |c| {
        c.execute(
            "PUBLISH",
            &[
                RedisParameter::Binary(b"job_updates".to_vec()),
                RedisParameter::Binary(event.into_bytes()),
            ],
        )
        .map(|_| ())
    })?;
    Ok(())
}
