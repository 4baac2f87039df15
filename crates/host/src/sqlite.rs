//! Spin's SQLite (`default` database), with rows read by column name.
//!
//! A connection is opened per use and never kept by the instance: a WASIp3 instance
//! serves several requests at once, and a `BEGIN … COMMIT` on a shared connection would
//! take in the other requests' statements (SPEC §7).

/// A parameter or a column value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
    Null,
}

/// A statement's rows, all read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

impl QueryResult {
    pub fn rows(&self) -> impl Iterator<Item = Row<'_>> {
        self.rows.iter().map(|values| Row {
            columns: &self.columns,
            values,
        })
    }
}

/// One row, read by column name.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    columns: &'a [String],
    values: &'a [Value],
}

impl<'a> Row<'a> {
    /// The column's value as `T`; `None` for a missing column, NULL or another type.
    pub fn get<T: FromValue<'a>>(&self, column: &str) -> Option<T> {
        self.value(column).and_then(T::from_value)
    }

    /// The column's raw value.
    pub fn value(&self, column: &str) -> Option<&'a Value> {
        let i = self.columns.iter().position(|c| c == column)?;
        self.values.get(i)
    }
}

/// A column type a [`Row`] converts to.
pub trait FromValue<'a>: Sized {
    fn from_value(v: &'a Value) -> Option<Self>;
}

impl<'a> FromValue<'a> for i64 {
    fn from_value(v: &'a Value) -> Option<Self> {
        match v {
            Value::Integer(i) => Some(*i),
            _ => None,
        }
    }
}

impl<'a> FromValue<'a> for f64 {
    fn from_value(v: &'a Value) -> Option<Self> {
        match v {
            Value::Real(f) => Some(*f),
            Value::Integer(i) => Some(*i as f64),
            _ => None,
        }
    }
}

impl<'a> FromValue<'a> for &'a str {
    fn from_value(v: &'a Value) -> Option<Self> {
        match v {
            Value::Text(s) => Some(s),
            Value::Blob(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }
}

impl<'a> FromValue<'a> for &'a [u8] {
    fn from_value(v: &'a Value) -> Option<Self> {
        match v {
            Value::Text(s) => Some(s.as_bytes()),
            Value::Blob(b) => Some(b),
            _ => None,
        }
    }
}

/// A connection to the `default` database.
pub struct Connection {
    #[cfg(any(feature = "sdk5", feature = "sdk6"))]
    inner: backend::Conn,
    /// What a statement does when it finds the database busy.
    busy: Busy,
}

/// How a connection meets a busy database (another connection holds the write lock).
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(not(any(feature = "sdk5", feature = "sdk6")), allow(dead_code))]
enum Busy {
    /// Waits in SQLite's own handler (the `busy_timeout` Spin opens it with).
    Wait,
    /// The instance's kept connection (`busy_timeout = 0`): yields to the host before
    /// each quick retry, then makes one try on a connection of its own that waits in
    /// SQLite's handler, so the kept one goes on serving the instance's other requests.
    /// Its statements stand alone (autocommit), so another connection may run one.
    YieldThenOwnConnection,
    /// A connection of its own (`busy_timeout = 0`) in an instance that serves nothing
    /// else: sleeps before each quick retry, then makes one try on this same
    /// connection in SQLite's handler: the statement may be part of a transaction
    /// (`BEGIN IMMEDIATE` itself), which no other connection can carry on.
    SleepThenWait(std::time::Duration),
}

/// The busy timeout of a connection's last, patient try (the one rusqlite opens with).
const PATIENT_BUSY_TIMEOUT: &str = "PRAGMA busy_timeout = 5000";
const IMPATIENT_BUSY_TIMEOUT: &str = "PRAGMA busy_timeout = 0";

/// Quick tries of a statement on the kept connection that found the database busy
/// (another connection holds the write lock: another instance's, or a worker's), each
/// after yielding to the host once; then one try that waits in SQLite's own busy
/// handler. That handler sleeps 1 ms at least (then 2, 5, 10 …) on the host's
/// blocking thread, while an autocommit holds the lock for a tenth of that, and
/// Spin runs several instances of a busy component, each with its own connection:
/// under load the submissions spent more time asleep than committing
/// (docs/BENCHMARKS.md, issue 20).
const BUSY_RETRIES: u32 = 64;

