//! The transition function: [`Engine::step`] applies one input, then reconciles every affected
//! pipeline against its plan and returns the actions.
//!
//! Reconciling is level-triggered and idempotent: it looks at the current state and the time,
//! never at which input arrived, so a step may run again with nothing new and change nothing.
//! Per pipeline it runs, in order: override expiry, known-good adoption, rollback triggers, the
//! stages from last to first (so a stage that frees up pulls the newest artifact that passed the
//! one before), rollbacks, repairs, and re-sends of unacknowledged commands.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use gantry_model::pipeline::{CodeReview, DeploymentStrategy, Promotion, TimeWindows};
use gantry_model::{Plan, Stage, StepKind, Target};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

use crate::Error;
use crate::action::{Action, BoxCommand, Event};
use crate::artifact::{Artifact, ContentBlocklist, Digest};
use crate::blockers::{Blocker, BlockerKind, Hold, Override};
use crate::capacity;
use crate::fleet::{BoxId, CommandId, CommandKind, Fleet, PendingCommand};
use crate::input::{AlarmState, Input, OperatorCommand};
use crate::limits::*;
use crate::state::*;
use crate::windows::{CompiledWindows, Verdict};

/// A plan's stages, steps and targets, by name: what a plan update may not change.
type PlanShape = Vec<(String, Vec<(String, Vec<Target>)>)>;

fn seconds(n: i64) -> SignedDuration {
    SignedDuration::from_secs(n)
}

fn model_seconds(duration: gantry_model::Duration) -> SignedDuration {
    seconds(duration.as_seconds() as i64)
}

/// What a reconcile pass reads and writes besides one pipeline.
struct Context<'a> {
    now: Timestamp,
    epoch: u64,
    next_command: &'a mut u64,
    alarms: &'a BTreeMap<String, BTreeMap<String, AlarmReading>>,
    region_zones: &'a BTreeMap<String, String>,
    content: &'a ContentBlocklist,
    window_cache: &'a mut WindowCache,
    actions: &'a mut Vec<Action>,
    wake: Option<Timestamp>,
    bug: Option<crate::PlantedBug>,
    /// Whether any alarm reading is ALARM: most of the time none is, and then no rollback
    /// alarm needs looking up.
    any_firing: bool,
}

impl Context<'_> {
    fn command_id(&mut self) -> CommandId {
        *self.next_command += 1;
        CommandId(*self.next_command)
    }

    fn notify(&mut self, event: Event) {
        self.actions.push(Action::Notify(event));
    }

    fn wake_at(&mut self, at: Timestamp) {
        if at > self.now {
            self.wake = Some(self.wake.map_or(at, |earlier| earlier.min(at)));
        }
    }

    /// Whether the simulator planted `bug` (always false in a build without `planted-bugs`).
    fn planted(&self, bug: crate::PlantedBug) -> bool {
        self.bug == Some(bug)
    }

    /// The latest reading of `alarm` for `region`, falling back to an organisation-wide one.
    fn alarm(&self, alarm: &str, region: &str) -> Option<AlarmReading> {
        let readings = self.alarms.get(alarm)?;
        readings.get(region).or_else(|| readings.get("")).copied()
    }

    /// Whether `alarm` is in ALARM for `region` (or organisation-wide).
    fn firing(&self, alarm: &str, region: &str) -> bool {
        self.any_firing && self.alarm(alarm, region).is_some_and(|r| r.state == AlarmState::Alarm)
    }

    fn alarm_is_fresh(&self, reading: &AlarmReading) -> bool {
        self.now.duration_since(reading.observed_at) <= seconds(MAX_ALARM_AGE)
    }
}

impl Engine {
    /// A new engine for these plans; `region_zones` maps every production region to its IANA
    /// time zone (from the topology), in which deployment windows are evaluated.
    pub fn new(plans: Vec<Plan>, region_zones: BTreeMap<String, String>) -> Result<Engine, Error> {
        for (region, zone) in &region_zones {
            TimeZone::get(zone).map_err(|error| Error::UnknownTimeZone {
                region: region.clone(),
                zone: zone.clone(),
                reason: error.to_string(),
            })?;
        }
        let mut pipelines = BTreeMap::new();
        for plan in plans {
            validate_plan(&plan, &region_zones)?;
            let name = plan.pipeline.clone();
            let targets = plan
                .stages
                .iter()
                .flat_map(|stage| &stage.steps)
                .flat_map(|step| step.targets.iter().cloned())
                .map(|target| (target, TargetState::default()))
                .collect();
            let pipeline = Pipeline {
                stages: vec![StageState::default(); plan.stages.len()],
                plan: Arc::new(plan),
                wake: None,
                forgotten_below: 0,
                artifacts: BTreeMap::new(),
                targets,
                holds: Vec::new(),
                overrides: Vec::new(),
                urgent: None,
            };
            if pipelines.insert(name.clone(), pipeline).is_some() {
                return Err(Error::DuplicatePipeline { pipeline: name });
            }
        }
        Ok(Engine {
            epoch: 0,
            next_command: 0,
            region_zones,
            pipelines,
            alarms: BTreeMap::new(),
            content: ContentBlocklist::default(),
            recent_operator_commands: Default::default(),
            window_cache: BTreeMap::new(),
            wakes: BTreeSet::new(),
            firing: Some(0),
            planted_bug: None,
        })
    }

    /// The region → IANA time zone map [`Engine::new`] takes, read from the topology.
    pub fn region_zones(topology: &gantry_model::Topology) -> BTreeMap<String, String> {
        topology
            .regions
            .iter()
            .map(|region| (region.name.clone(), region.time_zone.clone()))
            .collect()
    }

    /// How many alarm readings are in ALARM: counted once, then kept as readings arrive.
    fn firing(&mut self) -> usize {
        let alarms = &self.alarms;
        *self.firing.get_or_insert_with(|| {
            alarms
                .values()
                .flat_map(|regions| regions.values())
                .filter(|r| r.state == AlarmState::Alarm)
                .count()
        })
    }

    #[cfg(feature = "planted-bugs")]
    pub fn plant_bug(&mut self, bug: crate::PlantedBug) {
        self.planted_bug = Some(bug);
    }

    /// Applies one input at `now` and returns what to do. Call it again with
    /// [`Input::Tick`] at the latest at the last [`Action::WakeAt`] it returned.
    pub fn step(&mut self, now: Timestamp, input: Input) -> Vec<Action> {
        self.step_many(now, [input])
    }

    /// Applies a round of inputs observed at `now`, then decides once: what a controller does
    /// with everything its agents and alarms reported since it last decided. The same as
    /// [`Engine::step`] for each input in turn, except that nothing is decided in between.
    pub fn step_many(
        &mut self,
        now: Timestamp,
        inputs: impl IntoIterator<Item = Input>,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        // The pipelines the inputs concern; `None` for all of them.
        let mut scope = Some(BTreeSet::new());
        for input in inputs {
            match (self.apply(now, input, &mut actions), &mut scope) {
                (Some(name), Some(names)) => {
                    names.insert(name);
                }
                (Some(_), None) => {}
                (None, _) => scope = None,
            }
        }
        let any_firing = self.firing() > 0;
        let Engine {
            epoch,
            next_command,
            region_zones,
            pipelines,
            alarms,
            content,
            window_cache,
            wakes,
            ..
        } = self;
        let mut context = Context {
            now,
            epoch: *epoch,
            next_command,
            alarms,
            region_zones,
            content,
            window_cache,
            actions: &mut actions,
            wake: None,
            bug: self.planted_bug,
            any_firing,
        };
        // Only the pipelines the inputs concern are decided; the others' wake-ups stand.
        let mut decide_and_index =
            |name: &String, pipeline: &mut Pipeline, context: &mut Context| {
                let wake = decide(pipeline, context);
                if pipeline.wake != wake {
                    if let Some(old) = pipeline.wake {
                        wakes.remove(&(old, name.clone()));
                    }
                    if let Some(new) = wake {
                        wakes.insert((new, name.clone()));
                    }
                    pipeline.wake = wake;
                }
            };
        match &scope {
            None => {
                for (name, pipeline) in pipelines.iter_mut() {
                    decide_and_index(name, pipeline, &mut context);
                }
            }
            Some(names) => {
                for name in names {
                    if let Some(pipeline) = pipelines.get_mut(name) {
                        decide_and_index(name, pipeline, &mut context);
                    }
                }
            }
        }
        // The earliest wake-up still ahead; one in the past belongs to a pipeline the caller
        // ticks anyway.
        if let Some((wake, _)) = wakes.iter().find(|(at, _)| *at > now) {
            actions.push(Action::WakeAt(*wake));
        }
        self.check_invariants(now, scope.as_ref());
        actions
    }

