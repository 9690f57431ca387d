//! `POST /v1/send` and `POST /v1/send/batch`: validate, persist, queue, answer.
//!
//! A request is answered 202 only after its rows are committed (see `ingest`): the message is
//! then durable whatever happens to this process or to Redis. Each message is validated on its
//! own, with every problem named by its field; in a batch, valid messages are accepted even
//! when others are not. The original RelayIt body (`recipient`, `projectSlug`, `payload`) is
//! accepted too and translated to the current one.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::openapi::schema::{
    KnownFormat, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, SchemaType, Type,
};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{IntoParams, PartialSchema, ToSchema};

use crate::api::json;
use crate::auth::Principal;
use crate::db::api_keys::ApiKey;
use crate::db::idempotency::NewRecord;
use crate::db::messages::{Event, NewMessage};
use crate::db::{PooledConnection, delivery, projects};
use crate::domain::channel::Channel;
use crate::domain::content;
use crate::domain::ids;
use crate::domain::recipient::{self, check_recipient};
use crate::domain::schema;
use crate::domain::status;
use crate::domain::validate::parse_object;
use crate::domain::validate::{FieldError, Validator};
use crate::error::{ApiError, ErrorBody, ErrorDetail};
use crate::ingest::{IngestError, Outcome, Submission};
use crate::queue::rate_limit;
use crate::state::AppState;

pub const SEND_LIMIT: usize = 256 * 1024;
pub const BATCH_LIMIT: usize = 8 * 1024 * 1024;
pub const MAX_BATCH: usize = 1000;
const MAX_METADATA_BYTES: usize = 4 * 1024;
const MAX_IDEMPOTENCY_KEY: usize = 255;
const MAX_SCHEDULE_AHEAD: chrono::Duration = chrono::Duration::days(30);
const IDEMPOTENCY_TTL: chrono::Duration = chrono::Duration::hours(24);

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/send").app_data(web::PayloadConfig::new(SEND_LIMIT)).post(send))
        .service(
            web::resource("/send/batch")
                .app_data(web::PayloadConfig::new(BATCH_LIMIT))
                .post(send_batch),
        );
}

/// The body of `/v1/send` (and of each batch item).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SendRequest {
    /// `email`, `sms`, `whatsapp` or `discord`.
    pub channel: String,
    /// Email address, E.164 phone number, or Discord channel id / `user:<id>`.
    pub to: String,
    /// Project id or slug; required only for organization-wide keys.
    pub project: Option<String>,
    /// Slug of the provider credential to use.
    pub provider: Option<String>,
    /// Per channel: email `{subject, text?, html?, from?, replyTo?, cc?, bcc?}`, sms `{text}`,
    /// whatsapp `{text}` or `{template}`, discord `{text?, embeds?}`.
    pub content: Value,
    /// Up to 4 KiB, echoed in webhooks.
    pub metadata: Option<Value>,
    /// RFC 3339, at most 30 days ahead.
    pub send_at: Option<String>,
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
        let mut alternatives = OneOfBuilder::new();
        for channel in Channel::ALL {
            let object = content::closed(
                ObjectBuilder::new()
                    .title(Some(channel.as_str()))
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
                    .property("content", content::content_schema(channel))
                    .required("content")
                    .property("metadata", metadata())
                    .property("sendAt", send_at()),
            );
            alternatives = alternatives.item(object);
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
fn recipient_schema(channel: Channel) -> RefOr<Schema> {
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

/// The original RelayIt body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct LegacyRequest {
    channel: String,
    recipient: String,
    project_slug: String,
    provider_type: Option<String>,
    payload: LegacyPayload,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LegacyPayload {
    subject: Option<String>,
    body: String,
    #[serde(rename = "type")]
    kind: Option<String>,
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

/// The sending key, with what it resolves per request (projects, credentials), so that a
/// batch looks each up once. A database connection is taken only when something must be
/// looked up: a project-bound key sending without `provider` needs none before the commit.
struct Sender<'a> {
    state: &'a AppState,
    key: &'a ApiKey,
    conn: Option<PooledConnection>,
    projects: HashMap<String, Option<String>>,
    credentials: HashMap<(String, String), bool>,
}

impl<'a> Sender<'a> {
    fn new(state: &'a AppState, key: &'a ApiKey) -> Self {
        Self { state, key, conn: None, projects: HashMap::new(), credentials: HashMap::new() }
    }

    async fn conn(&mut self) -> Result<&mut PooledConnection, ApiError> {
        match &mut self.conn {
            Some(conn) => Ok(conn),
            none => Ok(none.insert(self.state.db.get().await?)),
        }
    }
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
    let mut sender = Sender::new(&state, key);
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
    let mut sender = Sender::new(&state, key);
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
    // one counter update per channel, not per message (a batch holds up to 1000)
    let mut accepted: Vec<(String, u64)> = Vec::new();
    for message in &submission.messages {
        match accepted.iter_mut().find(|(channel, _)| *channel == message.channel) {
            Some((_, count)) => *count += 1,
            None => accepted.push((message.channel.clone(), 1)),
        }
    }
    match state.ingest.submit(submission).await {
        Ok(Outcome::Committed) => {
            for (channel, count) in accepted {
                state.metrics.messages_accepted.with_label_values(&[&channel]).inc_by(count);
            }
            Ok(HttpResponse::Accepted().json(response))
        }
        Ok(Outcome::Replay { status, body }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::ACCEPTED);
            Ok(HttpResponse::build(status)
                .insert_header(("Idempotency-Replayed", "true"))
                .json(body))
        }
        Ok(Outcome::Mismatch) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_mismatch",
            "this Idempotency-Key was used with a different request in the last 24 hours",
        )),
        Err(IngestError::Unavailable(cause)) => {
            tracing::warn!(%cause, "send refused: cannot commit");
            Err(ApiError::unavailable("the database is unavailable; nothing was accepted, retry"))
        }
        Err(IngestError::OutcomeUnknown(cause)) => {
            tracing::warn!(%cause, "send outcome unknown: the connection broke during the commit");
            Err(ApiError::unavailable(
                "the outcome is unknown: the database connection broke during the commit, which \
                 may have succeeded; retry with the same Idempotency-Key",
            ))
        }
        Err(IngestError::ProjectBusy) => Err(ApiError::unavailable(
            "the project is being deleted or changed; nothing was accepted, retry",
        )),
        Err(IngestError::Stopped) => {
            Err(ApiError::unavailable("shutting down; retry on another instance"))
        }
    }
}

