//! The master key that seals tenant secrets, where it comes from, and sealing itself.
//!
//! Sealed values are AES-256-GCM `nonce || ciphertext || tag` with a random 96-bit nonce; the
//! additional authenticated data binds each value to the row it belongs to, so a sealed column
//! copied onto another row (or another tenant) does not open.
//!
//! An operator configures it (`security.encryption_key`, base64 of 32 bytes, with older keys in
//! `security.previous_keys` so rows sealed before a rotation still open). A single `--role=all`
//! instance may instead let RelayIt generate one into `data_dir/master.key` on first start, so the
//! quick start needs no extra step; split roles must share one explicit key, since a key generated
//! by one process would be unknown to the others.

use std::fmt;
use std::io::Write;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};

use crate::config::Config;

pub const KEY_LEN: usize = 32;
pub const KEY_FILE: &str = "master.key";

/// A 256-bit AES key with a short id derived from it, stored beside each sealed value so the
/// right key is chosen when several are configured.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey {
    id: String,
    bytes: [u8; KEY_LEN],
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey").field("id", &self.id).finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("not valid base64")]
    NotBase64,
    #[error("must decode to 32 bytes, got {0}")]
    WrongLength(usize),
}

impl MasterKey {
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        let bytes = BASE64.decode(text.trim()).map_err(|_| KeyError::NotBase64)?;
        let bytes: [u8; KEY_LEN] =
            bytes.as_slice().try_into().map_err(|_| KeyError::WrongLength(bytes.len()))?;
        Ok(Self::from_bytes(bytes))
    }

    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        let hash = digest::digest(&digest::SHA256, &bytes);
        let id = hash.as_ref()[..4].iter().map(|b| format!("{b:02x}")).collect();
        Self { id, bytes }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }
}

/// The key that seals new values, and the keys that may still open old ones.
#[derive(Debug, Clone)]
pub struct MasterKeys {
    pub current: MasterKey,
    pub previous: Vec<MasterKey>,
}

impl MasterKeys {
    /// Finds the key with this id among the current and previous keys.
    pub fn by_id(&self, id: &str) -> Option<&MasterKey> {
        std::iter::once(&self.current).chain(&self.previous).find(|k| k.id == id)
    }
}

/// A sealed value and the id of the key that sealed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub bytes: Vec<u8>,
    pub key_id: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error(
        "sealed with key {0}, which is neither security.encryption_key nor in security.previous_keys"
    )]
    UnknownKey(String),
    #[error("the sealed value does not open (tampered, or bound to another row)")]
    Corrupt,
}

impl MasterKeys {
    /// Seals `plaintext` under the current key, bound to `aad`.
    pub fn seal(&self, plaintext: &[u8], aad: &str) -> Sealed {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).expect("the operating system's random source failed");
        let mut buffer = plaintext.to_vec();
        self.current
            .aead()
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad.as_bytes()),
                &mut buffer,
            )
            // only fails for inputs beyond AES-GCM's 64 GiB limit
            .expect("plaintext within AES-GCM limits");
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&buffer);
        Sealed { bytes, key_id: self.current.id.clone() }
    }

    /// Opens a value sealed by `seal` under any configured key.
    pub fn open(&self, sealed: &[u8], key_id: &str, aad: &str) -> Result<Vec<u8>, SealError> {
        let key = self.by_id(key_id).ok_or_else(|| SealError::UnknownKey(key_id.to_owned()))?;
        if sealed.len() < NONCE_LEN {
            return Err(SealError::Corrupt);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Corrupt)?;
        let mut buffer = ciphertext.to_vec();
        let plain = key
            .aead()
            .open_in_place(nonce, Aad::from(aad.as_bytes()), &mut buffer)
            .map_err(|_| SealError::Corrupt)?;
        Ok(plain.to_vec())
    }
}

impl MasterKey {
    fn aead(&self) -> LessSafeKey {
        // 32 bytes is exactly AES-256's key length, so this cannot fail
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &self.bytes).expect("32-byte AES key"))
    }
}

/// How the master key was obtained, for the start-up log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    Configured,
    ExistingFile,
    GeneratedFile,
}

#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error(
        "security.encryption_key is not set: split roles must share one key. Run \
         `relayit generate-key` and set RELAYIT_SECURITY__ENCRYPTION_KEY to its output on every process"
    )]
    Missing,
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
}

/// Returns fresh random key material, base64-encoded, as `relayit generate-key` prints it.
pub fn generate_key_base64() -> String {
    let mut bytes = [0u8; KEY_LEN];
    // The system RNG only fails when the OS cannot provide randomness at all, and then
    // nothing secure can be done.
    SystemRandom::new().fill(&mut bytes).expect("the operating system's random source failed");
    BASE64.encode(bytes)
}

/// Resolves the master keys for a process. `may_generate` is true for a single `--role=all`
/// instance, which may fall back to (and create) `data_dir/master.key`.
pub fn resolve_master_keys(
    config: &Config,
    may_generate: bool,
) -> Result<(MasterKeys, KeySource), MasterKeyError> {
    // Config::validate has already checked these keys; decoding again cannot fail here, but an
    // error is still reported rather than assumed away.
    let decode = |text: &str, what: &str| {
        MasterKey::from_base64(text)
            .map_err(|e| MasterKeyError::File { path: what.to_owned(), reason: e.to_string() })
    };
    let previous = config
        .security
        .previous_keys
        .iter()
        .map(|k| decode(k, "security.previous_keys"))
        .collect::<Result<Vec<_>, _>>()?;
    let (current, source) = match &config.security.encryption_key {
        Some(key) => (decode(key, "security.encryption_key")?, KeySource::Configured),
        None if may_generate => load_or_create_key_file(&config.data_dir.join(KEY_FILE))?,
        None => return Err(MasterKeyError::Missing),
    };
    Ok((MasterKeys { current, previous }, source))
}

