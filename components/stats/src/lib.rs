//! The stats component: operational views of the system.

// The Spin export macros generate the ABI glue with `unsafe`; our own code has none.
#![allow(unsafe_code)]

mod docs;
mod health;
mod stats;
mod worker;

// The build's SDK, as the export macros name it (SPEC §7): WASIp3 by default, the
// 5.2 line for the compatibility build.
#[cfg(feature = "sdk5")]
extern crate sdk5 as spin_sdk;
#[cfg(feature = "sdk6")]
extern crate sdk6 as spin_sdk;

use data20_http::{Ctx, Request, Response};

#[derive(Clone, Copy)]
enum Route {
    Health,
    Worker,
    Stats,
    OpenApi,
    Docs,
}

data20_host::http_export!(handle, |_| 0);

async fn handle(req: Request) -> Response {
    let ctx = Ctx::new("stats", &req);
    let routed = data20_http::route_get(
        &req,
        &[
            ("/api/health", Route::Health),
            ("/api/health/worker", Route::Worker),
            ("/api/stats", Route::Stats),
            ("/api/openapi.json", Route::OpenApi),
            ("/api/docs", Route::Docs),
        ],
        &[],
    );
    let resp = match routed {
        Err(resp) => resp,
        Ok((Route::Health, _)) => health::handle(req).await,
        Ok((Route::Worker, _)) => worker::handle(req).await,
        Ok((Route::Stats, _)) => stats::handle(req).await,
        Ok((Route::OpenApi, _)) => docs::openapi(req).await,
        Ok((Route::Docs, _)) => docs::page(req).await,
    };
    ctx.finish(resp)
}
