//! The stats component: operational views of the system.

// The Spin export macros generate the ABI glue with `unsafe`; our own code has none.
#![allow(unsafe_code)]

mod docs;
mod health;
mod stats;
mod worker;

use data20_http::Ctx;
use spin_sdk::http::{Request, Response};
use spin_sdk::http_component;

#[http_component]
fn handle(req: Request) -> Response {
    let ctx = Ctx::new("stats", &req);
    let router = data20_http::get_router(
        &[
            ("/api/health", health::handle),
            ("/api/health/worker", worker::handle),
            ("/api/stats", stats::handle),
            ("/api/openapi.json", docs::openapi),
            ("/api/docs", docs::page),
        ],
        &[],
    );
    ctx.finish(router.handle(req))
}
