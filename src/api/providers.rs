//! `/v1/providers`: a tenant's credentials for the services that deliver its messages.
//!
//! Credentials are checked against their type's schema (`crate::domain::provider_types`), sealed at rest
//! under the master key and never shown again: every read lists the stored credentials' fields
//! with each value redacted, while `config` reads back as stored. Members read; admins (and
//! `manage` keys) write and verify. Keys bound to a project see the organization's credentials
//! and their project's, and change only their project's.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::{AsyncConnection, AsyncPgConnection};
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
use crate::db::providers::{
    self, ListFilter, NewProviderCredential, ProviderChanges, ProviderCredential,
};
use crate::domain::channel::Channel;
use crate::domain::provider_types::ProviderType;
use crate::domain::validate::Validator;
use crate::domain::{ids, slug};
use crate::error::conflict_on_unique;
use crate::error::{ApiError, ErrorBody};
use crate::manage::projects;
use crate::providers::connector::OpenedCredential;
use crate::providers::credentials;
use crate::state::AppState;

const SLUG_TAKEN: &str = "a provider with this slug already exists";

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
        let credentials = match credentials::open(keys, &row) {
            Ok(fields) => fields.into_iter().map(|(k, _)| (k, Value::from(REDACTED))).collect(),
            Err(reason) => {
                // The row stays readable (its config, its state) even when its secrets do not
                // open; the fields are then unknown.
                tracing::warn!(provider = %row.id, %reason, "cannot open provider credentials");
                Map::new()
            }
        };
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

/// The credential `id_or_slug` as `access` may see it: another organization's, or another
/// project's than a project-bound key's own, is not found.
async fn visible(
    conn: &mut AsyncPgConnection,
    access: &Access,
    id_or_slug: &str,
    for_update: bool,
) -> Result<ProviderCredential, ApiError> {
    providers::find(conn, &access.org.id, id_or_slug, for_update)
        .await?
        .filter(|p| {
            access
                .project_scope()
                .is_none_or(|only| p.project_id.as_deref().is_none_or(|id| id == only))
        })
        .ok_or_else(|| ApiError::not_found("provider"))
}

/// A project-bound key reads the organization's credentials but changes only its project's.
fn require_writable(access: &Access, row: &ProviderCredential) -> Result<(), ApiError> {
    match row.project_id {
        Some(_) => Ok(()),
        None => access.require_org_wide(),
    }
}

fn stored_type(row: &ProviderCredential) -> Result<ProviderType, ApiError> {
    ProviderType::parse(&row.provider_type).ok_or_else(|| {
        ApiError::internal(format!("provider {}: unknown type {}", row.id, row.provider_type))
    })
}

async fn free_slug(
    conn: &mut AsyncPgConnection,
    org_id: &str,
    name: &str,
) -> Result<String, ApiError> {
    let base = slug::slugify(name, "provider");
    let taken = providers::slugs_like(conn, org_id, &base).await?;
    Ok(slug::first_free(&base, &taken))
}

