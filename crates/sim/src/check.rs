//! The invariant checker: a reference model fed every input the engine received and every action
//! it returned, checked after every step (DESIGN.md "Invariants", reliability.md §6).
//!
//! The checker never reads the engine's state. It rebuilds what it needs from the messages: the
//! box observations and alarm readings actually delivered (so faults the engine could not see are
//! not blamed on it), the commands issued, the engine's own reports (deployment started, step
//! baked, stage passed or failed), and the simulator's truth about artifacts. Each violation
//! names its invariant as in reliability.md (I1, I2, ...).

use std::collections::{BTreeMap, BTreeSet};

use gantry_engine::action::{Action, BoxCommand, Event};
use gantry_engine::engine::rollback_alarms;
use gantry_engine::fleet::{BoxReport, CommandId, CommandKind, counts_as_healthy};
use gantry_engine::input::{AlarmState, Input, OperatorCommand};
use gantry_engine::limits::MAX_ALARM_AGE;
use gantry_engine::{BlockerKind, ContentBlocklist, Digest, capacity, windows};
use gantry_model::{Plan, Stage, Step, Target};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

use crate::coverage::Coverage;

/// What the simulator knows about an artifact that the engine may not.
#[derive(Clone, Debug)]
pub struct ArtifactTruth {
    pub pipeline: String,
    pub sequence: u64,
    pub bad: bool,
    pub signed: bool,
    /// Commit ids, and whether each is (now) reviewed by someone other than its author.
    pub commits: Vec<(String, bool)>,
    pub packages: Vec<gantry_engine::Package>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub at: Timestamp,
    pub invariant: &'static str,
    pub detail: String,
}

/// One box, shared by the pipelines of its service: its last report, and each pipeline's last
/// command to it.
#[derive(Default)]
struct BoxModel {
    observation: Option<(BoxReport, Timestamp)>,
    last_command: BTreeMap<String, (Timestamp, Digest)>,
}

impl BoxModel {
    /// Healthy capacity for every pipeline of the service at once: the engine's rule for each
    /// pipeline that ever commanded the box (and its health and freshness when none did).
    fn healthy(&self, now: Timestamp) -> bool {
        let Some((report, at)) = &self.observation else { return false };
        if self.last_command.is_empty() {
            return counts_as_healthy(&report.for_pipeline(""), *at, None, now);
        }
        self.last_command.iter().all(|(pipeline, (issued, artifact))| {
            counts_as_healthy(&report.for_pipeline(pipeline), *at, Some((*issued, artifact)), now)
        })
    }
}

#[derive(Default)]
struct TargetModel {
    observed_at: Option<Timestamp>,
    boxes: BTreeMap<String, BoxModel>,
}

/// A step index and a region: one region's part of a step.
type StepInRegion = (usize, String);

/// A deployment the engine reported started and has not finished baking or failed.
#[derive(Clone, Debug)]
struct InProgress {
    pipeline: String,
    stage: usize,
    step: usize,
    target: Target,
    artifact: Digest,
}

#[derive(Clone, Debug)]
struct OverrideModel {
    pipeline: String,
    kind: BlockerKind,
    stage: Option<String>,
    region: Option<String>,
    expires_at: Timestamp,
}

pub struct Checker {
    plans: BTreeMap<String, Plan>,
    region_zones: BTreeMap<String, String>,
    pub truth: BTreeMap<Digest, ArtifactTruth>,
    /// Artifacts every box started with, known good by construction.
    pub initial: BTreeSet<Digest>,
    /// Shared targets, by (service, target).
    targets: BTreeMap<(String, Target), TargetModel>,
    seen_commands: BTreeSet<CommandId>,
    alarms: BTreeMap<(String, String), (AlarmState, Timestamp)>,
    /// When an ALARM reading last became (or stayed) effective, per alarm and region key.
    last_alarm: BTreeMap<(String, String), Timestamp>,
    data_points: BTreeMap<(String, Target, String, Digest), (u64, Timestamp)>,
    content: ContentBlocklist,
    in_progress: Vec<InProgress>,
    /// (pipeline, stage index) -> artifact in the stage and the (step, region) pairs it has
    /// baked there.
    stage_runs: BTreeMap<(String, usize), (Digest, BTreeSet<StepInRegion>)>,
    passed: BTreeSet<(String, usize, Digest)>,
    /// Production stages an artifact started deploying in and has not yet passed or failed.
    in_production: BTreeSet<(String, usize, Digest)>,
    failed: BTreeSet<(String, usize, Digest)>,
    bake_started: BTreeMap<(String, usize, usize, Target, Digest), Timestamp>,
    holds: BTreeSet<(String, Option<String>)>,
    overrides: BTreeMap<String, OverrideModel>,
    recalled: BTreeSet<Digest>,
    accepted: BTreeSet<Digest>,
    urgent: BTreeMap<String, Digest>,
    pending_operator: BTreeMap<String, OperatorCommand>,
    /// Operator command ids delivered, and those with their one audit record (accepted or
    /// rejected); the id a step must answer, if its input was a new operator command.
    operator_ids: BTreeSet<String>,
    audited: BTreeSet<String>,
    awaiting_audit: Option<String>,
    /// The last command each box was given and when it lapses (its hook and health timeouts),
    /// until a report settles it: I11, no box is given a second command while one is
    /// outstanding, across controller restarts too.
    outstanding: BTreeMap<(String, Target, String), Outstanding>,
    pub violations: Vec<Violation>,
}

