//! People acting on pipelines: read their status; hold, release, retry, approve, override and
//! roll back. Each request becomes one operator command for the engine's next round, under a
//! fresh id, `by` the caller's account as given through the API (`api:<name>`), so the audit log
//! tells an approval through the API from a review signed with a reviewer's key. The answer
//! waits briefly for the round that decides it and carries the engine's verdict.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gantry_engine::{BlockerKind, Input, OperatorCommand};
use gantry_model::{Digest, Target, Timestamp};
use serde::{Deserialize, Serialize};

use super::{ApiError, Caller, Json};
use crate::auth::{Principal, separation_of_duties};
use crate::server::{Controller, PipelineView, Verdict};

/// How long a request waits for the round that decides it before answering `202 Accepted`.
pub const DECISION_WAIT: Duration = Duration::from_secs(5);

/// The longest reason a person may give: a sentence or two and a ticket link.
pub const MAX_REASON_BYTES: usize = 2000;

/// `GET /api/v1/pipelines`.
#[derive(Serialize, schemars::JsonSchema)]
pub struct PipelineList {
    pub pipelines: Vec<PipelineView>,
}

pub async fn list_pipelines(
    State(controller): State<Arc<Controller>>,
    Extension(caller): Extension<Caller>,
) -> axum::Json<PipelineList> {
    let views = controller.pipeline_views();
    let pipelines = views
        .into_values()
        .filter(|view| {
            caller.0.as_ref().is_some_and(|principal| {
                principal
                    .allows(crate::auth::Permission::Read, crate::auth::Scope::Team(&view.team))
            })
        })
        .take(super::MAX_PAGE as usize)
        .collect();
    axum::Json(PipelineList { pipelines })
}

fn unknown_pipeline(pipeline: &str) -> ApiError {
    ApiError::field(
        StatusCode::NOT_FOUND,
        "path.pipeline",
        format!("no pipeline {pipeline:?} runs here"),
    )
}

pub async fn get_pipeline(
    State(controller): State<Arc<Controller>>,
    Path(pipeline): Path<String>,
) -> Result<axum::Json<PipelineView>, ApiError> {
    controller
        .pipeline_views()
        .remove(&pipeline)
        .map(axum::Json)
        .ok_or_else(|| unknown_pipeline(&pipeline))
}

/// The engine's verdict on a request, or that it is still queued.
#[derive(Serialize, schemars::JsonSchema)]
pub struct Decision {
    /// The operator command's id, as the audit log names it.
    pub id: String,
    /// `accepted`, `rejected`, or `queued` (not decided within the wait; see the audit log).
    pub status: String,
    /// What the engine did, or why it refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

fn reason(field: &str, text: &str) -> Result<String, ApiError> {
    if text.trim().is_empty() || text.len() > MAX_REASON_BYTES {
        return Err(ApiError::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            field,
            format!("give a reason of 1 to {MAX_REASON_BYTES} bytes"),
        ));
    }
    Ok(text.to_string())
}

