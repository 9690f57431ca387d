//! WhatsApp Cloud API delivery receipts (`/v1/inbound/whatsapp/{credentialId}`).
//!
//! Meta calls the URL a tenant registers as its app's webhook:
//! - `GET` once, at set-up (`hub.mode=subscribe&hub.verify_token=...&hub.challenge=...`): we
//!   answer the challenge, as text, only when the token is the credential's `verifyToken`;
//! - `POST` for every status change of the messages sent from the app's numbers
//!   (`entry[].changes[].value.statuses[]`), signed with the app secret:
//!   `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(appSecret, raw body)>`.
//!
//! Neither carries our authentication: the credential's secrets are the proof. A callback that
//! is not signed by the credential's `appSecret` changes nothing. `delivered` and `read` move a
//! `sent` message to `delivered`, `failed` moves it to `failed` with Graph's error; the message
//! is found by its provider message id within the credential's organization, and a repeated
//! callback finds it past `sent` and changes nothing. An update that comes before the message's
//! `sent` is recorded is held until it is (`db::receipts`).

use ring::hmac;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::db::providers::{ProviderCredential, find_for_callback};
use crate::db::receipts::{self, Applied, Receipt};
use crate::domain::provider_types::{ProviderType, WhatsappCredentials};
use crate::domain::status::{DELIVERED, FAILED, SENT};
use crate::domain::suppression::Reason;
use crate::inbound::InboundError;
use crate::providers::credentials;
use crate::state::AppState;

/// Meta batches status updates; their bodies stay well below this.
pub const MAX_CALLBACK_BYTES: usize = 1024 * 1024;
/// A challenge is a short number; anything longer is not Meta's.
pub const MAX_CHALLENGE_CHARS: usize = 256;

/// The WhatsApp credential `id` with its secrets; any other credential is not found.
async fn credential(
    state: &AppState,
    id: &str,
) -> Result<(ProviderCredential, WhatsappCredentials), InboundError> {
    let mut conn = state.db.get().await?;
    let row = find_for_callback(&mut conn, id, ProviderType::WhatsappCloud)
        .await?
        .ok_or(InboundError::NotFound("provider"))?;
    let secrets = credentials::open(&state.keys, &row)
        .map_err(|reason| InboundError::Internal(format!("provider {}: {reason}", row.id)))?;
    let secrets = serde_json::from_value(Value::Object(secrets)).map_err(|_| {
        InboundError::Internal(format!(
            "provider {}: credentials do not match their schema",
            row.id
        ))
    })?;
    Ok((row, secrets))
}

/// Meta's webhook verification: the challenge to answer when `verify_token` is the credential's
/// `verifyToken` and `mode` is `subscribe`.
pub async fn handshake(
    state: &AppState,
    credential_id: &str,
    mode: Option<&str>,
    verify_token: Option<&str>,
    challenge: Option<String>,
) -> Result<String, InboundError> {
    let challenge = challenge
        .filter(|c| !c.is_empty() && c.chars().count() <= MAX_CHALLENGE_CHARS)
        .ok_or_else(|| {
            InboundError::Invalid(
                "hub.challenge",
                format!("is required, at most {MAX_CHALLENGE_CHARS} characters"),
            )
        })?;
    let (_, secrets) = credential(state, credential_id).await?;
    let Some(expected) = secrets.verify_token else {
        return Err(InboundError::Refused(
            "this credential has no verifyToken; set one to register its callback URL".to_owned(),
        ));
    };
    if mode != Some("subscribe") || !same_secret(verify_token.unwrap_or_default(), &expected) {
        return Err(InboundError::Refused("hub.verify_token does not match".to_owned()));
    }
    Ok(challenge)
}

/// Compares in constant time: HMAC tags of both, checked by ring.
fn same_secret(given: &str, expected: &str) -> bool {
    let key = hmac::Key::new(hmac::HMAC_SHA256, b"relayit verify-token comparison");
    let tag = hmac::sign(&key, expected.as_bytes());
    hmac::verify(&key, given.as_bytes(), tag.as_ref()).is_ok()
}

/// `signature`, the `sha256=<hex>` of `X-Hub-Signature-256`, checked against the raw body.
fn signed_by(secret: &str, signature: Option<&str>, body: &[u8]) -> bool {
    let tag = signature.and_then(|v| v.trim().strip_prefix("sha256=")).and_then(decode_hex);
    let Some(tag) = tag else { return false };
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    hmac::verify(&key, body, &tag).is_ok()
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| text.get(i..i + 2).and_then(|pair| u8::from_str_radix(pair, 16).ok()))
        .collect()
}

#[derive(Deserialize)]
struct Callback {
    #[serde(default)]
    entry: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    changes: Vec<Change>,
}

#[derive(Deserialize)]
struct Change {
    value: Option<ChangeValue>,
}

