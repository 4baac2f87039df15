//! Outbound Redis.
//!
//! On WASIp3 the instance keeps one connection per address between requests: it carries
//! no request's data, and a connection that fails is dropped so the next call opens a
//! fresh one. A command that fails on a connection an earlier request opened is tried
//! once more on a fresh one, so a Redis restart between two requests costs the first
//! request after it nothing. On WASIp2 a connection lives for one request (one
//! instance), opened on first use.

/// An argument to a command.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Int64(i64),
    Binary(Vec<u8>),
}

/// One value of a reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Nil,
    Status(String),
    Int64(i64),
    Binary(Vec<u8>),
}

/// What the host said went wrong.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    InvalidAddress,
    TooManyConnections,
    TypeError,
    Other(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::InvalidAddress => f.write_str("invalid redis address"),
            Error::TooManyConnections => f.write_str("too many redis connections"),
            Error::TypeError => f.write_str("unexpected reply type"),
            Error::Other(msg) => f.write_str(msg),
        }
    }
}

/// A connection to the Redis at one address.
pub struct Connection {
    #[cfg(any(feature = "sdk5", feature = "sdk6"))]
    inner: backend::Conn,
    #[cfg(any(feature = "sdk5", feature = "sdk6"))]
    url: String,
}

impl Connection {
    /// Opens (WASIp2) or takes the instance's kept connection to (WASIp3) `url`.
    pub async fn open(url: &str) -> Result<Connection, Error> {
        #[cfg(any(feature = "sdk5", feature = "sdk6"))]
        {
            Ok(Connection {
                inner: backend::open(url).await?,
                url: url.to_string(),
            })
        }
        #[cfg(not(any(feature = "sdk5", feature = "sdk6")))]
        {
            let _ = url;
            Err(Error::Other("no Spin SDK in this build".into()))
        }
    }

    /// Runs one command.
    pub async fn execute(&self, cmd: &str, args: &[Param]) -> Result<Vec<Reply>, Error> {
        #[cfg(any(feature = "sdk5", feature = "sdk6"))]
        {
            backend::execute(&self.inner, &self.url, cmd, args).await
        }
        #[cfg(not(any(feature = "sdk5", feature = "sdk6")))]
        {
            let _ = (cmd, args);
            Err(Error::Other("no Spin SDK in this build".into()))
        }
    }
}

#[cfg(feature = "sdk6")]
mod backend {
    use super::{Error, Param, Reply};
    use sdk6::redis as sdk;
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::rc::Rc;

    thread_local! {
        /// The instance's connections, by address. Safe to share between the
        /// instance's concurrent requests: a connection carries no request's state
        /// (data20 never uses MULTI, WATCH or SELECT), and a failed one is dropped.
        static KEPT: RefCell<HashMap<String, Rc<sdk::Connection>>> = RefCell::new(HashMap::new());
    }

    /// The connection a request uses, and whether an earlier request opened it.
    pub struct Conn(RefCell<(Rc<sdk::Connection>, bool)>);

    pub async fn open(url: &str) -> Result<Conn, Error> {
        if let Some(kept) = KEPT.with(|k| k.borrow().get(url).cloned()) {
            return Ok(Conn(RefCell::new((kept, true))));
        }
        Ok(Conn(RefCell::new((fresh(url).await?, false))))
    }

    async fn fresh(url: &str) -> Result<Rc<sdk::Connection>, Error> {
        let conn = Rc::new(sdk::Connection::open(url).await.map_err(from_sdk)?);
        KEPT.with(|k| k.borrow_mut().insert(url.to_string(), conn.clone()));
        Ok(conn)
    }

    fn forget(url: &str, conn: &Rc<sdk::Connection>) {
        KEPT.with(|k| {
            let mut k = k.borrow_mut();
            if k.get(url).is_some_and(|kept| Rc::ptr_eq(kept, conn)) {
                k.remove(url);
            }
        });
    }

