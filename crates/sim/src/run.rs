//! One seeded run: the engine against simulated agents, boxes, alarms, a test runner, people and
//! a lossy network, on a virtual clock.
//!
//! The run is a discrete-event loop over a `BTreeMap` queue keyed by (time, sequence), so events
//! at the same instant keep their scheduling order and the run is exactly reproducible. It has
//! two phases (TigerBeetle's VOPR): a *safety* phase with faults on, checking the invariants
//! after every engine step, then a *liveness* phase that heals every fault and requires every
//! deployment to reach a terminal state within a bounded time.

use std::collections::{BTreeMap, BTreeSet};

use gantry_driver::Driver;
use gantry_driver::timeline::Names;
use gantry_engine::action::{Action, BoxCommand, Event};
use gantry_engine::fleet::{BoxId, BoxReport, CommandId, CommandOutcome, Health};
use gantry_engine::input::{AlarmState, Input, OperatorCommand};
use gantry_engine::state::{StagePhase, TargetPhase};
use gantry_engine::{
    ArtifactReady, BlockerKind, Commit, ContentBlocklist, Digest, Engine, Package,
};
use gantry_model::Target;
use gantry_store::MemoryStore;
use jiff::{SignedDuration, Timestamp};

use crate::check::{ArtifactTruth, Checker, Violation};
use crate::coverage::Coverage;
use crate::generate::{self, World};
use crate::rng::Rng;

/// Seconds between observation rounds: agents report active targets every minute (the engine
/// treats observations older than two minutes as missing).
const OBSERVE_EVERY: i64 = 60;
/// Every this many rounds, idle targets and alarms report too.
const FULL_ROUND_EVERY: u64 = 20;
/// Seconds a bad artifact must serve before its region's alarm fires.
const DETECTION_DELAY: i64 = 180;
/// One controller round in this many crashes at one of the round driver's named points: a
/// run of a few thousand rounds crashes a handful of times at each.
const CRASH_EVERY: u64 = 400;

/// How long a run lasts and what it records.
#[derive(Clone, Debug)]
pub struct Options {
    /// Simulated time with faults on.
    pub safety: SignedDuration,
    /// Simulated time allowed, after healing, for every deployment to finish.
    pub converge: SignedDuration,
    /// Keep the full trace (for `gantry simulate --seed S`).
    pub keep_trace: bool,
    /// Applied to the engine after it is created and after every restart; tests use it to
    /// plant bugs.
    pub prepare: Option<fn(&mut Engine)>,
    /// Crashes the controller at the round driver's named points ([`CrashPoint`]), one in this
    /// many rounds at each (0: never); each restart loads the store.
    pub crash_every: u64,
}

/// Where in a round the simulated controller may crash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashPoint {
    /// The round was decided and not committed: it is lost, as if never run.
    BeforeCommit,
    /// Committed, nothing delivered: the restarted controller sends the outbox.
    AfterCommit,
    /// Half the round's commands delivered and marked so: the rest come from the outbox.
    MidDelivery,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            safety: SignedDuration::from_hours(6),
            converge: SignedDuration::from_hours(10 * 24),
            keep_trace: false,
            prepare: None,
            crash_every: CRASH_EVERY,
        }
    }
}

/// What one seed did.
#[derive(Clone, Debug)]
pub struct Report {
    pub seed: u64,
    /// FNV-1a of the whole trace; the same seed must give the same hash.
    pub trace_hash: u64,
    pub trace: Vec<String>,
    /// The engine's decisions with their reasons, one line each.
    pub timeline: Vec<String>,
    pub violations: Vec<Violation>,
    pub coverage: Coverage,
    pub engine_steps: u64,
    /// Engine steps by input kind.
    pub inputs: BTreeMap<&'static str, u64>,
    pub simulated: SignedDuration,
    /// Whether every deployment reached a terminal state in the liveness phase.
    pub converged: bool,
    pub world: World,
}

#[derive(Clone, Debug)]
enum SimEvent {
    ToController(Input),
    ToAgent(BoxCommand),
    ToTestRunner { pipeline: String, id: CommandId, artifact: Digest },
    InstallDone { service: String, target: Target, box_id: BoxId, command: CommandId },
    Observe,
    Wake,
    NewArtifact { pipeline: String },
    ControllerUp,
    Operator(OperatorCommand),
    Heal,
    Scripted(Scripted),
}

#[derive(Clone, Debug)]
struct Install {
    pipeline: String,
    command: CommandId,
    artifact: Digest,
    fails: bool,
    hung: bool,
}

/// One box: it runs one artifact per pipeline of its service, one command at a time.
#[derive(Clone, Debug)]
struct SimBox {
    running: BTreeMap<String, Digest>,
    healthy: bool,
    /// When each pipeline's artifact was installed.
    installed_at: BTreeMap<String, Timestamp>,
    installing: Option<Install>,
    last_outcome: BTreeMap<String, CommandOutcome>,
    max_epoch: u64,
    /// The highest command id applied, per pipeline (ids of different pipelines interleave).
    highest_command: BTreeMap<String, CommandId>,
    down_until: Option<Timestamp>,
    flap_until: Option<Timestamp>,
    /// Fails every install until the end of the run (a scenario's failed box).
    broken: bool,
}

impl SimBox {
    fn reported_health(&self, now: Timestamp) -> Health {
        let up = self.down_until.is_none_or(|until| now >= until);
        let steady = self.flap_until.is_none_or(|until| now >= until);
        if self.healthy && self.installing.is_none() && up && steady {
            Health::Healthy
        } else {
            Health::Unhealthy
        }
    }
}

#[derive(Clone, Debug, Default)]
struct SimTarget {
    boxes: BTreeMap<BoxId, SimBox>,
    next_box: u32,
    requests_per_minute: u64,
    /// How far the clocks of this target's agents run ahead (or, negative, behind).
    clock_skew: SignedDuration,
}

struct Sim {
    world: World,
    options: Options,
    rng: Rng,
    now: Timestamp,
    queue: BTreeMap<(Timestamp, u64), SimEvent>,
    sequence: u64,
    /// The controller, while it is up.
    driver: Option<Driver<MemoryStore>>,
    /// The store, while the controller is down: all that survives a crash.
    store: Option<MemoryStore>,
    names: Names,
    wake_at: Option<Timestamp>,
    /// Rounds the controller decided.
    controller_rounds: u64,
    targets: BTreeMap<(String, Target), SimTarget>,
    checker: Checker,
    coverage: Coverage,
    trace: Vec<String>,
    /// The engine's decisions, one line each (what `--scenario` prints).
    timeline: Vec<String>,
    hash: u64,
    engine_steps: u64,
    inputs: BTreeMap<&'static str, u64>,
    artifacts_made: BTreeMap<String, u64>,
    gates_seen: BTreeSet<CommandId>,
    failed: Vec<(String, String, Digest)>,
    recalled_requested: BTreeSet<Digest>,
    operator_commands: u64,
    organisation_event_until: Option<Timestamp>,
    /// Alarm states a scenario forces, overriding what the fleet's health implies.
    forced_alarms: BTreeMap<(String, Option<String>), AlarmState>,
    /// Every artifact announced, by (pipeline, position): the artifact store the controller
    /// re-reads, so a lost announcement heals.
    announced: BTreeMap<(String, u64), ArtifactReady>,
    rounds: u64,
    healing: bool,
    /// Only scripted events happen: no faults, no random artifacts or people.
    scripted: bool,
    converged: bool,
    data_since: BTreeMap<(String, Target, Digest), Timestamp>,
}

