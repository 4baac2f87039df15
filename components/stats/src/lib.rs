//! The stats component: operational views of the system.

// The Spin export macros generate the ABI glue with `unsafe`; our own code has none.
#![allow(unsafe_code)]

mod docs;
mod health;
mod stats;

use data20_http::Ctx;
use spin_sdk::http::{Request, Response, Router};
use spin_sdk::http_component;

#[http_component]
fn handle(req: Request) -> Response {
    let ctx = Ctx::new("stats", &req);
    let mut router = Router::new();
    router.get("/api/health", health::handle);
    router.get("/api/stats", stats::handle);
    router.get("/api/openapi.json", docs::openapi);
    router.get("/api/docs", docs::page);
    data20_http::add_fallbacks(
        &mut router,
        &[
            "/api/health",
            "/api/stats",
            "/api/openapi.json",
            "/api/docs",
        ],
    );
    ctx.finish(router.handle(req))
}
