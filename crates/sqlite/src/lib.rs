//! data20's SQLite adapter: the source of truth for jobs.

pub mod batch;
pub mod jobs;
pub mod keys;
pub mod migrations;
pub mod stats;

use data20_host::sqlite::Connection;
pub use data20_host::sqlite::{QueryResult, Row, Value};

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum DbError {
    #[error("sqlite: {0}")]
    Sqlite(String),
    #[error("sqlite: the schema is missing or out of date: {0}")]
    Schema(String),
    #[error("sqlite: stored data is invalid: {0}")]
    Corrupt(String),
    /// Another node, running a newer data20, migrated the shared database past what this
    /// build knows. Writing to a schema it does not know could lose data, so it refuses.
    #[error(
        "sqlite: the database schema is at version {found}, newer than version {known} that \
         this build knows; run the data20 version that migrated it on this node too"
    )]
    SchemaTooNew { found: u32, known: u32 },
    #[error("sqlite: migration {version} failed and was rolled back: {reason}")]
    Migration { version: u32, reason: String },
}

impl From<String> for DbError {
    fn from(e: String) -> Self {
        classify(&e)
    }
}

/// A text parameter.
pub fn text(s: &str) -> Value {
    Value::Text(s.to_string())
}

/// A query that fails because a table, column or index is missing means "migrate
/// first". (A query that needs an index-only migration names the index with
/// `INDEXED BY`, so a database without it fails this way too.) An INSERT that names a
/// column the table or view does not have yet says so in its own words: a request
/// that reached a new database while another was still migrating it got a 503 for
/// it (`two_clients_interleaving_…` in tests/e2e_instances.rs).
pub fn classify(msg: &str) -> DbError {
    if [
        "no such table",
        "no such column",
        "no such index",
        "has no column named",
    ]
    .iter()
    .any(|missing| msg.contains(missing))
    {
        DbError::Schema(msg.to_string())
    } else {
        DbError::Sqlite(msg.to_string())
    }
}

/// How long a worker's connection sleeps before it tries a busy database again (Tokio's
/// timers, behind a guest's sleep, tick every millisecond).
pub const TRANSITION_BUSY_PAUSE: std::time::Duration = std::time::Duration::from_millis(1);

/// The app's database (Spin's `default` SQLite database).
pub struct Db {
    conn: Connection,
    /// The instance's kept connection ([`Db::open_shared`]): autocommit statements only.
    shared: bool,
}

impl Db {
    /// Opens the default database. Schema creation is deferred to the first query that
    /// needs it (see [`Db::with_schema`]) so that the hot path pays no extra round trip.
    /// Commits are durable (`synchronous = FULL`, SQLite's default here): what a 202
    /// promised survives a power cut.
    pub async fn open() -> Result<Db, DbError> {
        let conn = Connection::open_default().await?;
        Ok(Db {
            conn,
            shared: false,
        })
    }

    /// The instance's kept connection, shared by its concurrent requests: for work that
    /// is only autocommit statements (a submission without an idempotency key, reads).
    /// A transaction on it would take in other requests' statements, so
    /// [`Db::transaction`] refuses, and migrations run on a connection of their own.
    pub async fn open_shared() -> Result<Db, DbError> {
        let conn = Connection::kept_default().await?;
        Ok(Db { conn, shared: true })
    }

