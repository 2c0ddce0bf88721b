//! The handlers of [`super::routes::ROUTES`]. Authorization already happened in
//! [`super::authorize`]; a handler checks only what its body and the object it names allow.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use gantry_model::Timestamp;
use gantry_model::agent::{
    Acknowledge, Acknowledged, BoxId, CommandBatch, Register, Registered, Report, ReportAccepted,
};
use serde::{Deserialize, Serialize};

use super::{
    ApiError, Caller, DEFAULT_LONG_POLL, DEFAULT_PAGE, Json, MAX_LONG_POLL, MAX_PAGE,
    REPORT_INTERVAL,
};
use crate::agents::{BoxRecord, check_register};
use crate::auth::{Grant, Principal, TokenInfo};
use crate::server::{Controller, audit_record};

pub fn routes() -> Router<Arc<Controller>> {
    Router::new()
        .route("/api/v1/health", get(health))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/metrics", get(metrics))
        .route("/api/v1/agent/boxes/{box}/register", post(register))
        .route("/api/v1/agent/boxes/{box}/commands", get(commands))
        .route("/api/v1/agent/boxes/{box}/acknowledge", post(acknowledge))
        .route("/api/v1/agent/boxes/{box}/report", post(report))
        .route("/api/v1/agent/artifacts/{digest}", get(super::artifacts::agent_package))
        .route(
            "/api/v1/agent/artifacts/{digest}/attestation",
            get(super::artifacts::agent_attestation),
        )
        .route("/api/v1/agent/artifacts/{digest}/manifest", get(super::artifacts::agent_manifest))
        .route("/api/v1/agent/trust-list", get(super::artifacts::agent_trust_list))
        .route("/api/v1/agent/block-list", get(super::artifacts::agent_block_list))
        .route("/api/v1/artifacts/{digest}", get(super::artifacts::get_artifact))
        .route("/api/v1/pipelines/{pipeline}/artifacts", get(super::artifacts::list_artifacts))
        .route("/api/v1/builds", get(super::artifacts::list_builds))
        .route("/api/v1/boxes", get(list_boxes))
        .route("/api/v1/boxes/{box_id}", get(get_box))
        .route("/api/v1/audit", get(list_audit))
        .route("/api/v1/organisation", get(organisation))
        .route("/api/v1/pipelines", get(super::operator::list_pipelines))
        .route("/api/v1/pipelines/{pipeline}", get(super::operator::get_pipeline))
        .route("/api/v1/alarms", get(super::alarms::list))
        .route("/api/v1/pipelines/{pipeline}/alarms", get(super::alarms::of_pipeline))
        .route("/api/v1/pipelines/{pipeline}/hold", post(super::operator::hold))
        .route("/api/v1/pipelines/{pipeline}/release", post(super::operator::release))
        .route("/api/v1/pipelines/{pipeline}/retry", post(super::operator::retry))
        .route("/api/v1/pipelines/{pipeline}/approve", post(super::operator::approve))
        .route("/api/v1/pipelines/{pipeline}/override", post(super::operator::override_blocker))
        .route("/api/v1/pipelines/{pipeline}/rollback", post(super::operator::roll_back))
        .route("/api/v1/pipelines/{pipeline}/roll-forward", post(super::operator::roll_forward))
        .route(
            "/api/v1/pipelines/{pipeline}/urgent",
            get(super::operator::list_urgent).post(super::operator::request_urgent),
        )
        .route("/api/v1/pipelines/{pipeline}/urgent/end", post(super::operator::end_urgent))
        .route(
            "/api/v1/pipelines/{pipeline}/urgent/{request}/approve",
            post(super::operator::approve_urgent),
        )
        .route("/api/v1/tokens", get(list_tokens).post(issue_token))
        .route("/api/v1/tokens/{token_id}", delete(revoke_token))
}

/// Runs a store call on a blocking thread (SQLite waits for fsync).
async fn with_store<T: Send + 'static>(
    controller: &Arc<Controller>,
    call: impl FnOnce(&mut crate::SqliteStore) -> Result<T, crate::Error> + Send + 'static,
) -> Result<T, ApiError> {
    let controller = controller.clone();
    tokio::task::spawn_blocking(move || call(&mut controller.store.lock().expect("store lock")))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)
}

