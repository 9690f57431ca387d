//! The retention duty of the worker role: nothing RelayIt stores grows without bound. Every
//! `retention.interval` each worker process deletes what has outlived its use:
//!
//! - idempotency keys past their expiry (24 hours after the send);
//! - sessions past their expiry (idle for `auth.session_ttl`, or at their absolute lifetime);
//! - webhook delivery attempts older than `retention.webhook_deliveries`;
//! - messages in a final status created and last changed longer ago than their project's
//!   `message_retention_days`, else `retention.messages` (0 keeps them); their events, search
//!   entries and webhook attempts go with them (triggers and foreign keys of the schema).
//!
//! Held delivery receipts are not here: the sweeper applies or drops each of them within
//! its hold (`db::receipts::apply_held`).
//!
//! Every delete takes at most `retention.batch_size` rows, through an index, and commits on its
//! own, so no statement holds many rows locked for long; rows another transaction holds are
//! skipped (`FOR UPDATE SKIP LOCKED`). Several workers can therefore run the duty at once, each
//! deleting other rows, and a run cut off at shutdown loses nothing: the next one goes on.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::QueryResult;
use diesel_async::AsyncPgConnection;
use tokio_util::sync::CancellationToken;

use crate::config::RetentionConfig;
use crate::db::{idempotency, messages, projects, users, webhooks};
use crate::runtime::duties::every;
use crate::state::AppState;

/// What one run deleted, by table (a message's events, search entries and webhook attempts are
/// not counted apart).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Deleted {
    pub idempotency_keys: usize,
    pub sessions: usize,
    pub webhook_deliveries: usize,
    pub messages: usize,
}

impl Deleted {
    fn by_table(&self) -> [(&'static str, usize); 4] {
        [
            ("idempotency_keys", self.idempotency_keys),
            ("sessions", self.sessions),
            ("webhook_deliveries", self.webhook_deliveries),
            ("messages", self.messages),
        ]
    }
}

pub async fn run(state: AppState, stop: CancellationToken) {
    every(state.config.retention.interval, stop, || async {
        let deleted = async {
            let mut conn = state.db.get().await?;
            anyhow::Ok(run_once(&mut conn, &state.config.retention, Utc::now()).await?)
        }
        .await;
        match deleted {
            Ok(deleted) => {
                for (table, rows) in deleted.by_table() {
                    state.metrics.retention_deleted.with_label_values(&[table]).inc_by(rows as u64);
                }
                if deleted != Deleted::default() {
                    tracing::info!(?deleted, "retention deleted expired rows");
                }
            }
            Err(error) => tracing::warn!(%error, "retention run failed"),
        }
    })
    .await
}

/// Awaits `$delete` (one batch of at most `$batch` rows) again until a batch comes back short;
/// evaluates to the rows deleted.
macro_rules! in_batches {
    ($batch:expr, $delete:expr) => {{
        let mut total = 0;
        loop {
            let deleted: usize = $delete.await?;
            total += deleted;
            if (deleted as i64) < $batch {
                break total;
            }
        }
    }};
}

/// One run of the duty as at `now`: deletes, a batch at a time, everything due.
pub async fn run_once(
    conn: &mut AsyncPgConnection,
    config: &RetentionConfig,
    now: DateTime<Utc>,
) -> QueryResult<Deleted> {
    // validated at start-up to be between 1 and RetentionConfig::MAX_BATCH
    let batch = config.batch_size.clamp(1, RetentionConfig::MAX_BATCH) as i64;
    let mut deleted = Deleted {
        idempotency_keys: in_batches!(batch, idempotency::delete_expired(conn, now, batch)),
        sessions: in_batches!(batch, users::delete_expired_sessions(conn, now, batch)),
        ..Deleted::default()
    };
    if let Some(before) = cut_off(now, config.webhook_deliveries) {
        for endpoint in webhooks::endpoint_ids(conn).await? {
            deleted.webhook_deliveries += in_batches!(
                batch,
                webhooks::delete_deliveries_before(conn, &endpoint, before, batch)
            );
        }
    }
    for (project, days) in projects::message_retention(conn).await? {
        let period = match days {
            Some(days) => Duration::from_secs(u64::try_from(days).unwrap_or(0) * 24 * 3600),
            None => config.messages,
        };
        if let Some(before) = cut_off(now, period) {
            deleted.messages +=
                in_batches!(batch, messages::delete_final_before(conn, &project, before, batch));
        }
    }
    Ok(deleted)
}

/// When rows kept for `period` before `now` were due; None for a zero period (kept for ever).
fn cut_off(now: DateTime<Utc>, period: Duration) -> Option<DateTime<Utc>> {
    if period.is_zero() {
        return None;
    }
    // a period too long to subtract keeps everything
    chrono::Duration::from_std(period).ok().and_then(|period| now.checked_sub_signed(period))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_period_keeps_everything() {
        let now = Utc::now();
        assert_eq!(cut_off(now, Duration::ZERO), None);
        assert_eq!(cut_off(now, Duration::from_secs(3600)), Some(now - chrono::Duration::hours(1)));
        assert_eq!(cut_off(now, Duration::from_secs(u64::MAX)), None);
    }
}
