//! The sandbox connector: delivers nowhere, for test mode, local development and benchmarks.
//!
//! Its config (`crate::domain::provider_types::SandboxConfig`) shapes how it behaves like a provider: a
//! latency, a random share of failures (`failRate`), or a deterministic pattern (`failFirst`:
//! the first N attempts of every message fail), each failing in `failMode` (retryable,
//! permanent, credential, or throttled with `retryAfterMs`), so every branch of the worker can
//! be driven end to end.

use std::time::Duration;

use crate::db::messages::Message;
use crate::domain::provider_types::{FailMode, SandboxConfig};
use crate::providers::connector::{
    Connector, OpenedCredential, ProviderError, ProviderReceipt, SendFuture, VerifyFuture,
};

#[derive(Debug, Default)]
pub struct Sandbox;

impl Connector for Sandbox {
    fn send<'a>(
        &'a self,
        message: &'a Message,
        credential: &'a OpenedCredential,
    ) -> SendFuture<'a> {
        Box::pin(async move {
            // The API validated the config; a row edited by hand is the credential's fault.
            let config: SandboxConfig = serde_json::from_value(credential.config.clone())
                .map_err(|e| ProviderError::Credential(format!("invalid sandbox config: {e}")))?;
            if let Some(ms) = config.latency_ms.filter(|ms| *ms > 0) {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            if fails(&config, message.attempts) {
                return Err(failure(&config, message.attempts + 1));
            }
            Ok(ProviderReceipt {
                provider_message_id: format!("sandbox-{}", uuid::Uuid::now_v7().simple()),
            })
        })
    }

    fn verify<'a>(&'a self, _: &'a OpenedCredential) -> VerifyFuture<'a> {
        Box::pin(async { Ok("the sandbox accepts any credentials; nothing to verify".to_owned()) })
    }
}

/// Whether the attempt after `attempts` spent ones fails.
fn fails(config: &SandboxConfig, attempts: i32) -> bool {
    let first = config.fail_first.is_some_and(|n| i64::from(attempts) < i64::from(n));
    first || config.fail_rate.is_some_and(|rate| fastrand::f64() < rate)
}

fn failure(config: &SandboxConfig, attempt: i32) -> ProviderError {
    match config.fail_mode.unwrap_or(FailMode::Retryable) {
        FailMode::Retryable => ProviderError::Retryable(format!(
            "sandbox: simulated temporary failure (503) on attempt {attempt}"
        )),
        FailMode::Permanent => ProviderError::Permanent(format!(
            "sandbox: simulated rejection (invalid recipient) on attempt {attempt}"
        )),
        FailMode::Credential => ProviderError::Credential(
            "sandbox: simulated authentication failure (invalid credentials)".to_owned(),
        ),
        FailMode::Throttled => ProviderError::Throttled {
            message: "sandbox: simulated throttling (429)".to_owned(),
            retry_after: config.retry_after_ms.map(Duration::from_millis),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(value: serde_json::Value) -> SandboxConfig {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn fail_first_counts_attempts() {
        let c = config(serde_json::json!({"failFirst": 2}));
        assert!(fails(&c, 0));
        assert!(fails(&c, 1));
        assert!(!fails(&c, 2));
        assert!(!fails(&config(serde_json::json!({})), 0));
        assert!(fails(&config(serde_json::json!({"failRate": 1.0})), 7));
        assert!(!fails(&config(serde_json::json!({"failRate": 0.0})), 0));
    }

    #[test]
    fn failures_take_the_mode() {
        let throttled = config(serde_json::json!({"failMode": "throttled", "retryAfterMs": 250}));
        assert!(matches!(
            failure(&throttled, 1),
            ProviderError::Throttled { retry_after: Some(d), .. } if d == Duration::from_millis(250)
        ));
        assert_eq!(failure(&config(serde_json::json!({})), 1).kind(), "retryable");
        let permanent = config(serde_json::json!({"failMode": "permanent"}));
        assert_eq!(failure(&permanent, 1).kind(), "permanent");
        let credential = config(serde_json::json!({"failMode": "credential"}));
        assert_eq!(failure(&credential, 1).kind(), "credential");
    }
}
