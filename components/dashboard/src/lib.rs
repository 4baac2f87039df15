//! The dashboard component: serves the single-page dashboard (`dashboard/` in the repo,
//! embedded at build time) at `/`. It only serves files; everything it shows comes from
//! the API routes, called by the page itself.

// The Spin export macros generate the ABI glue with `unsafe`; our own code has none.
#![allow(unsafe_code)]

// The build's SDK, as the export macros name it (SPEC §7): WASIp3 by default, the
// 5.2 line for the compatibility build.
#[cfg(feature = "sdk5")]
extern crate sdk5 as spin_sdk;
#[cfg(feature = "sdk6")]
extern crate sdk6 as spin_sdk;

use data20_domain::ApiError;
use data20_http::{Ctx, Request, Response};

const INDEX: &str = include_str!("../../../dashboard/index.html");
const APP_JS: &str = include_str!("../../../dashboard/app.js");
const APP_CSS: &str = include_str!("../../../dashboard/app.css");

/// Scripts and styles come from this origin only; previews of job outputs are sandboxed
/// frames of the API's own output route.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; frame-src 'self'; form-action 'none'; base-uri 'none'";

data20_host::http_export!(handle, |_| 0);

async fn handle(req: Request) -> Response {
    let ctx = Ctx::new("dashboard", &req);
    let resp = if !matches!(req.method(), "GET" | "HEAD") {
        let mut r = data20_http::error(&ApiError::MethodNotAllowed(req.method().to_string()));
        r.set_header("allow", "GET, HEAD");
        r
    } else {
        match req.path() {
            "/" | "/index.html" => asset(INDEX, "text/html; charset=utf-8"),
            "/app.js" => asset(APP_JS, "text/javascript; charset=utf-8"),
            "/app.css" => asset(APP_CSS, "text/css; charset=utf-8"),
            // Unknown API paths keep the API's JSON errors.
            _ => data20_http::not_found(&req),
        }
    };
    ctx.finish(resp)
}

fn asset(body: &'static str, content_type: &str) -> Response {
    let mut r = Response::new(200, body);
    r.set_header("content-type", content_type);
    r.set_header("content-security-policy", CSP);
    r.set_header("x-content-type-options", "nosniff");
    r.set_header("cache-control", "no-cache");
    r
}
