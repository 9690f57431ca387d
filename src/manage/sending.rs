//! Sending: a send body (the current one, or the original RelayIt one) validated field by
//! field into its message and event rows, and a submission of such rows committed through
//! the ingest committer (`crate::ingest`). `/v1/send` and its batch send with an API key; a
//! person's test send from the dashboard goes the same way, only without a key.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::db::api_keys::ApiKey;
use crate::db::messages::{Event, NewMessage};
use crate::db::templates::Published;
use crate::db::{PooledConnection, delivery, projects};
use crate::domain::channel::Channel;
use crate::domain::content;
use crate::domain::ids;
use crate::domain::recipient::check_recipient;
use crate::domain::status;
use crate::domain::template::Fields;
use crate::domain::validate::parse_object;
use crate::domain::validate::{FieldError, Validator};
use crate::error::ApiError;
use crate::ingest::{IngestError, Outcome, Submission};
use crate::manage::templates;
use crate::state::AppState;

pub const MAX_METADATA_BYTES: usize = 4 * 1024;
pub const MAX_SCHEDULE_AHEAD: chrono::Duration = chrono::Duration::days(30);

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
    /// whatsapp `{text}` or `{template}`, discord `{text?, embeds?}`. Either this or
    /// `template`.
    pub content: Option<Value>,
    /// A template of the project to render the content from, instead of `content`.
    pub template: Option<TemplateRef>,
    /// Up to 4 KiB, echoed in webhooks.
    pub metadata: Option<Value>,
    /// RFC 3339, at most 30 days ahead.
    pub send_at: Option<String>,
}

/// `template` of a send body: which template, which version, with what.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateRef {
    /// Its id or slug.
    pub id: String,
    /// A published version; absent: the latest.
    pub version: Option<i32>,
    /// The values its variables take.
    pub variables: Option<Value>,
}

/// Where a send's template errors point.
const TEMPLATE_FIELDS: Fields =
    Fields { content: "template.content", variables: "template.variables" };

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

/// Who sends (an organization, through an API key or a person's test send), with what it
/// resolves per request (projects, credentials), so that a batch looks each up once. A
/// database connection is taken only when something must be looked up: a project-bound key
/// sending without `provider` needs none before the commit.
pub struct Sender<'a> {
    state: &'a AppState,
    organization_id: &'a str,
    /// The only project it may send to (a project-bound key's).
    own_project: Option<&'a str>,
    api_key_id: Option<&'a str>,
    conn: Option<PooledConnection>,
    projects: HashMap<String, Option<String>>,
    credentials: HashMap<(String, String), bool>,
}

impl<'a> Sender<'a> {
    pub fn key(state: &'a AppState, key: &'a ApiKey) -> Self {
        Self::new(state, &key.organization_id, key.project_id.as_deref(), Some(&key.id))
    }

    /// A person of the organization, with `Action::Write` checked by the caller.
    pub fn person(state: &'a AppState, organization_id: &'a str) -> Self {
        Self::new(state, organization_id, None, None)
    }

    fn new(
        state: &'a AppState,
        organization_id: &'a str,
        own_project: Option<&'a str>,
        api_key_id: Option<&'a str>,
    ) -> Self {
        Self {
            state,
            organization_id,
            own_project,
            api_key_id,
            conn: None,
            projects: HashMap::new(),
            credentials: HashMap::new(),
        }
    }

    async fn conn(&mut self) -> Result<&mut PooledConnection, ApiError> {
        match &mut self.conn {
            Some(conn) => Ok(conn),
            none => Ok(none.insert(self.state.db.get().await?)),
        }
    }
}
/// A validated message, ready to commit.
pub struct Prepared {
    pub message: NewMessage,
    events: Vec<Event>,
    queued: bool,
}

impl Prepared {
    pub fn add_to(self, submission: &mut Submission) {
        if self.queued {
            submission.enqueue.push(self.message.id.clone());
        }
        submission.events.extend(self.events);
        submission.messages.push(self.message);
    }
}

