//! `/v1/providers`: a tenant's credentials for the services that deliver its messages.
//!
//! Credentials are checked against their type's schema (`crate::domain::provider_types`), sealed at rest
//! under the master key and never shown again: every read lists the stored credentials' fields
//! with each value redacted, while `config` reads back as stored. Members read; admins (and
//! `manage` keys) write and verify. Keys bound to a project see the organization's credentials
//! and their project's, and change only their project's. The rules live in
//! `crate::manage::providers`, which the dashboard's pages apply too.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::{IntoParams, ToSchema};

use crate::domain::schema::one_of;

use crate::api::json::Json;
use crate::api::pagination::{Page, PageRequest};
use crate::auth::{Access, Action};
use crate::config::REDACTED;
use crate::crypto::MasterKeys;
use crate::db::Cursor;
use crate::db::providers::{self, ListFilter, ProviderCredential};
use crate::domain::channel::Channel;
use crate::domain::provider_types::ProviderType;
use crate::error::{ApiError, ErrorBody};
use crate::manage::projects;
use crate::manage::providers::{self as manage, NewProvider, ProviderEdit, Verification};
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/providers").get(list).post(create))
        .service(web::resource("/providers/{providerId}").get(get).patch(update).delete(delete))
        .service(web::resource("/providers/{providerId}/verify").post(verify));
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderView {
    pub id: String,
    pub organization_id: String,
    /// `null` for credentials of the whole organization.
    pub project_id: Option<String>,
    pub name: String,
    pub slug: String,
    pub channel: String,
    pub provider_type: String,
    /// The stored credentials' fields, every value `********`.
    #[schema(value_type = Object)]
    pub credentials: Map<String, Value>,
    #[schema(value_type = Object)]
    pub config: Value,
    pub is_active: bool,
    /// Lower is tried first.
    pub priority: i32,
    /// Why the provider last refused these credentials.
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl ProviderView {
    fn of(row: ProviderCredential, keys: &MasterKeys) -> Self {
        let credentials = manage::stored_secrets(keys, &row)
            .unwrap_or_default()
            .into_iter()
            .map(|name| (name, Value::from(REDACTED)))
            .collect();
        Self {
            id: row.id,
            organization_id: row.organization_id,
            project_id: row.project_id,
            name: row.name,
            slug: row.slug,
            channel: row.channel,
            provider_type: row.provider_type,
            credentials,
            config: row.config,
            is_active: row.is_active,
            priority: row.priority,
            last_error: row.last_error,
            last_error_at: row.last_error_at,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

// Request bodies carry secrets: no `Debug`, so they cannot end up in a log line.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateProvider {
    #[schema(value_type = crate::domain::schema::DisplayName)]
    pub name: String,
    /// Generated from the name when absent; unique in the organization.
    #[schema(value_type = Option<crate::domain::schema::Slug>)]
    pub slug: Option<String>,
    pub channel: Channel,
    pub provider_type: ProviderType,
    /// A project of the organization (id or slug); absent for the whole organization.
    pub project_id: Option<String>,
    /// The type's secrets: `ses`/`sns` `{accessKeyId, secretAccessKey}`, `smtp` `{username?,
    /// password?}`, `whatsapp_cloud` `{accessToken, appSecret?, verifyToken?}`, `discord_bot` `{botToken}`,
    /// `sandbox` `{}`.
    #[schema(value_type = Object)]
    pub credentials: Value,
    /// The type's settings: `ses` `{region, fromAddress, configurationSet?, endpointUrl?,
    /// snsTopicArns?}` (the SNS topics its delivery receipts come from; none taken without),
    /// `smtp` `{host, port, tls, fromAddress}`, `sns` `{region, senderId?, originationNumber?,
    /// smsType?, endpointUrl?}`, `whatsapp_cloud` `{phoneNumberId, apiVersion?, baseUrl?}`,
    /// `discord_bot` `{baseUrl?}`, `sandbox` `{latencyMs?, failRate?, failMode?, failFirst?, retryAfterMs?}`.
    /// Every type also takes `rateLimit?`: provider calls per second with this credential
    /// (1 to 100000), instead of the server's default for its type.
    #[schema(value_type = Option<Object>)]
    pub config: Option<Value>,
    pub is_active: Option<bool>,
    pub priority: Option<i32>,
}

/// The body of `POST /v1/providers` as the document states it: the fields of
/// [`CreateProvider`], one alternative per provider type, each with the type's own
/// `credentials` and `config` and the channels it serves.
pub struct CreateProviderBody;

impl utoipa::PartialSchema for CreateProviderBody {
    fn schema() -> RefOr<Schema> {
        let base = match <CreateProvider as utoipa::PartialSchema>::schema() {
            RefOr::T(Schema::Object(object)) => object,
            other => return other,
        };
        let alternatives = ProviderType::ALL.map(|provider_type| {
            let mut object = base.clone();
            let channels: Vec<&str> = match provider_type.channel() {
                Some(channel) => vec![channel.as_str()],
                None => Channel::ALL.map(Channel::as_str).to_vec(),
            };
            let config = if provider_type.config_required() {
                object.required.push("config".to_owned());
                provider_type.config_schema()
            } else {
                OneOfBuilder::new()
                    .item(ObjectBuilder::new().schema_type(Type::Null))
                    .item(provider_type.config_schema())
                    .into()
            };
            let properties = [
                ("providerType", one_of(&[provider_type.as_str()]).into()),
                ("channel", one_of(&channels).into()),
                ("credentials", provider_type.credentials_schema()),
                ("config", config),
            ];
            for (name, schema) in properties {
                object.properties.insert(name.to_owned(), schema);
            }
            object.title = Some(provider_type.as_str().to_owned());
            object
        });
        let mut one_of_types = OneOfBuilder::new();
        for alternative in alternatives {
            one_of_types = one_of_types.item(alternative);
        }
        one_of_types.into()
    }
}

impl ToSchema for CreateProviderBody {
    fn name() -> std::borrow::Cow<'static, str> {
        "CreateProvider".into()
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        <CreateProvider as ToSchema>::schemas(schemas);
        ProviderType::schemas(schemas);
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdateProvider {
    #[schema(value_type = Option<crate::domain::schema::DisplayName>)]
    pub name: Option<String>,
    #[schema(value_type = Option<crate::domain::schema::Slug>)]
    pub slug: Option<String>,
    /// Merged into the stored credentials: fields given replace theirs, `null` removes one,
    /// fields left out keep their sealed value.
    #[schema(value_type = Option<Object>)]
    pub credentials: Option<Value>,
    /// Replaces the stored config.
    #[schema(value_type = Option<Object>)]
    pub config: Option<Value>,
    pub is_active: Option<bool>,
    pub priority: Option<i32>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListQuery {
    /// Only credentials of this channel.
    #[param(value_type = Option<Channel>, inline)]
    pub channel: Option<String>,
    /// Only credentials of this project (id or slug).
    pub project_id: Option<String>,
    #[param(value_type = Option<crate::api::pagination::PageLimit>, inline)]
    pub limit: Option<i64>,
    #[param(value_type = Option<crate::api::pagination::PageCursor>, inline)]
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyResult {
    /// Whether the provider accepted the credentials.
    pub ok: bool,
    pub detail: String,
}

/// Stores credentials for a provider (owner or admin).
#[utoipa::path(post, path = "/v1/providers", tag = "providers", request_body = CreateProviderBody,
    security(("session" = []), ("sessionCookie" = []), ("apiKey" = []), ("apiKeyHeader" = [])), params(crate::api::openapi::OrganizationHeader),
    responses((status = 201, body = ProviderView),
        (status = 409, description = "`conflict`: the slug is taken", body = ErrorBody)))]
pub async fn create(
    state: web::Data<AppState>,
    access: Access,
    body: Json<CreateProvider>,
) -> Result<HttpResponse, ApiError> {
    let body = body.0;
    let new = NewProvider {
        name: body.name,
        slug: body.slug,
        channel: body.channel,
        provider_type: body.provider_type,
        project_id: body.project_id,
        credentials: body.credentials,
        config: body.config,
        is_active: body.is_active,
        priority: body.priority,
    };
    let row = manage::create(&state, &access, new).await?;
    Ok(HttpResponse::Created().json(ProviderView::of(row, &state.keys)))
}

/// Lists the credentials visible to the caller, newest first.
#[utoipa::path(get, path = "/v1/providers", tag = "providers", params(ListQuery, crate::api::openapi::OrganizationHeader),
    security(("session" = []), ("sessionCookie" = []), ("apiKey" = []), ("apiKeyHeader" = [])), responses((status = 200, body = Page<ProviderView>)))]
pub async fn list(
    state: web::Data<AppState>,
    access: Access,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    access.require(Action::Read)?;
    let query = query.into_inner();
    let page = PageRequest::new(query.limit, query.cursor.as_deref())?;
    let channel = match query.channel.as_deref().filter(|c| !c.is_empty()) {
        Some(text) => Some(Channel::parse(text).ok_or_else(|| {
            ApiError::invalid_field("channel", "must be one of email, sms, whatsapp, discord")
        })?),
        None => None,
    };
    let mut conn = state.db.get().await?;
    let project_id = match query.project_id.as_deref().filter(|p| !p.is_empty()) {
        Some(project) => Some(projects::visible(&mut conn, &access, project).await?.id),
        None => None,
    };
    let filter = ListFilter {
        channel: channel.map(Channel::as_str),
        project_id: project_id.as_deref(),
        visible_to: access.project_scope(),
    };
    let rows =
        providers::list(&mut conn, &access.org.id, filter, page.after.as_ref(), page.fetch())
            .await?;
    let key = |p: &ProviderCredential| Cursor { created_at: p.created_at, id: p.id.clone() };
    Ok(HttpResponse::Ok().json(page.page(rows, key, |row| ProviderView::of(row, &state.keys))))
}

/// One provider's credentials (redacted), by id or slug.
#[utoipa::path(get, path = "/v1/providers/{providerId}", tag = "providers", security(("session" = []), ("sessionCookie" = []), ("apiKey" = []), ("apiKeyHeader" = [])),
    params(("providerId" = String, Path, description = "id or slug", example = "prv_01jf3q6zvqe3f7m1s9gkxw5h2c"), crate::api::openapi::OrganizationHeader), responses((status = 200, body = ProviderView)))]
