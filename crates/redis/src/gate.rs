//! The request gate: per-IP rate limiting and, in the same server-side script, the
//! route's cache read and the cache hit/miss counters. One Redis round trip per
//! request in all (Spin opens a connection per request, so round trips are the cost).
//!
//! The limiter is a sliding-window log: `api:{ip}` is a sorted set of request times
//! (Redis server time, so several Spin hosts agree), trimmed to the window on every
//! call and always given a TTL of one window. It is exact: at most `max` requests are
//! admitted in any window, with no double burst at a fixed window's boundary, and the
//! script runs atomically, so concurrent requests cannot overshoot.

use crate::{as_string, Arg, Redis, RedisError, Reply, Script};

pub const SCRIPT: Script = Script {
    body: SCRIPT_BODY,
    sha1: "136197593871a51afee3add25dd898472d9516e0",
};

const SCRIPT_BODY: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local max = tonumber(ARGV[2])
local key = KEYS[1]
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local count = redis.call('ZCARD', key)
local allowed = 0
if count < max then
  redis.call('ZADD', key, now, t[1] .. t[2] .. ':' .. ARGV[3])
  count = count + 1
  allowed = 1
else
  redis.call('HINCRBY', KEYS[3], 'rate_limited', 1)
end
redis.call('PEXPIRE', key, window)
-- When the oldest admitted request leaves the window, one more is allowed.
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
local reset = window
if oldest[2] then reset = tonumber(oldest[2]) + window - now end
local cached = false
if allowed == 1 and KEYS[2] ~= '' then
  cached = redis.call('GET', KEYS[2])
  if ARGV[4] ~= '' then
    if cached then
      redis.call('HINCRBY', KEYS[3], ARGV[4] .. ':hit', 1)
    else
      redis.call('HINCRBY', KEYS[3], ARGV[4] .. ':miss', 1)
    end
  end
end
return {allowed, max - count, reset, cached}
"#;

/// What the gate decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Admission {
    pub allowed: bool,
    pub limit: u64,
    pub remaining: u64,
    /// Milliseconds until the window admits one more request (for a rejected client:
    /// when to retry).
    pub reset_ms: u64,
    /// The cache entry, when one was asked for and the request was allowed.
    pub cached: Option<Vec<u8>>,
}

/// A cache read to fold into the gate's round trip: the key, and the counter name
/// under which hits and misses are tallied in `data20:stats` (empty: no tally).
#[derive(Debug, Clone, Copy)]
pub struct CacheRead<'a> {
    pub key: &'a str,
    pub counter: &'a str,
}

impl Redis {
    /// Admits or rejects one request from the client whose limiter key is `rate_key`,
    /// and reads `cache` in the same round trip. `nonce` makes the request's entry in
    /// the window unique (a fresh random id, not anything the client chose).
    pub fn gate(
        &self,
        rate_key: &str,
        max: u64,
        window_s: u64,
        nonce: &str,
        cache: Option<CacheRead<'_>>,
    ) -> Result<Admission, RedisError> {
        let (cache_key, counter) = cache.map_or(("", ""), |c| (c.key, c.counter));
        let reply = self.eval(
            &SCRIPT,
            &[rate_key, cache_key, crate::keys::STATS],
            &[
                Arg::Int((window_s * 1000) as i64),
                Arg::Int(max as i64),
                Arg::Str(nonce),
                Arg::Str(counter),
            ],
        )?;
        parse_reply(&reply, max)
    }
}

/// Spin flattens the script's array reply into a list of values.
pub fn parse_reply(reply: &[Reply], max: u64) -> Result<Admission, RedisError> {
    let int = |i: usize| -> Result<i64, RedisError> {
        reply
            .get(i)
            .and_then(|r| match r {
                Reply::Int64(n) => Some(*n),
                other => as_string(other).and_then(|s| s.parse().ok()),
            })
            .ok_or_else(|| {
                RedisError::Command(format!("gate reply {reply:?} has no integer at {i}"))
            })
    };
    let cached = match reply.get(3) {
        Some(Reply::Binary(b)) => Some(b.clone()),
        Some(Reply::Status(s)) => Some(s.clone().into_bytes()),
        _ => None,
    };
    Ok(Admission {
        allowed: int(0)? == 1,
        limit: max,
        remaining: int(1)?.max(0) as u64,
        reset_ms: int(2)?.max(0) as u64,
        cached,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_allowed_with_a_cached_value() {
        let a = parse_reply(
            &[
                Reply::Int64(1),
                Reply::Int64(99),
                Reply::Int64(0),
                Reply::Binary(b"{}".to_vec()),
            ],
            100,
        )
        .unwrap();
        assert!(a.allowed);
        assert_eq!((a.limit, a.remaining, a.reset_ms), (100, 99, 0));
        assert_eq!(a.cached.as_deref(), Some(&b"{}"[..]));
    }

    #[test]
    fn parses_rejections_and_misses() {
        // Lua `false` comes back as a nil reply.
        let a = parse_reply(
            &[
                Reply::Int64(0),
                Reply::Int64(0),
                Reply::Int64(1234),
                Reply::Nil,
            ],
            100,
        )
        .unwrap();
        assert!(!a.allowed);
        assert_eq!(a.reset_ms, 1234);
        assert_eq!(a.cached, None);
        let short = parse_reply(&[Reply::Int64(1), Reply::Int64(5), Reply::Int64(0)], 10).unwrap();
        assert_eq!(short.cached, None);
    }

    #[test]
    fn malformed_replies_are_errors() {
        assert!(parse_reply(&[], 1).is_err());
        assert!(parse_reply(&[Reply::Nil, Reply::Nil, Reply::Nil], 1).is_err());
    }
}
