//! Webhook signing secrets: their format, generation, sealing at rest, and the secrets an
//! endpoint signs with right now.
//!
//! A secret is `whsec_` + standard base64 of the HMAC key, as Standard Webhooks defines it, so a
//! receiver can use any Standard Webhooks library. It is sealed under the master key bound to the
//! endpoint's row (`webhook_endpoints:{org}:{id}`, for the current and the previous secret alike:
//! the master-key rotation command relies on exactly this AAD). After a secret rotation the old
//! secret keeps signing, beside the new one, for [`PREVIOUS_SECRET_TTL`], so receivers can switch
//! without dropping events.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Duration, Utc};
use ring::rand::{SecureRandom, SystemRandom};

use crate::crypto::{MasterKeys, SealError, Sealed};
use crate::db::webhook_endpoints::WebhookEndpoint;

pub const PREFIX: &str = "whsec_";
/// Bytes of key in a generated secret.
pub const GENERATED_BYTES: usize = 32;
/// Bytes of key a given secret may have.
pub const MIN_BYTES: usize = 24;
pub const MAX_BYTES: usize = 64;

crate::json_schema! {
    /// A signing secret as [`key_bytes`] takes it.
    WebhookSecret => utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .pattern(Some(pattern()))
        .description(Some(format!(
            "`{PREFIX}` and the standard base64 (padded) of {MIN_BYTES} to {MAX_BYTES} bytes."
        )))
        .examples(["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"])
}

/// What [`key_bytes`] accepts, as a regular expression: `PREFIX`, then canonical padded
/// base64 of `MIN_BYTES` to `MAX_BYTES` bytes (whole groups of 4, the last one possibly
/// padded, with no bits set past the data, as the decoder requires).
fn pattern() -> String {
    const ANY: &str = "[A-Za-z0-9+/]";
    // bytes = 3 * groups + tail, for tail 0, 1 ("xx==") and 2 ("xxx=")
    let endings =
        ["".to_owned(), format!("{ANY}[AQgw]=="), format!("{ANY}{{2}}[AEIMQUYcgkosw048]=")];
    let alternatives: Vec<String> = endings
        .iter()
        .enumerate()
        .map(|(tail, ending)| {
            let least = MIN_BYTES.saturating_sub(tail).div_ceil(3);
            let most = (MAX_BYTES - tail) / 3;
            format!("(?:{ANY}{{4}}){{{least},{most}}}{ending}")
        })
        .collect();
    format!("^{PREFIX}(?:{})$", alternatives.join("|"))
}

/// How long a replaced secret keeps signing after a rotation.
pub const PREVIOUS_SECRET_TTL: Duration = Duration::hours(24);

/// A new random secret.
pub fn generate() -> Result<String, ring::error::Unspecified> {
    let mut bytes = [0u8; GENERATED_BYTES];
    SystemRandom::new().fill(&mut bytes)?;
    Ok(format!("{PREFIX}{}", BASE64.encode(bytes)))
}

/// The HMAC key of a secret, or why the secret is not one.
pub fn key_bytes(secret: &str) -> Result<Vec<u8>, String> {
    let encoded =
        secret.strip_prefix(PREFIX).ok_or_else(|| format!("must start with `{PREFIX}`"))?;
    let bytes = BASE64
        .decode(encoded)
        .map_err(|_| format!("must be `{PREFIX}` followed by standard base64"))?;
    if !(MIN_BYTES..=MAX_BYTES).contains(&bytes.len()) {
        return Err(format!(
            "must encode {MIN_BYTES} to {MAX_BYTES} bytes after `{PREFIX}`, not {}",
            bytes.len()
        ));
    }
    Ok(bytes)
}

/// The additional data that binds an endpoint's sealed secrets to its row.
pub fn aad(organization_id: &str, endpoint_id: &str) -> String {
    format!("webhook_endpoints:{organization_id}:{endpoint_id}")
}

pub fn seal(keys: &MasterKeys, organization_id: &str, endpoint_id: &str, secret: &str) -> Sealed {
    keys.seal(secret.as_bytes(), &aad(organization_id, endpoint_id))
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error("the sealed webhook secret is not text")]
    NotText,
}

fn open(
    keys: &MasterKeys,
    endpoint: &WebhookEndpoint,
    sealed: &[u8],
    key_id: &str,
) -> Result<String, OpenError> {
    let plain = keys.open(sealed, key_id, &aad(&endpoint.organization_id, &endpoint.id))?;
    String::from_utf8(plain).map_err(|_| OpenError::NotText)
}

