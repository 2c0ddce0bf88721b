//! Read views of the engine's state. The state itself is private: callers read it through these
//! (and through `&` references to pipelines), so none can change a decision behind the engine's
//! back or leave one of its indexes stale.
//!
//! - [`Engine::needs_observing`]: what a controller must keep fresh reports of now;
//! - [`Engine::status`]: a pipeline's stages with their blockers, bakes and waits, and its
//!   rollbacks (stuck ones with their reason);
//! - [`Engine::outstanding_commands`]: every box command not yet settled, as agents should
//!   have it;
//! - [`Engine::pipeline`], [`Engine::pipelines`], [`Engine::epoch`], [`Engine::zones`].

use std::collections::{BTreeMap, BTreeSet};

use gantry_model::Target;
use gantry_store::RecordKey;
use jiff::Timestamp;
use serde::Serialize;

use crate::action::BoxCommand;
use crate::artifact::Digest;
use crate::blockers::Blocker;
use crate::state::{Engine, Pipeline, SharedTarget, StagePhase, TargetPhase};

/// What a controller must keep fresh reports of now: the boxes of targets deploying, about to
/// start or rolling back; the data points of targets baking; the alarms of their regions.
/// A lane held by a window until a later time needs nothing until then: the engine wakes
/// itself when the window opens.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Watch {
    pub fleets: BTreeSet<SharedTarget>,
    /// (pipeline, target) whose data points a bake counts.
    pub data_points: BTreeSet<(String, Target)>,
    /// Regions whose alarms matter to some step now.
    pub alarm_regions: BTreeSet<String>,
}

