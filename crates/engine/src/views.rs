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
use crate::state::{Engine, Lane, Pipeline, SharedTarget, StagePhase, TargetPhase};

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

/// A pipeline's status as people read it: one type each, in `gantry-model`, so the server
/// serves and the client reads the very shapes the engine builds.
pub use gantry_model::views::{
    Capacity, DataPoints, LaneStatus, PipelineStatus, RollbackStatus, StageStatus, UrgentStatus,
};

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
                                    .map(|(region, lane)| {
                                        lane_status(pipeline, stage, region, lane, &run.artifact)
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
                let passed = state
                    .passed
                    .and_then(|sequence| pipeline.artifacts.get(&sequence))
                    .map(|known| known.digest);
                StageStatus { stage: stage.name.clone(), artifact, phase, passed, lanes }
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
            urgent: pipeline.urgent.as_ref().map(|urgent| UrgentStatus {
                artifact: urgent.artifact,
                approvers: urgent.approvers.clone(),
                since: urgent.since,
            }),
            urgent_policy: pipeline.plan.urgent.clone(),
        })
    }
}

/// One lane as people read it: its phase and blockers, its bake against what it needs, and
/// its target's boxes against the floor with the deployment's batches. Health is counted as of
/// the target's latest snapshot.
fn lane_status(
    pipeline: &Pipeline,
    stage: &gantry_model::Stage,
    region: &str,
    lane: &Lane,
    artifact: &Digest,
) -> LaneStatus {
    let step = &stage.steps[lane.step];
    let state = &pipeline.targets[&lane.target];
    let bake = stage.bake_in_region(lane.step, region);
    let mut bake_seconds = bake.duration.as_seconds() as i64;
    if pipeline.urgent.as_ref().is_some_and(|urgent| &urgent.artifact == artifact) {
        bake_seconds =
            bake_seconds * i64::from(pipeline.plan.urgent.minimum_bake_percent.min(100)) / 100;
    }
    let data_points = bake
        .data_points
        .iter()
        .map(|(metric, required)| {
            let counted = lane.evidence_from.get(metric).map_or(0, |from| {
                state
                    .data_points
                    .get(metric)
                    .and_then(|readings| readings.get(artifact))
                    .map_or(0, |reading| reading.count.saturating_sub(*from))
            });
            (metric.clone(), DataPoints { counted, required: *required })
        })
        .collect();
    let fleet = &state.fleet;
    let size = fleet.size();
    let capacity = (size > 0).then(|| {
        let strategy = &stage.deployment;
        let now = fleet.observed_at.unwrap_or_default();
        let one_box = step.kind == gantry_model::StepKind::OneBox;
        let batch_size =
            if one_box { 1 } else { crate::capacity::batch_limit(strategy.batch_size, size) };
        let batches = if one_box { 1 } else { size.div_ceil(batch_size) };
        let batch = match &lane.phase {
            TargetPhase::Waiting => 0,
            TargetPhase::Deploying { attempted, .. } => {
                (attempted.len() as u32).div_ceil(batch_size).clamp(1, batches)
            }
            TargetPhase::Deployed { .. } | TargetPhase::Baked { .. } | TargetPhase::Halted => {
                batches
            }
        };
        Capacity {
            boxes: size,
            healthy: fleet.healthy(now),
            floor: crate::capacity::minimum_healthy(strategy.minimum_healthy_hosts, size),
            batch_size,
            batches,
            batch,
            on_artifact: fleet.boxes.values().filter(|b| b.healthy_on(artifact, now)).count()
                as u32,
        }
    });
    LaneStatus {
        region: region.to_string(),
        step: step.name.clone(),
        target: lane.target.clone(),
        phase: match &lane.phase {
            TargetPhase::Waiting => "waiting",
            TargetPhase::Deploying { stuck_reported: true, .. } => "stuck",
            TargetPhase::Deploying { .. } => "deploying",
            TargetPhase::Deployed { .. } => "deployed",
            TargetPhase::Baked { .. } => "baked",
            TargetPhase::Halted => "halted",
        }
        .to_string(),
        blockers: lane.blockers.clone(),
        bake_started: lane.bake_started,
        bake_until: lane
            .bake_started
            .map(|started| started + jiff::SignedDuration::from_secs(bake_seconds)),
        evidence_from: lane.evidence_from.clone(),
        data_points,
        capacity,
    }
}
