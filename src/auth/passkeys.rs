//! Passkeys (WebAuthn): registering one for a signed-in user, and signing in with one, by
//! email or with a discoverable credential that names its user.
//!
//! The relying party is `server.public_url`: its host is the relying party id credentials
//! are bound to, its origin the only one a browser may use them from. Without it (or with an
//! IP address there, which WebAuthn cannot bind to), or with `auth.passkeys` off, there are no
//! passkeys ([`Passkeys::for_config`] gives none and the routes answer 404).
//!
//! Each ceremony takes two requests: the first gets a challenge, the second answers it. The
//! ceremony's state stays on the server, in Redis under a random `challengeId`, for as long as
//! the authenticator may take ([`CHALLENGE_TTL`]), and is taken (GETDEL) by the second request:
//! a challenge is answered once, or not at all. A registration's key names its user, so no one
//! else can find, let alone use or spend, it.
//!
//! The user handle of a credential is the user's id as a UUID (`usr_` + a UUIDv7 in hex), so a
//! discoverable credential leads back to its user without another table. Sign-in by email never
//! tells whether the email is known: an unknown one, or one without passkeys, gets credential
//! ids made up from the email (keyed by the master key, so the same ones every time, and
//! believable in number and length) that no authenticator holds.
//!
//! A sign-in rewrites the stored credential (sign counter, backup flags) with the row locked,
//! and refuses a sign counter that did not move forward (a cloned authenticator, or an old
//! assertion): two sign-ins with one credential cannot both pass with the same count. Failed
//! sign-ins are throttled as password sign-ins are (`auth::throttle`), per client address and,
//! when the sign-in named one, per email.

use std::time::Duration;

use chrono::Utc;
use diesel_async::AsyncConnection;
use serde::{Deserialize, Serialize};
use webauthn_rs::fake::{FakePasskeyDistribution, WebauthnFakeCredentialGenerator};
use webauthn_rs::prelude::{
    AuthenticationResult, DiscoverableAuthentication, Passkey, PasskeyAuthentication,
    PasskeyRegistration, PublicKeyCredential, RegisterPublicKeyCredential, Url, Uuid, Webauthn,
    WebauthnBuilder,
};

use crate::auth::accounts::{self, Client};
use crate::auth::{pending, throttle, tokens};
use crate::config::Config;
use crate::crypto::MasterKeys;
use crate::db::passkeys::{self, NewPasskey, StoredPasskey};
use crate::db::users::{self, User};
use crate::domain::ids;
use crate::domain::recipient::normalize_email;
use crate::domain::validate::{Validator, parse_object};
use crate::error::ApiError;
use crate::state::AppState;

/// How long a challenge may be answered: the time the authenticator is given (the WebAuthn
/// recommendation), after which its state is gone from Redis.
pub const CHALLENGE_TTL: Duration = Duration::from_secs(300);

/// The relying party name authenticators may show.
const RP_NAME: &str = "RelayIt";

/// The process's relying party: the WebAuthn checks bound to `server.public_url`, and the
/// generator of the made-up credential ids of unknown emails.
pub struct Passkeys {
    webauthn: Webauthn,
    decoys: WebauthnFakeCredentialGenerator<FakePasskeyDistribution>,
}

impl Passkeys {
    /// The relying party of `config`, or none when passkeys are not enabled
    /// ([`Config::passkeys_enabled`]). `keys` keys the made-up credential ids.
    pub fn for_config(config: &Config, keys: &MasterKeys) -> anyhow::Result<Option<Passkeys>> {
        if !config.passkeys_enabled() {
            return Ok(None);
        }
        let url = Url::parse(&config.server.public_url)?;
        let rp_id = url
            .domain()
            .ok_or_else(|| anyhow::anyhow!("server.public_url: passkeys need a domain name"))?;
        let origin = Url::parse(&url.origin().ascii_serialization())?;
        let webauthn = WebauthnBuilder::new(rp_id, &origin)
            .and_then(|b| b.rp_name(RP_NAME).timeout(CHALLENGE_TTL).build())
            .map_err(|e| anyhow::anyhow!("server.public_url: no WebAuthn relying party: {e}"))?;
        // a key of its own, derived from the master key: the decoys stay the same across
        // restarts, and the master key itself is used for nothing else than sealing
        let decoy_key = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, keys.current.bytes()),
            b"relayit passkey decoy credential ids",
        );
        let decoys = WebauthnFakeCredentialGenerator::new(decoy_key.as_ref())
            .map_err(|e| anyhow::anyhow!("passkey decoys: {e}"))?;
        Ok(Some(Passkeys { webauthn, decoys }))
    }
}

