//! What the OpenAPI document says beyond each handler's own annotation: how callers
//! authenticate, and the error answers that follow from what an operation takes.
//!
//! Every route answers its errors with the one error body, for reasons shared by whole classes
//! of routes (any credential can be missing, any id unknown, any database away). Rather than
//! repeat them in every annotation, and forget one, [`ErrorResponses`] derives them from the
//! operation as the document describes it: its security, its parameters and its body. The
//! annotations list only what is particular to a route (a 409 on a duplicate, the 429 of
//! sign-in); see [`ErrorResponses`] for the rules.

use serde_json::json;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, HeaderBuilder, Ref, RefOr, Response, ResponseBuilder, Schema, Type,
};
use utoipa::openapi::{ObjectBuilder, OpenApi};
use utoipa::{IntoParams, Modify, ToSchema};

use crate::auth::{ORGANIZATION_HEADER, SESSION_COOKIE};
use crate::config::Config;
use crate::domain::provider_types::EndpointUrl;

/// The security scheme of a session token sent as `Authorization: Bearer`.
pub const SESSION: &str = "session";
/// The security scheme of the session cookie (unsafe methods need a matching `Origin`).
pub const SESSION_COOKIE_SCHEME: &str = "sessionCookie";
/// The security scheme of an API key sent as `Authorization: Bearer`.
pub const API_KEY: &str = "apiKey";
/// The security scheme of an API key sent as `X-API-Key`.
pub const API_KEY_HEADER: &str = "apiKeyHeader";

/// The security schemes the handlers' `security(...)` name.
pub struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = |format: &str, description: &str| {
            let mut http =
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format(format).build();
            http.description = Some(description.to_owned());
            SecurityScheme::Http(http)
        };
        components.add_security_scheme(
            SESSION,
            bearer(
                "session token",
                "The `token` of `POST /v1/auth/sign-up` or `/v1/auth/sign-in`.",
            ),
        );
        components.add_security_scheme(
            SESSION_COOKIE_SCHEME,
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                SESSION_COOKIE,
                "The session cookie that sign-in sets. Unsafe methods (POST, PATCH, DELETE) \
                 authenticated by it need an `Origin` header of this server (CSRF).",
            ))),
        );
        components.add_security_scheme(
            API_KEY,
            bearer("rly_...", "An API key of `POST /v1/api-keys` (its scopes apply)."),
        );
        components.add_security_scheme(
            API_KEY_HEADER,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-Key",
                "An API key, as an alternative to `Authorization: Bearer`.",
            ))),
        );
    }
}

/// `Relayit-Organization`: the organization a management route addresses, for routes that do
/// not name it in their path (`params(OrganizationHeader)`).
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct OrganizationHeader {
    /// Id or slug of one of the caller's organizations, instead of the session's active one
    /// (an API key addresses its own organization only). Unknown: 404.
    #[param(
        rename = "Relayit-Organization",
        min_length = 1,
        example = "org_01jf3q6zvqe3f7m1s9gkxw5h2c"
    )]
    #[allow(dead_code)]
    organization: Option<String>,
}

/// Fits the document to this server's configuration: without
/// `providers.allow_endpoint_overrides`, the provider configs' endpoint fields (which the server
/// then refuses) are not listed.
pub fn for_server(openapi: &mut OpenApi, config: &Config) {
    if config.providers.allow_endpoint_overrides {
        return;
    }
    let Some(components) = openapi.components.as_mut() else { return };
    let endpoint = Ref::from_schema_name(EndpointUrl::name());
    let names_endpoint = |schema: &RefOr<Schema>| {
        serde_json::to_string(schema).is_ok_and(|text| text.contains(&endpoint.ref_location))
    };
    for schema in components.schemas.values_mut() {
        if let RefOr::T(Schema::Object(object)) = schema {
            object.properties.retain(|_, property| !names_endpoint(property));
        }
    }
    components.schemas.remove(EndpointUrl::name().as_ref());
}

/// One error answer shared by many operations: `#/components/responses/<name>`.
struct Shared {
    status: &'static str,
    name: &'static str,
    description: &'static str,
    example: (&'static str, &'static str),
}

