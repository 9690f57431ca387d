//! `POST /v1/send` and `POST /v1/send/batch`: validate, persist, queue, answer.
//!
//! A request is answered 202 only after its rows are committed (see `ingest`): the message is
//! then durable whatever happens to this process or to Redis. Each message is validated on its
//! own, with every problem named by its field; in a batch, valid messages are accepted even
//! when others are not. The original RelayIt body (`recipient`, `projectSlug`, `payload`) is
//! accepted too and translated to the current one.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::openapi::schema::{
    KnownFormat, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, SchemaType, Type,
};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{IntoParams, PartialSchema, ToSchema};

use crate::api::json;
use crate::auth::Principal;
use crate::db::api_keys::ApiKey;
use crate::db::idempotency::NewRecord;
use crate::domain::channel::Channel;
use crate::domain::content;
use crate::domain::recipient;
use crate::domain::schema;
use crate::error::{ApiError, ErrorBody, ErrorDetail};
use crate::ingest::{Outcome, Submission};
use crate::manage::sending::{self, MAX_METADATA_BYTES, Sender, prepare};
use crate::queue::rate_limit;
use crate::state::AppState;

pub const SEND_LIMIT: usize = 256 * 1024;
pub const BATCH_LIMIT: usize = 8 * 1024 * 1024;
pub const MAX_BATCH: usize = 1000;
const MAX_IDEMPOTENCY_KEY: usize = 255;
const IDEMPOTENCY_TTL: chrono::Duration = chrono::Duration::hours(24);

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/send").app_data(web::PayloadConfig::new(SEND_LIMIT)).post(send))
        .service(
            web::resource("/send/batch")
                .app_data(web::PayloadConfig::new(BATCH_LIMIT))
                .post(send_batch),
        );
}

/// The body of `/v1/send` (and of each batch item) as the document states it: one alternative
/// per channel, with that channel's `to` and `content`, and one per channel of the original
/// RelayIt body.
pub struct SendBody;

impl utoipa::PartialSchema for SendBody {
    fn schema() -> RefOr<Schema> {
        let text = || ObjectBuilder::new().schema_type(Type::String);
        let nullable_text =
            || ObjectBuilder::new().schema_type(SchemaType::from_iter([Type::String, Type::Null]));
        let metadata = || {
            OneOfBuilder::new()
                .item(ObjectBuilder::new().schema_type(Type::Null))
                .item(schema::object())
                .description(Some(format!(
                    "Echoed in webhooks; at most {} KiB.",
                    MAX_METADATA_BYTES / 1024
                )))
        };
        let send_at = || {
            OneOfBuilder::new()
                .item(ObjectBuilder::new().schema_type(Type::Null))
                .item(text().format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))))
                .description(Some("RFC 3339, at most 30 days ahead; absent: now."))
        };
        let template = || {
            content::closed(
                ObjectBuilder::new()
                    .description(Some(
                        "A template of the project to render the content from: its id or \
                         slug, a published version (absent: the latest) and the values of \
                         its variables.",
                    ))
                    .property("id", content::blank_refused(200))
                    .required("id")
                    .property(
                        "version",
                        OneOfBuilder::new()
                            .item(ObjectBuilder::new().schema_type(Type::Null))
                            .item(
                                ObjectBuilder::new()
                                    .schema_type(Type::Integer)
                                    .minimum(Some(1))
                                    .maximum(Some(i32::MAX)),
                            ),
                    )
                    .property(
                        "variables",
                        OneOfBuilder::new()
                            .item(ObjectBuilder::new().schema_type(Type::Null))
                            .item(schema::object()),
                    ),
            )
        };
        let mut alternatives = OneOfBuilder::new();
        for channel in Channel::ALL {
            let common = || {
                ObjectBuilder::new()
                    .property("channel", schema::one_of(&[channel.as_str()]))
                    .required("channel")
                    .property("to", recipient_schema(channel))
                    .required("to")
                    .property("project", nullable_text().description(Some(
                        "Project id or slug; required only for organization-wide keys.",
                    )))
                    .property("provider", nullable_text().description(Some(
                        "Slug of the provider credential to use (404 when there is no active one \
                         for the channel and project).",
                    )))
                    .property("metadata", metadata())
                    .property("sendAt", send_at())
            };
            alternatives = alternatives
                .item(content::closed(
                    common()
                        .title(Some(channel.as_str()))
                        .property("content", content::content_schema(channel))
                        .required("content"),
                ))
                .item(content::closed(
                    common()
                        .title(Some(format!("{} (template)", channel.as_str())))
                        .property("template", template())
                        .required("template"),
                ));
        }
        for channel in Channel::ALL {
            alternatives = alternatives.item(legacy_schema(channel));
        }
        alternatives.into()
    }
}

