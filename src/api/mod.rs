//! The HTTP surface: one actix `App` shared by the server and the tests.
//!
//! Every process serves the operations routes (`/healthz`, `/readyz`, `/openapi.json`), so
//! probes work for worker-only containers too; the `/v1` routes are mounted only in processes
//! that run the `api` role. Errors raised outside our handlers (unknown routes, wrong methods)
//! are rewritten into the contract's JSON error body here, once.

pub mod api_keys;
pub mod auth;
pub mod health;
pub mod inbound;
pub mod invitations;
pub mod json;
pub mod messages;
pub mod oauth;
pub mod openapi;
pub mod organizations;
pub mod pagination;
pub mod passkeys;
pub mod projects;
pub mod providers;
pub mod send;
pub mod suppressions;
pub mod templates;
pub mod webhooks;

use actix_web::body::MessageBody;
use actix_web::dev::Service;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers};
use actix_web::{App, HttpResponse, ResponseError, web};
use utoipa::OpenApi;

use crate::domain::validate::FieldError;
use crate::error::{ApiError, ErrorBody, ErrorDetail};
use crate::state::AppState;
use openapi::{ErrorResponses, SecuritySchemes};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "RelayIt",
        description = "One HTTP endpoint to notify users by email, SMS, WhatsApp and Discord."
    ),
    paths(
        health::healthz,
        health::readyz,
        openapi_json,
        metrics,
        auth::sign_up,
        auth::sign_in,
        auth::sign_out,
        auth::session,
        auth::set_active_organization,
        auth::list_sessions,
        auth::revoke_other_sessions,
        auth::revoke_session,
        passkeys::register_start,
        passkeys::register_finish,
        passkeys::list,
        passkeys::rename,
        passkeys::remove,
        passkeys::sign_in_start,
        passkeys::sign_in_finish,
        oauth::methods,
        oauth::start,
        oauth::callback,
        oauth::list_accounts,
        oauth::unlink_account,
        organizations::create,
        organizations::list,
        organizations::get,
        organizations::update,
        organizations::delete,
        organizations::list_members,
        organizations::update_member,
        organizations::remove_member,
        invitations::create,
        invitations::list,
        invitations::cancel,
        invitations::accept,
        api_keys::create,
        api_keys::list,
        api_keys::revoke,
        projects::generate_slug,
        projects::create,
        projects::list,
        projects::get,
        projects::update,
        projects::delete,
        messages::get,
        messages::list,
        messages::retry,
        messages::cancel,
        webhooks::create,
        webhooks::list,
        webhooks::get,
        webhooks::update,
        webhooks::delete,
        webhooks::rotate_secret,
        webhooks::list_deliveries,
        webhooks::retry_delivery,
        webhooks::replay,
        templates::create,
        templates::list,
        templates::get,
        templates::update,
        templates::delete,
        templates::publish,
        templates::list_versions,
        templates::get_version,
        templates::preview,
        suppressions::create,
        suppressions::list,
        suppressions::get,
        suppressions::delete,
        send::send,
        send::send_batch,
        providers::create,
        providers::list,
        providers::get,
        providers::update,
        providers::delete,
        providers::verify,
        inbound::ses_events,
        inbound::whatsapp_handshake,
        inbound::whatsapp_statuses,
        crate::web::unsubscribe::confirm_page,
        crate::web::unsubscribe::one_click,
    ),
    components(schemas(ErrorBody, ErrorDetail, FieldError)),
    modifiers(&UniqueOperationIds, &SecuritySchemes, &ErrorResponses)
)]
pub struct ApiDoc;

/// Handlers of different resources share names (`create`, `list`); prefixing the tag keeps
/// operation ids unique, as OpenAPI requires and client generators rely on.
struct UniqueOperationIds;

impl utoipa::Modify for UniqueOperationIds {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for operation in openapi::operations(item) {
                let tag = operation.tags.as_ref().and_then(|t| t.first()).cloned();
                if let (Some(tag), Some(id)) = (tag, operation.operation_id.as_mut()) {
                    *id = format!("{}_{id}", tag.replace('-', "_"));
                }
            }
        }
    }
}

/// The OpenAPI document of this server, generated from the handlers.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3.1 document")))]
pub async fn openapi_json(state: web::Data<AppState>) -> HttpResponse {
    let mut doc = ApiDoc::openapi();
    openapi::for_server(&mut doc, &state.config);
    HttpResponse::Ok().json(doc)
}

/// Prometheus metrics of this process and of the shared queues.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format")))]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render(&state.redis).await)
}