    /// Applies the input to the state; returns the one pipeline it concerns, or `None` for all.
    fn apply(&mut self, now: Timestamp, input: Input, actions: &mut Vec<Action>) -> Option<String> {
        let mut notify = |event| actions.push(Action::Notify(event));
        match input {
            Input::ControllerStarted { epoch } => {
                if epoch <= self.epoch {
                    notify(Event::CommandRejected {
                        id: format!("epoch-{epoch}"),
                        by: "controller".into(),
                        reason: format!("epoch {epoch} is not above the current {}", self.epoch),
                    });
                    return None;
                }
                self.epoch = epoch;
                let reissue = self.planted_bug == Some(crate::PlantedBug::ReissueOnRestart);
                for pipeline in self.pipelines.values_mut() {
                    for target in pipeline.targets.values_mut() {
                        for state in target.fleet.boxes.values_mut() {
                            if let Some(pending) = &mut state.pending {
                                pending.last_sent = None;
                                if reissue {
                                    self.next_command += 1;
                                    pending.id = CommandId(self.next_command);
                                }
                            }
                        }
                    }
                    for stage in &mut pipeline.stages {
                        if let Some(StageRun { phase: StagePhase::Testing { gates }, .. }) =
                            &mut stage.run
                        {
                            for gate in gates {
                                gate.last_sent = None;
                            }
                        }
                    }
                }
                None
            }
            Input::ArtifactReady { pipeline: name, artifact } => {
                let pipeline = self.pipelines.get_mut(&name)?;
                let sequence = artifact.sequence;
                match pipeline.artifacts.get_mut(&sequence) {
                    Some(known) if known.digest == artifact.digest => {
                        // The same artifact again, perhaps with reviews added since.
                        known.commits = artifact.commits;
                        return Some(name);
                    }
                    Some(known) => {
                        let reason =
                            format!("position {sequence} already belongs to {}", known.digest);
                        notify(Event::ArtifactRefused {
                            pipeline: name.clone(),
                            artifact: artifact.digest,
                            reason,
                        });
                        return Some(name);
                    }
                    None => {}
                }
                let refused = !artifact.signature_verified;
                if refused {
                    notify(Event::ArtifactRefused {
                        pipeline: name.clone(),
                        artifact: artifact.digest.clone(),
                        reason: "its signature or provenance was not verified".into(),
                    });
                } else {
                    notify(Event::ArtifactAccepted {
                        pipeline: name.clone(),
                        artifact: artifact.digest.clone(),
                    });
                }
                pipeline.artifacts.insert(
                    sequence,
                    Artifact {
                        sequence,
                        previous: artifact.previous,
                        digest: artifact.digest,
                        commits: artifact.commits,
                        packages: artifact.packages,
                        recalled: false,
                        refused,
                    },
                );
                forget_old_artifacts(pipeline);
                Some(name)
            }
            Input::TestGateResult { pipeline: name, command, passed, detail } => {
                let pipeline = self.pipelines.get_mut(&name)?;
                for (stage, state) in pipeline.plan.stages.iter().zip(&mut pipeline.stages) {
                    let Some(StageRun { phase: StagePhase::Testing { gates }, artifact, .. }) =
                        &mut state.run
                    else {
                        continue;
                    };
                    if let Some(gate) = gates
                        .iter_mut()
                        .find(|gate| gate.command == command && gate.passed.is_none())
                    {
                        gate.passed = Some(passed);
                        notify(Event::TestGateFinished {
                            pipeline: name.clone(),
                            stage: stage.name.clone(),
                            gate: gate.gate.clone(),
                            artifact: artifact.clone(),
                            passed,
                            detail: detail.clone(),
                        });
                    }
                }
                Some(name)
            }
            // A report stamped later than now comes from a clock that runs ahead: it counts as
            // made now, so it can neither stay fresh past its time nor shut out the reports
            // that follow it.
            Input::Fleet { pipeline: name, target, observed_at, boxes } => {
                let state = self.pipelines.get_mut(&name)?.targets.get_mut(&target)?;
                state.fleet.apply_snapshot(observed_at.min(now), boxes);
                Some(name)
            }
            Input::Alarm { alarm, region, state, observed_at } => {
                let observed_at = observed_at.min(now);
                let slot = self.alarms.entry(alarm).or_default().entry(region.unwrap_or_default());
                let reading = AlarmReading { state, observed_at };
                let replaced = match slot {
                    std::collections::btree_map::Entry::Vacant(vacant) => {
                        vacant.insert(reading);
                        Some(None)
                    }
                    std::collections::btree_map::Entry::Occupied(mut occupied) => {
                        (occupied.get().observed_at < observed_at)
                            .then(|| Some(occupied.insert(reading).state))
                    }
                };
                if let (Some(old), Some(count)) = (replaced, &mut self.firing) {
                    let was = old == Some(AlarmState::Alarm);
                    match (was, state == AlarmState::Alarm) {
                        (false, true) => *count += 1,
                        (true, false) => *count -= 1,
                        _ => {}
                    }
                }
                None
            }
            Input::DataPoints { pipeline: name, target, artifact, metric, count, observed_at } => {
                let observed_at = observed_at.min(now);
                let state = self.pipelines.get_mut(&name)?.targets.get_mut(&target)?;
                let readings = state.data_points.entry(metric).or_default();
                let newer = readings.get(&artifact).is_none_or(|old| old.observed_at < observed_at);
                if newer {
                    readings.insert(artifact, DataPointReading { count, observed_at });
                }
                while readings.len() > MAX_DATA_POINT_ARTIFACTS {
                    let oldest = readings
                        .iter()
                        .min_by_key(|(_, reading)| reading.observed_at)
                        .map(|(digest, _)| digest.clone())
                        .expect("not empty");
                    readings.remove(&oldest);
                }
                Some(name)
            }
            Input::ContentBlocklist(list) => {
                self.content = list;
                None
            }
            Input::Operator { id, by, command } => {
                if self.recent_operator_commands.contains(&id) {
                    return None;
                }
                self.recent_operator_commands.push_back(id.clone());
                if self.recent_operator_commands.len() > MAX_REMEMBERED_OPERATOR_COMMANDS {
                    self.recent_operator_commands.pop_front();
                }
                let name = command.pipeline().to_string();
                let Some(pipeline) = self.pipelines.get_mut(&name) else {
                    notify(Event::CommandRejected {
                        id,
                        by,
                        reason: format!("no pipeline {name:?}"),
                    });
                    return None;
                };
                let mut events = Vec::new();
                let silent = self.planted_bug == Some(crate::PlantedBug::UnauditedCommands);
                match operate(pipeline, now, &id, &by, command, &mut events) {
                    Ok(_) if silent => {}
                    Ok(summary) => notify(Event::CommandAccepted { id, by, summary }),
                    Err(reason) => notify(Event::CommandRejected { id, by, reason }),
                }
                for event in events {
                    notify(event);
                }
                Some(name)
            }
            Input::UpdatePlan { plan } => {
                let name = plan.pipeline.clone();
                let id = format!("plan-{name}");
                let Some(pipeline) = self.pipelines.get_mut(&name) else {
                    notify(Event::CommandRejected {
                        id,
                        by: "spec".into(),
                        reason: format!("no pipeline {name:?}"),
                    });
                    return None;
                };
                let shape = |plan: &Plan| -> PlanShape {
                    plan.stages
                        .iter()
                        .map(|stage| {
                            let steps = stage
                                .steps
                                .iter()
                                .map(|s| (s.name.clone(), s.targets.clone()))
                                .collect();
                            (stage.name.clone(), steps)
                        })
                        .collect()
                };
                if shape(&plan) != shape(&pipeline.plan) {
                    notify(Event::CommandRejected {
                        id,
                        by: "spec".into(),
                        reason: "stages, steps or targets changed; such a plan applies to new pipelines only".into(),
                    });
                } else if let Err(error) = validate_plan(&plan, &self.region_zones) {
                    notify(Event::CommandRejected {
                        id,
                        by: "spec".into(),
                        reason: error.to_string(),
                    });
                } else {
                    pipeline.plan = Arc::new(*plan);
                    self.window_cache.remove(&name);
                    notify(Event::CommandAccepted {
                        id,
                        by: "spec".into(),
                        summary: "plan updated".into(),
                    });
                }
                Some(name)
            }
            Input::Tick => None,
        }
    }

    /// Programmer-error checks after every step; they stay on in every build.
    fn check_invariants(&self, now: Timestamp, scope: Option<&BTreeSet<String>>) {
        let scoped: Box<dyn Iterator<Item = (&String, &Pipeline)>> = match scope {
            None => Box::new(self.pipelines.iter()),
            Some(names) => Box::new(names.iter().filter_map(|n| self.pipelines.get_key_value(n))),
        };
        for (name, pipeline) in scoped {
            for (stage, state) in pipeline.plan.stages.iter().zip(&pipeline.stages) {
                let Some(StageRun { phase: StagePhase::Rollout { lanes }, .. }) = &state.run else {
                    continue;
                };
                // One lane per region, each on a step that deploys to its region: so at most
                // one zone or cell of a region is ever deploying or baking.
                for (region, lane) in lanes {
                    assert!(
                        stage.target_in_region(lane.step, region) == Some(&lane.target),
                        "pipeline {name}: lane {region} is on {} outside its step {}",
                        lane.target,
                        lane.step
                    );
                }
            }
            for (target, state) in &pipeline.targets {
                assert!(
                    state.known_good.len() <= MAX_KNOWN_GOOD_PER_TARGET,
                    "{name} {target}: known-good history unbounded"
                );
                if let Some(rollback) = &state.rollback {
                    assert!(
                        rollback.started_at <= now,
                        "{name} {target}: rollback from the future"
                    );
                }
            }
            if let Some(urgent) = &pipeline.urgent {
                assert!(
                    pipeline.artifacts.values().any(|artifact| artifact.digest == urgent.artifact),
                    "{name}: urgent mode for an unknown artifact"
                );
            }
        }
    }
}

fn validate_plan(plan: &Plan, region_zones: &BTreeMap<String, String>) -> Result<(), Error> {
    for stage in &plan.stages {
        for step in &stage.steps {
            let mut seen: BTreeMap<&str, &Target> = BTreeMap::new();
            for target in &step.targets {
                if stage.kind.is_production() && !region_zones.contains_key(&target.region) {
                    return Err(Error::UnknownRegion {
                        pipeline: plan.pipeline.clone(),
                        region: target.region.clone(),
                    });
                }
                if let Some(first) = seen.insert(&target.region, target) {
                    return Err(Error::TwoTargetsInRegion {
                        pipeline: plan.pipeline.clone(),
                        step: step.name.clone(),
                        first: first.to_string(),
                        second: target.to_string(),
                    });
                }
            }
        }
    }
    Ok(())
}

fn forget_old_artifacts(pipeline: &mut Pipeline) {
    while pipeline.artifacts.len() > MAX_ARTIFACTS_PER_PIPELINE {
        let referenced: BTreeSet<&Digest> = pipeline
            .targets
            .values()
            .flat_map(|target| {
                target.known_good.iter().chain(target.rollback.as_ref().map(|r| &r.to))
            })
            .chain(
                pipeline
                    .stages
                    .iter()
                    .filter_map(|stage| stage.run.as_ref().map(|run| &run.artifact)),
            )
            .collect();
        let passed: BTreeSet<u64> =
            pipeline.stages.iter().filter_map(|stage| stage.passed).collect();
        let oldest = pipeline
            .artifacts
            .values()
            .find(|artifact| {
                !referenced.contains(&artifact.digest) && !passed.contains(&artifact.sequence)
            })
            .map(|artifact| artifact.sequence);
        match oldest {
            Some(sequence) => {
                pipeline.artifacts.remove(&sequence);
                pipeline.forgotten_below = pipeline.forgotten_below.max(sequence + 1);
            }
            None => break,
        }
    }
}

