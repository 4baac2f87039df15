//! GET /api/openapi.json (the OpenAPI 3.1 document, a file mounted at /openapi) and
//! GET /api/docs (a self-contained page that renders it; no network needed).

use data20_domain::ApiError;
use data20_http::gate::{gated, Need};
use data20_http::{Request, Response};

async fn file(req: &Request, path: &str, content_type: &str) -> Response {
    let settings = data20_http::settings().await;
    let redis = data20_http::redis(&settings);
    gated(
        req,
        &settings,
        &redis,
        None,
        Need::Public,
        async |_, _| match std::fs::read(path) {
            Ok(bytes) => {
                let mut resp = Response::new(200, bytes);
                resp.set_header("content-type", content_type);
                resp.set_header("cache-control", "public, max-age=300");
                resp
            }
            Err(e) => data20_http::error(&ApiError::Internal(format!("cannot read {path}: {e}"))),
        },
    )
    .await
}

pub async fn openapi(req: Request) -> Response {
    file(&req, "/openapi/openapi.json", "application/json").await
}

pub async fn page(req: Request) -> Response {
    let mut resp = file(&req, "/openapi/docs.html", "text/html; charset=utf-8").await;
    resp.set_header(
        "content-security-policy",
        "default-src 'none'; connect-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'",
    );
    resp
}