#[derive(Clone, Debug)]
struct Outstanding {
    command: CommandId,
    artifact: Digest,
    issued_at: Timestamp,
    lapses_at: Timestamp,
}

impl Checker {
    pub fn new(plans: &[Plan], region_zones: &BTreeMap<String, String>) -> Checker {
        Checker {
            plans: plans.iter().map(|plan| (plan.pipeline.clone(), plan.clone())).collect(),
            region_zones: region_zones.clone(),
            truth: BTreeMap::new(),
            initial: BTreeSet::new(),
            targets: BTreeMap::new(),
            seen_commands: BTreeSet::new(),
            alarms: BTreeMap::new(),
            last_alarm: BTreeMap::new(),
            data_points: BTreeMap::new(),
            content: ContentBlocklist::default(),
            in_progress: Vec::new(),
            stage_runs: BTreeMap::new(),
            passed: BTreeSet::new(),
            in_production: BTreeSet::new(),
            failed: BTreeSet::new(),
            bake_started: BTreeMap::new(),
            holds: BTreeSet::new(),
            overrides: BTreeMap::new(),
            recalled: BTreeSet::new(),
            accepted: BTreeSet::new(),
            urgent: BTreeMap::new(),
            pending_operator: BTreeMap::new(),
            operator_ids: BTreeSet::new(),
            audited: BTreeSet::new(),
            awaiting_audit: None,
            outstanding: BTreeMap::new(),
            violations: Vec::new(),
        }
    }

    /// The controller restarted: it knows no observation from before (they are never stored),
    /// so the model of what it was told starts afresh too. Commands and decisions stay.
    pub fn forget_observations(&mut self, coverage: &mut Coverage) {
        if self
            .targets
            .values()
            .flat_map(|model| model.boxes.values())
            .any(|b| !b.last_command.is_empty())
        {
            coverage.hit("restart with commanded boxes unknown until they report");
        }
        self.alarms.clear();
        self.last_alarm.clear();
        self.data_points.clear();
        for model in self.targets.values_mut() {
            model.observed_at = None;
            for box_model in model.boxes.values_mut() {
                box_model.observation = None;
            }
        }
    }

    fn violate(&mut self, at: Timestamp, invariant: &'static str, detail: String) {
        self.violations.push(Violation { at, invariant, detail });
    }

    fn plan(&self, pipeline: &str) -> &Plan {
        &self.plans[pipeline]
    }

    fn locate(&self, pipeline: &str, stage: &str, step: &str) -> Option<(usize, usize)> {
        let plan = self.plan(pipeline);
        let stage_index = plan.stages.iter().position(|s| s.name == stage)?;
        let step_index = plan.stages[stage_index].steps.iter().position(|s| s.name == step)?;
        Some((stage_index, step_index))
    }

    fn stage_of_target(&self, pipeline: &str, target: &Target) -> &Stage {
        self.plan(pipeline)
            .stages
            .iter()
            .find(|stage| stage.steps.iter().any(|step| step.targets.contains(target)))
            .expect("plan target")
    }

    /// The alarm reading the engine holds for `alarm` in `region`.
    fn alarm(&self, alarm: &str, region: &str) -> Option<((AlarmState, Timestamp), String)> {
        let exact = (alarm.to_string(), region.to_string());
        let global = (alarm.to_string(), String::new());
        self.alarms
            .get(&exact)
            .map(|reading| (*reading, region.to_string()))
            .or_else(|| self.alarms.get(&global).map(|reading| (*reading, String::new())))
    }

