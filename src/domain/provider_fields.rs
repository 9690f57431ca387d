//! The fields of each provider type, one by one, as a form asks for them: read off the same
//! schemas that the API document states and the checks of `provider_types` hold the values to,
//! so a form offers exactly the fields a type takes (no more, no fewer) without a second,
//! hand-written list that could fall behind. The text typed into a field becomes the JSON
//! value the API would take; the checks proper stay with `ProviderType::check_credentials` and
//! `check_config`.

use std::collections::BTreeMap;

use serde_json::Value;
use utoipa::ToSchema;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{Schema, SchemaType, Type};

use crate::domain::provider_types::{EndpointUrl, ProviderType};
use crate::domain::validate::Validator;

/// Which part of a credential a field belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Sealed at rest and never shown again.
    Credentials,
    Config,
}

impl Part {
    pub fn as_str(self) -> &'static str {
        match self {
            Part::Credentials => "credentials",
            Part::Config => "config",
        }
    }
}

/// What a field holds, and so how it is typed in.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Text,
    /// A whole number.
    Integer,
    Number,
    /// One of these values.
    Choice(Vec<String>),
    /// A list of texts, one a line.
    List,
}

#[derive(Debug, Clone)]
pub struct Field {
    pub part: Part,
    /// As the API spells it: `latencyMs`.
    pub name: String,
    pub kind: Kind,
    pub required: bool,
    pub description: Option<String>,
    /// Where the provider calls go instead of the provider's own API: refused unless the
    /// server allows endpoint overrides, so not offered then.
    pub endpoint: bool,
}

impl Field {
    /// `credentials.accessKeyId`: the name of its input, and of its errors (as the API's).
    pub fn key(&self) -> String {
        format!("{}.{}", self.part.as_str(), self.name)
    }

    /// Written, never read back.
    pub fn secret(&self) -> bool {
        self.part == Part::Credentials
    }

    /// The value of `text` as typed into this field; `None` when nothing was typed. Text that
    /// cannot be of its kind is reported into `check`.
    pub fn parse(&self, text: &str, check: &mut Validator) -> Option<Value> {
        if text.is_empty() {
            return None;
        }
        let number = |value: Option<Value>, what: &str, check: &mut Validator| {
            if value.is_none() {
                check.error(self.key(), format!("must be {what}"));
            }
            value
        };
        match &self.kind {
            Kind::Text | Kind::Choice(_) => Some(Value::from(text)),
            Kind::Integer => {
                number(text.trim().parse::<i64>().ok().map(Value::from), "a whole number", check)
            }
            Kind::Number => {
                let parsed = text.trim().parse::<f64>().ok();
                number(
                    parsed.and_then(serde_json::Number::from_f64).map(Value::Number),
                    "a number",
                    check,
                )
            }
            Kind::List => Some(Value::Array(
                text.split([',', '\n'])
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .map(Value::from)
                    .collect(),
            )),
        }
    }

    /// A stored (non-secret) value as the field shows it, the reverse of [`Self::parse`].
    pub fn show(&self, value: &Value) -> String {
        match value {
            Value::Null => String::new(),
            Value::String(text) => text.clone(),
            Value::Array(items) => items
                .iter()
                .map(|item| item.as_str().map_or_else(|| item.to_string(), str::to_owned))
                .collect::<Vec<_>>()
                .join("\n"),
            other => other.to_string(),
        }
    }
}

impl ProviderType {
    /// This type's fields: its credentials', then its config's, the required first.
    pub fn fields(self) -> Vec<Field> {
        let mut components = Vec::new();
        ProviderType::schemas(&mut components);
        let components: BTreeMap<String, RefOr<Schema>> = components.into_iter().collect();
        let read = Reader { components: &components };
        let mut fields = read.object(Part::Credentials, &self.credentials_schema());
        fields.extend(read.object(Part::Config, &self.config_schema()));
        fields
    }
}

/// Reads fields off schemas whose references name `components`.
struct Reader<'a> {
    components: &'a BTreeMap<String, RefOr<Schema>>,
}

/// A property, resolved to what it holds.
struct Resolved {
    /// `None` for a property that may only be null (absent) in this alternative.
    kind: Option<Kind>,
    description: Option<String>,
    endpoint: bool,
}