impl ToSchema for SendBody {
    fn name() -> std::borrow::Cow<'static, str> {
        "SendRequest".into()
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        for (name, schema) in [
            (schema::EmailAddress::name(), schema::EmailAddress::schema()),
            (schema::PhoneNumber::name(), schema::PhoneNumber::schema()),
        ] {
            schemas.push((name.into_owned(), schema));
        }
    }
}

/// `to` (`recipient` in the original body) as [`check_recipient`] takes it for `channel`.
pub(crate) fn recipient_schema(channel: Channel) -> RefOr<Schema> {
    match channel {
        Channel::Email => RefOr::Ref(Ref::from_schema_name(schema::EmailAddress::name())),
        Channel::Sms | Channel::Whatsapp => {
            RefOr::Ref(Ref::from_schema_name(schema::PhoneNumber::name()))
        }
        Channel::Discord => ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(recipient::DISCORD_TARGET_PATTERN))
            .description(Some("A channel id (snowflake), or `user:<id>` for a direct message."))
            .into(),
    }
}

/// The original RelayIt body for `channel`: its `payload.body` becomes the content's text (or
/// html, with `type: "html"`); an email needs a `subject`.
fn legacy_schema(channel: Channel) -> ObjectBuilder {
    let max = match channel {
        Channel::Email => None,
        Channel::Sms => Some(content::MAX_SMS_CHARS),
        Channel::Whatsapp => Some(content::MAX_WHATSAPP_TEXT_CHARS),
        Channel::Discord => Some(content::MAX_DISCORD_TEXT_CHARS),
    };
    let body = match max {
        Some(max) => content::blank_refused(max),
        None => ObjectBuilder::new().schema_type(Type::String),
    };
    let mut payload = ObjectBuilder::new().property("body", body).required("body").property(
        "type",
        OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::Null))
            .item(schema::one_of(&["text", "html"])),
    );
    payload = if channel == Channel::Email {
        payload
            .property("subject", content::blank_refused(content::MAX_SUBJECT_CHARS))
            .required("subject")
    } else {
        payload.property(
            "subject",
            ObjectBuilder::new().schema_type(SchemaType::from_iter([Type::String, Type::Null])),
        )
    };
    content::closed(
        ObjectBuilder::new()
            .title(Some(format!("{} (original body)", channel.as_str())))
            .deprecated(Some(utoipa::openapi::Deprecated::True))
            .property("channel", schema::one_of(&[channel.as_str()]))
            .required("channel")
            .property("recipient", recipient_schema(channel))
            .required("recipient")
            .property("projectSlug", ObjectBuilder::new().schema_type(Type::String))
            .required("projectSlug")
            .property(
                "providerType",
                OneOfBuilder::new()
                    .item(ObjectBuilder::new().schema_type(Type::Null))
                    .item(RefOr::Ref(Ref::from_schema_name("ProviderType"))),
            )
            .property("payload", content::closed(payload))
            .required("payload"),
    )
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    pub id: String,
    /// `queued`, or `received` when scheduled with `sendAt`.
    pub status: &'static str,
}

/// The answer of a batch: one item per message, in order.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchAccepted {
    pub data: Vec<BatchItem>,
}

/// A message of a batch: accepted, or refused with the error a single send would have had.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum BatchItem {
    Accepted(Accepted),
    Refused(ErrorBody),
}

/// `Idempotency-Key`, on both send routes.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IdempotencyHeader {
    /// Makes a retry safe: the same key with the same body within 24 hours answers the first
    /// answer again (with `Idempotency-Replayed: true`) and sends nothing; with another body,
    /// 422. Printable ASCII, at most 255 characters.
    #[param(
        rename = "Idempotency-Key",
        min_length = 1,
        max_length = 255,
        pattern = r"^[!-~]([\t !-~]*[!-~])?$",
        example = "welcome-alice"
    )]
    #[allow(dead_code)]
    key: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    #[schema(value_type = BatchMessages)]
    pub messages: Vec<Value>,
}

crate::json_schema! {
    /// The messages of a batch.
    BatchMessages => utoipa::openapi::schema::ArrayBuilder::new()
        .items(ObjectBuilder::new().schema_type(SchemaType::AnyValue))
        .min_items(Some(1))
        .max_items(Some(MAX_BATCH))
        .description(Some(format!(
            "1 to {MAX_BATCH} bodies of `POST /v1/send` (`SendRequest`). Each is checked on its \
             own: one that is not valid is answered with its error in `data`, at its place, and \
             does not stop the others."
        )))
}

