//! Benchmark floor: one GET of a value the size of the tool registry through Spin's
//! key-value store. With the `redis` provider (bench/runtime-config.toml) that is a
//! round trip on the host's pooled connection: the floor of the pooled read path.
//!
//! `/floor/kv-limited-get` first counts the request with one `increment` (INCRBY on a
//! per-minute key), as any rate limiter on this path must: the floor of a cached read
//! that is rate limited per request, with no other work.

// The Spin export macros generate the ABI glue with `unsafe`.
#![allow(unsafe_code)]

use spin_sdk::http::{Request, Response};
use spin_sdk::http_component;
use spin_sdk::wit::wasi::keyvalue::{atomics, store};

#[http_component]
fn handle(req: Request) -> Response {
    let limited = req.path().ends_with("/kv-limited-get");
    let value = store::open("default").and_then(|bucket| {
        if limited {
            let minute = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() / 60);
            atomics::increment(&bucket, &format!("bench:floor:count:{minute}"), 1)?;
        }
        bucket.get("bench:floor")
    });
    match value {
        Ok(Some(bytes)) => Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(bytes)
            .build(),
        Ok(None) => Response::new(404, "bench:floor is not set"),
        Err(e) => Response::new(503, format!("key-value: {e:?}")),
    }
}