#[derive(Deserialize)]
struct ChangeValue {
    #[serde(default)]
    statuses: Vec<Status>,
}

#[derive(Deserialize)]
struct Status {
    id: String,
    status: String,
    timestamp: Option<String>,
    #[serde(default)]
    errors: Vec<StatusError>,
}

/// The Cloud API's error for a recipient who chose to stop receiving the business's marketing
/// messages: an opt-out, kept as an `unsubscribe` suppression.
const OPTED_OUT: i64 = 131050;

#[derive(Deserialize)]
struct StatusError {
    code: Option<i64>,
    title: Option<String>,
    message: Option<String>,
    error_data: Option<StatusErrorData>,
}

#[derive(Deserialize)]
struct StatusErrorData {
    details: Option<String>,
}

impl StatusError {
    fn text(&self) -> String {
        let mut text = match self.code {
            Some(code) => format!("WhatsApp error {code}"),
            None => "WhatsApp error".to_owned(),
        };
        if let Some(title) = self.title.as_ref().or(self.message.as_ref()) {
            text.push_str(": ");
            text.push_str(title);
        }
        if let Some(details) = self.error_data.as_ref().and_then(|d| d.details.as_ref()) {
            text.push_str(" - ");
            text.push_str(details);
        }
        crate::providers::connector::truncate(text)
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CallbackResult {
    /// Status updates in the callback.
    pub received: usize,
    /// Messages whose status they changed.
    pub applied: usize,
    /// Updates that named no message yet: they apply once the message's send is recorded.
    pub held: usize,
}

/// Applies the status updates of a Cloud API callback signed with the credential's `appSecret`
/// (`signature` is its `X-Hub-Signature-256`).
pub async fn statuses(
    state: &AppState,
    credential_id: &str,
    signature: Option<&str>,
    body: &[u8],
) -> Result<CallbackResult, InboundError> {
    let (row, secrets) = credential(state, credential_id).await?;
    let Some(app_secret) = secrets.app_secret else {
        return Err(InboundError::Refused(
            "this credential has no appSecret, so its callbacks cannot be verified".to_owned(),
        ));
    };
    if !signed_by(&app_secret, signature, body) {
        return Err(InboundError::Unauthenticated(
            "X-Hub-Signature-256 is missing or does not sign this body".to_owned(),
        ));
    }
    let callback: Callback = serde_json::from_slice(body)
        .map_err(|e| InboundError::Malformed(format!("not a WhatsApp callback: {e}")))?;
    let statuses: Vec<Status> = callback
        .entry
        .into_iter()
        .flat_map(|entry| entry.changes)
        .filter_map(|change| change.value)
        .flat_map(|value| value.statuses)
        .collect();
    let mut conn = state.db.get().await?;
    let (mut applied, mut held) = (0, 0);
    for status in &statuses {
        let (to, reason, suppress) = match status.status.as_str() {
            "delivered" | "read" => (DELIVERED, None, None),
            "failed" => {
                let reason = match status.errors.first() {
                    Some(error) => error.text(),
                    None => "WhatsApp reported the message failed".to_owned(),
                };
                let opted_out = status.errors.iter().any(|e| e.code == Some(OPTED_OUT));
                (FAILED, Some(reason), opted_out.then_some(Reason::Unsubscribe))
            }
            // `sent` we knew already; others (`deleted`, `warning`) change nothing
            _ => continue,
        };
        let mut details = json!({
            "receipt": ProviderType::WhatsappCloud.as_str(),
            "credentialId": row.id,
            "providerMessageId": status.id,
            "providerStatus": status.status,
        });
        if let Some(timestamp) = &status.timestamp {
            details["providerTimestamp"] = json!(timestamp);
        }
        if let Some(reason) = &reason {
            details["error"] = json!(reason);
        }
        match receipts::apply(
            &mut conn,
            Receipt {
                organization_id: &row.organization_id,
                channel: &row.channel,
                // any of the organization's: the app's one webhook URL reports all its numbers
                credential_id: None,
                provider_message_id: &status.id,
                from: &[SENT],
                to,
                reason: reason.as_deref(),
                details,
                suppress,
            },
        )
        .await?
        {
            Applied::Moved(ids) => applied += ids.len(),
            Applied::Held => held += 1,
            Applied::Ignored => {}
        }
    }
    tracing::debug!(credential = %row.id, received = statuses.len(), applied, held,
        "whatsapp receipts");
    Ok(CallbackResult { received: statuses.len(), applied, held })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_comparison() {
        assert_eq!(decode_hex("00ff10"), Some(vec![0, 255, 16]));
        assert_eq!(decode_hex("0g"), None);
        assert_eq!(decode_hex("abc"), None);
        assert!(same_secret("token", "token"));
        assert!(!same_secret("token", "tokem") && !same_secret("", "token"));
    }
}