fn sending_key(principal: &Principal) -> Result<&ApiKey, ApiError> {
    match principal {
        Principal::Key(key) if key.scopes.iter().any(|s| s == "send") => Ok(key),
        Principal::Key(_) => Err(ApiError::forbidden("this API key lacks the send scope")),
        Principal::User { .. } => {
            Err(ApiError::forbidden("sending needs an API key with the send scope"))
        }
    }
}

/// Applies the key's send rate (its own `rateLimit`, else `api.send_rate_limit`; none when 0)
/// to `cost` messages. Returns the `RateLimit-*` headers for the answer.
async fn rate_limit(
    state: &AppState,
    key: &ApiKey,
    cost: usize,
) -> Result<Vec<(&'static str, String)>, ApiError> {
    let own = key.rate_limit.and_then(|r| u32::try_from(r).ok());
    let rate = own.unwrap_or(state.config.api.send_rate_limit);
    if rate == 0 {
        return Ok(Vec::new());
    }
    let cost = u32::try_from(cost).unwrap_or(u32::MAX);
    let subject = format!("key:{}", key.id);
    let decision = match rate_limit::check(&state.redis, &subject, rate, cost).await {
        Ok(decision) => decision,
        // The limit protects providers and neighbours, not durability: with Redis away, let
        // the request through rather than refuse what Postgres can keep.
        Err(e) => {
            tracing::warn!(error = %e, "rate limit unavailable; not limiting");
            return Ok(Vec::new());
        }
    };
    if !decision.allowed {
        return Err(ApiError::rate_limited(decision.retry_after)
            .with_message(format!("this API key may send {rate} messages per second")));
    }
    Ok(vec![
        ("ratelimit-limit", rate.to_string()),
        ("ratelimit-remaining", decision.remaining.to_string()),
        ("ratelimit-reset", "1".to_owned()),
    ])
}

fn with_headers(
    answer: Result<HttpResponse, ApiError>,
    headers: Vec<(&'static str, String)>,
) -> Result<HttpResponse, ApiError> {
    let mut response = answer?;
    for (name, value) in headers {
        if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&value) {
            response
                .headers_mut()
                .insert(actix_web::http::header::HeaderName::from_static(name), value);
        }
    }
    Ok(response)
}

fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(value) = req.headers().get("idempotency-key") else { return Ok(None) };
    let key = value
        .to_str()
        .map_err(|_| ApiError::invalid_field("Idempotency-Key", "must be printable ASCII"))?
        .trim();
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY {
        return Err(ApiError::invalid_field("Idempotency-Key", "must be 1 to 255 characters"));
    }
    Ok(Some(key.to_owned()))
}

/// Sends one message.
#[utoipa::path(post, path = "/v1/send", tag = "sending", request_body = SendBody, security(("apiKey" = []), ("apiKeyHeader" = [])),
    params(IdempotencyHeader),
    responses((status = 202, body = Accepted, headers(
            ("Idempotency-Replayed" = String, description = "`true` on the answer of a replayed request"),
            ("RateLimit-Limit" = u32, description = "sends per second allowed to this key, when limited"),
            ("RateLimit-Remaining" = u32, description = "sends left in this second"),
            ("RateLimit-Reset" = u32, description = "seconds until the window resets"))),
        (status = 404, description = "`not_found`: the `project`, or the `provider` credential (an \
            active one of the channel, for the project), does not exist", body = ErrorBody),
        (status = 409, description = "`conflict`: a request with this `Idempotency-Key` is still in flight", body = ErrorBody),
        (status = 422, description = "`idempotency_mismatch`: this `Idempotency-Key` came with another body \
            in the last 24 hours", body = ErrorBody),
        (status = 429, description = "`rate_limited`: over the key's send rate", body = ErrorBody,
            headers(("Retry-After" = u64, description = "seconds to wait")))))]
pub async fn send(
    req: HttpRequest,
    state: web::Data<AppState>,
    principal: Principal,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let key = sending_key(&principal)?;
    let idempotency = idempotency_key(&req)?;
    let value = json::parse_value(&body)?;
    let limit_headers = rate_limit(&state, key, 1).await?;
    let mut sender = Sender::key(&state, key);
    let now = Utc::now();
    let prepared = prepare(&mut sender, &value, now).await?;
    drop(sender);
    let accepted = Accepted { id: prepared.message.id.clone(), status: prepared.message.status };
    let response = serde_json::to_value(&accepted).map_err(ApiError::internal)?;
    let mut submission = Submission::default();
    let project_id = prepared.message.project_id.clone();
    prepared.add_to(&mut submission);
    submission.idempotency = idempotency.map(|key| record(project_id, key, &value, &response, now));
    with_headers(answer(&state, submission, response).await, limit_headers)
}