/// Submits `command` for the next round and waits for its verdict.
async fn submit(
    controller: &Arc<Controller>,
    caller: &Caller,
    command: OperatorCommand,
) -> Result<Response, ApiError> {
    if controller.pipeline_view(command.pipeline()).is_none() {
        return Err(unknown_pipeline(command.pipeline()));
    }
    let by = match &caller.0 {
        Some(principal @ Principal::Person { .. }) => format!("api:{}", principal.name()),
        _ => return Err(ApiError::internal("an operator route ran without a person's token")),
    };
    let random = crate::random_bytes().map_err(ApiError::internal)?;
    let id = format!("op-{}", hex::encode(&random[..8]));
    let verdict_changed = controller.verdict_changed.notified();
    tokio::pin!(verdict_changed);
    verdict_changed.as_mut().enable();
    controller.submit([Input::Operator { id: id.clone(), by, command }]);
    let deadline = tokio::time::Instant::now() + DECISION_WAIT;
    loop {
        if let Some(verdict) = controller.verdict(&id) {
            let (status, code, detail) = match verdict {
                Verdict::Accepted(summary) => ("accepted", StatusCode::OK, summary),
                Verdict::Rejected(reason) => ("rejected", StatusCode::CONFLICT, reason),
            };
            let decision = Decision { id, status: status.into(), detail: Some(detail) };
            return Ok((code, axum::Json(decision)).into_response());
        }
        if tokio::time::timeout_at(deadline, verdict_changed.as_mut()).await.is_err() {
            let decision = Decision { id, status: "queued".into(), detail: None };
            return Ok((StatusCode::ACCEPTED, axum::Json(decision)).into_response());
        }
        verdict_changed.set(controller.verdict_changed.notified());
        verdict_changed.as_mut().enable();
    }
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HoldRequest {
    /// One stage, or the whole pipeline when absent.
    #[serde(default)]
    pub stage: Option<String>,
    pub reason: String,
}

pub async fn hold(
    State(controller): State<Arc<Controller>>,
    Extension(caller): Extension<Caller>,
    Path(pipeline): Path<String>,
    Json(body): Json<HoldRequest>,
) -> Result<Response, ApiError> {
    let reason = reason("reason", &body.reason)?;
    submit(&controller, &caller, OperatorCommand::Hold { pipeline, stage: body.stage, reason })
        .await
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    #[serde(default)]
    pub stage: Option<String>,
}

pub async fn release(
    State(controller): State<Arc<Controller>>,
    Extension(caller): Extension<Caller>,
    Path(pipeline): Path<String>,
    Json(body): Json<ReleaseRequest>,
) -> Result<Response, ApiError> {
    submit(&controller, &caller, OperatorCommand::Release { pipeline, stage: body.stage }).await
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryRequest {
    pub stage: String,
}

pub async fn retry(
    State(controller): State<Arc<Controller>>,
    Extension(caller): Extension<Caller>,
    Path(pipeline): Path<String>,
    Json(body): Json<RetryRequest>,
) -> Result<Response, ApiError> {
    submit(&controller, &caller, OperatorCommand::Retry { pipeline, stage: body.stage }).await
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveRequest {
    pub stage: String,
    pub artifact: Digest,
}

pub async fn approve(
    State(controller): State<Arc<Controller>>,
    Extension(caller): Extension<Caller>,
    Path(pipeline): Path<String>,
    Json(body): Json<ApproveRequest>,
) -> Result<Response, ApiError> {
    let view = controller.pipeline_view(&pipeline).ok_or_else(|| unknown_pipeline(&pipeline))?;
    let artifact = view.artifacts.iter().find(|a| a.digest == body.artifact).ok_or_else(|| {
        ApiError::field(StatusCode::NOT_FOUND, "artifact", "this pipeline has no such artifact")
    })?;
    let principal = caller.0.as_ref().ok_or_else(|| ApiError::internal("no caller"))?;
    if let Err(denied) = separation_of_duties(principal, &artifact.authors, None) {
        controller.audit_denied_now(principal.name(), "approve", &denied.to_string()).await;
        return Err(ApiError::field(StatusCode::FORBIDDEN, "artifact", denied.to_string()));
    }
    let command = OperatorCommand::Approve { pipeline, stage: body.stage, artifact: body.artifact };
    submit(&controller, &caller, command).await
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OverrideRequest {
    /// The kind of blocker to lift: `team_alarm`, `organisation_alarm`, `time_window`,
    /// `content`, `manual_hold`, ... (a step's own rollback alarm cannot be overridden).
    pub blocker: serde_json::Value,
    #[serde(default)]
    pub stage: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    pub reason: String,
    /// At most 24 hours from now.
    pub expires_at: Timestamp,
}

pub async fn override_blocker(
    State(controller): State<Arc<Controller>>,
    Extension(caller): Extension<Caller>,
    Path(pipeline): Path<String>,
    Json(body): Json<OverrideRequest>,
) -> Result<Response, ApiError> {
    let blocker: BlockerKind = serde_json::from_value(body.blocker).map_err(|error| {
        ApiError::field(StatusCode::UNPROCESSABLE_ENTITY, "blocker", error.to_string())
    })?;
    let reason = reason("reason", &body.reason)?;
    let now = controller.now();
    let longest = jiff::SignedDuration::try_from(crate::auth::MAX_OVERRIDE).expect("a day fits");
    if body.expires_at <= now || body.expires_at.duration_since(now) > longest {
        return Err(ApiError::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "expires_at",
            "an override expires in the future and within 24 hours",
        ));
    }
    let command = OperatorCommand::Override {
        pipeline,
        blocker,
        stage: body.stage,
        region: body.region,
        reason,
        expires_at: body.expires_at,
    };
    submit(&controller, &caller, command).await
}

/// What to roll back: one target, one stage, or every target running an artifact.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// `target`, `stage` or `everywhere`.
    pub scope: RollbackScope,
    /// For `target`.
    #[serde(default)]
    pub target: Option<Target>,
    /// For `stage`.
    #[serde(default)]
    pub stage: Option<String>,
    /// For `everywhere`: the bad artifact (and everything built on it).
    #[serde(default)]
    pub artifact: Option<Digest>,
    pub reason: String,
}

#[derive(Clone, Copy, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RollbackScope {
    Target,
    Stage,
    Everywhere,
}

pub async fn roll_back(
    State(controller): State<Arc<Controller>>,
    Extension(caller): Extension<Caller>,
    Path(pipeline): Path<String>,
    Json(body): Json<RollbackRequest>,
) -> Result<Response, ApiError> {
    let reason = reason("reason", &body.reason)?;
    let missing = |field: &str| {
        ApiError::field(StatusCode::UNPROCESSABLE_ENTITY, field, "required for this scope")
    };
    let command = match body.scope {
        RollbackScope::Target => OperatorCommand::RollBackTarget {
            pipeline,
            target: body.target.ok_or_else(|| missing("target"))?,
            reason,
        },
        RollbackScope::Stage => OperatorCommand::RollBackStage {
            pipeline,
            stage: body.stage.ok_or_else(|| missing("stage"))?,
            reason,
        },
        RollbackScope::Everywhere => OperatorCommand::RollBackEverywhere {
            pipeline,
            artifact: body.artifact.ok_or_else(|| missing("artifact"))?,
            reason,
        },
    };
    submit(&controller, &caller, command).await
}