/// Applies an operator command; `Ok` carries a one-line summary for the audit log.
fn operate(
    pipeline: &mut Pipeline,
    now: Timestamp,
    id: &str,
    by: &str,
    command: OperatorCommand,
    events: &mut Vec<Event>,
) -> Result<String, String> {
    let stage_index = |plan: &Plan, stage: &str| {
        plan.stages
            .iter()
            .position(|s| s.name == stage)
            .ok_or_else(|| format!("no stage {stage:?}"))
    };
    match command {
        OperatorCommand::Approve { stage, artifact, .. } => {
            let index = stage_index(&pipeline.plan, &stage)?;
            let authors: BTreeSet<&str> = pipeline
                .artifacts
                .values()
                .find(|known| known.digest == artifact)
                .map(|known| known.authors().collect())
                .unwrap_or_default();
            if authors.contains(by) {
                return Err(format!("{by} wrote a commit in {artifact} and may not approve it"));
            }
            match &mut pipeline.stages[index].run {
                Some(run)
                    if run.artifact == artifact
                        && !matches!(run.phase, StagePhase::Failed { .. }) =>
                {
                    run.approved = true;
                    Ok(format!("approved {artifact} to leave {stage}"))
                }
                _ => Err(format!("{artifact} is not in stage {stage}")),
            }
        }
        OperatorCommand::Hold { stage, reason, .. } => {
            if let Some(stage) = &stage {
                stage_index(&pipeline.plan, stage)?;
            }
            if pipeline.holds.iter().any(|hold| hold.stage == stage) {
                return Err("already held".into());
            }
            let summary = format!("held {}: {reason}", stage.as_deref().unwrap_or("the pipeline"));
            pipeline.holds.push(Hold { stage, by: by.into(), reason, since: now });
            Ok(summary)
        }
        OperatorCommand::Release { stage, .. } => {
            let before = pipeline.holds.len();
            pipeline.holds.retain(|hold| hold.stage != stage);
            if pipeline.holds.len() == before {
                return Err("nothing to release".into());
            }
            Ok(format!("released {}", stage.as_deref().unwrap_or("the pipeline")))
        }
        OperatorCommand::Override { blocker, stage, region, reason, expires_at, .. } => {
            if !blocker.overridable() {
                return Err(format!("{blocker:?} blockers cannot be overridden"));
            }
            if reason.trim().is_empty() {
                return Err("an override needs a reason".into());
            }
            if expires_at <= now {
                return Err("the expiry is in the past".into());
            }
            if expires_at.duration_since(now) > seconds(MAX_OVERRIDE_SECONDS) {
                return Err(format!(
                    "an override lasts at most {} hours",
                    MAX_OVERRIDE_SECONDS / 3600
                ));
            }
            if let Some(stage) = &stage {
                stage_index(&pipeline.plan, stage)?;
            }
            let summary = format!(
                "override of {blocker:?} for {} / {} until {expires_at}: {reason}",
                stage.as_deref().unwrap_or("every stage"),
                region.as_deref().unwrap_or("every region")
            );
            pipeline.overrides.push(Override {
                id: id.into(),
                by: by.into(),
                kind: blocker,
                stage,
                region,
                reason,
                granted_at: now,
                expires_at,
                expiry_reported: false,
            });
            Ok(summary)
        }
        OperatorCommand::Retry { stage, .. } => {
            let index = stage_index(&pipeline.plan, &stage)?;
            let state = &mut pipeline.stages[index];
            let Some(run) = &mut state.run else {
                return Err(format!("nothing to retry in {stage}"));
            };
            if !matches!(run.phase, StagePhase::Failed { .. }) {
                return Err(format!("{stage} has not failed"));
            }
            if pipeline
                .artifacts
                .values()
                .any(|known| known.digest == run.artifact && !known.deployable())
            {
                return Err(format!(
                    "{} was rolled back everywhere; deploy a newer artifact",
                    run.artifact
                ));
            }
            run.phase = first_step(&pipeline.plan.stages[index]);
            run.approved = false;
            Ok(format!("retrying {} in {stage}", run.artifact))
        }
        OperatorCommand::RollBackEverywhere { artifact, reason, .. } => {
            roll_back_everywhere(pipeline, now, &artifact, &reason, events)
        }
        OperatorCommand::Urgent { artifact, approvers, .. } => {
            let known = pipeline
                .artifacts
                .values()
                .find(|known| known.digest == artifact && known.deployable())
                .ok_or_else(|| {
                    format!("{artifact} is not a deployable artifact of this pipeline")
                })?;
            if let Some(urgent) = &pipeline.urgent {
                return Err(format!("urgent mode is already on for {}", urgent.artifact));
            }
            let policy = &pipeline.plan.urgent;
            let authors: BTreeSet<&str> = known.authors().collect();
            let counted: BTreeSet<&str> = approvers
                .iter()
                .map(String::as_str)
                .filter(|person| policy.approvers.iter().any(|senior| senior == person))
                .filter(|person| !authors.contains(person) && *person != by)
                .collect();
            let required = policy.required_approvals.max(1) as usize;
            if counted.len() < required {
                return Err(format!(
                    "urgent mode needs {required} approvals from {:?}, other than the change's authors and the requester; got {}",
                    policy.approvers,
                    counted.len()
                ));
            }
            let approvers: Vec<String> = counted.into_iter().map(String::from).collect();
            events.push(Event::UrgentStarted {
                pipeline: pipeline.plan.pipeline.clone(),
                artifact: artifact.clone(),
                approvers: approvers.clone(),
            });
            pipeline.urgent = Some(Urgent { artifact: artifact.clone(), approvers, since: now });
            Ok(format!("urgent mode for {artifact}: bake cut to {}%", policy.minimum_bake_percent))
        }
        OperatorCommand::EndUrgent { .. } => {
            let urgent = pipeline.urgent.take().ok_or("urgent mode is off")?;
            events.push(Event::UrgentEnded {
                pipeline: pipeline.plan.pipeline.clone(),
                artifact: urgent.artifact.clone(),
            });
            Ok(format!("urgent mode for {} ended", urgent.artifact))
        }
    }
}

/// Recalls `artifact` and every later artifact of the pipeline, fails the stages running them,
/// and rolls every target that runs one of them back to its newest earlier known-good artifact.
fn roll_back_everywhere(
    pipeline: &mut Pipeline,
    now: Timestamp,
    artifact: &Digest,
    reason: &str,
    events: &mut Vec<Event>,
) -> Result<String, String> {
    let bad = pipeline
        .artifacts
        .values()
        .find(|known| &known.digest == artifact)
        .map(|known| known.sequence)
        .ok_or_else(|| format!("{artifact} is not an artifact of this pipeline"))?;
    let mut recalled = BTreeSet::new();
    for known in pipeline.artifacts.values_mut().filter(|known| known.sequence >= bad) {
        known.recalled = true;
        recalled.insert(known.digest.clone());
    }
    let name = pipeline.plan.pipeline.clone();
    let reason = format!("rolled back everywhere: {reason}");
    for (stage, state) in pipeline.plan.stages.iter().zip(&mut pipeline.stages) {
        if state.passed.is_some_and(|sequence| sequence >= bad) {
            state.passed = None;
        }
        if let Some(run) = &mut state.run
            && recalled.contains(&run.artifact)
            && !matches!(run.phase, StagePhase::Failed { .. })
        {
            halt_targets(&mut run.phase);
            run.phase = StagePhase::Failed { reason: reason.clone() };
            events.push(Event::StageFailed {
                pipeline: name.clone(),
                stage: stage.name.clone(),
                artifact: run.artifact.clone(),
                reason: reason.clone(),
            });
        }
    }
    let sequence_of = |digest: &Digest| {
        pipeline
            .artifacts
            .values()
            .find(|known| &known.digest == digest)
            .map(|known| known.sequence)
    };
    let mut moved = 0;
    let mut stranded = Vec::new();
    let plan_targets: Vec<Target> = pipeline.targets.keys().cloned().collect();
    for target in plan_targets {
        let state = pipeline.targets.get_mut(&target).expect("listed above");
        let runs_recalled = state.fleet.boxes.values().any(|box_state| {
            box_state.observation.running.as_ref().is_some_and(|running| recalled.contains(running))
                || box_state
                    .pending
                    .as_ref()
                    .is_some_and(|pending| recalled.contains(&pending.artifact))
        });
        state.known_good.retain(|digest| !recalled.contains(digest));
        if !runs_recalled {
            continue;
        }
        // The newest known-good artifact older than the bad one; digests the pipeline never
        // built (adopted at start) count as older than all of its artifacts.
        let to = state
            .known_good
            .iter()
            .rev()
            .find(|digest| sequence_of(digest).is_none_or(|sequence| sequence < bad))
            .cloned();
        match to {
            Some(to) => {
                events.push(Event::RollbackStarted {
                    pipeline: name.clone(),
                    target: target.clone(),
                    to: to.clone(),
                    reason: reason.clone(),
                });
                state.rollback = Some(Rollback { to, reason: reason.clone(), started_at: now });
                moved += 1;
            }
            None => stranded.push(target.to_string()),
        }
    }
    if let Some(urgent) = &pipeline.urgent
        && recalled.contains(&urgent.artifact)
    {
        events
            .push(Event::UrgentEnded { pipeline: name.clone(), artifact: urgent.artifact.clone() });
        pipeline.urgent = None;
    }
    let mut summary = format!(
        "recalled {} artifact(s) from {artifact} on; rolling back {moved} target(s)",
        recalled.len()
    );
    if !stranded.is_empty() {
        summary.push_str(&format!("; no earlier known-good artifact for {}", stranded.join(", ")));
    }
    Ok(summary)
}

/// A stage's rollout before it starts: every region at its first step.
fn first_step(stage: &Stage) -> StagePhase {
    let lanes = stage
        .regions()
        .into_iter()
        .filter_map(|region| {
            let step = stage.next_step_in_region(None, region)?;
            let target = stage.target_in_region(step, region)?.clone();
            Some((region.to_string(), Lane::at(step, target)))
        })
        .collect();
    StagePhase::Rollout { lanes }
}

