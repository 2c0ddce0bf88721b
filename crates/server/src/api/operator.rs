//! People acting on pipelines: read their status; hold, release, retry, approve, override, roll
//! back, roll forward, and ask for and approve urgent mode. Each request becomes one operator
//! command for the engine's next round, under a fresh id, `by` the caller's account as given
//! through the API (`api:<name>`), so the audit log tells an approval through the API from a
//! review signed with a reviewer's key. The answer waits briefly for the round that decides it
//! and carries the engine's verdict.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gantry_engine::{BlockerKind, Input, OperatorCommand};
pub use gantry_model::views::{Decision, PipelineList, UrgentRequestList, UrgentRequestView};
use gantry_model::views::{StageStatus, Verdict as Status};
use gantry_model::{Digest, Target, Timestamp};
use serde::Deserialize;

use super::{ApiError, Caller, Json};
use crate::auth::{Principal, separation_of_duties};
use crate::server::{Controller, PipelineView, Verdict};

/// How long a request waits for the round that decides it before answering `202 Accepted`.
pub const DECISION_WAIT: Duration = Duration::from_secs(5);

/// The longest reason a person may give: a sentence or two and a ticket link.
pub const MAX_REASON_BYTES: usize = 2000;

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

/// Submits `command` for the next round, as the caller, and waits for its verdict.
async fn submit(
    controller: &Arc<Controller>,
    caller: &Caller,
    command: OperatorCommand,
) -> Result<Response, ApiError> {
    let by = match &caller.0 {
        Some(principal @ Principal::Person { .. }) => format!("api:{}", principal.name()),
        _ => return Err(ApiError::internal("an operator route ran without a person's token")),
    };
    let decision = submit_as(controller, by, command).await?;
    Ok(decision_response(decision))
}

/// The HTTP answer of a decision: `200` accepted, `409` rejected, `202` queued.
fn decision_response(decision: Decision) -> Response {
    let code = match decision.status {
        Status::Accepted => StatusCode::OK,
        Status::Rejected => StatusCode::CONFLICT,
        Status::Queued => StatusCode::ACCEPTED,
    };
    (code, axum::Json(decision)).into_response()
}

/// Submits `command` for the next round `by` an account and waits for the engine's verdict.
async fn submit_as(
    controller: &Arc<Controller>,
    by: String,
    command: OperatorCommand,
) -> Result<Decision, ApiError> {
    if controller.pipeline_view(command.pipeline()).is_none() {
        return Err(unknown_pipeline(command.pipeline()));
    }
    let random = crate::random_bytes().map_err(ApiError::internal)?;
    let id = format!("op-{}", hex::encode(&random[..8]));
    let verdict_changed = controller.verdict_changed.notified();
    tokio::pin!(verdict_changed);
    verdict_changed.as_mut().enable();
    controller.submit([Input::Operator { id: id.clone(), by, command }]);
    let deadline = tokio::time::Instant::now() + DECISION_WAIT;
    loop {
        if let Some(verdict) = controller.verdict(&id) {
            let (status, detail) = match verdict {
                Verdict::Accepted(summary) => (Status::Accepted, summary),
                Verdict::Rejected(reason) => (Status::Rejected, reason),
            };
            return Ok(Decision { id, status, detail: Some(detail) });
        }
        if tokio::time::timeout_at(deadline, verdict_changed.as_mut()).await.is_err() {
            return Ok(Decision { id, status: Status::Queued, detail: None });
        }
        verdict_changed.set(controller.verdict_changed.notified());
        verdict_changed.as_mut().enable();
    }
}

/// Appends one record of what a person asked for to the audit log, in its own transaction;
/// a request the log cannot record is refused rather than acted on unaudited.
async fn audit_now(controller: &Arc<Controller>, body: serde_json::Value) -> Result<(), ApiError> {
    let record = crate::server::audit_record(Timestamp::now(), body);
    let controller = controller.clone();
    tokio::task::spawn_blocking(move || {
        controller.store.lock().expect("store lock").append_audit(&[record])
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(|error| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the audit log is unavailable: {error}"),
        )
    })?;
    Ok(())
}