/// How long a registration or report waits for the round loop to move the epoch past the one
/// its agent has seen (after a restore): a restart of the engine from the store.
pub const FENCE_WAIT: Duration = Duration::from_secs(10);

/// Moves the controller past what an agent has seen, if it has seen more, and answers the
/// epoch the agent should now hold.
async fn fence(controller: &Arc<Controller>, seen: (u64, u64)) -> Result<u64, ApiError> {
    if !controller.fence_needed(seen.0, seen.1) {
        return Ok(controller.epoch());
    }
    {
        let controller = controller.clone();
        tokio::task::spawn_blocking(move || controller.request_fence(seen.0, seen.1))
            .await
            .map_err(ApiError::internal)?
            .map_err(|error| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("the store is unavailable: {error}"),
                )
            })?;
    }
    let deadline = tokio::time::Instant::now() + FENCE_WAIT;
    loop {
        let changed = controller.epoch_changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let epoch = controller.epoch();
        if !controller.fence_needed(seen.0, seen.1) {
            return Ok(epoch);
        }
        if tokio::time::timeout_at(deadline, changed).await.is_err() {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the controller is moving past the epoch this agent has seen; try again",
            ));
        }
    }
}

/// `GET /api/v1/health`: one type for the server and its clients.
pub use gantry_model::views::Health;

async fn health(State(controller): State<Arc<Controller>>) -> axum::Json<Health> {
    let healthy = controller.store_health.healthy();
    let agents = controller.agents.lock().expect("agents lock");
    axum::Json(Health {
        status: if healthy { "ok" } else { "degraded" }.into(),
        store_healthy: healthy,
        store_error: controller.store_health.last_error(),
        epoch: controller.epoch(),
        agents: agents.len() as u64,
        commands_waiting: agents.depth() as u64,
    })
}

async fn openapi() -> axum::Json<serde_json::Value> {
    axum::Json(super::routes::openapi())
}

async fn metrics(State(controller): State<Arc<Controller>>) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        controller.metrics.encode(),
    )
        .into_response()
}

async fn register(
    State(controller): State<Arc<Controller>>,
    Extension(caller): Extension<Caller>,
    Path(box_id): Path<String>,
    Json(body): Json<Register>,
) -> Result<axum::Json<Registered>, ApiError> {
    let Some(Principal::Agent { service, .. }) = caller.0 else {
        return Err(ApiError::internal("an agent route ran without an agent token"));
    };
    check_register(&body)?;
    if body.box_id.0 != box_id {
        return Err(ApiError::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "box_id",
            format!("the body names box {:?} but the path names {box_id:?}", body.box_id.0),
        ));
    }
    let now = Timestamp::now();
    let target = body.target.clone();
    let seen = {
        let mut agents = controller.agents.lock().expect("agents lock");
        let seen = agents.register(body, &service, now);
        controller.metrics.agents.set(agents.len() as i64);
        seen
    };
    controller.mark_dirty(service, target);
    let epoch = fence(&controller, seen).await?;
    Ok(axum::Json(Registered {
        epoch,
        report_interval: gantry_model::Duration::from_seconds(REPORT_INTERVAL.as_secs()),
        max_long_poll: gantry_model::Duration::from_seconds(MAX_LONG_POLL.as_secs()),
        server_time: now,
    }))
}

#[derive(Deserialize)]
struct CommandsQuery {
    wait: Option<String>,
}

fn unregistered(box_id: &str) -> ApiError {
    ApiError::field(
        StatusCode::NOT_FOUND,
        "path.box",
        format!("box {box_id:?} has not registered since the controller started; register first"),
    )
}