/// The relying party, or 404 when this server offers no passkeys.
fn relying_party(state: &AppState) -> Result<&Passkeys, ApiError> {
    state.passkeys.as_deref().ok_or_else(|| {
        ApiError::new(
            actix_web::http::StatusCode::NOT_FOUND,
            "not_found",
            "passkeys are not enabled on this server",
        )
    })
}

/// A ceremony between its two requests.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Pending {
    Register {
        state: PasskeyRegistration,
    },
    /// A sign-in by email: `user` and `state` are absent for an email without passkeys.
    SignIn {
        email: String,
        user: Option<String>,
        state: Option<PasskeyAuthentication>,
    },
    Discoverable {
        state: DiscoverableAuthentication,
    },
}

/// The Redis scope of a registration of `user_id`.
fn registration_scope(user_id: &str, challenge_id: &str) -> String {
    format!("reg:{user_id}:{challenge_id}")
}

fn sign_in_scope(challenge_id: &str) -> String {
    format!("auth:{challenge_id}")
}

/// Whether `id` can be a challenge id of ours (43 characters of base64url), checked before it
/// goes into a Redis key.
fn is_challenge_id(id: &str) -> bool {
    id.len() == 43 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Keeps `pending` under a new challenge id in the scope `scope_of` makes of it.
async fn keep(
    state: &AppState,
    scope_of: impl FnOnce(&str) -> String,
    pending: &Pending,
) -> Result<String, ApiError> {
    let challenge_id = tokens::new_token();
    let key = state.redis.keys().passkey_challenge(&scope_of(&challenge_id));
    pending::keep(state, key, pending, CHALLENGE_TTL).await?;
    Ok(challenge_id)
}

/// Takes the ceremony kept in `scope`: gone once read, `None` when unknown, expired or taken.
async fn take(state: &AppState, scope: &str) -> Result<Option<Pending>, ApiError> {
    pending::take(state, state.redis.keys().passkey_challenge(scope)).await
}

/// The user handle of `user_id`: the UUID of `usr_<uuid in hex>`.
fn user_handle(user_id: &str) -> Result<Uuid, ApiError> {
    user_id
        .strip_prefix("usr_")
        .and_then(|hex| Uuid::try_parse(hex).ok())
        .ok_or_else(|| ApiError::internal(format!("user id {user_id} holds no UUID")))
}

/// The user id a user handle stands for.
fn user_of_handle(handle: Uuid) -> String {
    format!("{}_{}", ids::USER, handle.simple())
}

/// What the API says of a stored credential beyond its row: the flags webauthn-rs keeps in
/// the credential it serialised.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct CredentialFacts {
    /// The authenticator's sign counter at the last use (0 for those that keep none).
    pub counter: u32,
    /// Whether the credential may be backed up (synced to other devices).
    pub backup_eligible: bool,
    /// Whether it is backed up.
    pub backup_state: bool,
}

impl CredentialFacts {
    pub fn of(passkey: &serde_json::Value) -> Result<CredentialFacts, ApiError> {
        passkey
            .get("cred")
            .and_then(|cred| CredentialFacts::deserialize(cred).ok())
            .ok_or_else(|| ApiError::internal("a stored passkey lacks its credential's flags"))
    }
}

fn stored_passkey(row: &StoredPasskey) -> Result<Passkey, ApiError> {
    serde_json::from_value(row.passkey.clone()).map_err(ApiError::internal)
}

