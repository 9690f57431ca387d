//! A project's templates as people change them: a draft edited at will, published into
//! immutable versions, previewed with variables; and the lookup a send makes to render one.
//! The JSON API (`/v1/projects/{projectId}/templates`) and the dashboard call these.
//!
//! A draft is checked when saved: its strings must compile, and it must have the shape of its
//! channel's `content` (required fields present, addresses literal), so that publishing a
//! draft never makes a version that cannot send. Whether the variables fit is known only when
//! a message (or a preview) gives them.

use std::sync::Arc;

use chrono::Utc;
use serde_json::{Map, Value};

use crate::auth::{Access, Action};
use crate::db::PooledConnection;
use crate::db::templates::{self, NewTemplate, Published, Template, TemplateChanges, Version};
use crate::domain::channel::Channel;
use crate::domain::content::check_content;
use crate::domain::ids;
use crate::domain::slug;
use crate::domain::template::{Compiled, Fields, check_sources, render};
use crate::domain::validate::{FieldError, Validator};
use crate::error::{ApiError, conflict_on_unique};
use crate::manage::projects::visible;
use crate::state::AppState;

/// A new template, as asked for.
#[derive(Debug, Default)]
pub struct NewDraft {
    pub name: String,
    /// Made from the name when absent (the first of `name`, `name-2`... that is free).
    pub slug: Option<String>,
    pub channel: String,
    pub content: Value,
}

/// Changes to a template; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct DraftChanges {
    pub name: Option<String>,
    pub slug: Option<String>,
    pub content: Option<Value>,
}

/// Checks a draft's content for `channel` into `check`, under `content`.
fn check_draft(check: &mut Validator, channel: Channel, content: &Value) {
    if !content.is_object() {
        check.error("content", "must be a JSON object");
        return;
    }
    for error in check_sources("content", content) {
        check.error(error.field, error.message);
    }
    check_content(check, "content", channel, content);
}

fn taken(result: diesel::QueryResult<Template>) -> Result<Template, ApiError> {
    conflict_on_unique(result, "slug: another template of this project has this slug").map_err(
        |e| {
            if e.code() == "conflict" {
                e.with_details(vec![FieldError::new("slug", "is taken by another template")])
            } else {
                e
            }
        },
    )
}

/// Creates a template with its draft (owner or admin).
pub async fn create(
    state: &AppState,
    access: &Access,
    project: &str,
    new: NewDraft,
) -> Result<Template, ApiError> {
    access.require(Action::Write)?;
    let mut check = Validator::new();
    check.name("name", &new.name);
    if let Some(slug) = &new.slug {
        check.slug("slug", slug);
    }
    match Channel::parse(&new.channel) {
        None => check.error("channel", "must be email, sms, whatsapp or discord"),
        Some(channel) => check_draft(&mut check, channel, &new.content),
    }
    check.finish()?;
    let mut conn = state.db.get().await?;
    let project = visible(&mut conn, access, project).await?;
    // a name given twice gets `welcome`, then `welcome-2`; a slug asked for is kept or refused
    let slug = match new.slug {
        Some(slug) => slug,
        None => {
            let base = slug::slugify(&new.name, "template");
            slug::first_free(&base, &templates::slugs_like(&mut conn, &project.id, &base).await?)
        }
    };
    let now = Utc::now();
    let id = ids::new_id(ids::TEMPLATE);
    let row = NewTemplate {
        id: &id,
        organization_id: &project.organization_id,
        project_id: &project.id,
        slug: &slug,
        name: new.name.trim(),
        channel: &new.channel,
        draft: &new.content,
        created_at: now,
        updated_at: now,
    };
    taken(templates::insert(&mut conn, row).await)
}

/// One template of a visible project, by id or slug; 404 for another project's or tenant's.
pub async fn find(
    conn: &mut PooledConnection,
    access: &Access,
    project: &str,
    template: &str,
) -> Result<Template, ApiError> {
    let project = visible(conn, access, project).await?;
    templates::find(conn, &access.org.id, &project.id, template)
        .await?
        .ok_or_else(|| ApiError::not_found("template"))
}

/// Changes a template's name, slug or draft (owner or admin). Published versions stay as
/// they are.
pub async fn update(
    state: &AppState,
    access: &Access,
    project: &str,
    template: &str,
    changes: DraftChanges,
) -> Result<Template, ApiError> {
    access.require(Action::Write)?;
    let mut conn = state.db.get().await?;
    let found = find(&mut conn, access, project, template).await?;
    let mut check = Validator::new();
    if let Some(name) = &changes.name {
        check.name("name", name);
    }
    if let Some(slug) = &changes.slug {
        check.slug("slug", slug);
    }
    if let Some(content) = &changes.content {
        let channel =
            Channel::parse(&found.channel).ok_or_else(|| ApiError::internal("channel"))?;
        check_draft(&mut check, channel, content);
    }
    check.finish()?;
    let renamed = changes.slug.as_ref().is_some_and(|s| *s != found.slug);
    let row = TemplateChanges {
        name: changes.name.map(|n| n.trim().to_owned()),
        slug: changes.slug,
        draft: changes.content,
        updated_at: Some(Utc::now()),
    };
    let updated = taken(templates::update(&mut conn, &found.id, &row).await)?;
    if renamed {
        // sends name templates by slug through the cache
        state.tenants.invalidate_everywhere(&state.redis).await;
    }
    Ok(updated)
}

