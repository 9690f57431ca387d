//! The JSON body extractor of every write route.
//!
//! actix's own `Json` reports serde failures as bare strings; the contract needs the field at
//! fault as a dotted camelCase path, the difference between "not JSON" (`malformed_json`) and
//! "JSON of the wrong shape" (`validation_failed`), and 413 beyond a per-route size limit.

use crate::domain::validate::{bare, dotted_path, field_error};
use crate::error::ApiError;
use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use futures::StreamExt;
use futures::future::LocalBoxFuture;
use serde::de::DeserializeOwned;

/// Tells a field sent as `null` (`Some(None)`) from one left out (`None`): for optional fields
/// that `null` clears, as `#[serde(default, deserialize_with = "crate::api::json::present")]`.
pub fn present<'de, D: serde::Deserializer<'de>, T: serde::Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<Option<T>>, D::Error> {
    <Option<T> as serde::Deserialize>::deserialize(deserializer).map(Some)
}

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
    let value = parse_value(body)?;
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = dotted_path(error.path());
        ApiError::validation(vec![field_error(&path, &bare(error.inner()))])
    })
}

/// Parses a JSON object, as [`parse`] does before it reads it as a type: not JSON is
/// `malformed_json`; not an object, or text holding U+0000, `validation_failed`. Numbers
/// written with a zero fraction (`5.0`) become integers, which they are to JSON Schema (and so
/// to the OpenAPI document): an integer field takes them.
pub fn parse_value(body: &[u8]) -> Result<serde_json::Value, ApiError> {
    let mut value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::malformed_json(format!("the body is not valid JSON: {}", bare(&e)))
    })?;
    // serde lets a struct be written as an array of its fields; request bodies are objects.
    if !value.is_object() {
        return Err(ApiError::invalid_field("body", "must be a JSON object"));
    }
    if let Some(mut path) = tidy(&mut value) {
        path.reverse();
        return Err(ApiError::invalid_field(path.join("."), NUL_REFUSED));
    }
    Ok(value)
}

pub use crate::domain::validate::NUL_REFUSED;

/// Turns integral floats that an `i64` or `u64` holds exactly into integers, and finds the
/// first string or key holding U+0000: returns its path, innermost segment first.
fn tidy(value: &mut serde_json::Value) -> Option<Vec<String>> {
    use serde_json::Value;
    match value {
        Value::String(text) => text.contains('\0').then(Vec::new),
        Value::Number(number) => {
            if let Some(float) = number.as_f64().filter(|f| number.is_f64() && f.fract() == 0.0) {
                // 2^63 and 2^64 are exact as floats; the bounds are exclusive
                if (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&float) {
                    *value = Value::from(float as i64);
                } else if (0.0..1.844_674_407_370_955_2e19).contains(&float) {
                    *value = Value::from(float as u64);
                }
            }
            None
        }
        Value::Object(fields) => fields.iter_mut().find_map(|(key, field)| {
            let mut path = if key.contains('\0') { Vec::new() } else { tidy(field)? };
            path.push(key.clone());
            Some(path)
        }),
        Value::Array(items) => items.iter_mut().enumerate().find_map(|(i, item)| {
            let mut path = tidy(item)?;
            path.push(i.to_string());
            Some(path)
        }),
        _ => None,
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

    fn error_of(body: &str) -> (String, Vec<crate::domain::validate::FieldError>) {
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
    fn integral_floats_are_integers() {
        #[derive(Debug, Deserialize)]
        struct Numbers {
            port: u16,
            priority: i32,
        }
        let numbers: Numbers = parse(br#"{"port": 587.0, "priority": -3.0}"#).unwrap();
        assert_eq!((numbers.port, numbers.priority), (587, -3));
        for body in [r#"{"port": 587.5, "priority": 1}"#, r#"{"port": 1e30, "priority": 1}"#] {
            let (code, details) = error_of_numbers(body);
            assert_eq!((code.as_str(), details[0].field.as_str()), ("validation_failed", "port"));
        }
        // other values keep what they are
        let value = parse_value(br#"{"a": 1.5, "b": [2.0, "3.0"], "c": 1e300}"#).unwrap();
        assert_eq!(value, serde_json::json!({"a": 1.5, "b": [2, "3.0"], "c": 1e300}));
    }

    fn error_of_numbers(body: &str) -> (String, Vec<crate::domain::validate::FieldError>) {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Numbers {
            port: u16,
            priority: i32,
        }
        let error = parse::<Numbers>(body.as_bytes()).unwrap_err();
        (error.code().to_owned(), error.details().to_vec())
    }

    #[test]
    fn valid_bodies_parse() {
        let body: Body = parse(br#"{"channel": "sms", "content": {"subject": "x"}}"#).unwrap();
        assert_eq!(body.channel, "sms");
    }
}
