//! The one-click unsubscribe link of a project's emails (`/u/{token}`, `crate::unsubscribe`),
//! for the recipient and for their mail provider.
//!
//! - `POST` with `List-Unsubscribe=One-Click` (RFC 8058: what a mail client sends, from its
//!   own servers, when the person clicks "unsubscribe" beside the message) adds the address to
//!   the project's suppression list and answers 200; again, 200 and nothing more is added.
//! - `GET` (the link opened in a browser) shows a page with a button that makes that POST. It
//!   never unsubscribes by itself: scanners and previews follow links in mail.
//!
//! The token is the only credential: no session, cookie or API key. Unlike the dashboard's
//! forms, the POST is taken from anywhere, without an `Origin` check (it is not authenticated
//! by a cookie, and mail providers post from their servers); what it may do is bound to the one
//! address and project the token names. A token that is not this server's is 400, and one whose
//! project is gone 404, never 500: as an HTML page when the request prefers one, else the
//! API's error body.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use maud::{Markup, html};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;
use crate::unsubscribe::{self as links, Link, Signer, Unsubscribed};
use crate::web::{layout, page};

/// A one-click body is 26 bytes; a multipart one a few hundred. Anything larger is not one.
const MAX_BODY_BYTES: usize = 8 * 1024;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/u/{token}")
            .app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
            .get(confirm_page)
            .post(one_click),
    );
}

/// RFC 8058's body, as a form sends it.
#[derive(Debug, Deserialize, ToSchema)]
pub struct OneClickForm {
    #[serde(rename = "List-Unsubscribe")]
    #[schema(pattern = "^One-Click$", example = "One-Click")]
    pub list_unsubscribe: String,
}

/// The answer to a one-click POST that does not ask for a page.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UnsubscribedView {
    /// The address that gets no more email from the project (as compared: without a display
    /// name, lower-cased).
    #[schema(example = "alice@example.com")]
    pub address: String,
    /// `true` when this request put it on the suppression list; `false` when it was on it
    /// already.
    pub added: bool,
}

/// The link's page: which address it unsubscribes, and a button that does (a form POSTing
/// `List-Unsubscribe=One-Click` to the same address). It changes nothing by itself.
#[utoipa::path(get, path = "/u/{token}", tag = "unsubscribe",
    params(("token" = String, Path,
        description = "The signed token of the link, as the email's `List-Unsubscribe` \
            header carries it.")),
    responses(
        (status = 200, description = "the page, with the button (or saying the address is \
            unsubscribed already)", content_type = "text/html", body = String),
        (status = 400, description = "`validation_failed` naming `token`: not a link of this \
            server (cut short, altered, forged, or signed with a key it no longer holds). \
            `text/html` when the request prefers it.",
            content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 404, description = "`not_found`: the project of the link no longer exists. \
            `text/html` when the request prefers it.",
            content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 503, description = "`unavailable`: PostgreSQL cannot be reached; retry.",
            content((ErrorBody = "application/json"), (String = "text/html")))))]
pub async fn confirm_page(
    req: HttpRequest,
    state: web::Data<AppState>,
    token: web::Path<String>,
) -> HttpResponse {
    let shown = async {
        let link = verified(&state, &token)?;
        let mut conn = state.db.get().await?;
        if crate::db::projects::organization_of(&mut conn, &link.project_id).await?.is_none() {
            return Err(project_gone());
        }
        let listed = links::listed(&mut conn, &link).await?;
        Ok((link, listed))
    };
    match shown.await {
        Ok((link, true)) => page(StatusCode::OK, unsubscribed_page(&link.address)),
        Ok((link, false)) => {
            let action = format!("{}{}", links::PATH_PREFIX, token.as_str());
            let body = html! {
                main.narrow {
                    h1 { "Unsubscribe" }
                    div.card {
                        p { "Stop the emails of this sender to " strong { (link.address) } "?" }
                        form method="post" action=(action) {
                            input type="hidden" name="List-Unsubscribe" value="One-Click";
                            button type="submit" { "Unsubscribe" }
                        }
                    }
                }
            };
            page(StatusCode::OK, layout("Unsubscribe", None, body))
        }
        Err(error) => refused(&req, &error),
    }
}

/// One-click unsubscribe (RFC 8058), as mail providers send it and as the link's page does:
/// the address of the link gets no more email from its project. Idempotent.
#[utoipa::path(post, path = "/u/{token}", tag = "unsubscribe",
    params(("token" = String, Path,
        description = "The signed token of the link, as the email's `List-Unsubscribe` \
            header carries it.")),
    request_body(description = "`List-Unsubscribe=One-Click`, form-encoded or as \
        `multipart/form-data` (RFC 8058).",
        content((OneClickForm = "application/x-www-form-urlencoded"),
            (OneClickForm = "multipart/form-data"))),
    responses(
        (status = 200, description = "the address is on the project's suppression list \
            (reason `unsubscribe`, naming the message), now or already. A page saying so when \
            the request prefers `text/html`.",
            content((UnsubscribedView = "application/json"), (String = "text/html"))),
        (status = 400, description = "`validation_failed` naming `token` (not a link of this \
            server: cut short, altered, forged, or signed with a key it no longer holds) or \
            `List-Unsubscribe` (the body is not `List-Unsubscribe=One-Click`). `text/html` when \
            the request prefers it.",
            content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 404, description = "`not_found`: the project of the link no longer exists. \
            `text/html` when the request prefers it.",
            content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 413, description = "`payload_too_large`: a body over 8 KiB, which no \
            one-click request is.", body = ErrorBody),
        (status = 503, description = "`unavailable`: PostgreSQL cannot be reached; nothing \
            was changed. Retry.",
            content((ErrorBody = "application/json"), (String = "text/html")))))]
