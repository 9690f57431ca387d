//! One claimed message's attempt: try its route's credentials in order (failing over on
//! retryable and credential errors), and turn what happened into the [`Outcome`] the worker
//! records: `sent`, `retrying` (with the next attempt's time) or `failed`.
//!
//! Every credential tried is listed in the outcome's event (`tries`, each with its start time),
//! so a message's history shows each provider call of each attempt, and each credential passed
//! over for its rate limit (`limits` says why that fails over).
//!
//! Throttling (a provider's 429, or our own limits) spends no attempt, so nothing bounds it but
//! time: the message remembers since when it has been throttled without a break
//! (`throttled_since`), and fails once that exceeds `delivery.max_throttled_for`.

use std::time::{Duration, Instant};

use chrono::{DateTime, SubsecRound, Utc};
use serde_json::{Value, json};

use crate::config::DeliveryConfig;
use crate::db::delivery::Outcome;
use crate::db::messages::Message;
use crate::db::suppressions::Suppression;
use crate::delivery::backoff::retry_delay;
use crate::delivery::limits::{Limited, RateLimiter};
use crate::delivery::routing::Candidate;
use crate::domain::status::{FAILED, RETRYING, SENT};
use crate::domain::suppression::{self, Reason};
use crate::providers::connector::{Extras, ProviderError, ProviderReceipt, Registry};
use crate::runtime::Liveness;
use crate::runtime::retry::after;

/// A worker's right to call providers for a message it claimed. Another worker may claim the
/// message once the visibility timeout has passed since the claim, or at once when this
/// worker's liveness key expired: no call may start, or still run, by then.
pub struct Lease<'a> {
    pub liveness: &'a Liveness,
    /// The liveness term the claim was made under (`None`: made while it had lapsed). Once it
    /// lapsed, proving the worker alive again does not give the claim back: another worker may
    /// have taken it over meanwhile.
    pub term: Option<u64>,
    /// No call starts after this: it could outlast the visibility timeout.
    pub calls_until: DateTime<Utc>,
}

impl Lease<'_> {
    fn held(&self) -> bool {
        Utc::now() < self.calls_until && self.liveness.holds(self.term)
    }
}

/// Why an attempt stopped when its worker's lease ran out.
const LEASE_LOST: &str = "the worker lost its claim on the message (it was cut off from \
     Redis or Postgres for too long); another attempt follows";

/// How the attempt ended, before it is written down.
#[derive(Debug)]
enum Ending {
    Sent(ProviderReceipt),
    /// A retryable error on the last credential tried (or on every one).
    Retry(String),
    /// A provider throttled it: retried after its Retry-After (else the base delay), capped,
    /// without spending an attempt.
    Throttled(String, Option<Duration>),
    /// Our own rate limits kept it from every credential that could have taken it: retried at
    /// the slot the limiter promised (exact, so not capped), without spending an attempt.
    Limited(String, Duration),
    Failed {
        reason: String,
        kind: &'static str,
        spent: bool,
    },
    /// The lease ran out before a call (or during one, whose outcome is then unknown): retried
    /// at once, by whichever worker claims it, without spending an attempt.
    Released,
}

/// One provider call, as the event records it.
fn try_record(
    candidate: &Candidate,
    result: &Result<ProviderReceipt, ProviderError>,
    started_at: DateTime<Utc>,
    took: Duration,
) -> Value {
    let mut record = json!({
        "credentialId": candidate.id(),
        "slug": candidate.slug(),
        "providerType": candidate.provider_type(),
        "startedAt": started_at,
        "durationMs": took.as_millis() as u64,
    });
    match result {
        Ok(receipt) => {
            record["result"] = json!("sent");
            record["providerMessageId"] = json!(receipt.provider_message_id);
        }
        Err(error) => {
            record["result"] = json!(error.kind());
            record["error"] = json!(error.to_string());
        }
    }
    record
}

