//! The jobs component: job status, listing, outputs and live events.

// The Spin export macros generate the ABI glue with `unsafe`; our own code has none.
#![allow(unsafe_code)]

mod control;
mod events;
mod routes;

// The build's SDK, as the export macros name it (SPEC §7): WASIp3 by default, the
// 5.2 line for the compatibility build.
#[cfg(feature = "sdk5")]
extern crate sdk5 as spin_sdk;
#[cfg(feature = "sdk6")]
extern crate sdk6 as spin_sdk;

use data20_http::{Ctx, Request, Response};

/// These routes take no body: anything sent is refused, not buffered (a POST may carry
/// a small one, such as `{}`, which is ignored).
fn body_cap(method: &str) -> usize {
    if method == "POST" {
        1024
    } else {
        0
    }
}

#[derive(Clone, Copy)]
enum Route {
    List,
    Status,
    Output,
}

data20_host::http_export!(handle, body_cap);

async fn handle(request: Request) -> Response {
    let ctx = Ctx::new("jobs", &request);
    if let Err(e) = data20_http::io::body(&request) {
        return ctx.finish(data20_http::error(&e));
    }
    if request.method() == "GET" {
        if let Some(id) = events::route(request.path()) {
            let id = id.to_string();
            return ctx.finish(events::stream(&request, &id).await);
        }
    }
    if request.method() == "POST" {
        if let Some((action, id)) = control::route(request.path()) {
            let id = id.to_string();
            return ctx.finish(control::handle(&request, action, &id).await);
        }
    }
    let routed = data20_http::route_get(
        &request,
        &[
            ("/api/jobs", Route::List),
            ("/api/jobs/:id", Route::Status),
            ("/api/jobs/:id/outputs/:name", Route::Output),
        ],
        // Served above, outside the router: only other methods land here.
        &[
            "/api/jobs/:id/events",
            "/api/jobs/:id/cancel",
            "/api/jobs/:id/retry",
        ],
    );
    let resp = match routed {
        Err(resp) => resp,
        Ok((Route::List, _)) => routes::list(&request).await,
        Ok((Route::Status, params)) => routes::status(&request, &params).await,
        Ok((Route::Output, params)) => routes::output(&request, &params).await,
    };
    ctx.finish(resp)
}
