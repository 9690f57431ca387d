//! Validation of input, shared by every way in (the HTTP API, `relayit admin`): every problem of
//! a request is collected and reported at once, each naming its field by its dotted camelCase
//! path. Nothing here knows HTTP: the API answers a [`ValidationError`] as 400
//! `validation_failed`, the command line prints it as one line.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;
use utoipa::ToSchema;

use crate::domain::{recipient, slug};

pub const MAX_NAME_CHARS: usize = 100;

/// What a request's text may not hold: PostgreSQL stores no U+0000 in text or jsonb.
pub const NUL_REFUSED: &str = "must not contain the character U+0000";

/// One problem with one field of the request, as `{field, message}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// Dotted camelCase path of the field (`content.subject`, `eventTypes.1`).
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// A request that failed validation: every field at fault, in the order found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", describe(.0))]
pub struct ValidationError(pub Vec<FieldError>);

impl ValidationError {
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self(vec![FieldError::new(field, message)])
    }

    pub fn details(&self) -> &[FieldError] {
        &self.0
    }
}

/// `email: is not a valid email address; name: must not be blank`.
fn describe(errors: &[FieldError]) -> String {
    let parts: Vec<String> = errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect();
    parts.join("; ")
}

#[derive(Debug, Default)]
pub struct Validator {
    errors: Vec<FieldError>,
}

impl Validator {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn error(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError::new(field, message));
    }

    /// A display name: not blank, at most `MAX_NAME_CHARS` characters.
    pub fn name(&mut self, field: &str, value: &str) {
        if value.trim().is_empty() {
            self.error(field, "must not be blank");
        } else if value.chars().count() > MAX_NAME_CHARS {
            self.error(field, format!("must be at most {MAX_NAME_CHARS} characters"));
        }
    }

    /// A slug: lower-case letters, digits and single hyphens, not at either end.
    pub fn slug(&mut self, field: &str, value: &str) {
        if !slug::is_valid(value) {
            self.error(
                field,
                format!(
                    "must be 1 to {} characters of a-z, 0-9 and single hyphens inside",
                    slug::MAX_CHARS
                ),
            );
        }
    }

    /// An email address (an RFC 5322 addr-spec).
    pub fn email(&mut self, field: &str, value: &str) {
        if !recipient::is_email_address(value) {
            self.error(field, "is not a valid email address");
        }
    }

    /// A JSON object of at most `max_bytes` once serialized.
    pub fn object(&mut self, field: &str, value: &serde_json::Value, max_bytes: usize) {
        if !value.is_object() {
            self.error(field, "must be a JSON object");
        } else if serde_json::to_vec(value).map_or(usize::MAX, |v| v.len()) > max_bytes {
            self.error(field, format!("must be at most {} KiB", max_bytes / 1024));
        }
    }

    /// Parses the JSON object at `field` as `T`; its shape errors are reported here.
    pub fn parse<T: DeserializeOwned>(
        &mut self,
        field: &str,
        value: &serde_json::Value,
    ) -> Option<T> {
        match parse_object(value, field) {
            Ok(parsed) => Some(parsed),
            Err(ValidationError(errors)) => {
                self.errors.extend(errors);
                None
            }
        }
    }

    pub fn finish(self) -> Result<(), ValidationError> {
        if self.errors.is_empty() { Ok(()) } else { Err(ValidationError(self.errors)) }
    }
}

/// Parses `value`, the JSON object at `field` of an already parsed body, into `T`. For parts of
/// a body whose shape depends on another field (a provider's `credentials` by its type): errors
/// have paths under `field` (`credentials.secretAccessKey`).
pub fn parse_object<T: DeserializeOwned>(
    value: &serde_json::Value,
    field: &str,
) -> Result<T, ValidationError> {
    // serde would take an array for a struct; request bodies are objects
    if !value.is_object() {
        return Err(ValidationError::field(field, "must be a JSON object"));
    }
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = match dotted_path(error.path()) {
            inner if inner.is_empty() => field.to_owned(),
            inner if field.is_empty() => inner,
            inner => format!("{field}.{inner}"),
        };
        ValidationError(vec![field_error(&path, &bare(error.inner()))])
    })
}

/// serde_path_to_error writes `a.b[1]`; the contract writes `a.b.1`.
pub fn dotted_path(path: &serde_path_to_error::Path) -> String {
    let parts: Vec<String> = path
        .iter()
        .filter_map(|segment| match segment {
            Segment::Seq { index } => Some(index.to_string()),
            Segment::Map { key } => Some(key.clone()),
            Segment::Enum { .. } | Segment::Unknown => None,
            // Segment is non-exhaustive
            #[allow(unreachable_patterns)]
            _ => None,
        })
        .collect();
    parts.join(".")
}

/// For a missing field the path ends at its parent and serde names the field only in its
/// message; put it in the path so that `field` is the field's own path. Keep messages short.
pub fn field_error(path: &str, message: &str) -> FieldError {
    let join = |name: &str| {
        if path.is_empty() { name.to_owned() } else { format!("{path}.{name}") }
    };
    let named = |prefix: &str| {
        message.strip_prefix(prefix).and_then(|rest| rest.split('`').next()).map(str::to_owned)
    };
    if message.starts_with("unknown field `") {
        return FieldError::new(path, "is not a known field");
    }
    if let Some(name) = named("missing field `") {
        return FieldError::new(join(&name), "is required");
    }
    let field = if path.is_empty() { "body".to_owned() } else { path.to_owned() };
    FieldError::new(field, message)
}

/// serde_json's message without its " at line 1 column 5" suffix.
pub fn bare(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rsplit_once(" at line ") {
        Some((message, _)) => message.to_owned(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Content {
        subject: String,
    }

    #[test]
    fn parts_of_a_body_report_full_paths() {
        let error_of = |value: serde_json::Value| {
            let error = parse_object::<Content>(&value, "config").unwrap_err();
            let detail = error.details()[0].clone();
            (detail.field, detail.message)
        };
        let cases = [
            (serde_json::json!({}), "config.subject", "is required"),
            (serde_json::json!({"subject": 1}), "config.subject", "invalid type"),
            (serde_json::json!({"subject": "s", "x": 1}), "config.x", "not a known field"),
            (serde_json::json!(["s"]), "config", "must be a JSON object"),
            (serde_json::json!(null), "config", "must be a JSON object"),
        ];
        for (value, field, message) in cases {
            let (named, said) = error_of(value.clone());
            assert_eq!(named, field, "{value}");
            assert!(said.contains(message), "{value}: {said}");
        }
        let content: Content = parse_object(&serde_json::json!({"subject": "s"}), "c").unwrap();
        assert_eq!(content.subject, "s");
    }

    #[test]
    fn errors_read_as_one_line() {
        let mut check = Validator::new();
        check.email("email", "nope");
        check.name("name", " ");
        let error = check.finish().unwrap_err();
        assert_eq!(
            error.to_string(),
            "email: is not a valid email address; name: must not be blank"
        );
    }
}