/// Starts registering a passkey for `user`: the challenge id, and the options for
/// `navigator.credentials.create()` (`{publicKey: {...}}`).
pub async fn start_registration(
    state: &AppState,
    user: &User,
) -> Result<(String, serde_json::Value), ApiError> {
    let relying = relying_party(state)?;
    let existing = passkeys::all_of_user(&mut *state.db.get().await?, &user.id).await?;
    // the authenticator refuses to make a second credential for the same account
    let exclude = existing.into_iter().map(|p| p.credential_id).collect();
    let (options, registration) = relying
        .webauthn
        .start_passkey_registration(user_handle(&user.id)?, &user.email, &user.name, Some(exclude))
        .map_err(ApiError::internal)?;
    let mut options = serde_json::to_value(options).map_err(ApiError::internal)?;
    // webauthn-rs discourages resident keys for plain passkeys (they fill security keys' few
    // slots), and checks none at the end; discoverable sign-in needs one. "preferred" asks for
    // one where the authenticator can make it (platform and synced passkeys always do) and
    // still lets a security key without room register, for sign-in by email.
    if let Some(selection) = options.pointer_mut("/publicKey/authenticatorSelection") {
        selection["residentKey"] = "preferred".into();
        selection["requireResidentKey"] = false.into();
    }
    let pending = Pending::Register { state: registration };
    let challenge_id = keep(state, |id| registration_scope(&user.id, id), &pending).await?;
    Ok((challenge_id, options))
}

/// Finishes the registration of challenge `challenge_id` of `user` with the authenticator's
/// `credential` (the `PublicKeyCredential` of `navigator.credentials.create()` as JSON),
/// naming it `name`. 400 naming `challengeId` for a challenge that is not one of theirs in
/// progress, `credential` for one that does not verify; 409 for a credential already
/// registered (to anyone).
pub async fn finish_registration(
    state: &AppState,
    user: &User,
    challenge_id: &str,
    name: Option<&str>,
    credential: &serde_json::Value,
) -> Result<StoredPasskey, ApiError> {
    let relying = relying_party(state)?;
    let name = name.map(str::trim);
    let mut check = Validator::new();
    if let Some(name) = name {
        check.name("name", name);
    }
    let credential: Option<RegisterPublicKeyCredential> = check.parse("credential", credential);
    check.finish()?;
    let credential = credential.ok_or_else(|| ApiError::internal("credential unparsed"))?;

    let unknown = || {
        ApiError::invalid_field(
            "challengeId",
            "is not a passkey registration of yours in progress (unknown, expired or used)",
        )
    };
    if !is_challenge_id(challenge_id) {
        return Err(unknown());
    }
    let Some(Pending::Register { state: registration }) =
        take(state, &registration_scope(&user.id, challenge_id)).await?
    else {
        return Err(unknown());
    };
    let passkey =
        relying.webauthn.finish_passkey_registration(&credential, &registration).map_err(|e| {
            ApiError::invalid_field("credential", format!("the attestation did not verify: {e}"))
        })?;
    let stored = serde_json::to_value(&passkey).map_err(ApiError::internal)?;
    let id = ids::new_id(ids::PASSKEY);
    let row = NewPasskey {
        id: &id,
        user_id: &user.id,
        name,
        credential_id: passkey.cred_id().as_ref(),
        passkey: &stored,
    };
    match passkeys::insert(&mut *state.db.get().await?, row).await {
        Ok(row) => Ok(row),
        Err(e) if accounts::unique_violation_on(&e, "passkeys_credential_id_key") => {
            Err(ApiError::conflict("this passkey is already registered"))
        }
        Err(e) => Err(e.into()),
    }
}

