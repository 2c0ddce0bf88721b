//! What people read of a running controller, one type each: the engine's status of a pipeline
//! ([`PipelineStatus`], built by `gantry-engine`), the pipeline as the API serves it
//! ([`PipelineView`], with its artifacts), the engine's verdict on a person's command
//! ([`Decision`]), and the lists of the fleet and the controller's health. The server
//! serialises these and the client reads them, so the two cannot drift apart.
//!
//! A client reads fields a newer server adds by ignoring them (no `deny_unknown_fields` here),
//! and fields an older server leaves out take their defaults.

use std::collections::BTreeMap;

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::agent::BoxId;
use crate::pipeline::UrgentPolicy;
use crate::{Digest, Target};

/// Why a deployment may not start now.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum BlockerKind {
    /// One of the step's own rollback alarms is in ALARM: the deployment would roll back at
    /// once, so no override lifts this one.
    RollbackAlarm,
    /// One of the team's blocker alarms is in ALARM (or its state is unknown) in the region.
    TeamAlarm,
    /// An organisation-wide alarm, e.g. a large-scale event, is in ALARM (or unknown).
    OrganisationAlarm,
    /// The region's deployment windows are closed.
    TimeWindow,
    /// The artifact contains a blocked commit or package version.
    Content,
    /// A person holds the pipeline or the stage.
    ManualHold,
    /// Too many artifacts in production already, or urgent mode allows only one.
    InFlightLimit,
    /// A commit was not approved by someone other than its author.
    Unreviewed,
}

impl BlockerKind {
    /// Whether an override may lift this kind.
    pub fn overridable(self) -> bool {
        !matches!(self, BlockerKind::Unreviewed | BlockerKind::RollbackAlarm)
    }
}

/// A blocker on one target, with its reason.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct Blocker {
    pub kind: BlockerKind,
    /// What blocks: the alarm's name, the commit, `time-window`, the holder.
    pub name: String,
    pub reason: String,
    /// When it will clear, where that can be known.
    #[serde(default)]
    pub clears_at: Option<Timestamp>,
}

/// One pipeline's status, as people and the dashboard read it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PipelineStatus {
    pub pipeline: String,
    pub plan_version: u32,
    #[serde(default)]
    pub pending_plan: Option<u32>,
    pub stages: Vec<StageStatus>,
    #[serde(default)]
    pub rollbacks: Vec<RollbackStatus>,
    /// Whether a person holds the pipeline or one of its stages.
    #[serde(default)]
    pub held: bool,
    /// The urgent change whose bake is dialled down, while urgent mode is on.
    #[serde(default)]
    pub urgent: Option<UrgentStatus>,
    /// Who may approve urgent mode, how many must, and how far bake may be cut.
    #[serde(default)]
    pub urgent_policy: UrgentPolicy,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StageStatus {
    pub stage: String,
    /// The artifact in the stage now.
    #[serde(default)]
    pub artifact: Option<Digest>,
    /// `idle`, `rollout`, `testing`, `awaiting_approval`, `failed: <reason>`.
    pub phase: String,
    /// The newest artifact that passed this stage: the one the next stage may take.
    #[serde(default)]
    pub passed: Option<Digest>,
    #[serde(default)]
    pub lanes: Vec<LaneStatus>,
}

/// One region's progress through a stage: the target of its current step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LaneStatus {
    pub region: String,
    pub step: String,
    pub target: Target,
    /// `waiting`, `deploying`, `deployed`, `baked`, `halted`, or `stuck` (a deployment that
    /// cannot make progress).
    pub phase: String,
    #[serde(default)]
    pub blockers: Vec<Blocker>,
    #[serde(default)]
    pub bake_started: Option<Timestamp>,
    /// When the bake's time is up (urgent mode included); it passes only with its data points
    /// too.
    #[serde(default)]
    pub bake_until: Option<Timestamp>,
    /// Per metric, the cumulative count the step's own data points are counted from.
    #[serde(default)]
    pub evidence_from: BTreeMap<String, u64>,
    /// Per metric the bake needs: the data points counted since the step deployed, and how
    /// many it needs.
    #[serde(default)]
    pub data_points: BTreeMap<String, DataPoints>,
    /// The target's boxes, its floor and the deployment's batches.
    #[serde(default)]
    pub capacity: Option<Capacity>,
}