pub async fn one_click(
    req: HttpRequest,
    state: web::Data<AppState>,
    token: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let done = async {
        let link = verified(&state, &token)?;
        let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
        if !says_one_click(content_type, &body) {
            return Err(ApiError::invalid_field(
                "List-Unsubscribe",
                "the body must be List-Unsubscribe=One-Click (RFC 8058), form-encoded or \
                 multipart/form-data",
            ));
        }
        let mut conn = state.db.get().await?;
        let added = match links::unsubscribe(&mut conn, &link).await? {
            Unsubscribed::Added(entry) => {
                tracing::info!(project = %link.project_id, message = %link.message_id,
                    suppression = %entry, "one-click unsubscribe");
                true
            }
            Unsubscribed::Listed => false,
            Unsubscribed::ProjectGone => return Err(project_gone()),
        };
        Ok((link, added))
    };
    match done.await {
        Ok((link, _)) if crate::web::prefers_html(&req) => {
            page(StatusCode::OK, unsubscribed_page(&link.address))
        }
        Ok((link, added)) => HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(UnsubscribedView { address: link.address, added }),
        Err(error) => refused(&req, &error),
    }
}

/// What `token` names, if this server signed it.
fn verified(state: &AppState, token: &str) -> Result<Link, ApiError> {
    Signer::new(&state.keys).verify(token).map_err(|why| {
        ApiError::invalid_field("token", format!("this unsubscribe link does not work: {why}"))
    })
}

fn project_gone() -> ApiError {
    ApiError::not_found("project")
        .with_message("this unsubscribe link's sender no longer exists: it sends nothing more")
}

fn unsubscribed_page(address: &str) -> Markup {
    let body = html! {
        main.narrow {
            h1 { "You are unsubscribed" }
            div.card {
                p { strong { (address) } " gets no more emails from this sender." }
            }
        }
    };
    layout("Unsubscribed", None, body)
}

/// `error` as a page for a browser, else as the API's error body.
fn refused(req: &HttpRequest, error: &ApiError) -> HttpResponse {
    if !crate::web::prefers_html(req) {
        return error.error_response();
    }
    let body = html! {
        main.narrow {
            h1 { "This link does not work" }
            p.error role="alert" { (error.message()) }
        }
    };
    page(error.status_code(), layout("Unsubscribe", None, body))
}

/// Whether `body` is RFC 8058's `List-Unsubscribe=One-Click`: as `multipart/form-data`, which
/// the RFC has mail clients send, or form-encoded, which it allows and which a form (this
/// link's page) sends. A body of another or no type is read as form-encoded.
fn says_one_click(content_type: Option<&str>, body: &[u8]) -> bool {
    let mut parameters = content_type.unwrap_or_default().split(';');
    let essence = parameters.next().unwrap_or_default().trim();
    if essence.eq_ignore_ascii_case("multipart/form-data") {
        let boundary = parameters
            .filter_map(|p| p.split_once('='))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("boundary"))
            .map(|(_, value)| value.trim().trim_matches('"'));
        return boundary.is_some_and(|b| !b.is_empty() && multipart_says_one_click(b, body));
    }
    url::form_urlencoded::parse(body)
        .any(|(name, value)| name == "List-Unsubscribe" && value.trim() == "One-Click")
}

/// Whether a `multipart/form-data` body (RFC 7578) has a part named `List-Unsubscribe` holding
/// `One-Click`.
fn multipart_says_one_click(boundary: &str, body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body);
    let delimiter = format!("--{boundary}");
    text.split(delimiter.as_str()).skip(1).any(|part| {
        let split = part.split_once("\r\n\r\n").or_else(|| part.split_once("\n\n"));
        let Some((head, content)) = split else { return false };
        let named = head.lines().any(|line| {
            let (name, value) = line.split_once(':').unwrap_or_default();
            name.trim().eq_ignore_ascii_case("content-disposition")
                && value.split(';').any(|p| {
                    let p = p.trim();
                    p == "name=\"List-Unsubscribe\"" || p == "name=List-Unsubscribe"
                })
        });
        named && content.trim() == "One-Click"
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_click_bodies_are_read_in_both_forms() {
        let form = Some("application/x-www-form-urlencoded");
        assert!(says_one_click(form, b"List-Unsubscribe=One-Click"));
        assert!(says_one_click(None, b"List-Unsubscribe=One-Click"));
        assert!(says_one_click(form, b"a=b&List-Unsubscribe=One-Click"));
        assert!(!says_one_click(form, b""));
        assert!(!says_one_click(form, b"List-Unsubscribe=Other"));
        assert!(!says_one_click(form, b"{}"));

        let multipart = Some("multipart/form-data; boundary=\"XyZ\"");
        let body = "--XyZ\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\n\
                    One-Click\r\n--XyZ--\r\n";
        assert!(says_one_click(multipart, body.as_bytes()));
        assert!(!says_one_click(Some("multipart/form-data; boundary=other"), body.as_bytes()));
        let other = "--XyZ\r\nContent-Disposition: form-data; name=\"Other\"\r\n\r\n\
                     One-Click\r\n--XyZ--\r\n";
        assert!(!says_one_click(multipart, other.as_bytes()));
        assert!(!says_one_click(Some("multipart/form-data"), body.as_bytes()));
    }
}
