//! What a message says, per channel, and who it goes to: the typed forms behind `/v1/send`'s
//! `content` and `to`, validated at ingestion and read back by the connectors.
//!
//! Stored content is the typed form re-serialized, so a connector can deserialize it without
//! re-validating.

use serde::{Deserialize, Serialize};

use crate::domain::channel::Channel;
use crate::domain::recipient::is_email;
use crate::domain::validate::Validator;

pub const MAX_SMS_CHARS: usize = 1600;
pub const MAX_DISCORD_TEXT_CHARS: usize = 2000;
pub const MAX_DISCORD_EMBEDS: usize = 10;
pub const MAX_SUBJECT_CHARS: usize = 998;
/// Per-field bound on email bodies; the request body limit (256 KiB) bounds the rest.
pub const MAX_EMAIL_BODY_BYTES: usize = 200 * 1024;
pub const MAX_RECIPIENTS: usize = 50;

/// One address or several (`replyTo`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Addresses {
    One(String),
    Many(Vec<String>),
}

impl Addresses {
    pub fn as_slice(&self) -> &[String] {
        match self {
            Addresses::One(one) => std::slice::from_ref(one),
            Addresses::Many(many) => many,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EmailContent {
    pub subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<Addresses>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cc: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bcc: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsContent {
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhatsappTemplate {
    pub name: String,
    /// A language code such as `en_US`.
    pub language: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub components: Option<Vec<serde_json::Value>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhatsappContent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<WhatsappTemplate>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscordContent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub embeds: Vec<serde_json::Value>,
}

fn chars(text: &str) -> usize {
    text.chars().count()
}

/// Parses and checks `content` for `channel`; returns its stored form. Field paths in errors
/// start with `prefix` (`content`).
pub fn check_content(
    check: &mut Validator,
    prefix: &str,
    channel: Channel,
    content: &serde_json::Value,
) -> Option<serde_json::Value> {
    let field = |name: &str| format!("{prefix}.{name}");
    match channel {
        Channel::Email => {
            let email: EmailContent = check.parse(prefix, content)?;
            if email.subject.trim().is_empty() {
                check.error(field("subject"), "must not be blank");
            } else if chars(&email.subject) > MAX_SUBJECT_CHARS {
                check.error(
                    field("subject"),
                    format!("must be at most {MAX_SUBJECT_CHARS} characters"),
                );
            }
            if email.text.is_none() && email.html.is_none() {
                check.error(field("text"), "text or html is required");
            }
            for (name, body) in [("text", &email.text), ("html", &email.html)] {
                if body.as_ref().is_some_and(|b| b.len() > MAX_EMAIL_BODY_BYTES) {
                    check.error(
                        field(name),
                        format!("must be at most {} KiB", MAX_EMAIL_BODY_BYTES / 1024),
                    );
                }
            }
            if let Some(from) = &email.from
                && !is_email(from)
            {
                check.error(field("from"), "must be an email address");
            }
            let lists = [
                ("replyTo", email.reply_to.as_ref().map(Addresses::as_slice).unwrap_or_default()),
                ("cc", email.cc.as_slice()),
                ("bcc", email.bcc.as_slice()),
            ];
            for (name, list) in lists {
                if list.len() > MAX_RECIPIENTS {
                    check.error(
                        field(name),
                        format!("must list at most {MAX_RECIPIENTS} addresses"),
                    );
                }
                for (i, address) in list.iter().enumerate() {
                    if !is_email(address) {
                        let path = match (&email.reply_to, name) {
                            (Some(Addresses::One(_)), "replyTo") => field(name),
                            _ => format!("{prefix}.{name}.{i}"),
                        };
                        check.error(path, "must be an email address");
                    }
                }
            }
            serde_json::to_value(email).ok()
        }
        Channel::Sms => {
            let sms: SmsContent = check.parse(prefix, content)?;
            if sms.text.trim().is_empty() {
                check.error(field("text"), "must not be blank");
            } else if chars(&sms.text) > MAX_SMS_CHARS {
                check.error(field("text"), format!("must be at most {MAX_SMS_CHARS} characters"));
            }
            serde_json::to_value(sms).ok()
        }
        Channel::Whatsapp => {
            let whatsapp: WhatsappContent = check.parse(prefix, content)?;
            match (&whatsapp.text, &whatsapp.template) {
                (Some(_), Some(_)) => check.error(prefix, "give either text or template, not both"),
                (None, None) => check.error(field("text"), "text or template is required"),
                (Some(text), None) if text.trim().is_empty() || chars(text) > 4096 => {
                    check.error(field("text"), "must be 1 to 4096 characters")
                }
                (None, Some(template)) => {
                    if template.name.trim().is_empty() {
                        check.error(field("template.name"), "must not be blank");
                    }
                    let language_ok = (2..=15).contains(&template.language.len())
                        && template
                            .language
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                    if !language_ok {
                        check.error(
                            field("template.language"),
                            "must be a language code such as en_US",
                        );
                    }
                }
                _ => {}
            }
            serde_json::to_value(whatsapp).ok()
        }
        Channel::Discord => {
            let discord: DiscordContent = check.parse(prefix, content)?;
            match &discord.text {
                None if discord.embeds.is_empty() => {
                    check.error(field("text"), "text or embeds is required")
                }
                Some(text) if text.trim().is_empty() || chars(text) > MAX_DISCORD_TEXT_CHARS => {
                    check.error(
                        field("text"),
                        format!("must be 1 to {MAX_DISCORD_TEXT_CHARS} characters"),
                    )
                }
                _ => {}
            }
            if discord.embeds.len() > MAX_DISCORD_EMBEDS {
                check.error(
                    field("embeds"),
                    format!("must hold at most {MAX_DISCORD_EMBEDS} embeds"),
                );
            }
            for (i, embed) in discord.embeds.iter().enumerate() {
                if !embed.is_object() {
                    check.error(format!("{prefix}.embeds.{i}"), "must be an embed object");
                }
            }
            serde_json::to_value(discord).ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errors(channel: Channel, content: serde_json::Value) -> Vec<String> {
        let mut check = Validator::new();
        check_content(&mut check, "content", channel, &content);
        match check.finish() {
            Ok(()) => vec![],
            Err(e) => e.details().iter().map(|d| d.field.clone()).collect(),
        }
    }

    #[test]
    fn content_rules_name_their_fields() {
        assert!(errors(Channel::Email, json!({"subject": "Hi", "text": "Hello"})).is_empty());
        assert_eq!(errors(Channel::Email, json!({"text": "Hello"})), ["content.subject"]);
        assert_eq!(errors(Channel::Email, json!({"subject": "Hi"})), ["content.text"]);
        assert_eq!(
            errors(
                Channel::Email,
                json!({"subject": "Hi", "html": "<p>", "cc": ["ok@example.com", "bad"], "replyTo": "nope"})
            ),
            ["content.replyTo", "content.cc.1"]
        );
        assert_eq!(
            errors(Channel::Email, json!({"subject": "Hi", "text": "x", "bogus": 1})),
            ["content.bogus"]
        );
        assert_eq!(errors(Channel::Sms, json!({"text": "x".repeat(1601)})), ["content.text"]);
        assert_eq!(errors(Channel::Sms, json!("hello")), ["content"]);
        assert!(
            errors(Channel::Whatsapp, json!({"template": {"name": "hello", "language": "en_US"}}))
                .is_empty()
        );
        assert_eq!(errors(Channel::Whatsapp, json!({})), ["content.text"]);
        assert_eq!(
            errors(
                Channel::Whatsapp,
                json!({"text": "a", "template": {"name": "n", "language": "en"}})
            ),
            ["content"]
        );
        assert_eq!(errors(Channel::Discord, json!({"text": "x".repeat(2001)})), ["content.text"]);
        assert!(errors(Channel::Discord, json!({"embeds": [{"title": "t"}]})).is_empty());
        assert_eq!(errors(Channel::Discord, json!({"embeds": [1]})), ["content.embeds.0"]);
    }
}
