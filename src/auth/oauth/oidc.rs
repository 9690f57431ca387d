//! OpenID Connect providers (`kind = "oidc"`, and Google): discovery, cached with the
//! provider's signing keys so that a sign-in does not fetch them again, the authorization URL,
//! the code exchange and the ID token's checks.
//!
//! The ID token's algorithm is one of [`ALLOWED_ALGS`] whatever the provider advertises: never
//! `none`, and never an HMAC one, whose key would be our client secret (shared with the
//! provider, and weaker than the provider's own key).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreClientAuthMethod, CoreGenderClaim,
    CoreJwsSigningAlgorithm, CoreProviderMetadata,
};
use openidconnect::{
    AuthType, AuthUrl, AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret,
    CsrfToken, EmptyAdditionalClaims, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, RequestTokenError, Scope, SignatureVerificationError,
    TokenResponse, TokenUrl, UserInfoClaims, UserInfoUrl,
};

use super::{Identity, refuse, usable_email};
use crate::config::OAuthProviderConfig;
use crate::error::ApiError;

/// The ID token signature algorithms accepted.
const ALLOWED_ALGS: [CoreJwsSigningAlgorithm; 9] = [
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::RsaSsaPssSha384,
    CoreJwsSigningAlgorithm::RsaSsaPssSha512,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::EcdsaP384Sha384,
    CoreJwsSigningAlgorithm::EdDsa,
];

/// What discovery found about each provider (its endpoints and keys), by provider id, for a
/// while.
pub struct Discovery {
    ttl: Duration,
    found: Mutex<HashMap<String, (Instant, Arc<CoreProviderMetadata>)>>,
}

impl Discovery {
    pub fn new(ttl: Duration) -> Discovery {
        Discovery { ttl, found: Mutex::default() }
    }

    /// The provider's metadata with its keys, with the configured endpoint overrides: from
    /// memory when discovered less than the TTL ago. 503 when the provider cannot be reached
    /// or answers nonsense.
    pub async fn get(
        &self,
        http: &reqwest::Client,
        provider: &OAuthProviderConfig,
    ) -> Result<Arc<CoreProviderMetadata>, ApiError> {
        if let Some(found) = self.cached(&provider.id) {
            return Ok(found);
        }
        let unavailable = |reason: String| {
            tracing::warn!(provider = %provider.id, %reason, "OpenID Connect discovery failed");
            ApiError::unavailable(format!(
                "{} cannot be reached; try again shortly",
                provider.display_name()
            ))
        };
        let issuer = IssuerUrl::new(provider.issuer_url().unwrap_or_default().to_owned())
            .map_err(|e| unavailable(e.to_string()))?;
        let mut metadata = CoreProviderMetadata::discover_async(issuer, http)
            .await
            .map_err(|e| unavailable(error_chain(&e)))?;
        if let Some(url) = &provider.authorization_url {
            metadata = metadata
                .set_authorization_endpoint(AuthUrl::new(url.clone()).map_err(ApiError::internal)?);
        }
        if let Some(url) = &provider.token_url {
            let url = TokenUrl::new(url.clone()).map_err(ApiError::internal)?;
            metadata = metadata.set_token_endpoint(Some(url));
        }
        if let Some(url) = &provider.userinfo_url {
            let url = UserInfoUrl::new(url.clone()).map_err(ApiError::internal)?;
            metadata = metadata.set_userinfo_endpoint(Some(url));
        }
        let metadata = Arc::new(metadata);
        if let Ok(mut found) = self.found.lock() {
            found.insert(provider.id.clone(), (Instant::now(), metadata.clone()));
        }
        Ok(metadata)
    }

    fn cached(&self, id: &str) -> Option<Arc<CoreProviderMetadata>> {
        let found = self.found.lock().ok()?;
        let (at, metadata) = found.get(id)?;
        (at.elapsed() < self.ttl).then(|| metadata.clone())
    }

    /// Forgets the provider's metadata: its keys may have rotated.
    fn forget(&self, id: &str) {
        if let Ok(mut found) = self.found.lock() {
            found.remove(id);
        }
    }
}

type Client = CoreClient<
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

fn client(
    provider: &OAuthProviderConfig,
    secret: &str,
    metadata: &CoreProviderMetadata,
    redirect_uri: &str,
) -> Result<Client, ApiError> {
    let redirect = RedirectUrl::new(redirect_uri.to_owned()).map_err(ApiError::internal)?;
    // client_secret_basic unless the provider says it takes only client_secret_post
    let methods = metadata.token_endpoint_auth_methods_supported();
    let post_only = methods.is_some_and(|m| {
        m.contains(&CoreClientAuthMethod::ClientSecretPost)
            && !m.contains(&CoreClientAuthMethod::ClientSecretBasic)
    });
    let client = CoreClient::from_provider_metadata(
        metadata.clone(),
        ClientId::new(provider.client_id.clone()),
        Some(ClientSecret::new(secret.to_owned())),
    )
    .set_redirect_uri(redirect)
    .set_auth_type(if post_only { AuthType::RequestBody } else { AuthType::BasicAuth });
    Ok(client)
}

