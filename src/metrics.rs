//! Prometheus metrics, served at `/metrics`.
//!
//! Counters and histograms are updated where things happen (HTTP middleware, ingestion,
//! deliveries); queue gauges are read from Redis at scrape time, so every process reports the
//! shared queues' true state without a background poller.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fred::prelude::{SortedSetsInterface, StreamsInterface};
use fred::types::Value as RedisValue;
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::queue::{CONSUMER_GROUP, KeyOf, Keys, Redis};

pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub messages_accepted: IntCounterVec,
    /// Requests the committer refused without the database failing, by reason.
    pub ingest_refused: IntCounterVec,
    /// Messages per ingestion transaction: how well group commit gathers (`api.ingest_*`).
    pub ingest_batch: prometheus::Histogram,
    /// Ingestion transactions, from taking a connection to the commit.
    pub ingest_commit: prometheus::Histogram,
    pub deliveries: IntCounterVec,
    pub provider_duration: HistogramVec,
    pub webhook_attempts: IntCounterVec,
    pub webhook_duration: HistogramVec,
    /// Rows the retention duty deleted, by table.
    pub retention_deleted: IntCounterVec,
    stream_length: IntGaugeVec,
    pending: IntGaugeVec,
    oldest_pending_age: GaugeVec,
    delayed: IntGaugeVec,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Latency buckets from 0.5 ms to 30 s.
const BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new_custom(Some("relayit".into()), None)?;
        let counter =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
                let c = IntCounterVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let histogram =
            |name: &str, help: &str, labels: &[&str]| -> Result<HistogramVec, prometheus::Error> {
                let h = HistogramVec::new(
                    HistogramOpts::new(name, help).buckets(BUCKETS.to_vec()),
                    labels,
                )?;
                registry.register(Box::new(h.clone()))?;
                Ok(h)
            };
        let gauge =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntGaugeVec, prometheus::Error> {
                let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(g.clone()))?;
                Ok(g)
            };
        let oldest_pending_age = GaugeVec::new(
            Opts::new(
                "queue_oldest_pending_age_seconds",
                "Age of the oldest entry claimed but not acknowledged",
            ),
            &["queue"],
        )?;
        registry.register(Box::new(oldest_pending_age.clone()))?;
        // unlabelled: observed once per transaction, without a label lookup
        let single = |name: &str, help: &str, buckets: Vec<f64>| {
            let h =
                prometheus::Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))?;
            registry.register(Box::new(h.clone()))?;
            Ok::<_, prometheus::Error>(h)
        };
        let ingest_batch = single(
            "ingest_batch_messages",
            "Messages per ingestion transaction",
            prometheus::exponential_buckets(1.0, 2.0, 12)?,
        )?;
        let ingest_commit =
            single("ingest_commit_seconds", "Ingestion transaction latency", BUCKETS.to_vec())?;
        #[cfg(target_os = "linux")]
        registry.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))?;
        Ok(Metrics {
            http_requests: counter(
                "http_requests_total",
                "HTTP requests by route and status",
                &["method", "route", "status"],
            )?,
            http_duration: histogram(
                "http_request_duration_seconds",
                "HTTP request latency",
                &["method", "route"],
            )?,
            messages_accepted: counter(
                "messages_accepted_total",
                "Messages accepted by /v1/send",
                &["channel"],
            )?,
            ingest_refused: counter(
                "ingest_refused_total",
                "Send requests refused because their project stayed locked (project_locked) or \
                 had just been (project_held)",
                &["reason"],
            )?,
            ingest_batch,
            ingest_commit,
            deliveries: counter(
                "deliveries_total",
                "Delivery attempts by channel, provider type and outcome",
                &["channel", "provider", "outcome"],
            )?,
            provider_duration: histogram(
                "provider_request_duration_seconds",
                "Provider call latency",
                &["provider"],
            )?,
            retention_deleted: counter(
                "retention_deleted_total",
                "Rows deleted by the retention duty, by table (a message's events, search \
                 entries and webhook attempts go with it uncounted)",
                &["table"],
            )?,
            webhook_attempts: counter(
                "webhook_attempts_total",
                "Webhook delivery attempts by outcome (success, failure, gone, refused)",
                &["outcome"],
            )?,
            webhook_duration: histogram(
                "webhook_request_duration_seconds",
                "Webhook request latency, by outcome",
                &["outcome"],
            )?,
            stream_length: gauge("queue_length", "Entries in a stream", &["queue"])?,
            pending: gauge(
                "queue_pending",
                "Entries claimed by a worker and not yet acknowledged",
                &["queue"],
            )?,
            oldest_pending_age,
            delayed: gauge("queue_delayed", "Entries waiting in a delayed set", &["queue"])?,
            registry,
        })
    }

    /// Reads the queues' state from Redis and renders every metric in the text format.
    pub async fn render(&self, redis: &Redis) -> String {
        let keys = redis.keys();
        let client = redis.pool().next();
        let dead =
            [("deliveries_dead", keys.deliveries_dead()), ("webhooks_dead", keys.webhooks_dead())];
        for (name, stream) in dead {
            if let Ok(length) = client.xlen::<i64, _>(&stream).await {
                self.stream_length.with_label_values(&[name]).set(length);
            }
        }
        // the partitions' streams and delayed sets, summed (the oldest pending: the oldest of all)
        let queues: [(&str, KeyOf, KeyOf); 2] = [
            ("deliveries", Keys::deliveries, Keys::deliveries_delayed),
            ("webhooks", Keys::webhooks, Keys::webhooks_delayed),
        ];
        for (name, stream_of, delayed_of) in queues {
            let totals = async {
                let (mut length, mut pending, mut oldest, mut delayed) = (0, 0, Duration::ZERO, 0);
                for p in 0..keys.partitions() {
                    let partition = keys.partition(p);
                    let stream = stream_of(&partition);
                    length += client.xlen::<i64, _>(&stream).await?;
                    // no group yet (no worker ever ran): nothing pending
                    let summary: Result<RedisValue, _> =
                        client.xpending(&stream, CONSUMER_GROUP, ()).await;
                    let (count, age) = pending_summary(summary.ok());
                    pending += count;
                    oldest = oldest.max(age);
                    delayed += client.zcard::<i64, _>(delayed_of(&partition)).await?;
                }
                Ok::<_, fred::error::Error>((length, pending, oldest, delayed))
            };
            // unreadable (Redis away): the last values stand
            if let Ok((length, pending, oldest, delayed)) = totals.await {
                self.stream_length.with_label_values(&[name]).set(length);
                self.pending.with_label_values(&[name]).set(pending);
                self.oldest_pending_age.with_label_values(&[name]).set(oldest.as_secs_f64());
                self.delayed.with_label_values(&[name]).set(delayed);
            }
        }
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// XPENDING's summary: the count, and the age of the smallest (oldest) pending id, whose first
/// part is its creation time in milliseconds.
fn pending_summary(reply: Option<RedisValue>) -> (i64, Duration) {
    let Some(RedisValue::Array(parts)) = reply else { return (0, Duration::ZERO) };
    let count = parts.first().and_then(|v| v.as_i64()).unwrap_or(0);
    let oldest_ms = parts
        .get(1)
        .and_then(|v| v.as_string())
        .and_then(|id| id.split('-').next().and_then(|ms| ms.parse::<u64>().ok()));
    let now_ms =
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    let age =
        oldest_ms.map(|ms| Duration::from_millis(now_ms.saturating_sub(ms))).unwrap_or_default();
    (count, age)
}
