//! A project's suppression list as people change it: entries added by hand (`manual`), the
//! list searched, entries removed so that an address may be sent to again. The JSON API
//! (`/v1/projects/{projectId}/suppressions`) and the dashboard call these; receipts and the
//! unsubscribe link add entries themselves (`db::receipts`, `crate::unsubscribe`).

use chrono::Utc;

use crate::auth::{Access, Action};
use crate::db::PooledConnection;
use crate::db::projects::Project;
use crate::db::suppressions::{self, ListFilter, NewSuppression, Suppression};
use crate::domain::channel::Channel;
use crate::domain::ids;
use crate::domain::recipient::check_recipient;
use crate::domain::suppression::{MAX_NOTE_CHARS, Reason, address_key};
use crate::domain::validate::{FieldError, Validator};
use crate::error::ApiError;
use crate::manage::projects::visible;

/// The longest `search` of a list.
pub const MAX_SEARCH_CHARS: usize = 100;

/// An entry to add by hand.
#[derive(Debug, Default)]
pub struct NewEntry {
    pub channel: String,
    pub address: String,
    pub note: Option<String>,
}

/// Adds an entry (owner or admin); 409 naming the existing entry when the address is listed.
pub async fn add(
    conn: &mut PooledConnection,
    access: &Access,
    project: &str,
    entry: NewEntry,
) -> Result<Suppression, ApiError> {
    access.require(Action::Write)?;
    let mut check = Validator::new();
    let channel = Channel::parse(&entry.channel);
    match channel {
        None => check.error("channel", "must be email, sms, whatsapp or discord"),
        Some(channel) => check_recipient(&mut check, "address", channel, &entry.address),
    }
    let note = entry.note.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
    if note.as_ref().is_some_and(|n| n.chars().count() > MAX_NOTE_CHARS) {
        check.error("note", format!("must be at most {MAX_NOTE_CHARS} characters"));
    }
    check.finish()?;
    let Some(channel) = channel else {
        return Err(ApiError::internal("validated channel missing"));
    };
    let project = visible(conn, access, project).await?;
    let new = NewSuppression {
        id: ids::new_id(ids::SUPPRESSION),
        organization_id: project.organization_id.clone(),
        project_id: project.id.clone(),
        channel: channel.as_str().to_owned(),
        address: address_key(channel, &entry.address),
        reason: Reason::Manual.as_str().to_owned(),
        message_id: None,
        note,
        created_at: Utc::now(),
    };
    match suppressions::insert(conn, &new).await? {
        Some(added) => Ok(added),
        None => {
            let existing =
                suppressions::find_address(conn, &new.project_id, &new.channel, &new.address)
                    .await?;
            let id = existing.map(|e| e.id).unwrap_or_default();
            let message = format!("this address is suppressed already ({id})");
            Err(ApiError::conflict(format!("address: {message}"))
                .with_details(vec![FieldError::new("address", message)]))
        }
    }
}

/// The list filter from a request's parameters, each checked under its name.
pub fn filter(
    channel: Option<&str>,
    reason: Option<&str>,
    search: Option<&str>,
) -> Result<ListFilter, ApiError> {
    let mut check = Validator::new();
    let channel = channel.filter(|c| !c.is_empty());
    if channel.is_some_and(|c| Channel::parse(c).is_none()) {
        check.error("channel", "must be email, sms, whatsapp or discord");
    }
    let reason = reason.filter(|r| !r.is_empty());
    if reason.is_some_and(|r| Reason::parse(r).is_none()) {
        check.error("reason", "must be hard_bounce, complaint, unsubscribe or manual");
    }
    let search = search.map(str::trim).filter(|s| !s.is_empty());
    if search.is_some_and(|s| s.chars().count() > MAX_SEARCH_CHARS) {
        check.error("search", format!("must be at most {MAX_SEARCH_CHARS} characters"));
    }
    check.finish()?;
    Ok(ListFilter {
        channel: channel.map(str::to_owned),
        reason: reason.map(str::to_owned),
        search: search.map(str::to_owned),
    })
}

/// One entry of a visible project; 404 for another project's or tenant's.
pub async fn entry(
    conn: &mut PooledConnection,
    access: &Access,
    project: &str,
    id: &str,
) -> Result<(Project, Suppression), ApiError> {
    let project = visible(conn, access, project).await?;
    let found = suppressions::find(conn, &access.org.id, &project.id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("suppression"))?;
    Ok((project, found))
}

/// Removes an entry (owner or admin): the address may be sent to again.
pub async fn remove(
    conn: &mut PooledConnection,
    access: &Access,
    project: &str,
    id: &str,
) -> Result<(), ApiError> {
    access.require(Action::Write)?;
    let project = visible(conn, access, project).await?;
    if !suppressions::delete(conn, &access.org.id, &project.id, id).await? {
        return Err(ApiError::not_found("suppression"));
    }
    Ok(())
}