/// A bake's evidence of one metric.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DataPoints {
    pub counted: u64,
    pub required: u64,
}

/// A target's boxes against its floor, and the deployment's batches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Capacity {
    pub boxes: u32,
    /// Boxes in service now (healthy, on whichever artifact).
    pub healthy: u32,
    /// The minimum healthy boxes the deployment keeps.
    pub floor: u32,
    /// The most boxes one batch takes (1 for a one-box step).
    pub batch_size: u32,
    /// Batches the step needs: the boxes it must replace, by batch size.
    pub batches: u32,
    /// The batch deploying now, from 1; 0 before the deployment starts.
    pub batch: u32,
    /// Boxes already on the stage's artifact and healthy.
    pub on_artifact: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RollbackStatus {
    pub target: Target,
    pub to: Digest,
    pub reason: String,
    pub started_at: Timestamp,
    /// Why it cannot make progress, when it cannot.
    #[serde(default)]
    pub stuck: Option<String>,
}

/// Urgent mode: an artifact's bake cut, with the senior approvals that allowed it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct UrgentStatus {
    pub artifact: Digest,
    pub approvers: Vec<String>,
    pub since: Timestamp,
}

/// `GET /api/v1/pipelines/{pipeline}`: one pipeline, its status and its artifacts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PipelineView {
    pub pipeline: String,
    pub team: String,
    pub service: String,
    /// The engine's status: stages with their lanes, blockers, bakes and waits; rollbacks.
    pub status: PipelineStatus,
    /// Artifacts the pipeline knows, newest first.
    pub artifacts: Vec<ArtifactView>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ArtifactView {
    pub digest: Digest,
    pub sequence: u64,
    /// Authors of the commits it adds.
    #[serde(default)]
    pub authors: Vec<String>,
    /// Commits no one but their author approved.
    #[serde(default)]
    pub unreviewed_commits: Vec<String>,
    pub deployable: bool,
}

/// `GET /api/v1/pipelines`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PipelineList {
    pub pipelines: Vec<PipelineView>,
}

/// The engine's verdict on a person's command, or that it is still queued.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Decision {
    /// The operator command's id, as the audit log names it.
    pub id: String,
    pub status: Verdict,
    /// What the engine did, or why it refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Accepted,
    Rejected,
    /// Not decided within the server's wait; the audit log will say.
    Queued,
}

/// `GET /api/v1/health`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Health {
    /// `ok`, or `degraded` while the store refuses commits (no commands are issued then).
    pub status: String,
    pub store_healthy: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_error: Option<String>,
    pub epoch: u64,
    pub agents: u64,
    pub commands_waiting: u64,
}

/// `GET /api/v1/boxes`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BoxList {
    pub boxes: Vec<BoxSummary>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BoxSummary {
    pub box_id: BoxId,
    pub target: Target,
    /// Per pipeline, the artifact the box last reported running.
    #[serde(default)]
    pub running: BTreeMap<String, Option<Digest>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported_at: Option<Timestamp>,
}

/// One urgent-mode request and the senior approvals it has so far.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct UrgentRequestView {
    pub id: String,
    pub pipeline: String,
    pub artifact: Digest,
    pub reason: String,
    /// The account that asked.
    pub requested_by: String,
    pub requested_at: Timestamp,
    /// Accounts of the senior approvers who approved, in order.
    #[serde(default)]
    pub approvals: Vec<String>,
    /// Approvals the pipeline's urgent policy needs.
    pub required: u32,
    /// Who may approve: the pipeline's urgent policy.
    #[serde(default)]
    pub approvers: Vec<String>,
    /// `waiting` (for approvals), or the engine's verdict once they sufficed: `accepted`,
    /// `rejected` or `queued`.
    pub status: String,
    /// The engine's verdict once the approvals sufficed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
}

/// `GET /api/v1/pipelines/{pipeline}/urgent`: the requests waiting for approval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct UrgentRequestList {
    pub requests: Vec<UrgentRequestView>,
}

/// `GET /api/v1/audit`: a page of the audit log, oldest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AuditPage {
    pub records: Vec<AuditEntry>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_after: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AuditEntry {
    pub seq: u64,
    pub at: Timestamp,
    /// The record: an engine decision or command, or what the server did (a denied request, a
    /// token issued), as JSON.
    pub record: serde_json::Value,
}