    /// Records an input the engine is about to receive.
    pub fn delivered(&mut self, now: Timestamp, input: &Input) {
        // Reports stamped in the future count as made now (the engine's documented rule).
        let clamped;
        let input = match input {
            Input::Fleet { observed_at, .. }
            | Input::Alarm { observed_at, .. }
            | Input::DataPoints { observed_at, .. }
                if *observed_at > now =>
            {
                let mut copy = input.clone();
                if let Input::Fleet { observed_at, .. }
                | Input::Alarm { observed_at, .. }
                | Input::DataPoints { observed_at, .. } = &mut copy
                {
                    *observed_at = now;
                }
                clamped = copy;
                &clamped
            }
            _ => input,
        };
        match input {
            Input::Fleet { service, target, observed_at, boxes } => {
                let model = self.targets.entry((service.clone(), target.clone())).or_default();
                if model.observed_at.is_some_and(|last| *observed_at <= last) {
                    return;
                }
                model.observed_at = Some(*observed_at);
                // A report settles a box's command: its outcome, the artifact running, or the
                // box gone from the target.
                let plans = &self.plans;
                self.outstanding.retain(|(p, t, id), outstanding| {
                    let of_service = plans.get(p).is_some_and(|plan| &plan.service == service);
                    if !of_service || t != target || *observed_at <= outstanding.issued_at {
                        return true;
                    }
                    boxes.iter().find(|b| &b.id.0 == id).is_some_and(|b| {
                        b.running.get(p) != Some(&outstanding.artifact)
                            && b.last_commands
                                .get(p)
                                .is_none_or(|c| c.command != outstanding.command)
                    })
                });
                let mut next = BTreeMap::new();
                for observation in boxes {
                    let mut box_model = model.boxes.remove(&observation.id.0).unwrap_or_default();
                    box_model.observation = Some((observation.clone(), *observed_at));
                    next.insert(observation.id.0.clone(), box_model);
                }
                model.boxes = next;
            }
            Input::Alarm { alarm, region, state, observed_at } => {
                let key = (alarm.clone(), region.clone().unwrap_or_default());
                let newer = self.alarms.get(&key).is_none_or(|(_, last)| last < observed_at);
                if newer {
                    self.alarms.insert(key.clone(), (*state, *observed_at));
                    if *state == AlarmState::Alarm {
                        self.last_alarm.insert(key, now);
                    }
                }
            }
            Input::DataPoints { pipeline, target, artifact, metric, count, observed_at } => {
                let key = (pipeline.clone(), target.clone(), metric.clone(), *artifact);
                let newer = self.data_points.get(&key).is_none_or(|(_, last)| last < observed_at);
                if newer {
                    self.data_points.insert(key, (*count, *observed_at));
                }
            }
            Input::ContentBlocklist(list) => self.content = list.clone(),
            Input::Operator { id, command, .. } => {
                self.pending_operator.insert(id.clone(), command.clone());
                self.operator_ids.insert(id.clone());
                // A re-delivered command was decided once already: no second record.
                if !self.audited.contains(id) {
                    self.awaiting_audit = Some(id.clone());
                }
            }
            Input::ControllerStarted { .. }
            | Input::ArtifactReady { .. }
            | Input::TestGateResult { .. }
            | Input::UpdatePlan { .. }
            | Input::AddPipeline { .. }
            | Input::RemovePipeline { .. }
            | Input::Topology { .. }
            | Input::Tick => {}
        }
    }

    /// Checks the actions of one step, in order, and updates the model.
    pub fn stepped(
        &mut self,
        now: Timestamp,
        epoch: u64,
        actions: &[Action],
        coverage: &mut Coverage,
    ) {
        // Alarms still in ALARM stay "seen" at every step.
        for (key, (state, _)) in &self.alarms {
            if *state == AlarmState::Alarm {
                self.last_alarm.insert(key.clone(), now);
            }
        }
        // I16: every operator decision, allow or deny, leaves exactly one audit record.
        for action in actions {
            if let Action::Notify(
                Event::CommandAccepted { id, .. } | Event::CommandRejected { id, .. },
            ) = action
                && self.operator_ids.contains(id)
                && !self.audited.insert(id.clone())
            {
                self.violate(
                    now,
                    "I16 audit completeness",
                    format!("operator command {id} has two audit records"),
                );
            }
        }
        if let Some(id) = self.awaiting_audit.take()
            && !self.audited.contains(&id)
        {
            self.violate(
                now,
                "I16 audit completeness",
                format!("operator command {id} was decided without an audit record"),
            );
        }
        let mut rollback_pipelines: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for action in actions {
            match action {
                Action::Deploy(command) | Action::RollBack(command) => {
                    if command.epoch != epoch {
                        self.violate(
                            now,
                            "I10 fencing",
                            format!(
                                "command {} carries epoch {} under epoch {epoch}",
                                command.id, command.epoch
                            ),
                        );
                    }
                    if self.seen_commands.insert(command.id) {
                        self.new_command(now, command, coverage);
                    }
                }
                Action::RunTestGate { epoch: gate_epoch, id, .. } => {
                    if *gate_epoch != epoch {
                        self.violate(
                            now,
                            "I10 fencing",
                            format!(
                                "test gate {id} carries epoch {gate_epoch} under epoch {epoch}"
                            ),
                        );
                    }
                }
                Action::Notify(event) => {
                    if let Event::RollbackStarted { pipeline, target, .. } = event {
                        rollback_pipelines
                            .entry(target.region.clone())
                            .or_default()
                            .insert(pipeline.clone());
                    }
                    self.event(now, event, coverage);
                }
                Action::Page { .. } => coverage.hit("stuck rollback or deployment paged"),
                Action::WakeAt(at) => {
                    if *at <= now {
                        self.violate(
                            now,
                            "I18 progress",
                            format!("asked to wake at {at}, not after now"),
                        );
                    }
                }
            }
        }
        if rollback_pipelines.values().any(|pipelines| pipelines.len() > 1) {
            coverage.hit("aggregate rollback across pipelines");
        }
        // I5: a target still in progress while one of its rollback alarms is in ALARM.
        let mut late = Vec::new();
        for progress in &self.in_progress {
            let plan = self.plan(&progress.pipeline);
            let stage = &plan.stages[progress.stage];
            let step = &stage.steps[progress.step];
            for alarm in rollback_alarms(plan, stage, step) {
                if let Some(((AlarmState::Alarm, _), _)) =
                    self.alarm(alarm, &progress.target.region)
                {
                    late.push(format!(
                        "{} {} still deploying {} while {alarm} is in ALARM",
                        progress.pipeline, progress.target, progress.artifact
                    ));
                }
            }
        }
        for detail in late {
            self.violate(now, "I5 rollback liveness", detail);
        }
    }