/// Deletes a template and its versions (owner or admin). Messages rendered from it keep
/// their content and the record of where it came from.
pub async fn delete(
    state: &AppState,
    access: &Access,
    project: &str,
    template: &str,
) -> Result<(), ApiError> {
    access.require(Action::Write)?;
    let mut conn = state.db.get().await?;
    let found = find(&mut conn, access, project, template).await?;
    templates::delete(&mut conn, &found.id).await?;
    state.tenants.invalidate_everywhere(&state.redis).await;
    Ok(())
}

/// Publishes the draft as the next version (owner or admin); sends without a version take
/// it from now on.
pub async fn publish(
    state: &AppState,
    access: &Access,
    project: &str,
    template: &str,
) -> Result<Version, ApiError> {
    access.require(Action::Write)?;
    let mut conn = state.db.get().await?;
    let found = find(&mut conn, access, project, template).await?;
    let by = access.user().map(|u| u.id.clone());
    let version = templates::publish(&mut conn, &found.id, by.as_deref(), Utc::now()).await?;
    state.tenants.invalidate_everywhere(&state.redis).await;
    Ok(version)
}

/// One published version.
pub async fn version(
    conn: &mut PooledConnection,
    access: &Access,
    project: &str,
    template: &str,
    number: i32,
) -> Result<Version, ApiError> {
    let found = find(conn, access, project, template).await?;
    templates::version(conn, &found.id, number)
        .await?
        .ok_or_else(|| ApiError::not_found("template version"))
}

/// What a template renders with `variables`: the draft's when `version` is `None`. Errors
/// as a send would answer them.
pub async fn preview(
    conn: &mut PooledConnection,
    access: &Access,
    project: &str,
    template: &str,
    version: Option<i32>,
    variables: &Map<String, Value>,
) -> Result<Value, ApiError> {
    access.require(Action::Read)?;
    let found = find(conn, access, project, template).await?;
    let source = match version {
        None => found.draft.clone(),
        Some(number) => {
            templates::version(conn, &found.id, number)
                .await?
                .ok_or_else(|| version_not_found(number))?
                .content
        }
    };
    let channel = Channel::parse(&found.channel).ok_or_else(|| ApiError::internal("channel"))?;
    let fields = Fields { content: "content", variables: "variables" };
    checked(fields, channel, render(fields, &source, variables))
}

/// Checks what a template rendered as a message's `content` (errors under `fields.content`).
pub fn checked(
    fields: Fields<'_>,
    channel: Channel,
    rendered: Result<Value, Vec<FieldError>>,
) -> Result<Value, ApiError> {
    let rendered = rendered.map_err(ApiError::validation)?;
    let mut check = Validator::new();
    let content = check_content(&mut check, fields.content, channel, &rendered);
    check.finish()?;
    content.ok_or_else(|| ApiError::internal("rendered content missing"))
}

fn version_not_found(number: i32) -> ApiError {
    let message = format!("this template has no version {number}");
    ApiError::not_found("template version")
        .with_message(format!("template.version: {message}"))
        .with_details(vec![FieldError::new("template.version", message)])
}

/// The version a send names (`None`: the latest published) of the template `name` (id or
/// slug) of a project, read and put in the tenant cache (the caller looks there first, before
/// it takes a connection): 404 naming `template.id` or `template.version` when there is no
/// such template or version, 400 when none is published.
pub async fn for_sending(
    state: &AppState,
    conn: &mut PooledConnection,
    organization_id: &str,
    project_id: &str,
    name: &str,
    version: Option<i32>,
) -> Result<Arc<Published>, ApiError> {
    let cache = &state.tenants;
    let since = cache.generation();
    let found = templates::for_sending(conn, organization_id, project_id, name, version).await?;
    let Some((template, found)) = found else {
        let message = "no template of this project has this id or slug";
        return Err(ApiError::not_found("template")
            .with_message(format!("template.id: {message}"))
            .with_details(vec![FieldError::new("template.id", message)]));
    };
    let Some(found) = found else {
        return Err(match version {
            Some(number) => version_not_found(number),
            None => ApiError::invalid_field(
                "template.id",
                "this template has no published version yet: publish it, or name no template",
            ),
        });
    };
    // a version was checked when its draft was saved: one that no longer compiles (an engine
    // upgrade stricter than the last) is the server's to sort out
    let compiled = Compiled::new("template.content", &found.content).map_err(|errors| {
        ApiError::internal(format!("{} does not compile: {errors:?}", template.id))
    })?;
    let published = Arc::new(Published {
        template_id: template.id,
        channel: template.channel,
        version: found.version,
        template: compiled,
    });
    cache.insert_template(since, project_id, name, version, published.clone());
    Ok(published)
}