async fn commands(
    State(controller): State<Arc<Controller>>,
    Path(box_id): Path<String>,
    query: Result<Query<CommandsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::Json<CommandBatch>, ApiError> {
    let Query(query) = query.map_err(|rejection| {
        ApiError::field(StatusCode::BAD_REQUEST, "query", rejection.body_text())
    })?;
    let wait = match query.wait {
        None => DEFAULT_LONG_POLL,
        Some(text) => {
            let parsed: gantry_model::Duration = text.parse().map_err(|error| {
                ApiError::field(StatusCode::BAD_REQUEST, "query.wait", format!("{error}"))
            })?;
            let wait = Duration::from_secs(parsed.as_seconds());
            if wait > MAX_LONG_POLL {
                return Err(ApiError::field(
                    StatusCode::BAD_REQUEST,
                    "query.wait",
                    format!("at most {}s", MAX_LONG_POLL.as_secs()),
                ));
            }
            wait
        }
    };
    let box_id = BoxId(box_id);
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        // Registered for wake-ups before looking, so a command queued in between is not missed.
        let notified = controller.commands_changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let waiting = {
            let agents = controller.agents.lock().expect("agents lock");
            if agents.get(&box_id).is_none() {
                return Err(unregistered(&box_id.0));
            }
            agents.waiting(&box_id)
        };
        if !waiting.is_empty() || tokio::time::Instant::now() >= deadline {
            let ids: Vec<u64> = waiting.iter().map(|command| command.id.0).collect();
            if !ids.is_empty() {
                controller.metrics.commands_delivered.inc_by(ids.len() as u64);
                with_store(&controller, move |store| {
                    gantry_store::Store::mark_delivered(store, &ids).map_err(|error| {
                        crate::Error::Corrupt {
                            what: "the outbox".into(),
                            reason: error.to_string(),
                        }
                    })
                })
                .await?;
            }
            return Ok(axum::Json(CommandBatch { epoch: controller.epoch(), commands: waiting }));
        }
        let _ = tokio::time::timeout_at(deadline, notified).await;
    }
}

async fn acknowledge(
    State(controller): State<Arc<Controller>>,
    Path(box_id): Path<String>,
    Json(body): Json<Acknowledge>,
) -> Result<axum::Json<Acknowledged>, ApiError> {
    let box_id = BoxId(box_id);
    let mut agents = controller.agents.lock().expect("agents lock");
    if agents.get(&box_id).is_none() {
        return Err(unregistered(&box_id.0));
    }
    let outstanding = agents.acknowledge(&box_id, body.command);
    controller.metrics.outbox_depth.set(agents.depth() as i64);
    Ok(axum::Json(Acknowledged { outstanding }))
}

async fn report(
    State(controller): State<Arc<Controller>>,
    Path(box_id): Path<String>,
    Json(body): Json<Report>,
) -> Result<axum::Json<ReportAccepted>, ApiError> {
    let box_id = BoxId(box_id);
    let seen = {
        let mut agents = controller.agents.lock().expect("agents lock");
        if agents.get(&box_id).is_none() {
            return Err(unregistered(&box_id.0));
        }
        let seen = agents.report(&box_id, body, Timestamp::now())?;
        controller.metrics.outbox_depth.set(agents.depth() as i64);
        let record = agents.get(&box_id).expect("registered");
        (seen, record.service.clone(), record.target.clone())
    };
    let (seen, service, target) = seen;
    controller.mark_dirty(service, target);
    let epoch = fence(&controller, seen).await?;
    Ok(axum::Json(ReportAccepted { epoch }))
}

/// `GET /api/v1/boxes`: one type each for the server and its clients.
pub use gantry_model::views::{BoxList, BoxSummary};

async fn list_boxes(State(controller): State<Arc<Controller>>) -> axum::Json<BoxList> {
    let agents = controller.agents.lock().expect("agents lock");
    let boxes = agents
        .boxes()
        .take(MAX_PAGE as usize)
        .map(|record| BoxSummary {
            box_id: record.box_id.clone(),
            target: record.target.clone(),
            running: record
                .report
                .iter()
                .flat_map(|report| &report.pipelines)
                .map(|p| (p.pipeline.clone(), p.running))
                .collect(),
            reported_at: record.reported_at,
        })
        .collect();
    axum::Json(BoxList { boxes })
}

/// `GET /api/v1/boxes/{box_id}`.
#[derive(Serialize, schemars::JsonSchema)]
pub struct BoxDetail {
    #[serde(flatten)]
    pub record: BoxRecord,
    pub waiting: Vec<gantry_model::agent::AgentCommand>,
}

