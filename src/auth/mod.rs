//! Who is calling, and what they may do: the one place where requests are authenticated and
//! permissions are decided.
//!
//! [`Principal`] authenticates: a session token or API key as `Authorization: Bearer`, an API
//! key as `X-API-Key`, or the `relayit_session` cookie (whose unsafe requests must carry a
//! matching `Origin`, against CSRF). [`Access`] then places the principal in one organization
//! (from the path, the `Relayit-Organization` header, the session's active organization, or the
//! key's own) and answers permission questions with the contract's table: members read, admins
//! also write, owners also manage owners and the organization itself. An organization the
//! principal does not belong to is "not found", never "forbidden", so ids of other tenants leak
//! nothing.

pub mod accounts;
pub mod cache;
pub mod keys;
pub mod oauth;
pub mod passkeys;
pub mod password;
pub mod pending;
pub mod throttle;
pub mod tokens;
pub mod usage;

use std::net::IpAddr;

use actix_web::dev::Payload;
use actix_web::http::{Method, header};
use actix_web::{FromRequest, HttpRequest, web};
use chrono::{DateTime, Utc};
use futures::future::LocalBoxFuture;

use crate::config::ServerConfig;
use crate::db::api_keys::{self, ApiKey};
use crate::db::organizations::{self, Organization};
use crate::db::users::{self, Session, User};
use crate::error::ApiError;
use crate::state::AppState;

pub const SESSION_COOKIE: &str = "relayit_session";
pub const ORGANIZATION_HEADER: &str = "relayit-organization";

/// An authenticated caller.
#[derive(Debug, Clone)]
pub enum Principal {
    User { user: User, session: Session },
    Key(ApiKey),
}

impl Principal {
    pub fn user(&self) -> Result<(&User, &Session), ApiError> {
        match self {
            Principal::User { user, session } => Ok((user, session)),
            Principal::Key(_) => {
                Err(ApiError::forbidden("this route needs a signed-in user, not an API key"))
            }
        }
    }
}

impl FromRequest for Principal {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { authenticate(&req).await })
    }
}

fn state_of(req: &HttpRequest) -> Result<AppState, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .map(|s| s.get_ref().clone())
        .ok_or_else(|| ApiError::internal("AppState missing from the app"))
}

fn invalid() -> ApiError {
    ApiError::new(
        actix_web::http::StatusCode::UNAUTHORIZED,
        "unauthorized",
        "invalid or expired credentials",
    )
}

async fn authenticate(req: &HttpRequest) -> Result<Principal, ApiError> {
    let state = state_of(req)?;
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(|t| t.trim().to_owned());
    let api_key_header =
        req.headers().get("x-api-key").and_then(|v| v.to_str().ok()).map(|t| t.trim().to_owned());
    let (token, from_cookie) = match (bearer, api_key_header) {
        (Some(token), _) | (None, Some(token)) => (token, false),
        (None, None) => match req.cookie(SESSION_COOKIE) {
            Some(cookie) => (cookie.value().to_owned(), true),
            None => return Err(ApiError::unauthorized()),
        },
    };
    if token.is_empty() {
        return Err(ApiError::unauthorized());
    }
    if from_cookie && !is_safe(req.method()) {
        check_origin(req, &state)?;
    }
    let hash = tokens::hash(&token);
    if tokens::is_api_key(&token) {
        let key = match state.tenants.key(&hash) {
            Some(key) => key,
            None => {
                let since = state.tenants.generation();
                let mut conn = state.db.get().await?;
                let key =
                    api_keys::find_live_by_hash(&mut conn, &hash).await?.ok_or_else(invalid)?;
                state.tenants.insert_key(since, hash, key.clone());
                key
            }
        };
        state.key_usage.record(&key.id);
        return Ok(Principal::Key(key));
    }
    let mut conn = state.db.get().await?;
    let now = Utc::now();
    let lifetime = SessionLifetime::of(&state.config.auth);
    let (mut session, user) =
        users::find_session(&mut conn, &hash, now, lifetime.opened_after(now))
            .await?
            .ok_or_else(invalid)?;
    // Sliding expiry and last use, written at most once per `touch_every`, not per request.
    if now - session.last_seen_at > lifetime.touch_every() {
        let expires_at = lifetime.expiry(session.created_at, now);
        users::touch_session(&mut conn, &session.id, now, expires_at).await?;
        session.expires_at = expires_at;
        session.last_seen_at = now;
    }
    Ok(Principal::User { user, session })
}