/// Runs one seed.
pub fn run(seed: u64, options: &Options) -> Report {
    play(generate::world(seed), options, None)
}

/// Plays a world. Without a script it is a seeded run: random artifacts, faults and people,
/// then healing and the liveness phase. With a script only the scripted events happen (and
/// what follows from them: bad artifacts alarm, the engine acts), until the script's end.
pub(crate) fn play(world: World, options: &Options, script: Option<Script>) -> Report {
    let seed = world.seed;
    let mut rng = Rng::new(seed ^ 0x5eed);
    let mut checker = Checker::new(&world.plans, &world.region_zones);
    let mut names = Names::default();
    let mut targets = BTreeMap::new();
    for (service, target, count) in &world.fleets {
        // Every pipeline of the service that deploys here starts on its artifact 0.
        let initial: BTreeMap<String, Digest> = world
            .plans
            .iter()
            .filter(|plan| &plan.service == service)
            .filter(|plan| {
                plan.stages.iter().flat_map(|s| &s.steps).any(|s| s.targets.contains(target))
            })
            .map(|plan| {
                let digest = names.artifact(&format!("{}-0", plan.pipeline));
                (plan.pipeline.clone(), digest)
            })
            .collect();
        checker.initial.extend(initial.values().copied());
        let mut sim_target = SimTarget {
            next_box: *count,
            requests_per_minute: *rng.pick(&[1, 5, 20, 100]),
            ..SimTarget::default()
        };
        if script.is_some() {
            sim_target.requests_per_minute = 100;
        } else if rng.range(0, 3) == 0 {
            // A quarter of the targets' agents have clocks off: up to half an hour ahead, or
            // a little behind (far behind, every report would be stale on arrival).
            let seconds = rng.range(0, 1830) as i64 - 30;
            sim_target.clock_skew = SignedDuration::from_secs(seconds);
        }
        for number in 0..*count {
            sim_target
                .boxes
                .insert(box_id(target, number), fresh_box(initial.clone(), world.start));
        }
        targets.insert((service.clone(), target.clone()), sim_target);
    }
    let scripted = script.is_some();
    let mut sim = Sim {
        now: world.start,
        options: options.clone(),
        rng,
        queue: BTreeMap::new(),
        sequence: 0,
        driver: None,
        store: Some(MemoryStore::new()),
        names,
        wake_at: None,
        controller_rounds: 0,
        targets,
        checker,
        coverage: Coverage::default(),
        trace: Vec::new(),
        timeline: Vec::new(),
        hash: 0xcbf2_9ce4_8422_2325,
        engine_steps: 0,
        inputs: BTreeMap::new(),
        artifacts_made: BTreeMap::new(),
        gates_seen: BTreeSet::new(),
        failed: Vec::new(),
        recalled_requested: BTreeSet::new(),
        operator_commands: 0,
        organisation_event_until: None,
        forced_alarms: BTreeMap::new(),
        announced: BTreeMap::new(),
        rounds: 0,
        healing: false,
        scripted,
        converged: false,
        data_since: BTreeMap::new(),
        world,
    };
    sim.record(format!(
        "seed {seed} world {}",
        serde_json::to_string(&sim.world).expect("serializable")
    ));
    sim.controller_up();
    sim.schedule(SignedDuration::ZERO, SimEvent::Observe);
    let deadline = match script {
        Some(script) => {
            for (at, event) in script.events {
                sim.schedule(at, SimEvent::Scripted(event));
            }
            sim.world.start + script.until
        }
        None => {
            sim.schedule(options.safety, SimEvent::Heal);
            for plan in sim.world.plans.clone() {
                let first = SignedDuration::from_mins(sim.rng.range(1, 60) as i64);
                sim.schedule(first, SimEvent::NewArtifact { pipeline: plan.pipeline });
            }
            sim.world.start + options.safety + options.converge
        }
    };
    while let Some(((at, _), event)) = sim.queue.pop_first() {
        if at > deadline || sim.converged || !sim.checker.violations.is_empty() {
            break;
        }
        sim.now = at;
        sim.handle(event);
    }
    if !scripted && !sim.converged && sim.checker.violations.is_empty() {
        let stuck = sim.describe_unfinished();
        sim.checker.violations.push(Violation {
            at: sim.now,
            invariant: "I18 bounded progress",
            detail: format!(
                "not every deployment finished within {} of healing: {stuck}",
                options.converge
            ),
        });
    }
    Report {
        seed,
        trace_hash: sim.hash,
        trace: sim.trace,
        timeline: sim.timeline,
        violations: sim.checker.violations,
        coverage: sim.coverage,
        engine_steps: sim.engine_steps,
        inputs: sim.inputs,
        simulated: sim.now.duration_since(sim.world.start),
        converged: sim.converged,
        world: sim.world,
    }
}

/// Events at offsets from the start, and when to stop.
pub(crate) struct Script {
    pub events: Vec<(SignedDuration, Scripted)>,
    pub until: SignedDuration,
}

/// What a scenario can make happen.
#[derive(Clone, Debug)]
pub(crate) enum Scripted {
    Artifact { pipeline: String, number: u64, bad: bool, unreviewed: bool },
    Alarm { alarm: String, region: Option<String>, state: Option<AlarmState> },
    BoxFails { pipeline: String, target: Target, count: u32 },
    Operator { by: String, command: OperatorCommand },
    Restart,
}

fn box_id(target: &Target, number: u32) -> BoxId {
    let scope = target.zone.as_deref().unwrap_or(&target.region);
    BoxId(format!("{}-{scope}-{number:02}", target.environment))
}

fn fresh_box(running: BTreeMap<String, Digest>, now: Timestamp) -> SimBox {
    let healthy = !running.is_empty();
    SimBox {
        installed_at: running.keys().map(|pipeline| (pipeline.clone(), now)).collect(),
        running,
        healthy,
        installing: None,
        last_outcome: BTreeMap::new(),
        max_epoch: 0,
        highest_command: BTreeMap::new(),
        down_until: None,
        flap_until: None,
        broken: false,
    }
}

