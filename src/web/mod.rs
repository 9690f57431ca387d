//! The dashboard: server-rendered pages for people, served by every process with the `api`
//! role beside the JSON API (`crate::api`).
//!
//! Pages are maud templates (compiled with the binary, and everything interpolated is escaped),
//! styled by one stylesheet, with one small script for what HTML cannot do (copying a new
//! key) (`assets`). They work through the same rules as the API, never a
//! second copy of them: the session and organization come from `Access`, signing up and in
//! from `auth::accounts`, data from the queries of `crate::db`. Writes are HTML forms, taken
//! only from our own origin (the `Origin` check of cookie-authenticated requests); the one
//! exception is the one-click unsubscribe link of emails (`unsubscribe`), whose signed token is
//! its only credential and which mail providers post to from their servers. Every page
//! carries a Content-Security-Policy that allows nothing from elsewhere and no inline script,
//! and may not be framed.

pub mod account;
pub mod assets;
pub mod auth;
pub mod invitations;
pub mod keys;
pub mod members;
pub mod messages;
pub mod overview;
pub mod projects;
pub mod providers;
pub mod sign_in_methods;
pub mod suppressions;
pub mod templates;
pub mod unsubscribe;
pub mod webhooks;

use actix_web::dev::ServiceResponse;
use actix_web::http::{Method, StatusCode, header};
use actix_web::{HttpResponse, ResponseError, web};
use maud::{DOCTYPE, Markup, html};

use crate::auth::{Access, Action};
use crate::error::ApiError;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.configure(assets::routes)
        .configure(account::routes)
        .configure(auth::routes)
        .configure(overview::routes)
        .configure(projects::routes)
        .configure(keys::routes)
        .configure(messages::routes)
        .configure(members::routes)
        .configure(invitations::routes)
        .configure(providers::routes)
        .configure(sign_in_methods::routes)
        .configure(webhooks::routes)
        .configure(templates::routes)
        .configure(suppressions::routes)
        .configure(unsubscribe::routes);
}

/// Nothing from elsewhere, no inline script or style, no framing.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; \
    frame-ancestors 'none'; base-uri 'none'";

/// Whether the client prefers an HTML page to JSON: a browser (following a redirect, or
/// posting a form), not a program.
pub fn prefers_html(req: &actix_web::HttpRequest) -> bool {
    let accept = req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let html = accept.find("text/html");
    let json = accept.find("application/json");
    match (html, json) {
        (Some(h), Some(j)) => h < j,
        (Some(_), None) => true,
        _ => false,
    }
}

/// A page answer, with the headers every page carries.
pub fn page(status: StatusCode, markup: Markup) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::REFERRER_POLICY, "same-origin"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(markup.into_string())
}

/// A 303 to `location`: after a form is taken, the browser loads the next page with a GET.
pub fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther().insert_header((header::LOCATION, location)).finish()
}

/// Refuses the first of a form's or query's `fields` (name, value) that holds U+0000, by its
/// name, as the JSON API refuses such text: PostgreSQL stores none, and would fail the request.
pub fn refuse_nul<'a>(
    fields: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<(), ApiError> {
    match fields.into_iter().find(|(_, value)| value.contains('\0')) {
        Some((name, _)) => Err(ApiError::invalid_field(name, crate::domain::validate::NUL_REFUSED)),
        None => Ok(()),
    }
}

/// What a confirmation page asks before a change that cannot be undone.
pub struct Confirm<'a> {
    /// The page's title, and the question its heading asks.
    pub title: &'a str,
    pub question: &'a str,
    /// What the change does, naming what it changes.
    pub consequence: Markup,
    /// Where the button posts, and what it says.
    pub action: String,
    pub button: String,
    /// Where "Keep it" leads.
    pub back: &'a str,
}

/// The page asking to confirm a deletion or removal: its consequence, a button that posts
/// the change, and a way back without it.
pub fn confirm(viewer: &Viewer<'_>, ask: Confirm<'_>) -> HttpResponse {
    let body = html! {
        main.narrow {
            h1 { (ask.question) }
            p { (ask.consequence) }
            form method="post" action=(ask.action) {
                button.danger type="submit" { (ask.button) }
            }
            p { a href=(ask.back) { "Keep it" } }
        }
    };
    page(StatusCode::OK, layout(ask.title, Some(viewer), body))
}