/// Calls one credential's connector, bounded by `delivery.provider_timeout` and by the worker's
/// liveness (a call cut off by it counts as retryable: its outcome is unknown).
async fn call(
    registry: &Registry,
    config: &DeliveryConfig,
    message: &Message,
    extras: &Extras,
    candidate: &Candidate,
    lease: Option<&Lease<'_>>,
) -> Result<ProviderReceipt, ProviderError> {
    let credential = match candidate {
        Candidate::Ready(credential) => credential,
        Candidate::Unusable { reason, .. } => {
            return Err(ProviderError::Credential(reason.clone()));
        }
    };
    let send = registry.connector(credential.provider_type).send_with(message, credential, extras);
    let lost = async {
        match lease {
            Some(lease) => lease.liveness.lost(lease.term).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        result = tokio::time::timeout(config.provider_timeout, send) => match result {
            Ok(result) => result,
            Err(_) => Err(ProviderError::Retryable(format!(
                "no answer from the provider within {}",
                humantime::format_duration(config.provider_timeout)
            ))),
        },
        () = lost => Err(ProviderError::Retryable(format!("outcome unknown: {LEASE_LOST}"))),
    }
}

/// A credential passed over for its rate limit, as the event records it.
fn limited_record(candidate: &Candidate, limited: &Limited) -> Value {
    json!({
        "credentialId": candidate.id(),
        "slug": candidate.slug(),
        "providerType": candidate.provider_type(),
        "result": "rate_limited",
        "error": limited_text(candidate, limited),
        "retryInMs": limited.wait.as_millis() as u64,
    })
}

fn limited_text(candidate: &Candidate, limited: &Limited) -> String {
    format!("credential `{}` is at its rate limit ({}/s)", candidate.slug(), limited.rate)
}

/// A credential the provider refused, for the worker to flag.
pub struct Refused {
    pub credential_id: String,
    pub error: String,
}

/// What an attempt leaves for the worker besides its outcome.
#[derive(Default)]
pub struct Aside {
    /// The credentials the providers refused along the way.
    pub refused: Vec<Refused>,
    /// How long its provider calls took together, if it made any: the length of a delivery
    /// that is the provider's, not the time it waited on our own Redis or Postgres.
    pub calling: Option<Duration>,
}

/// Makes `message`'s attempt over `route` and returns its outcome, with what the worker learns
/// aside. `extras` goes to every connector called (`Extras`). Without a `limiter`, no rate
/// limit applies; without a `lease`, nothing fences the calls (a caller that claimed nothing).
pub async fn attempt(
    registry: &Registry,
    limiter: Option<&RateLimiter>,
    config: &DeliveryConfig,
    message: &Message,
    extras: &Extras,
    route: &[Candidate],
    lease: Option<&Lease<'_>>,
) -> (Outcome, Aside) {
    let started = Instant::now();
    let mut tries = Vec::new();
    let mut aside = Aside::default();
    let mut retryable = None;
    let mut last_error = None;
    // the first credential passed over for its rate limit, and the soonest slot promised
    let mut limited: Option<(String, Duration)> = None;
    let mut ending = None;
    let mut used = None;
    for candidate in route {
        used = Some(candidate);
        if let (Some(limiter), Candidate::Ready(credential)) = (limiter, candidate)
            && let Err(limit) = limiter.admit(credential).await
        {
            tries.push(limited_record(candidate, &limit));
            limited = Some(match limited {
                Some((text, wait)) => (text, wait.min(limit.wait)),
                None => (limited_text(candidate, &limit), limit.wait),
            });
            continue;
        }
        if lease.is_some_and(|lease| !lease.held()) {
            ending = Some(Ending::Released);
            break;
        }
        let (call_started, call_started_at) = (Instant::now(), Utc::now());
        let result = call(registry, config, message, extras, candidate, lease).await;
        let took = call_started.elapsed();
        aside.calling = Some(aside.calling.unwrap_or_default() + took);
        tries.push(try_record(candidate, &result, call_started_at, took));
        match result {
            Ok(receipt) => ending = Some(Ending::Sent(receipt)),
            Err(ProviderError::Permanent(text)) => {
                ending = Some(Ending::Failed { reason: text, kind: "permanent", spent: true })
            }
            Err(ProviderError::Throttled { message, retry_after }) => {
                ending = Some(Ending::Throttled(message, retry_after))
            }
            // fail over
            Err(ProviderError::Retryable(text)) => retryable = Some(text),
            Err(ProviderError::Credential(text)) => {
                if matches!(candidate, Candidate::Ready(_)) {
                    aside.refused.push(Refused {
                        credential_id: candidate.id().to_owned(),
                        error: text.clone(),
                    });
                }
                last_error = Some(text);
            }
        }
        if ending.is_some() {
            break;
        }
    }
    if ending.is_none() && lease.is_some_and(|lease| !lease.held()) {
        // a call cut off by the lease: whoever claims the message next tries again
        ending = Some(Ending::Released);
    }
    let ending = ending.unwrap_or_else(|| match (limited, retryable, last_error) {
        // a busy credential takes it soon; the others' errors are in the tries
        (Some((text, wait)), _, _) => Ending::Limited(text, wait),
        // another credential may work on the next attempt
        (None, Some(text), _) => Ending::Retry(text),
        (None, None, Some(text)) => {
            Ending::Failed { reason: text, kind: "credentials_refused", spent: true }
        }
        (None, None, None) => {
            Ending::Failed { reason: no_route_reason(message), kind: "no_route", spent: false }
        }
    });
    let mut details = json!({
        "attempt": message.attempts + 1,
        "tries": tries,
        "durationMs": started.elapsed().as_millis() as u64,
    });
    let now = Utc::now();
    let mut outcome = Outcome {
        message_id: message.id.clone(),
        claimed_at: message.updated_at,
        status: FAILED,
        status_reason: None,
        attempts: message.attempts + 1,
        next_attempt_at: None,
        provider_message_id: None,
        provider_credential_id: used.map(|c| c.id().to_owned()),
        provider_type: used.map(|c| c.provider_type().to_owned()),
        throttled_since: None,
        details: Value::Null,
    };
    match ending {
        Ending::Sent(receipt) => {
            outcome.status = SENT;
            details["providerMessageId"] = json!(receipt.provider_message_id);
            outcome.provider_message_id = Some(receipt.provider_message_id);
        }
        Ending::Retry(text) if outcome.attempts < config.max_attempts as i32 => {
            let attempt = u32::try_from(outcome.attempts).unwrap_or(u32::MAX);
            let delay = retry_delay(
                config.retry_base_delay,
                config.retry_max_delay,
                attempt,
                fastrand::f64(),
            );
            retry_at(&mut outcome, &mut details, now, delay, text);
        }
        Ending::Retry(text) => {
            let reason = format!("{text} (gave up after {} attempts)", outcome.attempts);
            fail(&mut outcome, &mut details, reason, "attempts_exhausted");
        }
        Ending::Throttled(text, retry_after) => {
            let delay = retry_after.unwrap_or(config.retry_base_delay).min(config.retry_max_delay);
            throttled(&mut outcome, &mut details, config, message, now, delay, text);
        }
        Ending::Limited(text, wait) => {
            details["rateLimited"] = json!(true);
            throttled(&mut outcome, &mut details, config, message, now, wait, text);
        }
        Ending::Failed { reason, kind, spent } => {
            if !spent {
                outcome.attempts = message.attempts;
            }
            fail(&mut outcome, &mut details, reason, kind);
        }
        Ending::Released => {
            outcome.attempts = message.attempts;
            details["released"] = json!(true);
            retry_at(&mut outcome, &mut details, now, Duration::ZERO, LEASE_LOST.to_owned());
        }
    }
    outcome.details = details;
    (outcome, aside)
}

/// `details.failure` of a message not sent because its recipient is suppressed: a decision,
/// not a delivery problem, so it is not dead-lettered.
pub const SUPPRESSED: &str = "suppressed";

/// The outcome of a message whose recipient is on its project's suppression list: `failed`
/// without an attempt spent or a provider called; its event names the entry.
pub fn suppressed(message: &Message, entry: &Suppression) -> Outcome {
    let reason = Reason::parse(&entry.reason).unwrap_or(Reason::Manual);
    let text = suppression::status_reason(reason, &entry.id);
    let details = json!({
        "attempt": message.attempts + 1,
        "tries": [],
        "error": text,
        "failure": SUPPRESSED,
        "suppression": {
            "id": entry.id,
            "reason": entry.reason,
            "address": entry.address,
            "createdAt": entry.created_at,
        },
    });
    Outcome {
        message_id: message.id.clone(),
        claimed_at: message.updated_at,
        status: FAILED,
        status_reason: Some(text),
        attempts: message.attempts,
        next_attempt_at: None,
        provider_message_id: None,
        provider_credential_id: None,
        provider_type: None,
        throttled_since: None,
        details,
    }
}

fn retry_at(
    outcome: &mut Outcome,
    details: &mut Value,
    now: DateTime<Utc>,
    delay: Duration,
    text: String,
) {
    let at = after(now, delay);
    outcome.status = RETRYING;
    outcome.next_attempt_at = Some(at);
    details["error"] = json!(text);
    details["retryInMs"] = json!(delay.as_millis() as u64);
    details["nextAttemptAt"] = json!(at);
    outcome.status_reason = Some(text);
}

/// Reschedules a throttled message after `delay`, without spending its attempt (throttling is
/// not the message's fault), unless it has been throttled without a break for longer than
/// `delivery.max_throttled_for`: then it fails.
fn throttled(
    outcome: &mut Outcome,
    details: &mut Value,
    config: &DeliveryConfig,
    message: &Message,
    now: DateTime<Utc>,
    delay: Duration,
    text: String,
) {
    outcome.attempts = message.attempts;
    details["throttled"] = json!(true);
    // as Postgres keeps it (microseconds), so every event of the streak shows the same time
    let since = message.throttled_since.unwrap_or_else(|| now.trunc_subsecs(6));
    let throttled_for = (now - since).to_std().unwrap_or_default();
    if throttled_for > config.max_throttled_for {
        let reason = format!(
            "throttled without a break since {} (longer than delivery.max_throttled_for, {}); \
             last: {text}",
            since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            humantime::format_duration(config.max_throttled_for),
        );
        fail(outcome, details, reason, "throttled_too_long");
        return;
    }
    outcome.throttled_since = Some(since);
    details["throttledSince"] = json!(since);
    retry_at(outcome, details, now, delay, text);
}

fn fail(outcome: &mut Outcome, details: &mut Value, reason: String, kind: &str) {
    outcome.status = FAILED;
    details["error"] = json!(reason);
    details["failure"] = json!(kind);
    outcome.status_reason = Some(reason);
}

fn no_route_reason(message: &Message) -> String {
    match &message.requested_provider {
        Some(slug) => format!(
            "provider `{slug}` is not an active {} credential of this project",
            message.channel
        ),
        None => format!("no active {} provider credential for this project", message.channel),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::provider_types::ProviderType;
    use crate::providers::connector::OpenedCredential;

    fn message(attempts: i32) -> Message {
        Message { attempts, ..Message::sample() }
    }

    fn sandbox(id: &str, config: Value) -> Candidate {
        Candidate::Ready(OpenedCredential::new(
            id.into(),
            id.into(),
            ProviderType::Sandbox,
            config,
            Default::default(),
        ))
    }

    fn config() -> DeliveryConfig {
        DeliveryConfig { max_attempts: 3, ..DeliveryConfig::default() }
    }

    #[tokio::test]
    async fn fails_over_and_classifies() {
        let registry = Registry::new(&Default::default()).unwrap();
        let route = [
            sandbox("prv_a", json!({"failRate": 1, "failMode": "credential"})),
            sandbox("prv_b", json!({"failRate": 1})),
            sandbox("prv_c", json!({})),
        ];
        let (outcome, aside) =
            attempt(&registry, None, &config(), &message(0), Extras::NONE, &route, None).await;
        assert_eq!(outcome.status, SENT);
        assert_eq!(outcome.attempts, 1);
        assert_eq!(outcome.provider_credential_id.as_deref(), Some("prv_c"));
        assert_eq!(outcome.details["tries"].as_array().unwrap().len(), 3);
        assert_eq!(aside.refused.len(), 1);

        // a retryable error anywhere keeps the message alive; exhaustion fails it
        let (outcome, _) =
            attempt(&registry, None, &config(), &message(0), Extras::NONE, &route[..2], None).await;
        assert_eq!((outcome.status, outcome.attempts), (RETRYING, 1));
        assert!(outcome.next_attempt_at.is_some());
        let (outcome, _) =
            attempt(&registry, None, &config(), &message(2), Extras::NONE, &route[..2], None).await;
        assert_eq!((outcome.status, outcome.attempts), (FAILED, 3));
        assert!(outcome.status_reason.unwrap().contains("gave up after 3 attempts"));

        // only refusals: failed
        let (outcome, _) =
            attempt(&registry, None, &config(), &message(0), Extras::NONE, &route[..1], None).await;
        assert_eq!(outcome.status, FAILED);
        assert_eq!(outcome.details["failure"], "credentials_refused");

        // nothing to try: failed, no attempt spent
        let (outcome, _) =
            attempt(&registry, None, &config(), &message(1), Extras::NONE, &[], None).await;
        assert_eq!((outcome.status, outcome.attempts), (FAILED, 1));
        assert_eq!(outcome.details["failure"], "no_route");

        // throttling does not spend an attempt, nor fail over
        let throttled = [
            sandbox("prv_t", json!({"failRate": 1, "failMode": "throttled", "retryAfterMs": 1500})),
            sandbox("prv_c", json!({})),
        ];
        let (outcome, _) =
            attempt(&registry, None, &config(), &message(2), Extras::NONE, &throttled, None).await;
        assert_eq!((outcome.status, outcome.attempts), (RETRYING, 2));
        assert_eq!(outcome.details["retryInMs"], 1500);
        let since = outcome.throttled_since.expect("throttled since this attempt");
        assert!((Utc::now() - since).num_seconds() < 5);

        // throttled without a break: the first time is kept, until max_throttled_for is over
        let capped = DeliveryConfig { max_throttled_for: Duration::from_secs(3600), ..config() };
        let mut waiting = message(2);
        let first = Utc::now() - chrono::Duration::minutes(50);
        waiting.throttled_since = Some(first);
        let (outcome, _) =
            attempt(&registry, None, &capped, &waiting, Extras::NONE, &throttled, None).await;
        assert_eq!((outcome.status, outcome.throttled_since), (RETRYING, Some(first)));
        waiting.throttled_since = Some(Utc::now() - chrono::Duration::minutes(61));
        let (outcome, _) =
            attempt(&registry, None, &capped, &waiting, Extras::NONE, &throttled, None).await;
        assert_eq!((outcome.status, outcome.attempts), (FAILED, 2), "no attempt spent");
        assert_eq!(outcome.details["failure"], "throttled_too_long");
        let reason = outcome.status_reason.unwrap();
        assert!(reason.contains("delivery.max_throttled_for, 1h"), "{reason}");
        assert!(reason.contains("simulated throttling (429)"), "{reason}");
        assert_eq!(outcome.throttled_since, None);
        // any other outcome ends the streak
        let (outcome, _) =
            attempt(&registry, None, &capped, &waiting, Extras::NONE, &route[2..], None).await;
        assert_eq!((outcome.status, outcome.throttled_since), (SENT, None));

        // permanent: no failover
        let permanent = [
            sandbox("prv_p", json!({"failRate": 1, "failMode": "permanent"})),
            sandbox("prv_c", json!({})),
        ];
        let (outcome, _) =
            attempt(&registry, None, &config(), &message(0), Extras::NONE, &permanent, None).await;
        assert_eq!((outcome.status, outcome.attempts), (FAILED, 1));
        assert_eq!(outcome.details["tries"].as_array().unwrap().len(), 1);
    }
}
