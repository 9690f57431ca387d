//! Bearer secrets: session tokens, API keys and invitation tokens.
//!
//! Each is 32 random bytes; only its SHA-256 hash is stored, so a database leak yields no usable
//! credential, and lookups are by hash (an index probe, no timing-sensitive comparison).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};

pub const API_KEY_PREFIX: &str = "rly_";
/// Characters of an API key shown in lists to recognize it (`rly_` and 8 more).
const DISPLAY_PREFIX_LEN: usize = API_KEY_PREFIX.len() + 8;

fn random_bytes() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    SystemRandom::new().fill(&mut bytes).expect("the operating system's random source failed");
    bytes
}

/// A session or invitation token: base64url of 32 random bytes.
pub fn new_token() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes())
}

/// A new API key (`rly_` + base62 of 32 random bytes) and its display prefix.
pub fn new_api_key() -> (String, String) {
    let key = format!("{API_KEY_PREFIX}{}", base62(&random_bytes()));
    let prefix = key[..DISPLAY_PREFIX_LEN].to_owned();
    (key, prefix)
}

pub fn is_api_key(token: &str) -> bool {
    token.starts_with(API_KEY_PREFIX)
}

pub fn hash(token: &str) -> Vec<u8> {
    hash_bytes(token.as_bytes())
}

/// SHA-256 of any bytes (request bodies for idempotency).
pub fn hash_bytes(bytes: &[u8]) -> Vec<u8> {
    digest::digest(&digest::SHA256, bytes).as_ref().to_vec()
}

/// Fixed-width base62 (43 digits for 32 bytes) by long division.
fn base62(bytes: &[u8; 32]) -> String {
    const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut number = bytes.to_vec();
    let mut digits = Vec::with_capacity(43);
    for _ in 0..43 {
        let mut remainder = 0u32;
        for byte in number.iter_mut() {
            let value = (remainder << 8) | u32::from(*byte);
            *byte = (value / 62) as u8;
            remainder = value % 62;
        }
        digits.push(ALPHABET[remainder as usize]);
    }
    digits.reverse();
    String::from_utf8(digits).expect("ASCII alphabet")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_have_the_documented_shape() {
        let (key, prefix) = new_api_key();
        assert!(key.starts_with("rly_") && key.len() == 47, "{key}");
        assert!(key[4..].chars().all(|c| c.is_ascii_alphanumeric()));
        assert!(key.starts_with(&prefix) && prefix.len() == 12);
        assert_ne!(new_api_key().0, key);
        assert!(is_api_key(&key) && !is_api_key(&new_token()));
    }

    #[test]
    fn base62_is_positional() {
        let mut one = [0u8; 32];
        one[31] = 1;
        assert_eq!(base62(&one), format!("{}1", "0".repeat(42)));
        let mut sixty_two = [0u8; 32];
        sixty_two[31] = 62;
        assert_eq!(base62(&sixty_two), format!("{}10", "0".repeat(41)));
        // 2^256 - 1 still fits in 43 digits
        assert_eq!(base62(&[0xff; 32]).len(), 43);
    }

    #[test]
    fn hashes_are_sha256() {
        assert_eq!(hash("abc").len(), 32);
        assert_eq!(hash("abc"), hash("abc"));
        assert_ne!(hash("abc"), hash("abd"));
    }
}