    pub async fn execute(
        conn: &Conn,
        url: &str,
        cmd: &str,
        args: &[Param],
    ) -> Result<Vec<Reply>, Error> {
        let (current, reused) = conn.0.borrow().clone();
        match run(&current, cmd, args).await {
            Err(Error::Other(msg)) if !is_server_reply(&msg) => {
                forget(url, &current);
                if !reused {
                    return Err(Error::Other(msg));
                }
                // The kept connection may have died with a Redis restart since the
                // request that opened it: one more try on a fresh one.
                let fresh = fresh(url).await?;
                *conn.0.borrow_mut() = (fresh.clone(), false);
                let again = run(&fresh, cmd, args).await;
                if matches!(&again, Err(Error::Other(m)) if !is_server_reply(m)) {
                    forget(url, &fresh);
                }
                again
            }
            other => other,
        }
    }

    async fn run(conn: &sdk::Connection, cmd: &str, args: &[Param]) -> Result<Vec<Reply>, Error> {
        let params = args.iter().map(|a| match a {
            Param::Int64(i) => sdk::RedisParameter::Int64(*i),
            Param::Binary(b) => sdk::RedisParameter::Binary(b.clone()),
        });
        let replies = conn.execute(cmd, params).await.map_err(from_sdk)?;
        Ok(replies
            .into_iter()
            .map(|r| match r {
                sdk::RedisResult::Nil => Reply::Nil,
                sdk::RedisResult::Status(s) => Reply::Status(s),
                sdk::RedisResult::Int64(i) => Reply::Int64(i),
                sdk::RedisResult::Binary(b) => Reply::Binary(b),
            })
            .collect())
    }

    /// A reply the server sent (an error code such as `NOSCRIPT`) leaves the connection
    /// usable; anything else (refused, reset, broken pipe) does not.
    fn is_server_reply(msg: &str) -> bool {
        msg.contains("signalled by the server")
            || ["ERR", "WRONGTYPE", "NOSCRIPT", "BUSY", "NOPERM", "OOM"]
                .iter()
                .any(|code| msg.contains(code))
    }

    fn from_sdk(e: sdk::Error) -> Error {
        match e {
            sdk::Error::InvalidAddress => Error::InvalidAddress,
            sdk::Error::TooManyConnections => Error::TooManyConnections,
            sdk::Error::TypeError => Error::TypeError,
            sdk::Error::Other(msg) => Error::Other(msg),
        }
    }
}

#[cfg(all(feature = "sdk5", not(feature = "sdk6")))]
mod backend {
    use super::{Error, Param, Reply};
    use sdk5::redis as sdk;

    pub struct Conn(sdk::Connection);

    pub async fn open(url: &str) -> Result<Conn, Error> {
        sdk::Connection::open(url).map(Conn).map_err(from_sdk)
    }

    pub async fn execute(
        conn: &Conn,
        _url: &str,
        cmd: &str,
        args: &[Param],
    ) -> Result<Vec<Reply>, Error> {
        let params: Vec<sdk::RedisParameter> = args
            .iter()
            .map(|a| match a {
                Param::Int64(i) => sdk::RedisParameter::Int64(*i),
                Param::Binary(b) => sdk::RedisParameter::Binary(b.clone()),
            })
            .collect();
        let replies = conn.0.execute(cmd, &params).map_err(from_sdk)?;
        Ok(replies
            .into_iter()
            .map(|r| match r {
                sdk::RedisResult::Nil => Reply::Nil,
                sdk::RedisResult::Status(s) => Reply::Status(s),
                sdk::RedisResult::Int64(i) => Reply::Int64(i),
                sdk::RedisResult::Binary(b) => Reply::Binary(b),
            })
            .collect())
    }

    fn from_sdk(e: sdk::Error) -> Error {
        match e {
            sdk::Error::InvalidAddress => Error::InvalidAddress,
            sdk::Error::TooManyConnections => Error::TooManyConnections,
            sdk::Error::TypeError => Error::TypeError,
            sdk::Error::Other(msg) => Error::Other(msg),
        }
    }
}
