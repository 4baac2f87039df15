//! The stats component: operational views of the system.

// The Spin export macros generate the ABI glue with `unsafe`; our own code has none.
#![allow(unsafe_code)]

mod health;

use data20_http::Ctx;
use spin_sdk::http::{Request, Response, Router};
use spin_sdk::http_component;

#[http_component]
fn handle(req: Request) -> Response {
    let ctx = Ctx::new("stats", &req);
    let mut router = Router::new();
    router.get("/api/health", health::handle);
    data20_http::add_fallbacks(&mut router, &["/api/health"]);
    ctx.finish(router.handle(req))
}