impl Sim {
    fn schedule(&mut self, after: SignedDuration, event: SimEvent) {
        self.sequence += 1;
        self.queue.insert((self.now + after, self.sequence), event);
    }

    fn record(&mut self, line: String) {
        for byte in line.as_bytes().iter().chain(b"\n") {
            self.hash ^= u64::from(*byte);
            self.hash = self.hash.wrapping_mul(0x0100_0000_01b3);
        }
        if self.options.keep_trace {
            self.trace.push(line);
        }
    }

    /// Sends over the lossy network: maybe dropped, delayed, duplicated.
    fn send(&mut self, event: SimEvent) {
        let swarm = &self.world.swarm;
        let (drop, duplicate, delay_max) = if self.healing {
            (0, 0, 2)
        } else {
            (swarm.message_drop, swarm.message_duplicate, swarm.message_delay_max.max(1))
        };
        if self.rng.chance(drop) {
            self.record(format!("{} lost {}", self.now, short(&event)));
            return;
        }
        let copies = if self.rng.chance(duplicate) { 2 } else { 1 };
        for _ in 0..copies {
            let delay = SignedDuration::from_secs(1 + self.rng.below(delay_max) as i64);
            self.schedule(delay, event.clone());
        }
    }

    fn handle(&mut self, event: SimEvent) {
        match event {
            SimEvent::ToController(input) => self.deliver(input),
            SimEvent::ToAgent(command) => self.agent_receives(command),
            SimEvent::ToTestRunner { pipeline, id, artifact } => {
                if !self.gates_seen.insert(id) {
                    return;
                }
                let bad = self.checker.truth.get(&artifact).is_some_and(|truth| truth.bad);
                let flake = !self.healing && self.rng.chance(20_000);
                let caught = bad && self.rng.chance(500_000);
                let passed = !(flake || caught);
                let after = SignedDuration::from_mins(self.rng.range(2, 15) as i64);
                let detail = if passed { "passed" } else { "failed" }.to_string();
                self.sequence += 1;
                let result = SimEvent::ToController(Input::TestGateResult {
                    pipeline,
                    command: id,
                    passed,
                    detail,
                });
                self.queue.insert((self.now + after, self.sequence), result);
            }
            SimEvent::InstallDone { service, target, box_id, command } => {
                self.install_done(service, target, box_id, command)
            }
            SimEvent::Observe => self.observe(),
            SimEvent::Wake => {
                if self.wake_at.is_some_and(|at| at <= self.now) {
                    self.wake_at = None;
                    self.deliver(Input::Tick);
                }
            }
            SimEvent::NewArtifact { pipeline } => self.new_artifact(pipeline),
            SimEvent::ControllerUp => self.controller_up(),
            SimEvent::Operator(command) => {
                self.operator_commands += 1;
                let id = format!("op-{}", self.operator_commands);
                self.send(SimEvent::ToController(Input::Operator {
                    id,
                    by: "oncall-1".into(),
                    command,
                }));
            }
            SimEvent::Heal => self.heal(),
            SimEvent::Scripted(event) => self.scripted(event),
        }
    }

    /// The service a pipeline deploys.
    fn service(&self, pipeline: &str) -> String {
        self.world
            .plans
            .iter()
            .find(|plan| plan.pipeline == pipeline)
            .map(|plan| plan.service.clone())
            .unwrap_or_default()
    }

    /// Where this round's controller crashes, if it does.
    fn crash_point(&mut self) -> Option<CrashPoint> {
        if self.options.crash_every == 0 || self.healing || self.scripted {
            return None;
        }
        if self.rng.below(self.options.crash_every) != 0 {
            return None;
        }
        Some(*self.rng.pick(&[
            CrashPoint::BeforeCommit,
            CrashPoint::AfterCommit,
            CrashPoint::MidDelivery,
        ]))
    }

    /// One round of the controller with one input, through the round driver: decide, commit,
    /// check the invariants and the records, then perform — crashing at a named point when the
    /// seed says so.
    fn deliver(&mut self, input: Input) {
        let Some(mut driver) = self.driver.take() else {
            self.record(format!("{} controller down, lost {}", self.now, short_input(&input)));
            return;
        };
        let line = format!("{} {}", self.now, short_input(&input));
        *self.inputs.entry(input_kind(&input)).or_default() += 1;
        self.controller_rounds += 1;
        let crash = self.crash_point();
        let decided = driver.decide(self.now, vec![input.clone()]);
        if crash == Some(CrashPoint::BeforeCommit) {
            self.coverage.hit("crash before commit");
            self.driver = Some(driver);
            self.controller_crash();
            return;
        }
        let committed = driver.commit(decided).expect("the in-memory store commits");
        let epoch = driver.engine().epoch();
        self.driver = Some(driver);
        self.engine_steps += 1;
        self.checker.delivered(self.now, &input);
        self.record(line);
        for action in &committed.actions {
            self.record(format!("  {action:?}"));
        }
        self.checker.stepped(self.now, epoch, &committed.actions, &mut self.coverage);
        self.check_records(&committed);
        if crash == Some(CrashPoint::AfterCommit) {
            self.coverage.hit("crash after commit, before delivery");
            self.controller_crash();
            return;
        }
        let commands = committed.commands.len();
        let mut sent = Vec::new();
        for action in committed.actions {
            let command = match &action {
                Action::Deploy(command) | Action::RollBack(command) => Some(command.id.0),
                Action::RunTestGate { id, .. } => Some(id.0),
                _ => None,
            };
            if crash == Some(CrashPoint::MidDelivery)
                && command.is_some()
                && sent.len() * 2 >= commands
            {
                break;
            }
            self.perform(action);
            sent.extend(command);
        }
        if let Some(driver) = &mut self.driver {
            driver.delivered(&sent).expect("the in-memory store marks delivered");
        }
        if crash == Some(CrashPoint::MidDelivery) {
            self.coverage.hit("crash in the middle of delivery");
            self.controller_crash();
        }
    }

    /// Checked mode: a record written without being reported, or a one-pipeline round
    /// reporting another pipeline's records, is an engine bug.
    fn check_records(&mut self, committed: &gantry_driver::Committed) {
        for key in &committed.unreported {
            let detail = format!("record {key} changed but the step did not report it");
            self.checker.violations.push(Violation {
                at: self.now,
                invariant: "I20 every write reported",
                detail,
            });
        }
        for key in &committed.out_of_scope {
            let detail = format!("a one-pipeline round reported record {key}");
            self.checker.violations.push(Violation {
                at: self.now,
                invariant: "I21 a round writes only what it concerns",
                detail,
            });
        }
    }

