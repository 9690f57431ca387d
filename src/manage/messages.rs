//! A message's second chances: a failed message sent again, a scheduled one canceled before
//! its time. Both are recorded in its history with who asked.

use crate::auth::{Access, Action, Principal};
use crate::db::PooledConnection;
use crate::db::messages::{self, Message, WithProvider};
use crate::domain::status;
use crate::error::ApiError;
use crate::queue::deliveries;
use crate::state::AppState;

/// The status reason of a message canceled on request.
pub const CANCELED_BY_REQUEST: &str = "canceled by request";

/// The message `id` with its provider, as `access` may see it: another organization's, or
/// another project's than an API key's own, is not found.
pub async fn visible(
    conn: &mut PooledConnection,
    access: &Access,
    id: &str,
) -> Result<WithProvider, ApiError> {
    messages::find_with_provider(conn, &access.org.id, id)
        .await?
        .filter(|(m, _)| access.project_scope().is_none_or(|only| only == m.project_id))
        .ok_or_else(|| ApiError::not_found("message"))
}

/// Who did it, for the event's `by`: the user's id or the API key's.
fn actor(access: &Access) -> &str {
    match &access.principal {
        Principal::User { user, .. } => &user.id,
        Principal::Key(key) => &key.id,
    }
}

/// 409 for a message whose status does not allow `action`; `current` is its status as last
/// read, which a concurrent change may have made stale.
fn wrong_status(current: &Message, action: &str, needed: &str) -> ApiError {
    if current.status == needed {
        ApiError::conflict(format!(
            "the message changed meanwhile; only a {needed} message can be {action}"
        ))
    } else {
        ApiError::conflict(format!(
            "only a {needed} message can be {action}; this one is {}",
            current.status
        ))
    }
}

/// Sends the failed message `id` again: back to `queued` with attempts reset (owner, admin or
/// a `manage` key). Returns its id.
pub async fn retry(state: &AppState, access: &Access, id: &str) -> Result<String, ApiError> {
    access.require(Action::Write)?;
    let mut conn = state.db.get().await?;
    let (current, _) = visible(&mut conn, access, id).await?;
    let details = serde_json::json!({"retry": true, "by": actor(access)});
    messages::requeue_failed(&mut conn, &access.org.id, &current.id, details)
        .await?
        .ok_or_else(|| wrong_status(&current, "retried", status::FAILED))?;
    drop(conn);
    // The row is committed as `queued`: should Redis fail now, the sweeper re-enqueues rows
    // left in `queued` (design: nothing is lost), so the retry has happened either way.
    if let Err(e) = deliveries::enqueue(&state.redis, std::slice::from_ref(&current.id)).await {
        tracing::warn!(message_id = %current.id, error = %e, "retry not enqueued; the sweeper will");
    }
    Ok(current.id)
}

/// Cancels the scheduled message `id` that is not queued yet (owner, admin or a `manage` key).
/// Returns its id.
pub async fn cancel(state: &AppState, access: &Access, id: &str) -> Result<String, ApiError> {
    access.require(Action::Write)?;
    let mut conn = state.db.get().await?;
    let (current, _) = visible(&mut conn, access, id).await?;
    let details = serde_json::json!({"by": actor(access)});
    messages::cancel_received(&mut conn, &access.org.id, &current.id, CANCELED_BY_REQUEST, details)
        .await?
        .ok_or_else(|| wrong_status(&current, "canceled", status::RECEIVED))?;
    Ok(current.id)
}