/// The secrets `endpoint` signs with at `now`: the current one first, then the previous one
/// while it has not expired. A Standard Webhooks signature header carries one signature per
/// secret, so receivers holding either secret accept the event.
pub fn signing_secrets(
    keys: &MasterKeys,
    endpoint: &WebhookEndpoint,
    now: DateTime<Utc>,
) -> Result<Vec<String>, OpenError> {
    let mut secrets = vec![open(keys, endpoint, &endpoint.sealed_secret, &endpoint.secret_key_id)?];
    if let (Some(sealed), Some(key_id), Some(expires_at)) = (
        &endpoint.previous_sealed_secret,
        &endpoint.previous_secret_key_id,
        endpoint.previous_secret_expires_at,
    ) && expires_at > now
    {
        secrets.push(open(keys, endpoint, sealed, key_id)?);
    }
    Ok(secrets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;

    fn keys() -> MasterKeys {
        MasterKeys { current: MasterKey::from_bytes([3; 32]), previous: vec![] }
    }

    fn endpoint(keys: &MasterKeys, secret: &str) -> WebhookEndpoint {
        let sealed = seal(keys, "org_a", "whk_1", secret);
        let now = Utc::now();
        WebhookEndpoint {
            id: "whk_1".into(),
            organization_id: "org_a".into(),
            project_id: "prj_1".into(),
            url: "https://example.com/".into(),
            description: None,
            event_types: vec!["message.sent".into()],
            sealed_secret: sealed.bytes,
            secret_key_id: sealed.key_id,
            previous_sealed_secret: None,
            previous_secret_key_id: None,
            previous_secret_expires_at: None,
            is_active: true,
            disabled_reason: None,
            disabled_at: None,
            failing_since: None,
            created_at: now,
            updated_at: now,
            rate_limit: None,
        }
    }

    #[test]
    fn generated_secrets_are_32_random_bytes() {
        let a = generate().unwrap();
        assert!(a.starts_with("whsec_"));
        assert_eq!(key_bytes(&a).unwrap().len(), 32);
        assert_ne!(a, generate().unwrap());
    }

    #[test]
    fn given_secrets_must_be_whsec_base64_of_24_to_64_bytes() {
        let of = |n: usize| format!("whsec_{}", BASE64.encode(vec![7u8; n]));
        assert!(key_bytes(&of(24)).is_ok());
        assert!(key_bytes(&of(64)).is_ok());
        assert!(key_bytes(&of(23)).is_err());
        assert!(key_bytes(&of(65)).is_err());
        assert!(key_bytes(&BASE64.encode([7u8; 32])).unwrap_err().contains("whsec_"));
        assert!(key_bytes("whsec_not base64!").is_err());
        assert!(key_bytes("whsec_").is_err());
        // standard, padded base64 only: the url-safe alphabet is another encoding
        let url_safe = base64::engine::general_purpose::URL_SAFE.encode([0xfb; 32]);
        assert!(url_safe.contains('-') || url_safe.contains('_'));
        assert!(key_bytes(&format!("whsec_{url_safe}")).is_err());
        assert!(key_bytes(of(32).trim_end_matches('=')).is_err());
    }

    #[test]
    fn signing_secrets_include_the_previous_one_until_it_expires() {
        let keys = keys();
        let mut endpoint = endpoint(&keys, "whsec_current");
        let now = Utc::now();
        assert_eq!(signing_secrets(&keys, &endpoint, now).unwrap(), ["whsec_current"]);

        let previous = seal(&keys, "org_a", "whk_1", "whsec_previous");
        endpoint.previous_sealed_secret = Some(previous.bytes);
        endpoint.previous_secret_key_id = Some(previous.key_id);
        endpoint.previous_secret_expires_at = Some(now + Duration::hours(1));
        assert_eq!(
            signing_secrets(&keys, &endpoint, now).unwrap(),
            ["whsec_current", "whsec_previous"]
        );
        assert_eq!(
            signing_secrets(&keys, &endpoint, now + Duration::hours(2)).unwrap(),
            ["whsec_current"]
        );
    }

    #[test]
    fn secrets_are_bound_to_their_row() {
        let keys = keys();
        let mut endpoint = endpoint(&keys, "whsec_current");
        endpoint.id = "whk_2".into();
        assert!(matches!(
            signing_secrets(&keys, &endpoint, Utc::now()),
            Err(OpenError::Seal(SealError::Corrupt))
        ));
    }
}