/// Sends up to 1000 messages; each item is answered in order, valid ones accepted even when
/// others are not.
#[utoipa::path(post, path = "/v1/send/batch", tag = "sending", request_body = BatchRequest, security(("apiKey" = []), ("apiKeyHeader" = [])),
    params(IdempotencyHeader),
    responses((status = 202, body = BatchAccepted, headers(
            ("Idempotency-Replayed" = String, description = "`true` on the answer of a replayed request"),
            ("RateLimit-Limit" = u32, description = "sends per second allowed to this key, when limited"),
            ("RateLimit-Remaining" = u32, description = "sends left in this second"),
            ("RateLimit-Reset" = u32, description = "seconds until the window resets"))),
        (status = 409, description = "`conflict`: a request with this `Idempotency-Key` is still in flight", body = ErrorBody),
        (status = 422, description = "`idempotency_mismatch`: this `Idempotency-Key` came with another body \
            in the last 24 hours", body = ErrorBody),
        (status = 429, description = "`rate_limited`: over the key's send rate (each message counts)", body = ErrorBody,
            headers(("Retry-After" = u64, description = "seconds to wait")))))]
pub async fn send_batch(
    req: HttpRequest,
    state: web::Data<AppState>,
    principal: Principal,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let key = sending_key(&principal)?;
    let idempotency = idempotency_key(&req)?;
    let batch: BatchRequest = json::parse(&body)?;
    if batch.messages.is_empty() || batch.messages.len() > MAX_BATCH {
        return Err(ApiError::invalid_field(
            "messages",
            format!("must hold 1 to {MAX_BATCH} messages"),
        ));
    }
    let limit_headers = rate_limit(&state, key, batch.messages.len()).await?;
    let mut sender = Sender::key(&state, key);
    let now = Utc::now();
    let mut submission = Submission::default();
    let mut data = Vec::with_capacity(batch.messages.len());
    for item in &batch.messages {
        match prepare(&mut sender, item, now).await {
            Ok(prepared) => {
                let id = prepared.message.id.clone();
                data.push(BatchItem::Accepted(Accepted { id, status: prepared.message.status }));
                prepared.add_to(&mut submission);
            }
            Err(error) => data.push(BatchItem::Refused(ErrorBody {
                error: ErrorDetail {
                    code: error.code(),
                    message: error.message().to_owned(),
                    details: error.details().to_vec(),
                },
            })),
        }
    }
    drop(sender);
    let response = serde_json::to_value(BatchAccepted { data }).map_err(ApiError::internal)?;
    // A batch's idempotency record lives in the project of its keys' scope, or its first
    // accepted message's.
    let project = key
        .project_id
        .clone()
        .or_else(|| submission.messages.first().map(|m| m.project_id.clone()));
    submission.idempotency = match (idempotency, project) {
        (Some(k), Some(project)) => Some(record(project, k, &batch.messages, &response, now)),
        _ => None,
    };
    with_headers(answer(&state, submission, response).await, limit_headers)
}

/// The idempotency record of a request. The hash is of the parsed body re-serialized (keys in
/// order), so the same request with other whitespace or key order is still the same request.
fn record<T: Serialize>(
    project_id: String,
    key: String,
    body: &T,
    response: &Value,
    now: DateTime<Utc>,
) -> NewRecord {
    let canonical = serde_json::to_vec(body).unwrap_or_default();
    NewRecord {
        project_id,
        key,
        request_hash: crate::auth::tokens::hash_bytes(&canonical),
        response_status: 202,
        response_body: response.clone(),
        expires_at: now + IDEMPOTENCY_TTL,
    }
}

async fn answer(
    state: &AppState,
    submission: Submission,
    response: Value,
) -> Result<HttpResponse, ApiError> {
    if submission.messages.is_empty() && submission.idempotency.is_none() {
        // a batch without one valid message: nothing to commit
        return Ok(HttpResponse::Accepted().json(response));
    }
    match sending::commit(state, submission).await? {
        Outcome::Committed => Ok(HttpResponse::Accepted().json(response)),
        Outcome::Replay { status, body } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::ACCEPTED);
            Ok(HttpResponse::build(status)
                .insert_header(("Idempotency-Replayed", "true"))
                .json(body))
        }
        Outcome::Mismatch => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_mismatch",
            "this Idempotency-Key was used with a different request in the last 24 hours",
        )),
    }
}
