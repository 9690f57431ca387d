//! Master key rotation (`relayit rotate-keys`): re-seals every stored secret that is not yet
//! under the current master key, so the previous keys can then be retired.
//!
//! Safe while the service runs: rows are read in batches and each is replaced only if its
//! sealed value is still exactly the one that was read (a compare-and-swap on the ciphertext;
//! nonces are random, so any concurrent write changes it). A row changed meanwhile is left to
//! that change and counted, so the operator knows to run again. Rows that do not open with the
//! configured keys are reported, not fatal: the rest are still re-sealed.

use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::crypto::MasterKeys;
use crate::db::schema::webhook_endpoints;
use crate::db::{DbError, providers};

/// Rows read per query.
pub const BATCH_SIZE: i64 = 100;

/// What a rotation did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RotationReport {
    pub providers_resealed: u64,
    pub webhooks_resealed: u64,
    /// Rows changed by someone else between read and write.
    pub changed_meanwhile: u64,
    /// `table id: reason` of rows that could not be opened.
    pub failed: Vec<String>,
}

impl RotationReport {
    pub fn resealed(&self) -> u64 {
        self.providers_resealed + self.webhooks_resealed
    }
}

/// Connects to the database at `url` and rotates there (`relayit rotate-keys`).
pub async fn rotate_at(url: &str, keys: &MasterKeys) -> Result<RotationReport, DbError> {
    let mut conn = AsyncPgConnection::establish(url).await?;
    Ok(rotate(&mut conn, keys).await?)
}

/// Re-seals under `keys.current` every provider credential and webhook secret sealed under
/// another key.
pub async fn rotate(
    conn: &mut AsyncPgConnection,
    keys: &MasterKeys,
) -> QueryResult<RotationReport> {
    let mut report = RotationReport::default();
    rotate_providers(conn, keys, &mut report).await?;
    rotate_webhooks(conn, keys, &mut report).await?;
    Ok(report)
}

async fn rotate_providers(
    conn: &mut AsyncPgConnection,
    keys: &MasterKeys,
    report: &mut RotationReport,
) -> QueryResult<()> {
    let current = keys.current.id();
    let mut after = String::new();
    loop {
        let rows = providers::sealed_under_other_keys(conn, current, &after, BATCH_SIZE).await?;
        let Some(last) = rows.last() else { return Ok(()) };
        after = last.id.clone();
        for row in rows {
            let aad = crate::providers::credentials::aad(&row.organization_id, &row.id);
            let plain = match keys.open(&row.sealed_secrets, &row.secrets_key_id, &aad) {
                Ok(plain) => plain,
                Err(e) => {
                    report.failed.push(format!("provider_credentials {}: {e}", row.id));
                    continue;
                }
            };
            let sealed = keys.seal(&plain, &aad);
            let replaced = providers::replace_sealed(
                conn,
                &row.id,
                &row.sealed_secrets,
                &sealed.bytes,
                &sealed.key_id,
            )
            .await?;
            if replaced {
                report.providers_resealed += 1;
            } else {
                report.changed_meanwhile += 1;
            }
        }
    }
}

type WebhookSecrets = (String, String, Vec<u8>, String, Option<Vec<u8>>, Option<String>);

async fn rotate_webhooks(
    conn: &mut AsyncPgConnection,
    keys: &MasterKeys,
    report: &mut RotationReport,
) -> QueryResult<()> {
    use webhook_endpoints::dsl as w;
    let current = keys.current.id();
    let mut after = String::new();
    loop {
        // `previous_secret_key_id <> current` is NULL, so false, where there is no previous
        let rows: Vec<WebhookSecrets> = w::webhook_endpoints
            .filter(w::secret_key_id.ne(current).or(w::previous_secret_key_id.ne(current)))
            .filter(w::id.gt(&after))
            .order(w::id)
            .limit(BATCH_SIZE)
            .select((
                w::id,
                w::organization_id,
                w::sealed_secret,
                w::secret_key_id,
                w::previous_sealed_secret,
                w::previous_secret_key_id,
            ))
            .load(conn)
            .await?;
        let Some(last) = rows.last() else { return Ok(()) };
        after = last.0.clone();
        for (id, org, secret, key_id, previous, previous_key_id) in rows {
            let aad = crate::webhooks::secret::aad(&org, &id);
            let reseal = |sealed: &[u8], key_id: &str| {
                if key_id == current {
                    return Ok((sealed.to_vec(), key_id.to_owned()));
                }
                let plain = keys.open(sealed, key_id, &aad)?;
                let new = keys.seal(&plain, &aad);
                Ok::<_, crate::crypto::SealError>((new.bytes, new.key_id))
            };
            let new_secret = reseal(&secret, &key_id);
            let new_previous = match (&previous, &previous_key_id) {
                (Some(sealed), Some(key_id)) => reseal(sealed, key_id).map(Some),
                _ => Ok(None),
            };
            let ((secret_bytes, secret_key), new_previous) = match (new_secret, new_previous) {
                (Ok(secret), Ok(previous)) => (secret, previous),
                (Err(e), _) | (_, Err(e)) => {
                    report.failed.push(format!("webhook_endpoints {id}: {e}"));
                    continue;
                }
            };
            let (previous_bytes, previous_key) = new_previous.unzip();
            let replaced = diesel::update(
                w::webhook_endpoints
                    .filter(w::id.eq(&id))
                    .filter(w::sealed_secret.eq(&secret))
                    .filter(w::previous_sealed_secret.is_not_distinct_from(&previous)),
            )
            .set((
                w::sealed_secret.eq(secret_bytes),
                w::secret_key_id.eq(secret_key),
                w::previous_sealed_secret.eq(previous_bytes),
                w::previous_secret_key_id.eq(previous_key),
            ))
            .execute(conn)
            .await?;
            if replaced == 1 {
                report.webhooks_resealed += 1;
            } else {
                report.changed_meanwhile += 1;
            }
        }
    }
}
