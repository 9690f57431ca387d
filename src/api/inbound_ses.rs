//! `/v1/inbound/ses/{credentialId}`: Amazon SES delivery receipts (WhatsApp's are in
//! `inbound_whatsapp`).
//!
//! `POST /v1/inbound/ses/{credentialId}` is the endpoint of an SNS HTTP(S) subscription to the
//! topic an SES configuration set (or identity) publishes its events to. It needs no API key:
//! SNS cannot send one. What it believes rests on the SNS signature instead (`crate::inbound::
//! sns`): an unsigned or badly signed message is refused with 403 and changes nothing. A
//! `SubscriptionConfirmation` is confirmed by fetching its `SubscribeURL`; a `Notification`
//! applies its SES event to the credential's message (`crate::inbound::ses`). Answers are 200
//! for anything handled or deliberately ignored (SNS would otherwise send it again).

use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::db::providers::find_for_callback;
use crate::db::receipts::{self, Applied, Receipt};
use crate::error::ApiError;
use crate::inbound::ses;
use crate::inbound::sns::{
    Envelope, NOTIFICATION, SUBSCRIPTION_CONFIRMATION, SnsError, UNSUBSCRIBE_CONFIRMATION,
};
use crate::providers::ProviderType;
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/inbound/ses/{credentialId}").post(ses_events));
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InboundResult {
    /// `applied` (a message changed status), `held` (the receipt names no message yet and
    /// applies once one carries its id), `confirmed` (the subscription), or `ignored`.
    pub result: &'static str,
    pub detail: String,
}

fn answer(result: &'static str, detail: impl Into<String>) -> HttpResponse {
    HttpResponse::Ok().json(InboundResult { result, detail: detail.into() })
}

fn refused(credential_id: &str, error: SnsError) -> ApiError {
    match error {
        SnsError::Refused(reason) => {
            tracing::warn!(credential = %credential_id, %reason, "refused an SNS message");
            ApiError::forbidden(format!("not a valid SNS message: {reason}"))
        }
        SnsError::Unavailable(reason) => ApiError::unavailable(reason),
    }
}

/// Receives SES events through an SNS subscription (SNS signs every message).
#[utoipa::path(post, path = "/v1/inbound/ses/{credentialId}", tag = "inbound",
    params(("credentialId" = String, Path, description = "The SES credential that sends the messages")),
    request_body(content = String, description = "An SNS message (JSON, sent as text/plain)"),
    responses((status = 200, body = InboundResult), (status = 400, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
        (status = 503, body = crate::error::ErrorBody)))]
pub async fn ses_events(
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let credential_id = path.into_inner();
    let envelope: Envelope = serde_json::from_slice(&body)
        .map_err(|e| ApiError::malformed_json(format!("not an SNS message: {e}")))?;
    let mut conn = state.db.get().await?;
    let credential = find_for_callback(&mut conn, &credential_id, ProviderType::Ses)
        .await?
        .ok_or_else(|| ApiError::not_found("SES provider"))?;
    // the pooled connection is not held while certificates are fetched
    drop(conn);
    state.sns_verifier.verify(&envelope).await.map_err(|e| refused(&credential_id, e))?;

    match envelope.kind.as_str() {
        SUBSCRIPTION_CONFIRMATION => {
            state.sns_verifier.confirm(&envelope).await.map_err(|e| refused(&credential_id, e))?;
            tracing::info!(credential = %credential_id, topic = %envelope.topic_arn,
                "confirmed an SNS subscription for SES events");
            Ok(answer("confirmed", format!("subscribed to {}", envelope.topic_arn)))
        }
        UNSUBSCRIBE_CONFIRMATION => {
            Ok(answer("ignored", format!("unsubscribed from {}", envelope.topic_arn)))
        }
        NOTIFICATION => {
            let change = match ses::interpret(&envelope.message) {
                Ok(change) => change,
                Err(why) => return Ok(answer("ignored", why)),
            };
            let mut details = change.details;
            details["snsMessageId"] = envelope.message_id.clone().into();
            let mut conn = state.db.get().await?;
            let applied = receipts::apply(
                &mut conn,
                Receipt {
                    organization_id: &credential.organization_id,
                    channel: &credential.channel,
                    provider_message_id: &change.provider_message_id,
                    from: change.from,
                    to: change.to,
                    reason: change.reason.as_deref(),
                    details,
                },
            )
            .await?;
            Ok(match applied {
                Applied::Moved(ids) => {
                    answer("applied", format!("message {} is {}", ids.join(", "), change.to))
                }
                Applied::Ignored => answer(
                    "ignored",
                    format!(
                        "no message of this provider with SES id {} can become {}",
                        change.provider_message_id, change.to
                    ),
                ),
                Applied::Held => answer(
                    "held",
                    format!(
                        "no message has SES id {} yet; it becomes {} once its send is recorded",
                        change.provider_message_id, change.to
                    ),
                ),
            })
        }
        // verify() refuses every other type
        other => Ok(answer("ignored", format!("SNS message type {other}"))),
    }
}