impl Reader<'_> {
    fn component(&self, reference: &str) -> Option<&RefOr<Schema>> {
        let name = reference.rsplit('/').next().unwrap_or(reference);
        self.components.get(name)
    }

    /// The fields of an object schema, or of alternatives of objects (`smtp` credentials
    /// both or neither, the sandbox's throttled mode): every property any alternative names,
    /// required when every alternative requires it.
    fn object(&self, part: Part, schema: &RefOr<Schema>) -> Vec<Field> {
        let mut objects = Vec::new();
        self.objects(schema, &mut objects);
        let mut fields: Vec<Field> = Vec::new();
        for object in &objects {
            for (name, property) in &object.properties {
                let resolved = self.property(property);
                let Some(kind) = resolved.kind else { continue };
                if fields.iter().any(|f| &f.name == name) {
                    continue;
                }
                fields.push(Field {
                    part,
                    name: name.clone(),
                    kind,
                    required: objects.iter().all(|o| o.required.contains(name)),
                    description: resolved.description,
                    endpoint: resolved.endpoint,
                });
            }
        }
        // stable: alphabetical within each group, as the schemas list them
        fields.sort_by_key(|f| !f.required);
        fields
    }

    /// The object schemas `schema` stands for: itself, or its non-null alternatives.
    fn objects<'s>(
        &'s self,
        schema: &'s RefOr<Schema>,
        found: &mut Vec<&'s utoipa::openapi::schema::Object>,
    ) {
        match schema {
            RefOr::Ref(reference) => {
                if let Some(target) = self.component(&reference.ref_location) {
                    self.objects(target, found);
                }
            }
            RefOr::T(Schema::Object(object)) => {
                if !is_null(&object.schema_type) {
                    found.push(object);
                }
            }
            RefOr::T(Schema::OneOf(one_of)) => {
                for item in &one_of.items {
                    self.objects(item, found);
                }
            }
            RefOr::T(_) => {}
        }
    }

    fn property(&self, schema: &RefOr<Schema>) -> Resolved {
        match schema {
            RefOr::Ref(reference) => {
                let endpoint =
                    reference.ref_location.ends_with(&format!("/{}", EndpointUrl::name()));
                let outer = Some(reference.description.clone()).filter(|d| !d.is_empty());
                let mut resolved = match self.component(&reference.ref_location) {
                    Some(target) => self.property(target),
                    None => Resolved { kind: Some(Kind::Text), description: None, endpoint: false },
                };
                resolved.endpoint |= endpoint;
                resolved.description = resolved.description.or(outer);
                resolved
            }
            RefOr::T(Schema::OneOf(one_of)) => {
                let description = one_of.description.clone();
                let mut resolved = one_of
                    .items
                    .iter()
                    .map(|item| self.property(item))
                    .find(|r| r.kind.is_some())
                    .unwrap_or(Resolved { kind: None, description: None, endpoint: false });
                resolved.description = resolved.description.or(description);
                resolved
            }
            RefOr::T(Schema::Array(array)) => Resolved {
                kind: Some(Kind::List),
                description: array.description.clone(),
                endpoint: false,
            },
            RefOr::T(Schema::Object(object)) => {
                let kind = match &object.enum_values {
                    Some(values) => Some(Kind::Choice(
                        values.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
                    )),
                    None => match main_type(&object.schema_type) {
                        None => None,
                        Some(Type::Integer) => Some(Kind::Integer),
                        Some(Type::Number) => Some(Kind::Number),
                        Some(Type::Array) => Some(Kind::List),
                        Some(_) => Some(Kind::Text),
                    },
                };
                Resolved { kind, description: object.description.clone(), endpoint: false }
            }
            RefOr::T(_) => Resolved { kind: Some(Kind::Text), description: None, endpoint: false },
        }
    }
}

fn is_null(schema_type: &SchemaType) -> bool {
    main_type(schema_type).is_none()
}