    fn perform(&mut self, action: Action) {
        match action {
            Action::Deploy(command) | Action::RollBack(command) => {
                self.send(SimEvent::ToAgent(command))
            }
            Action::RunTestGate { id, pipeline, artifact, .. } => {
                self.send(SimEvent::ToTestRunner { pipeline, id, artifact });
            }
            Action::WakeAt(at) => {
                if self.wake_at.is_none_or(|scheduled| at < scheduled) {
                    self.wake_at = Some(at);
                    self.sequence += 1;
                    self.queue.insert((at, self.sequence), SimEvent::Wake);
                }
            }
            Action::Page { pipeline, target, reason } => {
                let when = gantry_driver::timeline::when(self.now);
                let line = self.names.rename(&format!("page: {pipeline} {target}: {reason}"));
                self.timeline.push(format!("{when} {line}"));
            }
            Action::Notify(event) => {
                if let Some(line) = gantry_driver::timeline::describe(&event, &self.names) {
                    self.timeline
                        .push(format!("{} {line}", gantry_driver::timeline::when(self.now)));
                }
                if !self.scripted {
                    self.react(event);
                }
            }
        }
    }

    /// People react to what the engine reports.
    fn react(&mut self, event: Event) {
        match event {
            Event::AwaitingApproval { pipeline, stage, artifact } => {
                let after = SignedDuration::from_mins(self.rng.range(5, 60) as i64);
                self.schedule(
                    after,
                    SimEvent::Operator(OperatorCommand::Approve { pipeline, stage, artifact }),
                );
            }
            Event::StageFailed { pipeline, stage, artifact, .. } => {
                let bad = self.checker.truth.get(&artifact).is_some_and(|truth| truth.bad);
                if bad
                    && (self.healing || self.rng.chance(300_000))
                    && self.recalled_requested.insert(artifact)
                {
                    let after = SignedDuration::from_mins(self.rng.range(5, 30) as i64);
                    let reason = "bad change".to_string();
                    self.schedule(
                        after,
                        SimEvent::Operator(OperatorCommand::RollBackEverywhere {
                            pipeline: pipeline.clone(),
                            artifact,
                            reason,
                        }),
                    );
                }
                self.failed.push((pipeline, stage, artifact));
            }
            _ => {}
        }
    }

    fn scripted(&mut self, event: Scripted) {
        match event {
            Scripted::Artifact { pipeline, number, bad, unreviewed } => {
                self.build_artifact(&pipeline, number, bad, unreviewed, true);
            }
            Scripted::Alarm { alarm, region, state } => {
                let key = (alarm.clone(), region.clone());
                match state {
                    Some(state) => {
                        self.forced_alarms.insert(key, state);
                        self.send(SimEvent::ToController(Input::Alarm {
                            alarm,
                            region,
                            state,
                            observed_at: self.now,
                        }));
                    }
                    None => {
                        self.forced_alarms.remove(&key);
                    }
                }
            }
            Scripted::BoxFails { pipeline, target, count } => {
                let service = self.service(&pipeline);
                if let Some(sim_target) = self.targets.get_mut(&(service, target)) {
                    for sim_box in
                        sim_target.boxes.values_mut().filter(|b| b.healthy).take(count as usize)
                    {
                        sim_box.healthy = false;
                        sim_box.broken = true;
                    }
                }
            }
            Scripted::Operator { by, command } => {
                self.operator_commands += 1;
                let id = format!("op-{}", self.operator_commands);
                self.send(SimEvent::ToController(Input::Operator { id, by, command }));
            }
            Scripted::Restart => self.controller_crash(),
        }
    }

    fn agent_receives(&mut self, command: BoxCommand) {
        let now = self.now;
        let healing = self.healing;
        let corrupt = !healing && self.rng.chance(self.world.swarm.download_corruption);
        let fails = !healing && self.rng.chance(self.world.swarm.hook_failure);
        let hung = !healing && self.rng.chance(self.world.swarm.hook_hang);
        let takes = SignedDuration::from_secs(self.rng.range(30, 240) as i64);
        let key = (self.service(&command.pipeline), command.target.clone());
        let Some(sim_box) =
            self.targets.get_mut(&key).and_then(|t| t.boxes.get_mut(&command.box_id))
        else {
            return;
        };
        if sim_box.down_until.is_some_and(|until| now < until) {
            return;
        }
        if command.epoch < sim_box.max_epoch {
            let line = format!(
                "{now} {} rejects {} from epoch {} (has seen {})",
                command.box_id, command.id, command.epoch, sim_box.max_epoch
            );
            self.coverage.hit("stale-epoch command rejected");
            self.record(line);
            return;
        }
        sim_box.max_epoch = command.epoch;
        let pipeline = command.pipeline.clone();
        let highest = sim_box.highest_command.get(&pipeline).copied();
        if highest.is_some_and(|highest| command.id < highest) {
            return;
        }
        let duplicate = highest == Some(command.id)
            && (sim_box.installing.as_ref().is_some_and(|install| install.command == command.id)
                || sim_box
                    .last_outcome
                    .get(&pipeline)
                    .is_some_and(|outcome| outcome.command == command.id));
        if duplicate {
            return;
        }
        // One command at a time: another pipeline's install is still running. The controller
        // sends this one again once that one settled.
        if sim_box.installing.as_ref().is_some_and(|install| install.pipeline != pipeline) {
            self.coverage.hit("shared box busy with another pipeline's command");
            return;
        }
        sim_box.highest_command.insert(pipeline.clone(), command.id);
        if corrupt {
            sim_box.last_outcome.insert(
                pipeline,
                CommandOutcome {
                    command: command.id,
                    succeeded: false,
                    detail: "downloaded artifact's sha256 does not match its digest; not installed"
                        .into(),
                },
            );
            return;
        }
        let fails = fails || sim_box.broken;
        sim_box.installing = Some(Install {
            pipeline,
            command: command.id,
            artifact: command.artifact,
            fails,
            hung,
        });
        if !hung {
            self.schedule(
                takes,
                SimEvent::InstallDone {
                    service: key.0,
                    target: key.1,
                    box_id: command.box_id,
                    command: command.id,
                },
            );
        }
    }

    fn install_done(&mut self, service: String, target: Target, box_id: BoxId, command: CommandId) {
        let now = self.now;
        let key = (service, target.clone());
        let Some(sim_box) = self.targets.get_mut(&key).and_then(|t| t.boxes.get_mut(&box_id))
        else {
            return;
        };
        let Some(install) = sim_box.installing.take_if(|install| install.command == command) else {
            return;
        };
        let pipeline = install.pipeline.clone();
        sim_box.running.insert(pipeline.clone(), install.artifact);
        sim_box.healthy = !install.fails;
        sim_box.installed_at.insert(pipeline.clone(), now);
        sim_box.last_outcome.insert(
            pipeline.clone(),
            CommandOutcome {
                command,
                succeeded: !install.fails,
                detail: if install.fails {
                    "ValidateService hook failed".into()
                } else {
                    "installed".into()
                },
            },
        );
        if !install.fails {
            self.data_since.entry((pipeline, target, install.artifact)).or_insert(now);
        }
    }

