//! The HTTP API: JSON under `/api/v1`, described by an OpenAPI 3.1 document made from the same
//! route table ([`routes::ROUTES`]) the authorization layer reads.
//!
//! Every request goes through [`authorize`] before its handler: the route's permission is looked
//! up, the bearer token authenticated, the scope (the box a `{box}` route names) checked; a
//! refusal is a `401`/`403` and an audit record. Handlers read their bodies through [`Json`],
//! which names the field at fault in every `4xx`.

pub mod alarms;
pub mod artifacts;
pub mod handlers;
pub mod operator;
pub mod routes;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{FromRequest, MatchedPath, RawPathParams, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use gantry_model::agent::ErrorBody;
use serde::de::DeserializeOwned;

use crate::auth::{Denied, Permission, Principal, Scope};
use crate::server::{Controller, audit_record};

/// The largest request body: a whole-box report with dozens of pipelines is tens of kilobytes;
/// a megabyte leaves room and stops a client from making the server buffer more.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// The largest page of a list (audit records, boxes): bounded so one request cannot make the
/// server read and serialize the whole database.
pub const MAX_PAGE: u32 = 1000;
pub const DEFAULT_PAGE: u32 = 100;

/// The longest a command long-poll waits: below common proxy idle timeouts (60 s), long enough
/// that a thousand idle agents cost a few requests a second.
pub const MAX_LONG_POLL: std::time::Duration = std::time::Duration::from_secs(30);
pub const DEFAULT_LONG_POLL: std::time::Duration = std::time::Duration::from_secs(25);

/// The most denied requests audited per minute; past it they are only counted in metrics, so
/// a flood of bad tokens cannot fill the audit log.
pub const MAX_DENIED_AUDITS_PER_MINUTE: u32 = 600;

/// How often an idle agent reports when nothing changes.
pub const REPORT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// A refused request: a status and the body every error has.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
}

impl ApiError {
    pub fn new(status: StatusCode, error: impl Into<String>) -> ApiError {
        ApiError { status, body: ErrorBody { error: error.into(), field: None } }
    }

    pub fn field(
        status: StatusCode,
        field: impl Into<String>,
        error: impl Into<String>,
    ) -> ApiError {
        ApiError { status, body: ErrorBody { error: error.into(), field: Some(field.into()) } }
    }

    pub fn internal(error: impl std::fmt::Display) -> ApiError {
        tracing::error!(%error, "request failed");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("the controller failed: {error}"))
    }
}

impl From<crate::agents::FieldError> for ApiError {
    fn from(error: crate::agents::FieldError) -> ApiError {
        ApiError::field(StatusCode::UNPROCESSABLE_ENTITY, error.field, error.reason)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body)).into_response()
    }
}

/// A JSON body, refused with the path of the field at fault.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| {
                value.split(';').next().is_some_and(|m| m.trim() == "application/json")
            });
        if !json {
            return Err(ApiError::field(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "header.content-type",
                "send the body as `Content-Type: application/json`",
            ));
        }
        let bytes = axum::body::Bytes::from_request(request, state).await.map_err(|rejection| {
            let status = rejection.status();
            ApiError::field(status, "body", rejection.body_text())
        })?;
        let deserializer = &mut serde_json::Deserializer::from_slice(&bytes);
        serde_path_to_error::deserialize(deserializer).map(Json).map_err(|error| {
            let path = error.path().to_string();
            let inner = error.into_inner();
            if inner.is_syntax() || inner.is_eof() || path == "." || path == "?" {
                let reason =
                    format!("the body is not a JSON document of the expected shape: {inner}");
                return ApiError::field(StatusCode::UNPROCESSABLE_ENTITY, "body", reason);
            }
            ApiError::field(StatusCode::UNPROCESSABLE_ENTITY, path, inner.to_string())
        })
    }
}

/// The caller, as [`authorize`] established it; handlers read it from the request's extensions.
#[derive(Clone, Debug)]
pub struct Caller(pub Option<Principal>);

