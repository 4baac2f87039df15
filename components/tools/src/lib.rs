//! The tools component: the registry from Redis (`tool_registry`) or, on a miss, from
//! the registry files mounted at `/registry`.

// The Spin export macros generate the ABI glue with `unsafe`; our own code has none.
#![allow(unsafe_code)]

use data20_domain::etag::{etag_for, if_none_match};
use data20_domain::{ApiError, Settings};
use data20_http::gate::{gated, Cached};
use data20_http::{error, header, Ctx, Query};
use data20_redis::gate::CacheRead;
use data20_redis::{keys, Redis};
use spin_sdk::http::{Params, Request, Response};
use spin_sdk::http_component;

#[http_component]
fn handle(req: Request) -> Response {
    let ctx = Ctx::new("tools", &req);
    let router = data20_http::get_router(&[("/api/tools", list), ("/api/tools/:name", one)], &[]);
    ctx.finish(router.handle(req))
}

fn list(req: Request, _: Params) -> Response {
    respond(&req, |settings, redis, cached| {
        let query = Query::parse(req.query(), &["category"])?;
        let category = query
            .get("category")
            .map(|c| data20_domain::registry::parse_category(c).map_err(ApiError::BadRequest))
            .transpose()?;
        let (cached, cache) = data20_http::registry::bytes(settings, redis, cached)?;
        let body = match category {
            None => cached,
            Some(c) => data20_http::registry::parse(&cached)?
                .filtered(Some(c))
                .to_json(),
        };
        Ok((body, cache))
    })
}

fn one(req: Request, params: Params) -> Response {
    let name = params.get("name").unwrap_or_default().to_string();
    respond(&req, |settings, redis, cached| {
        let (cached, cache) = data20_http::registry::bytes(settings, redis, cached)?;
        let registry = data20_http::registry::parse(&cached)?;
        let tool = registry
            .get(&name)
            .ok_or_else(|| ApiError::NotFound(format!("no tool named {:?}", truncate(&name))))?;
        let body = serde_json::to_vec(tool).map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok((body, cache))
    })
}

/// Renders a registry answer with its ETag, `X-Cache` and a 304 on a matching
/// `If-None-Match`, behind the gate (rate limit and cache read in one round trip).
fn respond(
    req: &Request,
    body: impl FnOnce(&Settings, &Redis, Cached) -> Result<(Vec<u8>, &'static str), ApiError>,
) -> Response {
    let settings = data20_http::settings();
    let redis = data20_http::redis(&settings);
    let read = CacheRead {
        key: keys::TOOL_REGISTRY,
        counter: "tool_registry",
    };
    gated(req, &settings, &redis, Some(read), |cached| {
        let result = header(req, "if-none-match")
            .and_then(|inm| Ok((inm, body(&settings, &redis, cached)?)));
        match result {
            Err(e) => error(&e),
            Ok((inm, (body, cache))) => {
                let etag = etag_for(&body);
                let mut resp = if inm.is_some_and(|h| if_none_match(h, &etag)) {
                    Response::new(304, ())
                } else {
                    data20_http::json_bytes(200, body)
                };
                resp.set_header("etag", etag);
                resp.set_header("cache-control", "no-cache");
                resp.set_header("x-cache", cache);
                resp
            }
        }
    })
}

fn truncate(s: &str) -> &str {
    s.char_indices().nth(64).map_or(s, |(i, _)| &s[..i])
}
