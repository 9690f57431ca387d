//! API keys as the API and `relayit admin create-api-key` make them: the request checked once
//! ([`KeySpec`]), then a fresh key stored as its hash and shown once.

use chrono::{DateTime, Utc};

use crate::auth::tokens;
use crate::db::PooledConnection;
use crate::db::api_keys::{self, ApiKey, NewApiKey};
use crate::domain::ids;
use crate::domain::validate::{ValidationError, Validator};

pub const SCOPES: &[&str] = &["send", "read", "manage"];

crate::json_schema! {
    /// An API key scope.
    Scope => crate::domain::schema::one_of(SCOPES)
}

/// A validated key request.
pub struct KeySpec {
    pub name: String,
    pub scopes: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub rate_limit: Option<i32>,
}

impl KeySpec {
    /// Checks a key request; scopes default to `["send"]` and come out in canonical order.
    pub fn check(
        name: &str,
        scopes: Option<Vec<String>>,
        expires_at: Option<DateTime<Utc>>,
        rate_limit: Option<i32>,
    ) -> Result<KeySpec, ValidationError> {
        let mut check = Validator::new();
        check.name("name", name);
        let mut scopes = scopes.unwrap_or_else(|| vec!["send".to_owned()]);
        if scopes.is_empty() {
            check.error("scopes", "must name at least one scope");
        }
        for (i, scope) in scopes.iter().enumerate() {
            if !SCOPES.contains(&scope.as_str()) {
                check.error(format!("scopes.{i}"), "must be send, read or manage");
            }
        }
        scopes.sort_by_key(|s| SCOPES.iter().position(|k| k == s));
        scopes.dedup();
        if expires_at.is_some_and(|at| at <= Utc::now()) {
            check.error("expiresAt", "must be in the future");
        }
        if rate_limit.is_some_and(|r| r < 1) {
            check.error("rateLimit", "must be at least 1");
        }
        check.finish()?;
        Ok(KeySpec { name: name.trim().to_owned(), scopes, expires_at, rate_limit })
    }

    /// Creates the key; returns the stored row and the full key (to show once).
    pub async fn create(
        &self,
        conn: &mut PooledConnection,
        organization_id: &str,
        project_id: Option<&str>,
        created_by: Option<&str>,
    ) -> diesel::QueryResult<(ApiKey, String)> {
        let (key, prefix) = tokens::new_api_key();
        let hash = tokens::hash(&key);
        let id = ids::new_id(ids::API_KEY);
        let row = api_keys::insert(
            conn,
            NewApiKey {
                id: &id,
                organization_id,
                project_id,
                name: &self.name,
                key_hash: &hash,
                prefix: &prefix,
                scopes: &self.scopes,
                rate_limit: self.rate_limit,
                created_by,
                expires_at: self.expires_at,
            },
        )
        .await?;
        Ok((row, key))
    }
}