fn halt_targets(phase: &mut StagePhase) {
    if let StagePhase::Rollout { lanes } = phase {
        for lane in lanes.values_mut() {
            if matches!(lane.phase, TargetPhase::Deploying { .. } | TargetPhase::Waiting) {
                lane.phase = TargetPhase::Halted;
            }
        }
    }
}

/// The strategy of the stage that deploys `target` (every target belongs to one stage).
fn strategy_for<'a>(plan: &'a Plan, target: &Target) -> &'a DeploymentStrategy {
    plan.stages
        .iter()
        .find(|stage| stage.steps.iter().any(|step| step.targets.contains(target)))
        .map(|stage| &stage.deployment)
        .expect("every target of a pipeline comes from one of its stages")
}

fn command_deadline(now: Timestamp, strategy: &DeploymentStrategy) -> Timestamp {
    now + model_seconds(strategy.hook_timeout) + model_seconds(strategy.health_check_timeout)
}

/// Records a command on a box and emits it.
#[allow(
    clippy::too_many_arguments,
    reason = "the command's fields, each borrowed from a different place"
)]
fn issue(
    context: &mut Context,
    pipeline: &str,
    target: &Target,
    fleet: &mut Fleet,
    box_id: &BoxId,
    artifact: &Digest,
    kind: CommandKind,
    strategy: &DeploymentStrategy,
) {
    let id = context.command_id();
    let now = context.now;
    let deadline = command_deadline(now, strategy);
    let state = fleet.boxes.get_mut(box_id).expect("issuing to a known box");
    state.pending = Some(PendingCommand {
        id,
        kind,
        artifact: artifact.clone(),
        issued_at: now,
        last_sent: Some(now),
        deadline,
    });
    state.last_command_at = Some(now);
    state.last_command_artifact = Some(artifact.clone());
    let command = BoxCommand {
        id,
        epoch: context.epoch,
        pipeline: pipeline.into(),
        target: target.clone(),
        box_id: box_id.clone(),
        artifact: artifact.clone(),
        kind,
    };
    context.actions.push(match kind {
        CommandKind::RollBack => Action::RollBack(command),
        CommandKind::Deploy | CommandKind::Repair => Action::Deploy(command),
    });
    context.wake_at(deadline);
    context.wake_at(now + seconds(RESEND_UNOBSERVED));
}

/// Clears commands that finished, failed or timed out. Returns whether commands remain
/// outstanding, and whether a box runs nothing (a repair candidate).
fn settle_pending(target: &mut TargetState, now: Timestamp) -> (bool, bool) {
    let mut outstanding = false;
    let mut empty = false;
    for (id, state) in &mut target.fleet.boxes {
        empty |= state.observation.running.is_none();
        let Some(pending) = &state.pending else { continue };
        let reported =
            state.observation.last_command.as_ref().filter(|outcome| outcome.command == pending.id);
        let failed = match reported {
            Some(outcome) => Some(!outcome.succeeded),
            None if state.healthy_on(&pending.artifact, now) => Some(false),
            None if now >= pending.deadline => Some(true),
            None => None,
        };
        if let Some(failed) = failed {
            if failed && matches!(pending.kind, CommandKind::Repair | CommandKind::RollBack) {
                target.backoff.insert(id.clone(), now + seconds(RETRY_BACKOFF));
            }
            state.pending = None;
        } else {
            outstanding = true;
        }
    }
    (outstanding, empty)
}

/// Decides for one pipeline: reconciles it, again while a pass enables what it already went
/// past (a stage passed, so the next one may take the artifact; a rollback or urgent mode ended,
/// so a deployment may start), as no input may come to ask. Returns when to wake it next.
fn decide(pipeline: &mut Pipeline, context: &mut Context) -> Option<Timestamp> {
    let others = context.wake.take();
    for _ in 0..MAX_PASSES {
        let before = context.actions.len();
        reconcile(pipeline, context);
        let again = context.actions[before..].iter().any(|action| {
            matches!(
                action,
                Action::Notify(
                    Event::StagePassed { .. }
                        | Event::RollbackFinished { .. }
                        | Event::UrgentEnded { .. }
                )
            )
        });
        if !again {
            break;
        }
    }
    std::mem::replace(&mut context.wake, others)
}

/// One reconcile pass over a pipeline.
fn reconcile(pipeline: &mut Pipeline, context: &mut Context) {
    let now = context.now;
    let mut outstanding = BTreeSet::new();
    let mut empty = BTreeSet::new();
    for (target, state) in &mut pipeline.targets {
        let (has_pending, has_empty) = settle_pending(state, now);
        if has_pending {
            outstanding.insert(target.clone());
        }
        if has_empty {
            empty.insert(target.clone());
        }
    }
    expire_overrides(pipeline, context);
    adopt_known_good(pipeline, context);
    trigger_rollbacks(pipeline, context);
    for index in (0..pipeline.stages.len()).rev() {
        advance_stage(pipeline, index, context);
        enter_stage(pipeline, index, context);
    }
    advance_rollbacks(pipeline, context);
    repair(pipeline, &empty, context);
    end_urgent_when_done(pipeline, context);
    resend(pipeline, &outstanding, context);
    next_wake(pipeline, context);
}

/// Wake-ups for repair back-offs and override expiries.
fn next_wake(pipeline: &Pipeline, context: &mut Context) {
    for target in pipeline.targets.values() {
        for until in target.backoff.values() {
            context.wake_at(*until);
        }
    }
    for over in &pipeline.overrides {
        context.wake_at(over.expires_at);
    }
}

fn expire_overrides(pipeline: &mut Pipeline, context: &mut Context) {
    for over in &mut pipeline.overrides {
        if context.now >= over.expires_at && !over.expiry_reported {
            over.expiry_reported = true;
            context.notify(Event::OverrideExpired {
                pipeline: pipeline.plan.pipeline.clone(),
                override_id: over.id.clone(),
            });
        }
    }
    while pipeline.overrides.len() > MAX_OVERRIDES_PER_PIPELINE {
        match pipeline.overrides.iter().position(|over| over.expiry_reported) {
            Some(index) => {
                pipeline.overrides.remove(index);
            }
            None => break,
        }
    }
}

fn adopt_known_good(pipeline: &mut Pipeline, context: &mut Context) {
    for (target, state) in &mut pipeline.targets {
        if !state.known_good.is_empty() || state.fleet.boxes.is_empty() {
            continue;
        }
        let healthy =
            state.fleet.boxes.values().all(|box_state| box_state.counts_as_healthy(context.now));
        if let (true, Some(artifact)) = (healthy, state.fleet.uniform_artifact()) {
            let artifact = artifact.clone();
            state.known_good.push(artifact.clone());
            context.notify(Event::KnownGoodAdopted {
                pipeline: pipeline.plan.pipeline.clone(),
                target: target.clone(),
                artifact,
            });
        }
    }
}

/// Alarms that roll a target back: the step's rollback alarms and, in production, the team's
/// aggregate alarms (so one firing rolls back all the team's deployments in that region).
pub fn rollback_alarms<'a>(
    plan: &'a Plan,
    stage: &'a Stage,
    step: &'a gantry_model::Step,
) -> impl Iterator<Item = &'a String> {
    let team: &[String] = if stage.kind.is_production() { &plan.alarm_blockers.team } else { &[] };
    step.rollback_alarms.iter().chain(team)
}

fn trigger_rollbacks(pipeline: &mut Pipeline, context: &mut Context) {
    for index in 0..pipeline.stages.len() {
        let stage = &pipeline.plan.stages[index];
        let Some(StageRun { phase: StagePhase::Rollout { lanes }, artifact, .. }) =
            &pipeline.stages[index].run
        else {
            continue;
        };
        let mut failing = Vec::new();
        for (region, lane) in lanes.iter().filter(|(_, lane)| lane.active()) {
            let step = &stage.steps[lane.step];
            let firing = rollback_alarms(&pipeline.plan, stage, step)
                .find(|alarm| context.firing(alarm, region));
            let Some(alarm) = firing else { continue };
            let reason = format!("rollback alarm {alarm} is in ALARM in {region}");
            // The region's earlier targets of this stage run the artifact too: they go back
            // with the one deploying now.
            let earlier = stage.steps[..lane.step]
                .iter()
                .filter_map(|step| step.targets.iter().find(|t| &t.region == region))
                .filter(|target| *target != &lane.target)
                .filter(|target| pipeline.targets[*target].fleet.runs(artifact));
            let mut targets: Vec<&Target> = earlier.collect();
            targets.dedup();
            targets.push(&lane.target);
            for target in targets {
                failing.push((target.clone(), reason.clone()));
            }
        }
        if !failing.is_empty() {
            fail_stage(pipeline, index, failing, context);
        }
    }
}

/// Marks a stage failed: rolls the failing targets back (when auto-rollback is on), halts the
/// rest of the step, and stops the artifact's promotion.
fn fail_stage(
    pipeline: &mut Pipeline,
    index: usize,
    failing: Vec<(Target, String)>,
    context: &mut Context,
) {
    let name = pipeline.plan.pipeline.clone();
    let stage = &pipeline.plan.stages[index];
    let auto_rollback = stage.deployment.auto_rollback;
    let run = pipeline.stages[index].run.as_mut().expect("failing a running stage");
    let mut reasons = Vec::new();
    for (target, reason) in failing {
        reasons.push(format!("{target}: {reason}"));
        if !auto_rollback {
            continue;
        }
        let state = pipeline.targets.get_mut(&target).expect("plan target");
        // A target that baked the artifact earlier in the stage no longer counts it as good.
        state.known_good.retain(|known| known != &run.artifact);
        match state.known_good.last() {
            Some(to) if state.rollback.as_ref().is_none_or(|r| &r.to != to) => {
                context.notify(Event::RollbackStarted {
                    pipeline: name.clone(),
                    target: target.clone(),
                    to: to.clone(),
                    reason: reason.clone(),
                });
                state.rollback = Some(Rollback { to: to.clone(), reason, started_at: context.now });
            }
            Some(_) => {}
            None => reasons.push(format!("{target}: no known-good artifact to roll back to")),
        }
    }
    halt_targets(&mut run.phase);
    let reason = reasons.join("; ");
    context.notify(Event::StageFailed {
        pipeline: name.clone(),
        stage: stage.name.clone(),
        artifact: run.artifact.clone(),
        reason: reason.clone(),
    });
    if pipeline.urgent.as_ref().is_some_and(|urgent| urgent.artifact == run.artifact) {
        let urgent = pipeline.urgent.take().expect("checked");
        context.notify(Event::UrgentEnded { pipeline: name, artifact: urgent.artifact });
    }
    run.phase = StagePhase::Failed { reason };
}