/// Who is looking, for the page's header.
pub struct Viewer<'a> {
    pub name: &'a str,
    pub organization: &'a str,
    pub role: &'a str,
}

/// The person looking, who may read their active organization: for the page's header.
pub fn reader(access: &Access) -> Result<Viewer<'_>, ApiError> {
    access.require(Action::Read)?;
    let user = access.user().ok_or_else(|| ApiError::forbidden("the dashboard is for people"))?;
    Ok(Viewer { name: &user.name, organization: &access.org.name, role: access.role.as_str() })
}

/// The frame of every page: `title`, the header (with the viewer's navigation when signed
/// in), and `body`.
pub fn layout(title: &str, viewer: Option<&Viewer<'_>>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · RelayIt" }
                link rel="stylesheet" href=(assets::STYLESHEET.path());
                script src=(assets::SCRIPT.path()) defer {}
            }
            body {
                header.top {
                    a.brand href="/" { "RelayIt" }
                    @if let Some(viewer) = viewer {
                        nav {
                            a href="/" { "Overview" }
                            a href="/projects" { "Projects" }
                            a href="/keys" { "API keys" }
                            a href="/providers" { "Providers" }
                            a href="/members" { "Members" }
                        }
                        span.muted { (viewer.organization) " · " (viewer.name) " (" (viewer.role) ")" }
                        a href="/account/sign-in-methods" { "Sign-in methods" }
                        a href="/account/sessions" { "Sessions" }
                        form method="post" action="/sign-out" {
                            button.link type="submit" { "Sign out" }
                        }
                    }
                }
                (body)
            }
        }
    }
}

/// An API rule refused the request: the page says why, with the status the API would give.
/// Not signed in (or the session ended): to the sign-in page.
#[derive(Debug)]
pub struct WebError(ApiError);

impl From<ApiError> for WebError {
    fn from(error: ApiError) -> Self {
        WebError(error)
    }
}

impl std::fmt::Display for WebError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl ResponseError for WebError {
    fn status_code(&self) -> StatusCode {
        self.0.status_code()
    }

    fn error_response(&self) -> HttpResponse {
        if self.status_code() == StatusCode::UNAUTHORIZED {
            let mut response = see_other("/sign-in");
            response.extensions_mut().insert(SignInFirst);
            return response;
        }
        let body = html! {
            main.narrow {
                h1 { (self.status_code().canonical_reason().unwrap_or("Error")) }
                p.error { (self.0.message()) }
                p { a href="/" { "Back to the overview" } }
            }
        };
        page(self.status_code(), layout("Error", None, body))
    }
}

/// The page for an address that names nothing.
pub fn not_found() -> HttpResponse {
    WebError(ApiError::not_found("page")).error_response()
}

/// Marks the 303 to the sign-in page of someone not signed in, for [`back_after_sign_in`].
#[derive(Debug, Clone, Copy)]
struct SignInFirst;

/// Someone not signed in who asked for a page is sent to sign in with it as `next`, to come
/// back to it afterwards (the error above cannot know which page was asked for; this sees the
/// request).
pub fn back_after_sign_in<B>(mut response: ServiceResponse<B>) -> ServiceResponse<B> {
    let marked = response.response().extensions().get::<SignInFirst>().is_some();
    if marked && response.request().method() == Method::GET {
        let asked = response.request().uri().path_and_query().map_or("/", |p| p.as_str());
        let location = auth::with_next("/sign-in", asked);
        if let Ok(location) = header::HeaderValue::from_str(&location) {
            response.headers_mut().insert(header::LOCATION, location);
        }
    }
    response
}

/// An error's message and its fields' messages, for the top of a form.
pub fn form_error(error: &ApiError) -> Markup {
    html! {
        div.error role="alert" {
            (error.message())
            @if !error.details().is_empty() {
                ul {
                    @for detail in error.details() {
                        li { (detail.field) ": " (detail.message) }
                    }
                }
            }
        }
    }
}
