//! data20's Redis adapter, built on Spin's outbound Redis ([`data20_host::redis`]).
//!
//! Redis is a cache and an event bus here, never the source of truth, so every call
//! returns `Result<_, RedisError>` and callers take their fallback path on error. The
//! connection comes from the host adapter: kept by the instance on WASIp3 (dropped
//! after a failure), one per request on WASIp2. Once a call fails for lack of a
//! server, the client remembers it and answers `Unavailable` at once for the rest of
//! the request instead of paying another connection attempt.

pub mod gate;
pub mod info;
/// Key and channel names live with the domain (the supervisor, a host program, uses them too).
pub use data20_domain::keys;

use data20_host::redis::{Connection, Error as HostRedisError, Param};
use std::cell::{Cell, RefCell};
use std::rc::Rc;

pub use data20_host::redis::Reply;
pub use info::RedisInfo;
type RedisResult = Reply;

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum RedisError {
    /// No server, or the connection broke: take the fallback path.
    #[error("redis unavailable: {0}")]
    Unavailable(String),
    /// The server answered, but with an error or an unexpected reply.
    #[error("redis error: {0}")]
    Command(String),
}

impl RedisError {
    pub fn is_unavailable(&self) -> bool {
        matches!(self, RedisError::Unavailable(_))
    }
}

/// Sorts the host's Redis errors into "the server is not there" and "the server said no".
pub fn classify(err: &HostRedisError) -> RedisError {
    match err {
        HostRedisError::InvalidAddress => RedisError::Unavailable("invalid redis address".into()),
        HostRedisError::TooManyConnections => {
            RedisError::Unavailable("too many redis connections".into())
        }
        HostRedisError::TypeError => RedisError::Command("unexpected reply type".into()),
        HostRedisError::Other(msg) => classify_message(msg),
    }
}

/// Server-side errors carry a Redis error code (`ERR`, `WRONGTYPE`, `NOSCRIPT`, ...);
/// anything else (refused, reset, timed out, broken pipe) means no usable server.
pub fn classify_message(msg: &str) -> RedisError {
    const SERVER_CODES: [&str; 8] = [
        "ERR",
        "WRONGTYPE",
        "NOSCRIPT",
        "BUSY",
        "NOPERM",
        "EXECABORT",
        "ResponseError",
        "OOM",
    ];
    // Spin passes redis-rs's wording on: "An error was signalled by the server -
    // NoScriptError: No matching script. ..." for a server-side error.
    let server_said_no = (msg.contains("signalled by the server")
        || SERVER_CODES.iter().any(|code| msg.contains(code)))
        && !msg.to_ascii_lowercase().contains("refused");
    if server_said_no {
        RedisError::Command(msg.to_string())
    } else {
        RedisError::Unavailable(msg.to_string())
    }
}

/// A Redis client for one request (or one trigger invocation).
pub struct Redis {
    url: String,
    conn: RefCell<Option<Rc<Connection>>>,
    down: Cell<bool>,
}

impl Redis {
    /// Connects lazily on the first command, so a request that needs no Redis pays
    /// nothing.
    pub fn new(url: &str) -> Redis {
        Redis {
            url: url.to_string(),
            conn: RefCell::new(None),
            down: Cell::new(false),
        }
    }

    /// The client a component's settings ask for (`redis_url`).
    pub fn from_settings(settings: &data20_domain::Settings) -> Redis {
        Redis::new(settings.redis_url())
    }

    /// `GET key`, for hot reads (cache entries, counters).
    pub async fn read(&self, key: &str) -> Result<Option<Vec<u8>>, RedisError> {
        self.get(key).await
    }

    /// `INCRBY key delta`: the new value.
    pub async fn increment(&self, key: &str, delta: i64) -> Result<i64, RedisError> {
        int_reply(
            &self
                .execute("INCRBY", &[Arg::Str(key), Arg::Int(delta)])
                .await?,
        )
    }

    /// Whether a call in this request already found Redis unreachable.
    pub fn known_down(&self) -> bool {
        self.down.get()
    }

    async fn conn(&self) -> Result<Rc<Connection>, RedisError> {
        if self.down.get() {
            return Err(RedisError::Unavailable(
                "redis marked down for this request".into(),
            ));
        }
        if let Some(conn) = self.conn.borrow().clone() {
            return Ok(conn);
        }
        match Connection::open(&self.url).await {
            Ok(c) => {
                let c = Rc::new(c);
                *self.conn.borrow_mut() = Some(c.clone());
                Ok(c)
            }
            Err(e) => {
                let e = classify(&e);
                self.note(&e);
                Err(e)
            }
        }
    }

    fn note(&self, err: &RedisError) {
        if err.is_unavailable() && !self.down.replace(true) {
            data20_domain::log::emit(&serde_json::json!({
                "level": "warn", "msg": "redis unavailable, degrading", "reason": err.to_string(),
            }));
        }
    }