/// The artifacts deploying or baking in production stages now.
fn artifacts_in_production(pipeline: &Pipeline) -> BTreeSet<&Digest> {
    pipeline
        .plan
        .stages
        .iter()
        .zip(&pipeline.stages)
        .filter(|(stage, _)| stage.kind.is_production())
        .filter_map(|(_, state)| state.run.as_ref())
        .filter(|run| run.phase.started())
        .map(|run| &run.artifact)
        .collect()
}

/// Every blocker that applies to starting `target` in stage `index` with `artifact` now, before
/// overrides.
fn blockers_for(
    pipeline: &Pipeline,
    index: usize,
    step: &gantry_model::Step,
    sequence: u64,
    target: &Target,
    context: &mut Context,
) -> Vec<Blocker> {
    let artifact = &pipeline.artifacts[&sequence];
    let stage = &pipeline.plan.stages[index];
    let mut blockers = Vec::new();
    // A step does not start while one of its own rollback alarms fires: it would roll back at once.
    for alarm in rollback_alarms(&pipeline.plan, stage, step) {
        if context.firing(alarm, &target.region) {
            blockers.push(Blocker {
                kind: BlockerKind::RollbackAlarm,
                name: alarm.clone(),
                reason: format!("rollback alarm {alarm} is in ALARM in {}", target.region),
                clears_at: None,
            });
        }
    }
    for hold in &pipeline.holds {
        if hold.stage.as_ref().is_none_or(|held| held == &stage.name) {
            blockers.push(Blocker {
                kind: BlockerKind::ManualHold,
                name: hold.by.clone(),
                reason: format!("held by {} since {}: {}", hold.by, hold.since, hold.reason),
                clears_at: None,
            });
        }
    }
    if !stage.kind.is_production() {
        return blockers;
    }
    let plan = &pipeline.plan;
    for (kind, alarms) in [
        (BlockerKind::TeamAlarm, &plan.alarm_blockers.team),
        (BlockerKind::OrganisationAlarm, &plan.alarm_blockers.organisation),
    ] {
        for alarm in alarms {
            let reason = match context.alarm(alarm, &target.region) {
                Some(reading) if !context.alarm_is_fresh(&reading) => {
                    format!("{alarm} has not reported since {} (fail closed)", reading.observed_at)
                }
                Some(AlarmReading { state: AlarmState::Ok, .. }) => continue,
                Some(AlarmReading { state: AlarmState::Alarm, .. }) => {
                    format!("{alarm} is in ALARM in {}", target.region)
                }
                Some(AlarmReading { state: AlarmState::InsufficientData, .. }) => {
                    format!("{alarm} has insufficient data in {} (fail closed)", target.region)
                }
                None => format!("{alarm} has never reported in {} (fail closed)", target.region),
            };
            blockers.push(Blocker { kind, name: alarm.clone(), reason, clears_at: None });
        }
    }
    let zone =
        context.region_zones.get(&target.region).expect("validated: production regions have zones");
    let verdict = window_verdict(context, &plan.pipeline, &plan.time_windows, &target.region, zone);
    match verdict {
        Ok((verdict, reason)) => {
            if verdict.closed_by.is_some() {
                blockers.push(Blocker {
                    kind: BlockerKind::TimeWindow,
                    name: "time-window".into(),
                    reason,
                    clears_at: verdict.next_open,
                });
            }
        }
        Err(error) => blockers.push(Blocker {
            kind: BlockerKind::TimeWindow,
            name: "time-window".into(),
            reason: format!("windows cannot be evaluated, so they count as closed: {error}"),
            clears_at: None,
        }),
    }
    // Every artifact this one contains, by walking `previous` links; a missing link blocks.
    let mut contained = vec![artifact];
    let mut link = artifact.previous;
    while let Some(position) = link {
        match pipeline.artifacts.get(&position) {
            Some(earlier) if position < contained.last().expect("not empty").sequence => {
                contained.push(earlier);
                link = earlier.previous;
            }
            Some(_) => break,
            None if position < pipeline.forgotten_below => break,
            None => {
                blockers.push(Blocker {
                    kind: BlockerKind::Unreviewed,
                    name: format!("position {position}"),
                    reason: format!(
                        "the artifact at position {position}, built before this one, never arrived: \
                         its commits' reviews and content are unknown (fail closed)"
                    ),
                    clears_at: None,
                });
                break;
            }
        }
    }
    for known in contained {
        for commit in &known.commits {
            if context.content.commits.contains(&commit.id) {
                blockers.push(Blocker {
                    kind: BlockerKind::Content,
                    name: commit.id.clone(),
                    reason: format!(
                        "contains blocked commit {} (from {})",
                        commit.id, known.digest
                    ),
                    clears_at: None,
                });
            }
            if plan.code_review == CodeReview::Required && !commit.is_reviewed() {
                blockers.push(Blocker {
                    kind: BlockerKind::Unreviewed,
                    name: commit.id.clone(),
                    reason: format!(
                        "commit {} by {} has no approval from another person",
                        commit.id, commit.author
                    ),
                    clears_at: None,
                });
            }
        }
    }
    for package in &artifact.packages {
        if context.content.packages.contains(package) {
            blockers.push(Blocker {
                kind: BlockerKind::Content,
                name: package.to_string(),
                reason: format!("contains blocked package {package}"),
                clears_at: None,
            });
        }
    }
    let in_production = artifacts_in_production(pipeline);
    if !in_production.contains(&artifact.digest) {
        if let Some(urgent) = &pipeline.urgent
            && urgent.artifact != artifact.digest
        {
            blockers.push(Blocker {
                kind: BlockerKind::InFlightLimit,
                name: "urgent".into(),
                reason: format!("urgent mode: only {} may be in flight", urgent.artifact),
                clears_at: None,
            });
        }
        if let Some(limit) = plan.limits.max_artifacts_in_production
            && in_production.len() >= limit as usize
        {
            blockers.push(Blocker {
                kind: BlockerKind::InFlightLimit,
                name: "max_artifacts_in_production".into(),
                reason: format!(
                    "{} artifacts already in production (limit {limit})",
                    in_production.len()
                ),
                clears_at: None,
            });
        }
    }
    blockers
}

/// Whether `region`'s windows are open now, with the reason they are closed: from the cache
/// while its verdict holds, else worked out with the region's windows compiled once.
fn window_verdict(
    context: &mut Context,
    pipeline: &str,
    windows: &TimeWindows,
    region: &str,
    zone: &str,
) -> Result<(Verdict, String), String> {
    let now = context.now;
    let cached = context.window_cache.get(pipeline).and_then(|regions| regions.get(region));
    if let Some(WindowCacheEntry { verdict: Some((computed, verdict, reason)), .. }) = cached
        && *computed <= now
        && verdict.holds_until.is_some_and(|until| now < until)
    {
        return Ok((verdict.clone(), reason.clone()));
    }
    let regions = context.window_cache.entry(pipeline.to_string()).or_default();
    let regions_compiled = (!regions.contains_key(region))
        .then(|| regions.values().next().map(|other| other.compiled.clone()))
        .flatten();
    let entry = match regions.entry(region.to_string()) {
        std::collections::btree_map::Entry::Occupied(entry) => entry.into_mut(),
        std::collections::btree_map::Entry::Vacant(entry) => {
            let tz = TimeZone::get(zone).map_err(|error| error.to_string())?;
            // Another region's compiled windows, moved to this region's zone, when there is one.
            let compiled = match regions_compiled {
                Some(other) => other.in_zone(tz),
                None => CompiledWindows::new(windows, tz).map_err(|error| error.to_string())?,
            };
            entry.insert(WindowCacheEntry { compiled, verdict: None })
        }
    };
    let verdict = entry.compiled.verdict(now).map_err(|error| error.to_string())?;
    let reason =
        verdict.closed_by.as_ref().map(|closure| format!("{closure} ({zone})")).unwrap_or_default();
    entry.verdict = Some((now, verdict.clone(), reason.clone()));
    Ok((verdict, reason))
}

fn advance_stage(pipeline: &mut Pipeline, index: usize, context: &mut Context) {
    let Some(run) = &pipeline.stages[index].run else { return };
    match &run.phase {
        StagePhase::Rollout { .. } => advance_rollout(pipeline, index, context),
        StagePhase::Testing { .. } => advance_tests(pipeline, index, context),
        StagePhase::AwaitingApproval => {
            let automatic = pipeline.plan.stages[index].promotion == Promotion::Automatic;
            if automatic || run.approved {
                pass_stage(pipeline, index, context);
            }
        }
        StagePhase::Failed { .. } => {}
    }
}

fn advance_rollout(pipeline: &mut Pipeline, index: usize, context: &mut Context) {
    let Some(run) = &pipeline.stages[index].run else { return };
    let StagePhase::Rollout { lanes } = &run.phase else { return };
    if !pipeline.artifacts.contains_key(&run.sequence) {
        let run = pipeline.stages[index].run.as_mut().expect("checked");
        run.phase = StagePhase::Failed { reason: "artifact forgotten".into() };
        return;
    }
    let regions: Vec<String> = lanes.keys().cloned().collect();
    let mut failing = Vec::new();
    for region in &regions {
        // A lane that baked a step starts its next one in the same pass.
        while advance_lane(pipeline, index, region, &mut failing, context) {}
        if !failing.is_empty() {
            fail_stage(pipeline, index, failing, context);
            return;
        }
    }
    let Some(StageRun { phase: StagePhase::Rollout { lanes }, .. }) = &pipeline.stages[index].run
    else {
        return;
    };
    if lanes.values().all(|lane| matches!(lane.phase, TargetPhase::Baked { .. })) {
        start_tests(pipeline, index, context);
    }
}