/// The API's router, with the authorization layer over every route.
pub fn router(controller: Arc<Controller>) -> Router {
    handlers::routes()
        .layer(middleware::from_fn_with_state(controller.clone(), authorize))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "no such route; see /api/v1/openapi.json")
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "this route does not take that method")
        })
        .with_state(controller)
}

/// The authorization layer: deny by default (see the module documentation).
async fn authorize(
    State(controller): State<Arc<Controller>>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_string();
    let matched = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string());
    let Some(route) = matched.as_deref().and_then(|path| routes::find(&method, path)) else {
        // No route in the table: axum answers 404 or 405.
        return next.run(request).await;
    };
    let response = match authenticate(&controller, &mut request, route).await {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err((denied, who)) => {
            controller.metrics.denied_requests.inc();
            audit_denied(&controller, &method, route.path, &who, &denied).await;
            let status = match denied {
                Denied::Unauthenticated | Denied::UnknownToken => StatusCode::UNAUTHORIZED,
                Denied::Forbidden { .. } | Denied::OwnChange { .. } => StatusCode::FORBIDDEN,
            };
            ApiError::field(status, "header.authorization", denied.to_string()).into_response()
        }
    };
    let labels = crate::metrics::LatencyLabels { method: method.clone(), route: route.path.into() };
    controller.metrics.api_latency.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
    controller
        .metrics
        .api_requests
        .get_or_create(&crate::metrics::RouteLabels {
            method,
            route: route.path.into(),
            status: response.status().as_u16(),
        })
        .inc();
    response
}

async fn authenticate(
    controller: &Controller,
    request: &mut Request,
    route: &routes::Route,
) -> Result<Caller, (Denied, String)> {
    if route.permission == Permission::Public {
        return Ok(Caller(None));
    }
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or((Denied::Unauthenticated, "anonymous".to_string()))?;
    let principal = controller
        .tokens
        .read()
        .expect("tokens lock")
        .authenticate(token)
        .cloned()
        .map_err(|denied| (denied, "unknown token".to_string()))?;
    let params = {
        let (mut parts, body) = std::mem::take(request).into_parts();
        let params = axum::RequestPartsExt::extract::<RawPathParams>(&mut parts).await;
        *request = Request::from_parts(parts, body);
        params
    };
    let param = |wanted: &str| {
        params.as_ref().ok().and_then(|params| {
            params.iter().find(|(name, _)| *name == wanted).map(|(_, value)| value.to_string())
        })
    };
    let box_id = param("box");
    // A pipeline's routes are scoped to its team; an unknown pipeline has none, so only
    // organisation-wide grants reach the handler (which answers 404).
    let team = param("pipeline").map(|pipeline| controller.team_of(&pipeline).unwrap_or_default());
    let scope = match (&box_id, &team) {
        (Some(box_id), _) => Scope::Box(box_id),
        (None, Some(team)) => Scope::Team(team),
        (None, None) => Scope::Organisation,
    };
    principal.check(route.permission, scope).map_err(|denied| (denied, principal.name()))?;
    Ok(Caller(Some(principal)))
}

async fn audit_denied(
    controller: &Arc<Controller>,
    method: &str,
    route: &str,
    who: &str,
    denied: &Denied,
) {
    let now = gantry_model::Timestamp::now();
    {
        let minute = now.as_second().div_euclid(60);
        let mut window = controller.denied_this_minute.lock().expect("denied lock");
        if window.0 != minute {
            *window = (minute, 0);
        }
        if window.1 >= MAX_DENIED_AUDITS_PER_MINUTE {
            return;
        }
        window.1 += 1;
    }
    let record = audit_record(
        now,
        serde_json::json!({
            "kind": "request_denied", "by": who, "method": method, "route": route,
            "reason": denied.to_string(),
        }),
    );
    let controller = controller.clone();
    let result = tokio::task::spawn_blocking(move || {
        controller.store.lock().expect("store lock").append_audit(&[record])
    })
    .await;
    if let Ok(Err(error)) | Err(error) =
        result.map_err(|e| crate::Error::Corrupt { what: "audit".into(), reason: e.to_string() })
    {
        tracing::error!(%error, "could not audit a denied request");
    }
}
