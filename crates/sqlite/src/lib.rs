//! data20's SQLite adapter: the source of truth for jobs.

pub mod jobs;
pub mod migrations;
pub mod stats;

use spin_sdk::sqlite::{Connection, QueryResult, Value};

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum DbError {
    #[error("sqlite: {0}")]
    Sqlite(String),
    #[error("sqlite: the schema is missing or out of date: {0}")]
    Schema(String),
    #[error("sqlite: stored data is invalid: {0}")]
    Corrupt(String),
}

impl From<spin_sdk::sqlite::Error> for DbError {
    fn from(e: spin_sdk::sqlite::Error) -> Self {
        classify(&format!("{e}"))
    }
}

/// A text parameter.
pub fn text(s: &str) -> Value {
    Value::Text(s.to_string())
}

/// A query that fails because a table, column or index is missing means "migrate
/// first". (A query that needs an index-only migration names the index with
/// `INDEXED BY`, so a database without it fails this way too.)
pub fn classify(msg: &str) -> DbError {
    if ["no such table", "no such column", "no such index"]
        .iter()
        .any(|missing| msg.contains(missing))
    {
        DbError::Schema(msg.to_string())
    } else {
        DbError::Sqlite(msg.to_string())
    }
}

/// The app's database (Spin's `default` SQLite database).
pub struct Db {
    conn: Connection,
}

impl Db {
    /// Opens the default database. Schema creation is deferred to the first query that
    /// needs it (see [`Db::with_schema`]) so that the hot path pays no extra round trip.
    pub fn open() -> Result<Db, DbError> {
        let conn = Connection::open_default()?;
        Ok(Db { conn })
    }

    pub fn execute(&self, sql: &str, params: &[Value]) -> Result<QueryResult, DbError> {
        Ok(self.conn.execute(sql, params)?)
    }

    /// Runs `f`; if it fails because the schema is missing or old, applies the
    /// migrations and runs it once more. A query that needs a later migration's object
    /// (a table, column or index) triggers it the same way.
    pub fn with_schema<T>(&self, f: impl Fn(&Db) -> Result<T, DbError>) -> Result<T, DbError> {
        match f(self) {
            Err(DbError::Schema(_)) => {
                self.migrate()?;
                f(self)
            }
            other => other,
        }
    }

    /// Applies every migration newer than the database's version, each in its own
    /// transaction. Safe to run concurrently from several processes: each statement is
    /// idempotent and `BEGIN IMMEDIATE` serialises writers.
    pub fn migrate(&self) -> Result<u32, DbError> {
        // Several `spin up` processes share the file: wait for a writer instead of failing.
        self.execute("PRAGMA busy_timeout = 5000", &[])?;
        // Write-ahead logging (a property of the file, so set once, here, outside any
        // transaction): a commit is one append and one fsync of the log instead of a
        // rollback journal's create, sync and delete. It halved the cost of each job
        // transition's INSERT (docs/BENCHMARKS.md). Readers no longer block the writer
        // either. Durability is unchanged: `synchronous` stays FULL.
        self.execute("PRAGMA journal_mode = WAL", &[])?;
        let current = self.schema_version()?;
        let mut applied = current;
        for m in migrations::MIGRATIONS
            .iter()
            .filter(|m| m.version > current)
        {
            self.execute("BEGIN IMMEDIATE", &[])?;
            let result = migrations::statements(m.sql)
                .iter()
                .try_for_each(|stmt| self.execute(stmt, &[]).map(|_| ()));
            match result {
                Ok(()) => {
                    self.execute("COMMIT", &[])?;
                    applied = m.version;
                }
                Err(e) => {
                    let _ = self.execute("ROLLBACK", &[]);
                    return Err(DbError::Sqlite(format!(
                        "migration {} failed: {e}",
                        m.version
                    )));
                }
            }
        }
        Ok(applied)
    }

    /// 0 for an empty database.
    pub fn schema_version(&self) -> Result<u32, DbError> {
        match self.execute(
            "SELECT COALESCE(MAX(version), 0) AS v FROM schema_version",
            &[],
        ) {
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
    pub fn ping(&self) -> Result<(), DbError> {
        self.execute("SELECT 1", &[]).map(|_| ())
    }
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
        ] {
            assert!(matches!(classify(msg), DbError::Schema(_)), "{msg}");
        }
        assert!(matches!(classify("database is locked"), DbError::Sqlite(_)));
    }
}