    fn new_command(&mut self, now: Timestamp, command: &BoxCommand, coverage: &mut Coverage) {
        // I22: unknown is not empty. A box not heard from since the controller started (its
        // reports are not stored) may run anything it was commanded before: it gets no new
        // command until it reports. (Re-sends of a command under its old id are not new.)
        let service = self.plan(&command.pipeline).service.clone();
        let unknown = self
            .targets
            .get(&(service, command.target.clone()))
            .and_then(|model| model.boxes.get(&command.box_id.0))
            .is_none_or(|model| model.observation.is_none());
        if unknown {
            self.violate(
                now,
                "I22 unknown is not empty",
                format!(
                    "{} {} {} given {:?} command {} before it reported since the controller started",
                    command.pipeline, command.target, command.box_id, command.kind, command.id
                ),
            );
        }
        // I11: a command still outstanding (not reported, not lapsed) is never issued again
        // under a new id; after a restart the controller must remember it and re-send the same
        // one. (A rollback may pre-empt a deployment in flight: that is a different artifact.)
        let key = (command.pipeline.clone(), command.target.clone(), command.box_id.0.clone());
        if let Some(earlier) = self.outstanding.get(&key)
            && now < earlier.lapses_at
            && earlier.artifact == command.artifact
        {
            self.violate(
                now,
                "I11 write-ahead intent",
                format!(
                    "{} {} {} given command {} while {} for the same artifact (sent {}) is outstanding",
                    command.pipeline,
                    command.target,
                    command.box_id,
                    command.id,
                    earlier.command,
                    earlier.issued_at
                ),
            );
        }
        let strategy = &self.stage_of_target(&command.pipeline, &command.target).deployment;
        let timeouts =
            strategy.hook_timeout.as_seconds() + strategy.health_check_timeout.as_seconds();
        self.outstanding.insert(
            key,
            Outstanding {
                command: command.id,
                artifact: command.artifact,
                issued_at: now,
                lapses_at: now + SignedDuration::from_secs(timeouts as i64),
            },
        );
        // I12: only artifacts verified at build time (or the fleet's initial ones) reach boxes.
        let signed = self.initial.contains(&command.artifact)
            || self.truth.get(&command.artifact).is_some_and(|truth| truth.signed);
        if !signed {
            self.violate(
                now,
                "I12 artifact integrity",
                format!("{} commanded to unsigned {}", command.box_id, command.artifact),
            );
        }
        if command.kind != CommandKind::RollBack && self.recalled.contains(&command.artifact) {
            self.violate(
                now,
                "I19 no resurrection",
                format!("{} commanded forward to recalled {}", command.box_id, command.artifact),
            );
        }
        if command.kind == CommandKind::Deploy {
            let active = self.in_progress.iter().any(|p| {
                p.pipeline == command.pipeline
                    && p.target == command.target
                    && p.artifact == command.artifact
            });
            if !active {
                self.violate(
                    now,
                    "I2 blast radius",
                    format!(
                        "{} {} commanded to {} outside a started deployment",
                        command.pipeline, command.target, command.artifact
                    ),
                );
            }
            let stage = self.stage_of_target(&command.pipeline, &command.target);
            if stage.kind.is_production() && self.unreviewed(&command.artifact) {
                self.violate(
                    now,
                    "I13 reviewed source only",
                    format!("{} runs unreviewed {}", command.target, command.artifact),
                );
            }
        }
        // I1: the capacity floor, against what the engine was told, counting every box any
        // pipeline of the service has taken out of service.
        let strategy = self.stage_of_target(&command.pipeline, &command.target).deployment.clone();
        let service = self.plan(&command.pipeline).service.clone();
        let sharing = self
            .plans
            .values()
            .filter(|plan| plan.service == service)
            .filter(|plan| {
                plan.stages
                    .iter()
                    .flat_map(|s| &s.steps)
                    .any(|s| s.targets.contains(&command.target))
            })
            .count();
        if sharing > 1 {
            coverage.hit("command to a box shared by pipelines");
        }
        let model = self.targets.entry((service, command.target.clone())).or_default();
        let healthy =
            |model: &TargetModel| model.boxes.values().filter(|b| b.healthy(now)).count() as u32;
        let before = healthy(model);
        model
            .boxes
            .entry(command.box_id.0.clone())
            .or_default()
            .last_command
            .insert(command.pipeline.clone(), (now, command.artifact));
        let after = healthy(model);
        let floor =
            capacity::minimum_healthy(strategy.minimum_healthy_hosts, model.boxes.len() as u32);
        if after < floor && after < before {
            self.violate(
                now,
                "I1 capacity floor",
                format!(
                    "{} {}: {:?} of {} left {after} healthy, floor {floor}",
                    command.pipeline, command.target, command.kind, command.box_id
                ),
            );
        }
        if after == floor && after < before {
            coverage.hit("capacity floor reached exactly");
        }
        if command.kind == CommandKind::Repair {
            coverage.hit("repair of a box added mid-wave");
        }
    }