/// How long sessions live: `auth.session_ttl` after their last use, and never longer than
/// `auth.session_max_lifetime` after they were opened.
#[derive(Debug, Clone, Copy)]
pub struct SessionLifetime {
    idle: chrono::Duration,
    max: chrono::Duration,
}

impl SessionLifetime {
    /// Precision of `lastSeenAt`, and how often a session in use is written at most.
    const TOUCH_EVERY: chrono::Duration = chrono::Duration::minutes(5);

    pub fn of(config: &crate::config::AuthConfig) -> SessionLifetime {
        // validated at start-up to be positive; the fallbacks are the defaults (30 days)
        let days = |d| chrono::Duration::days(d);
        SessionLifetime {
            idle: chrono::Duration::from_std(config.session_ttl).unwrap_or(days(30)),
            max: chrono::Duration::from_std(config.session_max_lifetime).unwrap_or(days(30)),
        }
    }

    /// When a session opened at `opened` and used at `now` expires.
    pub fn expiry(&self, opened: DateTime<Utc>, now: DateTime<Utc>) -> DateTime<Utc> {
        (now + self.idle).min(opened + self.max)
    }

    /// Sessions opened at or before this are over at `now`, however recently used.
    pub fn opened_after(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now - self.max
    }

    /// A session is written when it was last written longer ago than this: a tenth of the
    /// idle time, at most five minutes, so its expiry never runs out while it is used and its
    /// last use is known to within minutes.
    fn touch_every(&self) -> chrono::Duration {
        (self.idle / 10).min(Self::TOUCH_EVERY)
    }
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Cookie-authenticated writes, and the dashboard's forms, must come from our own origin: the
/// `Origin` header must match the configured public URL, or else the host the request was
/// addressed to.
pub fn check_origin(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    let refuse = || ApiError::forbidden("cross-site request refused: Origin does not match");
    let origin =
        req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok()).ok_or_else(refuse)?;
    if origin.eq_ignore_ascii_case(&own_origin(req, state)) { Ok(()) } else { Err(refuse()) }
}

/// Our own origin (`https://relayit.example.com`): the configured public URL's, or else the
/// one the request was addressed to.
pub fn own_origin(req: &HttpRequest, state: &AppState) -> String {
    match url::Url::parse(&state.config.server.public_url) {
        Ok(url) => url.origin().ascii_serialization(),
        Err(_) => {
            let info = req.connection_info();
            format!("{}://{}", info.scheme(), info.host())
        }
    }
}

/// Sign-in and sign-up take JSON only, and no cross-site request (login CSRF: a page elsewhere
/// signing the browser in to the attacker's account). A browser cannot send `application/json`
/// to another site without a CORS preflight, which RelayIt never grants, and it names the page
/// in `Origin`: a request with a foreign `Origin`, or with a session cookie and no `Origin` of
/// ours, is refused. Clients that are not browsers send neither and are not affected.
pub fn check_credentials_request(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    let json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(ApiError::for_status(actix_web::http::StatusCode::UNSUPPORTED_MEDIA_TYPE));
    }
    if req.headers().contains_key(header::ORIGIN) || req.cookie(SESSION_COOKIE).is_some() {
        check_origin(req, state)?;
    }
    Ok(())
}

/// A role within an organization, ordered by power.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Member,
    Admin,
    Owner,
}

crate::json_schema! {
    /// A role's name, as [`Role::parse`] reads it.
    RoleName => crate::domain::schema::one_of(
        &[Role::Owner, Role::Admin, Role::Member].map(Role::as_str),
    )
    .description(Some("`owner` > `admin` > `member`."))
}