    /// Runs any command; the building block for the helpers below.
    pub async fn execute(
        &self,
        cmd: &str,
        args: &[Arg<'_>],
    ) -> Result<Vec<RedisResult>, RedisError> {
        let conn = self.conn().await?;
        let params: Vec<Param> = args.iter().map(|a| a.to_param()).collect();
        conn.execute(cmd, &params).await.map_err(|e| {
            let err = classify(&e);
            self.note(&err);
            if err.is_unavailable() {
                // The host dropped the connection; the next call (if any) reopens.
                *self.conn.borrow_mut() = None;
            }
            err
        })
    }

    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, RedisError> {
        let reply = self.execute("GET", &[Arg::Str(key)]).await?;
        match reply.first() {
            None | Some(Reply::Nil) => Ok(None),
            Some(Reply::Binary(b)) => Ok(Some(b.clone())),
            Some(Reply::Status(s)) => Ok(Some(s.clone().into_bytes())),
            Some(other) => Err(RedisError::Command(format!("GET answered {other:?}"))),
        }
    }

    /// `SET key value EX ttl`: every cache entry data20 writes expires. A TTL of 0
    /// means "do not cache" and writes nothing.
    pub async fn set_ex(&self, key: &str, value: &[u8], ttl_s: u64) -> Result<(), RedisError> {
        if ttl_s == 0 {
            return Ok(());
        }
        self.execute(
            "SET",
            &[
                Arg::Str(key),
                Arg::Bytes(value),
                Arg::Str("EX"),
                Arg::Int(ttl_s as i64),
            ],
        )
        .await
        .map(|_| ())
    }

    /// [`Redis::set_ex`] then `PUBLISH`, in one round trip (in that order, atomically):
    /// answers how many subscribers received the message.
    pub async fn set_ex_and_publish(
        &self,
        key: &str,
        value: &[u8],
        ttl_s: u64,
        channel: &str,
        payload: &[u8],
    ) -> Result<i64, RedisError> {
        let reply = self
            .eval(
                &SET_EX_AND_PUBLISH,
                &[key],
                &[
                    Arg::Bytes(value),
                    Arg::Int(ttl_s as i64),
                    Arg::Str(channel),
                    Arg::Bytes(payload),
                ],
            )
            .await?;
        int_reply(&reply)
    }

    /// [`Redis::set_ex_and_publish_all`] on `channel`, then one announcement on `second`
    /// (the last entry's message) only when the wake-up key `woken` is absent (it is
    /// then set to the receivers' count for `woken_ms`), in one round trip: answers how
    /// many subscribers `second` has (as its last publish counted them). The two
    /// `tally` counters go up by one and by the number of entries.
    pub async fn set_ex_and_announce_all(
        &self,
        channel: &str,
        second: &str,
        entries: &[StatusAndMessage<'_>],
        woken: &str,
        woken_ms: u64,
        tally: [&str; 2],
    ) -> Result<i64, RedisError> {
        if entries.is_empty() {
            return Ok(0);
        }
        let (mut keys, mut args) = entry_keys_and_args(entries);
        keys.extend([woken, tally[0], tally[1]]);
        args.extend([
            Arg::Str(channel),
            Arg::Str(second),
            Arg::Int(woken_ms as i64),
        ]);
        let reply = self.eval(&SET_EX_AND_ANNOUNCE_ALL, &keys, &args).await?;
        int_reply(&reply)
    }

    /// [`Redis::set_ex_and_publish`] for several entries in one round trip, in their
    /// order (each key set before its message goes out): answers how many deliveries
    /// the messages made in all.
    pub async fn set_ex_and_publish_all(
        &self,
        channel: &str,
        entries: &[StatusAndMessage<'_>],
    ) -> Result<i64, RedisError> {
        if entries.is_empty() {
            return Ok(0);
        }
        let (keys, mut args) = entry_keys_and_args(entries);
        args.push(Arg::Str(channel));
        let reply = self.eval(&SET_EX_AND_PUBLISH_ALL, &keys, &args).await?;
        int_reply(&reply)
    }

    /// `PUBLISH`: answers how many subscribers received the message.
    pub async fn publish(&self, channel: &str, payload: &[u8]) -> Result<i64, RedisError> {
        let reply = self
            .execute("PUBLISH", &[Arg::Str(channel), Arg::Bytes(payload)])
            .await?;
        int_reply(&reply)
    }

    pub async fn ping(&self) -> Result<(), RedisError> {
        self.execute("PING", &[]).await.map(|_| ())
    }

    /// `INFO`, parsed into the fields the stats route shows.
    pub async fn info(&self) -> Result<RedisInfo, RedisError> {
        let reply = self.execute("INFO", &[]).await?;
        match reply.first() {
            Some(RedisResult::Binary(b)) => Ok(RedisInfo::parse(&String::from_utf8_lossy(b))),
            Some(RedisResult::Status(s)) => Ok(RedisInfo::parse(s)),
            other => Err(RedisError::Command(format!("INFO answered {other:?}"))),
        }
    }

    /// `MGET`, as one optional text per key.
    pub async fn mget(&self, keys: &[&str]) -> Result<Vec<Option<String>>, RedisError> {
        let args: Vec<Arg<'_>> = keys.iter().map(|k| Arg::Str(k)).collect();
        let reply = self.execute("MGET", &args).await?;
        Ok(reply.iter().map(as_string).collect())
    }

    /// `DEL key…` (nothing to do for no keys).
    pub async fn del(&self, keys: &[String]) -> Result<(), RedisError> {
        if keys.is_empty() {
            return Ok(());
        }
        let args: Vec<Arg<'_>> = keys.iter().map(|k| Arg::Str(k)).collect();
        self.execute("DEL", &args).await.map(|_| ())
    }

    /// `EXPIRE key ttl`.
    pub async fn expire(&self, key: &str, ttl_s: u64) -> Result<(), RedisError> {
        self.execute("EXPIRE", &[Arg::Str(key), Arg::Int(ttl_s as i64)])
            .await
            .map(|_| ())
    }

    /// Runs `script` by its digest (`EVALSHA`: 40 bytes on the wire instead of the
    /// body), sending the body only when the server does not know it yet (`NOSCRIPT`:
    /// a fresh or restarted Redis), which also loads it for later calls.
    pub async fn eval(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[Arg<'_>],
    ) -> Result<Vec<RedisResult>, RedisError> {
        let call = |script_arg: &'static str| {
            let mut all = vec![Arg::Str(script_arg), Arg::Int(keys.len() as i64)];
            all.extend(keys.iter().map(|k| Arg::Str(k)));
            all.extend_from_slice(args);
            all
        };
        match self.execute("EVALSHA", &call(script.sha1)).await {
            Err(e) if is_noscript(&e) => self.execute("EVAL", &call(script.body)).await,
            other => other,
        }
    }
}

/// A TTL of 0 means "do not cache", as in [`Redis::set_ex`].
const SET_EX_AND_PUBLISH: Script = Script {
    body: "if tonumber(ARGV[2]) > 0 then redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2]) end\n\
           return redis.call('PUBLISH', ARGV[3], ARGV[4])",
    sha1: "c7db8caa1138e02a1c3e542033983da374251a07",
};

/// [`SET_EX_AND_PUBLISH_ALL`] for the first n keys on the first channel (ARGV[3n+1]),
/// then one announcement of the last message on the second (ARGV[3n+2]) unless the
/// wake-up key (key n+1) is set: it holds the second channel's receivers at its last
/// publish, for ARGV[3n+3] ms or until a receiver deletes it. Keys n+2 and n+3 are
/// counters, up by 1 and by n. Answers the second channel's receivers (as last
/// counted).
const SET_EX_AND_ANNOUNCE_ALL: Script = Script {
    body: "local n = #KEYS - 3\n\
           redis.call('INCR', KEYS[n + 2])\n\
           redis.call('INCRBY', KEYS[n + 3], n)\n\
           for i = 1, n do\n\
             local ttl = tonumber(ARGV[3 * i - 1])\n\
             if ttl > 0 then redis.call('SET', KEYS[i], ARGV[3 * i - 2], 'EX', ttl) end\n\
             redis.call('PUBLISH', ARGV[3 * n + 1], ARGV[3 * i])\n\
           end\n\
           local heard = redis.call('GET', KEYS[n + 1])\n\
           if heard then return tonumber(heard) end\n\
           heard = redis.call('PUBLISH', ARGV[3 * n + 2], ARGV[3 * n])\n\
           redis.call('SET', KEYS[n + 1], heard, 'PX', ARGV[3 * n + 3])\n\
           return heard",
    sha1: "cd28d2b968a0d10e69f32a3f0bf71cb742bf5f30",
};

/// [`SET_EX_AND_PUBLISH`] for many keys, in key order: per key its value, TTL and
/// message, then the channel last.
const SET_EX_AND_PUBLISH_ALL: Script = Script {
    body: "local heard = 0\n\
           for i = 1, #KEYS do\n\
             local ttl = tonumber(ARGV[3 * i - 1])\n\
             if ttl > 0 then redis.call('SET', KEYS[i], ARGV[3 * i - 2], 'EX', ttl) end\n\
             heard = heard + redis.call('PUBLISH', ARGV[#ARGV], ARGV[3 * i])\n\
           end\n\
           return heard",
    sha1: "44795fb0e62c0d5203ccafa8c754a070545a0222",
};

/// Whether the server answered that it does not know a script's digest (`NOSCRIPT`,
/// redis-rs's `NoScriptError`).
pub fn is_noscript(err: &RedisError) -> bool {
    matches!(err, RedisError::Command(msg) if msg.contains("NOSCRIPT") || msg.contains("NoScriptError"))
}

/// The scripts' keys and arguments for `entries`: per entry its key, and its value,
/// TTL and message.
fn entry_keys_and_args<'a>(entries: &[StatusAndMessage<'a>]) -> (Vec<&'a str>, Vec<Arg<'a>>) {
    let keys = entries.iter().map(|e| e.key).collect();
    let mut args = Vec::with_capacity(entries.len() * 3 + 3);
    for e in entries {
        args.extend([
            Arg::Bytes(e.value),
            Arg::Int(e.ttl_s as i64),
            Arg::Bytes(e.message),
        ]);
    }
    (keys, args)
}

/// One key to set (with its TTL; 0: do not cache) and the message that announces it,
/// for [`Redis::set_ex_and_publish_all`].
pub struct StatusAndMessage<'a> {
    pub key: &'a str,
    pub value: &'a [u8],
    pub ttl_s: u64,
    pub message: &'a [u8],
}

