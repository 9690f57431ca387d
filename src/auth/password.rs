//! Password hashing with argon2id at OWASP's recommended parameters (19 MiB, 2 passes, 1 lane).
//!
//! Hashing is CPU-bound for tens of milliseconds and holds 19 MiB while it runs, so it runs on
//! the blocking pool, and only through a [`Hasher`], which lets a bounded number of hashes run
//! at once: a burst of sign-ins would otherwise start one blocking thread and 19 MiB per request
//! (a thousand at once is gigabytes). A request that cannot get its turn within the wait is
//! refused ([`Busy`], answered 503 with `Retry-After`) instead of queueing without end.
//! Verifying an unknown email still verifies against a fixed hash, so response times do not
//! reveal which emails have accounts.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

use crate::domain::validate::Validator;

pub const MIN_LENGTH: usize = 10;
pub const MAX_LENGTH: usize = 256;

crate::json_schema! {
    /// A new password, as [`check`] takes it.
    Password => crate::domain::schema::text(MIN_LENGTH, MAX_LENGTH)
        .description(Some(format!("{MIN_LENGTH} to {MAX_LENGTH} characters.")))
        .examples(["correct horse battery staple"])
}

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

fn verify_now(password: &str, stored: Option<String>) -> bool {
    static DECOY: OnceLock<String> = OnceLock::new();
    let known = stored.is_some();
    let stored = stored.unwrap_or_else(|| DECOY.get_or_init(|| hash_now("decoy password")).clone());
    let Ok(parsed) = PasswordHash::new(&stored) else { return false };
    argon2().verify_password(password.as_bytes(), &parsed).is_ok() && known
}

/// No hashing slot came free within the wait: the caller should try again shortly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many passwords are being checked at once; try again shortly")]
pub struct Busy;

/// The one way to hash or verify a password: at most `max_concurrent` at once per process.
#[derive(Debug, Clone)]
pub struct Hasher {
    slots: Arc<Semaphore>,
    wait: Duration,
}

impl Hasher {
    /// At most `max_concurrent` hashes at once (0: one per CPU core); a caller waits up to
    /// `wait` for a slot.
    pub fn new(max_concurrent: usize, wait: Duration) -> Hasher {
        let slots = match max_concurrent {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        Hasher { slots: Arc::new(Semaphore::new(slots)), wait }
    }

    /// Runs `work` on the blocking pool once a slot is free. The slot goes with the work, so
    /// it stays taken until the hash is done even when the request that asked is dropped.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Busy> {
        let slot = tokio::time::timeout(self.wait, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| Busy)?
            .map_err(|_| Busy)?;
        let done = tokio::task::spawn_blocking(move || {
            let result = work();
            drop(slot);
            result
        });
        // Only a panic in argon2 or a runtime shutting down gets here: no answer either way.
        done.await.map_err(|_| Busy)
    }

    /// Hashes `password` (PHC string format).
    pub async fn hash(&self, password: String) -> Result<String, Busy> {
        self.run(move || hash_now(&password)).await
    }

    /// Checks `password` against `stored` (or against a decoy when the user has none), in
    /// constant time with respect to the password.
    pub async fn verify(&self, password: String, stored: Option<String>) -> Result<bool, Busy> {
        self.run(move || verify_now(&password, stored)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_are_argon2id() {
        let hasher = Hasher::new(0, Duration::from_secs(60));
        let stored = hasher.hash("correct horse battery".into()).await.unwrap();
        assert!(stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{stored}");
        assert!(hasher.verify("correct horse battery".into(), Some(stored.clone())).await.unwrap());
        assert!(!hasher.verify("wrong horse battery".into(), Some(stored)).await.unwrap());
        assert!(!hasher.verify("decoy password".into(), None).await.unwrap());
    }

    #[tokio::test]
    async fn a_caller_without_a_free_slot_is_refused_after_the_wait() {
        let hasher = Hasher::new(1, Duration::from_millis(20));
        let taken = hasher.slots.clone().acquire_owned().await.unwrap();
        assert_eq!(hasher.hash("correct horse battery".into()).await, Err(Busy));
        assert_eq!(hasher.verify("correct horse battery".into(), None).await, Err(Busy));
        drop(taken);
        assert!(hasher.hash("correct horse battery".into()).await.is_ok());
    }
}