/// The lane of `region` in stage `index`, which must be rolling out.
fn lane_mut<'a>(pipeline: &'a mut Pipeline, index: usize, region: &str) -> &'a mut Lane {
    match &mut pipeline.stages[index].run {
        Some(StageRun { phase: StagePhase::Rollout { lanes }, .. }) => {
            lanes.get_mut(region).expect("a lane of the stage")
        }
        _ => unreachable!("lanes exist only while a stage rolls out"),
    }
}

/// Moves one region's lane forward; `true` when it baked its step and moved on to the next.
fn advance_lane(
    pipeline: &mut Pipeline,
    index: usize,
    region: &str,
    failing: &mut Vec<(Target, String)>,
    context: &mut Context,
) -> bool {
    let now = context.now;
    let plan = Arc::clone(&pipeline.plan);
    let name = &plan.pipeline;
    let stage = &plan.stages[index];
    let run = pipeline.stages[index].run.as_ref().expect("advancing a running stage");
    let (sequence, digest) = (run.sequence, run.artifact.clone());
    let lane = lane_mut(pipeline, index, region);
    let step = &stage.steps[lane.step];
    // Borrowed from the plan: the lane holds the same target (checked after every step).
    let target = stage.target_in_region(lane.step, region).expect("the lane's step deploys here");
    // Taken out while it is worked on and put back on every way out; meanwhile the lane reads
    // as not started, which is what it is whenever blockers are read.
    let mut next = std::mem::replace(&mut lane.phase, TargetPhase::Waiting);
    let held =
        pipeline.holds.iter().any(|hold| hold.stage.as_ref().is_none_or(|s| s == &stage.name));
    match &next {
        TargetPhase::Waiting => {
            let state = &pipeline.targets[target];
            let fresh = state
                .fleet
                .observed_at
                .is_some_and(|at| now.duration_since(at) <= seconds(MAX_OBSERVATION_AGE));
            let mut blockers = blockers_for(pipeline, index, step, sequence, target, context);
            let mut lifted = Vec::new();
            blockers.retain(|blocker| {
                match pipeline
                    .overrides
                    .iter()
                    .find(|over| over.lifts(blocker.kind, &stage.name, target, now))
                {
                    Some(over) => {
                        lifted.push((blocker.clone(), over.id.clone()));
                        false
                    }
                    None => true,
                }
            });
            for blocker in &blockers {
                if let Some(at) = blocker.clears_at {
                    context.wake_at(at);
                }
            }
            let lane = lane_mut(pipeline, index, region);
            if lane.blockers != blockers {
                lane.blockers = blockers.clone();
                context.notify(Event::Blocked {
                    pipeline: name.clone(),
                    stage: stage.name.clone(),
                    target: target.clone(),
                    artifact: digest.clone(),
                    blockers: blockers.clone(),
                });
            }
            let state = &pipeline.targets[target];
            if !blockers.is_empty() || !fresh || state.rollback.is_some() {
                lane_mut(pipeline, index, region).phase = next;
                return false;
            }
            for (blocker, override_id) in lifted {
                context.notify(Event::BlockerOverridden {
                    pipeline: name.clone(),
                    target: target.clone(),
                    blocker,
                    override_id,
                });
            }
            context.notify(Event::DeploymentStarted {
                pipeline: name.clone(),
                stage: stage.name.clone(),
                step: step.name.clone(),
                target: target.clone(),
                artifact: digest.clone(),
            });
            let size = state.fleet.size();
            let floor = capacity::minimum_healthy(stage.deployment.minimum_healthy_hosts, size);
            let invalid = if size == 0 {
                Some("the target has no boxes".to_string())
            } else if step.kind == StepKind::OneBox
                && u64::from(size) * u64::from(stage.deployment.one_box_percent) < 100
            {
                Some(format!(
                    "one box of {size} would take {}% of traffic, more than one_box_percent {}%",
                    100 / size,
                    stage.deployment.one_box_percent
                ))
            } else if !capacity::floor_allows_progress(floor, size) {
                Some(format!(
                    "HEALTH_CONSTRAINTS_INVALID: a floor of {floor} healthy of {size} boxes leaves no box to deploy"
                ))
            } else {
                None
            };
            if let Some(reason) = invalid {
                context.notify(Event::DeploymentFailed {
                    pipeline: name.clone(),
                    stage: stage.name.clone(),
                    step: step.name.clone(),
                    target: target.clone(),
                    artifact: digest.clone(),
                    reason: reason.clone(),
                });
                failing.push((target.clone(), reason));
                lane_mut(pipeline, index, region).phase = next;
                return false;
            }
            next = TargetPhase::Deploying {
                started_at: now,
                attempted: BTreeSet::new(),
                failed: BTreeSet::new(),
                stuck_since: None,
            };
        }
        // Advanced below, together with a deployment that started just now.
        TargetPhase::Deploying { .. } => {}
        TargetPhase::Deployed { .. } => {
            // Every box that ran the artifact is gone (scaled in, replaced): the bake has
            // nothing to watch, so the step starts again (blockers apply) and bakes afresh.
            let fleet = &pipeline.targets[target].fleet;
            let fresh = fleet
                .observed_at
                .is_some_and(|at| now.duration_since(at) <= seconds(MAX_OBSERVATION_AGE));
            let gone =
                !fleet.boxes.values().any(|b| b.observation.running.as_ref() == Some(&digest));
            if fresh && gone {
                next = TargetPhase::Waiting;
                let lane = lane_mut(pipeline, index, region);
                lane.bake_started = None;
                lane.evidence_wait_reported = false;
            }
        }
        TargetPhase::Baked { .. } | TargetPhase::Halted => {
            lane_mut(pipeline, index, region).phase = next;
            return false;
        }
    }
    if matches!(next, TargetPhase::Deploying { .. }) {
        let outcome = advance_deployment(
            pipeline, stage, step.kind, target, &digest, &mut next, held, context,
        );
        if let Some(outcome) = outcome {
            finish_target(name, stage, step, target, &digest, outcome, &mut next, failing, context);
        }
    }
    let deployed = matches!(next, TargetPhase::Deployed { .. });
    lane_mut(pipeline, index, region).phase = next;
    failing.is_empty() && deployed && bake_lane(pipeline, index, region, &digest, context)
}

/// Reports a target's finished deployment.
#[allow(clippy::too_many_arguments, reason = "one call site each; a struct would only rename them")]
fn finish_target(
    pipeline: &str,
    stage: &Stage,
    step: &gantry_model::Step,
    target: &Target,
    artifact: &Digest,
    outcome: Result<(), String>,
    phase: &mut TargetPhase,
    failing: &mut Vec<(Target, String)>,
    context: &mut Context,
) {
    match outcome {
        Ok(()) => {
            *phase = TargetPhase::Deployed { at: context.now };
            context.notify(Event::DeploymentSucceeded {
                pipeline: pipeline.into(),
                stage: stage.name.clone(),
                step: step.name.clone(),
                target: target.clone(),
                artifact: artifact.clone(),
            });
        }
        Err(reason) => {
            context.notify(Event::DeploymentFailed {
                pipeline: pipeline.into(),
                stage: stage.name.clone(),
                step: step.name.clone(),
                target: target.clone(),
                artifact: artifact.clone(),
                reason: reason.clone(),
            });
            failing.push((target.clone(), reason));
        }
    }
}

/// Moves one target's deployment forward; `Some` when it finished (succeeded or failed).
#[allow(clippy::too_many_arguments, reason = "the pieces of one deployment, borrowed separately")]
fn advance_deployment(
    pipeline: &mut Pipeline,
    stage: &Stage,
    kind: StepKind,
    target: &Target,
    artifact: &Digest,
    phase: &mut TargetPhase,
    held: bool,
    context: &mut Context,
) -> Option<Result<(), String>> {
    let now = context.now;
    let TargetPhase::Deploying { attempted, failed, stuck_since, .. } = phase else { return None };
    let strategy = &stage.deployment;
    let name = pipeline.plan.pipeline.clone();
    let fleet = &mut pipeline.targets.get_mut(target).expect("plan target").fleet;
    let size = fleet.size();
    if size == 0 {
        return Some(Err("every box of the target is gone".into()));
    }
    let floor = capacity::minimum_healthy(strategy.minimum_healthy_hosts, size);
    let one_box = kind == StepKind::OneBox;
    let batch = if one_box { 1 } else { capacity::batch_limit(strategy.batch_size, size) };
    attempted.retain(|id| fleet.boxes.contains_key(id));
    let pending_here = |fleet: &Fleet, id: &BoxId| {
        fleet.boxes[id]
            .pending
            .as_ref()
            .is_some_and(|p| p.kind == CommandKind::Deploy && &p.artifact == artifact)
    };
    for id in attempted.iter() {
        if !pending_here(fleet, id) && !fleet.boxes[id].healthy_on(artifact, now) {
            failed.insert(id.clone());
        }
    }
    failed.retain(|id| fleet.boxes.contains_key(id));
    let in_flight = attempted.iter().filter(|id| pending_here(fleet, id)).count() as u32;
    let on_artifact =
        fleet.boxes.values().filter(|state| state.healthy_on(artifact, now)).count() as u32;
    if one_box {
        if on_artifact >= 1 {
            return Some(Ok(()));
        }
        if !attempted.is_empty() && in_flight == 0 {
            return Some(Err(format!(
                "the one box {} failed",
                attempted.iter().next().expect("non-empty")
            )));
        }
    }
    if !one_box
        && to_deploy(fleet, attempted, artifact, now, None).next().is_none()
        && in_flight == 0
    {
        return Some(if capacity::succeeded(on_artifact, floor) {
            Ok(())
        } else {
            Err(format!(
                "only {on_artifact} of {size} boxes run the artifact healthy; the floor needs {}",
                floor.max(1)
            ))
        });
    }
    if held || (one_box && !attempted.is_empty()) {
        *stuck_since = None;
        return None;
    }
    let mut in_flight = in_flight;
    let mut issued = 0;
    if !one_box {
        // Boxes already out of service cost no capacity: they go first.
        let room = batch.saturating_sub(in_flight) as usize;
        let unhealthy: Vec<BoxId> =
            to_deploy(fleet, attempted, artifact, now, Some(false)).take(room).cloned().collect();
        for id in unhealthy {
            issue(context, &name, target, fleet, &id, artifact, CommandKind::Deploy, strategy);
            attempted.insert(id);
            in_flight += 1;
            issued += 1;
        }
    }
    let mut take = capacity::healthy_boxes_to_take(fleet.healthy(now), floor, in_flight, batch);
    if context.planted(crate::PlantedBug::IgnoreCapacityFloor) {
        take = batch.saturating_sub(in_flight);
    }
    let healthy: Vec<BoxId> = to_deploy(fleet, attempted, artifact, now, Some(true))
        .take(take as usize)
        .cloned()
        .collect();
    for id in healthy {
        issue(context, &name, target, fleet, &id, artifact, CommandKind::Deploy, strategy);
        attempted.insert(id);
        in_flight += 1;
        issued += 1;
    }
    if issued == 0 && in_flight == 0 {
        let since = *stuck_since.get_or_insert(now);
        let limit = since + model_seconds(strategy.health_check_timeout);
        if now >= limit {
            return Some(Err(format!(
                "the capacity floor of {floor} healthy of {size} boxes left no box to take for {}",
                strategy.health_check_timeout
            )));
        }
        context.wake_at(limit);
    } else {
        *stuck_since = None;
    }
    None
}

