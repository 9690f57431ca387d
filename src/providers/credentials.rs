//! Provider credentials at rest: a credential's `credentials` object is sealed under the master
//! key, bound to its row (`provider_credentials:{org}:{id}`), so a sealed value copied onto
//! another row, or another tenant's, does not open. The API seals what a tenant sends; delivery,
//! `/verify`, the inbound callbacks and the key rotation open it. The webhook endpoints'
//! signing secrets are sealed the same way in `crate::webhooks::secret`.

use serde_json::{Map, Value};

use crate::crypto::{MasterKeys, Sealed};
use crate::db::providers::ProviderCredential;

/// The additional authenticated data of a row's sealed credentials (the key rotation relies on
/// exactly this).
pub fn aad(organization_id: &str, id: &str) -> String {
    format!("provider_credentials:{organization_id}:{id}")
}

/// Seals `credentials` (a JSON object) for the row `id` of `organization_id`.
pub fn seal(keys: &MasterKeys, organization_id: &str, id: &str, credentials: &Value) -> Sealed {
    keys.seal(credentials.to_string().as_bytes(), &aad(organization_id, id))
}

/// The stored credentials, opened. The error says why not, without anything secret.
pub fn open(keys: &MasterKeys, row: &ProviderCredential) -> Result<Map<String, Value>, String> {
    let aad = aad(&row.organization_id, &row.id);
    let plain =
        keys.open(&row.sealed_secrets, &row.secrets_key_id, &aad).map_err(|e| e.to_string())?;
    match serde_json::from_slice(&plain) {
        Ok(Value::Object(fields)) => Ok(fields),
        _ => Err("the sealed credentials are not a JSON object".to_owned()),
    }
}