/// The provider's authorization URL for this sign-in.
pub fn authorize_url(
    provider: &OAuthProviderConfig,
    secret: &str,
    metadata: &CoreProviderMetadata,
    redirect_uri: &str,
    csrf: &str,
    nonce: &str,
    challenge: PkceCodeChallenge,
) -> Result<String, ApiError> {
    let client = client(provider, secret, metadata, redirect_uri)?;
    let (csrf, nonce) = (csrf.to_owned(), nonce.to_owned());
    let mut request = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            move || CsrfToken::new(csrf),
            move || Nonce::new(nonce),
        )
        .set_pkce_challenge(challenge);
    // `openid` is always asked for
    for scope in provider.scopes().into_iter().filter(|s| s != "openid") {
        request = request.add_scope(Scope::new(scope));
    }
    let (url, _, _) = request.url();
    Ok(url.to_string())
}

/// What the callback brings to the token request.
pub struct Exchange<'a> {
    pub redirect_uri: &'a str,
    pub code: String,
    pub verifier: String,
    pub nonce: String,
}

/// Exchanges the code and checks the ID token: who signed in.
pub async fn identify(
    http: &reqwest::Client,
    discovery: &Discovery,
    provider: &OAuthProviderConfig,
    secret: &str,
    exchange: Exchange<'_>,
) -> Result<Identity, ApiError> {
    let id = provider.id.as_str();
    let metadata = discovery.get(http, provider).await?;
    let client = client(provider, secret, &metadata, exchange.redirect_uri)?;
    let response = client
        .exchange_code(AuthorizationCode::new(exchange.code))
        .map_err(|e| refuse(id, e, "the provider has no token endpoint"))?
        .set_pkce_verifier(PkceCodeVerifier::new(exchange.verifier))
        .request_async(http)
        .await
        .map_err(|e| {
            refuse(id, describe_token_error(&e), "the provider did not accept the sign-in")
        })?;
    let id_token = response.id_token().ok_or_else(|| {
        refuse(id, "no ID token in the token response", "the provider sent no ID token")
    })?;
    let verifier = client.id_token_verifier().set_allowed_algs(ALLOWED_ALGS);
    let claims = id_token.claims(&verifier, &Nonce::new(exchange.nonce)).map_err(|e| {
        if matches!(
            e,
            ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey
            )
        ) {
            // signed with a key we do not know yet: fetch the keys again next time
            discovery.forget(id);
        }
        refuse(id, error_chain(&e), "the provider's ID token did not pass its checks")
    })?;
    let mut identity = Identity {
        subject: claims.subject().to_string(),
        email: usable_email(claims.email().map(|e| e.as_str())),
        email_verified: claims.email_verified().unwrap_or(false),
        name: claims.name().and_then(|n| n.get(None)).map(|n| n.to_string()),
    };
    if identity.email.is_none() {
        // some providers put the email in the userinfo answer only
        let request =
            client.user_info(response.access_token().clone(), Some(claims.subject().clone()));
        if let Ok(request) = request {
            let info: Result<UserInfoClaims<EmptyAdditionalClaims, CoreGenderClaim>, _> =
                request.request_async(http).await;
            match info {
                Ok(info) => {
                    identity.email = usable_email(info.email().map(|e| e.as_str()));
                    identity.email_verified = info.email_verified().unwrap_or(false);
                    if identity.name.is_none() {
                        identity.name =
                            info.name().and_then(|n| n.get(None)).map(|n| n.to_string());
                    }
                }
                Err(e) => {
                    tracing::info!(provider = id, reason = %error_chain(&e), "userinfo request failed")
                }
            }
        }
    }
    Ok(identity)
}

/// Why a token request failed, without the response body (which may carry tokens).
fn describe_token_error<RE: std::error::Error + 'static, T: oauth2::ErrorResponse + 'static>(
    error: &RequestTokenError<RE, T>,
) -> String {
    match error {
        RequestTokenError::ServerResponse(e) => format!("token endpoint refused: {e}"),
        RequestTokenError::Request(e) => format!("token request failed: {}", error_chain(e)),
        RequestTokenError::Parse(e, _) => {
            format!("unparsable token response (at `{}`)", e.path())
        }
        RequestTokenError::Other(e) => format!("token request failed: {e}"),
    }
}

/// An error and its sources, on one line.
pub(super) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}