fn person(caller: &Caller) -> Result<&Principal, ApiError> {
    match &caller.0 {
        Some(principal @ Principal::Person { .. }) => Ok(principal),
        _ => Err(ApiError::internal("an operator route ran without a person's token")),
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

/// Roll forward: a newer artifact replacing one that failed in a stage.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RollForwardRequest {
    /// The stage where an artifact failed.
    pub stage: String,
    /// The newer artifact to replace it.
    pub artifact: Digest,
    pub reason: String,
}

/// The engine rolls forward by itself: a newer deployable artifact enters a failed stage as soon
/// as it has passed the stages before, through every gate. This route is how a person asks for
/// that and learns where it stands. It refuses an artifact that is not deployable, not newer than
/// the failed one, or not yet through the stage before (naming the gate it waits on); it never
/// lifts a review, signature, bake, approval or capacity check, and it commands nothing the
/// engine would not. The request and its outcome go into the audit log.
pub async fn roll_forward(
    State(controller): State<Arc<Controller>>,
    Extension(caller): Extension<Caller>,
    Path(pipeline): Path<String>,
    Json(body): Json<RollForwardRequest>,
) -> Result<Response, ApiError> {
    let reason = reason("reason", &body.reason)?;
    let principal = person(&caller)?;
    let view = controller.pipeline_view(&pipeline).ok_or_else(|| unknown_pipeline(&pipeline))?;
    let outcome = roll_forward_outcome(&view, &body.stage, &body.artifact)?;
    let decided = match outcome {
        RollForward::Refused(why) => {
            Decision { id: String::new(), status: Status::Rejected, detail: Some(why) }
        }
        RollForward::Entered(what) => {
            Decision { id: String::new(), status: Status::Accepted, detail: Some(what) }
        }
        RollForward::Next => {
            // The stage before has passed it: the engine's next round enters it.
            let deadline = tokio::time::Instant::now() + DECISION_WAIT;
            loop {
                let view = controller
                    .pipeline_view(&pipeline)
                    .ok_or_else(|| unknown_pipeline(&pipeline))?;
                if let RollForward::Entered(what) | RollForward::Refused(what) =
                    roll_forward_outcome(&view, &body.stage, &body.artifact)?
                {
                    let entered = view.status.stages.iter().any(|stage| {
                        stage.stage == body.stage && stage.artifact == Some(body.artifact)
                    });
                    let status = if entered { Status::Accepted } else { Status::Rejected };
                    break Decision { id: String::new(), status, detail: Some(what) };
                }
                if tokio::time::Instant::now() >= deadline {
                    break Decision {
                        id: String::new(),
                        status: Status::Queued,
                        detail: Some(format!(
                            "{} has passed the stage before {}; the engine enters it in its next round",
                            body.artifact, body.stage
                        )),
                    };
                }
                tokio::time::sleep(ROLL_FORWARD_POLL).await;
            }
        }
    };
    let random = crate::random_bytes().map_err(ApiError::internal)?;
    let id = format!("rf-{}", hex::encode(&random[..8]));
    audit_now(
        &controller,
        serde_json::json!({
            "kind": "roll_forward_requested", "id": id, "by": format!("api:{}", principal.name()),
            "pipeline": pipeline, "stage": body.stage, "artifact": body.artifact,
            "reason": reason, "outcome": decided.status, "detail": decided.detail,
        }),
    )
    .await?;
    Ok(decision_response(Decision { id, ..decided }))
}

/// How often a roll-forward request looks again for the round that enters its artifact.
const ROLL_FORWARD_POLL: Duration = Duration::from_millis(100);

enum RollForward {
    /// Refused, with the reason and what would make it possible.
    Refused(String),
    /// The artifact is in the stage.
    Entered(String),
    /// The stage before passed it; the engine enters it next.
    Next,
}

/// Where a roll forward of `stage` to `artifact` stands in `view`.
fn roll_forward_outcome(
    view: &PipelineView,
    stage: &str,
    artifact: &Digest,
) -> Result<RollForward, ApiError> {
    let stages = &view.status.stages;
    let index = stages.iter().position(|s| s.stage == stage).ok_or_else(|| {
        ApiError::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "stage",
            format!("no stage {stage:?} in this pipeline"),
        )
    })?;
    let known = |digest: &Digest| view.artifacts.iter().find(|a| &a.digest == digest);
    let new = known(artifact).ok_or_else(|| {
        ApiError::field(StatusCode::NOT_FOUND, "artifact", "this pipeline has no such artifact")
    })?;
    let here: &StageStatus = &stages[index];
    if here.artifact == Some(*artifact) && !here.phase.starts_with("failed") {
        return Ok(RollForward::Entered(format!(
            "{artifact} is rolling forward in {stage} ({}), through each of its steps and bakes",
            here.phase
        )));
    }
    if !new.deployable {
        return Ok(RollForward::Refused(format!(
            "{artifact} is not deployable (recalled, blocked or unreviewed); build a newer one"
        )));
    }
    let failed = match (here.artifact.and_then(|d| known(&d)), here.phase.starts_with("failed")) {
        (Some(failed), true) => failed,
        _ => {
            return Ok(RollForward::Refused(format!(
                "{stage} has no failed artifact to replace ({}); the newest artifact moves on by itself",
                here.phase
            )));
        }
    };
    if new.sequence <= failed.sequence {
        return Ok(RollForward::Refused(format!(
            "{artifact} (#{}) is not newer than the failed {} (#{}); roll forward names a newer build, a retry runs the same one again",
            new.sequence, failed.digest, failed.sequence
        )));
    }
    if index > 0 {
        let before = &stages[index - 1];
        let passed = before.passed.and_then(|d| known(&d));
        match passed {
            Some(passed) if passed.sequence > new.sequence => {
                return Ok(RollForward::Refused(format!(
                    "{}, newer than {artifact}, has passed {}: {stage} takes the newest; roll forward to it",
                    passed.digest, before.stage
                )));
            }
            Some(passed) if passed.sequence == new.sequence => {}
            _ => {
                return Ok(RollForward::Refused(format!(
                    "{artifact} has not passed {} yet ({}); it enters {stage} once it has, and no stage's bake, approval or tests are skipped",
                    before.stage, before.phase
                )));
            }
        }
    }
    Ok(RollForward::Next)
}