    fn new_artifact(&mut self, pipeline: String) {
        if self.healing {
            return;
        }
        let number = {
            let counter = self.artifacts_made.entry(pipeline.clone()).or_default();
            *counter += 1;
            *counter
        };
        let swarm = self.world.swarm.clone();
        let bad = self.rng.chance(swarm.bad_artifact);
        let unreviewed = self.rng.chance(swarm.unreviewed_commit);
        let signed = !self.rng.chance(swarm.unsigned_artifact);
        self.build_artifact(&pipeline, number, bad, unreviewed, signed);
        let mean = swarm.artifact_interval_minutes;
        let next = SignedDuration::from_mins(self.rng.range(mean / 2, mean * 3 / 2) as i64);
        self.schedule(next, SimEvent::NewArtifact { pipeline });
    }

    /// A build finishes: artifact `number` of `pipeline` reaches the controller.
    fn build_artifact(
        &mut self,
        pipeline: &str,
        number: u64,
        bad: bool,
        unreviewed: bool,
        signed: bool,
    ) {
        let digest = self.names.artifact(&format!("{pipeline}-{number}"));
        let author = format!("dev-{}", self.rng.range(1, 4));
        let approvers = if unreviewed {
            vec![author.clone()]
        } else {
            vec![format!("reviewer-{}", self.rng.range(1, 3))]
        };
        let id = format!("{pipeline}-commit-{number}");
        let commits = vec![Commit { id: id.clone(), author, approvers }];
        let packages =
            vec![Package { name: "libfoo".into(), version: format!("1.{}", number % 4) }];
        self.checker.truth.insert(
            digest,
            ArtifactTruth {
                pipeline: pipeline.to_string(),
                sequence: number,
                bad,
                signed,
                commits: vec![(id, !unreviewed)],
                packages: packages.clone(),
            },
        );
        self.record(format!("{} built {digest} bad={bad} signed={signed}", self.now));
        let artifact = ArtifactReady {
            digest,
            sequence: number,
            previous: number.checked_sub(1).filter(|previous| *previous > 0),
            commits,
            packages,
            signature_verified: signed,
        };
        self.announced.insert((pipeline.to_string(), number), artifact.clone());
        self.send(SimEvent::ToController(Input::ArtifactReady {
            pipeline: pipeline.to_string(),
            artifact,
        }));
    }

    fn controller_crash(&mut self) {
        let Some(driver) = self.driver.take() else { return };
        let outstanding = driver.engine().outstanding_commands();
        if !outstanding.is_empty() {
            self.coverage.hit("restart mid-deployment");
        }
        // A stale leader: the old controller re-sends a few commands after it lost its lease.
        let stale: Vec<BoxCommand> = outstanding.into_iter().take(3).collect();
        let epoch = driver.engine().epoch();
        // All that survives is what the store holds.
        self.store = Some(driver.into_store());
        self.record(format!("{} controller crashed (epoch {epoch})", self.now));
        let down = SignedDuration::from_secs(self.rng.range(10, 300) as i64);
        self.schedule(down, SimEvent::ControllerUp);
        for command in stale {
            let late = down + SignedDuration::from_secs(self.rng.range(5, 120) as i64);
            self.schedule(late, SimEvent::ToAgent(command));
        }
    }

    /// Starts the controller from the store: a new epoch past every epoch an agent has seen,
    /// the outbox of the last one sent again, then its start round.
    fn controller_up(&mut self) {
        // Already up (a restart and the healing phase may both bring it up): a second start
        // would replace the live controller with its state from the last crash.
        if self.driver.is_some() {
            return;
        }
        let Some(store) = self.store.take() else { return };
        let seen = self
            .targets
            .values()
            .flat_map(|target| target.boxes.values())
            .map(|b| b.max_epoch)
            .max()
            .unwrap_or(0);
        let plans = self.world.plans.clone();
        let zones = self.world.region_zones.clone();
        let fresh = || Engine::new(plans, zones);
        let seed = self.world.seed;
        let (driver, started) = Driver::start(store, fresh, seen, self.now, self.options.prepare)
            .unwrap_or_else(|error| panic!("seed {seed}: the controller cannot start: {error}"));
        self.driver = Some(driver.checked());
        self.wake_at = None;
        self.record(format!("{} controller started (epoch {})", self.now, started.epoch));
        // It knows no observation from before: nor does the checker's model of what it knows.
        self.checker.forget_observations(&mut self.coverage);
        let input = Input::ControllerStarted { epoch: started.epoch };
        self.checker.delivered(self.now, &input);
        self.engine_steps += 1;
        self.checker.stepped(self.now, started.epoch, &started.round.actions, &mut self.coverage);
        self.check_records(&started.round);
        let mut sent = Vec::new();
        for command in started.undelivered {
            let action: Action =
                serde_json::from_slice(&command.bytes).expect("the outbox holds actions");
            self.coverage.hit("outbox re-sent after a restart");
            self.perform(action);
            sent.push(command.id);
        }
        for action in started.round.actions {
            if let Action::Deploy(command) | Action::RollBack(command) = &action {
                sent.push(command.id.0);
            }
            if let Action::RunTestGate { id, .. } = &action {
                sent.push(id.0);
            }
            self.perform(action);
        }
        if let Some(driver) = &mut self.driver {
            driver.delivered(&sent).expect("the in-memory store marks delivered");
        }
    }

    fn heal(&mut self) {
        self.healing = true;
        self.record(format!("{} healing: faults off, liveness phase begins", self.now));
        self.organisation_event_until = None;
        let mut hung = Vec::new();
        for ((service, target), sim_target) in &mut self.targets {
            for (id, sim_box) in &mut sim_target.boxes {
                sim_box.down_until = None;
                sim_box.flap_until = None;
                if let Some(install) = &sim_box.installing
                    && install.hung
                {
                    hung.push((service.clone(), target.clone(), id.clone(), install.command));
                }
            }
        }
        for (service, target, box_id, command) in hung {
            self.schedule(
                SignedDuration::from_secs(30),
                SimEvent::InstallDone { service, target, box_id, command },
            );
        }
        if self.driver.is_none() {
            self.schedule(SignedDuration::from_secs(5), SimEvent::ControllerUp);
        }
        // People clear what they set: holds (again every full round, since the controller may
        // be down now), content blocks; reviewers approve late reviews.
        self.release_holds();
        self.schedule(
            SignedDuration::from_secs(10),
            SimEvent::ToController(Input::ContentBlocklist(ContentBlocklist::default())),
        );
        // Reviewers approve late reviews, and the controller re-reads the whole artifact store.
        for ((pipeline, _), artifact) in &mut self.announced {
            for commit in &mut artifact.commits {
                if !commit.is_reviewed() {
                    commit.approvers.push("late-reviewer".into());
                }
            }
            if let Some(truth) = self.checker.truth.get_mut(&artifact.digest) {
                for (_, reviewed) in &mut truth.commits {
                    *reviewed = true;
                }
            }
            let input =
                Input::ArtifactReady { pipeline: pipeline.clone(), artifact: artifact.clone() };
            self.sequence += 1;
            self.queue.insert(
                (self.now + SignedDuration::from_secs(20), self.sequence),
                SimEvent::ToController(input),
            );
        }
        for (pipeline, _, artifact) in self.failed.clone() {
            let bad = self.checker.truth.get(&artifact).is_some_and(|truth| truth.bad);
            if bad && self.recalled_requested.insert(artifact) {
                let reason = "bad change".to_string();
                self.schedule(
                    SignedDuration::from_mins(1),
                    SimEvent::Operator(OperatorCommand::RollBackEverywhere {
                        pipeline,
                        artifact,
                        reason,
                    }),
                );
            }
        }
    }

