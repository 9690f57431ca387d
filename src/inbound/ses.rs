//! SES event notifications (delivered through SNS) and what each does to a message: `Delivery`
//! makes a sent message `delivered`; a permanent `Bounce` or a `Complaint` makes a sent or
//! delivered one `failed` (docs/architecture.md, message life cycle) and puts the recipients it
//! names on the project's suppression list. Anything else changes nothing.
//!
//! Both of SES's forms are read: events of a configuration set (`eventType`) and the
//! notifications of an identity (`notificationType`).
//!
//! A valid SNS signature only proves that *some* AWS account's topic sent the message, and
//! anyone who learns a credential's receipt URL can subscribe their own topic to it. So the
//! credential names its topics (`snsTopicArns` in its config), and a message from any other
//! topic is refused before anything is fetched: its subscription is never confirmed and its
//! events change nothing. A credential that names none takes no SNS message at all. An event
//! moves only the messages this very credential sent (`db::receipts`, by credential), so one
//! credential's topic cannot speak for another's messages either.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::db::providers::find_for_callback;
use crate::db::receipts::{self, Applied, Receipt};
use crate::domain::provider_types::{ProviderType, SesConfig};
use crate::domain::status::{DELIVERED, FAILED, SENT};
use crate::domain::suppression::Reason;
use crate::inbound::InboundError;
use crate::inbound::sns::{
    Envelope, NOTIFICATION, SUBSCRIPTION_CONFIRMATION, SnsError, UNSUBSCRIBE_CONFIRMATION,
};
use crate::state::AppState;

/// What became of an SNS message.
#[derive(Debug, Serialize, ToSchema)]
pub struct InboundResult {
    /// `applied` (a message changed status), `held` (the receipt names no message yet and
    /// applies once one carries its id), `confirmed` (the subscription), or `ignored`.
    pub result: &'static str,
    pub detail: String,
}

fn answer(result: &'static str, detail: impl Into<String>) -> InboundResult {
    InboundResult { result, detail: detail.into() }
}

fn refused(credential_id: &str, error: SnsError) -> InboundError {
    match error {
        SnsError::Refused(reason) => {
            tracing::warn!(credential = %credential_id, %reason, "refused an SNS message");
            InboundError::Refused(format!("not a valid SNS message: {reason}"))
        }
        SnsError::Unavailable(reason) => InboundError::Unavailable(reason),
    }
}

/// Takes one SNS message posted to the SES credential `credential_id`'s receipt URL: confirms
/// a subscription, or applies the SES event a notification carries. Anything handled or
/// deliberately ignored is an `Ok` (SNS would otherwise send it again).
pub async fn receive(
    state: &AppState,
    credential_id: &str,
    body: &[u8],
) -> Result<InboundResult, InboundError> {
    let envelope: Envelope = serde_json::from_slice(body)
        .map_err(|e| InboundError::Malformed(format!("not an SNS message: {e}")))?;
    let mut conn = state.db.get().await?;
    let credential = find_for_callback(&mut conn, credential_id, ProviderType::Ses)
        .await?
        .ok_or(InboundError::NotFound("SES provider"))?;
    // the pooled connection is not held while certificates are fetched
    drop(conn);
    let config = SesConfig::deserialize(&credential.config).map_err(|_| {
        InboundError::Internal(format!(
            "provider {}: config does not match its schema",
            credential.id
        ))
    })?;
    check_topic(&config, &envelope.topic_arn).map_err(|reason| {
        tracing::warn!(credential = %credential_id, topic = %envelope.topic_arn, %reason,
            "refused an SNS message from a topic not the credential's");
        InboundError::Refused(reason)
    })?;
    state.sns_verifier.verify(&envelope).await.map_err(|e| refused(credential_id, e))?;

    match envelope.kind.as_str() {
        SUBSCRIPTION_CONFIRMATION => {
            state.sns_verifier.confirm(&envelope).await.map_err(|e| refused(credential_id, e))?;
            tracing::info!(credential = %credential_id, topic = %envelope.topic_arn,
                "confirmed an SNS subscription for SES events");
            Ok(answer("confirmed", format!("subscribed to {}", envelope.topic_arn)))
        }
        UNSUBSCRIBE_CONFIRMATION => {
            Ok(answer("ignored", format!("unsubscribed from {}", envelope.topic_arn)))
        }
        NOTIFICATION => {
            let change = match interpret(&envelope.message) {
                Ok(change) => change,
                Err(why) => return Ok(answer("ignored", why)),
            };
            let mut details = change.details;
            details["snsMessageId"] = envelope.message_id.clone().into();
            let mut conn = state.db.get().await?;
            let applied = receipts::apply(
                &mut conn,
                Receipt {
                    organization_id: &credential.organization_id,
                    channel: &credential.channel,
                    credential_id: Some(&credential.id),
                    provider_message_id: &change.provider_message_id,
                    from: change.from,
                    to: change.to,
                    reason: change.reason.as_deref(),
                    details,
                    suppress: change.suppress,
                },
            )
            .await?;
            Ok(match applied {
                Applied::Moved(ids) => {
                    answer("applied", format!("message {} is {}", ids.join(", "), change.to))
                }
                Applied::Ignored => answer(
                    "ignored",
                    format!(
                        "no message of this provider with SES id {} can become {}",
                        change.provider_message_id, change.to
                    ),
                ),
                Applied::Held => answer(
                    "held",
                    format!(
                        "no message has SES id {} yet; it becomes {} once its send is recorded",
                        change.provider_message_id, change.to
                    ),
                ),
            })
        }
        // verify() refuses every other type
        other => Ok(answer("ignored", format!("SNS message type {other}"))),
    }
}