    fn unreviewed(&self, artifact: &Digest) -> bool {
        let Some(truth) = self.truth.get(artifact) else { return false };
        self.truth.values().any(|other| {
            other.pipeline == truth.pipeline
                && other.sequence <= truth.sequence
                && other.commits.iter().any(|(_, reviewed)| !reviewed)
        })
    }

    fn event(&mut self, now: Timestamp, event: &Event, coverage: &mut Coverage) {
        match event {
            Event::RollbackStuck { .. } => coverage.hit("stuck rollback reported"),
            Event::DeploymentStuck { .. } => coverage.hit("stuck deployment reported"),
            Event::PlanVersionStarted { .. } => coverage.hit("plan version switched"),
            Event::CommandAccepted { id, .. } => {
                if let Some(command) = self.pending_operator.remove(id) {
                    self.accepted(now, id, command, coverage);
                }
            }
            Event::CommandRejected { id, reason, .. } => {
                if let Some(OperatorCommand::Urgent { .. }) = self.pending_operator.remove(id) {
                    coverage.hit("urgent mode rejected");
                }
                let _ = reason;
            }
            Event::StageEntered { pipeline, stage, artifact } => {
                let index = self
                    .plan(pipeline)
                    .stages
                    .iter()
                    .position(|s| &s.name == stage)
                    .expect("stage");
                if index > 0 && !self.passed.contains(&(pipeline.clone(), index - 1, *artifact)) {
                    self.violate(
                        now,
                        "I3 promotion requires baked evidence",
                        format!(
                            "{pipeline} {artifact} entered {stage} without passing the stage before"
                        ),
                    );
                }
                if self.recalled.contains(artifact) {
                    self.violate(
                        now,
                        "I19 no resurrection",
                        format!("recalled {artifact} entered {stage}"),
                    );
                }
                self.stage_runs.insert((pipeline.clone(), index), (*artifact, BTreeSet::new()));
                self.failed.remove(&(pipeline.clone(), index, *artifact));
            }
            Event::Superseded { .. } => coverage.hit("artifact superseded"),
            Event::Blocked { blockers, .. } => {
                if !blockers.is_empty() {
                    coverage.hit("blocker hit");
                }
                if blockers.iter().any(|b| b.kind == BlockerKind::TimeWindow) {
                    coverage.hit("time window closed");
                }
            }
            Event::BlockerOverridden { .. } => coverage.hit("override lifted a blocker"),
            Event::OverrideExpired { .. } => coverage.hit("override expired"),
            Event::DeploymentStarted { pipeline, stage, step, target, artifact } => {
                self.deployment_started(now, pipeline, stage, step, target, artifact);
            }
            Event::DeploymentFailed { .. } => coverage.hit("deployment failed"),
            Event::BakeStarted { pipeline, stage, step, target, artifact, .. } => {
                if let Some((stage, step)) = self.locate(pipeline, stage, step) {
                    let key = (pipeline.clone(), stage, step, target.clone(), *artifact);
                    self.bake_started.insert(key, now);
                }
            }
            Event::BakeWaitingForEvidence { .. } => coverage.hit("bake waited for evidence"),
            Event::StepBaked { pipeline, stage, step, target, artifact } => {
                self.step_baked(now, pipeline, stage, step, target, artifact);
            }
            Event::StagePassed { pipeline, stage, artifact } => {
                let index = self
                    .plan(pipeline)
                    .stages
                    .iter()
                    .position(|s| &s.name == stage)
                    .expect("stage");
                let baked = self.stage_runs.get(&(pipeline.clone(), index));
                let every: BTreeSet<(usize, String)> = self.plan(pipeline).stages[index]
                    .steps
                    .iter()
                    .enumerate()
                    .flat_map(|(i, step)| step.targets.iter().map(move |t| (i, t.region.clone())))
                    .collect();
                if baked.is_none_or(|(digest, baked)| digest != artifact || *baked != every) {
                    self.violate(
                        now,
                        "I3 promotion requires baked evidence",
                        format!("{pipeline} {artifact} passed {stage} without baking every step"),
                    );
                }
                self.passed.insert((pipeline.clone(), index, *artifact));
                self.in_production.remove(&(pipeline.clone(), index, *artifact));
            }
            Event::StageFailed { pipeline, stage, artifact, .. } => {
                let index = self
                    .plan(pipeline)
                    .stages
                    .iter()
                    .position(|s| &s.name == stage)
                    .expect("stage");
                self.failed.insert((pipeline.clone(), index, *artifact));
                self.in_production.remove(&(pipeline.clone(), index, *artifact));
                self.in_progress.retain(|p| {
                    !(p.pipeline == *pipeline && p.stage == index && p.artifact == *artifact)
                });
            }
            Event::RollbackFinished { .. } => coverage.hit("rollback executed"),
            Event::UrgentStarted { pipeline, artifact, .. } => {
                coverage.hit("urgent mode");
                self.urgent.insert(pipeline.clone(), *artifact);
            }
            Event::UrgentEnded { pipeline, .. } => {
                self.urgent.remove(pipeline);
            }
            Event::ArtifactAccepted { artifact, .. } => {
                self.accepted.insert(*artifact);
                if !self.truth.get(artifact).is_some_and(|truth| truth.signed) {
                    self.violate(
                        now,
                        "I12 artifact integrity",
                        format!("accepted unsigned {artifact}"),
                    );
                }
            }
            Event::ArtifactRefused { .. } => coverage.hit("unsigned artifact refused"),
            Event::RollbackStarted { .. }
            | Event::DeploymentSucceeded { .. }
            | Event::TestGateFinished { .. }
            | Event::AwaitingApproval { .. }
            | Event::KnownGoodAdopted { .. } => {}
        }
    }

