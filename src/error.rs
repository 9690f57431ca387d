//! The HTTP error type and the contract's error body.
//!
//! Handlers return `Result<_, ApiError>`; lower layers' errors convert into it here, once, so the
//! status codes and codes of the contract are decided in one place:
//! `{"error": {"code", "message", "details": [{"field", "message"}]}}`. Internal failures are
//! logged with their cause and answered with a generic message, never the cause.

use std::fmt;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::password::Busy;
use crate::db::DbError;
use crate::domain::validate::{FieldError, ValidationError};
use crate::inbound::InboundError;
use crate::queue::QueueError;

/// The error body of every 4xx and 5xx answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable snake_case code, e.g. `validation_failed`.
    pub code: &'static str,
    pub message: String,
    pub details: Vec<FieldError>,
}

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    details: Vec<FieldError>,
    retry_after: Option<Duration>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), details: Vec::new(), retry_after: None }
    }

    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }

    pub fn with_details(mut self, details: Vec<FieldError>) -> Self {
        self.details = details;
        self
    }

    /// 400 `validation_failed` naming the fields at fault.
    pub fn validation(details: Vec<FieldError>) -> Self {
        let message = match details.as_slice() {
            [one] => format!("{}: {}", one.field, one.message),
            _ => "the request has invalid fields".to_owned(),
        };
        Self::new(StatusCode::BAD_REQUEST, "validation_failed", message).with_details(details)
    }

    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::validation(vec![FieldError::new(field, message)])
    }

    pub fn malformed_json(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "malformed_json", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", "authentication is required")
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("{what} not found"))
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body exceeds {limit} bytes"),
        )
    }

    pub fn rate_limited(retry_after: Duration) -> Self {
        let mut error =
            Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "too many requests");
        error.retry_after = Some(retry_after);
        error
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// Adds `Retry-After` (whole seconds, rounded up) to the answer.
    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// 500 with nothing of the cause in the body; the cause goes to the log.
    pub fn internal(cause: impl fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
    }

    /// The contract's error for a status that was produced outside our handlers (an unknown
    /// route, a method a resource does not have, a failure inside actix).
    pub fn for_status(status: StatusCode) -> Self {
        let (code, message) = match status.as_u16() {
            401 => ("unauthorized", "authentication is required"),
            403 => ("forbidden", "not allowed"),
            404 => ("not_found", "no such route"),
            405 => ("method_not_allowed", "method not allowed on this route"),
            406 => ("not_acceptable", "the requested representation is not available"),
            408 => ("request_timeout", "the request took too long to arrive"),
            413 => ("payload_too_large", "the request body is too large"),
            415 => ("unsupported_media_type", "send application/json"),
            429 => ("rate_limited", "too many requests"),
            503 => ("unavailable", "temporarily unavailable"),
            400..=499 => ("bad_request", "the request is not valid"),
            _ => ("internal", "internal error"),
        };
        Self::new(status, code, message)
    }

    pub fn code(&self) -> &'static str {
        self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn details(&self) -> &[FieldError] {
        &self.details
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if let Some(after) = self.retry_after {
            // Retry-After is whole seconds; round up so a client never retries too early.
            let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            response.insert_header((header::RETRY_AFTER, HeaderValue::from(secs.max(1))));
        }
        response.json(ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message.clone(),
                details: self.details.clone(),
            },
        })
    }
}

/// Every password hashing slot stayed taken for `auth.hash_wait`: 503, to try again in a second
/// (a hash takes tens of milliseconds, so slots turn over quickly once a burst passes).
impl From<Busy> for ApiError {
    fn from(busy: Busy) -> Self {
        Self::unavailable(busy.to_string()).with_retry_after(Duration::from_secs(1))
    }
}

