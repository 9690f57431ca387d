//! The JSON body extractor of every write route.
//!
//! actix's own `Json` reports serde failures as bare strings; the contract needs the field at
//! fault as a dotted camelCase path, the difference between "not JSON" (`malformed_json`) and
//! "JSON of the wrong shape" (`validation_failed`), and 413 beyond a per-route size limit.

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use futures::StreamExt;
use futures::future::LocalBoxFuture;
use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;

use crate::error::{ApiError, FieldError};

/// Body size limit for routes that set none (management writes).
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;

/// Per-route body size limit: `web::resource(..).app_data(BodyLimit(n))`.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// A request body parsed as `T` (which should `deny_unknown_fields`).
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req
            .app_data::<BodyLimit>()
            .or_else(|| req.app_data::<web::Data<BodyLimit>>().map(|d| d.get_ref()))
            .map_or(DEFAULT_BODY_LIMIT, |l| l.0);
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let mut payload = payload.take();
        Box::pin(async move {
            if declared.is_some_and(|len| len > limit) {
                return Err(ApiError::payload_too_large(limit));
            }
            let mut body = web::BytesMut::with_capacity(declared.unwrap_or(1024).min(limit));
            while let Some(chunk) = payload.next().await {
                let chunk = chunk
                    .map_err(|e| ApiError::malformed_json(format!("cannot read the body: {e}")))?;
                if body.len() + chunk.len() > limit {
                    return Err(ApiError::payload_too_large(limit));
                }
                body.extend_from_slice(&chunk);
            }
            parse(&body).map(Json)
        })
    }
}

/// Parses a JSON document into `T`, mapping every failure to the contract's errors.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    // serde lets a struct be written as an array of its fields; request bodies are objects.
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|b| *b != b'{')
        && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok()
    {
        return Err(ApiError::invalid_field("body", "must be a JSON object"));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = dotted_path(error.path());
        let inner = error.into_inner();
        // A shape error can come before a syntax error later in the body; the body is only
        // "of the wrong shape" if it is JSON at all.
        if !inner.is_data() {
            return ApiError::malformed_json(format!(
                "the body is not valid JSON: {}",
                bare(&inner)
            ));
        }
        if let Err(syntax) = serde_json::from_slice::<serde::de::IgnoredAny>(body) {
            return ApiError::malformed_json(format!(
                "the body is not valid JSON: {}",
                bare(&syntax)
            ));
        }
        let message = bare(&inner);
        ApiError::validation(vec![field_error(&path, &message)])
    })?;
    deserializer.end().map_err(|e| {
        ApiError::malformed_json(format!("the body is not valid JSON: {}", bare(&e)))
    })?;
    Ok(value)
}

/// Parses `value`, the JSON object at `field` of an already parsed body, into `T`. For parts of
/// a body whose shape depends on another field (a provider's `credentials` by its type): the
/// errors are `parse`'s, with paths under `field` (`credentials.secretAccessKey`).
pub fn parse_object<T: DeserializeOwned>(
    value: &serde_json::Value,
    field: &str,
) -> Result<T, ApiError> {
    // as in `parse`: serde would take an array for a struct
    if !value.is_object() {
        return Err(ApiError::invalid_field(field, "must be a JSON object"));
    }
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = match dotted_path(error.path()) {
            inner if inner.is_empty() => field.to_owned(),
            inner if field.is_empty() => inner,
            inner => format!("{field}.{inner}"),
        };
        ApiError::validation(vec![field_error(&path, &bare(error.inner()))])
    })
}

/// serde_path_to_error writes `a.b[1]`; the contract writes `a.b.1`.
fn dotted_path(path: &serde_path_to_error::Path) -> String {
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
fn field_error(path: &str, message: &str) -> FieldError {
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
fn bare(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rsplit_once(" at line ") {
        Some((message, _)) => message.to_owned(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Body {
        channel: String,
        content: Content,
        event_types: Option<Vec<u8>>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Content {
        subject: String,
    }

    fn error_of(body: &str) -> (String, Vec<FieldError>) {
        let error = parse::<Body>(body.as_bytes()).unwrap_err();
        (error.code().to_owned(), error.details().to_vec())
    }

    #[test]
    fn not_json_is_malformed() {
        for body in ["", "{", "{\"channel\": }", "nope", "{} trailing"] {
            let (code, details) = error_of(body);
            assert_eq!(code, "malformed_json", "{body:?}");
            assert!(details.is_empty());
        }
    }

    #[test]
    fn shape_errors_name_the_field() {
        let cases = [
            (r#"{"content": {"subject": "s"}}"#, "channel", "is required"),
            (r#"{"channel": "email", "content": {}}"#, "content.subject", "is required"),
            (
                r#"{"channel": "email", "content": {"subject": 5}}"#,
                "content.subject",
                "invalid type",
            ),
            (
                r#"{"channel": "email", "content": {"subject": "s", "extra": 1}}"#,
                "content.extra",
                "not a known field",
            ),
            (
                r#"{"channel": "email", "content": {"subject": "s"}, "bogus": true}"#,
                "bogus",
                "not a known field",
            ),
            (
                r#"{"channel": "email", "content": {"subject": "s"}, "eventTypes": [1, "x"]}"#,
                "eventTypes.1",
                "invalid type",
            ),
            (r#"[1, 2]"#, "body", "must be a JSON object"),
            (r#""text""#, "body", "must be a JSON object"),
        ];
        for (body, field, message) in cases {
            let (code, details) = error_of(body);
            assert_eq!(code, "validation_failed", "{body}");
            assert_eq!(details.len(), 1, "{body}");
            assert_eq!(details[0].field, field, "{body}");
            assert!(details[0].message.contains(message), "{body}: {}", details[0].message);
            assert!(!details[0].message.contains("line"), "{}", details[0].message);
        }
    }

    #[actix_web::test]
    async fn the_extractor_answers_with_the_contracts_errors() {
        use actix_web::{App, HttpResponse, test};
        async fn accept(body: Json<Body>) -> HttpResponse {
            HttpResponse::Ok().body(body.0.channel)
        }
        let app = test::init_service(
            App::new().service(web::resource("/echo").app_data(BodyLimit(64)).post(accept)),
        )
        .await;
        let call = |body: &'static str| {
            test::TestRequest::post()
                .uri("/echo")
                .insert_header(("content-type", "application/json"))
                .set_payload(body)
                .to_request()
        };
        let cases = [
            (r#"{"channel": "sms", "content": {"subject": "s"}}"#, 200, None),
            (r#"{"channel": "#, 400, Some("malformed_json")),
            (r#"{"channel": "sms"}"#, 400, Some("validation_failed")),
            (
                r#"{"channel": "sms", "content": {"subject": "this body is longer than the limit"}}"#,
                413,
                Some("payload_too_large"),
            ),
        ];
        for (body, status, code) in cases {
            let response = test::call_service(&app, call(body)).await;
            assert_eq!(response.status().as_u16(), status, "{body}");
            if let Some(code) = code {
                let json: serde_json::Value = test::read_body_json(response).await;
                assert_eq!(json["error"]["code"], code, "{body}");
                assert!(json["error"]["details"].is_array());
            }
        }
    }

    #[test]
    fn parts_of_a_body_report_full_paths() {
        let error_of = |value: serde_json::Value| {
            let error = parse_object::<Content>(&value, "config").unwrap_err();
            assert_eq!(error.code(), "validation_failed");
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
    fn valid_bodies_parse() {
        let body: Body = parse(br#"{"channel": "sms", "content": {"subject": "x"}}"#).unwrap();
        assert_eq!(body.channel, "sms");
    }
}
