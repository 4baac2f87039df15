//! The tool registry as every component reads it: the Redis cache (`tool_registry`)
//! first, else the files mounted at `/registry` (then cached again).
//!
//! Reading the files is the slow path inside Spin: each directory and file operation
//! is a host call, and the five files took about 1.5 ms per request, against about
//! 0.1 ms to parse the cached JSON. The run component gets the cached bytes in its
//! gate round trip; the worker and the jobs component ask Redis for them.

use crate::gate::Cached;
use data20_domain::{ApiError, Registry, Settings, REGISTRY_DIR};
use data20_redis::{keys, Redis};
use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;

thread_local! {
    /// The registry this instance last parsed from the cache, by the digest of the
    /// exact bytes Redis answered. Safe to keep: it is served only for those same bytes,
    /// so it is always the registry Redis holds now (the cache's TTL and ETag rules are
    /// Redis's, untouched); a registry read from the files is never kept.
    static PARSED: RefCell<Option<(u128, Rc<Registry>)>> = const { RefCell::new(None) };
}

/// Where an answer's registry came from, as the `X-Cache` header says it.
pub type Source = &'static str;

/// The registry JSON: the cached bytes on a HIT, else the files (written back to
/// the cache on a MISS). With Redis down this is a BYPASS: nothing is cached.
pub async fn bytes(
    settings: &Settings,
    redis: &Redis,
    cached: Cached,
) -> Result<(Vec<u8>, Source), ApiError> {
    match cached {
        Cached::Hit(bytes) => Ok((bytes, "HIT")),
        Cached::Bypass => Ok((load_files()?.to_json(), "BYPASS")),
        Cached::Miss => {
            let bytes = load_files()?.to_json();
            write_back(settings, redis, &bytes).await;
            Ok((bytes, "MISS"))
        }
    }
}

/// The registry from what the gate found in the cache (see [`bytes`]).
pub async fn from_cache(
    settings: &Settings,
    redis: &Redis,
    cached: Cached,
) -> Result<Rc<Registry>, ApiError> {
    match cached {
        Cached::Hit(bytes) => parse(&bytes),
        // Files read for a MISS or a BYPASS are already a valid registry: no round trip
        // through JSON.
        other => {
            let registry = load_files()?;
            if other == Cached::Miss {
                write_back(settings, redis, &registry.to_json()).await;
            }
            Ok(Rc::new(registry))
        }
    }
}

/// The registry for a caller that has no gate round trip to fold the read into.
pub async fn fetch(settings: &Settings, redis: &Redis) -> Result<Rc<Registry>, ApiError> {
    let cached = match redis.read(keys::TOOL_REGISTRY).await {
        Ok(Some(bytes)) => Cached::Hit(bytes),
        Ok(None) => Cached::Miss,
        Err(_) => Cached::Bypass,
    };
    from_cache(settings, redis, cached).await
}

/// Refills the cache after a MISS; a failed write only costs the next request a MISS.
async fn write_back(settings: &Settings, redis: &Redis, bytes: &[u8]) {
    if let Err(e) = redis
        .set_ex(keys::TOOL_REGISTRY, bytes, settings.tool_cache_ttl_s())
        .await
    {
        crate::log_warn(&format!("registry cache write failed: {e}"));
    }
}

pub fn load_files() -> Result<Registry, ApiError> {
    Registry::load_dir(Path::new(REGISTRY_DIR)).map_err(|e| ApiError::Internal(e.to_string()))
}

/// The registry in the cached `bytes` (parsed once per instance for the same bytes).
/// Cached bytes that no longer parse (a foreign writer, an old format) fall back to
/// the files.
pub fn parse(bytes: &[u8]) -> Result<Rc<Registry>, ApiError> {
    let digest = xxhash_rust::xxh3::xxh3_128(bytes);
    if let Some(kept) = PARSED.with(|p| {
        p.borrow()
            .as_ref()
            .filter(|(d, _)| *d == digest)
            .map(|(_, r)| r.clone())
    }) {
        return Ok(kept);
    }
    match serde_json::from_slice::<Registry>(bytes) {
        Ok(registry) => {
            let registry = Rc::new(registry);
            PARSED.with(|p| *p.borrow_mut() = Some((digest, registry.clone())));
            Ok(registry)
        }
        Err(e) => {
            crate::log_warn(&format!("cached registry is invalid ({e}); reading files"));
            load_files().map(Rc::new)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_bytes_parse_once_and_new_bytes_again() {
        let registry = Registry::load_dir(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../registry"
        )))
        .unwrap();
        let bytes = registry.to_json();
        let first = parse(&bytes).unwrap();
        assert!(Rc::ptr_eq(&first, &parse(&bytes).unwrap()));
        let one = registry.filtered(None).to_json();
        let mut fewer: serde_json::Value = serde_json::from_slice(&one).unwrap();
        fewer["tools"].as_array_mut().unwrap().truncate(1);
        let changed = parse(fewer.to_string().as_bytes()).unwrap();
        assert!(!Rc::ptr_eq(&first, &changed));
        assert_eq!(changed.tools.len(), 1);
    }
}
