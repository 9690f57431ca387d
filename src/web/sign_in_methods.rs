//! The person's ways of signing in (`/account/sign-in-methods`): their password, the OAuth /
//! OpenID Connect accounts linked to them, and their passkeys. Accounts are linked through the
//! provider's own pages (`/v1/auth/oauth/{id}/start?link=true`) and passkeys are made by the
//! browser (the script's `data-passkey-register`), so this page only lists, renames and
//! removes; removing goes through `auth::accounts::remove_method`, which keeps the last way in.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError, web};
use maud::{Markup, html};
use serde::Deserialize;

use crate::auth::accounts::{self, Method};
use crate::auth::{Access, passkeys};
use crate::db::{linked_accounts, passkeys as stored};
use crate::domain::validate::MAX_NAME_CHARS;
use crate::error::ApiError;
use crate::state::AppState;
use crate::web::{WebError, form_error, layout, page, reader, see_other};

const PAGE: &str = "/account/sign-in-methods";
/// Accounts and passkeys listed at most, the latest first.
const SHOWN: i64 = 100;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource(PAGE).get(show))
        .service(web::resource("/account/accounts/{accountId}/unlink").post(unlink))
        .service(web::resource("/account/passkeys/{passkeyId}/rename").post(rename))
        .service(web::resource("/account/passkeys/{passkeyId}/delete").post(delete));
}

async fn show(
    state: web::Data<AppState>,
    access: Result<Access, ApiError>,
) -> Result<HttpResponse, WebError> {
    let access = access?;
    Ok(page(StatusCode::OK, methods_page(&state, &access, None).await?))
}

/// Unlinks one of the person's accounts; 404 for another's, 409 (shown) for the last way in.
async fn unlink(
    state: web::Data<AppState>,
    access: Result<Access, ApiError>,
    path: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    remove(&state, access?, Method::Account(&path)).await
}

/// Deletes one of the person's passkeys, as [`unlink`] unlinks an account.
async fn delete(
    state: web::Data<AppState>,
    access: Result<Access, ApiError>,
    path: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    remove(&state, access?, Method::Passkey(&path)).await
}

async fn remove(
    state: &AppState,
    access: Access,
    method: Method<'_>,
) -> Result<HttpResponse, WebError> {
    let (user, _) = access.principal.user()?;
    let removed = accounts::remove_method(state, &user.id, method).await;
    after_change(state, &access, removed).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RenameForm {
    name: String,
}

async fn rename(
    state: web::Data<AppState>,
    access: Result<Access, ApiError>,
    path: web::Path<String>,
    form: web::Form<RenameForm>,
) -> Result<HttpResponse, WebError> {
    let access = access?;
    let (user, _) = access.principal.user()?;
    let renamed = passkeys::rename(&state, user, &path, &form.name).await.map(drop);
    after_change(&state, &access, renamed).await
}

/// Back to the page after a change, or the page again with why it was refused. Another
/// person's id is a 404 page, as everywhere.
async fn after_change(
    state: &AppState,
    access: &Access,
    result: Result<(), ApiError>,
) -> Result<HttpResponse, WebError> {
    match result {
        Ok(()) => Ok(see_other(PAGE)),
        Err(error) if error.status_code() == StatusCode::NOT_FOUND => Err(error.into()),
        Err(error) => {
            Ok(page(error.status_code(), methods_page(state, access, Some(&error)).await?))
        }
    }
}

async fn methods_page(
    state: &AppState,
    access: &Access,
    error: Option<&ApiError>,
) -> Result<Markup, ApiError> {
    let viewer = reader(access)?;
    let (user, _) = access.principal.user()?;
    let mut conn = state.db.get().await?;
    let linked = linked_accounts::list(&mut conn, &user.id, None, SHOWN).await?;
    let keys = stored::list(&mut conn, &user.id, None, SHOWN).await?;
    drop(conn);
    let passkeys_on = state.config.passkeys_enabled();
    let providers = &state.config.auth.oauth;
    let body = html! {
        main {
            h1 { "Sign-in methods" }
            @if let Some(error) = error { (form_error(error)) }
            div.card {
                h2 { "Password" }
                @if user.password_hash.is_some() {
                    p { "You can sign in with your email and password. " a href="/account/password" { "Change it" } }
                } @else {
                    p.muted { "You have no password: you sign in with the accounts and passkeys below." }
                }
            }
            div.card {
                h2 { "Linked accounts" }
                @if linked.is_empty() {
                    p.muted { "No account is linked." }
                } @else {
                    table #accounts {
                        thead { tr { th { "Provider" } th { "Email" } th { "Linked" } th {} } }
                        tbody {
                            @for account in &linked {
                                tr {
                                    td { (provider_name(providers, &account.provider_id)) " (" (account.kind) ")" }
                                    td { (account.email) }
                                    td { (account.created_at.format("%Y-%m-%d %H:%M UTC")) }
                                    td {
                                        form method="post" action=(format!("/account/accounts/{}/unlink", account.id)) {
                                            button.link type="submit" { "Unlink" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                @if !providers.is_empty() {
                    p.actions {
                        @for provider in providers {
                            a.button href=(link_url(&provider.id)) { "Link " (provider.display_name()) }
                            " "
                        }
                    }
                }
            }
            div.card {
                h2 { "Passkeys" }
                @if keys.is_empty() {
                    p.muted { "No passkey yet." }
                } @else {
                    table #passkeys {
                        thead { tr { th { "Name" } th { "Added" } th { "Last used" } th {} } }
                        tbody {
                            @for key in &keys {
                                tr {
                                    td {
                                        @if passkeys_on {
                                            form.inline method="post" action=(format!("/account/passkeys/{}/rename", key.id)) {
                                                input type="text" name="name" value=(key.name.as_deref().unwrap_or("")) aria-label="Name" maxlength=(MAX_NAME_CHARS);
                                                " "
                                                button.small type="submit" { "Rename" }
                                            }
                                        } @else {
                                            (key.name.as_deref().unwrap_or(""))
                                        }
                                    }
                                    td { (key.created_at.format("%Y-%m-%d %H:%M UTC")) }
                                    td {
                                        @match key.last_used_at {
                                            Some(at) => (at.format("%Y-%m-%d %H:%M UTC")),
                                            None => span.muted { "never" },
                                        }
                                    }
                                    td {
                                        form method="post" action=(format!("/account/passkeys/{}/delete", key.id)) {
                                            button.link type="submit" { "Delete" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                @if passkeys_on {
                    div data-passkey-register {
                        label for="passkey-name" { "Name of the new passkey (optional)" }
                        input #passkey-name type="text" maxlength=(MAX_NAME_CHARS) placeholder="This laptop";
                        button type="button" { "Add a passkey" }
                        p.error role="alert" hidden data-passkey-error {}
                    }
                } @else {
                    p.muted { "Passkeys are not offered by this server (they need its public URL)." }
                }
            }
        }
    };
    Ok(layout("Sign-in methods", Some(&viewer), body))
}

/// The operator's name for the provider `id`, or the id once it is gone from the configuration.
fn provider_name<'a>(providers: &'a [crate::config::OAuthProviderConfig], id: &'a str) -> &'a str {
    providers.iter().find(|p| p.id == id).map_or(id, |p| p.display_name())
}

/// Where linking an account at provider `id` starts, coming back to this page.
fn link_url(id: &str) -> String {
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("redirectTo", PAGE)
        .append_pair("link", "true")
        .finish();
    format!("/v1/auth/oauth/{id}/start?{query}")
}