    fn accepted(
        &mut self,
        now: Timestamp,
        id: &str,
        command: OperatorCommand,
        coverage: &mut Coverage,
    ) {
        match command {
            OperatorCommand::Hold { pipeline, stage, .. } => {
                self.holds.insert((pipeline, stage));
            }
            OperatorCommand::Release { pipeline, stage } => {
                self.holds.remove(&(pipeline, stage));
            }
            OperatorCommand::Override { pipeline, blocker, stage, region, expires_at, .. } => {
                let limit = gantry_engine::limits::MAX_OVERRIDE_SECONDS;
                if expires_at.duration_since(now) > SignedDuration::from_secs(limit) {
                    self.violate(
                        now,
                        "I15 bounded overrides",
                        format!("override {id} lasts past {} hours", limit / 3600),
                    );
                }
                if blocker == BlockerKind::Unreviewed {
                    self.violate(
                        now,
                        "I15 bounded overrides",
                        format!("override {id} lifts unreviewed commits"),
                    );
                }
                self.overrides.insert(
                    id.to_string(),
                    OverrideModel { pipeline, kind: blocker, stage, region, expires_at },
                );
            }
            OperatorCommand::Retry { pipeline, stage } => {
                let index = self
                    .plan(&pipeline)
                    .stages
                    .iter()
                    .position(|s| s.name == stage)
                    .expect("stage");
                self.failed.retain(|(p, s, _)| !(p == &pipeline && *s == index));
                if let Some((_, baked)) = self.stage_runs.get_mut(&(pipeline, index)) {
                    baked.clear();
                }
                coverage.hit("retry");
            }
            OperatorCommand::RollBackEverywhere { pipeline, artifact, .. } => {
                let sequence = self.truth.get(&artifact).map(|truth| truth.sequence).unwrap_or(0);
                // The engine recalls the artifacts it has accepted; later ones count as fixes.
                let recalled: Vec<Digest> = self
                    .truth
                    .iter()
                    .filter(|(digest, _)| self.accepted.contains(*digest))
                    .filter(|(_, truth)| truth.pipeline == pipeline && truth.sequence >= sequence)
                    .map(|(digest, _)| *digest)
                    .collect();
                self.recalled.extend(recalled);
                self.in_progress
                    .retain(|p| !(p.pipeline == pipeline && self.recalled.contains(&p.artifact)));
                coverage.hit("roll back everywhere");
            }
            OperatorCommand::RollBackTarget { .. } | OperatorCommand::RollBackStage { .. } => {
                coverage.hit("rollback by hand");
            }
            OperatorCommand::Approve { .. }
            | OperatorCommand::Urgent { .. }
            | OperatorCommand::EndUrgent { .. } => {}
        }
    }