/// Boxes of a deployment still to take to `artifact`; `healthy` picks those in service (taking
/// them costs capacity) or those out of it.
fn to_deploy<'a>(
    fleet: &'a Fleet,
    attempted: &'a BTreeSet<BoxId>,
    artifact: &'a Digest,
    now: Timestamp,
    healthy: Option<bool>,
) -> impl Iterator<Item = &'a BoxId> + 'a {
    fleet
        .boxes
        .iter()
        .filter(move |(id, state)| {
            !attempted.contains(*id)
                && !state.healthy_on(artifact, now)
                && state.pending.is_none()
                && healthy.is_none_or(|healthy| state.counts_as_healthy(now) == healthy)
        })
        .map(|(id, _)| id)
}

/// Bakes a lane whose step deployed; `true` when the bake completed and the lane moved on to
/// its region's next step.
fn bake_lane(
    pipeline: &mut Pipeline,
    index: usize,
    region: &str,
    digest: &Digest,
    context: &mut Context,
) -> bool {
    let now = context.now;
    let name = pipeline.plan.pipeline.clone();
    let plan = Arc::clone(&pipeline.plan);
    let stage = &plan.stages[index];
    let urgent = pipeline.urgent.as_ref().is_some_and(|urgent| urgent.artifact == *digest);
    let minimum_bake_percent = plan.urgent.minimum_bake_percent.min(100);
    let lane = lane_mut(pipeline, index, region);
    let step = &stage.steps[lane.step];
    let target = lane.target.clone();
    let bake = stage.bake_in_region(lane.step, region);
    let mut duration = model_seconds(bake.duration);
    if urgent {
        duration = seconds(duration.as_secs() * i64::from(minimum_bake_percent) / 100);
    }
    let started = *lane.bake_started.get_or_insert_with(|| {
        context.notify(Event::BakeStarted {
            pipeline: name.clone(),
            stage: stage.name.clone(),
            step: step.name.clone(),
            target: target.clone(),
            artifact: digest.clone(),
            until: now + duration,
        });
        now
    });
    let evidence_wait_reported = lane.evidence_wait_reported;
    if context.planted(crate::PlantedBug::NextZoneBeforeBake)
        && let Some(next) = stage.next_step_in_region(Some(lane.step), region)
        && stage.target_in_region(next, region) != Some(&target)
    {
        let next_target = stage.target_in_region(next, region).expect("found").clone();
        *lane = Lane::at(next, next_target);
        return true;
    }
    let skip = context.planted(crate::PlantedBug::SkipBake);
    if now < started + duration && !skip {
        context.wake_at(started + duration);
        return false;
    }
    let mut missing = Vec::new();
    let state = &pipeline.targets[&target];
    for (metric, needed) in &bake.data_points {
        let seen = state
            .data_points
            .get(metric)
            .and_then(|readings| readings.get(digest))
            .map_or(0, |reading| reading.count);
        if seen < *needed {
            missing.push(format!("{target}: {metric} has {seen} of {needed} data points"));
        }
    }
    for alarm in rollback_alarms(&plan, stage, step) {
        match context.alarm(alarm, region) {
            Some(reading)
                if reading.state == AlarmState::Ok
                    && context.alarm_is_fresh(&reading)
                    && reading.observed_at >= started => {}
            _ => missing
                .push(format!("{target}: no fresh OK reading of {alarm} since the bake began")),
        }
    }
    if !missing.is_empty() && !skip {
        context.wake_at(now + seconds(EVIDENCE_RECHECK));
        if !evidence_wait_reported {
            lane_mut(pipeline, index, region).evidence_wait_reported = true;
            context.notify(Event::BakeWaitingForEvidence {
                pipeline: name.clone(),
                stage: stage.name.clone(),
                step: step.name.clone(),
                target: target.clone(),
                artifact: digest.clone(),
                missing,
            });
        }
        return false;
    }
    context.notify(Event::StepBaked {
        pipeline: name.clone(),
        stage: stage.name.clone(),
        step: step.name.clone(),
        target: target.clone(),
        artifact: digest.clone(),
    });
    if step.kind != StepKind::OneBox {
        let known_good = &mut pipeline.targets.get_mut(&target).expect("plan target").known_good;
        known_good.retain(|known| known != digest);
        known_good.push(digest.clone());
        if known_good.len() > MAX_KNOWN_GOOD_PER_TARGET {
            known_good.remove(0);
        }
    }
    let lane = lane_mut(pipeline, index, region);
    let steps_baked = lane.steps_baked + 1;
    match stage.next_step_in_region(Some(lane.step), region) {
        Some(next) => {
            let target = stage.target_in_region(next, region).expect("found above").clone();
            *lane = Lane { steps_baked, ..Lane::at(next, target) };
            true
        }
        None => {
            lane.steps_baked = steps_baked;
            lane.phase = TargetPhase::Baked { at: now };
            false
        }
    }
}

fn start_tests(pipeline: &mut Pipeline, index: usize, context: &mut Context) {
    let stage = &pipeline.plan.stages[index];
    let run = pipeline.stages[index].run.as_mut().expect("testing a running stage");
    let mut gates = Vec::new();
    for gate in &stage.tests {
        gates.push(GateRun {
            gate: gate.name.clone(),
            command: context.command_id(),
            deadline: context.now + model_seconds(gate.gate.timeout),
            passed: None,
            last_sent: None,
        });
    }
    run.phase = StagePhase::Testing { gates };
    advance_tests(pipeline, index, context);
}

fn advance_tests(pipeline: &mut Pipeline, index: usize, context: &mut Context) {
    let now = context.now;
    let name = pipeline.plan.pipeline.clone();
    let stage = &pipeline.plan.stages[index];
    let run = pipeline.stages[index].run.as_mut().expect("testing a running stage");
    let StagePhase::Testing { gates } = &mut run.phase else { return };
    for gate in gates.iter_mut() {
        if gate.passed.is_none() && now >= gate.deadline {
            gate.passed = Some(false);
            context.notify(Event::TestGateFinished {
                pipeline: name.clone(),
                stage: stage.name.clone(),
                gate: gate.gate.clone(),
                artifact: run.artifact.clone(),
                passed: false,
                detail: "timed out (fail closed)".into(),
            });
        }
        if gate.passed.is_none()
            && gate.last_sent.is_none_or(|sent| now >= sent + seconds(RESEND_INTERVAL))
        {
            gate.last_sent = Some(now);
            context.actions.push(Action::RunTestGate {
                id: gate.command,
                epoch: context.epoch,
                pipeline: name.clone(),
                stage: stage.name.clone(),
                gate: gate.gate.clone(),
                artifact: run.artifact.clone(),
            });
        }
        if gate.passed.is_none() {
            context.wake_at(gate.deadline);
            context.wake_at(gate.last_sent.expect("set above") + seconds(RESEND_INTERVAL));
        }
    }
    if let Some(gate) = gates.iter().find(|gate| gate.passed == Some(false)) {
        let reason = format!("test gate {} failed", gate.gate);
        context.notify(Event::StageFailed {
            pipeline: name,
            stage: stage.name.clone(),
            artifact: run.artifact.clone(),
            reason: reason.clone(),
        });
        run.phase = StagePhase::Failed { reason };
        return;
    }
    if gates.iter().all(|gate| gate.passed == Some(true)) {
        if stage.promotion == Promotion::Manual && !run.approved {
            run.phase = StagePhase::AwaitingApproval;
            context.notify(Event::AwaitingApproval {
                pipeline: name,
                stage: stage.name.clone(),
                artifact: run.artifact.clone(),
            });
        } else {
            pass_stage(pipeline, index, context);
        }
    }
}

fn pass_stage(pipeline: &mut Pipeline, index: usize, context: &mut Context) {
    let name = pipeline.plan.pipeline.clone();
    let run = pipeline.stages[index].run.take().expect("passing a running stage");
    let stage_name = pipeline.plan.stages[index].name.clone();
    if let (Some(older), Some(next)) =
        (pipeline.stages[index].passed, pipeline.plan.stages.get(index + 1))
        && pipeline.stages[index + 1].last_entered.is_none_or(|entered| entered < older)
        && let Some(older) = pipeline.artifacts.get(&older)
    {
        context.notify(Event::Superseded {
            pipeline: name.clone(),
            stage: next.name.clone(),
            artifact: older.digest.clone(),
            by: run.artifact.clone(),
        });
    }
    pipeline.stages[index].passed = Some(run.sequence);
    context.notify(Event::StagePassed {
        pipeline: name,
        stage: stage_name,
        artifact: run.artifact,
    });
}