async fn get_box(
    State(controller): State<Arc<Controller>>,
    Path(box_id): Path<String>,
) -> Result<axum::Json<BoxDetail>, ApiError> {
    let box_id = BoxId(box_id);
    let agents = controller.agents.lock().expect("agents lock");
    let record = agents.get(&box_id).cloned().ok_or_else(|| {
        ApiError::field(
            StatusCode::NOT_FOUND,
            "path.box_id",
            format!("no box {:?} has registered", box_id.0),
        )
    })?;
    Ok(axum::Json(BoxDetail { record, waiting: agents.waiting(&box_id) }))
}

#[derive(Deserialize)]
struct PageQuery {
    after: Option<String>,
    limit: Option<String>,
}

fn parse_count(field: &str, text: Option<String>, default: u64) -> Result<u64, ApiError> {
    match text {
        None => Ok(default),
        Some(text) => text.parse().map_err(|_| {
            ApiError::field(
                StatusCode::BAD_REQUEST,
                format!("query.{field}"),
                format!("{text:?} is not a whole number"),
            )
        }),
    }
}

/// `GET /api/v1/audit`: one type each for the server and its clients.
pub use gantry_model::views::{AuditEntry, AuditPage};

async fn list_audit(
    State(controller): State<Arc<Controller>>,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::Json<AuditPage>, ApiError> {
    let Query(query) = query.map_err(|rejection| {
        ApiError::field(StatusCode::BAD_REQUEST, "query", rejection.body_text())
    })?;
    let after = parse_count("after", query.after, 0)?;
    let limit = parse_count("limit", query.limit, DEFAULT_PAGE as u64)?;
    if limit == 0 || limit > MAX_PAGE as u64 {
        return Err(ApiError::field(
            StatusCode::BAD_REQUEST,
            "query.limit",
            format!("between 1 and {MAX_PAGE}"),
        ));
    }
    let page = with_store(&controller, move |store| store.audit_page(after, limit as u32)).await?;
    let full = page.len() as u64 == limit;
    let records: Vec<AuditEntry> = page
        .into_iter()
        .map(|(seq, record)| AuditEntry {
            seq,
            at: record.at,
            record: serde_json::from_slice(&record.bytes).unwrap_or_else(|_| {
                serde_json::Value::String(String::from_utf8_lossy(&record.bytes).into())
            }),
        })
        .collect();
    let next_after = full.then(|| records.last().map(|r| r.seq)).flatten();
    Ok(axum::Json(AuditPage { records, next_after }))
}

/// `GET /api/v1/tokens`.
#[derive(Serialize, schemars::JsonSchema)]
pub struct TokenList {
    pub tokens: Vec<TokenInfo>,
}

async fn list_tokens(
    State(controller): State<Arc<Controller>>,
) -> Result<axum::Json<TokenList>, ApiError> {
    let rows = with_store(&controller, |store| store.tokens()).await?;
    let tokens = rows
        .into_iter()
        .take(MAX_PAGE as usize)
        .map(|(id, _, principal, created_at, revoked_at)| {
            let principal = serde_json::from_str(&principal).map_err(ApiError::internal)?;
            Ok(TokenInfo { id, principal, created_at, revoked_at })
        })
        .collect::<Result<_, ApiError>>()?;
    Ok(axum::Json(TokenList { tokens }))
}

/// `POST /api/v1/tokens`: a person with grants, or the agent of one box. (A flat object rather
/// than a tagged enum, so a refusal names the field at fault.)
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueToken {
    pub kind: TokenKind,
    /// For a person: the account name shown in the audit log.
    #[serde(default)]
    pub name: Option<String>,
    /// For a person: the natural person (e.g. their email), for separation of duties.
    #[serde(default)]
    pub person: Option<String>,
    /// For a person: their roles, each for one team or every team.
    #[serde(default)]
    pub grants: Vec<Grant>,
    /// For an agent: the one box it acts for.
    #[serde(default)]
    pub box_id: Option<String>,
    /// For an agent: the service whose pipelines deploy to its box.
    #[serde(default)]
    pub service: Option<String>,
}

#[derive(Clone, Copy, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    Person,
    Agent,
}

