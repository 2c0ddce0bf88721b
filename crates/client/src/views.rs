//! The API's answers as this client reads them: the server serialises its pipeline views (the
//! engine's status of each pipeline, with its artifacts), box records and decisions; these are
//! their wire shape. Fields the server may add later are ignored, so an older client keeps
//! working against a newer controller; the wire types the agent shares come from
//! `gantry_model::agent`.

use std::collections::BTreeMap;

use gantry_model::agent::{BoxId, Report};
use gantry_model::{Digest, Target, Timestamp};
use serde::{Deserialize, Serialize};

/// `GET /api/v1/health`.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Health {
    pub status: String,
    pub store_healthy: bool,
    #[serde(default)]
    pub store_error: Option<String>,
    pub epoch: u64,
    pub agents: u64,
    pub commands_waiting: u64,
}

/// `GET /api/v1/pipelines`.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct PipelineList {
    pub pipelines: Vec<Pipeline>,
}

/// `GET /api/v1/pipelines/{pipeline}`: one pipeline, its status and its artifacts.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Pipeline {
    pub pipeline: String,
    pub team: String,
    pub service: String,
    pub status: Status,
    /// Newest first.
    pub artifacts: Vec<Artifact>,
}

/// The engine's status of a pipeline.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Status {
    pub plan_version: u32,
    #[serde(default)]
    pub pending_plan: Option<u32>,
    pub stages: Vec<Stage>,
    #[serde(default)]
    pub rollbacks: Vec<Rollback>,
    /// Whether a person holds the pipeline or one of its stages.
    #[serde(default)]
    pub held: bool,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Stage {
    pub stage: String,
    #[serde(default)]
    pub artifact: Option<Digest>,
    /// `idle`, `rollout`, `testing`, `awaiting_approval`, `failed: <reason>`.
    pub phase: String,
    #[serde(default)]
    pub lanes: Vec<Lane>,
}

/// One region's progress through a stage: the target of its current step.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Lane {
    pub region: String,
    pub step: String,
    pub target: Target,
    /// `waiting`, `deploying`, `deployed`, `baked`, `halted` or `stuck`.
    pub phase: String,
    #[serde(default)]
    pub blockers: Vec<Blocker>,
    #[serde(default)]
    pub bake_started: Option<Timestamp>,
    /// Data points counted for the step's bake, per metric.
    #[serde(default)]
    pub evidence_from: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Blocker {
    /// `team_alarm`, `organisation_alarm`, `time_window`, `content`, `manual_hold`, ...
    pub kind: String,
    /// What blocks: the alarm, the commit, the window, the holder.
    pub name: String,
    pub reason: String,
    #[serde(default)]
    pub clears_at: Option<Timestamp>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Rollback {
    pub target: Target,
    pub to: Digest,
    pub reason: String,
    pub started_at: Timestamp,
    #[serde(default)]
    pub stuck: Option<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Artifact {
    pub digest: Digest,
    pub sequence: u64,
    #[serde(default)]
    pub authors: Vec<String>,
    #[serde(default)]
    pub unreviewed_commits: Vec<String>,
    pub deployable: bool,
}

/// The engine's verdict on a pipeline action.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Decision {
    /// The operator command's id, as the audit log names it.
    pub id: String,
    pub status: Verdict,
    #[serde(default)]
    pub detail: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Accepted,
    Rejected,
    /// Not decided within the server's wait; the audit log will say.
    Queued,
}

/// `GET /api/v1/boxes`.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct BoxList {
    pub boxes: Vec<BoxSummary>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct BoxSummary {
    pub box_id: BoxId,
    pub target: Target,
    /// Per pipeline, the artifact the box last reported running.
    #[serde(default)]
    pub running: BTreeMap<String, Option<Digest>>,
    #[serde(default)]
    pub reported_at: Option<Timestamp>,
}

/// `GET /api/v1/boxes/{box_id}`.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct BoxDetail {
    pub box_id: BoxId,
    pub service: String,
    pub target: Target,
    #[serde(default)]
    pub reported_at: Option<Timestamp>,
    /// The box's latest whole report.
    #[serde(default)]
    pub report: Option<Report>,
}

/// `GET /api/v1/audit`.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct AuditPage {
    pub records: Vec<AuditEntry>,
    #[serde(default)]
    pub next_after: Option<u64>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct AuditEntry {
    pub seq: u64,
    pub at: Timestamp,
    pub record: serde_json::Value,
}
