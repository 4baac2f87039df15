//! The jobs component: job status, listing, outputs and live events.

// The Spin export macros generate the ABI glue with `unsafe`; our own code has none.
#![allow(unsafe_code)]

mod control;
mod events;
mod routes;

use data20_http::{io, Ctx};
use spin_sdk::http::{IncomingRequest, Method, Response, ResponseOutparam};
use spin_sdk::http_component;

#[http_component]
async fn handle(req: IncomingRequest, out: ResponseOutparam) {
    // These routes take no body: anything sent is refused, not buffered (a POST may
    // carry a small one, such as `{}`, which is ignored).
    let cap = if matches!(req.method(), Method::Post) {
        1024
    } else {
        0
    };
    let (request, body_ok) = io::read_capped(req, cap).await;
    let ctx = Ctx::new("jobs", &request);
    if let Err(e) = body_ok {
        return io::send(out, ctx.finish(data20_http::error(&e))).await;
    }
    if matches!(request.method(), Method::Get) {
        if let Some(id) = events::route(request.path()) {
            events::stream(&ctx, &request, id, out).await;
            // As after `io::send`: the stream is over, the work it left runs now.
            return data20_http::deferred::run_queued();
        }
    }
    if matches!(request.method(), Method::Post) {
        if let Some((action, id)) = control::route(request.path()) {
            let resp = control::handle(&request, action, id);
            return io::send(out, ctx.finish(resp)).await;
        }
    }
    let router = data20_http::get_router(
        &[
            ("/api/jobs", routes::list),
            ("/api/jobs/:id", routes::status),
            ("/api/jobs/:id/outputs/:name", routes::output),
        ],
        // Served above, outside the router: only other methods land here.
        &[
            "/api/jobs/:id/events",
            "/api/jobs/:id/cancel",
            "/api/jobs/:id/retry",
        ],
    );
    let resp: Response = router.handle(request);
    io::send(out, ctx.finish(resp)).await;
}