pub async fn get(
    state: web::Data<AppState>,
    access: Access,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let row = manage::get(&state, &access, &path).await?;
    Ok(HttpResponse::Ok().json(ProviderView::of(row, &state.keys)))
}

/// Changes a provider's settings or credentials (owner or admin). `channel`, `providerType`
/// and `projectId` cannot change.
#[utoipa::path(patch, path = "/v1/providers/{providerId}", tag = "providers", security(("session" = []), ("sessionCookie" = []), ("apiKey" = []), ("apiKeyHeader" = [])),
    params(("providerId" = String, Path, description = "id or slug", example = "prv_01jf3q6zvqe3f7m1s9gkxw5h2c"), crate::api::openapi::OrganizationHeader), request_body = UpdateProvider,
    responses((status = 200, body = ProviderView),
        (status = 409, description = "`conflict`: the slug is taken", body = ErrorBody)))]
pub async fn update(
    state: web::Data<AppState>,
    access: Access,
    path: web::Path<String>,
    body: Json<UpdateProvider>,
) -> Result<HttpResponse, ApiError> {
    let body = body.0;
    let edit = ProviderEdit {
        name: body.name,
        slug: body.slug,
        credentials: body.credentials,
        config: body.config,
        is_active: body.is_active,
        priority: body.priority,
    };
    let updated = manage::update(&state, &access, &path, edit).await?;
    Ok(HttpResponse::Ok().json(ProviderView::of(updated, &state.keys)))
}

