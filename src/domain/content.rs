//! What a message says, per channel, and who it goes to: the typed forms behind `/v1/send`'s
//! `content` and `to`, validated at ingestion and read back by the connectors.
//!
//! Stored content is the typed form re-serialized, so a connector can deserialize it without
//! re-validating.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type,
};
use utoipa::openapi::{Ref, RefOr};

use crate::domain::channel::Channel;
use crate::domain::recipient::is_email;
use crate::domain::schema;
use crate::domain::validate::Validator;

pub const MAX_SMS_CHARS: usize = 1600;
pub const MAX_DISCORD_TEXT_CHARS: usize = 2000;
pub const MAX_DISCORD_EMBEDS: usize = 10;
pub const MAX_SUBJECT_CHARS: usize = 998;
/// Per-field bound on email bodies; the request body limit (256 KiB) bounds the rest.
pub const MAX_EMAIL_BODY_BYTES: usize = 200 * 1024;
pub const MAX_RECIPIENTS: usize = 50;
pub const MAX_WHATSAPP_TEXT_CHARS: usize = 4096;

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

/// The OpenAPI schema of `content` for `channel`, as [`check_content`] takes it: alternatives
/// of whole objects where one of two fields is required.
pub fn content_schema(channel: Channel) -> RefOr<Schema> {
    let one_of = |alternatives: [ObjectBuilder; 2]| -> RefOr<Schema> {
        let mut builder = OneOfBuilder::new();
        for alternative in alternatives {
            builder = builder.item(closed(alternative));
        }
        builder.into()
    };
    match channel {
        Channel::Email => {
            let address = || RefOr::Ref(Ref::from_schema_name(schema::EmailAddress::name()));
            let addresses = || ArrayBuilder::new().items(address()).max_items(Some(MAX_RECIPIENTS));
            let body = || {
                ObjectBuilder::new().schema_type(Type::String).description(Some(format!(
                    "At most {} KiB (UTF-8).",
                    MAX_EMAIL_BODY_BYTES / 1024
                )))
            };
            let common = || {
                ObjectBuilder::new()
                    .property("subject", blank_refused(MAX_SUBJECT_CHARS))
                    .required("subject")
                    .property("from", OneOfBuilder::new().item(null()).item(address()))
                    .property(
                        "replyTo",
                        OneOfBuilder::new().item(null()).item(address()).item(addresses()),
                    )
                    .property("cc", addresses())
                    .property("bcc", addresses())
            };
            one_of([
                common()
                    .property("text", body())
                    .required("text")
                    .property("html", nullable(body())),
                common().property("text", null()).property("html", body()).required("html"),
            ])
        }
        Channel::Sms => closed(
            ObjectBuilder::new().property("text", blank_refused(MAX_SMS_CHARS)).required("text"),
        )
        .into(),
        Channel::Whatsapp => {
            let template = ObjectBuilder::new()
                .property(
                    "name",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .pattern(Some(schema::not_blank())),
                )
                .required("name")
                .property(
                    "language",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .pattern(Some("^[A-Za-z0-9_-]{2,15}$"))
                        .examples(["en_US"]),
                )
                .required("language")
                .property(
                    "components",
                    or_null(
                        ArrayBuilder::new()
                            .items(ObjectBuilder::new().schema_type(SchemaType::AnyValue)),
                    ),
                );
            one_of([
                ObjectBuilder::new()
                    .property("text", blank_refused(MAX_WHATSAPP_TEXT_CHARS))
                    .required("text")
                    .property("template", null()),
                ObjectBuilder::new()
                    .property("text", null())
                    .property("template", closed(template))
                    .required("template"),
            ])
        }
        Channel::Discord => {
            let embeds = |least: usize| {
                ArrayBuilder::new()
                    .items(schema::object())
                    .min_items(Some(least))
                    .max_items(Some(MAX_DISCORD_EMBEDS))
            };
            one_of([
                ObjectBuilder::new()
                    .property("text", blank_refused(MAX_DISCORD_TEXT_CHARS))
                    .required("text")
                    .property("embeds", embeds(0)),
                ObjectBuilder::new()
                    .property("text", null())
                    .property("embeds", embeds(1))
                    .required("embeds"),
            ])
        }
    }
}

/// Text of 1 to `max` characters, not blank.
pub fn blank_refused(max: usize) -> ObjectBuilder {
    schema::text(1, max).pattern(Some(schema::not_blank()))
}

fn null() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::Null)
}

fn nullable(string: ObjectBuilder) -> ObjectBuilder {
    string.schema_type(SchemaType::from_iter([Type::String, Type::Null]))
}

/// A body with one alternative per channel: `channel` naming it, and the `fields` that
/// channel takes (an address or content of its kind), closed.
pub fn per_channel(fields: impl Fn(Channel) -> ObjectBuilder) -> RefOr<Schema> {
    let mut alternatives = OneOfBuilder::new();
    for channel in Channel::ALL {
        alternatives = alternatives.item(closed(
            fields(channel)
                .title(Some(channel.as_str()))
                .property("channel", schema::one_of(&[channel.as_str()]))
                .required("channel"),
        ));
    }
    alternatives.into()
}

/// `schema`, or null.
pub fn or_null(schema: impl Into<RefOr<Schema>>) -> OneOfBuilder {
    OneOfBuilder::new().item(null()).item(schema)
}

/// An object without other fields.
pub fn closed(object: ObjectBuilder) -> ObjectBuilder {
    object
        .schema_type(Type::Object)
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
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
                (Some(text), None)
                    if text.trim().is_empty() || chars(text) > MAX_WHATSAPP_TEXT_CHARS =>
                {
                    check.error(
                        field("text"),
                        format!("must be 1 to {MAX_WHATSAPP_TEXT_CHARS} characters"),
                    )
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
