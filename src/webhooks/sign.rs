//! Standard Webhooks signatures: `webhook-signature` is a space-separated list of `v1,<base64
//! HMAC-SHA256(key, "<webhook-id>.<webhook-timestamp>.<body>")>`, one per secret the endpoint
//! signs with (two during a secret rotation), so a receiver holding either secret accepts it.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::hmac;

use crate::webhooks::secret;

/// One `v1,<base64>` signature of `body` under the HMAC key `key`.
pub fn sign(key: &[u8], webhook_id: &str, timestamp: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut context = hmac::Context::with_key(&key);
    context.update(webhook_id.as_bytes());
    context.update(b".");
    context.update(timestamp.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    format!("v1,{}", BASE64.encode(context.sign().as_ref()))
}

/// The `webhook-signature` header for `secrets` (each `whsec_...`), or why a secret is unusable.
pub fn signature_header(
    secrets: &[String],
    webhook_id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, String> {
    let mut signatures = Vec::with_capacity(secrets.len());
    for text in secrets {
        let key = secret::key_bytes(text)?;
        signatures.push(sign(&key, webhook_id, timestamp, body));
    }
    Ok(signatures.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vector published with the Standard Webhooks reference libraries
    /// (github.com/standard-webhooks/standard-webhooks, `libraries/*`: `test_sign`).
    const VECTOR_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const VECTOR_ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const VECTOR_TIMESTAMP: i64 = 1_649_367_553;
    const VECTOR_BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const VECTOR_SIGNATURE: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    #[test]
    fn signs_the_published_test_vector() {
        let key = secret::key_bytes(VECTOR_SECRET).unwrap();
        assert_eq!(sign(&key, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY), VECTOR_SIGNATURE);
    }

    #[test]
    fn the_vector_fails_with_any_input_changed() {
        let key = secret::key_bytes(VECTOR_SECRET).unwrap();
        assert_ne!(sign(&key, "msg_other", VECTOR_TIMESTAMP, VECTOR_BODY), VECTOR_SIGNATURE);
        assert_ne!(sign(&key, VECTOR_ID, VECTOR_TIMESTAMP + 1, VECTOR_BODY), VECTOR_SIGNATURE);
        assert_ne!(sign(&key, VECTOR_ID, VECTOR_TIMESTAMP, b"{}"), VECTOR_SIGNATURE);
    }

    #[test]
    fn one_signature_per_secret_separated_by_spaces() {
        let other = format!("whsec_{}", BASE64.encode([9u8; 32]));
        let header = signature_header(
            &[VECTOR_SECRET.to_owned(), other.clone()],
            VECTOR_ID,
            VECTOR_TIMESTAMP,
            VECTOR_BODY,
        )
        .unwrap();
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], VECTOR_SIGNATURE);
        let other_key = secret::key_bytes(&other).unwrap();
        assert_eq!(parts[1], sign(&other_key, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY));
        assert!(signature_header(&["nope".into()], VECTOR_ID, 1, b"").is_err());
    }
}