fn is_busy(e: &str) -> bool {
    e.contains("database is locked")
}

/// Tries `attempt` until it answers anything but busy, with a `pause` before each of
/// at most `quick` retries; still busy then, answers `patient`'s one try.
async fn retry_busy<T>(
    quick: u32,
    mut attempt: impl AsyncFnMut() -> Result<T, String>,
    pause: impl AsyncFn(),
    patient: impl AsyncFnOnce() -> Result<T, String>,
) -> Result<T, String> {
    let mut result = attempt().await;
    for _ in 0..quick {
        if !matches!(&result, Err(e) if is_busy(e)) {
            return result;
        }
        pause().await;
        result = attempt().await;
    }
    match result {
        Err(e) if is_busy(&e) => patient().await,
        other => other,
    }
}

impl Connection {
    /// The instance's kept connection to the `default` database (opened on first use,
    /// dropped after an error), for statements that each stand alone: autocommit
    /// statements only, never `BEGIN … COMMIT` or a `PRAGMA` that changes what a
    /// statement does, since the instance's concurrent requests share it (SPEC §7).
    /// It spares a statement on a new connection the parse of the whole schema, and
    /// retries a busy database itself ([`BUSY_RETRIES`]; its `busy_timeout`, which
    /// changes only how a statement waits, is 0). Where instances are not reused (the
    /// 5.2 line), a connection of its own, as SQLite opens it.
    pub async fn kept_default() -> Result<Connection, String> {
        #[cfg(any(feature = "sdk5", feature = "sdk6"))]
        {
            Ok(Connection {
                inner: backend::kept().await?,
                // A 5.2 instance serves one request: its connection is its own.
                busy: if cfg!(feature = "sdk6") {
                    Busy::YieldThenOwnConnection
                } else {
                    Busy::Wait
                },
            })
        }
        #[cfg(not(any(feature = "sdk5", feature = "sdk6")))]
        Err("no Spin SDK in this build".into())
    }

    pub async fn open_default() -> Result<Connection, String> {
        #[cfg(any(feature = "sdk5", feature = "sdk6"))]
        {
            Ok(Connection {
                inner: backend::open().await?,
                busy: Busy::Wait,
            })
        }
        #[cfg(not(any(feature = "sdk5", feature = "sdk6")))]
        Err("no Spin SDK in this build".into())
    }

    /// A connection of its own that retries a busy database itself (`busy_timeout = 0`),
    /// sleeping `pause` before each of [`BUSY_RETRIES`] tries, then makes one try that
    /// waits in SQLite's handler ([`Busy::SleepThenWait`]): for a worker's transitions,
    /// where nothing else runs in the instance while it waits.
    pub async fn open_retrying(pause: std::time::Duration) -> Result<Connection, String> {
        #[cfg(any(feature = "sdk5", feature = "sdk6"))]
        {
            let conn = Connection {
                inner: backend::open().await?,
                busy: Busy::SleepThenWait(pause),
            };
            conn.execute_once(IMPATIENT_BUSY_TIMEOUT, &[]).await?;
            Ok(conn)
        }
        #[cfg(not(any(feature = "sdk5", feature = "sdk6")))]
        {
            let _ = pause;
            Err("no Spin SDK in this build".into())
        }
    }

    /// Runs one statement (Spin runs only the first of several, silently).
    pub async fn execute(&self, sql: &str, params: &[Value]) -> Result<QueryResult, String> {
        let attempt = async || self.execute_once(sql, params).await;
        match self.busy {
            Busy::Wait => attempt().await,
            Busy::YieldThenOwnConnection => {
                retry_busy(
                    BUSY_RETRIES,
                    attempt,
                    async || {
                        #[cfg(any(feature = "sdk5", feature = "sdk6"))]
                        backend::yield_now().await;
                    },
                    async || {
                        Connection::open_default()
                            .await?
                            .execute_once(sql, params)
                            .await
                    },
                )
                .await
            }
            Busy::SleepThenWait(pause) => {
                retry_busy(
                    BUSY_RETRIES,
                    attempt,
                    async || crate::time::sleep(pause).await,
                    async || {
                        self.execute_once(PATIENT_BUSY_TIMEOUT, &[]).await?;
                        let result = self.execute_once(sql, params).await;
                        self.execute_once(IMPATIENT_BUSY_TIMEOUT, &[]).await?;
                        result
                    },
                )
                .await
            }
        }
    }