    fn deployment_started(
        &mut self,
        now: Timestamp,
        pipeline: &str,
        stage: &str,
        step: &str,
        target: &Target,
        artifact: &Digest,
    ) {
        let Some((stage_index, step_index)) = self.locate(pipeline, stage, step) else {
            self.violate(
                now,
                "I2 blast radius",
                format!("{pipeline}: unknown stage {stage} step {step}"),
            );
            return;
        };
        let plan = self.plan(pipeline).clone();
        let stage_plan = &plan.stages[stage_index];
        // I2: one zone per region at a time, steps in order, stages in order.
        if stage_plan.kind.is_production() {
            let other = self.in_progress.iter().find(|p| {
                p.pipeline == pipeline
                    && p.target.region == target.region
                    && p.target.environment == target.environment
                    && &p.target != target
            });
            if let Some(other) = other {
                let detail = format!(
                    "{pipeline}: {target} started while {} is still deploying or baking {}",
                    other.target, other.artifact
                );
                self.violate(now, "I2 blast radius", detail);
            }
        }
        if stage_index > 0
            && !self.passed.contains(&(pipeline.to_string(), stage_index - 1, *artifact))
        {
            self.violate(
                now,
                "I2 blast radius",
                format!("{pipeline} {artifact} deploys {stage} before passing the stage before"),
            );
        }
        let baked = self
            .stage_runs
            .get(&(pipeline.to_string(), stage_index))
            .filter(|(digest, _)| digest == artifact);
        // Each region works through its own steps: the one before in this region has baked.
        let before = (0..step_index)
            .rev()
            .find(|&i| stage_plan.steps[i].targets.iter().any(|t| t.region == target.region));
        if let Some(before) = before
            && !baked.is_some_and(|(_, baked)| baked.contains(&(before, target.region.clone())))
        {
            self.violate(
                now,
                "I2 blast radius",
                format!("{pipeline} {artifact} starts {step} before the step before baked"),
            );
        }
        if self.failed.contains(&(pipeline.to_string(), stage_index, *artifact)) {
            self.violate(
                now,
                "I5 rollback liveness",
                format!("{pipeline} {artifact} deploys again in failed stage {stage}"),
            );
        }
        if stage_plan.kind.is_production() {
            self.check_blockers(now, &plan, stage_plan, target, artifact);
            self.in_production.insert((pipeline.to_string(), stage_index, *artifact));
        }
        self.in_progress.retain(|p| !(p.pipeline == pipeline && &p.target == target));
        self.in_progress.push(InProgress {
            pipeline: pipeline.to_string(),
            stage: stage_index,
            step: step_index,
            target: target.clone(),
            artifact: *artifact,
        });
    }

    /// I9: no blocker applies when a production deployment starts, unless an override lifts it.
    fn check_blockers(
        &mut self,
        now: Timestamp,
        plan: &Plan,
        stage: &Stage,
        target: &Target,
        artifact: &Digest,
    ) {
        let lifted = |checker: &Checker, kind: BlockerKind| {
            checker.overrides.values().any(|o| {
                o.pipeline == plan.pipeline
                    && o.kind == kind
                    && now < o.expires_at
                    && o.stage.as_ref().is_none_or(|s| s == &stage.name)
                    && o.region.as_ref().is_none_or(|r| r == &target.region)
            })
        };
        let mut found: Vec<(BlockerKind, String)> = Vec::new();
        if self.holds.contains(&(plan.pipeline.clone(), None))
            || self.holds.contains(&(plan.pipeline.clone(), Some(stage.name.clone())))
        {
            found.push((BlockerKind::ManualHold, "held".into()));
        }
        for (kind, alarms) in [
            (BlockerKind::TeamAlarm, &plan.alarm_blockers.team),
            (BlockerKind::OrganisationAlarm, &plan.alarm_blockers.organisation),
        ] {
            for alarm in alarms {
                let ok = self.alarm(alarm, &target.region).is_some_and(|((state, at), _)| {
                    state == AlarmState::Ok
                        && now.duration_since(at) <= SignedDuration::from_secs(MAX_ALARM_AGE)
                });
                if !ok {
                    found.push((kind, format!("{alarm} not OK and fresh")));
                }
            }
        }
        let zone = TimeZone::get(&self.region_zones[&target.region]).expect("valid zone");
        match windows::verdict(&plan.time_windows, &zone, now) {
            Ok(verdict) if verdict.closed_by.is_none() => {}
            Ok(verdict) => {
                found.push((BlockerKind::TimeWindow, format!("{:?}", verdict.closed_by)))
            }
            Err(error) => found.push((BlockerKind::TimeWindow, error.to_string())),
        }
        if let Some(truth) = self.truth.get(artifact) {
            let contained: Vec<&ArtifactTruth> = self
                .truth
                .values()
                .filter(|other| {
                    other.pipeline == truth.pipeline && other.sequence <= truth.sequence
                })
                .collect();
            if contained
                .iter()
                .any(|other| other.commits.iter().any(|(id, _)| self.content.commits.contains(id)))
                || truth.packages.iter().any(|package| self.content.packages.contains(package))
            {
                found.push((BlockerKind::Content, "blocked content".into()));
            }
        }
        if self.unreviewed(artifact) {
            found.push((BlockerKind::Unreviewed, "unreviewed commit".into()));
        }
        if let Some(urgent) = self.urgent.get(&plan.pipeline)
            && urgent != artifact
        {
            let artifact_in_production = self
                .in_production
                .iter()
                .any(|(pipeline, _, digest)| pipeline == &plan.pipeline && digest == artifact);
            if !artifact_in_production {
                found.push((BlockerKind::InFlightLimit, format!("urgent mode for {urgent}")));
            }
        }
        for (kind, detail) in found {
            if !lifted(self, kind) {
                self.violate(
                    now,
                    "I9 blockers hold",
                    format!(
                        "{} {target} started {artifact} despite {kind:?}: {detail}",
                        plan.pipeline
                    ),
                );
            }
        }
    }

