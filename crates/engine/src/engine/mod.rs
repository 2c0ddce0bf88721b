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

mod blocking;
mod commands;
mod inputs;
mod lanes;
mod operator;
mod stages;

use blocking::*;
use commands::*;
use lanes::*;
use operator::*;
use stages::*;

/// What one step did: the actions to perform, and the records whose bytes changed (to commit
/// before any action is performed).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outcome {
    pub actions: Vec<Action>,
    pub changed: Vec<gantry_store::Change>,
}

/// What a round's inputs concern.
#[derive(Debug)]
pub(crate) struct Scope {
    /// The pipelines to decide; `None` for every one.
    pipelines: Option<BTreeSet<String>>,
    /// Whether the global record may have changed.
    global: bool,
}

impl Default for Scope {
    fn default() -> Self {
        Scope { pipelines: Some(BTreeSet::new()), global: false }
    }
}

impl Scope {
    fn add(&mut self, concerns: Concerns) {
        match concerns {
            Concerns::Pipelines(names) => {
                if let Some(scope) = &mut self.pipelines {
                    scope.extend(names);
                }
            }
            Concerns::Global { every_pipeline } => {
                self.global = true;
                if every_pipeline {
                    self.pipelines = None;
                }
            }
            Concerns::GlobalAnd(name) => {
                self.global = true;
                if let Some(scope) = &mut self.pipelines {
                    scope.insert(name);
                }
            }
            Concerns::Everyone => self.pipelines = None,
        }
    }
}

/// What one input concerns: which pipelines must be decided, whether the global record moved.
pub(crate) enum Concerns {
    Pipelines(Vec<String>),
    /// The global record changed; `every_pipeline` when every pipeline must be decided too.
    Global {
        every_pipeline: bool,
    },
    /// The global record changed, and one pipeline must be decided (an operator command: its
    /// id is remembered globally).
    GlobalAnd(String),
    /// Every pipeline must be decided (time passed for all of them).
    Everyone,
}

impl Concerns {
    fn one(name: String) -> Concerns {
        Concerns::Pipelines(vec![name])
    }

