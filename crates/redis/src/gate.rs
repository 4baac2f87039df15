//! The request gate: the per-IP rate limit and the route's cache read, with the
//! stats counters (cache hits and misses, rejections) kept on the way.
//!
//! The limiter is the sliding-window counter of [`data20_domain::ratelimit`]: one
//! integer key per client and fixed window (`api:{ip}:{window}`), expiring two windows
//! after its first increment. It runs as one Lua script: one round trip, on the
//! instance's kept connection.

use crate::{as_string, int_reply, keys, Arg, Redis, RedisError, Reply, Script};
use data20_domain::ratelimit::{decide, Decision, Window};
use std::net::IpAddr;

pub const SCRIPT: Script = Script {
    body: SCRIPT_BODY,
    sha1: "26035dfdfca4389d59adddb74089198d28230a8f",
};

/// KEYS: current window's counter, previous window's counter, cache entry ('' for
/// none), rejections counter, hit counter, miss counter ('' for no tally).
/// ARGV: max, window length (ms), elapsed in the window (ms), counter TTL (s).
/// The admission test is `ratelimit::admits`, in exact integer arithmetic (Lua's
/// doubles hold these products exactly below 2^53).
const SCRIPT_BODY: &str = r#"
local current = redis.call('INCR', KEYS[1])
if current == 1 then redis.call('EXPIRE', KEYS[1], ARGV[4]) end
local previous = tonumber(redis.call('GET', KEYS[2]) or '0')
local max, length, elapsed = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local cached = false
if previous * (length - elapsed) + current * length <= max * length then
  if KEYS[3] ~= '' then
    cached = redis.call('GET', KEYS[3])
    if KEYS[5] ~= '' then
      if cached then redis.call('INCR', KEYS[5]) else redis.call('INCR', KEYS[6]) end
    end
  end
else
  redis.call('DECR', KEYS[1])
  redis.call('INCR', KEYS[4])
end
return {current, previous, cached}
"#;

/// What the gate decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Admission {
    pub decision: Decision,
    /// The cache entry, when one was asked for and the request was allowed.
    pub cached: Option<Vec<u8>>,
}

/// A cache read to do once the request is admitted: the key, and the name of the
/// cache whose hits and misses are counted (empty: no tally).
#[derive(Debug, Clone, Copy)]
pub struct CacheRead<'a> {
    pub key: &'a str,
    pub counter: &'a str,
}

/// Whose counter a request counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket<'a> {
    /// A request without a key (open mode, public routes): its IP, `api:{ip}:{window}`.
    Ip(IpAddr),
    /// A request with a valid key (closed mode): `api:key:{id}:{window}`.
    Key(&'a str),
    /// Requests from one IP that got a 401: `api:unauthorized:{ip}:{window}`.
    Unauthorized(IpAddr),
}

impl std::fmt::Display for Bucket<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bucket::Ip(ip) => write!(f, "{ip}"),
            Bucket::Key(id) => write!(f, "key:{id}"),
            Bucket::Unauthorized(ip) => write!(f, "unauthorized:{ip}"),
        }
    }
}

/// One request to the limiter.
#[derive(Debug, Clone, Copy)]
pub struct Limit<'a> {
    pub client: Bucket<'a>,
    pub max: u64,
    pub window_s: u64,
    pub now_ms: u64,
}

impl Redis {
    /// Admits or rejects one request and, when admitted, reads `cache`.
    pub async fn gate(
        &self,
        limit: Limit<'_>,
        cache: Option<CacheRead<'_>>,
    ) -> Result<Admission, RedisError> {
        let window = Window::at(limit.now_ms, limit.window_s);
        self.gate_outbound(&limit, &window, cache).await
    }

    async fn gate_outbound(
        &self,
        limit: &Limit<'_>,
        window: &Window,
        cache: Option<CacheRead<'_>>,
    ) -> Result<Admission, RedisError> {
        let key = keys::rate_limit(&limit.client, window.index);
        let prev_key = keys::rate_limit(&limit.client, window.previous_index());
        let (cache_key, [hit, miss]) = match cache {
            Some(c) if !c.counter.is_empty() => (c.key, keys::cache_counters(c.counter)),
            Some(c) => (c.key, [String::new(), String::new()]),
            None => ("", [String::new(), String::new()]),
        };
        let rejected = keys::counter(keys::RATE_LIMITED);
        let reply = self
            .eval(
                &SCRIPT,
                &[&key, &prev_key, cache_key, &rejected, &hit, &miss],
                &[
                    Arg::Int(limit.max as i64),
                    Arg::Int(window.length_ms as i64),
                    Arg::Int(window.elapsed_ms as i64),
                    Arg::Int(window.counter_ttl_s() as i64),
                ],
            )
            .await?;
        let (current, previous, cached) = parse_reply(&reply)?;
        Ok(Admission {
            decision: decide(window, limit.max, current, previous),
            cached,
        })
    }
}

/// The script's `{current, previous, cached}`, as Spin flattens it.
pub fn parse_reply(reply: &[Reply]) -> Result<(u64, u64, Option<Vec<u8>>), RedisError> {
    let int = |i: usize| -> Result<u64, RedisError> {
        let value = reply
            .get(i)
            .ok_or_else(|| RedisError::Command(format!("gate reply {reply:?} is too short")))?;
        Ok(int_reply(std::slice::from_ref(value))?.max(0) as u64)
    };
    let cached = match reply.get(2) {
        Some(Reply::Nil) | None => None,
        Some(other) => match other {
            Reply::Binary(b) => Some(b.clone()),
            other => as_string(other).map(String::into_bytes),
        },
    };
    Ok((int(0)?, int(1)?, cached))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_counts_and_a_cached_value() {
        let (current, previous, cached) = parse_reply(&[
            Reply::Int64(3),
            Reply::Int64(40),
            Reply::Binary(b"{}".to_vec()),
        ])
        .unwrap();
        assert_eq!((current, previous), (3, 40));
        assert_eq!(cached.as_deref(), Some(&b"{}"[..]));
    }

    #[test]
    fn a_lua_false_is_a_miss() {
        // Lua `false` comes back as a nil reply, or not at all.
        let (_, _, cached) = parse_reply(&[Reply::Int64(1), Reply::Int64(0), Reply::Nil]).unwrap();
        assert_eq!(cached, None);
        let (_, _, short) = parse_reply(&[Reply::Int64(1), Reply::Int64(0)]).unwrap();
        assert_eq!(short, None);
    }

    #[test]
    fn malformed_replies_are_errors() {
        assert!(parse_reply(&[]).is_err());
        assert!(parse_reply(&[Reply::Nil, Reply::Nil, Reply::Nil]).is_err());
    }
}