    /// What the controller is working on, so agents report it every round and the rest every
    /// twentieth: the engine's own account of what it needs observed.
    fn active(&self) -> gantry_engine::views::Watch {
        match &self.driver {
            Some(driver) => driver.engine().needs_observing(self.now),
            None => gantry_engine::views::Watch::default(),
        }
    }

    fn observe(&mut self) {
        self.rounds += 1;
        let full = self.scripted || self.rounds % FULL_ROUND_EVERY == 1;
        if !self.healing && !self.scripted {
            self.inject_faults();
        }
        let watch = self.active();
        let baking: BTreeSet<(String, Target)> = watch
            .data_points
            .iter()
            .map(|(pipeline, target)| (self.service(pipeline), target.clone()))
            .collect();
        let keys: Vec<(String, Target)> = self
            .targets
            .keys()
            .filter(|key| full || watch.fleets.contains(*key))
            .cloned()
            .collect();
        let data_keys: Vec<(String, Target)> = self
            .targets
            .keys()
            .filter(|key| full || watch.fleets.contains(*key) || baking.contains(*key))
            .cloned()
            .collect();
        let now = self.now;
        for key in &keys {
            let sim_target = &self.targets[key];
            let boxes = sim_target
                .boxes
                .iter()
                .map(|(id, b)| BoxReport {
                    id: id.clone(),
                    running: b.running.clone(),
                    health: b.reported_health(now),
                    last_commands: b.last_outcome.clone(),
                    in_progress: b.installing.as_ref().map(|install| install.command),
                    observed_at: None,
                })
                .collect();
            self.send(SimEvent::ToController(Input::Fleet {
                service: key.0.clone(),
                target: key.1.clone(),
                observed_at: now + sim_target.clock_skew,
                boxes,
            }));
        }
        // Data points and alarms every other round: fresh enough (alarms go stale after three
        // minutes) at half the messages.
        let evidence_round = full || self.rounds.is_multiple_of(2);
        let data_keys: Vec<(String, Target)> = if evidence_round { data_keys } else { Vec::new() };
        for key in &data_keys {
            let sim_target = &self.targets[key];
            let mut serving: BTreeSet<(&String, &Digest)> = BTreeSet::new();
            for b in sim_target.boxes.values().filter(|b| b.reported_health(now) == Health::Healthy)
            {
                serving.extend(b.running.iter());
            }
            let rate = sim_target.requests_per_minute;
            let skew = sim_target.clock_skew;
            let mut readings = Vec::new();
            for (pipeline, artifact) in serving {
                if let Some(since) =
                    self.data_since.get(&(pipeline.clone(), key.1.clone(), *artifact))
                {
                    let count = rate * (now.duration_since(*since).as_secs() / 60) as u64;
                    readings.push((pipeline.clone(), *artifact, count));
                }
            }
            for (pipeline, artifact, count) in readings {
                let input = Input::DataPoints {
                    pipeline,
                    target: key.1.clone(),
                    artifact,
                    metric: "requests".into(),
                    count,
                    observed_at: now + skew,
                };
                self.send(SimEvent::ToController(input));
            }
        }
        self.report_alarms(&data_keys);
        if full && !self.scripted {
            self.reannounce();
        }
        if self.healing && full {
            self.release_holds();
            self.approve_waiting();
            self.recall_bad_artifacts();
        }
        if self.healing && self.quiescent() {
            self.converged = true;
            self.record(format!("{now} converged"));
            return;
        }
        self.schedule(SignedDuration::from_secs(OBSERVE_EVERY), SimEvent::Observe);
    }

    /// Whether a bad artifact of any of the service's pipelines has served in (service,
    /// environment, region) long enough to alarm.
    fn bad_serving(&self, service: &str, environment: &str, region: &str, delay: i64) -> bool {
        self.targets.iter().any(|((s, target), sim_target)| {
            s == service
                && target.environment == environment
                && target.region == region
                && sim_target.boxes.values().any(|b| {
                    b.healthy
                        && b.running.iter().any(|(pipeline, running)| {
                            self.checker.truth.get(running).is_some_and(|t| t.bad)
                                && b.installed_at.get(pipeline).is_some_and(|at| {
                                    self.now.duration_since(*at) >= SignedDuration::from_secs(delay)
                                })
                        })
                })
        })
    }

    /// Alarm readings for the scopes of `targets`: each pipeline's own alarms in the regions of
    /// its targets, the team's aggregate alarm there, and the organisation's alarm.
    fn report_alarms(&mut self, targets: &[(String, Target)]) {
        if targets.is_empty() {
            return;
        }
        let mut readings: Vec<(String, Option<String>, bool)> = Vec::new();
        let mut team_regions = BTreeSet::new();
        let scopes: BTreeSet<(String, String, String)> = targets
            .iter()
            .map(|(service, target)| {
                (service.clone(), target.environment.clone(), target.region.clone())
            })
            .collect();
        for (service, environment, region) in scopes {
            if environment == "gamma" {
                let gamma = self.bad_serving(&service, "gamma", &region, DETECTION_DELAY);
                readings.push((format!("{service}-gamma-high-severity"), Some(region), gamma));
                continue;
            }
            let prod = self.bad_serving(&service, "prod", &region, DETECTION_DELAY);
            let one_box = self.bad_serving(&service, "prod", &region, DETECTION_DELAY / 3);
            readings.push((format!("{service}-high-severity"), Some(region.clone()), prod));
            readings.push((format!("{service}-one-box"), Some(region.clone()), one_box));
            team_regions.insert(region);
        }
        for region in team_regions {
            let team = self
                .world
                .plans
                .iter()
                .any(|plan| self.bad_serving(&plan.service, "prod", &region, DETECTION_DELAY));
            readings.push((self.world.team_alarm.clone(), Some(region), team));
        }
        let event = self.organisation_event_until.is_some_and(|until| self.now < until);
        readings.push((self.world.organisation_alarm.clone(), None, event));
        let swarm = self.world.swarm.clone();
        for (alarm, region, firing) in readings {
            if let Some(forced) = self.forced_alarms.get(&(alarm.clone(), region.clone())) {
                let state = *forced;
                self.send(SimEvent::ToController(Input::Alarm {
                    alarm,
                    region,
                    state,
                    observed_at: self.now,
                }));
                continue;
            }
            let state = if self.healing || self.scripted {
                if firing { AlarmState::Alarm } else { AlarmState::Ok }
            } else if self.rng.chance(swarm.alarm_missing) {
                continue;
            } else if self.rng.chance(swarm.alarm_missing / 4) {
                AlarmState::InsufficientData
            } else if firing || self.rng.chance(swarm.alarm_flap) {
                AlarmState::Alarm
            } else {
                AlarmState::Ok
            };
            self.send(SimEvent::ToController(Input::Alarm {
                alarm,
                region,
                state,
                observed_at: self.now,
            }));
        }
    }

