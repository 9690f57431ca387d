//! JSON Schemas of the values the validators accept, for the OpenAPI document.
//!
//! Each schema is built from the constants of the check it describes (the longest name, the
//! slug's alphabet, the statuses), so that the document cannot promise what the check refuses.
//! [`json_schema!`](crate::json_schema) declares a type that stands for such a value: a field
//! keeps its Rust type and names the schema with `#[schema(value_type = Slug)]`.

use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};

use crate::domain::validate::MAX_NAME_CHARS;
use crate::domain::{recipient, slug, status};

/// Declares `pub struct $name;` whose OpenAPI schema (a component named after it) is `$schema`,
/// an expression of a type that converts into a schema (an `ObjectBuilder`, say).
#[macro_export]
macro_rules! json_schema {
    ($(#[$meta:meta])* $name:ident => $schema:expr) => {
        $(#[$meta])*
        pub struct $name;

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                let schema: utoipa::openapi::schema::Schema = $schema.into();
                schema.into()
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

/// What `char::is_whitespace` (and so `str::trim`) takes for whitespace, as the body of a
/// regex character class that both ECMA-262 and Python read alike.
pub const WHITESPACE: &str =
    r"\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";

/// A pattern that text of more than whitespace matches (what `trim().is_empty()` refuses).
pub fn not_blank() -> String {
    format!("[^{WHITESPACE}]")
}

/// A pattern for text without whitespace.
pub fn no_whitespace() -> String {
    format!("^[^{WHITESPACE}]+$")
}

/// A string of `min` to `max` characters (Unicode scalar values, as `chars().count()`).
pub fn text(min: usize, max: usize) -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String).min_length(Some(min)).max_length(Some(max))
}

/// A string that is one of `values`.
pub fn one_of(values: &[&str]) -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String).enum_values(Some(values.iter().copied()))
}

/// Any JSON object.
pub fn object() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(SchemaType::Type(Type::Object))
}

json_schema! {
    /// A display name: not blank, at most 100 characters (`Validator::name`).
    DisplayName => text(1, MAX_NAME_CHARS)
        .pattern(Some(not_blank()))
        .description(Some(format!(
            "Not blank, at most {MAX_NAME_CHARS} characters; kept trimmed."
        )))
        .examples(["Acme"])
}

json_schema! {
    /// A slug: lower-case letters, digits and single inner hyphens (`slug::is_valid`).
    Slug => text(1, slug::MAX_CHARS)
        .pattern(Some("^[a-z0-9]+(-[a-z0-9]+)*$"))
        .description(Some(format!(
            "1 to {} characters of a-z, 0-9 and single hyphens inside.",
            slug::MAX_CHARS
        )))
        .examples(["my-project"])
}

json_schema! {
    /// An email address, an RFC 5322 addr-spec (`recipient::is_email_address`).
    EmailAddress => text(3, recipient::MAX_EMAIL_BYTES)
        .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
            utoipa::openapi::KnownFormat::Email,
        )))
        .description(Some(format!(
            "An email address (RFC 5322 addr-spec), at most {} bytes.",
            recipient::MAX_EMAIL_BYTES
        )))
        .examples(["alice@example.com"])
}

json_schema! {
    /// A phone number in E.164 form (`recipient::is_e164`).
    PhoneNumber => ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(recipient::E164_PATTERN))
        .description(Some("E.164: `+`, then 7 to 15 digits, the first not 0."))
        .examples(["+14155550123"])
}

json_schema! {
    /// A message status, as stored and shown.
    MessageStatus => one_of(status::STATUSES)
}

json_schema! {
    /// Any JSON object.
    JsonObject => object()
}
