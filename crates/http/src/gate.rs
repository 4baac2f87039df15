//! Every `/api/*` request passes the gate first: client identity, the per-IP rate
//! limit and (folded into the same Redis round trip) the route's cache read. The
//! rate-limit headers go on every answer, a rejection is a 429 with `Retry-After`.

use crate::{Request, Response};
use data20_domain::access::{self, Caller, Scope};
use data20_domain::{ApiError, Settings};
use data20_redis::gate::{Admission, Bucket, CacheRead, Limit};
use data20_redis::Redis;
use data20_sqlite::Db;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// What the gate found in the cache for the route.
#[derive(Debug, Clone, PartialEq)]
pub enum Cached {
    Hit(Vec<u8>),
    Miss,
    /// Redis is unavailable: skip the cache for this request.
    Bypass,
}

/// The client's address: the header the Spin host sets (`true-client-ip` where the
/// host uses it, else `spin-client-addr`), or the first `X-Forwarded-For` entry only
/// when `trust_forwarded_for` says a trusted proxy sets it.
pub fn client_ip(
    settings: &Settings,
    forwarded_for: Option<&str>,
    true_client_ip: Option<&str>,
    spin_client_addr: Option<&str>,
) -> Result<IpAddr, ApiError> {
    let bad = |h: &str| ApiError::BadRequest(format!("header {h} does not hold an IP address"));
    if settings.trust_forwarded_for() {
        if let Some(xff) = forwarded_for {
            let first = xff.split(',').next().unwrap_or_default().trim();
            return first.parse().map_err(|_| bad("x-forwarded-for"));
        }
    }
    if let Some(ip) = true_client_ip {
        return ip.trim().parse().map_err(|_| bad("true-client-ip"));
    }
    match spin_client_addr {
        Some(addr) => addr
            .trim()
            .parse::<SocketAddr>()
            .map(|s| s.ip())
            .or_else(|_| addr.trim().parse::<IpAddr>())
            .map_err(|_| bad("spin-client-addr")),
        // Not behind Spin's HTTP trigger (never the case in production): one bucket.
        None => Ok(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
    }
}

/// The rate-limit headers for an answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateHeaders {
    pub limit: u64,
    pub remaining: u64,
    pub reset_s: u64,
}

impl RateHeaders {
    pub fn apply(&self, resp: &mut Response) {
        resp.set_header("x-ratelimit-limit", self.limit.to_string());
        resp.set_header("x-ratelimit-remaining", self.remaining.to_string());
        resp.set_header("x-ratelimit-reset", self.reset_s.to_string());
    }
}

/// What a route needs of its caller in closed mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Health, OpenAPI, the docs page: no key asked for.
    Public,
    /// A valid key with this scope.
    Scope(Scope),
}

/// 401s one IP may get per rate-limit window before it gets 429s instead: guessing
/// keys stays slow, and a client with a valid key is never held up by them.
pub const UNAUTHORIZED_MAX: u64 = 20;

/// Runs the gate for `req` and, when admitted, `handler` with what the cache held and
/// whom the request acts for. The rate-limit headers are put on whatever comes back.
pub async fn gated(
    req: &Request,
    settings: &Settings,
    redis: &Redis,
    cache: Option<CacheRead<'_>>,
    need: Need,
    handler: impl AsyncFnOnce(Cached, Caller) -> Response,
) -> Response {
    let (headers, outcome) = admit(req, settings, redis, cache, need).await;
    let mut resp = match outcome {
        Ok((cached, caller)) => handler(cached, caller).await,
        Err(e) => crate::error(&e),
    };
    headers.apply(&mut resp);
    resp
}

/// Authenticates (closed mode), rate-limits and reads the cache, in that order: the
/// key decides whose counter the request counts against.
pub async fn admit(
    req: &Request,
    settings: &Settings,
    redis: &Redis,
    cache: Option<CacheRead<'_>>,
    need: Need,
) -> (RateHeaders, Result<(Cached, Caller), ApiError>) {
    let open = RateHeaders {
        limit: settings.rate_limit_max(),
        remaining: settings.rate_limit_max(),
        reset_s: settings.rate_limit_window_s(),
    };
    let ip = match identity(req, settings) {
        Ok(ip) => ip,
        Err(e) => return (open, Err(e)),
    };
    // One request to the limiter, counted against `client`, now.
    let limit = |client, max| Limit {
        client,
        max,
        window_s: settings.rate_limit_window_s(),
        now_ms: data20_host::time::unix_ms().max(0) as u64,
    };
    let retry = |reset_ms: u64| ApiError::TooManyRequests {
        retry_after_s: reset_ms.div_ceil(1000).max(1),
    };
    let caller = match (settings.api_token(), need) {
        (None, _) | (_, Need::Public) => Caller::Anonymous,
        (Some(token), Need::Scope(_)) => match authenticate(req, token).await {
            Ok(caller) => caller,
            Err(e @ ApiError::Unauthorized(_)) => {
                let failures = limit(Bucket::Unauthorized(ip), UNAUTHORIZED_MAX);
                // Redis down: the 401 still stands, unlimited.
                return match redis.gate(failures, None).await {
                    Ok(Admission { decision, .. }) if !decision.allowed => {
                        (open, Err(retry(decision.reset_ms)))
                    }
                    _ => (open, Err(e)),
                };
            }
            Err(e) => return (open, Err(e)),
        },
    };
    let (client, max) = match &caller {
        Caller::Anonymous => (Bucket::Ip(ip), settings.rate_limit_max()),
        Caller::Key {
            id, rate_limit_max, ..
        } => (
            Bucket::Key(id),
            rate_limit_max.unwrap_or_else(|| settings.rate_limit_max()),
        ),
    };
    let open = RateHeaders {
        limit: max,
        remaining: max,
        ..open
    };
    let (headers, cached) = match redis.gate(limit(client, max), cache).await {
        Ok(Admission { decision, cached }) => {
            let headers = RateHeaders {
                limit: decision.limit,
                remaining: decision.remaining,
                reset_s: decision.reset_ms.div_ceil(1000),
            };
            if !decision.allowed {
                return (headers, Err(retry(decision.reset_ms)));
            }
            (headers, cached.map_or(Cached::Miss, Cached::Hit))
        }
        Err(e) if settings.rate_limit_fail_open() || !e.is_unavailable() => {
            if !e.is_unavailable() {
                crate::log_warn(&format!("rate limiter error, letting the request through: {e}"));
            }
            (open, Cached::Bypass)
        }
        Err(_) => {
            return (
                open,
                Err(ApiError::Unavailable(
                    "the rate limiter is unavailable and rate_limit_fail_open is false; try again shortly".into(),
                )),
            )
        }
    };
    let allowed = match need {
        Need::Public => Ok(()),
        Need::Scope(scope) => caller.require(scope),
    };
    (headers, allowed.map(|()| (cached, caller)))
}