/// Starts a sign-in: the challenge id, and the options for `navigator.credentials.get()`
/// (`{publicKey: {...}}`). With `email`, the credentials of that user (made-up ones when there
/// is no such user or they have no passkeys: the answer never tells); without, any
/// discoverable credential of this relying party (conditional mediation).
pub async fn start_sign_in(
    state: &AppState,
    email: Option<&str>,
) -> Result<(String, serde_json::Value), ApiError> {
    let relying = relying_party(state)?;
    let Some(email) = email else {
        let (options, auth) =
            relying.webauthn.start_discoverable_authentication().map_err(ApiError::internal)?;
        let options = serde_json::to_value(options).map_err(ApiError::internal)?;
        let challenge_id =
            keep(state, sign_in_scope, &Pending::Discoverable { state: auth }).await?;
        return Ok((challenge_id, options));
    };
    let email = normalize_email(email);
    let mut check = Validator::new();
    check.email("email", &email);
    check.finish()?;

    let mut conn = state.db.get().await?;
    let user = users::find_by_email(&mut conn, &email).await?;
    let stored = match &user {
        Some(user) => passkeys::all_of_user(&mut conn, &user.id).await?,
        None => Vec::new(),
    };
    drop(conn);
    let credentials = stored.iter().map(stored_passkey).collect::<Result<Vec<_>, _>>()?;
    let (options, pending) = if let (Some(user), false) = (&user, credentials.is_empty()) {
        let (options, auth) = relying
            .webauthn
            .start_passkey_authentication(&credentials)
            .map_err(ApiError::internal)?;
        let options = serde_json::to_value(options).map_err(ApiError::internal)?;
        (options, Pending::SignIn { email, user: Some(user.id.clone()), state: Some(auth) })
    } else {
        (decoy_options(relying, &email)?, Pending::SignIn { email, user: None, state: None })
    };
    let challenge_id = keep(state, sign_in_scope, &pending).await?;
    Ok((challenge_id, options))
}

/// Sign-in options for an email without passkeys, shaped as those of one with: a fresh
/// challenge, and the email's made-up credential ids.
fn decoy_options(relying: &Passkeys, email: &str) -> Result<serde_json::Value, ApiError> {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    // the discoverable options are those of a passkey sign-in but for what is undone here
    let (options, _) =
        relying.webauthn.start_discoverable_authentication().map_err(ApiError::internal)?;
    let mut options = serde_json::to_value(options).map_err(ApiError::internal)?;
    let fake = relying.decoys.generate(email.as_bytes()).map_err(ApiError::internal)?;
    let allow: Vec<serde_json::Value> = fake
        .iter()
        .map(|id| serde_json::json!({"type": "public-key", "id": URL_SAFE_NO_PAD.encode(id)}))
        .collect();
    if let Some(object) = options.as_object_mut() {
        object.remove("mediation");
    }
    if let Some(public_key) = options.get_mut("publicKey").and_then(|p| p.as_object_mut()) {
        public_key.remove("extensions");
        public_key.insert("allowCredentials".into(), allow.into());
    }
    Ok(options)
}

/// The answer to every failed passkey sign-in, whatever failed.
fn failed_sign_in() -> ApiError {
    ApiError::new(
        actix_web::http::StatusCode::UNAUTHORIZED,
        "unauthorized",
        "the passkey could not be verified",
    )
}

/// Finishes the sign-in of challenge `challenge_id` with the authenticator's `credential` (the
/// `PublicKeyCredential` of `navigator.credentials.get()` as JSON): the user and the new
/// session's token. 401 for anything that does not verify (unknown, expired or used challenge,
/// unknown or deleted credential, bad signature, sign counter that did not move forward);
/// 429 after too many failures from the client's address.
pub async fn finish_sign_in(
    state: &AppState,
    client: &Client,
    challenge_id: &str,
    credential: &serde_json::Value,
) -> Result<(User, String), ApiError> {
    let relying = relying_party(state)?;
    let credential: PublicKeyCredential = parse_object(credential, "credential")?;
    let pending = if is_challenge_id(challenge_id) {
        take(state, &sign_in_scope(challenge_id)).await?
    } else {
        None
    };
    let guess = match &pending {
        Some(Pending::SignIn { email, .. }) => throttle::reserve(state, email, &client.ip).await?,
        _ => throttle::reserve_address(state, &client.ip).await?,
    };
    let checked = accounts::settle_guess(state, guess, async {
        let Some(pending) = pending else { return Ok(None) };
        verify_assertion(state, relying, pending, &credential).await
    })
    .await?;
    let user = checked.ok_or_else(failed_sign_in)?;
    let token = accounts::open_session_for(state, client, &user).await?;
    Ok((user, token))
}