/// Builds the application for one HTTP worker.
pub fn app(
    state: AppState,
    api_role: bool,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .app_data(web::Data::new(state))
        // query strings and path segments that do not parse are the client's error, named
        .app_data(
            web::QueryConfig::default()
                .error_handler(|e, _| ApiError::invalid_field("query", e.to_string()).into()),
        )
        .app_data(
            web::PathConfig::default()
                .error_handler(|e, _| ApiError::invalid_field("path", e.to_string()).into()),
        )
        .wrap_fn(|req, srv| {
            let refused = nul_in_uri(&req);
            let response = refused.is_none().then(|| srv.call(req));
            async move {
                match (response, refused) {
                    (Some(response), _) => Ok(response.await?.map_into_boxed_body()),
                    (None, Some(refused)) => Ok(refused),
                    (None, None) => Err(ApiError::internal("no response").into()),
                }
            }
        })
        .wrap(ErrorHandlers::new().default_handler(json_error_body))
        .wrap_fn(|req, srv| {
            let response = srv.call(req);
            async move { Ok(crate::web::back_after_sign_in(response.await?)) }
        })
        .wrap_fn(|req, srv| {
            // the route pattern, not the path: ids must not become label values
            let route = req.match_pattern().unwrap_or_else(|| "unmatched".to_owned());
            let method = req.method().to_string();
            let metrics = req.app_data::<web::Data<AppState>>().map(|s| s.metrics.clone());
            let started = std::time::Instant::now();
            let response = srv.call(req);
            async move {
                let response = response.await?;
                if let Some(m) = metrics {
                    let status = response.status().as_u16().to_string();
                    m.http_requests.with_label_values(&[&method, &route, &status]).inc();
                    m.http_duration
                        .with_label_values(&[&method, &route])
                        .observe(started.elapsed().as_secs_f64());
                }
                Ok(response)
            }
        })
        .service(web::resource("/healthz").get(health::healthz))
        .service(web::resource("/readyz").get(health::readyz))
        .service(web::resource("/openapi.json").get(openapi_json))
        .service(web::resource("/metrics").get(metrics))
        .configure(|cfg| {
            if api_role {
                v1_routes(cfg);
                crate::web::routes(cfg);
            }
        })
        .default_service(web::to(|| async { ApiError::not_found("route").error_response() }))
}

/// A path or query string that carries U+0000 (`%00`) is refused (400, naming which), before it
/// reaches a handler: PostgreSQL stores no U+0000, and no id or parameter value holds one (the
/// dashboard's and the unsubscribe links' as little as the API's).
fn nul_in_uri(req: &ServiceRequest) -> Option<ServiceResponse> {
    let holds_nul = |text: &str| text.as_bytes().windows(3).any(|w| w.eq_ignore_ascii_case(b"%00"));
    let uri = req.uri();
    let field = if holds_nul(uri.path()) {
        "path"
    } else if uri.query().is_some_and(holds_nul) {
        "query"
    } else {
        return None;
    };
    let error = ApiError::invalid_field(field, json::NUL_REFUSED);
    let response = if crate::web::prefers_html(req.request()) {
        crate::web::WebError::from(error).error_response()
    } else {
        error.error_response()
    };
    Some(ServiceResponse::new(req.request().clone(), response))
}

/// The `/v1` routes of the contract, one module per resource.
fn v1_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        // Routes match in registration order, each dynamic pattern by a regex, and the metrics
        // middleware matches again for the route label: the hot path goes first.
        web::scope("/v1")
            .configure(send::routes)
            .configure(auth::routes)
            .configure(passkeys::routes)
            .configure(oauth::routes)
            .configure(organizations::routes)
            .configure(invitations::routes)
            .configure(projects::routes)
            .configure(messages::routes)
            .configure(api_keys::routes)
            .configure(providers::routes)
            .configure(webhooks::routes)
            .configure(suppressions::routes)
            .configure(templates::routes)
            .configure(inbound::routes),
    );
}

/// Gives error responses that are neither JSON nor a dashboard page (actix's own 404/405/413
/// and the like) the contract's error body, keeping their status.
fn json_error_body<B>(res: ServiceResponse<B>) -> actix_web::Result<ErrorHandlerResponse<B>> {
    // JSON already, or a dashboard page
    let answered = res.headers().get(header::CONTENT_TYPE).is_some_and(|v| {
        v.as_bytes().starts_with(b"application/json") || v.as_bytes().starts_with(b"text/html")
    });
    if answered {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let (req, old) = res.into_parts();
    let mut new = ApiError::for_status(old.status()).error_response();
    // keep headers such as Allow on a 405
    for (name, value) in old.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            new.headers_mut().insert(name.clone(), value.clone());
        }
    }
    Ok(ErrorHandlerResponse::Response(ServiceResponse::new(req, new).map_into_right_body()))
}