/// Whether the credential whose config is `config` takes SNS messages from `topic_arn`; if
/// not, why (the answer's message).
fn check_topic(config: &SesConfig, topic_arn: &str) -> Result<(), String> {
    let topics = config.sns_topic_arns.as_deref().unwrap_or_default();
    if topics.is_empty() {
        return Err("this credential lists no snsTopicArns, so it takes no SNS messages: add \
                    the ARN of the topic its SES events are published to to its config"
            .to_owned());
    }
    if !topics.iter().any(|t| t == topic_arn) {
        return Err(format!("topic {topic_arn} is not one of this credential's snsTopicArns"));
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Event {
    event_type: Option<String>,
    notification_type: Option<String>,
    mail: Mail,
    #[serde(default)]
    delivery: Value,
    bounce: Option<Bounce>,
    complaint: Option<Complaint>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Mail {
    message_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Bounce {
    bounce_type: String,
    bounce_sub_type: Option<String>,
    #[serde(default)]
    bounced_recipients: Vec<BouncedRecipient>,
    timestamp: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BouncedRecipient {
    email_address: String,
    diagnostic_code: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Complaint {
    complaint_feedback_type: Option<String>,
    #[serde(default)]
    complained_recipients: Vec<Value>,
    timestamp: Option<String>,
}

/// A status change a notification asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// SES's MessageId: the message's provider message id.
    pub provider_message_id: String,
    /// The statuses the message may be in for the change to apply.
    pub from: &'static [&'static str],
    pub to: &'static str,
    pub reason: Option<String>,
    /// The event's details.
    pub details: Value,
    /// The suppression the event adds for its recipients (a permanent bounce, a complaint).
    pub suppress: Option<Reason>,
}

/// What a notification means for its message: a change, or why it means none.
pub fn interpret(message: &str) -> Result<Change, String> {
    let event: Event = serde_json::from_str(message)
        .map_err(|e| format!("the notification is not an SES event: {e}"))?;
    let kind = event
        .event_type
        .or(event.notification_type)
        .ok_or_else(|| "the SES event has no eventType".to_owned())?;
    let id = event.mail.message_id;
    let mut details = json!({"receipt": "ses", "eventType": kind});
    match kind.as_str() {
        "Delivery" => {
            for field in ["timestamp", "recipients", "smtpResponse", "processingTimeMillis"] {
                if let Some(value) = event.delivery.get(field) {
                    details[field] = value.clone();
                }
            }
            Ok(Change {
                provider_message_id: id,
                from: &[SENT],
                to: DELIVERED,
                reason: None,
                details,
                suppress: None,
            })
        }
        "Bounce" => {
            let bounce = event.bounce.ok_or_else(|| "the Bounce event has no bounce".to_owned())?;
            if bounce.bounce_type != "Permanent" {
                return Err(format!("a {} bounce is not final", bounce.bounce_type));
            }
            let sub_type = bounce.bounce_sub_type.unwrap_or_else(|| "General".to_owned());
            let diagnostics: Vec<&str> = bounce
                .bounced_recipients
                .iter()
                .filter_map(|r| r.diagnostic_code.as_deref())
                .collect();
            let mut reason = format!("bounced (Permanent, {sub_type})");
            if !diagnostics.is_empty() {
                reason.push_str(&format!(": {}", diagnostics.join("; ")));
            }
            details["bounceType"] = json!("Permanent");
            details["bounceSubType"] = json!(sub_type);
            details["recipients"] = json!(
                bounce.bounced_recipients.iter().map(|r| &r.email_address).collect::<Vec<_>>()
            );
            details["timestamp"] = json!(bounce.timestamp);
            details["error"] = json!(reason);
            Ok(Change {
                provider_message_id: id,
                from: &[SENT, DELIVERED],
                to: FAILED,
                reason: Some(reason),
                details,
                suppress: Some(Reason::HardBounce),
            })
        }
        "Complaint" => {
            let complaint =
                event.complaint.ok_or_else(|| "the Complaint event has no complaint".to_owned())?;
            let reason = match &complaint.complaint_feedback_type {
                Some(feedback) => format!("the recipient complained ({feedback})"),
                None => "the recipient complained".to_owned(),
            };
            details["complaintFeedbackType"] = json!(complaint.complaint_feedback_type);
            details["recipients"] = json!(
                complaint
                    .complained_recipients
                    .iter()
                    .filter_map(|r| r.get("emailAddress"))
                    .collect::<Vec<_>>()
            );
            details["timestamp"] = json!(complaint.timestamp);
            details["error"] = json!(reason);
            Ok(Change {
                provider_message_id: id,
                from: &[SENT, DELIVERED],
                to: FAILED,
                reason: Some(reason),
                details,
                suppress: Some(Reason::Complaint),
            })
        }
        other => Err(format!("SES event {other} does not change a message's status")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_credentials_own_topics_are_taken() {
        let config = |topics: Value| {
            SesConfig::deserialize(&json!({"region": "us-east-1", "fromAddress": "a@example.com",
                "snsTopicArns": topics}))
            .unwrap()
        };
        let ours = "arn:aws:sns:us-east-1:123456789012:ses-events";
        let listed = config(json!([ours, "arn:aws:sns:eu-west-1:123456789012:other"]));
        assert!(check_topic(&listed, ours).is_ok());
        for theirs in [
            "arn:aws:sns:us-east-1:999999999999:ses-events",
            "arn:aws:sns:us-east-1:123456789012:SES-EVENTS",
            "arn:aws:sns:us-east-1:123456789012:ses-events ",
            "",
        ] {
            let reason = check_topic(&listed, theirs).unwrap_err();
            assert!(reason.contains("is not one of this credential's snsTopicArns"), "{reason}");
        }
        for none in [config(json!([])), config(Value::Null)] {
            let reason = check_topic(&none, ours).unwrap_err();
            assert!(reason.contains("lists no snsTopicArns"), "{reason}");
        }
    }

    #[test]
    fn events_map_to_changes() {
        let delivery = interpret(
            r#"{"eventType": "Delivery", "mail": {"messageId": "ses-1"},
                "delivery": {"timestamp": "2026-11-27T10:00:00Z", "recipients": ["a@example.com"],
                             "smtpResponse": "250 ok"}}"#,
        )
        .unwrap();
        assert_eq!((delivery.to, delivery.from), (DELIVERED, &[SENT][..]));
        assert_eq!(delivery.provider_message_id, "ses-1");
        assert_eq!(delivery.details["smtpResponse"], "250 ok");

        let bounce = interpret(
            r#"{"notificationType": "Bounce", "mail": {"messageId": "ses-2"},
                "bounce": {"bounceType": "Permanent", "bounceSubType": "NoEmail",
                           "bouncedRecipients": [{"emailAddress": "b@example.com",
                                                  "diagnosticCode": "smtp; 550 5.1.1 unknown"}]}}"#,
        )
        .unwrap();
        assert_eq!(bounce.to, FAILED);
        assert_eq!(
            bounce.reason.as_deref(),
            Some("bounced (Permanent, NoEmail): smtp; 550 5.1.1 unknown")
        );

        let complaint = interpret(
            r#"{"eventType": "Complaint", "mail": {"messageId": "ses-3"},
                "complaint": {"complaintFeedbackType": "abuse",
                              "complainedRecipients": [{"emailAddress": "c@example.com"}]}}"#,
        )
        .unwrap();
        assert_eq!(complaint.from, &[SENT, DELIVERED][..]);
        assert_eq!(complaint.details["recipients"][0], "c@example.com");

        let transient = r#"{"eventType": "Bounce", "mail": {"messageId": "x"},
                            "bounce": {"bounceType": "Transient"}}"#;
        assert!(interpret(transient).is_err());
        assert!(interpret(r#"{"eventType": "Open", "mail": {"messageId": "x"}}"#).is_err());
        assert!(interpret("not json").is_err());
    }
}