    /// Opens the default database for job transitions whose loss on a power cut only
    /// means a re-run (claims, completions): `synchronous = NORMAL`, so in WAL mode a
    /// commit is a write to the log without an fsync (about 30 µs against 830 µs here).
    /// A process crash loses nothing; a power cut may roll back the last transitions,
    /// and the jobs they touched are claimed again (queued, or running past their
    /// lease). The INSERT behind a 202 never goes through this connection.
    ///
    /// A busy database is retried by the connection itself, a short sleep
    /// ([`TRANSITION_BUSY_PAUSE`]) before each try, instead of in SQLite's busy handler,
    /// whose sleeps grow to 100 ms: the API's submissions hold the write lock most of the
    /// time under load, and a worker that slept that long between tries lost nearly
    /// every round and ran almost nothing until the load stopped (docs/BENCHMARKS.md,
    /// issue 20).
    pub async fn open_for_transitions() -> Result<Db, DbError> {
        let db = Db {
            conn: Connection::open_retrying(TRANSITION_BUSY_PAUSE).await?,
            shared: false,
        };
        // A server that refuses the pragma (libSQL) keeps its own durability.
        let _ = db.execute("PRAGMA synchronous = NORMAL", &[]).await;
        Ok(db)
    }

    /// Whether this is the instance's shared connection ([`Db::open_shared`]).
    pub fn is_shared(&self) -> bool {
        self.shared
    }

    pub async fn execute(&self, sql: &str, params: &[Value]) -> Result<QueryResult, DbError> {
        Ok(self.conn.execute(sql, params).await?)
    }

    /// Runs `select`, whose result columns are `columns`, and answers its rows with the
    /// database having packed them into one JSON value. WASIp3's SQLite streams a
    /// result to the guest a few rows at a time, and on a page of jobs those hand-offs
    /// cost more Spin CPU than one row of JSON does to parse (docs/BENCHMARKS.md). The
    /// order is `select`'s: SQLite does not flatten a subquery with a `LIMIT` into an
    /// aggregate, so `json_group_array` takes its rows as they come. For columns of
    /// text, integers, reals and NULL (JSON has no blobs).
    pub async fn execute_packed(
        &self,
        columns: &[&str],
        select: &str,
        params: &[Value],
    ) -> Result<QueryResult, DbError> {
        let sql = format!(
            "SELECT json_group_array(json_array({})) AS page FROM ({select})",
            columns.join(", ")
        );
        let page = self.execute(&sql, params).await?;
        let json = page
            .rows()
            .next()
            .and_then(|row| row.get::<&str>("page"))
            .unwrap_or("[]");
        unpack(columns, json)
    }

    /// Runs `f`; if it fails because the schema is missing or old, applies the
    /// migrations and runs it once more. A query that needs a later migration's object
    /// (a table, column or index) triggers it the same way, and so does one that misses
    /// an object a newer data20 removed: then [`Db::migrate`] refuses with
    /// [`DbError::SchemaTooNew`] instead of the bare "no such ..." error.
    pub async fn with_schema<T>(
        &self,
        f: impl AsyncFn(&Db) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        match f(self).await {
            Err(DbError::Schema(_)) => {
                if self.shared {
                    // Its transactions and PRAGMAs must not touch a shared connection.
                    Db::open().await?.migrate().await?;
                } else {
                    self.migrate().await?;
                }
                f(self).await
            }
            other => other,
        }
    }

