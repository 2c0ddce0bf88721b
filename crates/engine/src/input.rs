//! Everything that can happen to the engine: one closed enum, [`Input`].
//!
//! Observations are level-triggered (a snapshot of a target's boxes, an alarm's current state, a
//! cumulative data-point count), so a lost or repeated message heals on the next one. Operator
//! commands carry an id and are applied at most once.

use gantry_model::{Plan, Target};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::artifact::{ArtifactReady, ContentBlocklist, Digest};
use crate::blockers::BlockerKind;
use crate::fleet::{BoxReport, CommandId};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "input", rename_all = "snake_case")]
pub enum Input {
    /// The controller holding the state (re)started with this fencing epoch. Every command issued
    /// afterwards carries it; outstanding commands are re-sent under it.
    ControllerStarted { epoch: u64 },
    /// A build produced a signed artifact for a pipeline (or its review status changed).
    ArtifactReady { pipeline: String, artifact: ArtifactReady },
    /// A test gate the engine asked for finished.
    TestGateResult { pipeline: String, command: CommandId, passed: bool, detail: String },
    /// A snapshot of every box of one of `service`'s targets, shared by every pipeline of the
    /// service that deploys there.
    Fleet { service: String, target: Target, observed_at: Timestamp, boxes: Vec<BoxReport> },
    /// An alarm's state; `region: None` for an organisation-wide alarm.
    Alarm { alarm: String, region: Option<String>, state: AlarmState, observed_at: Timestamp },
    /// Cumulative data points of one metric served by `artifact` on a target.
    DataPoints {
        pipeline: String,
        target: Target,
        artifact: Digest,
        metric: String,
        count: u64,
        observed_at: Timestamp,
    },
    /// The current list of known-bad commits and package versions.
    ContentBlocklist(ContentBlocklist),
    /// A person's command, with an id for de-duplication.
    Operator { id: String, by: String, command: OperatorCommand },
    /// A new version of a pipeline's plan (its stages, steps and targets may change). An
    /// artifact in flight finishes on the version it started with; the next artifact to enter
    /// the pipeline takes the new one.
    UpdatePlan { plan: Box<Plan> },
    /// A pipeline joins the organisation.
    AddPipeline { plan: Box<Plan> },
    /// A pipeline leaves; refused while it deploys, rolls back or has commands outstanding.
    RemovePipeline { pipeline: String },
    /// The topology's regions and their time zones changed. A new region joins a pipeline
    /// through that pipeline's next plan version ([`Input::UpdatePlan`]), so from its next
    /// artifact on; a region still deployed may not disappear.
    Topology { region_zones: std::collections::BTreeMap<String, String> },
    /// Time passed; nothing else happened.
    Tick,
}

impl Input {
    /// The one pipeline this input concerns, when it names one.
    pub fn pipeline(&self) -> Option<&str> {
        match self {
            Input::ArtifactReady { pipeline, .. }
            | Input::TestGateResult { pipeline, .. }
            | Input::DataPoints { pipeline, .. }
            | Input::RemovePipeline { pipeline } => Some(pipeline),
            Input::UpdatePlan { plan } | Input::AddPipeline { plan } => Some(&plan.pipeline),
            Input::ControllerStarted { .. }
            | Input::Fleet { .. }
            | Input::Alarm { .. }
            | Input::ContentBlocklist(_)
            | Input::Operator { .. }
            | Input::Topology { .. }
            | Input::Tick => None,
        }
    }
}

/// CloudWatch's three alarm states: the one type the alarm engine computes and this engine reads.
pub use gantry_model::AlarmState;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum OperatorCommand {
    /// Lets an artifact waiting for manual promotion leave `stage`.
    Approve {
        pipeline: String,
        stage: String,
        artifact: Digest,
    },
    /// A manual hold on the whole pipeline, or on one stage.
    Hold {
        pipeline: String,
        stage: Option<String>,
        reason: String,
    },
    Release {
        pipeline: String,
        stage: Option<String>,
    },
    /// Lifts one kind of blocker for a scope until `expires_at`.
    Override {
        pipeline: String,
        blocker: BlockerKind,
        stage: Option<String>,
        region: Option<String>,
        reason: String,
        expires_at: Timestamp,
    },
    /// Runs a failed stage again with the same artifact.
    Retry {
        pipeline: String,
        stage: String,
    },
    /// Rolls one target back to its newest known-good artifact other than the one it runs
    /// now; a stage deploying there fails.
    RollBackTarget {
        pipeline: String,
        target: Target,
        reason: String,
    },
    /// Rolls back every target of `stage` that runs the stage's artifact (the one it deploys,
    /// or the one that last passed it), and fails the stage if it is deploying.
    RollBackStage {
        pipeline: String,
        stage: String,
        reason: String,
    },
    /// Moves every target running `artifact` or anything built on top of it back to the newest
    /// earlier known-good artifact, and recalls those artifacts.
    RollBackEverywhere {
        pipeline: String,
        artifact: Digest,
        reason: String,
    },
    /// Dials bake down for `artifact` with senior approvals; only it may be in flight meanwhile.
    Urgent {
        pipeline: String,
        artifact: Digest,
        approvers: Vec<String>,
    },
    EndUrgent {
        pipeline: String,
    },
}

impl OperatorCommand {
    pub fn pipeline(&self) -> &str {
        match self {
            OperatorCommand::Approve { pipeline, .. }
            | OperatorCommand::Hold { pipeline, .. }
            | OperatorCommand::Release { pipeline, .. }
            | OperatorCommand::Override { pipeline, .. }
            | OperatorCommand::Retry { pipeline, .. }
            | OperatorCommand::RollBackTarget { pipeline, .. }
            | OperatorCommand::RollBackStage { pipeline, .. }
            | OperatorCommand::RollBackEverywhere { pipeline, .. }
            | OperatorCommand::Urgent { pipeline, .. }
            | OperatorCommand::EndUrgent { pipeline } => pipeline,
        }
    }
}