impl Role {
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "member" => Some(Role::Member),
            "admin" => Some(Role::Admin),
            "owner" => Some(Role::Owner),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }
}

/// What a request wants to do, in the terms of the contract's permission table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Read projects, messages, webhooks, providers (without secrets), members, keys.
    Read,
    /// Write projects, keys, providers, webhooks, invitations and non-owner members.
    Write,
    /// Change owners, delete the organization.
    Own,
}

/// A principal placed in one organization.
#[derive(Debug, Clone)]
pub struct Access {
    pub org: Organization,
    pub principal: Principal,
    /// The member's role; for API keys, the role their scopes amount to.
    pub role: Role,
}

/// The id of the first organization `user_id` belongs to; 404 when none.
async fn first_organization(state: &AppState, user_id: &str) -> Result<String, ApiError> {
    let mut conn = state.db.get().await?;
    match organizations::first_for_user(&mut conn, user_id).await? {
        Some((org, _)) => Ok(org.id),
        None => Err(ApiError::not_found("organization")),
    }
}

impl Access {
    /// Places the principal in organization `id_or_slug`; 404 when it is not theirs.
    pub async fn to_org(
        state: &AppState,
        principal: Principal,
        id_or_slug: &str,
    ) -> Result<Access, ApiError> {
        let mut conn = state.db.get().await?;
        let not_found = || ApiError::not_found("organization");
        match &principal {
            Principal::User { user, .. } => {
                let (org, member) = organizations::find_membership(&mut conn, id_or_slug, &user.id)
                    .await?
                    .ok_or_else(not_found)?;
                let role =
                    Role::parse(&member.role).ok_or_else(|| ApiError::internal("bad role"))?;
                Ok(Access { org, principal, role })
            }
            Principal::Key(key) => {
                let org = organizations::find(&mut conn, id_or_slug)
                    .await?
                    .filter(|o| o.id == key.organization_id)
                    .ok_or_else(not_found)?;
                let role = if key.scopes.iter().any(|s| s == "manage") {
                    Role::Admin
                } else {
                    Role::Member
                };
                Ok(Access { org, principal, role })
            }
        }
    }

    /// The organization a request addresses without naming it in the path.
    async fn resolve(req: &HttpRequest) -> Result<Access, ApiError> {
        let state = state_of(req)?;
        let principal = authenticate(req).await?;
        let header = req
            .headers()
            .get(ORGANIZATION_HEADER)
            .map(|v| v.to_str().map(str::to_owned))
            .transpose()
            .map_err(|_| ApiError::invalid_field("Relayit-Organization", "is not valid text"))?;
        let from_session = header.is_none()
            && matches!(&principal, Principal::User { session, .. }
                if session.active_organization_id.is_some());
        let target = match (&principal, header) {
            (_, Some(org)) => org,
            (Principal::Key(key), None) => key.organization_id.clone(),
            (Principal::User { session, user }, None) => match &session.active_organization_id {
                Some(org) => org.clone(),
                None => first_organization(&state, &user.id).await?,
            },
        };
        match Access::to_org(&state, principal.clone(), &target).await {
            // the session's organization, which they have left (or were removed from) since:
            // their first one instead
            Err(e) if from_session && e.code() == "not_found" => {
                let first = first_organization(&state, &principal.user()?.0.id).await?;
                Access::to_org(&state, principal, &first).await
            }
            placed => placed,
        }
    }