    /// Brings the database to the newest schema this build knows and answers its version.
    ///
    /// Several nodes may run this at once against one database (several `spin up`
    /// processes on one file, or several machines on one libSQL database):
    /// - each migration runs in its own `BEGIN IMMEDIATE` transaction, so a failure
    ///   rolls it back whole and no node ever sees half a schema;
    /// - the version is read again once the write lock is held, so a migration another
    ///   node applied while this one waited for the lock is not applied twice;
    /// - a database newer than this build is refused ([`DbError::SchemaTooNew`]) before
    ///   anything is written;
    /// - a migration that rebuilds a table keeps the rows that point at it (foreign
    ///   keys are off while it runs, and checked before it commits).
    pub async fn migrate(&self) -> Result<u32, DbError> {
        // Best effort, because a libSQL server runs its own journal and locking and may
        // refuse these PRAGMAs; on a local file they do not fail in practice.
        // Several `spin up` processes share the file: wait for a writer instead of failing.
        let _ = self.execute("PRAGMA busy_timeout = 5000", &[]).await;
        // Write-ahead logging (a property of the file, so set once, here, outside any
        // transaction): a commit is one append and one fsync of the log instead of a
        // rollback journal's create, sync and delete. It halved the cost of each job
        // transition's INSERT (docs/BENCHMARKS.md). Readers no longer block the writer
        // either. Durability is unchanged: `synchronous` stays FULL.
        let _ = self.execute("PRAGMA journal_mode = WAL", &[]).await;
        // A look without the write lock first: once any node has migrated, this is all
        // that runs, and no node queues for a lock it does not need.
        let version = self.schema_version().await?;
        if migrations::pending(migrations::MIGRATIONS, version)?.is_empty() {
            return Ok(version);
        }
        // A migration that changes a constraint rebuilds its table (SQLite cannot alter
        // one in place) and drops the old one. Spin's SQLite enforces foreign keys, and
        // dropping `jobs` then deletes every job's outputs and events through their
        // ON DELETE CASCADE. So foreign keys are off while migrating (set outside the
        // transaction: SQLite ignores the pragma inside one), each migration checks them
        // before it commits, and they are back on afterwards: SQLite's own procedure
        // for schema changes.
        let enforced = self.foreign_keys_enforced().await?;
        self.execute("PRAGMA foreign_keys = OFF", &[]).await?;
        let migrated = self.apply_pending_migrations(version).await;
        if enforced {
            let restored = self.execute("PRAGMA foreign_keys = ON", &[]).await;
            if migrated.is_ok() {
                restored?;
            }
        }
        migrated
    }

    /// Applies the migrations a database at `version` still needs, each in its own
    /// `BEGIN IMMEDIATE` transaction, and answers the version it ends at.
    async fn apply_pending_migrations(&self, mut version: u32) -> Result<u32, DbError> {
        while !migrations::pending(migrations::MIGRATIONS, version)?.is_empty() {
            self.execute("BEGIN IMMEDIATE", &[]).await?;
            let applied = match self.apply_next_migration_locked().await {
                Ok(v) => self.execute("COMMIT", &[]).await.map(|_| v),
                Err(e) => Err(e),
            };
            match applied {
                Ok(v) => version = v,
                Err(e) => {
                    let _ = self.execute("ROLLBACK", &[]).await;
                    return Err(e);
                }
            }
        }
        Ok(version)
    }

    async fn foreign_keys_enforced(&self) -> Result<bool, DbError> {
        let r = self.execute("PRAGMA foreign_keys", &[]).await?;
        let on = r
            .rows()
            .next()
            .and_then(|row| row.get::<i64>("foreign_keys"))
            .is_some_and(|on| on == 1);
        Ok(on)
    }

    /// Inside `BEGIN IMMEDIATE`: reads the version again (another node may have
    /// migrated while this one waited for the lock) and applies the next pending
    /// migration, if any. Answers the version the database is at when it commits.
    async fn apply_next_migration_locked(&self) -> Result<u32, DbError> {
        let version = self.schema_version().await?;
        let Some(next) = migrations::pending(migrations::MIGRATIONS, version)?.first() else {
            return Ok(version);
        };
        // Spin's SQLite runs one statement per `execute`.
        for statement in migrations::statements(next.sql) {
            self.execute(&statement, &[])
                .await
                .map_err(|e| DbError::Migration {
                    version: next.version,
                    reason: e.to_string(),
                })?;
        }
        // With foreign keys off, nothing stopped a migration from leaving a row that
        // points nowhere: refuse to commit one.
        let dangling = self.execute("PRAGMA foreign_key_check", &[]).await?;
        if let Some(row) = dangling.rows().next() {
            return Err(DbError::Migration {
                version: next.version,
                reason: format!(
                    "it left a row of {} whose foreign key points nowhere",
                    row.get::<&str>("table").unwrap_or("a table")
                ),
            });
        }
        // A migration that forgot to record its version would be applied again and
        // again; the unit tests check every file, this checks the database.
        let recorded = self.schema_version().await?;
        if recorded != next.version {
            return Err(DbError::Migration {
                version: next.version,
                reason: format!("it left the schema version at {recorded}"),
            });
        }
        Ok(next.version)
    }