/// The type a schema holds besides null; `None` for null alone.
fn main_type(schema_type: &SchemaType) -> Option<Type> {
    match schema_type {
        SchemaType::Type(Type::Null) => None,
        SchemaType::Type(other) => Some(other.clone()),
        SchemaType::Array(types) => types.iter().find(|t| **t != Type::Null).cloned(),
        SchemaType::AnyValue => Some(Type::String),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(provider: ProviderType, key: &str) -> Field {
        provider
            .fields()
            .into_iter()
            .find(|f| f.key() == key)
            .unwrap_or_else(|| panic!("{provider:?} has no {key}"))
    }

    fn keys(provider: ProviderType) -> Vec<String> {
        provider.fields().iter().map(Field::key).collect()
    }

    #[test]
    fn every_type_has_exactly_its_fields() {
        assert_eq!(
            keys(ProviderType::Ses),
            [
                "credentials.accessKeyId",
                "credentials.secretAccessKey",
                "config.fromAddress",
                "config.region",
                "config.configurationSet",
                "config.endpointUrl",
                "config.rateLimit",
                "config.snsTopicArns",
            ]
        );
        assert_eq!(
            keys(ProviderType::Smtp),
            [
                "credentials.password",
                "credentials.username",
                "config.fromAddress",
                "config.host",
                "config.port",
                "config.tls",
                "config.rateLimit",
            ]
        );
        assert_eq!(
            keys(ProviderType::Sandbox),
            [
                "config.failFirst",
                "config.failMode",
                "config.failRate",
                "config.latencyMs",
                "config.rateLimit",
                "config.retryAfterMs",
            ]
        );
        assert_eq!(
            keys(ProviderType::DiscordBot),
            ["credentials.botToken", "config.baseUrl", "config.rateLimit"]
        );
        for provider in ProviderType::ALL {
            assert!(!provider.fields().is_empty(), "{provider:?}");
        }
    }

    #[test]
    fn fields_know_their_kind_and_whether_required() {
        let latency = field(ProviderType::Sandbox, "config.latencyMs");
        assert_eq!((latency.kind.clone(), latency.required), (Kind::Integer, false));
        assert_eq!(latency.description.as_deref(), Some("How long each attempt takes."));
        assert_eq!(field(ProviderType::Sandbox, "config.failRate").kind, Kind::Number);
        assert_eq!(
            field(ProviderType::Sandbox, "config.failMode").kind,
            Kind::Choice(
                ["retryable", "permanent", "credential", "throttled"].map(String::from).to_vec()
            )
        );
        assert_eq!(field(ProviderType::Sandbox, "config.retryAfterMs").kind, Kind::Integer);
        let port = field(ProviderType::Smtp, "config.port");
        assert_eq!((port.kind.clone(), port.required), (Kind::Integer, true));
        assert_eq!(
            field(ProviderType::Smtp, "config.tls").kind,
            Kind::Choice(["starttls", "tls", "none"].map(String::from).to_vec())
        );
        // both or neither: neither is required on its own
        assert!(!field(ProviderType::Smtp, "credentials.username").required);
        assert_eq!(field(ProviderType::Ses, "config.snsTopicArns").kind, Kind::List);
        let region = field(ProviderType::Sns, "config.region");
        assert_eq!(
            (region.kind.clone(), region.required, region.endpoint),
            (Kind::Text, true, false)
        );
        assert!(field(ProviderType::Sns, "config.endpointUrl").endpoint);
        assert!(field(ProviderType::WhatsappCloud, "config.baseUrl").endpoint);
        let secret = field(ProviderType::WhatsappCloud, "credentials.accessToken");
        assert!(secret.secret() && secret.required);
        assert!(!field(ProviderType::WhatsappCloud, "config.phoneNumberId").secret());
    }

    #[test]
    fn typed_text_becomes_the_values_the_api_takes() {
        let mut check = Validator::new();
        let latency = field(ProviderType::Sandbox, "config.latencyMs");
        assert_eq!(latency.parse("", &mut check), None);
        assert_eq!(latency.parse(" 250 ", &mut check), Some(Value::from(250)));
        let rate = field(ProviderType::Sandbox, "config.failRate");
        assert_eq!(rate.parse("0.5", &mut check), Some(Value::from(0.5)));
        let topics = field(ProviderType::Ses, "config.snsTopicArns");
        let parsed = topics.parse("arn:a\n arn:b ,\n", &mut check);
        assert_eq!(parsed, Some(serde_json::json!(["arn:a", "arn:b"])));
        assert_eq!(topics.show(&serde_json::json!(["arn:a", "arn:b"])), "arn:a\narn:b");
        assert_eq!(latency.show(&Value::from(250)), "250");
        assert!(check.finish().is_ok());

        let mut check = Validator::new();
        assert_eq!(latency.parse("soon", &mut check), None);
        assert_eq!(rate.parse("NaN", &mut check), None);
        let fields: Vec<String> = check
            .finish()
            .err()
            .map(|e| e.details().iter().map(|d| d.field.clone()).collect())
            .unwrap_or_default();
        assert_eq!(fields, ["config.latencyMs", "config.failRate"]);
    }
}
