//! Provider credentials: added, changed, deleted and verified with the rules of
//! `/v1/providers` and of the dashboard's providers pages alike. Credentials are checked
//! against their type's schema (`crate::domain::provider_types`) and sealed at rest under the
//! master key; nothing here hands a secret back, only the names of the fields stored. Admins
//! (and `manage` keys) write and verify; keys bound to a project see the organization's
//! credentials and their project's, and change only their project's.

use chrono::Utc;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde_json::{Map, Value};

use crate::auth::{Access, Action};
use crate::crypto::MasterKeys;
use crate::db::providers::{self, NewProviderCredential, ProviderChanges, ProviderCredential};
use crate::domain::channel::Channel;
use crate::domain::provider_types::ProviderType;
use crate::domain::validate::Validator;
use crate::domain::{ids, slug};
use crate::error::{ApiError, conflict_on_unique};
use crate::manage::projects;
use crate::providers::connector::OpenedCredential;
use crate::providers::credentials;
use crate::state::AppState;

const SLUG_TAKEN: &str = "a provider with this slug already exists";

/// A credential to add. No `Debug`: it carries secrets.
pub struct NewProvider {
    pub name: String,
    /// Generated from the name when absent.
    pub slug: Option<String>,
    pub channel: Channel,
    pub provider_type: ProviderType,
    /// A project of the organization (id or slug); `None` for the whole organization.
    pub project_id: Option<String>,
    pub credentials: Value,
    pub config: Option<Value>,
    pub is_active: Option<bool>,
    pub priority: Option<i32>,
}

/// Changes to a credential; `None` keeps what is stored. No `Debug`: it carries secrets.
#[derive(Default)]
pub struct ProviderEdit {
    pub name: Option<String>,
    pub slug: Option<String>,
    /// Merged into the stored credentials: fields given replace theirs, `null` removes one,
    /// fields left out keep their sealed value.
    pub credentials: Option<Value>,
    /// Replaces the stored config.
    pub config: Option<Value>,
    pub is_active: Option<bool>,
    pub priority: Option<i32>,
}

