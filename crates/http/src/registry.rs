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
use std::path::Path;

/// Where an answer's registry came from, as the `X-Cache` header says it.
pub type Source = &'static str;

/// The registry JSON: the cached bytes on a HIT, else the files (written back to
/// the cache on a MISS). With Redis down this is a BYPASS: nothing is cached.
pub fn bytes(
    settings: &Settings,
    redis: &Redis,
    cached: Cached,
) -> Result<(Vec<u8>, Source), ApiError> {
    match cached {
        Cached::Hit(bytes) => Ok((bytes, "HIT")),
        Cached::Bypass => Ok((load_files()?.to_json(), "BYPASS")),
        Cached::Miss => {
            let bytes = load_files()?.to_json();
            write_back(settings, redis, &bytes);
            Ok((bytes, "MISS"))
        }
    }
}

/// The registry from what the gate found in the cache (see [`bytes`]).
pub fn from_cache(
    settings: &Settings,
    redis: &Redis,
    cached: Cached,
) -> Result<Registry, ApiError> {
    match cached {
        Cached::Hit(bytes) => parse(&bytes),
        // Files read for a MISS or a BYPASS are already a valid registry: no round trip
        // through JSON.
        other => {
            let registry = load_files()?;
            if other == Cached::Miss {
                write_back(settings, redis, &registry.to_json());
            }
            Ok(registry)
        }
    }
}

/// The registry for a caller that has no gate round trip to fold the read into.
pub fn fetch(settings: &Settings, redis: &Redis) -> Result<Registry, ApiError> {
    let cached = match redis.read(keys::TOOL_REGISTRY) {
        Ok(Some(bytes)) => Cached::Hit(bytes),
        Ok(None) => Cached::Miss,
        Err(_) => Cached::Bypass,
    };
    from_cache(settings, redis, cached)
}

/// Refills the cache after a MISS; a failed write only costs the next request a MISS.
fn write_back(settings: &Settings, redis: &Redis, bytes: &[u8]) {
    if let Err(e) = redis.set_ex(keys::TOOL_REGISTRY, bytes, settings.tool_cache_ttl_s()) {
        crate::log_warn(&format!("registry cache write failed: {e}"));
    }
}

pub fn load_files() -> Result<Registry, ApiError> {
    Registry::load_dir(Path::new(REGISTRY_DIR)).map_err(|e| ApiError::Internal(e.to_string()))
}

/// Cached bytes that no longer parse (a foreign writer, an old format) fall back to
/// the files.
pub fn parse(bytes: &[u8]) -> Result<Registry, ApiError> {
    match serde_json::from_slice(bytes) {
        Ok(registry) => Ok(registry),
        Err(e) => {
            crate::log_warn(&format!("cached registry is invalid ({e}); reading files"));
            load_files()
        }
    }
}