    async fn execute_once(&self, sql: &str, params: &[Value]) -> Result<QueryResult, String> {
        #[cfg(any(feature = "sdk5", feature = "sdk6"))]
        {
            backend::execute(&self.inner, sql, params).await
        }
        #[cfg(not(any(feature = "sdk5", feature = "sdk6")))]
        {
            let _ = (sql, params);
            Err("no Spin SDK in this build".into())
        }
    }
}

#[cfg(feature = "sdk6")]
mod backend {
    use super::{QueryResult, Value};
    use sdk6::sqlite as sdk;

    use std::cell::RefCell;
    use std::rc::Rc;

    pub struct Conn {
        conn: Rc<sdk::Connection>,
        kept: bool,
    }

    thread_local! {
        /// The instance's kept connection ([`super::Connection::kept_default`]). Safe to
        /// keep: it holds no request's data, and only autocommit statements go through
        /// it, so no request's transaction can take in another's statements.
        static KEPT: RefCell<Option<Rc<sdk::Connection>>> = const { RefCell::new(None) };
    }

    pub async fn open() -> Result<Conn, String> {
        sdk::Connection::open_default()
            .await
            .map(|c| Conn {
                conn: Rc::new(c),
                kept: false,
            })
            .map_err(|e| e.to_string())
    }

    pub async fn kept() -> Result<Conn, String> {
        let conn = match KEPT.with(|k| k.borrow().clone()) {
            Some(conn) => conn,
            None => {
                let conn = Rc::new(
                    sdk::Connection::open_default()
                        .await
                        .map_err(|e| e.to_string())?,
                );
                // Busy answers at once: `Connection::execute` retries (BUSY_RETRIES).
                run(&conn, super::IMPATIENT_BUSY_TIMEOUT, &[]).await?;
                KEPT.with(|k| *k.borrow_mut() = Some(conn.clone()));
                conn
            }
        };
        Ok(Conn { conn, kept: true })
    }

    pub async fn execute(conn: &Conn, sql: &str, params: &[Value]) -> Result<QueryResult, String> {
        let result = run(&conn.conn, sql, params).await;
        if conn.kept && matches!(&result, Err(e) if !super::is_busy(e)) {
            // The next statement opens a fresh one (a statement error costs one reopen;
            // a busy database is no fault of the connection's).
            KEPT.with(|k| *k.borrow_mut() = None);
        }
        result
    }

    async fn run(
        conn: &sdk::Connection,
        sql: &str,
        params: &[Value],
    ) -> Result<QueryResult, String> {
        let params = params.iter().map(|p| match p {
            Value::Integer(i) => sdk::Value::Integer(*i),
            Value::Real(f) => sdk::Value::Real(*f),
            Value::Text(s) => sdk::Value::Text(s.clone()),
            Value::Blob(b) => sdk::Value::Blob(b.clone()),
            Value::Null => sdk::Value::Null,
        });
        let result = conn.execute(sql, params).await.map_err(|e| e.to_string())?;
        let columns = result.columns().to_vec();
        let rows = result
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|row| row.values.into_iter().map(from_sdk).collect())
            .collect();
        Ok(QueryResult { columns, rows })
    }

    fn from_sdk(v: sdk::Value) -> Value {
        match v {
            sdk::Value::Integer(i) => Value::Integer(i),
            sdk::Value::Real(f) => Value::Real(f),
            sdk::Value::Text(s) => Value::Text(s),
            sdk::Value::Blob(b) => Value::Blob(b),
            sdk::Value::Null => Value::Null,
        }
    }

    /// Lets the instance's other requests (and the host) run before a retry.
    pub async fn yield_now() {
        wit_bindgen::yield_async().await;
    }
}

#[cfg(all(feature = "sdk5", not(feature = "sdk6")))]
mod backend {
    use super::{QueryResult, Value};
    use sdk5::sqlite as sdk;

    pub struct Conn(sdk::Connection);

    pub async fn open() -> Result<Conn, String> {
        sdk::Connection::open_default()
            .map(Conn)
            .map_err(|e| e.to_string())
    }