impl From<ValidationError> for ApiError {
    fn from(error: ValidationError) -> Self {
        Self::validation(error.0)
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

impl From<InboundError> for ApiError {
    fn from(error: InboundError) -> Self {
        match error {
            InboundError::NotFound(what) => Self::not_found(what),
            InboundError::Malformed(message) => Self::malformed_json(message),
            InboundError::Invalid(field, message) => Self::invalid_field(field, message),
            InboundError::Unauthenticated(message) => Self::unauthorized().with_message(message),
            InboundError::Refused(message) => Self::forbidden(message),
            InboundError::Unavailable(message) => Self::unavailable(message),
            InboundError::Internal(cause) => Self::internal(cause),
            InboundError::Pool(e) => e.into(),
            InboundError::Query(e) => e.into(),
        }
    }
}

impl From<DbError> for ApiError {
    fn from(error: DbError) -> Self {
        match error {
            DbError::Query(e) => e.into(),
            DbError::Connect(e) => {
                tracing::warn!(error = %e, "database unreachable");
                Self::unavailable("the database is unavailable; try again shortly")
            }
            other => Self::internal(other),
        }
    }
}

impl From<diesel::result::Error> for ApiError {
    fn from(error: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error};
        match error {
            Error::NotFound => Self::not_found("resource"),
            // the database is away, not the request wrong
            error if crate::db::database_went_away(&error) => {
                tracing::warn!(%error, "database connection lost");
                Self::unavailable("the database is unavailable; try again shortly")
            }
            error if crate::db::timed_out(&error) => {
                tracing::warn!(%error, "database statement timed out");
                Self::unavailable("the database took too long to answer; try again shortly")
            }
            Error::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => {
                Self::conflict("a concurrent change conflicted with this request; retry it")
            }
            // a U+0000 that no check before the query caught (they name the field): still the
            // request's fault, not the server's
            Error::DatabaseError(_, info) if info.message().contains("0x00") => {
                Self::invalid_field("body", crate::domain::validate::NUL_REFUSED)
            }
            other => Self::internal(other),
        }
    }
}

impl From<diesel_async::pooled_connection::deadpool::PoolError> for ApiError {
    fn from(error: diesel_async::pooled_connection::deadpool::PoolError) -> Self {
        tracing::warn!(error = %error, "no database connection available");
        Self::unavailable("the database is unavailable; try again shortly")
    }
}

impl From<QueueError> for ApiError {
    fn from(error: QueueError) -> Self {
        tracing::warn!(error = %error, "redis unavailable");
        Self::unavailable("the queue is unavailable; try again shortly")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::to_bytes;

    async fn body_of(error: ApiError) -> (StatusCode, serde_json::Value, Option<String>) {
        let response = error.error_response();
        let status = response.status();
        let retry =
            response.headers().get(header::RETRY_AFTER).map(|v| v.to_str().unwrap().to_owned());
        let bytes = to_bytes(response.into_body()).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap(), retry)
    }

    #[actix_web::test]
    async fn body_shape_is_the_contracts() {
        let (status, body, _) =
            body_of(ApiError::invalid_field("content.subject", "is required")).await;
        assert_eq!(status, 400);
        assert_eq!(
            body,
            serde_json::json!({"error": {
                "code": "validation_failed",
                "message": "content.subject: is required",
                "details": [{"field": "content.subject", "message": "is required"}]
            }})
        );
        let (_, body, _) = body_of(ApiError::not_found("project")).await;
        assert_eq!(body["error"]["details"], serde_json::json!([]));
    }

    #[actix_web::test]
    async fn internal_errors_leak_nothing() {
        let (status, body, _) = body_of(ApiError::internal("password=hunter2 in query")).await;
        assert_eq!(status, 500);
        assert!(!body.to_string().contains("hunter2"));
        assert_eq!(body["error"]["code"], "internal");
    }

    #[actix_web::test]
    async fn rate_limited_rounds_retry_after_up() {
        let (status, body, retry) =
            body_of(ApiError::rate_limited(Duration::from_millis(1200))).await;
        assert_eq!(status, 429);
        assert_eq!(body["error"]["code"], "rate_limited");
        assert_eq!(retry.as_deref(), Some("2"));
    }

    #[actix_web::test]
    async fn no_hashing_slot_is_unavailable_with_retry_after() {
        let (status, body, retry) = body_of(Busy.into()).await;
        assert_eq!(status, 503);
        assert_eq!(body["error"]["code"], "unavailable");
        assert_eq!(retry.as_deref(), Some("1"));
    }

    #[actix_web::test]
    async fn lost_database_is_unavailable_not_internal() {
        use diesel::result::DatabaseErrorKind::{ClosedConnection, UnableToSendCommand, Unknown};
        for (kind, message) in [
            (ClosedConnection, "server closed the connection"),
            (UnableToSendCommand, "connection closed"),
            // what a pooled connection's next query reads after pg_terminate_backend or a
            // shutdown, and after a crash of another backend
            (Unknown, "terminating connection due to administrator command"),
            (Unknown, "terminating connection because of crash of another server process"),
        ] {
            let error: ApiError =
                diesel::result::Error::DatabaseError(kind, Box::new(message.to_owned())).into();
            assert_eq!(error.status_code(), StatusCode::SERVICE_UNAVAILABLE, "{message}");
        }
        let wrong: ApiError = diesel::result::Error::DatabaseError(
            Unknown,
            Box::new("column \"terminating\" does not exist".to_owned()),
        )
        .into();
        assert_eq!(wrong.status_code(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