const SHARED: &[Shared] = &[
    Shared {
        status: "400",
        name: "BadRequest",
        description: "`validation_failed`: a parameter or a field of the body is missing, \
            unknown, of the wrong type or has an invalid value; `details` names each \
            (`content.subject`, `eventTypes.1`, `limit`). `malformed_json`: the body is not JSON.",
        example: ("validation_failed", "name: must not be blank"),
    },
    Shared {
        status: "401",
        name: "Unauthorized",
        description: "`unauthorized`: no credentials, or credentials that are invalid, expired \
            or revoked.",
        example: ("unauthorized", "authentication is required"),
    },
    Shared {
        status: "403",
        name: "Forbidden",
        description: "`forbidden`: the credentials do not allow this: a role or API key scope \
            short of it, an API key where a signed-in user is needed (or the reverse), a key \
            bound to another project, or a cookie-authenticated write without this server's \
            `Origin`.",
        example: ("forbidden", "this needs the admin role"),
    },
    Shared {
        status: "404",
        name: "NotFound",
        description: "`not_found`: no such resource, or one the caller cannot see (another \
            organization's, another project's): the same answer, so ids leak nothing.",
        example: ("not_found", "project not found"),
    },
    Shared {
        status: "413",
        name: "PayloadTooLarge",
        description: "`payload_too_large`: the body exceeds the route's limit (64 KiB for \
            management writes, 256 KiB for `/v1/send`, 8 MiB for `/v1/send/batch`).",
        example: ("payload_too_large", "the request body exceeds 65536 bytes"),
    },
    Shared {
        status: "503",
        name: "Unavailable",
        description: "`unavailable`: PostgreSQL or Redis cannot be reached, or every password \
            hashing slot is busy; nothing was changed. Retry, after `Retry-After` seconds when \
            given.",
        example: ("unavailable", "the database is unavailable; try again shortly"),
    },
];

/// Adds to every operation the error answers its security, parameters and body imply, as
/// references to shared responses, unless its annotation documents that status itself:
/// - **400** when it takes parameters or a body (a value that does not parse or validate);
/// - **401** and **403** when it needs credentials;
/// - **404** when it takes a path parameter or the `Relayit-Organization` header (an id or
///   organization the caller cannot see);
/// - **413** when it takes a body;
/// - **503** on every `/v1` route (they all need PostgreSQL).
pub struct ErrorResponses;

impl Modify for ErrorResponses {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for shared in SHARED {
            components.responses.insert(shared.name.to_owned(), RefOr::T(response_of(shared)));
        }
        for (path, item) in openapi.paths.paths.iter_mut() {
            for operation in operations(item) {
                for status in implied_errors(path, operation) {
                    let shared = SHARED
                        .iter()
                        .find(|s| s.status == status)
                        .map(|s| Ref::from_response_name(s.name));
                    if let Some(reference) = shared {
                        operation
                            .responses
                            .responses
                            .entry(status.to_owned())
                            .or_insert(RefOr::Ref(reference));
                    }
                }
            }
        }
    }
}

/// The error statuses `operation` of `path` can answer for the reasons shared by its class.
/// Every operation of a path.
pub fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.patch,
        &mut item.head,
        &mut item.options,
        &mut item.trace,
    ]
    .into_iter()
    .flatten()
}

fn implied_errors(path: &str, operation: &Operation) -> Vec<&'static str> {
    let parameters = operation.parameters.as_deref().unwrap_or_default();
    let has_body = operation.request_body.is_some();
    let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
    let names_something = parameters.iter().any(|p| {
        matches!(p.parameter_in, ParameterIn::Path)
            || (matches!(p.parameter_in, ParameterIn::Header)
                && p.name.eq_ignore_ascii_case(ORGANIZATION_HEADER))
    });
    let mut statuses = Vec::new();
    if has_body || !parameters.is_empty() {
        statuses.push("400");
    }
    if secured {
        statuses.extend(["401", "403"]);
    }
    if names_something {
        statuses.push("404");
    }
    if has_body {
        statuses.push("413");
    }
    if path.starts_with("/v1/") {
        statuses.push("503");
    }
    statuses
}

fn response_of(shared: &Shared) -> Response {
    let (code, message) = shared.example;
    let content = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("ErrorBody")))
        .example(Some(json!({"error": {
            "code": code,
            "message": message,
            "details": if code == "validation_failed" {
                json!([{"field": "name", "message": "must not be blank"}])
            } else {
                json!([])
            },
        }})))
        .build();
    let mut response =
        ResponseBuilder::new().description(shared.description).content("application/json", content);
    if shared.status == "503" {
        response = response.header("Retry-After", retry_after());
    }
    response.build()
}

/// `Retry-After`: whole seconds to wait before retrying.
pub fn retry_after() -> utoipa::openapi::Header {
    let seconds: Schema = ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1)).into();
    HeaderBuilder::new()
        .schema(seconds)
        .description(Some("Seconds to wait before retrying."))
        .build()
}
