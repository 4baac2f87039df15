//! GET /api/health: `ok` when Redis and SQLite answer, `degraded` when only Redis is
//! down (the API still works from SQLite), 503 only when SQLite is unusable.

use data20_http::gate::Need;
use data20_http::{Request, Response};
use data20_redis::Redis;
use data20_sqlite::Db;
use serde::Serialize;

#[derive(Serialize)]
struct Health {
    status: &'static str,
    redis: &'static str,
    sqlite: &'static str,
}

pub async fn handle(req: Request) -> Response {
    let settings = data20_http::settings().await;
    let redis = data20_http::redis(&settings);
    data20_http::gate::gated(&req, &settings, &redis, None, Need::Public, async |_, _| {
        health(&redis).await
    })
    .await
}

async fn health(redis: &Redis) -> Response {
    // The gate's round trip just talked to Redis: no second PING needed.
    let redis_up = !redis.known_down();
    let sqlite_up = match Db::open().await {
        Ok(db) => db.ping().await.is_ok(),
        Err(_) => false,
    };
    let health = Health {
        status: match (sqlite_up, redis_up) {
            (true, true) => "ok",
            (true, false) => "degraded",
            (false, _) => "down",
        },
        redis: if redis_up { "up" } else { "down" },
        sqlite: if sqlite_up { "up" } else { "down" },
    };
    let mut resp = data20_http::json(if sqlite_up { 200 } else { 503 }, &health);
    resp.set_header("cache-control", "no-store");
    resp
}
