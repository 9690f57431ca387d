//! One claimed message's attempt: try its route's credentials in order (failing over on
//! retryable and credential errors), and turn what happened into the [`Outcome`] the worker
//! records: `sent`, `retrying` (with the next attempt's time) or `failed`.
//!
//! Every credential tried is listed in the outcome's event (`tries`), so a message's history
//! shows each provider call of each attempt.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::config::DeliveryConfig;
use crate::db::delivery::Outcome;
use crate::db::messages::{FAILED, Message, RETRYING, SENT};
use crate::delivery::backoff::{after, retry_delay};
use crate::delivery::connector::{ProviderError, ProviderReceipt, Registry};
use crate::delivery::routing::Candidate;

/// How the attempt ended, before it is written down.
#[derive(Debug)]
enum Ending {
    Sent(ProviderReceipt),
    /// A retryable error on the last credential tried (or on every one).
    Retry(String),
    /// Throttled: retried after this long, without spending an attempt.
    Throttled(String, Option<Duration>),
    Failed {
        reason: String,
        kind: &'static str,
        spent: bool,
    },
}

/// One provider call, as the event records it.
fn try_record(
    candidate: &Candidate,
    result: &Result<ProviderReceipt, ProviderError>,
    took: Duration,
) -> Value {
    let mut record = json!({
        "credentialId": candidate.id(),
        "slug": candidate.slug(),
        "providerType": candidate.provider_type(),
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

/// Calls one credential's connector, bounded by `delivery.provider_timeout`.
async fn call(
    registry: &Registry,
    config: &DeliveryConfig,
    message: &Message,
    candidate: &Candidate,
) -> Result<ProviderReceipt, ProviderError> {
    let credential = match candidate {
        Candidate::Ready(credential) => credential,
        Candidate::Unusable { reason, .. } => {
            return Err(ProviderError::Credential(reason.clone()));
        }
    };
    let send = registry.connector(credential.provider_type).send(message, credential);
    match tokio::time::timeout(config.provider_timeout, send).await {
        Ok(result) => result,
        Err(_) => Err(ProviderError::Retryable(format!(
            "no answer from the provider within {}",
            humantime::format_duration(config.provider_timeout)
        ))),
    }
}

/// A credential the provider refused, for the worker to flag.
pub struct Refused {
    pub credential_id: String,
    pub error: String,
}

/// Makes `message`'s attempt over `route` and returns its outcome, and the credentials the
/// providers refused along the way.
pub async fn attempt(
    registry: &Registry,
    config: &DeliveryConfig,
    message: &Message,
    route: &[Candidate],
) -> (Outcome, Vec<Refused>) {
    let started = Instant::now();
    let mut tries = Vec::new();
    let mut refused = Vec::new();
    let mut retryable = None;
    let mut last_error = None;
    let mut ending = None;
    let mut used = None;
    for candidate in route {
        used = Some(candidate);
        let call_started = Instant::now();
        let result = call(registry, config, message, candidate).await;
        tries.push(try_record(candidate, &result, call_started.elapsed()));
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
                    refused.push(Refused {
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
    let ending = ending.unwrap_or_else(|| match (retryable, last_error) {
        // another credential may work on the next attempt
        (Some(text), _) => Ending::Retry(text),
        (None, Some(text)) => {
            Ending::Failed { reason: text, kind: "credentials_refused", spent: true }
        }
        (None, None) => {
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
            // a throttled call is not the message's fault: the attempt is not spent
            outcome.attempts = message.attempts;
            details["throttled"] = json!(true);
            let delay = retry_after.unwrap_or(config.retry_base_delay).min(config.retry_max_delay);
            retry_at(&mut outcome, &mut details, now, delay, text);
        }
        Ending::Failed { reason, kind, spent } => {
            if !spent {
                outcome.attempts = message.attempts;
            }
            fail(&mut outcome, &mut details, reason, kind);
        }
    }
    outcome.details = details;
    (outcome, refused)
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
    use crate::delivery::connector::OpenedCredential;
    use crate::providers::ProviderType;

    fn message(attempts: i32) -> Message {
        let now = Utc::now();
        Message {
            id: "msg_1".into(),
            organization_id: "org_1".into(),
            project_id: "prj_1".into(),
            api_key_id: None,
            channel: "email".into(),
            recipient: "a@example.com".into(),
            requested_provider: None,
            provider_credential_id: None,
            provider_type: None,
            status: "processing".into(),
            status_reason: None,
            attempts,
            content: json!({}),
            metadata: json!({}),
            provider_message_id: None,
            idempotency_key: None,
            send_at: None,
            next_attempt_at: None,
            created_at: now,
            updated_at: now,
        }
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
        let (outcome, refused) = attempt(&registry, &config(), &message(0), &route).await;
        assert_eq!(outcome.status, SENT);
        assert_eq!(outcome.attempts, 1);
        assert_eq!(outcome.provider_credential_id.as_deref(), Some("prv_c"));
        assert_eq!(outcome.details["tries"].as_array().unwrap().len(), 3);
        assert_eq!(refused.len(), 1);

        // a retryable error anywhere keeps the message alive; exhaustion fails it
        let (outcome, _) = attempt(&registry, &config(), &message(0), &route[..2]).await;
        assert_eq!((outcome.status, outcome.attempts), (RETRYING, 1));
        assert!(outcome.next_attempt_at.is_some());
        let (outcome, _) = attempt(&registry, &config(), &message(2), &route[..2]).await;
        assert_eq!((outcome.status, outcome.attempts), (FAILED, 3));
        assert!(outcome.status_reason.unwrap().contains("gave up after 3 attempts"));

        // only refusals: failed
        let (outcome, _) = attempt(&registry, &config(), &message(0), &route[..1]).await;
        assert_eq!(outcome.status, FAILED);
        assert_eq!(outcome.details["failure"], "credentials_refused");

        // nothing to try: failed, no attempt spent
        let (outcome, _) = attempt(&registry, &config(), &message(1), &[]).await;
        assert_eq!((outcome.status, outcome.attempts), (FAILED, 1));
        assert_eq!(outcome.details["failure"], "no_route");

        // throttling does not spend an attempt, nor fail over
        let throttled = [
            sandbox("prv_t", json!({"failRate": 1, "failMode": "throttled", "retryAfterMs": 1500})),
            sandbox("prv_c", json!({})),
        ];
        let (outcome, _) = attempt(&registry, &config(), &message(2), &throttled).await;
        assert_eq!((outcome.status, outcome.attempts), (RETRYING, 2));
        assert_eq!(outcome.details["retryInMs"], 1500);

        // permanent: no failover
        let permanent = [
            sandbox("prv_p", json!({"failRate": 1, "failMode": "permanent"})),
            sandbox("prv_c", json!({})),
        ];
        let (outcome, _) = attempt(&registry, &config(), &message(0), &permanent).await;
        assert_eq!((outcome.status, outcome.attempts), (FAILED, 1));
        assert_eq!(outcome.details["tries"].as_array().unwrap().len(), 1);
    }
}
