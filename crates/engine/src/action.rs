//! Everything the engine can ask for: one closed enum, [`Action`], and the [`Event`]s it reports.
//!
//! Box and test commands carry an id and the controller's fencing epoch. The driver commits the
//! engine's new state before it sends any action (decide durably, then act); agents apply a
//! command id at most once and refuse epochs lower than the highest they have seen, so sending
//! an action again after a crash is always safe.

use gantry_model::Target;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::artifact::Digest;
use crate::blockers::Blocker;
use crate::fleet::{BoxId, CommandId, CommandKind};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Install `artifact` on a box (a forward deployment or a repair).
    Deploy(BoxCommand),
    /// Put a box back on its target's last known good artifact.
    RollBack(BoxCommand),
    /// Run one of a stage's test gates against `artifact`.
    RunTestGate {
        id: CommandId,
        epoch: u64,
        pipeline: String,
        stage: String,
        gate: String,
        artifact: Digest,
    },
    /// Tell people (and the audit log) what happened and why.
    Notify(Event),
    /// Get a person now: something cannot make progress on its own (a stuck rollback or
    /// deployment). Sent once per occurrence, with the same reason as its event.
    Page { pipeline: String, target: Target, reason: String },
    /// Call the engine with [`crate::Input::Tick`] at this time at the latest.
    WakeAt(Timestamp),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoxCommand {
    pub id: CommandId,
    pub epoch: u64,
    pub pipeline: String,
    pub target: Target,
    pub box_id: BoxId,
    pub artifact: Digest,
    pub kind: CommandKind,
}

/// What the engine decided, with its reason. The audit log and the timeline are made of these.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    ArtifactAccepted {
        pipeline: String,
        artifact: Digest,
    },
    ArtifactRefused {
        pipeline: String,
        artifact: Digest,
        reason: String,
    },
    StageEntered {
        pipeline: String,
        stage: String,
        artifact: Digest,
    },
    /// A newer artifact took the stage before `artifact` started deploying there.
    Superseded {
        pipeline: String,
        stage: String,
        artifact: Digest,
        by: Digest,
    },
    /// The target's set of blockers changed; empty means nothing blocks it any more.
    Blocked {
        pipeline: String,
        stage: String,
        target: Target,
        artifact: Digest,
        blockers: Vec<Blocker>,
    },
    /// An override lifted a blocker for this start.
    BlockerOverridden {
        pipeline: String,
        target: Target,
        blocker: Blocker,
        override_id: String,
    },
    OverrideExpired {
        pipeline: String,
        override_id: String,
    },
    DeploymentStarted {
        pipeline: String,
        stage: String,
        step: String,
        target: Target,
        artifact: Digest,
    },
    DeploymentSucceeded {
        pipeline: String,
        stage: String,
        step: String,
        target: Target,
        artifact: Digest,
    },
    DeploymentFailed {
        pipeline: String,
        stage: String,
        step: String,
        target: Target,
        artifact: Digest,
        reason: String,
    },
    BakeStarted {
        pipeline: String,
        stage: String,
        step: String,
        target: Target,
        artifact: Digest,
        until: Timestamp,
    },
    /// The bake's time is up but evidence is missing; it completes once the evidence arrives.
    BakeWaitingForEvidence {
        pipeline: String,
        stage: String,
        step: String,
        target: Target,
        artifact: Digest,
        missing: Vec<String>,
    },
    StepBaked {
        pipeline: String,
        stage: String,
        step: String,
        target: Target,
        artifact: Digest,
    },
    TestGateFinished {
        pipeline: String,
        stage: String,
        gate: String,
        artifact: Digest,
        passed: bool,
        detail: String,
    },
    AwaitingApproval {
        pipeline: String,
        stage: String,
        artifact: Digest,
    },
    StagePassed {
        pipeline: String,
        stage: String,
        artifact: Digest,
    },
    StageFailed {
        pipeline: String,
        stage: String,
        artifact: Digest,
        reason: String,
    },
    RollbackStarted {
        pipeline: String,
        target: Target,
        to: Digest,
        reason: String,
    },
    RollbackFinished {
        pipeline: String,
        target: Target,
        to: Digest,
    },
    /// A rollback cannot make progress: no box can be taken without crossing the floor and
    /// none is on its way. Reported once; it stays stuck until a box reaches `to`.
    RollbackStuck {
        pipeline: String,
        target: Target,
        to: Digest,
        reason: String,
        boxes: Vec<BoxId>,
    },
    /// A deployment cannot make progress: no box can be taken without crossing the floor and
    /// none is on its way. Reported once; it fails if it stays so.
    DeploymentStuck {
        pipeline: String,
        stage: String,
        step: String,
        target: Target,
        artifact: Digest,
        reason: String,
        boxes: Vec<BoxId>,
    },
    /// A pipeline moved onto a new plan version (its next artifact deploys with it).
    PlanVersionStarted {
        pipeline: String,
        version: u32,
    },
    /// A target first seen running one artifact on every box adopts it as known good.
    KnownGoodAdopted {
        pipeline: String,
        target: Target,
        artifact: Digest,
    },
    UrgentStarted {
        pipeline: String,
        artifact: Digest,
        approvers: Vec<String>,
    },
    UrgentEnded {
        pipeline: String,
        artifact: Digest,
    },
    CommandAccepted {
        id: String,
        by: String,
        summary: String,
    },
    CommandRejected {
        id: String,
        by: String,
        reason: String,
    },
}