    fn inject_faults(&mut self) {
        let swarm = self.world.swarm.clone();
        let now = self.now;
        let mut additions = Vec::new();
        for ((pipeline, target), sim_target) in &mut self.targets {
            for sim_box in sim_target.boxes.values_mut() {
                if self.rng.chance(swarm.health_flap) {
                    sim_box.flap_until =
                        Some(now + SignedDuration::from_secs(self.rng.range(30, 600) as i64));
                }
                if self.rng.chance(swarm.agent_crash) {
                    sim_box.down_until =
                        Some(now + SignedDuration::from_secs(self.rng.range(60, 1200) as i64));
                    sim_box.installing = None;
                }
            }
            if self.rng.chance(swarm.scale_out) {
                additions.push((pipeline.clone(), target.clone()));
            }
            if sim_target.boxes.len() > 10 && self.rng.chance(swarm.scale_in) {
                let victim = self.rng.below(sim_target.boxes.len() as u64) as usize;
                let id = sim_target.boxes.keys().nth(victim).expect("in range").clone();
                sim_target.boxes.remove(&id);
            }
        }
        for key in additions {
            let sim_target = self.targets.get_mut(&key).expect("listed");
            let id = box_id(&key.1, sim_target.next_box);
            sim_target.next_box += 1;
            sim_target.boxes.insert(id, fresh_box(BTreeMap::new(), now));
            self.coverage.hit("box added mid-run");
        }
        if self.rng.chance(swarm.controller_restart) {
            self.controller_crash();
        }
        if self.rng.chance(swarm.organisation_event) {
            self.organisation_event_until =
                Some(now + SignedDuration::from_mins(self.rng.range(10, 90) as i64));
        }
        if self.rng.chance(swarm.operator_action) {
            self.operator_acts();
        }
    }

    fn operator_acts(&mut self) {
        let plans = self.world.plans.clone();
        let plan = self.rng.pick(&plans).clone();
        let pipeline = plan.pipeline.clone();
        let production: Vec<String> =
            plan.production_stages().map(|stage| stage.name.clone()).collect();
        let newest = self
            .checker
            .truth
            .iter()
            .filter(|(_, t)| t.pipeline == pipeline && t.signed)
            .max_by_key(|(_, t)| t.sequence)
            .map(|(d, _)| *d);
        match self.rng.below(6) {
            0 => {
                let stage = if self.rng.chance(500_000) {
                    None
                } else {
                    Some(self.rng.pick(&production).clone())
                };
                let reason = "investigating".to_string();
                self.schedule(
                    SignedDuration::ZERO,
                    SimEvent::Operator(OperatorCommand::Hold {
                        pipeline: pipeline.clone(),
                        stage: stage.clone(),
                        reason,
                    }),
                );
                let release = SignedDuration::from_mins(self.rng.range(10, 120) as i64);
                self.schedule(
                    release,
                    SimEvent::Operator(OperatorCommand::Release { pipeline, stage }),
                );
            }
            1 => {
                let kinds = [
                    BlockerKind::TimeWindow,
                    BlockerKind::TimeWindow,
                    BlockerKind::TeamAlarm,
                    BlockerKind::OrganisationAlarm,
                    BlockerKind::Content,
                    BlockerKind::ManualHold,
                    BlockerKind::InFlightLimit,
                    BlockerKind::Unreviewed,
                ];
                let blocker = *self.rng.pick(&kinds);
                let stage = if self.rng.chance(500_000) {
                    None
                } else {
                    Some(self.rng.pick(&production).clone())
                };
                let region = if self.rng.chance(500_000) {
                    None
                } else {
                    Some(
                        self.rng
                            .pick(&self.world.region_zones.keys().cloned().collect::<Vec<_>>())
                            .clone(),
                    )
                };
                let lasts = SignedDuration::from_mins(self.rng.range(10, 300) as i64);
                let command = OperatorCommand::Override {
                    pipeline,
                    blocker,
                    stage,
                    region,
                    reason: "recovering from an incident".into(),
                    expires_at: self.now + lasts,
                };
                self.schedule(SignedDuration::ZERO, SimEvent::Operator(command));
            }
            2 => {
                if let Some((pipeline, stage, _)) = self.failed.last().cloned() {
                    self.schedule(
                        SignedDuration::ZERO,
                        SimEvent::Operator(OperatorCommand::Retry { pipeline, stage }),
                    );
                }
            }
            3 => {
                let bad = self
                    .failed
                    .iter()
                    .find(|(_, _, artifact)| {
                        self.checker.truth.get(artifact).is_some_and(|t| t.bad)
                    })
                    .cloned();
                if let Some((pipeline, _, artifact)) = bad
                    && self.recalled_requested.insert(artifact)
                {
                    let command = OperatorCommand::RollBackEverywhere {
                        pipeline,
                        artifact,
                        reason: "bad change".into(),
                    };
                    self.schedule(SignedDuration::ZERO, SimEvent::Operator(command));
                }
            }
            4 => {
                if let Some(artifact) = newest {
                    let everyone = ["pe-1", "pe-2", "pe-3", "dev-1"];
                    let approvers = everyone
                        .iter()
                        .filter(|_| self.rng.chance(500_000))
                        .map(|p| p.to_string())
                        .collect();
                    self.schedule(
                        SignedDuration::ZERO,
                        SimEvent::Operator(OperatorCommand::Urgent {
                            pipeline: pipeline.clone(),
                            artifact,
                            approvers,
                        }),
                    );
                    let ends = SignedDuration::from_hours(self.rng.range(1, 6) as i64);
                    self.schedule(
                        ends,
                        SimEvent::Operator(OperatorCommand::EndUrgent { pipeline }),
                    );
                }
            }
            _ => {
                let bad: Vec<String> = self
                    .checker
                    .truth
                    .values()
                    .filter(|t| t.bad)
                    .flat_map(|t| t.commits.iter().map(|(id, _)| id.clone()))
                    .collect();
                if !bad.is_empty() {
                    let commit = self.rng.pick(&bad).clone();
                    let list = ContentBlocklist { commits: vec![commit], packages: Vec::new() };
                    self.send(SimEvent::ToController(Input::ContentBlocklist(list)));
                }
            }
        }
    }