/// What the provider said of the credentials.
pub struct Verification {
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

/// The type a stored credential was checked against.
pub fn stored_type(row: &ProviderCredential) -> Result<ProviderType, ApiError> {
    ProviderType::parse(&row.provider_type).ok_or_else(|| {
        ApiError::internal(format!("provider {}: unknown type {}", row.id, row.provider_type))
    })
}

/// The names of the secrets stored with `row`, never their values; `None` when they do not
/// open (the row stays readable, its config and state, while its secrets are unknown).
pub fn stored_secrets(keys: &MasterKeys, row: &ProviderCredential) -> Option<Vec<String>> {
    match credentials::open(keys, row) {
        Ok(fields) => Some(fields.into_iter().map(|(name, _)| name).collect()),
        Err(reason) => {
            tracing::warn!(provider = %row.id, %reason, "cannot open provider credentials");
            None
        }
    }
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
pub async fn create(
    state: &AppState,
    access: &Access,
    new: NewProvider,
) -> Result<ProviderCredential, ApiError> {
    access.require(Action::Write)?;
    let config = new.config.unwrap_or_else(|| Value::Object(Map::new()));
    let provider_type = new.provider_type;
    let mut check = Validator::new();
    check_name_and_slug(&mut check, Some(&new.name), new.slug.as_deref());
    if let Some(channel) = provider_type.channel().filter(|c| *c != new.channel) {
        check.error(
            "channel",
            format!("must be {} for providerType {}", channel.as_str(), provider_type.as_str()),
        );
    }
    provider_type.check_credentials(&new.credentials, &mut check);
    provider_type.check_config(&config, &state.config.providers, &mut check);
    check.finish()?;

    let mut conn = state.db.get().await?;
    let project_id = match &new.project_id {
        Some(project) => Some(projects::visible(&mut conn, access, project).await?.id),
        None => {
            access.require_org_wide()?;
            None
        }
    };
    let slug = match new.slug {
        Some(slug) => slug,
        None => free_slug(&mut conn, &access.org.id, &new.name).await?,
    };
    let id = ids::new_id(ids::PROVIDER);
    let sealed = credentials::seal(&state.keys, &access.org.id, &id, &new.credentials);
    let row = NewProviderCredential {
        id: &id,
        organization_id: &access.org.id,
        project_id: project_id.as_deref(),
        name: new.name.trim(),
        slug: &slug,
        channel: new.channel.as_str(),
        provider_type: provider_type.as_str(),
        sealed_secrets: &sealed.bytes,
        secrets_key_id: &sealed.key_id,
        config: &config,
        is_active: new.is_active.unwrap_or(true),
        priority: new.priority.unwrap_or(0),
    };
    match providers::insert(&mut conn, row).await {
        // the project was deleted since it was looked up
        Err(DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, _)) => {
            Err(ApiError::not_found("project"))
        }
        other => conflict_on_unique(other, SLUG_TAKEN),
    }
}

/// One credential (its secrets sealed), by id or slug.
pub async fn get(
    state: &AppState,
    access: &Access,
    id_or_slug: &str,
) -> Result<ProviderCredential, ApiError> {
    access.require(Action::Read)?;
    let mut conn = state.db.get().await?;
    visible(&mut conn, access, id_or_slug, false).await
}

/// Changes a credential's settings or secrets (owner or admin). Its channel, type and project
/// cannot change.
pub async fn update(
    state: &AppState,
    access: &Access,
    id_or_slug: &str,
    edit: ProviderEdit,
) -> Result<ProviderCredential, ApiError> {
    access.require(Action::Write)?;
    let mut conn = state.db.get().await?;
    // Merging credentials reads, opens and re-seals them: the row stays locked meanwhile so
    // that concurrent merges each keep the other's fields.
    conn.transaction::<_, ApiError, _>(async |conn| {
        let row = visible(conn, access, id_or_slug, true).await?;
        require_writable(access, &row)?;
        let provider_type = stored_type(&row)?;
        let mut check = Validator::new();
        check_name_and_slug(&mut check, edit.name.as_deref(), edit.slug.as_deref());
        if let Some(config) = &edit.config {
            provider_type.check_config(config, &state.config.providers, &mut check);
        }
        let credentials = match &edit.credentials {
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
        let sealed =
            credentials.map(|c| credentials::seal(&state.keys, &row.organization_id, &row.id, &c));
        let (sealed_secrets, secrets_key_id) = sealed.map(|s| (s.bytes, s.key_id)).unzip();
        let changes = ProviderChanges {
            name: edit.name.as_deref().map(|n| n.trim().to_owned()),
            slug: edit.slug.clone(),
            sealed_secrets,
            secrets_key_id,
            config: edit.config.clone(),
            is_active: edit.is_active,
            priority: edit.priority,
            updated_at: Utc::now(),
        };
        conflict_on_unique(
            providers::update(conn, &access.org.id, &row.id, changes).await,
            SLUG_TAKEN,
        )?
        .ok_or_else(|| ApiError::not_found("provider"))
    })
    .await
}

/// Deletes a credential (owner or admin).
pub async fn delete(state: &AppState, access: &Access, id_or_slug: &str) -> Result<(), ApiError> {
    access.require(Action::Write)?;
    let mut conn = state.db.get().await?;
    let row = visible(&mut conn, access, id_or_slug, false).await?;
    require_writable(access, &row)?;
    providers::delete(&mut conn, &access.org.id, &row.id).await?;
    Ok(())
}

/// Checks the credentials with one cheap authenticated call to the provider (owner or admin).
/// A refusal by the provider, or no answer from it, is a `Verification` that is not ok, its
/// detail led by the error's kind (`credential: ...`); a key bound to a project verifies its
/// project's credentials only.
pub async fn verify(
    state: &AppState,
    access: &Access,
    id_or_slug: &str,
) -> Result<Verification, ApiError> {
    access.require(Action::Write)?;
    let mut conn = state.db.get().await?;
    let row = visible(&mut conn, access, id_or_slug, false).await?;
    // verifying calls the provider with the secrets: a project's key may not use the
    // organization's for that, as it may not change them
    require_writable(access, &row)?;
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
    Ok(match tokio::time::timeout(timeout, check).await {
        Ok(Ok(detail)) => Verification { ok: true, detail },
        Ok(Err(error)) => Verification { ok: false, detail: format!("{}: {error}", error.kind()) },
        Err(_) => Verification {
            ok: false,
            detail: format!(
                "no answer from the provider within {}",
                humantime::format_duration(timeout)
            ),
        },
    })
}