/// One pipeline's status, as people and the dashboard read it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PipelineStatus {
    pub pipeline: String,
    pub plan_version: u32,
    pub pending_plan: Option<u32>,
    pub stages: Vec<StageStatus>,
    pub rollbacks: Vec<RollbackStatus>,
    pub held: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StageStatus {
    pub stage: String,
    pub artifact: Option<Digest>,
    /// `idle`, `rollout`, `testing`, `awaiting_approval`, `failed: <reason>`.
    pub phase: String,
    pub lanes: Vec<LaneStatus>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LaneStatus {
    pub region: String,
    pub step: String,
    pub target: Target,
    /// `waiting`, `deploying`, `deployed`, `baked`, `halted`, or `stuck` (a deployment that
    /// cannot make progress).
    pub phase: &'static str,
    pub blockers: Vec<Blocker>,
    pub bake_started: Option<Timestamp>,
    /// Data points counted for this step per metric, since its own deployment.
    pub evidence_from: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RollbackStatus {
    pub target: Target,
    pub to: Digest,
    pub reason: String,
    pub started_at: Timestamp,
    /// Why it cannot make progress, when it cannot.
    pub stuck: Option<String>,
}

impl Engine {
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// IANA time zone per region.
    pub fn zones(&self) -> &BTreeMap<String, String> {
        &self.region_zones
    }

    pub fn pipeline(&self, name: &str) -> Option<&Pipeline> {
        self.pipelines.get(name)
    }

    pub fn pipelines(&self) -> impl Iterator<Item = (&str, &Pipeline)> {
        self.pipelines.iter().map(|(name, pipeline)| (name.as_str(), pipeline))
    }

    /// The keys of one pipeline's records: its own, its targets' and its plan versions'.
    pub fn records_of(&self, pipeline: &str) -> Vec<RecordKey> {
        self.keys_of(pipeline)
    }

    /// Every box command issued and not yet settled, as its agent should have it.
    pub fn outstanding_commands(&self) -> Vec<BoxCommand> {
        let mut commands = Vec::new();
        for (name, pipeline) in &self.pipelines {
            for (target, state) in &pipeline.targets {
                for (id, box_state) in &state.fleet.boxes {
                    if let Some(pending) = &box_state.pending {
                        commands.push(BoxCommand {
                            id: pending.id,
                            epoch: self.epoch,
                            pipeline: name.clone(),
                            target: target.clone(),
                            box_id: id.clone(),
                            artifact: pending.artifact,
                            kind: pending.kind,
                        });
                    }
                }
            }
        }
        commands
    }

    /// What needs fresh reports now (see [`Watch`]).
    pub fn needs_observing(&self, now: Timestamp) -> Watch {
        let mut watch = Watch::default();
        for (name, pipeline) in &self.pipelines {
            let service = &pipeline.plan.service;
            for state in &pipeline.stages {
                let Some(run) = &state.run else { continue };
                let StagePhase::Rollout { lanes } = &run.phase else { continue };
                for lane in lanes.values() {
                    let shared = (service.clone(), lane.target.clone());
                    let region = lane.target.region.clone();
                    match &lane.phase {
                        TargetPhase::Waiting
                            if lane
                                .blockers
                                .iter()
                                .any(|b| b.clears_at.is_some_and(|at| at > now)) => {}
                        TargetPhase::Waiting | TargetPhase::Deploying { .. } => {
                            watch.fleets.insert(shared);
                            watch.alarm_regions.insert(region);
                        }
                        TargetPhase::Deployed { .. } => {
                            watch.data_points.insert((name.clone(), lane.target.clone()));
                            watch.alarm_regions.insert(region);
                        }
                        TargetPhase::Baked { .. } | TargetPhase::Halted => {}
                    }
                }
            }
            for (target, state) in &pipeline.targets {
                let busy = state.rollback.is_some()
                    || state
                        .fleet
                        .boxes
                        .values()
                        .any(|b| b.pending.is_some() || b.observation.running.is_none());
                if busy {
                    watch.fleets.insert((service.clone(), target.clone()));
                }
            }
        }
        watch
    }

    /// One pipeline's status: stages with their lanes, blockers and bakes; its rollbacks.
    pub fn status(&self, name: &str) -> Option<PipelineStatus> {
        let pipeline = self.pipelines.get(name)?;
        let stages = pipeline
            .plan
            .stages
            .iter()
            .zip(&pipeline.stages)
            .map(|(stage, state)| {
                let (artifact, phase, lanes) = match &state.run {
                    None => (None, "idle".to_string(), Vec::new()),
                    Some(run) => {
                        let (phase, lanes) = match &run.phase {
                            StagePhase::Rollout { lanes } => {
                                let lanes = lanes
                                    .iter()
                                    .map(|(region, lane)| LaneStatus {
                                        region: region.clone(),
                                        step: stage.steps[lane.step].name.clone(),
                                        target: lane.target.clone(),
                                        phase: match &lane.phase {
                                            TargetPhase::Waiting => "waiting",
                                            TargetPhase::Deploying {
                                                stuck_reported: true, ..
                                            } => "stuck",
                                            TargetPhase::Deploying { .. } => "deploying",
                                            TargetPhase::Deployed { .. } => "deployed",
                                            TargetPhase::Baked { .. } => "baked",
                                            TargetPhase::Halted => "halted",
                                        },
                                        blockers: lane.blockers.clone(),
                                        bake_started: lane.bake_started,
                                        evidence_from: lane.evidence_from.clone(),
                                    })
                                    .collect();
                                ("rollout".to_string(), lanes)
                            }
                            StagePhase::Testing { .. } => ("testing".to_string(), Vec::new()),
                            StagePhase::AwaitingApproval => {
                                ("awaiting_approval".to_string(), Vec::new())
                            }
                            StagePhase::Failed { reason } => {
                                (format!("failed: {reason}"), Vec::new())
                            }
                        };
                        (Some(run.artifact), phase, lanes)
                    }
                };
                StageStatus { stage: stage.name.clone(), artifact, phase, lanes }
            })
            .collect();
        let rollbacks = pipeline
            .targets
            .iter()
            .filter_map(|(target, state)| {
                let rollback = state.rollback.as_ref()?;
                Some(RollbackStatus {
                    target: target.clone(),
                    to: rollback.to,
                    reason: rollback.reason.clone(),
                    started_at: rollback.started_at,
                    stuck: rollback.stuck.as_ref().map(|stuck| stuck.reason.clone()),
                })
            })
            .collect();
        Some(PipelineStatus {
            pipeline: name.to_string(),
            plan_version: pipeline.plan_version,
            pending_plan: pipeline.pending_plan,
            stages,
            rollbacks,
            held: !pipeline.holds.is_empty(),
        })
    }
}
