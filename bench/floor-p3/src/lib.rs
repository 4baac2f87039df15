//! Benchmark floors on `spin-sdk` 6.0.0 (WASIp3). Spin 4 keeps such an instance alive
//! across requests (up to 128, 16 at once), so these are the floors of the product
//! once its components move to WASIp3:
//!
//! - `/floor/p3/hello`: no I/O;
//! - `/floor/p3/kv-get`: one GET of the registry-sized value through the key-value
//!   store (the `redis` provider's pooled connection);
//! - `/floor/p3/redis-get`: one outbound Redis GET on a connection the instance keeps
//!   between requests (opened on first use, dropped after any error so the next
//!   request opens a fresh one).

// The Spin export macros generate the ABI glue with `unsafe`.
#![allow(unsafe_code)]

use spin_sdk::http::{FullBody, IntoResponse, Request, StatusCode};
use spin_sdk::redis::Connection;
use std::cell::RefCell;
use std::rc::Rc;

thread_local! {
    /// The kept Redis connection. Safe to share between the instance's concurrent
    /// requests: it carries no request's data, and a failed one is dropped.
    static KEPT: RefCell<Option<Rc<Connection>>> = const { RefCell::new(None) };
}

#[spin_sdk::http_service]
async fn handle(req: Request) -> impl IntoResponse {
    let value = match req.uri().path() {
        "/floor/p3/hello" => return reply(StatusCode::OK, b"hello".to_vec()),
        "/floor/p3/kv-get" => kv_get().await,
        "/floor/p3/redis-get" => kept_get().await,
        other => {
            return reply(
                StatusCode::NOT_FOUND,
                format!("no floor at {other}").into_bytes(),
            )
        }
    };
    match value {
        Ok(Some(bytes)) => reply(StatusCode::OK, bytes),
        Ok(None) => reply(StatusCode::NOT_FOUND, b"bench:floor is not set".to_vec()),
        Err(e) => reply(StatusCode::SERVICE_UNAVAILABLE, e.into_bytes()),
    }
}

async fn kv_get() -> Result<Option<Vec<u8>>, String> {
    let store = spin_sdk::key_value::Store::open("default")
        .await
        .map_err(|e| format!("key-value: {e:?}"))?;
    store
        .get("bench:floor")
        .await
        .map_err(|e| format!("key-value: {e:?}"))
}

async fn kept_get() -> Result<Option<Vec<u8>>, String> {
    let conn = match KEPT.with(|k| k.borrow().clone()) {
        Some(conn) => conn,
        None => {
            let url = spin_sdk::variables::get("redis_url")
                .await
                .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
            let conn = Rc::new(
                Connection::open(&url)
                    .await
                    .map_err(|e| format!("redis: {e}"))?,
            );
            KEPT.with(|k| *k.borrow_mut() = Some(conn.clone()));
            conn
        }
    };
    let value = conn.get("bench:floor").await;
    if value.is_err() {
        KEPT.with(|k| *k.borrow_mut() = None);
    }
    value.map_err(|e| format!("redis: {e}"))
}

fn reply(status: StatusCode, body: Vec<u8>) -> (StatusCode, FullBody<bytes::Bytes>) {
    (status, FullBody::new(body.into()))
}
