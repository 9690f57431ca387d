//! Password hashing with argon2id at OWASP's recommended parameters (19 MiB, 2 passes, 1 lane).
//!
//! Hashing is CPU-bound for tens of milliseconds, so it runs on the blocking pool. Verifying an
//! unknown email still verifies against a fixed hash, so response times do not reveal which
//! emails have accounts.

use std::sync::OnceLock;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::domain::validate::Validator;

pub const MIN_LENGTH: usize = 10;
pub const MAX_LENGTH: usize = 256;

/// A new password: `MIN_LENGTH` to `MAX_LENGTH` characters.
pub fn check(check: &mut Validator, field: &str, password: &str) {
    let chars = password.chars().count();
    if chars < MIN_LENGTH {
        check.error(field, format!("must be at least {MIN_LENGTH} characters"));
    } else if chars > MAX_LENGTH {
        check.error(field, format!("must be at most {MAX_LENGTH} characters"));
    }
}

fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

fn hash_now(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 hashing with valid parameters")
        .to_string()
}

/// Hashes `password` (PHC string format) off the async threads.
pub async fn hash(password: String) -> String {
    tokio::task::spawn_blocking(move || hash_now(&password))
        .await
        .expect("password hashing task panicked")
}

/// Checks `password` against `stored` (or against a decoy when the user has none), in
/// constant time with respect to the password.
pub async fn verify(password: String, stored: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || {
        static DECOY: OnceLock<String> = OnceLock::new();
        let known = stored.is_some();
        let stored =
            stored.unwrap_or_else(|| DECOY.get_or_init(|| hash_now("decoy password")).clone());
        let Ok(parsed) = PasswordHash::new(&stored) else { return false };
        argon2().verify_password(password.as_bytes(), &parsed).is_ok() && known
    })
    .await
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_are_argon2id() {
        let stored = hash("correct horse battery".into()).await;
        assert!(stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{stored}");
        assert!(verify("correct horse battery".into(), Some(stored.clone())).await);
        assert!(!verify("wrong horse battery".into(), Some(stored)).await);
        assert!(!verify("decoy password".into(), None).await);
    }
}