/// Deletes a provider's credentials (owner or admin).
#[utoipa::path(delete, path = "/v1/providers/{providerId}", tag = "providers", security(("session" = []), ("sessionCookie" = []), ("apiKey" = []), ("apiKeyHeader" = [])),
    params(("providerId" = String, Path, description = "id or slug", example = "prv_01jf3q6zvqe3f7m1s9gkxw5h2c"), crate::api::openapi::OrganizationHeader), responses((status = 204, description = "deleted")))]
pub async fn delete(
    state: web::Data<AppState>,
    access: Access,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    manage::delete(&state, &access, &path).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Checks the credentials with one cheap authenticated call to the provider (owner or admin):
/// SES GetAccount, SNS GetSMSAttributes, Graph's phone number lookup, Discord's `users/@me`,
/// SMTP NOOP after authentication. A refusal by the provider, or no answer from it, is
/// `200 {ok: false, detail}`, the detail led by the error's kind (`credential: ...`). A key
/// bound to a project verifies its project's credentials only (403 for the organization's).
#[utoipa::path(post, path = "/v1/providers/{providerId}/verify", tag = "providers", security(("session" = []), ("sessionCookie" = []), ("apiKey" = []), ("apiKeyHeader" = [])),
    params(("providerId" = String, Path, description = "id or slug", example = "prv_01jf3q6zvqe3f7m1s9gkxw5h2c"), crate::api::openapi::OrganizationHeader), responses((status = 200, body = VerifyResult)))]
pub async fn verify(
    state: web::Data<AppState>,
    access: Access,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let Verification { ok, detail } = manage::verify(&state, &access, &path).await?;
    Ok(HttpResponse::Ok().json(VerifyResult { ok, detail }))
}