    fn step_baked(
        &mut self,
        now: Timestamp,
        pipeline: &str,
        stage: &str,
        step: &str,
        target: &Target,
        artifact: &Digest,
    ) {
        let Some((stage_index, step_index)) = self.locate(pipeline, stage, step) else { return };
        let plan = self.plan(pipeline).clone();
        let stage_plan = &plan.stages[stage_index];
        let step_plan: &Step = &stage_plan.steps[step_index];
        if !step_plan.targets.contains(target) {
            self.violate(
                now,
                "I2 blast radius",
                format!("{pipeline} {step} baked {target}, which is not one of its targets"),
            );
            return;
        }
        let bake = stage_plan.bake_in_region(step_index, &target.region);
        let key = (pipeline.to_string(), stage_index, step_index, target.clone(), *artifact);
        let Some(started) = self.bake_started.get(&key).copied() else {
            self.violate(
                now,
                "I3 promotion requires baked evidence",
                format!("{pipeline} {step} baked {artifact} without a bake start"),
            );
            return;
        };
        let mut required = bake.duration.as_seconds() as i64;
        if self.urgent.get(pipeline) == Some(artifact) {
            required = required * i64::from(plan.urgent.minimum_bake_percent.min(100)) / 100;
        }
        if now.duration_since(started) < SignedDuration::from_secs(required) {
            self.violate(
                now,
                "I3 promotion requires baked evidence",
                format!(
                    "{pipeline} {step} baked {artifact} after {} of {required}s",
                    now.duration_since(started).as_secs()
                ),
            );
        }
        {
            for (metric, needed) in &bake.data_points {
                let seen = self
                    .data_points
                    .get(&(pipeline.to_string(), target.clone(), metric.clone(), *artifact))
                    .map_or(0, |(count, _)| *count);
                if seen < *needed {
                    self.violate(
                        now,
                        "I3 promotion requires baked evidence",
                        format!(
                            "{pipeline} {target} baked {artifact} with {seen} of {needed} {metric}"
                        ),
                    );
                }
            }
            for alarm in rollback_alarms(&plan, stage_plan, step_plan) {
                let reading = self.alarm(alarm, &target.region);
                let fresh_ok = reading.as_ref().is_some_and(|((state, at), _)| {
                    *state == AlarmState::Ok
                        && *at >= started
                        && now.duration_since(*at) <= SignedDuration::from_secs(MAX_ALARM_AGE)
                });
                if !fresh_ok {
                    self.violate(
                        now,
                        "I4 fail-closed signals",
                        format!("{pipeline} {target} baked {artifact} without a fresh OK {alarm}"),
                    );
                }
                // Strictly after the start: at the very instant a bake starts, the alarm may have
                // been in ALARM until the reading that let the deployment start.
                if let Some((_, key_region)) = reading
                    && self
                        .last_alarm
                        .get(&(alarm.clone(), key_region))
                        .is_some_and(|at| *at > started)
                {
                    self.violate(now, "I3 promotion requires baked evidence", format!("{pipeline} {target} baked {artifact} though {alarm} was in ALARM during the bake"));
                }
            }
        }
        self.stage_runs
            .entry((pipeline.to_string(), stage_index))
            .or_insert_with(|| (*artifact, BTreeSet::new()))
            .1
            .insert((step_index, target.region.clone()));
        self.in_progress.retain(|p| {
            !(p.pipeline == pipeline
                && p.stage == stage_index
                && p.step == step_index
                && &p.target == target
                && &p.artifact == artifact)
        });
    }
}