fn enter_stage(pipeline: &mut Pipeline, index: usize, context: &mut Context) {
    let name = pipeline.plan.pipeline.clone();
    let candidate = if index == 0 {
        pipeline
            .artifacts
            .values()
            .rev()
            .find(|known| known.deployable())
            .map(|known| known.sequence)
    } else {
        pipeline.stages[index - 1].passed
    };
    let Some(candidate) = candidate else { return };
    if pipeline.stages[index].last_entered.is_some_and(|entered| entered >= candidate) {
        return;
    }
    let Some(artifact) =
        pipeline.artifacts.get(&candidate).filter(|known| known.deployable()).cloned()
    else {
        return;
    };
    let stage = &pipeline.plan.stages[index];
    let state = &mut pipeline.stages[index];
    match &state.run {
        None => {}
        Some(run) if matches!(run.phase, StagePhase::Failed { .. }) => {}
        Some(run) if !run.phase.started() && run.sequence < candidate => {
            context.notify(Event::Superseded {
                pipeline: name.clone(),
                stage: stage.name.clone(),
                artifact: run.artifact.clone(),
                by: artifact.digest.clone(),
            });
        }
        Some(_) => return,
    }
    if index == 0 {
        let skipped = pipeline.artifacts.range(state.last_entered.map_or(0, |e| e + 1)..candidate);
        for (_, older) in skipped.filter(|(_, older)| older.deployable()) {
            context.notify(Event::Superseded {
                pipeline: name.clone(),
                stage: stage.name.clone(),
                artifact: older.digest.clone(),
                by: artifact.digest.clone(),
            });
        }
    }
    state.last_entered = Some(candidate);
    state.run = Some(StageRun {
        sequence: candidate,
        artifact: artifact.digest.clone(),
        entered_at: context.now,
        approved: false,
        phase: first_step(stage),
    });
    context.notify(Event::StageEntered {
        pipeline: name,
        stage: stage.name.clone(),
        artifact: artifact.digest,
    });
    advance_rollout(pipeline, index, context);
}

fn advance_rollbacks(pipeline: &mut Pipeline, context: &mut Context) {
    let now = context.now;
    let name = pipeline.plan.pipeline.clone();
    for (target, state) in &mut pipeline.targets {
        let Some(rollback) = &state.rollback else { continue };
        let to = rollback.to.clone();
        let strategy = strategy_for(&pipeline.plan, target);
        state.backoff.retain(|_, until| *until > now);
        let fleet = &mut state.fleet;
        let backoff = &state.backoff;
        let mut resting = false;
        let needing: Vec<BoxId> = fleet
            .boxes
            .iter()
            .filter(|(_, box_state)| {
                let done = box_state.pending.is_none() && box_state.healthy_on(&to, now);
                // Already on its way there (a rollback, or a repair of a box added mid-way):
                // commanding it again would install the same artifact twice.
                let heading = box_state.pending.as_ref().is_some_and(|p| p.artifact == to);
                !done && !heading
            })
            .filter(|(id, _)| match backoff.get(*id) {
                // Its last rollback failed: it rests, and the rollback is not finished.
                Some(until) if *until > now => {
                    resting = true;
                    false
                }
                _ => true,
            })
            .map(|(id, _)| id.clone())
            .collect();
        let in_flight = fleet
            .boxes
            .values()
            .filter(|b| b.pending.as_ref().is_some_and(|p| p.artifact == to))
            .count() as u32;
        if needing.is_empty() && in_flight == 0 && !resting {
            context.notify(Event::RollbackFinished {
                pipeline: name.clone(),
                target: target.clone(),
                to,
            });
            state.rollback = None;
            continue;
        }
        let size = fleet.size();
        let floor = capacity::minimum_healthy(strategy.minimum_healthy_hosts, size);
        let batch = capacity::batch_limit(strategy.rollback_batch_size, size);
        let mut in_flight = in_flight;
        let (unhealthy, healthy): (Vec<BoxId>, Vec<BoxId>) =
            needing.into_iter().partition(|id| !fleet.boxes[id].counts_as_healthy(now));
        for id in unhealthy {
            if in_flight >= batch {
                break;
            }
            issue(context, &name, target, fleet, &id, &to, CommandKind::RollBack, strategy);
            in_flight += 1;
        }
        let take = capacity::healthy_boxes_to_take(fleet.healthy(now), floor, in_flight, batch);
        for id in healthy.into_iter().take(take as usize) {
            issue(context, &name, target, fleet, &id, &to, CommandKind::RollBack, strategy);
        }
    }
}

/// Installs the target's current artifact on boxes that run nothing (added mid-wave). Repairs
/// never change what a target runs, so no blocker applies to them.
fn repair(pipeline: &mut Pipeline, empty: &BTreeSet<Target>, context: &mut Context) {
    if empty.is_empty() {
        return;
    }
    let now = context.now;
    let name = pipeline.plan.pipeline.clone();
    let deploying: BTreeSet<Target> = pipeline
        .stages
        .iter()
        .filter_map(|state| match &state.run {
            Some(StageRun { phase: StagePhase::Rollout { lanes }, .. }) => Some(lanes.values()),
            _ => None,
        })
        .flatten()
        .filter(|lane| matches!(lane.phase, TargetPhase::Deploying { .. }))
        .map(|lane| lane.target.clone())
        .collect();
    let recalled: BTreeSet<&Digest> = pipeline
        .artifacts
        .values()
        .filter(|known| known.recalled)
        .map(|known| &known.digest)
        .collect();
    for target in empty {
        let state = pipeline.targets.get_mut(target).expect("plan target");
        if state.rollback.is_some() || deploying.contains(target) {
            continue;
        }
        state.backoff.retain(|_, until| *until > now);
        let empty: Vec<BoxId> = state
            .fleet
            .boxes
            .iter()
            .filter(|(id, box_state)| {
                box_state.observation.running.is_none()
                    && box_state.pending.is_none()
                    && !state.backoff.contains_key(*id)
            })
            .map(|(id, _)| id.clone())
            .collect();
        if empty.is_empty() {
            continue;
        }
        let mut counts: BTreeMap<&Digest, u32> = BTreeMap::new();
        for box_state in state.fleet.boxes.values().filter(|b| b.counts_as_healthy(now)) {
            if let Some(running) = &box_state.observation.running {
                *counts.entry(running).or_default() += 1;
            }
        }
        let majority =
            counts.iter().max_by_key(|(_, count)| **count).map(|(digest, _)| (*digest).clone());
        let Some(desired) = majority.or_else(|| state.known_good.last().cloned()) else { continue };
        if recalled.contains(&desired) {
            continue;
        }
        let strategy = strategy_for(&pipeline.plan, target);
        let batch = capacity::batch_limit(strategy.batch_size, state.fleet.size());
        let room = batch.saturating_sub(state.fleet.in_flight(CommandKind::Repair));
        for id in empty.into_iter().take(room as usize) {
            issue(
                context,
                &name,
                target,
                &mut state.fleet,
                &id,
                &desired,
                CommandKind::Repair,
                strategy,
            );
        }
    }
}

/// Urgent mode ends when its artifact has passed the last stage, or when it is in flight
/// nowhere any more (superseded before it started, or waiting for no stage), so a change that
/// will never move cannot hold every other change back.
fn end_urgent_when_done(pipeline: &mut Pipeline, context: &mut Context) {
    let Some(urgent) = &pipeline.urgent else { return };
    let Some(sequence) = pipeline
        .artifacts
        .values()
        .find(|artifact| artifact.digest == urgent.artifact)
        .map(|a| a.sequence)
    else {
        return;
    };
    let last = pipeline.stages.len() - 1;
    let through = pipeline.stages[last].passed == Some(sequence);
    let running = pipeline.stages.iter().any(|state| {
        state.run.as_ref().is_some_and(|run| {
            run.sequence == sequence && !matches!(run.phase, StagePhase::Failed { .. })
        })
    });
    // Passed a stage and still the next stage's candidate, or not yet taken by the first stage.
    let waiting = pipeline.stages.iter().enumerate().any(|(index, state)| {
        index < last
            && state.passed == Some(sequence)
            && pipeline.stages[index + 1].last_entered.is_none_or(|entered| entered < sequence)
    }) || pipeline.stages[0].last_entered.is_none_or(|entered| entered < sequence);
    if through || !(running || waiting) {
        context.notify(Event::UrgentEnded {
            pipeline: pipeline.plan.pipeline.clone(),
            artifact: urgent.artifact.clone(),
        });
        pipeline.urgent = None;
    }
}

/// Re-sends the commands agents evidently lack (see [`RESEND_UNOBSERVED`]) on the targets that
/// had outstanding commands at the start of the pass, and asks to be woken for their deadlines.
/// (Commands issued in this pass registered their own wake-ups.)
fn resend(pipeline: &mut Pipeline, outstanding: &BTreeSet<Target>, context: &mut Context) {
    let now = context.now;
    let name = pipeline.plan.pipeline.clone();
    for target in outstanding {
        let state = pipeline.targets.get_mut(target).expect("plan target");
        for (id, box_state) in &mut state.fleet.boxes {
            let Some(pending) = &mut box_state.pending else { continue };
            context.wake_at(pending.deadline);
            // The agent has it: only the deadline matters now.
            if box_state.observation.in_progress == Some(pending.id) {
                continue;
            }
            // Re-sent when a report made after the send shows the agent lacks it (a finished
            // command was settled already), or when no report came for a while.
            if let Some(sent) = pending.last_sent
                && box_state.observed_at <= sent
                && now < sent + seconds(RESEND_UNOBSERVED)
            {
                context.wake_at(sent + seconds(RESEND_UNOBSERVED));
                continue;
            }
            context.wake_at(now + seconds(RESEND_UNOBSERVED));
            pending.last_sent = Some(now);
            let command = BoxCommand {
                id: pending.id,
                epoch: context.epoch,
                pipeline: name.clone(),
                target: target.clone(),
                box_id: id.clone(),
                artifact: pending.artifact.clone(),
                kind: pending.kind,
            };
            context.actions.push(match pending.kind {
                CommandKind::RollBack => Action::RollBack(command),
                CommandKind::Deploy | CommandKind::Repair => Action::Deploy(command),
            });
        }
    }
}