fn check_name_and_slug(check: &mut Validator, name: Option<&str>, slug: Option<&str>) {
    if let Some(name) = name {
        check.name("name", name);
    }
    if let Some(slug) = slug {
        check.slug("slug", slug);
    }
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
    access.require(Action::Write)?;
    let body = body.0;
    let config = body.config.unwrap_or_else(|| Value::Object(Map::new()));
    let provider_type = body.provider_type;
    let mut check = Validator::new();
    check_name_and_slug(&mut check, Some(&body.name), body.slug.as_deref());
    if let Some(channel) = provider_type.channel().filter(|c| *c != body.channel) {
        check.error(
            "channel",
            format!("must be {} for providerType {}", channel.as_str(), provider_type.as_str()),
        );
    }
    provider_type.check_credentials(&body.credentials, &mut check);
    provider_type.check_config(&config, &state.config.providers, &mut check);
    check.finish()?;

    let mut conn = state.db.get().await?;
    let project_id = match &body.project_id {
        Some(project) => Some(projects::visible(&mut conn, &access, project).await?.id),
        None => {
            access.require_org_wide()?;
            None
        }
    };
    let slug = match body.slug {
        Some(slug) => slug,
        None => free_slug(&mut conn, &access.org.id, &body.name).await?,
    };
    let id = ids::new_id(ids::PROVIDER);
    let sealed = credentials::seal(&state.keys, &access.org.id, &id, &body.credentials);
    let new = NewProviderCredential {
        id: &id,
        organization_id: &access.org.id,
        project_id: project_id.as_deref(),
        name: body.name.trim(),
        slug: &slug,
        channel: body.channel.as_str(),
        provider_type: provider_type.as_str(),
        sealed_secrets: &sealed.bytes,
        secrets_key_id: &sealed.key_id,
        config: &config,
        is_active: body.is_active.unwrap_or(true),
        priority: body.priority.unwrap_or(0),
    };
    let row = match providers::insert(&mut conn, new).await {
        // the project was deleted since it was looked up
        Err(DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, _)) => {
            Err(ApiError::not_found("project"))
        }
        other => conflict_on_unique(other, SLUG_TAKEN),
    }?;
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
    access.require(Action::Read)?;
    let mut conn = state.db.get().await?;
    let row = visible(&mut conn, &access, &path, false).await?;
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
    access.require(Action::Write)?;
    let body = body.0;
    let mut conn = state.db.get().await?;
    // Merging credentials reads, opens and re-seals them: the row stays locked meanwhile so
    // that concurrent merges each keep the other's fields.
    let updated = conn
        .transaction::<_, ApiError, _>(async |conn| {
            let row = visible(conn, &access, &path, true).await?;
            require_writable(&access, &row)?;
            let provider_type = stored_type(&row)?;
            let mut check = Validator::new();
            check_name_and_slug(&mut check, body.name.as_deref(), body.slug.as_deref());
            if let Some(config) = &body.config {
                provider_type.check_config(config, &state.config.providers, &mut check);
            }
            let credentials = match &body.credentials {
                None => None,
                Some(Value::Object(patch)) => {
                    let mut fields = credentials::open(&state.keys, &row).map_err(|reason| {
                        ApiError::internal(format!("provider {}: {reason}", row.id))
                    })?;
                    for (field, value) in patch {
                        if value.is_null() {
                            fields.remove(field);
                        } else {
                            fields.insert(field.clone(), value.clone());
                        }
                    }
                    let merged = Value::Object(fields);
                    provider_type.check_credentials(&merged, &mut check);
                    Some(merged)
                }
                Some(_) => {
                    check.error("credentials", "must be a JSON object");
                    None
                }
            };
            check.finish()?;
            let sealed = credentials
                .map(|c| credentials::seal(&state.keys, &row.organization_id, &row.id, &c));
            let (sealed_secrets, secrets_key_id) = sealed.map(|s| (s.bytes, s.key_id)).unzip();
            let changes = ProviderChanges {
                name: body.name.as_deref().map(|n| n.trim().to_owned()),
                slug: body.slug.clone(),
                sealed_secrets,
                secrets_key_id,
                config: body.config.clone(),
                is_active: body.is_active,
                priority: body.priority,
                updated_at: Utc::now(),
            };
            conflict_on_unique(
                providers::update(conn, &access.org.id, &row.id, changes).await,
                SLUG_TAKEN,
            )?
            .ok_or_else(|| ApiError::not_found("provider"))
        })
        .await?;
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
    access.require(Action::Write)?;
    let mut conn = state.db.get().await?;
    let row = visible(&mut conn, &access, &path, false).await?;
    require_writable(&access, &row)?;
    providers::delete(&mut conn, &access.org.id, &row.id).await?;
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
    access.require(Action::Write)?;
    let mut conn = state.db.get().await?;
    let row = visible(&mut conn, &access, &path, false).await?;
    // verifying calls the provider with the secrets: a project's key may not use the
    // organization's for that, as it may not change them
    require_writable(&access, &row)?;
    let provider_type = stored_type(&row)?;
    // Whatever the provider says, the stored secrets must open first.
    let secrets = credentials::open(&state.keys, &row)
        .map_err(|reason| ApiError::internal(format!("provider {}: {reason}", row.id)))?;
    // the pooled connection is not held across the provider call
    drop(conn);
    let credential = OpenedCredential::new(row.id, row.slug, provider_type, row.config, secrets);
    // the process's connectors, whose clients (cached per credential) the worker shares
    let check = state.connectors.connector(provider_type).verify(&credential);
    let timeout = state.config.delivery.provider_timeout;
    let result = match tokio::time::timeout(timeout, check).await {
        Ok(Ok(detail)) => VerifyResult { ok: true, detail },
        Ok(Err(error)) => VerifyResult { ok: false, detail: format!("{}: {error}", error.kind()) },
        Err(_) => VerifyResult {
            ok: false,
            detail: format!(
                "no answer from the provider within {}",
                humantime::format_duration(timeout)
            ),
        },
    };
    Ok(HttpResponse::Ok().json(result))
}