/// The most urgent-mode requests waiting for approval at once, over every pipeline: each is a
/// person's explicit ask, so a handful is normal and more is a mistake or abuse.
pub const MAX_URGENT_REQUESTS: usize = 64;

/// How long an urgent-mode request waits for its approvals: an hour later the situation that
/// made it urgent has changed, and the requester asks again with what is known then.
pub const URGENT_REQUEST_TTL: Duration = Duration::from_secs(3600);

/// Urgent-mode requests waiting for senior approval, each with the natural person who asked
/// (nobody approves their own request). Kept in memory: a controller restart forgets them
/// (nothing was applied; the requester asks again). Every request and approval is in the audit
/// log; urgent mode itself, once approved, is the engine's durable state.
#[derive(Debug, Default)]
pub struct UrgentRequests {
    requests: Vec<(UrgentRequestView, String)>,
}

impl UrgentRequests {
    fn expire(&mut self, now: Timestamp) {
        let ttl = jiff::SignedDuration::try_from(URGENT_REQUEST_TTL).expect("an hour fits");
        self.requests.retain(|(request, _)| request.requested_at + ttl > now);
    }

    fn find(&mut self, pipeline: &str, id: &str) -> Option<&mut (UrgentRequestView, String)> {
        self.requests
            .iter_mut()
            .find(|(request, _)| request.id == id && request.pipeline == pipeline)
    }
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UrgentRequest {
    /// The deployable artifact whose bake is to be dialled down.
    pub artifact: Digest,
    pub reason: String,
}

pub async fn list_urgent(
    State(controller): State<Arc<Controller>>,
    Path(pipeline): Path<String>,
) -> Result<axum::Json<UrgentRequestList>, ApiError> {
    controller.pipeline_view(&pipeline).ok_or_else(|| unknown_pipeline(&pipeline))?;
    let mut requests = controller.urgent_requests.lock().expect("urgent lock");
    requests.expire(Timestamp::now());
    let requests = requests
        .requests
        .iter()
        .filter(|(request, _)| request.pipeline == pipeline)
        .map(|(request, _)| request.clone())
        .collect();
    Ok(axum::Json(UrgentRequestList { requests }))
}

/// Asks for urgent mode for an artifact; senior approvers other than the requester and the
/// change's authors approve it with [`approve_urgent`].
pub async fn request_urgent(
    State(controller): State<Arc<Controller>>,
    Extension(caller): Extension<Caller>,
    Path(pipeline): Path<String>,
    Json(body): Json<UrgentRequest>,
) -> Result<(StatusCode, axum::Json<UrgentRequestView>), ApiError> {
    let reason = reason("reason", &body.reason)?;
    let principal = person(&caller)?;
    let view = controller.pipeline_view(&pipeline).ok_or_else(|| unknown_pipeline(&pipeline))?;
    let artifact = view.artifacts.iter().find(|a| a.digest == body.artifact).ok_or_else(|| {
        ApiError::field(StatusCode::NOT_FOUND, "artifact", "this pipeline has no such artifact")
    })?;
    if !artifact.deployable {
        return Err(ApiError::field(
            StatusCode::CONFLICT,
            "artifact",
            "this artifact is not deployable (recalled, blocked or unreviewed)",
        ));
    }
    if let Some(urgent) = &view.status.urgent {
        return Err(ApiError::field(
            StatusCode::CONFLICT,
            "artifact",
            format!("urgent mode is already on for {}", urgent.artifact),
        ));
    }
    let policy = &view.status.urgent_policy;
    if policy.approvers.is_empty() {
        return Err(ApiError::field(
            StatusCode::CONFLICT,
            "path.pipeline",
            "this pipeline's urgent policy names no approvers, so urgent mode cannot be approved",
        ));
    }
    let Principal::Person { person: requester_person, .. } = principal else {
        return Err(ApiError::internal("checked above"));
    };
    let random = crate::random_bytes().map_err(ApiError::internal)?;
    let request = UrgentRequestView {
        id: format!("urgent-{}", hex::encode(&random[..8])),
        pipeline: pipeline.clone(),
        artifact: body.artifact,
        reason,
        requested_by: principal.name(),
        requested_at: Timestamp::now(),
        approvals: Vec::new(),
        required: policy.required_approvals.max(1),
        approvers: policy.approvers.clone(),
        status: "waiting".into(),
        decision: None,
    };
    {
        let mut requests = controller.urgent_requests.lock().expect("urgent lock");
        requests.expire(request.requested_at);
        if requests.requests.len() >= MAX_URGENT_REQUESTS {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "{MAX_URGENT_REQUESTS} urgent requests wait already; approve or let them expire"
                ),
            ));
        }
        if requests
            .requests
            .iter()
            .any(|(r, _)| r.pipeline == pipeline && r.artifact == body.artifact)
        {
            return Err(ApiError::field(
                StatusCode::CONFLICT,
                "artifact",
                "urgent mode is already requested for this artifact; approve that request",
            ));
        }
    }
    audit_now(
        &controller,
        serde_json::json!({"kind": "urgent_requested", "id": request.id, "by": request.requested_by,
                           "pipeline": pipeline, "artifact": body.artifact, "reason": request.reason}),
    )
    .await?;
    let entry = (request.clone(), requester_person.clone());
    controller.urgent_requests.lock().expect("urgent lock").requests.push(entry);
    Ok((StatusCode::CREATED, axum::Json(request)))
}

