//! Field validation shared by the write routes: every problem of a body is collected and
//! reported at once, each naming its field.

use crate::error::{ApiError, FieldError};

pub const MAX_NAME_CHARS: usize = 100;
pub const MAX_SLUG_CHARS: usize = 48;

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
        if !crate::slug::is_valid(value) {
            self.error(
                field,
                format!(
                    "must be 1 to {MAX_SLUG_CHARS} characters of a-z, 0-9 and single hyphens inside"
                ),
            );
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

    pub fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() { Ok(()) } else { Err(ApiError::validation(self.errors)) }
    }
}

/// Turns a unique-constraint violation into 409 `conflict` with `message`.
pub fn conflict_on_unique<T>(result: diesel::QueryResult<T>, message: &str) -> Result<T, ApiError> {
    use diesel::result::{DatabaseErrorKind, Error};
    match result {
        Err(Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => {
            Err(ApiError::conflict(message))
        }
        other => other.map_err(ApiError::from),
    }
}