/// A validated message, ready to commit.
struct Prepared {
    message: NewMessage,
    events: Vec<Event>,
    queued: bool,
}

impl Prepared {
    fn add_to(self, submission: &mut Submission) {
        if self.queued {
            submission.enqueue.push(self.message.id.clone());
        }
        submission.events.extend(self.events);
        submission.messages.push(self.message);
    }
}

/// Validates one send body (either shape) and builds its rows.
async fn prepare(
    sender: &mut Sender<'_>,
    value: &Value,
    now: DateTime<Utc>,
) -> Result<Prepared, ApiError> {
    let Some(object) = value.as_object() else {
        return Err(ApiError::invalid_field("body", "must be a JSON object"));
    };
    let legacy = ["recipient", "projectSlug", "payload"].iter().any(|k| object.contains_key(*k));
    let (request, provider_type) = if legacy {
        let legacy: LegacyRequest = parse_object(value, "")?;
        let provider_type = legacy.provider_type.clone();
        (from_legacy(legacy)?, provider_type)
    } else {
        (parse_object::<SendRequest>(value, "")?, None)
    };

    let mut check = Validator::new();
    let channel = Channel::parse(&request.channel);
    let mut content = None;
    match channel {
        None => check.error("channel", "must be email, sms, whatsapp or discord"),
        Some(channel) => {
            check_recipient(
                &mut check,
                if legacy { "recipient" } else { "to" },
                channel,
                &request.to,
            );
            content = content::check_content(
                &mut check,
                if legacy { "payload" } else { "content" },
                channel,
                &request.content,
            );
        }
    }
    let metadata = request.metadata.clone().unwrap_or_else(|| json!({}));
    check.object("metadata", &metadata, MAX_METADATA_BYTES);
    let send_at = match &request.send_at {
        None => None,
        Some(text) => match DateTime::parse_from_rfc3339(text) {
            Err(_) => {
                check.error("sendAt", "must be an RFC 3339 timestamp");
                None
            }
            Ok(at) if at.with_timezone(&Utc) > now + MAX_SCHEDULE_AHEAD => {
                check.error("sendAt", "must be at most 30 days ahead");
                None
            }
            Ok(at) => Some(at.with_timezone(&Utc)),
        },
    };
    check.finish()?;
    let (Some(channel), Some(content)) = (channel, content) else {
        return Err(ApiError::internal("validated content missing"));
    };

    let project_field = if legacy { "projectSlug" } else { "project" };
    let project_id = resolve_project(sender, request.project.as_deref(), project_field).await?;
    let requested_provider = match (&request.provider, provider_type) {
        (Some(slug), _) => {
            check_provider(sender, &project_id, channel, slug).await?;
            Some(slug.clone())
        }
        (None, Some(kind)) => Some(provider_of_type(sender, &project_id, channel, &kind).await?),
        (None, None) => None,
    };

    let id = ids::new_id(ids::MESSAGE);
    let scheduled = send_at.is_some_and(|at| at > now);
    let status = if scheduled { status::RECEIVED } else { status::QUEUED };
    let mut events = vec![Event::new(&id, status::RECEIVED, json!({}), now)];
    if !scheduled {
        events.push(Event::new(&id, status::QUEUED, json!({}), now));
    }
    let message = NewMessage {
        id,
        organization_id: sender.key.organization_id.clone(),
        project_id,
        api_key_id: Some(sender.key.id.clone()),
        channel: channel.as_str().to_owned(),
        recipient: request.to,
        requested_provider,
        status,
        content,
        metadata,
        idempotency_key: None,
        send_at,
        created_at: now,
        updated_at: now,
    };
    Ok(Prepared { message, events, queued: !scheduled })
}