/// A senior approver's approval of an urgent request. Once the pipeline's policy has enough
/// approvals, urgent mode goes to the engine, which checks the policy again.
pub async fn approve_urgent(
    State(controller): State<Arc<Controller>>,
    Extension(caller): Extension<Caller>,
    Path((pipeline, request_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let principal = person(&caller)?;
    let view = controller.pipeline_view(&pipeline).ok_or_else(|| unknown_pipeline(&pipeline))?;
    let not_found = || {
        ApiError::field(
            StatusCode::NOT_FOUND,
            "path.request",
            format!(
                "no urgent request {request_id:?} waits in {pipeline} (requests expire after an hour and a controller restart forgets them)"
            ),
        )
    };
    let (request, requester_person) = {
        let mut requests = controller.urgent_requests.lock().expect("urgent lock");
        requests.expire(Timestamp::now());
        requests.find(&pipeline, &request_id).cloned().ok_or_else(not_found)?
    };
    let authors = view
        .artifacts
        .iter()
        .find(|a| a.digest == request.artifact)
        .map(|a| a.authors.clone())
        .unwrap_or_default();
    if let Err(denied) = separation_of_duties(principal, &authors, Some(&requester_person)) {
        controller.audit_denied_now(principal.name(), "urgent approve", &denied.to_string()).await;
        return Err(ApiError::field(StatusCode::FORBIDDEN, "path.request", denied.to_string()));
    }
    let name = principal.name();
    if !request.approvers.contains(&name) {
        let denied = format!(
            "{name} is not one of {pipeline}'s urgent approvers ({})",
            request.approvers.join(", ")
        );
        controller.audit_denied_now(name, "urgent approve", &denied).await;
        return Err(ApiError::field(StatusCode::FORBIDDEN, "path.request", denied));
    }
    if request.approvals.contains(&name) {
        return Err(ApiError::field(
            StatusCode::CONFLICT,
            "path.request",
            format!("{name} has approved this request already"),
        ));
    }
    audit_now(
        &controller,
        serde_json::json!({"kind": "urgent_approved", "id": request.id, "by": name,
                           "pipeline": pipeline, "artifact": request.artifact}),
    )
    .await?;
    let mut request = {
        let mut requests = controller.urgent_requests.lock().expect("urgent lock");
        let Some((waiting, _)) = requests.find(&pipeline, &request_id) else {
            return Err(not_found());
        };
        if !waiting.approvals.contains(&name) {
            waiting.approvals.push(name);
        }
        waiting.clone()
    };
    if (request.approvals.len() as u32) < request.required {
        return Ok((StatusCode::OK, axum::Json(request)).into_response());
    }
    controller
        .urgent_requests
        .lock()
        .expect("urgent lock")
        .requests
        .retain(|(r, _)| r.id != request_id);
    let command = OperatorCommand::Urgent {
        pipeline,
        artifact: request.artifact,
        approvers: request.approvals.clone(),
    };
    let decision = submit_as(&controller, format!("api:{}", request.requested_by), command).await?;
    let code = match decision.status {
        Status::Accepted => StatusCode::OK,
        Status::Rejected => StatusCode::CONFLICT,
        Status::Queued => StatusCode::ACCEPTED,
    };
    request.status = serde_json::to_value(decision.status)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default();
    request.decision = Some(decision);
    Ok((code, axum::Json(request)).into_response())
}

/// Ends urgent mode: bakes are whole again.
pub async fn end_urgent(
    State(controller): State<Arc<Controller>>,
    Extension(caller): Extension<Caller>,
    Path(pipeline): Path<String>,
) -> Result<Response, ApiError> {
    submit(&controller, &caller, OperatorCommand::EndUrgent { pipeline }).await
}
