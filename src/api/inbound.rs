//! `/v1/inbound/...`: the URLs providers call back with delivery receipts. They carry no API
//! key (providers cannot send one); `crate::inbound` checks what proves each request and
//! applies it, and this file only routes and answers.
//!
//! - `POST /v1/inbound/ses/{credentialId}`: the endpoint of an SNS HTTP(S) subscription to the
//!   topic an SES configuration set (or identity) publishes its events to. 200 for anything
//!   handled or deliberately ignored (SNS would otherwise send it again).
//! - `GET /v1/inbound/whatsapp/{credentialId}`: Meta's set-up handshake;
//!   `POST` the same URL: signed status updates of the messages sent from the app's numbers.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::error::{ApiError, ErrorBody};
use crate::inbound::ses::{self, InboundResult};
use crate::inbound::whatsapp::{self, CallbackResult};
use crate::state::AppState;

const SIGNATURE_HEADER: &str = "x-hub-signature-256";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/inbound/ses/{credentialId}").post(ses_events)).service(
        web::resource("/inbound/whatsapp/{credentialId}")
            .app_data(web::PayloadConfig::new(whatsapp::MAX_CALLBACK_BYTES))
            .get(whatsapp_handshake)
            .post(whatsapp_statuses),
    );
}

/// Receives SES events through an SNS subscription (SNS signs every message).
#[utoipa::path(post, path = "/v1/inbound/ses/{credentialId}", tag = "inbound",
    params(("credentialId" = String, Path, description = "The SES credential that sends the messages")),
    request_body(content((crate::inbound::sns::Envelope = "text/plain"),
        (crate::inbound::sns::Envelope = "application/json")),
        description = "An SNS message, as SNS posts it (JSON, as `text/plain`)"),
    responses((status = 200, body = InboundResult),
        (status = 403, description = "`forbidden`: the SNS signature does not verify", body = ErrorBody)))]
pub async fn ses_events(
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let result = ses::receive(&state, &path, &body).await?;
    Ok(HttpResponse::Ok().json(result))
}

/// The handshake's query: without `hub.challenge` 400; a mode or token that does not match 403.
#[derive(Debug, Deserialize, IntoParams)]
pub struct Handshake {
    #[serde(rename = "hub.mode")]
    #[param(rename = "hub.mode", required, value_type = SubscribeMode, inline)]
    pub mode: Option<String>,
    /// The credential's `verifyToken`.
    #[serde(rename = "hub.verify_token")]
    #[param(rename = "hub.verify_token", required)]
    pub verify_token: Option<String>,
    /// What to answer.
    #[serde(rename = "hub.challenge")]
    #[param(rename = "hub.challenge", required, value_type = Challenge, inline)]
    pub challenge: Option<String>,
}

crate::json_schema! {
    /// `hub.mode`.
    SubscribeMode => crate::domain::schema::one_of(&["subscribe"])
}

crate::json_schema! {
    /// `hub.challenge`.
    Challenge => crate::domain::schema::text(1, whatsapp::MAX_CHALLENGE_CHARS)
}

/// Meta's webhook verification: answers `hub.challenge` when `hub.verify_token` is the
/// credential's `verifyToken`.
#[utoipa::path(get, path = "/v1/inbound/whatsapp/{credentialId}", tag = "inbound",
    params(("credentialId" = String, Path), Handshake),
    responses((status = 200, description = "the challenge", content_type = "text/plain", body = String),
        (status = 403, description = "`forbidden`: the token is not the credential's `verifyToken`", body = ErrorBody)))]
pub async fn whatsapp_handshake(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<Handshake>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let challenge = whatsapp::handshake(
        &state,
        &path,
        query.mode.as_deref(),
        query.verify_token.as_deref(),
        query.challenge,
    )
    .await?;
    Ok(HttpResponse::Ok().content_type("text/plain; charset=utf-8").body(challenge))
}

/// Status updates from the Cloud API, signed with the credential's `appSecret`.
#[utoipa::path(post, path = "/v1/inbound/whatsapp/{credentialId}", tag = "inbound",
    params(("credentialId" = String, Path)),
    request_body(content = Object, content_type = "application/json",
        description = "a Cloud API webhook notification (`entry[].changes[].value.statuses[]`)"),
    responses((status = 200, body = CallbackResult),
        (status = 401, description = "`unauthorized`: no `X-Hub-Signature-256`", body = ErrorBody),
        (status = 403, description = "`forbidden`: the signature does not verify", body = ErrorBody)))]
pub async fn whatsapp_statuses(
    state: web::Data<AppState>,
    path: web::Path<String>,
    request: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let signature = request.headers().get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
    let result = whatsapp::statuses(&state, &path, signature, &body).await?;
    Ok(HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(result))
}