fn load_or_create_key_file(path: &Path) -> Result<(MasterKey, KeySource), MasterKeyError> {
    let fail = |reason: String| MasterKeyError::File { path: path.display().to_string(), reason };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| fail(format!("cannot create directory: {e}")))?;
    }
    let key = generate_key_base64();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(mut file) => {
            file.write_all(format!("{key}\n").as_bytes())
                .and_then(|_| file.sync_all())
                .map_err(|e| fail(format!("cannot write the new key: {e}")))?;
            let key = MasterKey::from_base64(&key).map_err(|e| fail(e.to_string()))?;
            Ok((key, KeySource::GeneratedFile))
        }
        // Another process (or an earlier start) made it first: use that one.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
            let key = MasterKey::from_base64(&text)
                .map_err(|e| fail(format!("{e}; restore the file from backup")))?;
            Ok((key, KeySource::ExistingFile))
        }
        Err(e) => Err(fail(format!("cannot create: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_32_random_bytes() {
        let a = generate_key_base64();
        let b = generate_key_base64();
        assert_ne!(a, b);
        assert_eq!(BASE64.decode(&a).unwrap().len(), 32);
        assert!(MasterKey::from_base64(&a).is_ok());
    }

    #[test]
    fn bad_keys_are_refused() {
        assert_eq!(MasterKey::from_base64("***").unwrap_err(), KeyError::NotBase64);
        assert_eq!(
            MasterKey::from_base64(&BASE64.encode([1u8; 16])).unwrap_err(),
            KeyError::WrongLength(16)
        );
    }

    #[test]
    fn key_ids_tell_keys_apart() {
        let a = MasterKey::from_bytes([1; 32]);
        let b = MasterKey::from_bytes([2; 32]);
        assert_ne!(a.id(), b.id());
        assert_eq!(a.id(), MasterKey::from_bytes([1; 32]).id());
        let keys = MasterKeys { current: a.clone(), previous: vec![b.clone()] };
        assert_eq!(keys.by_id(b.id()), Some(&b));
        assert!(!format!("{a:?}").contains("1, 1"));
    }

    #[test]
    fn sealing_round_trips_and_binds_to_the_row() {
        let old = MasterKey::from_bytes([7; 32]);
        let keys = MasterKeys { current: old.clone(), previous: vec![] };
        let sealed = keys.seal(b"secret", "provider:org_a:prv_1");
        assert_eq!(sealed.key_id, old.id());
        assert!(!sealed.bytes.windows(6).any(|w| w == b"secret"));
        assert_eq!(
            keys.open(&sealed.bytes, &sealed.key_id, "provider:org_a:prv_1").unwrap(),
            b"secret"
        );
        assert_eq!(
            keys.open(&sealed.bytes, &sealed.key_id, "provider:org_b:prv_1"),
            Err(SealError::Corrupt)
        );
        let mut tampered = sealed.bytes.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(
            keys.open(&tampered, &sealed.key_id, "provider:org_a:prv_1"),
            Err(SealError::Corrupt)
        );
        assert_eq!(keys.open(&[1, 2], &sealed.key_id, "x"), Err(SealError::Corrupt));

        // after rotation the old key still opens old values, and new values use the new key
        let rotated = MasterKeys { current: MasterKey::from_bytes([8; 32]), previous: vec![old] };
        assert_eq!(
            rotated.open(&sealed.bytes, &sealed.key_id, "provider:org_a:prv_1").unwrap(),
            b"secret"
        );
        assert_ne!(rotated.seal(b"x", "a").key_id, sealed.key_id);
        let forgotten = MasterKeys { current: MasterKey::from_bytes([9; 32]), previous: vec![] };
        assert!(matches!(
            forgotten.open(&sealed.bytes, &sealed.key_id, "provider:org_a:prv_1"),
            Err(SealError::UnknownKey(_))
        ));
    }

    #[test]
    fn single_instance_generates_the_key_once() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config { data_dir: dir.path().join("nested"), ..Config::default() };
        let (first, source) = resolve_master_keys(&config, true).unwrap();
        assert_eq!(source, KeySource::GeneratedFile);
        let path = config.data_dir.join(KEY_FILE);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (again, source) = resolve_master_keys(&config, true).unwrap();
        assert_eq!(source, KeySource::ExistingFile);
        assert_eq!(again.current, first.current);
    }

    #[test]
    fn split_roles_need_an_explicit_key() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config { data_dir: dir.path().to_owned(), ..Config::default() };
        let err = resolve_master_keys(&config, false).unwrap_err();
        assert!(err.to_string().contains("relayit generate-key"));
        assert!(!dir.path().join(KEY_FILE).exists());

        let key = generate_key_base64();
        let mut config = config;
        config.security.encryption_key = Some(key.clone());
        config.security.previous_keys = vec![generate_key_base64()];
        let (keys, source) = resolve_master_keys(&config, false).unwrap();
        assert_eq!(source, KeySource::Configured);
        assert_eq!(keys.current, MasterKey::from_base64(&key).unwrap());
        assert_eq!(keys.previous.len(), 1);
    }
}