/// The caller a closed-mode request's key names: the bootstrap key (`api_token`), or a
/// live key from SQLite (the source of truth: a revoked key fails at once, on every
/// instance, with Redis up or down). 401 for anything else; the secret is never logged.
async fn authenticate(req: &Request, api_token: &str) -> Result<Caller, ApiError> {
    let presented = access::bearer(crate::header(req, "authorization").map_err(|_| {
        ApiError::Unauthorized("the Authorization header is not a valid key".into())
    })?)?
    .ok_or_else(|| ApiError::Unauthorized("this route needs Authorization: Bearer <key>".into()))?;
    if access::is_bootstrap(presented, api_token) {
        return Ok(Caller::bootstrap());
    }
    let invalid = || ApiError::Unauthorized("the key is not valid (unknown or revoked)".into());
    let id = access::key_id(presented).ok_or_else(invalid)?;
    let db = Db::open_shared()
        .await
        .map_err(|e| ApiError::Unavailable(format!("cannot check the key: {e}")))?;
    let stored = db
        .live_key(id)
        .await
        .map_err(|e| ApiError::Unavailable(format!("cannot check the key: {e}")))?
        .ok_or_else(invalid)?;
    if !access::digest_matches(presented, &stored.digest) {
        return Err(invalid());
    }
    Ok(Caller::Key {
        id: stored.id,
        scopes: stored.scopes,
        rate_limit_max: stored.rate_limit_max,
    })
}

/// The client's address as the limiter sees it (see [`client_ip`]).
pub fn identity(req: &Request, settings: &Settings) -> Result<IpAddr, ApiError> {
    // An untrusted X-Forwarded-For cannot change the answer; and without the header
    // the setting is not even read (each variable read is a host call).
    let forwarded_for = match req.header("x-forwarded-for") {
        Some(_) if settings.trust_forwarded_for() => crate::header(req, "x-forwarded-for")?,
        _ => None,
    };
    client_ip(
        settings,
        forwarded_for,
        crate::header(req, "true-client-ip")?,
        crate::header(req, "spin-client-addr")?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(trust: bool) -> Settings {
        Settings::from_pairs(&[("trust_forwarded_for", if trust { "true" } else { "false" })])
    }

    #[test]
    fn uses_the_address_spin_sets() {
        let ip = client_ip(&settings(false), None, None, Some("127.0.0.1:5000")).unwrap();
        assert_eq!(ip.to_string(), "127.0.0.1");
        let v6 = client_ip(&settings(false), None, None, Some("[::1]:5000")).unwrap();
        assert_eq!(v6.to_string(), "::1");
        assert_eq!(
            client_ip(
                &settings(false),
                None,
                Some("203.0.113.9"),
                Some("10.0.0.1:1")
            )
            .unwrap()
            .to_string(),
            "203.0.113.9"
        );
    }

    #[test]
    fn forwarded_for_is_ignored_unless_trusted() {
        let xff = Some("198.51.100.7, 10.0.0.1");
        let addr = Some("127.0.0.1:5000");
        assert_eq!(
            client_ip(&settings(false), xff, None, addr)
                .unwrap()
                .to_string(),
            "127.0.0.1"
        );
        assert_eq!(
            client_ip(&settings(true), xff, None, addr)
                .unwrap()
                .to_string(),
            "198.51.100.7"
        );
    }

    #[test]
    fn garbage_addresses_are_400s() {
        assert_eq!(
            client_ip(&settings(true), Some("not-an-ip"), None, None)
                .unwrap_err()
                .status(),
            400
        );
        assert_eq!(
            client_ip(&settings(false), None, Some("x"), None)
                .unwrap_err()
                .status(),
            400
        );
        assert_eq!(
            client_ip(&settings(false), None, None, Some("nope"))
                .unwrap_err()
                .status(),
            400
        );
    }
}