/// The most grants one token may carry: a person on a few teams with a few roles each.
pub const MAX_GRANTS: usize = 64;

/// The longest name a token's fields may carry.
pub const MAX_NAME_BYTES: usize = 200;

#[derive(Serialize, schemars::JsonSchema)]
pub struct IssuedToken {
    pub id: String,
    /// The secret, shown only now; the controller keeps its hash.
    pub token: String,
    pub principal: Principal,
}

fn check_name(field: &str, value: &str) -> Result<(), ApiError> {
    if value.trim().is_empty() || value.len() > MAX_NAME_BYTES {
        return Err(ApiError::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            field,
            format!("must be 1 to {MAX_NAME_BYTES} bytes and not blank"),
        ));
    }
    Ok(())
}

async fn issue_token(
    State(controller): State<Arc<Controller>>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<IssueToken>,
) -> Result<Response, ApiError> {
    let required = |field: &str, value: Option<String>| {
        value.ok_or_else(|| {
            ApiError::field(
                StatusCode::UNPROCESSABLE_ENTITY,
                field,
                "required for this kind of token",
            )
        })
    };
    let principal = match body.kind {
        TokenKind::Person => {
            let name = required("name", body.name)?;
            let person = required("person", body.person)?;
            check_name("name", &name)?;
            check_name("person", &person)?;
            if let Some(field) = [("box_id", &body.box_id), ("service", &body.service)]
                .into_iter()
                .find_map(|(field, value)| value.is_some().then_some(field))
            {
                return Err(ApiError::field(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    field,
                    "only an agent token names a box and its service",
                ));
            }
            if body.grants.len() > MAX_GRANTS {
                return Err(ApiError::field(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "grants",
                    format!("at most {MAX_GRANTS} grants"),
                ));
            }
            for (index, grant) in body.grants.iter().enumerate() {
                if let Some(team) = &grant.team {
                    check_name(&format!("grants[{index}].team"), team)?;
                }
            }
            Principal::Person { name, person, grants: body.grants }
        }
        TokenKind::Agent => {
            let box_id = required("box_id", body.box_id)?;
            let service = required("service", body.service)?;
            check_name("box_id", &box_id)?;
            check_name("service", &service)?;
            if body.name.is_some() || body.person.is_some() || !body.grants.is_empty() {
                return Err(ApiError::field(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "grants",
                    "an agent token has no name, person or grants: it acts for its box only",
                ));
            }
            Principal::Agent { box_id, service }
        }
    };
    let by = caller.0.as_ref().map(Principal::name).unwrap_or_default();
    let (id, secret) = {
        let controller = controller.clone();
        let principal = principal.clone();
        tokio::task::spawn_blocking(move || {
            controller.issue_token(principal, &by, Timestamp::now())
        })
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?
    };
    Ok((StatusCode::CREATED, axum::Json(IssuedToken { id, token: secret, principal }))
        .into_response())
}

async fn revoke_token(
    State(controller): State<Arc<Controller>>,
    Extension(caller): Extension<Caller>,
    Path(token_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let now = Timestamp::now();
    let by = caller.0.as_ref().map(Principal::name).unwrap_or_default();
    let record = audit_record(
        now,
        serde_json::json!({"kind": "token_revoked", "by": by, "token": token_id}),
    );
    let revoked = {
        let token_id = token_id.clone();
        with_store(&controller, move |store| {
            store.revoke_token(&token_id, &now.to_string(), &record)
        })
        .await?
    };
    if !revoked {
        return Err(ApiError::field(
            StatusCode::NOT_FOUND,
            "path.token_id",
            format!("no live token {token_id:?}"),
        ));
    }
    controller.tokens.write().expect("tokens lock").revoke(&token_id);
    Ok(StatusCode::NO_CONTENT)
}

async fn organisation(
    State(controller): State<Arc<Controller>>,
) -> axum::Json<crate::server::OrganisationStatus> {
    axum::Json(controller.organisation())
}
