//! Users and their API keys: only a key's SHA-256 is stored; the key itself is shown once.

use sha2::{Digest, Sha256};

use super::{Store, StoreError};
use crate::auth::Scope;
use crate::model::now_ms;

/// SHA-256 hex of an API key: what the database holds instead of the key.
pub fn hash_key(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new random API key: 32 bytes from the OS, hex.
pub fn new_key() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

// === impl Store: users ===

impl Store {
    /// Creates a user without restrictions; see [`Store::create_user_scoped`].
    pub async fn create_user(&self, name: &str) -> Result<(i64, String), StoreError> {
        self.create_user_scoped(name, &Scope::default()).await
    }

    /// Creates a user whose tokens carry `scope`, with a fresh API key; returns (user id, key).
    /// Only the key's hash is stored: the key is shown to the caller once.
    pub async fn create_user_scoped(
        &self,
        name: &str,
        scope: &Scope,
    ) -> Result<(i64, String), StoreError> {
        let scope = scope_text(scope)?;
        let key = new_key().map_err(|e| StoreError::Url(format!("no OS randomness: {e}")))?;
        let hash = hash_key(&key);
        let now = now_ms();
        let id = on_pool!(&self.db, p => {
            let mut tx = p.begin().await?;
            let exists: Option<(i64,)> = sqlx::query_as("SELECT id FROM users WHERE name = $1")
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
            if exists.is_some() {
                return Err(StoreError::UserExists(name.to_owned()));
            }
            let (id,): (i64,) =
                sqlx::query_as("INSERT INTO users (name, created_ms) VALUES ($1, $2) RETURNING id")
                    .bind(name)
                    .bind(now)
                    .fetch_one(&mut *tx)
                    .await?;
            // Only a restricted user writes the column, so an unrestricted one can still be
            // made on a schema from before it (migration tests start there).
            if let Some(scope) = &scope {
                sqlx::query("UPDATE users SET scope = $1 WHERE id = $2")
                    .bind(scope)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query("INSERT INTO api_keys (user_id, key_hash, created_ms) VALUES ($1, $2, $3)")
                .bind(id)
                .bind(&hash)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            id
        });
        Ok((id, key))
    }

    /// The user an API key belongs to: its id and name (the `sub` of the tokens it gets).
    pub(crate) async fn user_for_key(
        &self,
        key: &str,
    ) -> Result<Option<(i64, String)>, StoreError> {
        let hash = hash_key(key);
        self.bounded(async {
            Ok(on_pool!(&self.read, p => {
                sqlx::query_as(
                    "SELECT users.id, users.name FROM api_keys \
                     JOIN users ON users.id = api_keys.user_id WHERE api_keys.key_hash = $1",
                )
                .bind(&hash)
                .fetch_optional(p)
                .await?
            }))
        })
        .await
    }

    /// The scope of the user named `name`, if there is one (read from the read pool, for the
    /// token exchange).
    pub async fn user_scope(&self, name: &str) -> Result<Option<Scope>, StoreError> {
        let row: Option<(Option<String>,)> = self
            .bounded(async {
                Ok(on_pool!(&self.read, p => {
                    sqlx::query_as("SELECT scope FROM users WHERE name = $1")
                        .bind(name)
                        .fetch_optional(p)
                        .await?
                }))
            })
            .await?;
        row.map(|(text,)| parse_scope(text.as_deref())).transpose()
    }

    /// Replaces the scope of the user named `name` (tokens issued from now on carry it; those
    /// already issued keep theirs until they expire).
    pub async fn set_user_scope(&self, name: &str, scope: &Scope) -> Result<(), StoreError> {
        let scope = scope_text(scope)?;
        let updated = on_pool!(&self.db, p => {
            sqlx::query("UPDATE users SET scope = $1 WHERE name = $2")
                .bind(&scope)
                .bind(name)
                .execute(p)
                .await?
                .rows_affected()
        });
        if updated == 0 {
            return Err(StoreError::NoSuchUser(name.to_owned()));
        }
        Ok(())
    }

    /// The id of the user named `name` (a token's `sub`), if there is one.
    pub(crate) async fn user_id(&self, name: &str) -> Result<Option<i64>, StoreError> {
        let row: Option<(i64,)> = self
            .bounded(async {
                Ok(on_pool!(&self.read, p => {
                    sqlx::query_as("SELECT id FROM users WHERE name = $1")
                        .bind(name)
                        .fetch_optional(p)
                        .await?
                }))
            })
            .await?;
        Ok(row.map(|(id,)| id))
    }
}

/// A scope as stored: JSON, NULL for one that restricts nothing.
fn scope_text(scope: &Scope) -> Result<Option<String>, StoreError> {
    if *scope == Scope::default() {
        return Ok(None);
    }
    serde_json::to_string(scope)
        .map(Some)
        .map_err(|e| StoreError::Corrupt(format!("user scope: {e}")))
}

/// A stored scope; one that does not read is an error (its tokens must not go unrestricted).
fn parse_scope(text: Option<&str>) -> Result<Scope, StoreError> {
    match text {
        None => Ok(Scope::default()),
        Some(t) => serde_json::from_str(t)
            .map_err(|e| StoreError::Corrupt(format!("user scope {t:?}: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_hash_is_sha256_hex() {
        assert_eq!(
            hash_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let k = new_key().unwrap();
        assert_eq!(k.len(), 64);
        assert_ne!(k, new_key().unwrap());
    }

    #[test]
    fn scopes_are_stored_as_json_and_a_corrupt_one_is_an_error() {
        assert_eq!(scope_text(&Scope::default()).unwrap(), None);
        let scope = Scope {
            channels: Some(vec!["ticks:AAPL".into()]),
            limits: None,
        };
        let text = scope_text(&scope).unwrap();
        assert_eq!(text.as_deref(), Some(r#"{"channels":["ticks:AAPL"]}"#));
        assert_eq!(parse_scope(text.as_deref()).unwrap(), scope);
        assert_eq!(parse_scope(None).unwrap(), Scope::default());
        assert!(matches!(
            parse_scope(Some("{\"channels\": 3}")),
            Err(StoreError::Corrupt(_))
        ));
    }
}
