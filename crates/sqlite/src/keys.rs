//! API keys (migration 6): made, listed, revoked, and found for each request in closed
//! mode. SQLite is the source of truth, so a revoked key stops at once everywhere, and
//! keys are still checked while Redis is down.

use crate::{text, Db, DbError, Row, Value};
use data20_domain::access::{KeyView, MadeKey, NewKey, Scopes};
use data20_domain::time::rfc3339_ms;

/// A key as stored: its digest, never the key.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredKey {
    pub id: String,
    pub name: String,
    pub digest: String,
    pub scopes: Scopes,
    pub rate_limit_max: Option<u64>,
    pub created_ms: i64,
    pub revoked_ms: Option<i64>,
}

impl StoredKey {
    pub fn view(&self) -> KeyView {
        KeyView {
            id: self.id.clone(),
            name: self.name.clone(),
            scopes: self.scopes.names(),
            rate_limit_max: self.rate_limit_max,
            created_at: rfc3339_ms(self.created_ms),
            revoked_at: self.revoked_ms.map(rfc3339_ms),
        }
    }
}

const COLUMNS: &str = "id, name, digest, scopes, rate_limit_max, created_ms, revoked_ms";

fn stored(row: &Row<'_>) -> Result<StoredKey, DbError> {
    let corrupt = |what: &str| DbError::Corrupt(format!("api_keys row has a bad {what}"));
    Ok(StoredKey {
        id: row
            .get::<&str>("id")
            .ok_or_else(|| corrupt("id"))?
            .to_string(),
        name: row.get::<&str>("name").unwrap_or_default().to_string(),
        digest: row
            .get::<&str>("digest")
            .ok_or_else(|| corrupt("digest"))?
            .to_string(),
        scopes: Scopes::from_stored(row.get::<&str>("scopes").unwrap_or_default()),
        rate_limit_max: row
            .get::<i64>("rate_limit_max")
            .and_then(|n| u64::try_from(n).ok()),
        created_ms: row.get::<i64>("created_ms").unwrap_or(0),
        revoked_ms: row.get::<i64>("revoked_ms"),
    })
}

impl Db {
    /// Stores `made` (its digest only) as `new` says.
    pub async fn insert_key(
        &self,
        made: &MadeKey,
        new: &NewKey,
        now_ms: i64,
    ) -> Result<StoredKey, DbError> {
        self.with_schema(async |db: &Db| {
            let r = db
                .execute(
                    &format!(
                        "INSERT INTO api_keys (id, name, digest, scopes, rate_limit_max, created_ms) \
                         VALUES (?, ?, ?, ?, ?, ?) RETURNING {COLUMNS}"
                    ),
                    &[
                        text(&made.id),
                        text(&new.name),
                        text(&made.digest()),
                        text(&new.scopes.to_stored()),
                        new.rate_limit_max
                            .map_or(Value::Null, |n| Value::Integer(n as i64)),
                        Value::Integer(now_ms),
                    ],
                )
                .await?;
            let key = r
                .rows()
                .next()
                .map(|row| stored(&row))
                .unwrap_or_else(|| Err(DbError::Sqlite("INSERT returned no key".into())));
            key
        })
        .await
    }

    /// Every key, revoked ones too, oldest first.
    pub async fn list_keys(&self) -> Result<Vec<StoredKey>, DbError> {
        self.with_schema(async |db: &Db| {
            let r = db
                .execute(
                    &format!("SELECT {COLUMNS} FROM api_keys ORDER BY created_ms, id"),
                    &[],
                )
                .await?;
            r.rows().map(|row| stored(&row)).collect()
        })
        .await
    }

    /// The key `id` names, if it exists and is not revoked.
    pub async fn live_key(&self, id: &str) -> Result<Option<StoredKey>, DbError> {
        self.with_schema(async |db: &Db| {
            let r = db
                .execute(
                    &format!("SELECT {COLUMNS} FROM api_keys WHERE id = ? AND revoked_ms IS NULL"),
                    &[text(id)],
                )
                .await?;
            let key = r.rows().next().map(|row| stored(&row)).transpose();
            key
        })
        .await
    }

    /// Revokes key `id`; answers whether it was live.
    pub async fn revoke_key(&self, id: &str, now_ms: i64) -> Result<bool, DbError> {
        self.with_schema(async |db: &Db| {
            let r = db
                .execute(
                    "UPDATE api_keys SET revoked_ms = ? WHERE id = ? AND revoked_ms IS NULL \
                     RETURNING id",
                    &[Value::Integer(now_ms), text(id)],
                )
                .await?;
            let revoked = r.rows().next().is_some();
            Ok(revoked)
        })
        .await
    }
}
