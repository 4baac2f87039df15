//! Reads on the host's pooled Redis connection: Spin's key-value store with the
//! `redis` provider (`wasi:keyvalue`, bucket `default`).
//!
//! Spin's outbound Redis opens a new connection for every request; the key-value
//! store's Redis provider keeps one multiplexed connection for the whole app, so a GET
//! through it costs a round trip on a live connection instead of a TCP handshake. Its
//! keys are plain Redis keys, so what outbound Redis writes (`tool_registry`,
//! `job:{id}:status`) is read here as it is. `increment` is `INCRBY` on that same
//! connection. Only `get` and `increment` are used: `get_many` sends `KEYS` instead of
//! `MGET` on Spin 3.6.3 and 4.0.2, compare-and-swap opens a connection of its own, and
//! `set` cannot carry a TTL.

use crate::{classify_message, RedisError};
use spin_sdk::wit::wasi::keyvalue::{atomics, store};
use std::cell::OnceCell;

/// The store label every data20 component names in `key_value_stores`.
pub const STORE: &str = "default";

/// The pooled bucket for one request, opened on first use.
#[derive(Default)]
pub struct Pooled {
    bucket: OnceCell<Result<store::Bucket, RedisError>>,
}

impl Pooled {
    pub fn new() -> Pooled {
        Pooled::default()
    }

    fn bucket(&self) -> Result<&store::Bucket, RedisError> {
        self.bucket
            .get_or_init(|| store::open(STORE).map_err(|e| classify_store_error(&e)))
            .as_ref()
            .map_err(Clone::clone)
    }

    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, RedisError> {
        self.bucket()?
            .get(key)
            .map_err(|e| classify_store_error(&e))
    }

    /// `INCRBY key delta`: the new value.
    pub fn increment(&self, key: &str, delta: i64) -> Result<i64, RedisError> {
        atomics::increment(self.bucket()?, key, delta).map_err(|e| classify_store_error(&e))
    }
}

/// A store that is missing or not allowed is a configuration error, reported as
/// unavailable so the request degrades instead of failing; a provider error carries
/// redis-rs's text, sorted as for outbound Redis.
fn classify_store_error(err: &store::Error) -> RedisError {
    match err {
        store::Error::NoSuchStore => RedisError::Unavailable(format!(
            "no key-value store {STORE:?}: give the component key_value_stores = [\"default\"]"
        )),
        store::Error::AccessDenied => RedisError::Unavailable(format!(
            "access to key-value store {STORE:?} denied: add it to the component's key_value_stores"
        )),
        store::Error::Other(msg) => classify_message(msg),
    }
}