fn from_legacy(legacy: LegacyRequest) -> Result<SendRequest, ApiError> {
    let html = match legacy.payload.kind.as_deref() {
        None | Some("text") => false,
        Some("html") => true,
        Some(_) => return Err(ApiError::invalid_field("payload.type", "must be text or html")),
    };
    let content = match legacy.channel.as_str() {
        "email" => {
            let body_field = if html { "html" } else { "text" };
            json!({"subject": legacy.payload.subject.unwrap_or_default(), body_field: legacy.payload.body})
        }
        _ => json!({"text": legacy.payload.body}),
    };
    Ok(SendRequest {
        channel: legacy.channel,
        to: legacy.recipient,
        project: Some(legacy.project_slug),
        provider: None,
        content,
        metadata: None,
        send_at: None,
    })
}

/// The project a message goes to: the key's own, or the one named (id or slug) within the
/// key's organization. Another organization's project is not found (404).
async fn resolve_project(
    sender: &mut Sender<'_>,
    named: Option<&str>,
    field: &str,
) -> Result<String, ApiError> {
    let named = match (named, &sender.key.project_id) {
        (None, Some(own)) => return Ok(own.clone()),
        (None, None) => {
            return Err(ApiError::invalid_field(
                field,
                "is required for organization-wide API keys",
            ));
        }
        (Some(named), _) => named,
    };
    if !sender.projects.contains_key(named) {
        let organization_id = sender.key.organization_id.clone();
        let tenants = &sender.state.tenants;
        let found = match tenants.project(&organization_id, named) {
            Some(id) => Some(id),
            None => {
                let since = tenants.generation();
                let found = projects::find(sender.conn().await?, &organization_id, named)
                    .await?
                    .map(|p| p.id);
                if let Some(id) = &found {
                    sender.state.tenants.insert_project(since, &organization_id, named, id.clone());
                }
                found
            }
        };
        sender.projects.insert(named.to_owned(), found);
    }
    match (sender.projects.get(named).cloned().flatten(), &sender.key.project_id) {
        (Some(id), Some(own)) if &id != own => Err(ApiError::not_found("project")),
        (Some(id), _) => Ok(id),
        (None, _) => Err(ApiError::not_found("project")),
    }
}

/// The named credential must exist, be active, serve the channel and be visible to the project.
async fn check_provider(
    sender: &mut Sender<'_>,
    project_id: &str,
    channel: Channel,
    slug: &str,
) -> Result<(), ApiError> {
    let cache_key = (project_id.to_owned(), format!("{}:{slug}", channel.as_str()));
    if !sender.credentials.contains_key(&cache_key) {
        let organization_id = sender.key.organization_id.clone();
        let usable = delivery::routes(
            sender.conn().await?,
            &organization_id,
            project_id,
            channel.as_str(),
            None,
        )
        .await?
        .iter()
        .any(|c| c.slug == slug);
        sender.credentials.insert(cache_key.clone(), usable);
    }
    if sender.credentials.get(&cache_key).copied().unwrap_or(false) {
        Ok(())
    } else {
        // a reference to what does not exist, like an unknown `project`: 404
        Err(unknown_credential(
            "provider",
            format!("no active {} credential with this slug for this project", channel.as_str()),
        ))
    }
}

/// The original body names a provider type: the highest-priority usable credential of it.
async fn provider_of_type(
    sender: &mut Sender<'_>,
    project_id: &str,
    channel: Channel,
    kind: &str,
) -> Result<String, ApiError> {
    let organization_id = sender.key.organization_id.clone();
    delivery::routes(sender.conn().await?, &organization_id, project_id, channel.as_str(), None)
        .await?
        .into_iter()
        .find(|c| c.provider_type == kind)
        .map(|c| c.slug)
        .ok_or_else(|| {
            unknown_credential(
                "providerType",
                format!("no active {kind} credential for this project"),
            )
        })
}

/// 404 for a named credential that the message cannot use, naming the field.
fn unknown_credential(field: &str, message: String) -> ApiError {
    ApiError::not_found("provider credential")
        .with_message(format!("{field}: {message}"))
        .with_details(vec![FieldError::new(field, message)])
}
