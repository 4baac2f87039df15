//! Benchmark floor: one Redis GET of a value the size of the tool registry, returned
//! as is. Spin opens a Redis connection per request, so this is the floor of any route
//! that touches Redis.

// The Spin export macros generate the ABI glue with `unsafe`.
#![allow(unsafe_code)]

use spin_sdk::http::{Request, Response};
use spin_sdk::http_component;
use spin_sdk::redis::Connection;

#[http_component]
fn handle(_req: Request) -> Response {
    let url =
        spin_sdk::variables::get("redis_url").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let value = Connection::open(&url).and_then(|c| c.get("bench:floor"));
    match value {
        Ok(Some(bytes)) => Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(bytes)
            .build(),
        Ok(None) => Response::new(404, "bench:floor is not set"),
        Err(e) => Response::new(503, format!("redis: {e}")),
    }
}
