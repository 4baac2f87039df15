//! Benchmark floor: one GET of a value the size of the tool registry through Spin's
//! key-value store. With the `redis` provider (bench/runtime-config.toml) that is a
//! round trip on the host's pooled connection: the floor of the pooled read path.

// The Spin export macros generate the ABI glue with `unsafe`.
#![allow(unsafe_code)]

use spin_sdk::http::{Request, Response};
use spin_sdk::http_component;
use spin_sdk::wit::wasi::keyvalue::store;

#[http_component]
fn handle(_req: Request) -> Response {
    let value = store::open("default").and_then(|bucket| bucket.get("bench:floor"));
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