    /// On call rolls back everywhere any bad artifact still running, as people do once alarms
    /// point at it (an alarm that fires after the bake rolls nothing back by itself).
    fn recall_bad_artifacts(&mut self) {
        let mut running: BTreeSet<(String, Digest)> = BTreeSet::new();
        for sim_target in self.targets.values() {
            for sim_box in sim_target.boxes.values() {
                for (pipeline, artifact) in &sim_box.running {
                    if self.checker.truth.get(artifact).is_some_and(|truth| truth.bad) {
                        running.insert((pipeline.clone(), *artifact));
                    }
                }
            }
        }
        // Asked again every round it still runs: a command can be lost on its way.
        for (pipeline, artifact) in running {
            self.recalled_requested.insert(artifact);
            let reason = "bad change found after its bake".to_string();
            self.schedule(
                SignedDuration::ZERO,
                SimEvent::Operator(OperatorCommand::RollBackEverywhere {
                    pipeline,
                    artifact,
                    reason,
                }),
            );
        }
    }

    /// The controller re-reads the newest artifacts of each pipeline from the artifact store.
    fn reannounce(&mut self) {
        let mut newest: BTreeMap<&str, Vec<&ArtifactReady>> = BTreeMap::new();
        for ((pipeline, _), artifact) in self.announced.iter().rev() {
            let list = newest.entry(pipeline).or_default();
            if list.len() < 3 {
                list.push(artifact);
            }
        }
        let again: Vec<(String, ArtifactReady)> = newest
            .into_iter()
            .flat_map(|(pipeline, list)| {
                list.into_iter().map(move |a| (pipeline.to_string(), a.clone()))
            })
            .collect();
        for (pipeline, artifact) in again {
            self.send(SimEvent::ToController(Input::ArtifactReady { pipeline, artifact }));
        }
    }

    /// People release the holds they set. Called at healing and again every full round after
    /// it: a controller that was down when healing began shows its holds only once it is up.
    fn release_holds(&mut self) {
        let Some(driver) = &self.driver else { return };
        let holds: Vec<(String, Option<String>)> = driver
            .engine()
            .pipelines()
            .flat_map(|(name, pipeline)| {
                pipeline.holds.iter().map(move |hold| (name.to_string(), hold.stage.clone()))
            })
            .collect();
        for (pipeline, stage) in holds {
            self.schedule(
                SignedDuration::from_secs(10),
                SimEvent::Operator(OperatorCommand::Release { pipeline, stage }),
            );
        }
    }

    /// People keep approving what waits for them (an approval may have been lost).
    fn approve_waiting(&mut self) {
        let Some(driver) = &self.driver else { return };
        let mut approvals = Vec::new();
        for (name, pipeline) in driver.engine().pipelines() {
            for (stage, state) in pipeline.plan.stages.iter().zip(&pipeline.stages) {
                if let Some(run) = &state.run
                    && matches!(run.phase, StagePhase::AwaitingApproval)
                {
                    approvals.push(OperatorCommand::Approve {
                        pipeline: name.to_string(),
                        stage: stage.name.clone(),
                        artifact: run.artifact,
                    });
                }
            }
        }
        for approval in approvals {
            self.schedule(SignedDuration::ZERO, SimEvent::Operator(approval));
        }
    }

    /// Every deployment is terminal: no stage is deploying, baking, testing or waiting for
    /// approval, no rollback runs and no command is outstanding.
    fn quiescent(&self) -> bool {
        let Some(driver) = &self.driver else { return false };
        driver.engine().pipelines().all(|(_, pipeline)| {
            pipeline.stages.iter().all(|state| {
                state.run.as_ref().is_none_or(|run| matches!(run.phase, StagePhase::Failed { .. }))
            }) && pipeline.targets.values().all(|target| {
                target.rollback.is_none()
                    && target.fleet.boxes.values().all(|b| b.pending.is_none())
            })
        })
    }

    fn describe_unfinished(&self) -> String {
        let Some(driver) = &self.driver else { return "the controller is down".into() };
        let mut parts = Vec::new();
        for (name, pipeline) in driver.engine().pipelines() {
            for (stage, state) in pipeline.plan.stages.iter().zip(&pipeline.stages) {
                let Some(run) = &state.run else { continue };
                match &run.phase {
                    StagePhase::Failed { .. } => {}
                    StagePhase::Rollout { lanes } => {
                        for lane in lanes.values() {
                            let blockers: Vec<String> =
                                lane.blockers.iter().map(|b| b.reason.clone()).collect();
                            let phase = match &lane.phase {
                                TargetPhase::Waiting => format!("waiting {blockers:?}"),
                                other => format!("{other:?}"),
                            };
                            parts.push(format!(
                                "{name} {} step {} {}: {phase}",
                                stage.name, lane.step, lane.target
                            ));
                        }
                    }
                    other => parts.push(format!("{name} {}: {other:?}", stage.name)),
                }
            }
            for (target, state) in &pipeline.targets {
                if let Some(rollback) = &state.rollback {
                    let to = self.names.name(&rollback.to);
                    parts.push(format!("{name} {target}: rolling back to {to}"));
                }
            }
        }
        parts.join("; ")
    }
}

fn input_kind(input: &Input) -> &'static str {
    match input {
        Input::ControllerStarted { .. } => "controller started",
        Input::ArtifactReady { .. } => "artifact ready",
        Input::TestGateResult { .. } => "test gate result",
        Input::Fleet { .. } => "fleet",
        Input::Alarm { .. } => "alarm",
        Input::DataPoints { .. } => "data points",
        Input::ContentBlocklist(_) => "content blocklist",
        Input::Operator { .. } => "operator",
        Input::UpdatePlan { .. } => "update plan",
        Input::AddPipeline { .. } => "add pipeline",
        Input::RemovePipeline { .. } => "remove pipeline",
        Input::Topology { .. } => "topology",
        Input::Tick => "tick",
    }
}

fn short(event: &SimEvent) -> String {
    match event {
        SimEvent::ToController(input) => format!("to controller: {}", short_input(input)),
        SimEvent::ToAgent(command) => {
            format!("to agent {}: {} {}", command.box_id, command.id, command.artifact)
        }
        other => format!("{other:?}"),
    }
}

fn short_input(input: &Input) -> String {
    match input {
        Input::Fleet { service, target, .. } => format!("fleet {service} {target}"),
        Input::Alarm { alarm, region, state, .. } => format!("alarm {alarm} {region:?} {state:?}"),
        other => {
            let text = format!("{other:?}");
            text.chars().take(120).collect()
        }
    }
}