    /// A 5.2 instance serves one request: nothing to keep.
    pub async fn kept() -> Result<Conn, String> {
        open().await
    }

    pub async fn execute(conn: &Conn, sql: &str, params: &[Value]) -> Result<QueryResult, String> {
        let params: Vec<sdk::Value> = params
            .iter()
            .map(|p| match p {
                Value::Integer(i) => sdk::Value::Integer(*i),
                Value::Real(f) => sdk::Value::Real(*f),
                Value::Text(s) => sdk::Value::Text(s.clone()),
                Value::Blob(b) => sdk::Value::Blob(b.clone()),
                Value::Null => sdk::Value::Null,
            })
            .collect();
        let result = conn.0.execute(sql, &params).map_err(|e| e.to_string())?;
        let rows = result
            .rows
            .into_iter()
            .map(|row| row.values.into_iter().map(from_sdk).collect())
            .collect();
        Ok(QueryResult {
            columns: result.columns,
            rows,
        })
    }

    fn from_sdk(v: sdk::Value) -> Value {
        match v {
            sdk::Value::Integer(i) => Value::Integer(i),
            sdk::Value::Real(f) => Value::Real(f),
            sdk::Value::Text(s) => Value::Text(s),
            sdk::Value::Blob(b) => Value::Blob(b),
            sdk::Value::Null => Value::Null,
        }
    }

    /// A 5.2 instance serves one request and its host calls are synchronous: nothing
    /// to yield to; a retry follows at once.
    pub async fn yield_now() {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// `retry_busy` over an attempt that is busy `busy_for` times, then answers `ok`;
    /// answers (result, attempts, pauses, patient tries).
    fn retried(busy_for: u32, quick: u32) -> (Result<&'static str, String>, u32, u32, u32) {
        let (attempts, pauses, patient) = (Cell::new(0), Cell::new(0), Cell::new(0));
        let result = futures::executor::block_on(retry_busy(
            quick,
            async || {
                attempts.set(attempts.get() + 1);
                if attempts.get() <= busy_for {
                    Err("sqlite: io error: database is locked".to_string())
                } else {
                    Ok("ok")
                }
            },
            async || pauses.set(pauses.get() + 1),
            async || {
                patient.set(patient.get() + 1);
                Ok("patient")
            },
        ));
        (result, attempts.get(), pauses.get(), patient.get())
    }

    #[test]
    fn a_busy_database_is_retried_after_a_pause_each_time() {
        assert_eq!(retried(0, 64), (Ok("ok"), 1, 0, 0));
        assert_eq!(retried(3, 64), (Ok("ok"), 4, 3, 0));
        assert_eq!(retried(64, 64), (Ok("ok"), 65, 64, 0));
    }

    #[test]
    fn long_contention_ends_in_one_patient_try() {
        assert_eq!(retried(65, 64), (Ok("patient"), 65, 64, 1));
        assert_eq!(retried(u32::MAX, 0), (Ok("patient"), 1, 0, 1));
    }

    #[test]
    fn other_errors_are_not_retried() {
        let attempts = Cell::new(0);
        let result: Result<(), String> = futures::executor::block_on(retry_busy(
            64,
            async || {
                attempts.set(attempts.get() + 1);
                Err("no such table: jobs".to_string())
            },
            async || {},
            async || Ok(()),
        ));
        assert_eq!(result, Err("no such table: jobs".to_string()));
        assert_eq!(attempts.get(), 1);
    }

    #[test]
    fn rows_read_by_name_and_type() {
        let r = QueryResult {
            columns: vec!["id".into(), "n".into(), "blob".into()],
            rows: vec![vec![
                Value::Text("a".into()),
                Value::Integer(3),
                Value::Blob(b"xy".to_vec()),
            ]],
        };
        let row = r.rows().next().expect("one row");
        assert_eq!(row.get::<&str>("id"), Some("a"));
        assert_eq!(row.get::<i64>("n"), Some(3));
        assert_eq!(row.get::<i64>("id"), None, "text is not an integer");
        assert_eq!(row.get::<&[u8]>("blob"), Some(&b"xy"[..]));
        assert_eq!(row.get::<i64>("missing"), None);
    }
}
