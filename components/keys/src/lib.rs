//! The keys component: API keys for closed mode (`api_token` set), admin scope only.
//! - `POST /api/keys` makes a key and answers its secret, once;
//! - `GET /api/keys` lists keys, never their secrets;
//! - `DELETE /api/keys/{id}` revokes one: it fails at once on every route and
//!   instance, since every closed-mode request checks its key in SQLite.

// The Spin export macros generate the ABI glue with `unsafe`; our own code has none.
#![allow(unsafe_code)]

// The build's SDK, as the export macros name it (SPEC §7): WASIp3 by default, the
// 5.2 line for the compatibility build.
#[cfg(feature = "sdk5")]
extern crate sdk5 as spin_sdk;
#[cfg(feature = "sdk6")]
extern crate sdk6 as spin_sdk;

use data20_domain::access::{MadeKey, NewKey, Scope};
use data20_domain::{time::now_ms, ApiError};
use data20_http::gate::{gated, Need};
use data20_http::{error, io, Ctx, Request, Response};
use data20_sqlite::{Db, DbError};
use serde_json::json;

/// A key's JSON is small.
fn body_cap(method: &str) -> usize {
    if method == "POST" {
        4096
    } else {
        0
    }
}

data20_host::http_export!(handle, body_cap);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route<'a> {
    Create,
    List,
    Revoke(&'a str),
}

/// The route `method` and `path` name: `Err` with the allowed methods for a known
/// path, `Ok(None)` for an unknown one.
fn route<'a>(method: &str, path: &'a str) -> Result<Option<Route<'a>>, &'static str> {
    match path.strip_prefix("/api/keys") {
        Some("" | "/") => match method {
            "POST" => Ok(Some(Route::Create)),
            "GET" => Ok(Some(Route::List)),
            _ => Err("GET, POST"),
        },
        Some(rest) => match rest.strip_prefix('/') {
            Some(id) if !id.is_empty() && !id.contains('/') => match method {
                "DELETE" => Ok(Some(Route::Revoke(id))),
                _ => Err("DELETE"),
            },
            _ => Ok(None),
        },
        None => Ok(None),
    }
}

async fn handle(req: Request) -> Response {
    let ctx = Ctx::new("keys", &req);
    let resp = match route(req.method(), req.path()) {
        Ok(None) => data20_http::not_found(&req),
        Err(allow) => {
            let mut r = error(&ApiError::MethodNotAllowed(req.method().to_string()));
            r.set_header("allow", allow);
            r
        }
        Ok(Some(route)) => {
            let settings = data20_http::settings().await;
            let redis = data20_http::redis(&settings);
            let need = Need::Scope(Scope::Admin);
            gated(&req, &settings, &redis, None, need, async |_, _| {
                if settings.api_token().is_none() {
                    return error(&ApiError::Conflict(
                        "API keys work in closed mode only: set the api_token variable (the bootstrap admin key)".into(),
                    ));
                }
                answer(&req, route).await.unwrap_or_else(|e| error(&e))
            })
            .await
        }
    };
    ctx.finish(resp)
}

fn db_error(e: DbError) -> ApiError {
    ApiError::Unavailable(format!("the key store is unavailable: {e}"))
}

async fn answer(req: &Request, route: Route<'_>) -> Result<Response, ApiError> {
    let db = Db::open_shared().await.map_err(db_error)?;
    match route {
        Route::Create => {
            if let Some(ct) = data20_http::header(req, "content-type")? {
                if !ct.to_ascii_lowercase().starts_with("application/json") {
                    return Err(ApiError::UnsupportedMediaType(
                        ct.chars().take(100).collect(),
                    ));
                }
            }
            let new = NewKey::parse(io::body(req)?)?;
            let made = MadeKey::from_random(uuid::Uuid::new_v4().into_bytes(), secret_bytes());
            let stored = db
                .insert_key(&made, &new, now_ms())
                .await
                .map_err(db_error)?;
            let view = stored.view();
            let mut resp = data20_http::json(
                201,
                &json!({
                    "id": view.id,
                    "key": made.key,
                    "name": view.name,
                    "scopes": view.scopes,
                    "rate_limit_max": view.rate_limit_max,
                    "created_at": view.created_at,
                }),
            );
            // The secret is in this answer only: no cache may keep it.
            resp.set_header("cache-control", "no-store");
            resp.set_header("location", format!("/api/keys/{}", view.id));
            Ok(resp)
        }
        Route::List => {
            let keys: Vec<_> = db
                .list_keys()
                .await
                .map_err(db_error)?
                .iter()
                .map(|k| k.view())
                .collect();
            let mut resp = data20_http::json(200, &json!({ "keys": keys, "count": keys.len() }));
            resp.set_header("cache-control", "no-store");
            Ok(resp)
        }
        Route::Revoke(id) => {
            let known = id.len() <= 64 && db.revoke_key(id, now_ms()).await.map_err(db_error)?;
            if known {
                Ok(Response::empty(204))
            } else {
                Err(ApiError::NotFound(format!(
                    "no live key with id {:?}",
                    id.chars().take(64).collect::<String>()
                )))
            }
        }
    }
}

/// 32 random bytes (two UUIDv4s: the platform's random source, 244 random bits).
fn secret_bytes() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("POST", "/api/keys"), Ok(Some(Route::Create)));
        assert_eq!(route("GET", "/api/keys/"), Ok(Some(Route::List)));
        assert_eq!(
            route("DELETE", "/api/keys/abc"),
            Ok(Some(Route::Revoke("abc")))
        );
        assert_eq!(route("PUT", "/api/keys"), Err("GET, POST"));
        assert_eq!(route("GET", "/api/keys/abc"), Err("DELETE"));
        assert_eq!(route("DELETE", "/api/keys/a/b"), Ok(None));
        assert_eq!(route("GET", "/api/keysx"), Ok(None));
    }
}