    fn nothing() -> Concerns {
        Concerns::Pipelines(Vec::new())
    }
}

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
    /// Deployments found stuck in this pass (reason, boxes waiting), reported with their step.
    stuck: Vec<(String, Vec<BoxId>)>,
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
    /// An engine with no pipelines, for these regions' time zones.
    pub(crate) fn empty(region_zones: BTreeMap<String, String>) -> Engine {
        Engine {
            epoch: 0,
            next_command: 0,
            region_zones,
            pipelines: BTreeMap::new(),
            plans: BTreeMap::new(),
            users: BTreeMap::new(),
            shared_targets: BTreeMap::new(),
            target_keys: Default::default(),
            target_record_keys: Default::default(),
            maybe_gone: BTreeSet::new(),
            alarm_readers: BTreeMap::new(),
            alarms: BTreeMap::new(),
            content: ContentBlocklist::default(),
            recent_operator_commands: Default::default(),
            window_cache: BTreeMap::new(),
            wakes: BTreeSet::new(),
            firing: Some(0),
            reported: Default::default(),
            track_records: true,
            planted_bug: None,
        }
    }

    /// A new engine for these plans; `region_zones` maps every production region to its IANA
    /// time zone (from the topology), in which deployment windows are evaluated. Pipelines of
    /// one service that name the same target deploy to the same boxes.
    pub fn new(plans: Vec<Plan>, region_zones: BTreeMap<String, String>) -> Result<Engine, Error> {
        check_zones(&region_zones)?;
        let mut engine = Engine::empty(region_zones);
        for plan in plans {
            validate_plan(&plan, &engine.region_zones)?;
            if engine.pipelines.contains_key(&plan.pipeline) {
                return Err(Error::DuplicatePipeline { pipeline: plan.pipeline });
            }
            engine.insert_pipeline(plan);
        }
        engine.index();
        Ok(engine)
    }

    /// Adds a pipeline running `plan` as its version 1 (indexes are rebuilt by the caller).
    pub(crate) fn insert_pipeline(&mut self, plan: Plan) {
        let name = plan.pipeline.clone();
        let targets = crate::records::plan_targets(&plan)
            .map(|target| (target, TargetState::default()))
            .collect();
        let plan = Arc::new(plan);
        self.plans.insert((name.clone(), 1), Arc::clone(&plan));
        let pipeline = Pipeline {
            stages: vec![StageState::default(); plan.stages.len()],
            plan,
            plan_version: 1,
            pending_plan: None,
            wake: None,
            forgotten_below: 0,
            artifacts: BTreeMap::new(),
            targets,
            holds: Vec::new(),
            overrides: Vec::new(),
            urgent: None,
        };
        self.pipelines.insert(name, pipeline);
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

    /// Applies one input at `now` and returns what to do and which records changed. Call it
    /// again with [`Input::Tick`] at the latest at the last [`Action::WakeAt`] it returned.
    pub fn step(&mut self, now: Timestamp, input: Input) -> Outcome {
        self.step_many(now, [input])
    }

    /// Applies a round of inputs observed at `now`, then decides once: what a controller does
    /// with everything its agents and alarms reported since it last decided. The same as
    /// [`Engine::step`] for each input in turn, except that nothing is decided in between.
    ///
    /// Returns the actions and exactly the records whose stored bytes changed; a step that
    /// concerns one pipeline changes only that pipeline's records (its own, its targets' and
    /// its plans').
    pub fn step_many(
        &mut self,
        now: Timestamp,
        inputs: impl IntoIterator<Item = Input>,
    ) -> Outcome {
        let mut actions = Vec::new();
        let mut scope = Scope::default();
        for input in inputs {
            let concerns = self.apply(now, input, &mut actions);
            scope.add(concerns);
        }
        let any_firing = self.firing() > 0;
        let names: Vec<String> = match &scope.pipelines {
            None => self.pipelines.keys().cloned().collect(),
            Some(names) => names.iter().cloned().collect(),
        };
        for name in &names {
            self.switch_plan_when_idle(name, &mut actions);
            self.refresh_shared(name, now);
            self.decide_pipeline(name, now, any_firing, &mut actions);
        }
        // The earliest wake-up still ahead; one in the past belongs to a pipeline the caller
        // ticks anyway.
        if let Some((wake, _)) = self.wakes.iter().find(|(at, _)| *at > now) {
            actions.push(Action::WakeAt(*wake));
        }
        self.check_invariants(now, &names);
        let mut candidates = std::mem::take(&mut self.maybe_gone);
        if self.track_records {
            if scope.global {
                candidates.insert(crate::records::global_key());
            }
            for name in &names {
                candidates.extend(self.keys_of(name));
            }
        }
        let mut changed = self.changes(candidates);
        if self.planted_bug == Some(crate::PlantedBug::UnreportedTargetWrite) {
            changed.retain(|change| change.key().kind != gantry_store::RecordKind::Target);
        }
        Outcome { actions, changed }
    }

    /// Decides for one pipeline and keeps the index of wake-ups.
    fn decide_pipeline(
        &mut self,
        name: &str,
        now: Timestamp,
        any_firing: bool,
        actions: &mut Vec<Action>,
    ) {
        let Engine {
            epoch,
            next_command,
            region_zones,
            pipelines,
            alarms,
            content,
            window_cache,
            wakes,
            planted_bug,
            ..
        } = self;
        let Some(pipeline) = pipelines.get_mut(name) else { return };
        let mut context = Context {
            now,
            epoch: *epoch,
            next_command,
            alarms,
            region_zones,
            content,
            window_cache,
            actions,
            wake: None,
            bug: *planted_bug,
            any_firing,
            stuck: Vec::new(),
        };
        let wake = decide(pipeline, &mut context);
        if pipeline.wake != wake {
            if let Some(old) = pipeline.wake {
                wakes.remove(&(old, name.to_string()));
            }
            if let Some(new) = wake {
                wakes.insert((new, name.to_string()));
            }
            pipeline.wake = wake;
        }
    }

    /// Marks the boxes of `name`'s shared targets that other pipelines have taken out of
    /// service, so its capacity floor counts them and it commands none of them, and those
    /// another pipeline's own view does not count as healthy capacity (its last command there
    /// unsettled), so its floor counts them too: a box is capacity for all pipelines or none.
    fn refresh_shared(&mut self, name: &str, now: Timestamp) {
        let Some(shared) = self.shared_targets.get(name) else { return };
        let Some(pipeline) = self.pipelines.get(name) else { return };
        let service = &pipeline.plan.service;
        type Marks = (BTreeSet<BoxId>, BTreeSet<BoxId>);
        let mut taken: Vec<(Target, Marks)> = Vec::new();
        for target in shared {
            let Some(users) = self.users.get(&(service.clone(), target.clone())) else { continue };
            let mut boxes = BTreeSet::new();
            let mut unsettled = BTreeSet::new();
            for other in users.iter().filter(|user| *user != name) {
                if let Some(state) = self.pipelines.get(other).and_then(|p| p.targets.get(target)) {
                    for (id, b) in &state.fleet.boxes {
                        if b.pending.is_some() {
                            boxes.insert(id.clone());
                        }
                        let settled = b.last_command_at.zip(b.last_command_artifact.as_ref());
                        if settled.is_some()
                            && !crate::fleet::counts_as_healthy(
                                &b.observation,
                                b.observed_at,
                                settled,
                                now,
                            )
                        {
                            unsettled.insert(id.clone());
                        }
                    }
                }
            }
            taken.push((target.clone(), (boxes, unsettled)));
        }
        let pipeline = self.pipelines.get_mut(name).expect("looked up above");
        for (target, (boxes, unsettled)) in taken {
            let state = pipeline.targets.get_mut(&target).expect("the pipeline's target");
            for (id, box_state) in &mut state.fleet.boxes {
                box_state.taken_elsewhere = boxes.contains(id);
                box_state.unsettled_elsewhere = unsettled.contains(id);
            }
        }
    }

    /// Programmer-error checks after every step; they stay on in every build.
    fn check_invariants(&self, now: Timestamp, names: &[String]) {
        for (name, pipeline) in names.iter().filter_map(|n| self.pipelines.get_key_value(n)) {
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

fn check_zones(region_zones: &BTreeMap<String, String>) -> Result<(), Error> {
    for (region, zone) in region_zones {
        TimeZone::get(zone).map_err(|error| Error::UnknownTimeZone {
            region: region.clone(),
            zone: zone.clone(),
            reason: error.to_string(),
        })?;
    }
    Ok(())
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

/// The strategy of the stage that deploys `target` (every target belongs to one stage).
fn strategy_for<'a>(plan: &'a Plan, target: &Target) -> &'a DeploymentStrategy {
    plan.stages
        .iter()
        .find(|stage| stage.steps.iter().any(|step| step.targets.contains(target)))
        .map(|stage| &stage.deployment)
        .expect("every target of a pipeline comes from one of its stages")
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

/// A target with no known-good artifact yet adopts the one every box reports running for this
/// pipeline: what was there before the pipeline changed anything, so what a rollback returns
/// to. Health does not matter (a box another pipeline of the service is moving reports
/// unhealthy while it still runs this pipeline's artifact, and a box broken before Gantry
/// came is still what to return to); a fresh report from every box does. An artifact a stage
/// of this pipeline works on now is never adopted: it becomes known good only by baking.
fn adopt_known_good(pipeline: &mut Pipeline, context: &mut Context) {
    let in_stages: BTreeSet<Digest> = pipeline
        .stages
        .iter()
        .filter_map(|state| state.run.as_ref())
        .map(|run| run.artifact)
        .collect();
    for (target, state) in &mut pipeline.targets {
        if !state.known_good.is_empty() || state.fleet.boxes.is_empty() {
            continue;
        }
        let fresh = state
            .fleet
            .observed_at
            .is_some_and(|at| context.now.duration_since(at) <= seconds(MAX_OBSERVATION_AGE));
        let uniform = state.fleet.uniform_artifact().filter(|digest| !in_stages.contains(*digest));
        if let (true, Some(artifact)) = (fresh, uniform) {
            let artifact = *artifact;
            state.known_good.push(artifact);
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