    /// Whether the contract's permission table allows `action`; 403 when it does not.
    pub fn require(&self, action: Action) -> Result<(), ApiError> {
        if let Principal::Key(key) = &self.principal {
            let has = |scope: &str| key.scopes.iter().any(|s| s == scope);
            let allowed = match action {
                Action::Read => has("read") || has("manage"),
                Action::Write => has("manage"),
                Action::Own => false,
            };
            return if allowed {
                Ok(())
            } else {
                Err(ApiError::forbidden(format!(
                    "this API key lacks the scope for this request ({})",
                    match action {
                        Action::Read => "read or manage",
                        _ => "manage, by a signed-in owner",
                    }
                )))
            };
        }
        let needed = match action {
            Action::Read => Role::Member,
            Action::Write => Role::Admin,
            Action::Own => Role::Owner,
        };
        if self.role >= needed {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!("this needs the {} role", needed.as_str())))
        }
    }

    /// The project an API key is bound to, if any: it sees nothing of other projects.
    pub fn project_scope(&self) -> Option<&str> {
        match &self.principal {
            Principal::Key(key) => key.project_id.as_deref(),
            Principal::User { .. } => None,
        }
    }

    /// Organization-wide resources (members, invitations, keys, the organization itself) are
    /// out of reach of project-bound keys.
    pub fn require_org_wide(&self) -> Result<(), ApiError> {
        match self.project_scope() {
            Some(_) => Err(ApiError::forbidden("this API key is bound to one project")),
            None => Ok(()),
        }
    }

    /// The signed-in user behind this access, if it is not an API key.
    pub fn user(&self) -> Option<&User> {
        match &self.principal {
            Principal::User { user, .. } => Some(user),
            Principal::Key(_) => None,
        }
    }
}

impl FromRequest for Access {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { Access::resolve(&req).await })
    }
}

/// The client's address, for sign-in throttling and sessions: the peer; or, with
/// `server.behind_proxy`, what `X-Forwarded-For` says (see [`forwarded_client`]), the peer
/// when it says nothing usable.
pub fn client_ip(req: &HttpRequest, server: &ServerConfig) -> String {
    let peer = req.peer_addr().map(|a| a.ip());
    let forwarded = server.behind_proxy.then(|| {
        let hops: Vec<&str> = req
            .headers()
            .get_all("x-forwarded-for")
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect();
        forwarded_client(&hops, &server.trusted_proxies)
    });
    match forwarded.flatten().or(peer) {
        Some(ip) => ip.to_string(),
        None => "unknown".to_owned(),
    }
}

/// The client among the `X-Forwarded-For` hops: each proxy appends the address it received
/// the request from, so only the right end is trustworthy. Read from the right, the first
/// address outside the `trusted` proxies' networks is the client's (all trusted: the leftmost).
/// `None` when the header is missing or a hop we must read is not an address.
pub fn forwarded_client(hops: &[&str], trusted: &[ipnet::IpNet]) -> Option<IpAddr> {
    let mut client = None;
    for hop in hops.iter().rev() {
        let ip = parse_hop(hop.trim())?;
        client = Some(ip);
        if !trusted.iter().any(|net| net.contains(&ip)) {
            break;
        }
    }
    client
}

/// `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1` or `[2001:db8::1]:5678`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>().ok().or_else(|| hop.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(header: &str, trusted: &[&str]) -> Option<String> {
        let hops: Vec<&str> = header.split(',').collect();
        let trusted: Vec<ipnet::IpNet> = trusted.iter().map(|t| t.parse().unwrap()).collect();
        forwarded_client(&hops, &trusted).map(|ip| ip.to_string())
    }

    #[test]
    fn the_client_is_the_rightmost_address_outside_the_trusted_proxies() {
        // what the client wrote itself, on the left, is never believed
        assert_eq!(client("6.6.6.6, 203.0.113.7", &[]).as_deref(), Some("203.0.113.7"));
        assert_eq!(
            client("6.6.6.6, 203.0.113.7, 10.1.2.3", &["10.0.0.0/8"]).as_deref(),
            Some("203.0.113.7")
        );
        assert_eq!(
            client(
                "203.0.113.7:4711, [2001:db8::1]:80, 10.0.0.9",
                &["10.0.0.0/8", "2001:db8::/32"]
            )
            .as_deref(),
            Some("203.0.113.7")
        );
        // every hop a trusted proxy: the leftmost
        assert_eq!(client("10.0.0.1, 10.0.0.2", &["10.0.0.0/8"]).as_deref(), Some("10.0.0.1"));
        // a hop that must be read and is not an address: none (the peer is used)
        assert_eq!(client("203.0.113.7, unknown", &[]), None);
        assert_eq!(client("", &[]), None);
    }
}
