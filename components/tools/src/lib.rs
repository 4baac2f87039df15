//! The tools component: the registry from Redis (`tool_registry`) or, on a miss, from
//! the registry files mounted at `/registry`.

// The Spin export macros generate the ABI glue with `unsafe`; our own code has none.
#![allow(unsafe_code)]

// The build's SDK, as the export macros name it (SPEC §7): WASIp3 by default, the
// 5.2 line for the compatibility build.
#[cfg(feature = "sdk5")]
extern crate sdk5 as spin_sdk;
#[cfg(feature = "sdk6")]
extern crate sdk6 as spin_sdk;

use data20_domain::access::Scope;
use data20_domain::etag::{etag_for, if_none_match};
use data20_domain::{ApiError, Settings};
use data20_http::gate::{gated, Cached, Need};
use data20_http::{error, header, Ctx, Params, Query, Request, Response};
use data20_redis::gate::CacheRead;
use data20_redis::{keys, Redis};

#[derive(Clone, Copy)]
enum Route {
    List,
    One,
}

data20_host::http_export!(handle, |_| 0);

async fn handle(req: Request) -> Response {
    let ctx = Ctx::new("tools", &req);
    let routed = data20_http::route_get(
        &req,
        &[
            ("/api/tools", Route::List),
            ("/api/tools/:name", Route::One),
        ],
        &[],
    );
    let resp = match routed {
        Err(resp) => resp,
        Ok((Route::List, _)) => list(&req).await,
        Ok((Route::One, params)) => one(&req, &params).await,
    };
    ctx.finish(resp)
}

async fn list(req: &Request) -> Response {
    respond(req, async |settings, redis, cached| {
        let query = Query::parse(req.query(), &["category"])?;
        let category = query
            .get("category")
            .map(|c| data20_domain::registry::parse_category(c).map_err(ApiError::BadRequest))
            .transpose()?;
        let (cached, cache) = data20_http::registry::bytes(settings, redis, cached).await?;
        let body = match category {
            None => cached,
            Some(c) => data20_http::registry::parse(&cached)?
                .filtered(Some(c))
                .to_json(),
        };
        Ok((body, cache))
    })
    .await
}

async fn one(req: &Request, params: &Params) -> Response {
    let name = params.get("name").unwrap_or_default().to_string();
    respond(req, async |settings, redis, cached| {
        let (cached, cache) = data20_http::registry::bytes(settings, redis, cached).await?;
        let registry = data20_http::registry::parse(&cached)?;
        let tool = registry
            .get(&name)
            .ok_or_else(|| ApiError::NotFound(format!("no tool named {:?}", truncate(&name))))?;
        let body = serde_json::to_vec(tool).map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok((body, cache))
    })
    .await
}

/// Renders a registry answer with its ETag, `X-Cache` and a 304 on a matching
/// `If-None-Match`, behind the gate (rate limit and cache read in one round trip).
async fn respond(
    req: &Request,
    body: impl AsyncFnOnce(&Settings, &Redis, Cached) -> Result<(Vec<u8>, &'static str), ApiError>,
) -> Response {
    let settings = data20_http::settings().await;
    let redis = data20_http::redis(&settings);
    let read = CacheRead {
        key: keys::TOOL_REGISTRY,
        counter: "tool_registry",
    };
    gated(
        req,
        &settings,
        &redis,
        Some(read),
        Need::Scope(Scope::Read),
        async |cached, _| {
            let result = match header(req, "if-none-match") {
                Ok(inm) => body(&settings, &redis, cached).await.map(|b| (inm, b)),
                Err(e) => Err(e),
            };
            match result {
                Err(e) => error(&e),
                Ok((inm, (body, cache))) => {
                    let etag = etag_for(&body);
                    let mut resp = if inm.is_some_and(|h| if_none_match(h, &etag)) {
                        Response::empty(304)
                    } else {
                        data20_http::json_bytes(200, body)
                    };
                    resp.set_header("etag", etag);
                    resp.set_header("cache-control", "no-cache");
                    resp.set_header("x-cache", cache);
                    resp
                }
            }
        },
    )
    .await
}

fn truncate(s: &str) -> &str {
    s.char_indices().nth(64).map_or(s, |(i, _)| &s[..i])
}