    /// 0 for an empty database.
    pub async fn schema_version(&self) -> Result<u32, DbError> {
        match self
            .execute(
                "SELECT COALESCE(MAX(version), 0) AS v FROM schema_version",
                &[],
            )
            .await
        {
            Ok(r) => Ok(r
                .rows()
                .next()
                .and_then(|row| row.get::<i64>("v"))
                .unwrap_or(0) as u32),
            Err(DbError::Schema(_)) => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// A cheap liveness probe for the health route.
    pub async fn ping(&self) -> Result<(), DbError> {
        self.execute("SELECT 1", &[]).await.map(|_| ())
    }
}

/// The rows [`Db::execute_packed`] packed: a JSON array of one array per row. A JSON
/// array or object in a cell (a column that is itself JSON, which SQLite may embed
/// as JSON rather than as its text) comes back as its text.
fn unpack(columns: &[&str], json: &str) -> Result<QueryResult, DbError> {
    let rows: Vec<Vec<serde_json::Value>> = serde_json::from_str(json)
        .map_err(|e| DbError::Corrupt(format!("a packed result is not JSON rows: {e}")))?;
    let rows = rows
        .into_iter()
        .map(|row| {
            if row.len() != columns.len() {
                return Err(DbError::Corrupt(format!(
                    "a packed row has {} values for {} columns",
                    row.len(),
                    columns.len()
                )));
            }
            Ok(row
                .into_iter()
                .map(|cell| match cell {
                    serde_json::Value::Null => Value::Null,
                    serde_json::Value::Bool(b) => Value::Integer(i64::from(b)),
                    serde_json::Value::Number(n) => match n.as_i64() {
                        Some(i) => Value::Integer(i),
                        None => Value::Real(n.as_f64().unwrap_or(f64::NAN)),
                    },
                    serde_json::Value::String(s) => Value::Text(s),
                    nested => Value::Text(nested.to_string()),
                })
                .collect())
        })
        .collect::<Result<_, _>>()?;
    Ok(QueryResult {
        columns: columns.iter().map(|c| c.to_string()).collect(),
        rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_schema_objects_mean_migrate() {
        for msg in [
            "no such table: jobs",
            "no such column: dispatch",
            "no such index: jobs_by_duration",
            "table job_submissions has no column named owner",
        ] {
            assert!(matches!(classify(msg), DbError::Schema(_)), "{msg}");
        }
        assert!(matches!(classify("database is locked"), DbError::Sqlite(_)));
    }

    #[test]
    fn packed_rows_unpack_by_column_and_type() {
        let r = unpack(
            &["id", "n", "x", "none", "outputs"],
            r#"[["a",3,1.5,null,[{"name":"o"}]],["b",-1,2.0,null,"[]"]]"#,
        )
        .expect("valid rows");
        let rows: Vec<_> = r.rows().collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].get::<&str>("id"), Some("a"));
        assert_eq!(rows[0].get::<i64>("n"), Some(3));
        assert_eq!(rows[0].get::<f64>("x"), Some(1.5));
        assert_eq!(rows[0].value("none"), Some(&Value::Null));
        assert_eq!(rows[0].get::<&str>("outputs"), Some(r#"[{"name":"o"}]"#));
        assert_eq!(rows[1].get::<i64>("n"), Some(-1));
        assert_eq!(rows[1].get::<&str>("outputs"), Some("[]"));
        assert_eq!(unpack(&["id"], "[]").expect("no rows").rows.len(), 0);
    }

    #[test]
    fn malformed_packed_rows_are_corrupt() {
        for bad in ["{", r#"{"a":1}"#, r#"[["a","b"]]"#] {
            assert!(
                matches!(unpack(&["id"], bad), Err(DbError::Corrupt(_))),
                "{bad}"
            );
        }
    }
}
