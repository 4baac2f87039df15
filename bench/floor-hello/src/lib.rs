//! Benchmark floor: Spin's own cost per request, with no I/O.

// The Spin export macros generate the ABI glue with `unsafe`.
#![allow(unsafe_code)]

use spin_sdk::http::{Request, Response};
use spin_sdk::http_component;

#[http_component]
fn handle(_req: Request) -> Response {
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body("{\"hello\":\"world\"}")
        .build()
}