/// A Lua script and the SHA1 of its body (checked by a unit test), for [`Redis::eval`].
#[derive(Debug, Clone, Copy)]
pub struct Script {
    pub body: &'static str,
    pub sha1: &'static str,
}

/// An argument to `execute`.
#[derive(Debug, Clone, Copy)]
pub enum Arg<'a> {
    Str(&'a str),
    Bytes(&'a [u8]),
    Int(i64),
}

impl Arg<'_> {
    fn to_param(self) -> Param {
        match self {
            Arg::Str(s) => Param::Binary(s.as_bytes().to_vec()),
            Arg::Bytes(b) => Param::Binary(b.to_vec()),
            Arg::Int(i) => Param::Int64(i),
        }
    }
}

/// The first reply as an integer (Spin answers integers as `Int64`, some as text).
pub fn int_reply(reply: &[RedisResult]) -> Result<i64, RedisError> {
    match reply.first() {
        Some(RedisResult::Int64(n)) => Ok(*n),
        Some(other) => as_string(other)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| RedisError::Command(format!("expected an integer, got {other:?}"))),
        None => Err(RedisError::Command("empty reply".into())),
    }
}

pub fn as_string(r: &RedisResult) -> Option<String> {
    match r {
        RedisResult::Binary(b) => Some(String::from_utf8_lossy(b).into_owned()),
        RedisResult::Status(s) => Some(s.clone()),
        RedisResult::Int64(n) => Some(n.to_string()),
        RedisResult::Nil => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_digests_match_their_bodies() {
        for script in [
            SET_EX_AND_PUBLISH,
            SET_EX_AND_ANNOUNCE_ALL,
            SET_EX_AND_PUBLISH_ALL,
            gate::SCRIPT,
        ] {
            assert_eq!(
                sha1_smol::Sha1::from(script.body).digest().to_string(),
                script.sha1,
                "update the sha1 after editing {:?}",
                script.body
            );
        }
    }

    #[test]
    fn connection_failures_are_unavailable() {
        for msg in [
            "Connection refused (os error 111)",
            "failed to connect to redis: Connection refused",
            "Broken pipe (os error 32)",
            "Connection reset by peer",
            "timed out",
        ] {
            assert!(classify_message(msg).is_unavailable(), "{msg}");
        }
    }

    #[test]
    fn server_errors_are_command_errors() {
        for msg in [
            "WRONGTYPE Operation against a key holding the wrong kind of value",
            "ERR unknown command 'FOO'",
            "NOSCRIPT No matching script",
            // Spin 4.0.2's wording for the reply of an EVALSHA the server does not know.
            "An error was signalled by the server - NoScriptError: No matching script. Please use EVAL.",
        ] {
            assert!(!classify_message(msg).is_unavailable(), "{msg}");
        }
        assert!(is_noscript(&classify_message(
            "An error was signalled by the server - NoScriptError: No matching script. Please use EVAL."
        )));
        assert!(!is_noscript(&classify_message("ERR unknown command 'FOO'")));
        assert!(!classify(&HostRedisError::TypeError).is_unavailable());
        assert!(classify(&HostRedisError::InvalidAddress).is_unavailable());
    }

    #[test]
    fn integer_replies() {
        assert_eq!(int_reply(&[RedisResult::Int64(3)]), Ok(3));
        assert_eq!(int_reply(&[RedisResult::Binary(b"7".to_vec())]), Ok(7));
        assert!(int_reply(&[RedisResult::Nil]).is_err());
        assert!(int_reply(&[]).is_err());
    }
}