/// Checks `credential` against the ceremony `pending` and, when it holds, records the use:
/// the user it signs in, `None` when it does not hold.
async fn verify_assertion(
    state: &AppState,
    relying: &Passkeys,
    pending: Pending,
    credential: &PublicKeyCredential,
) -> Result<Option<User>, ApiError> {
    let (verified, user_id) = match pending {
        Pending::SignIn { user: Some(user_id), state: Some(auth), .. } => {
            (relying.webauthn.finish_passkey_authentication(credential, &auth), user_id)
        }
        Pending::SignIn { .. } | Pending::Register { .. } => return Ok(None),
        Pending::Discoverable { state: auth } => {
            let Ok((handle, credential_id)) =
                relying.webauthn.identify_discoverable_authentication(credential)
            else {
                return Ok(None);
            };
            let user_id = user_of_handle(handle);
            let mut conn = state.db.get().await?;
            let row = passkeys::find_by_credential_id(&mut conn, credential_id, false).await?;
            drop(conn);
            let Some(row) = row.filter(|row| row.user_id == user_id) else { return Ok(None) };
            let passkey = stored_passkey(&row)?;
            (
                relying.webauthn.finish_discoverable_authentication_v2(credential, auth, &passkey),
                user_id,
            )
        }
    };
    match verified {
        Ok(result) => record_use(state, &user_id, &result).await,
        Err(e) => {
            tracing::debug!(error = %e, "a passkey assertion did not verify");
            Ok(None)
        }
    }
}

/// Records a verified sign-in of `user_id`'s credential: its sign counter must have moved
/// forward from the stored one (read with the row locked, so concurrent sign-ins take turns),
/// and the credential is rewritten with the new counter and flags. The user, or `None` when the
/// credential is gone (deleted meanwhile) or the counter went back.
async fn record_use(
    state: &AppState,
    user_id: &str,
    result: &AuthenticationResult,
) -> Result<Option<User>, ApiError> {
    let mut conn = state.db.get().await?;
    conn.transaction::<_, ApiError, _>(async |conn| {
        let row = passkeys::find_by_credential_id(conn, result.cred_id().as_ref(), true).await?;
        let Some(row) = row.filter(|row| row.user_id == user_id) else { return Ok(None) };
        let stored = CredentialFacts::of(&row.passkey)?.counter;
        if (result.counter() > 0 || stored > 0) && result.counter() <= stored {
            tracing::warn!(
                passkey = %row.id,
                "a passkey's sign counter did not move forward: a cloned authenticator, or a \
                 replayed assertion; refused"
            );
            return Ok(None);
        }
        let mut passkey = stored_passkey(&row)?;
        passkey.update_credential(result);
        let rewritten = serde_json::to_value(&passkey).map_err(ApiError::internal)?;
        passkeys::record_use(conn, &row.id, &rewritten, Utc::now()).await?;
        Ok(users::find(conn, user_id).await?)
    })
    .await
}

/// Renames the user's passkey `id` (404 for none of theirs).
pub async fn rename(
    state: &AppState,
    user: &User,
    id: &str,
    name: &str,
) -> Result<StoredPasskey, ApiError> {
    relying_party(state)?;
    let name = name.trim();
    let mut check = Validator::new();
    check.name("name", name);
    check.finish()?;
    passkeys::rename(&mut *state.db.get().await?, &user.id, id, Some(name))
        .await?
        .ok_or_else(|| ApiError::not_found("passkey"))
}

/// Removes the user's passkey `id`: 404 for none of theirs, 409 when it is their last way to
/// sign in.
pub async fn remove(state: &AppState, user: &User, id: &str) -> Result<(), ApiError> {
    relying_party(state)?;
    accounts::remove_method(state, &user.id, accounts::Method::Passkey(id)).await
}

/// A page of the user's passkeys, newest first.
pub async fn list(
    state: &AppState,
    user: &User,
    after: Option<&crate::db::Cursor>,
    limit: i64,
) -> Result<Vec<StoredPasskey>, ApiError> {
    relying_party(state)?;
    Ok(passkeys::list(&mut *state.db.get().await?, &user.id, after, limit).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_handles_are_the_ids_uuids() {
        let id = ids::new_id(ids::USER);
        let handle = user_handle(&id).unwrap();
        assert_eq!(user_of_handle(handle), id);
        assert!(user_handle("usr_nothex").is_err());
    }

    #[test]
    fn challenge_ids_are_tokens() {
        assert!(is_challenge_id(&tokens::new_token()));
        assert!(!is_challenge_id("short"));
        assert!(!is_challenge_id(&"a:".repeat(22)[..43]));
    }
}
