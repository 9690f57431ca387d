//! GitHub (and GitHub Enterprise): OAuth 2 without OpenID Connect, so who signed in comes from
//! its REST API: `GET /user` for the numeric id (the subject: logins can be renamed) and the
//! name, `GET /user/emails` for the primary email, used only when GitHub has verified it.

use oauth2::basic::BasicClient;
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet,
    EndpointSet, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse, TokenUrl,
};
use serde::Deserialize;

use super::oidc::error_chain;
use super::{Identity, refuse, usable_email};
use crate::config::{
    GITHUB_API_URL, GITHUB_AUTHORIZATION_URL, GITHUB_TOKEN_URL, OAuthProviderConfig,
};
use crate::error::ApiError;

type Client = BasicClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

fn client(
    provider: &OAuthProviderConfig,
    secret: &str,
    redirect_uri: &str,
) -> Result<Client, ApiError> {
    let auth = provider.authorization_url.as_deref().unwrap_or(GITHUB_AUTHORIZATION_URL);
    let token = provider.token_url.as_deref().unwrap_or(GITHUB_TOKEN_URL);
    Ok(BasicClient::new(ClientId::new(provider.client_id.clone()))
        .set_client_secret(ClientSecret::new(secret.to_owned()))
        .set_auth_uri(AuthUrl::new(auth.to_owned()).map_err(ApiError::internal)?)
        .set_token_uri(TokenUrl::new(token.to_owned()).map_err(ApiError::internal)?)
        .set_redirect_uri(RedirectUrl::new(redirect_uri.to_owned()).map_err(ApiError::internal)?)
        // GitHub documents the client id and secret as form fields
        .set_auth_type(AuthType::RequestBody))
}

/// GitHub's authorization URL for this sign-in.
pub fn authorize_url(
    provider: &OAuthProviderConfig,
    secret: &str,
    redirect_uri: &str,
    csrf: &str,
    challenge: PkceCodeChallenge,
) -> Result<String, ApiError> {
    let csrf = csrf.to_owned();
    let (url, _) = client(provider, secret, redirect_uri)?
        .authorize_url(move || CsrfToken::new(csrf))
        .add_scopes(provider.scopes().into_iter().map(Scope::new))
        .set_pkce_challenge(challenge)
        .url();
    Ok(url.to_string())
}

#[derive(Deserialize)]
struct GithubUser {
    id: u64,
    name: Option<String>,
    login: Option<String>,
}

#[derive(Deserialize)]
struct GithubEmail {
    email: String,
    primary: bool,
    verified: bool,
}

/// Exchanges the code and asks GitHub's API who signed in.
pub async fn identify(
    http: &reqwest::Client,
    provider: &OAuthProviderConfig,
    secret: &str,
    redirect_uri: &str,
    code: String,
    verifier: String,
) -> Result<Identity, ApiError> {
    let id = provider.id.as_str();
    let response = client(provider, secret, redirect_uri)?
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(PkceCodeVerifier::new(verifier))
        .request_async(http)
        .await
        .map_err(|e| {
            let reason = match &e {
                oauth2::RequestTokenError::ServerResponse(e) => {
                    format!("token endpoint refused: {e}")
                }
                oauth2::RequestTokenError::Parse(e, _) => {
                    // GitHub answers a bad code with 200 and an error object
                    format!("unparsable token response (at `{}`)", e.path())
                }
                other => format!("token request failed: {}", error_chain(other)),
            };
            refuse(id, reason, "GitHub did not accept the sign-in")
        })?;
    let token = response.access_token().secret();
    let api = provider.api_url.as_deref().unwrap_or(GITHUB_API_URL).trim_end_matches('/');
    let user: GithubUser = get(http, id, &format!("{api}/user"), token).await?;
    let emails: Vec<GithubEmail> = get(http, id, &format!("{api}/user/emails"), token).await?;
    let primary = emails.iter().find(|e| e.primary && e.verified);
    Ok(Identity {
        subject: user.id.to_string(),
        email: primary.and_then(|e| usable_email(Some(&e.email))),
        // only a verified email is ever used
        email_verified: primary.is_some(),
        name: user.name.filter(|n| !n.trim().is_empty()).or(user.login),
    })
}

async fn get<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    id: &str,
    url: &str,
    token: &str,
) -> Result<T, ApiError> {
    let failed = |reason: String| refuse(id, reason, "GitHub did not say who you are");
    let response = http
        .get(url)
        .bearer_auth(token)
        .header(reqwest::header::ACCEPT, "application/vnd.github+json")
        .header("X-GitHub-Api-Version", "2022-11-28")
        .send()
        .await
        .map_err(|e| failed(format!("GET {url}: {}", error_chain(&e))))?;
    let status = response.status();
    if !status.is_success() {
        return Err(failed(format!("GET {url}: status {status}")));
    }
    response.json().await.map_err(|e| failed(format!("GET {url}: {}", error_chain(&e))))
}