/// Validates one send body (either shape) and builds its rows.
pub async fn prepare(
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
            match (&request.content, &request.template) {
                (Some(given), None) => {
                    content = content::check_content(
                        &mut check,
                        if legacy { "payload" } else { "content" },
                        channel,
                        given,
                    );
                }
                (None, Some(template)) => check_template_ref(&mut check, template),
                (Some(_), Some(_)) => check.error("template", "give content or template, not both"),
                (None, None) => check.error("content", "content or template is required"),
            }
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
    let Some(channel) = channel else {
        return Err(ApiError::internal("validated channel missing"));
    };

    let project_field = if legacy { "projectSlug" } else { "project" };
    let project_id = resolve_project(sender, request.project.as_deref(), project_field).await?;
    let mut rendered_from = None;
    let content = match (content, &request.template) {
        (Some(content), _) => content,
        (None, Some(template)) => {
            let (content, published) =
                render_template(sender, &project_id, channel, template).await?;
            rendered_from = Some((published.template_id.clone(), published.version));
            content
        }
        (None, None) => return Err(ApiError::internal("validated content missing")),
    };
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
        organization_id: sender.organization_id.to_owned(),
        project_id,
        api_key_id: sender.api_key_id.map(str::to_owned),
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
        template_id: rendered_from.as_ref().map(|(id, _)| id.clone()),
        template_version: rendered_from.map(|(_, version)| version),
    };
    Ok(Prepared { message, events, queued: !scheduled })
}

/// Checks `template` of a send body: a name, a version from 1, variables in an object.
fn check_template_ref(check: &mut Validator, template: &TemplateRef) {
    if template.id.trim().is_empty() {
        check.error("template.id", "must be a template's id or slug");
    }
    if template.version.is_some_and(|v| v < 1) {
        check.error("template.version", "must be a published version, from 1");
    }
    if template.variables.as_ref().is_some_and(|v| !v.is_object() && !v.is_null()) {
        check.error("template.variables", "must be a JSON object");
    }
}

/// Renders the template a send names for `channel`: its content, and the version it came
/// from.
async fn render_template(
    sender: &mut Sender<'_>,
    project_id: &str,
    channel: Channel,
    template: &TemplateRef,
) -> Result<(Value, Arc<Published>), ApiError> {
    let (state, organization_id) = (sender.state, sender.organization_id);
    // from the cache without a connection: a project-bound key's send then takes none at all
    let published = match state.tenants.template(project_id, &template.id, template.version) {
        Some(found) => found,
        None => {
            let conn = sender.conn().await?;
            templates::for_sending(
                state,
                conn,
                organization_id,
                project_id,
                &template.id,
                template.version,
            )
            .await?
        }
    };
    if published.channel != channel.as_str() {
        return Err(ApiError::invalid_field(
            "template.id",
            format!("this template is for {}, not {}", published.channel, channel.as_str()),
        ));
    }
    let empty = Map::new();
    let variables = template.variables.as_ref().and_then(Value::as_object).unwrap_or(&empty);
    let rendered = published.template.render(TEMPLATE_FIELDS, variables);
    let content = templates::checked(TEMPLATE_FIELDS, channel, rendered)?;
    Ok((content, published))
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
        content: Some(content),
        template: None,
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
    let named = match (named, sender.own_project) {
        (None, Some(own)) => return Ok(own.to_owned()),
        (None, None) => {
            return Err(ApiError::invalid_field(
                field,
                "is required for organization-wide API keys",
            ));
        }
        (Some(named), _) => named,
    };
    if !sender.projects.contains_key(named) {
        let organization_id = sender.organization_id.to_owned();
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
    match (sender.projects.get(named).cloned().flatten(), sender.own_project) {
        (Some(id), Some(own)) if id != own => Err(ApiError::not_found("project")),
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
        let organization_id = sender.organization_id.to_owned();
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
    let organization_id = sender.organization_id.to_owned();
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

/// Commits `submission`, counting what it accepted; the committer's failures as the answers
/// the sender gets.
pub async fn commit(state: &AppState, submission: Submission) -> Result<Outcome, ApiError> {
    // one counter update per channel, not per message (a batch holds up to 1000)
    let mut accepted: Vec<(String, u64)> = Vec::new();
    for message in &submission.messages {
        match accepted.iter_mut().find(|(channel, _)| *channel == message.channel) {
            Some((_, count)) => *count += 1,
            None => accepted.push((message.channel.clone(), 1)),
        }
    }
    match state.ingest.submit(submission).await {
        Ok(outcome) => {
            if matches!(outcome, Outcome::Committed) {
                for (channel, count) in accepted {
                    state.metrics.messages_accepted.with_label_values(&[&channel]).inc_by(count);
                }
            }
            Ok(outcome)
        }
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
