//! `lastUsedAt` of API keys without a database write per request: uses are gathered in memory
//! and written in one statement every `auth.key_usage_flush` (and at shutdown).

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::db;

#[derive(Debug, Default)]
pub struct KeyUsage {
    pending: Mutex<HashMap<String, DateTime<Utc>>>,
}

impl KeyUsage {
    pub fn record(&self, key_id: &str) {
        let now = Utc::now();
        // A poisoned lock only means another thread panicked mid-insert; the map is still usable.
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.insert(key_id.to_owned(), now);
    }

    fn take(&self) -> Vec<(String, DateTime<Utc>)> {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.drain().collect()
    }

    /// Writes the gathered uses; on failure they are kept for the next flush.
    pub async fn flush(&self, pool: &db::Pool) {
        let uses = self.take();
        if uses.is_empty() {
            return;
        }
        let written = match pool.get().await {
            Ok(mut conn) => {
                db::api_keys::touch_many(&mut conn, &uses).await.map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        };
        if let Err(error) = written {
            tracing::warn!(%error, keys = uses.len(), "could not record API key use; will retry");
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            for (id, at) in uses {
                pending.entry(id).or_insert(at);
            }
        }
    }

    /// Flushes periodically until shutdown, then once more.
    pub async fn run(
        &self,
        pool: db::Pool,
        every: std::time::Duration,
        shutdown: CancellationToken,
    ) {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => self.flush(&pool).await,
                () = shutdown.cancelled() => break,
            }
        }
        self.flush(&pool).await;
    }
}
