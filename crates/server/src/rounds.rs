//! The round loop: the engine on the real clock, through the one round driver
//! (`gantry_driver::Driver`) over the SQLite store.
//!
//! One thread owns the driver. It wakes when an input arrives (a report, an operator command,
//! a changed organisation), when the engine asked to be woken, or every [`ROUND_TICK`]; it
//! gathers what arrived, runs one round, and only after the round's commit returned queues the
//! round's box commands for the agents' long-polls. A failed commit (a full disk) delivers
//! nothing from the round, marks the store unhealthy (health and metrics say so) and is
//! retried on the next wake-up; the driver has already rebuilt the engine from the store.
//!
//! Agents' reports become one [`Input::Fleet`] per (service, target) whose boxes changed. The
//! snapshot is taken now and carries each box's own report time, so a box that reported before
//! a command was issued never counts as having carried it out, and a box that reported after
//! it does, however old its neighbours' reports are; a box silent for longer
//! than [`STALE_REPORT`] is reported unhealthy (fail closed). A box that registered but has not
//! reported yet is not in a snapshot (nothing is known of it, and "runs nothing" would get it
//! repaired). After a start, a target's snapshot waits up to [`STALE_REPORT`] for every box the
//! engine has commanded there to report again — a snapshot without it would make the engine
//! forget its command — and then lists a box still silent as unhealthy, as last known.
//!
//! When an agent has seen a later epoch or command id than this controller (it was restored
//! from a backup), the loop restarts the driver on the same store past both, before anything
//! more is delivered.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use gantry_driver::Driver;
use gantry_engine::{Action, BoxCommand, Engine, Event, Input};
use gantry_model::agent::{self as wire, AgentCommand};
use gantry_model::{Plan, Target, Timestamp};
use gantry_store::{Error as StoreError, Loaded, Round, Store};

use crate::organisation::{self, Fingerprint};
use crate::server::{ArtifactView, Controller, PipelineView, Verdict};

/// The longest the loop sleeps without a round: the engine's own wake-ups are honoured sooner,
/// and a second is the latency budget from an alarm to a rollback command.
pub const ROUND_TICK: Duration = Duration::from_millis(250);

/// How often the organisation directory is checked for changes.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(2);

/// A box whose last report is older than this counts as unhealthy: three report intervals.
pub const STALE_REPORT: Duration = Duration::from_secs(30);

/// How long to wait after a failed commit before trying again.
pub const COMMIT_RETRY: Duration = Duration::from_secs(1);

/// The store as the driver sees it: the controller's one SQLite connection, locked per call.
pub struct SharedStore(pub Arc<Controller>);

impl Store for SharedStore {
    fn load(&mut self) -> Result<Loaded, StoreError> {
        self.0.store.lock().expect("store lock").load()
    }
    fn begin_epoch(&mut self, seen_by_agents: u64) -> Result<u64, StoreError> {
        self.0.store.lock().expect("store lock").begin_epoch(seen_by_agents)
    }
    fn commit(&mut self, round: Round) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        let result = self.0.store.lock().expect("store lock").commit(round);
        self.0.metrics.store_commit_latency.observe(started.elapsed().as_secs_f64());
        result
    }
    fn mark_delivered(&mut self, ids: &[u64]) -> Result<(), StoreError> {
        self.0.store.lock().expect("store lock").mark_delivered(ids)
    }
}

/// The agent's form of an engine box command, with what its pipeline's plan says about
/// timeouts.
pub fn agent_command(command: &BoxCommand, plan: Option<&Plan>, now: Timestamp) -> AgentCommand {
    let strategy = plan
        .and_then(|plan| {
            plan.stages
                .iter()
                .find(|stage| stage.steps.iter().any(|step| step.targets.contains(&command.target)))
        })
        .map(|stage| stage.deployment.clone())
        .unwrap_or_default();
    let seconds = |duration: gantry_model::Duration| {
        jiff::SignedDuration::from_secs(duration.as_seconds() as i64)
    };
    AgentCommand {
        id: wire::CommandId(command.id.0),
        epoch: command.epoch,
        pipeline: command.pipeline.clone(),
        target: command.target.clone(),
        box_id: wire::BoxId(command.box_id.0.clone()),
        kind: match command.kind {
            gantry_engine::CommandKind::Deploy => wire::CommandKind::Deploy,
            gantry_engine::CommandKind::RollBack => wire::CommandKind::RollBack,
            gantry_engine::CommandKind::Repair => wire::CommandKind::Repair,
        },
        artifact: command.artifact,
        download_path: format!("/api/v1/agent/artifacts/{}", command.artifact),
        hook_timeout: strategy.hook_timeout,
        health_check_timeout: strategy.health_check_timeout,
        health_check: None,
        deadline: now + seconds(strategy.hook_timeout) + seconds(strategy.health_check_timeout),
    }
}

/// The engine's form of one box's report.
pub fn box_report(
    box_id: &wire::BoxId,
    report: Option<&wire::Report>,
    fresh: bool,
) -> gantry_engine::fleet::BoxReport {
    let mut running = BTreeMap::new();
    let mut last_commands = BTreeMap::new();
    let mut in_progress = None;
    let mut healthy = fresh && report.is_some();
    for pipeline in report.iter().flat_map(|report| &report.pipelines) {
        if let Some(digest) = pipeline.running {
            running.insert(pipeline.pipeline.clone(), digest);
        }
        if let Some(outcome) = pipeline.outcomes.last() {
            last_commands.insert(
                pipeline.pipeline.clone(),
                gantry_engine::CommandOutcome {
                    command: gantry_engine::CommandId(outcome.command.0),
                    succeeded: outcome.succeeded,
                    detail: outcome.detail.clone(),
                },
            );
        }
        in_progress = in_progress.or(pipeline.in_progress.map(|id| gantry_engine::CommandId(id.0)));
        healthy &= pipeline.health == wire::Health::Healthy;
    }
    gantry_engine::fleet::BoxReport {
        id: gantry_engine::BoxId(box_id.0.clone()),
        health: if healthy {
            gantry_engine::Health::Healthy
        } else {
            gantry_engine::Health::Unhealthy
        },
        running,
        last_commands,
        in_progress,
        observed_at: None,
    }
}

/// A fingerprint of a plan, to tell whether the organisation changed it.
fn plan_hash(plan: &Plan) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    serde_json::to_vec(plan).expect("plans serialize").hash(&mut hasher);
    hasher.finish()
}

/// What the round thread is started with.
pub struct RoundConfig {
    /// The organisation directory; `None` runs no pipelines (agents and tokens only).
    pub organisation: Option<PathBuf>,
}

/// Runs rounds until `controller.stopping` is set, after saying on `started` that the engine
/// resumed (or dropping it, when it could not). Called on a thread of its own.
pub fn run(controller: Arc<Controller>, config: RoundConfig, started: std::sync::mpsc::Sender<()>) {
    let mut rounds = match Rounds::start(controller.clone(), config) {
        Ok(rounds) => {
            let _ = started.send(());
            rounds
        }
        Err(error) => {
            tracing::error!(%error, "the round loop could not start; no commands will be issued");
            controller.store_health.record(Err(error.to_string()), &controller.metrics);
            return;
        }
    };
    while !controller.stopping.load(Ordering::SeqCst) {
        rounds.wait();
        rounds.once();
    }
}

struct Rounds {
    controller: Arc<Controller>,
    driver: Option<Driver<SharedStore>>,
    organisation_dir: Option<PathBuf>,
    fingerprint: Fingerprint,
    last_reload: std::time::Instant,
    /// Plans read from the organisation and not yet handed to the engine. Once handed over
    /// (or found to be what the engine runs) the engine's copy is the only one: a thousand
    /// plans are tens of megabytes.
    plans: BTreeMap<String, Plan>,
    /// [`plan_hash`] of every pipeline of the organisation last loaded, computed once per load.
    plan_hashes: BTreeMap<String, u64>,
    region_zones: BTreeMap<String, String>,
    next_wake: Option<Timestamp>,
    /// The plan last handed to the engine for each pipeline (a plan change waits in the
    /// engine for the artifact in flight, so the engine's current plan is not the test).
    applied: BTreeMap<String, u64>,
    /// Inputs decided by a failed round, kept for the next one (level-triggered ones are
    /// re-read anyway; operator commands must not be lost).
    carried: Vec<Input>,
    last_snapshot: BTreeMap<(String, Target), Timestamp>,
    /// Targets whose snapshot waits for a commanded box to report after a start.
    held: std::collections::BTreeSet<(String, Target)>,
    /// When this driver started: commanded boxes get [`STALE_REPORT`] to report again.
    started: std::time::Instant,
}

impl Rounds {
    fn start(
        controller: Arc<Controller>,
        config: RoundConfig,
    ) -> Result<Rounds, gantry_driver::Error> {
        let mut rounds = Rounds {
            controller,
            driver: None,
            organisation_dir: config.organisation,
            fingerprint: Fingerprint::default(),
            last_reload: std::time::Instant::now(),
            plans: BTreeMap::new(),
            plan_hashes: BTreeMap::new(),
            region_zones: BTreeMap::new(),
            next_wake: None,
            applied: BTreeMap::new(),
            carried: Vec::new(),
            last_snapshot: BTreeMap::new(),
            held: Default::default(),
            started: std::time::Instant::now(),
        };
        if rounds.controller.fresh_store() {
            // A new controller starts with the organisation's pipelines in its first round.
            rounds.reload_organisation();
            rounds.restart(0)?;
        } else {
            // Resume from the store first; the organisation (slow to load for many pipelines)
            // is loaded and reconciled by the first round after the start.
            rounds.restart(0)?;
            rounds.last_reload = std::time::Instant::now() - RELOAD_INTERVAL;
        }
        crate::server::return_freed_memory();
        Ok(rounds)
    }

    fn now(&self) -> Timestamp {
        self.controller.now()
    }

    /// (Re)starts the driver on the store, past `seen_epoch`, and queues what it re-sends.
    fn restart(&mut self, seen_epoch: u64) -> Result<(), gantry_driver::Error> {
        let store = match self.driver.take() {
            Some(driver) => driver.into_store(),
            None => SharedStore(self.controller.clone()),
        };
        let now = self.now();
        // Only a store never committed to starts from these; the engine then owns them.
        let plans = std::mem::take(&mut self.plans);
        let zones = self.region_zones.clone();
        let fresh = || Engine::new(plans.into_values().collect(), zones);
        let (driver, started) = Driver::start(store, fresh, seen_epoch, now, None)?;
        self.controller.set_epoch(started.epoch);
        let mut commands: Vec<BoxCommand> = started
            .undelivered
            .iter()
            .filter_map(|command| match serde_json::from_slice::<Action>(&command.bytes) {
                Ok(Action::Deploy(command) | Action::RollBack(command)) => Some(command),
                _ => None,
            })
            .collect();
        commands.extend(driver.engine().outstanding_commands());
        self.controller.note_round(now, driver.engine().high_water().command_id);
        self.started = std::time::Instant::now();
        self.driver = Some(driver);
        self.applied.clear();
        // The engine starts without observations: snapshot every target again.
        self.last_snapshot.clear();
        self.controller.mark_all_targets_dirty();
        self.deliver(&started.round.actions, commands, now);
        self.sync_organisation();
        Ok(())
    }

    /// Sleeps until an input arrives, the engine's wake-up, or [`ROUND_TICK`].
    fn wait(&mut self) {
        let now = self.now();
        let until_wake = self
            .next_wake
            .map(|wake| wake.duration_since(now).unsigned_abs())
            .unwrap_or(ROUND_TICK)
            .min(ROUND_TICK);
        self.controller.wait_for_inputs(until_wake);
    }

    fn reload_organisation(&mut self) {
        let Some(directory) = self.organisation_dir.clone() else { return };
        let fingerprint = Fingerprint::of(&directory);
        if fingerprint == self.fingerprint {
            return;
        }
        self.fingerprint = fingerprint;
        let today = self.now().to_zoned(jiff::tz::TimeZone::UTC).date();
        match organisation::load(&directory, today) {
            Ok(organisation) => {
                tracing::info!(pipelines = organisation.plans.len(), "organisation loaded");
                self.region_zones = Engine::region_zones(&organisation.topology);
                self.plan_hashes = organisation
                    .plans
                    .iter()
                    .map(|(name, plan)| (name.clone(), plan_hash(plan)))
                    .collect();
                self.plans = organisation.plans.clone();
                self.controller.set_organisation(Ok(organisation));
                crate::server::return_freed_memory();
            }
            Err(refused) => {
                tracing::warn!(
                    files = refused.files.len(),
                    "organisation refused; keeping the last good one"
                );
                self.controller.set_organisation(Err(refused));
            }
        }
    }

    /// The inputs that bring the engine's pipelines in line with the organisation's.
    fn sync_organisation(&mut self) {
        let Some(driver) = &self.driver else { return };
        let engine = driver.engine();
        if !self.region_zones.is_empty() && engine.zones() != &self.region_zones {
            self.carried.push(Input::Topology { region_zones: self.region_zones.clone() });
        }
        let running: Vec<String> = engine.pipelines().map(|(name, _)| name.to_string()).collect();
        for name in &running {
            if let (false, Some(pipeline)) =
                (self.applied.contains_key(name), engine.pipeline(name))
            {
                self.applied.insert(name.clone(), plan_hash(&pipeline.plan));
            }
        }
        let mut missing = false;
        for (name, hash) in &self.plan_hashes {
            let is_running = running.contains(name);
            if is_running && self.applied.get(name) == Some(hash) {
                // The engine runs it (or has it waiting): its copy is the one kept.
                self.plans.remove(name);
                continue;
            }
            if !is_running && self.applied.get(name) == Some(hash) && !self.plans.contains_key(name)
            {
                continue; // Handed over; the round that adds it has not run yet.
            }
            let Some(plan) = self.plans.remove(name) else {
                // Handed over before and needed again (the engine was rebuilt from the store):
                // read the organisation again on the next reload.
                missing = true;
                continue;
            };
            let plan = Box::new(plan);
            self.carried.push(if is_running {
                Input::UpdatePlan { plan }
            } else {
                Input::AddPipeline { plan }
            });
            self.applied.insert(name.clone(), *hash);
        }
        if missing {
            self.fingerprint = Fingerprint::default();
        }
        // Only a loaded organisation says what to remove: on a start the engine resumes from
        // the store before the organisation is read, and must not drop its pipelines then.
        if self.organisation_dir.is_some() && self.controller.organisation().loaded_at.is_some() {
            for name in running {
                if !self.plan_hashes.contains_key(&name) {
                    self.carried.push(Input::RemovePipeline { pipeline: name.clone() });
                    self.applied.remove(&name);
                }
            }
        }
    }

    /// Fleet snapshots of every (service, target) with boxes whose reports changed (see the
    /// module documentation for what a snapshot holds and when it waits).
    fn fleet_inputs(&mut self, now: Timestamp) -> Vec<Input> {
        let mut dirty = self.controller.take_dirty_targets();
        dirty.append(&mut self.held);
        if dirty.is_empty() {
            return Vec::new();
        }
        let Some(driver) = &self.driver else { return Vec::new() };
        let engine = driver.engine();
        let settled = self.started.elapsed() >= STALE_REPORT;
        let stale = jiff::SignedDuration::try_from(STALE_REPORT).expect("a small duration");
        let agents = self.controller.agents.lock().expect("agents lock");
        let mut inputs = Vec::new();
        for (service, target) in dirty {
            // The boxes the engine keeps a record of here (they were commanded), per pipeline.
            let mut known: BTreeMap<
                gantry_engine::BoxId,
                Vec<(&str, &gantry_engine::BoxObservation)>,
            > = BTreeMap::new();
            for (name, pipeline) in engine.pipelines() {
                if pipeline.plan.service != service {
                    continue;
                }
                for (id, state) in pipeline.targets.get(&target).iter().flat_map(|t| &t.fleet.boxes)
                {
                    known.entry(id.clone()).or_default().push((name, &state.observation));
                }
            }
            let reported: Vec<_> = agents
                .boxes()
                .filter(|r| r.service == service && r.target == target && r.report.is_some())
                .collect();
            let silent: Vec<_> = known
                .iter()
                .filter(|(id, _)| !reported.iter().any(|r| r.box_id.0 == id.0))
                .collect();
            if !silent.is_empty() && !settled {
                // A commanded box not heard from since the start: left out, the engine would
                // forget its command; wait for it a little.
                self.held.insert((service, target));
                continue;
            }
            // Each box as of its own report: a report made before a command was issued says
            // nothing of it, however recent its neighbours' reports are.
            let mut boxes = Vec::new();
            for record in &reported {
                let fresh = record.reported_at.is_some_and(|at| now.duration_since(at) <= stale);
                let mut report = box_report(&record.box_id, record.report.as_ref(), fresh);
                report.observed_at = record.reported_at;
                boxes.push(report);
            }
            // Silent since the start: what the engine last knew, unhealthy.
            for (id, observations) in silent {
                boxes.push(gantry_engine::BoxReport {
                    id: id.clone(),
                    health: gantry_engine::Health::Unhealthy,
                    running: observations
                        .iter()
                        .filter_map(|(name, o)| Some((name.to_string(), o.running?)))
                        .collect(),
                    last_commands: observations
                        .iter()
                        .filter_map(|(name, o)| Some((name.to_string(), o.last_command.clone()?)))
                        .collect(),
                    in_progress: observations.iter().find_map(|(_, o)| o.in_progress),
                    observed_at: None,
                });
            }
            if boxes.is_empty() {
                continue;
            }
            let observed_at = now;
            let key = (service.clone(), target.clone());
            // The engine ignores a snapshot no newer than the last; keep them strictly newer.
            if self.last_snapshot.get(&key).is_some_and(|last| observed_at <= *last) {
                continue;
            }
            self.last_snapshot.insert(key, observed_at);
            inputs.push(Input::Fleet { service, target, observed_at, boxes });
        }
        inputs
    }

    /// One round: gather, decide, commit, then deliver.
    fn once(&mut self) {
        if self.last_reload.elapsed() >= RELOAD_INTERVAL {
            self.last_reload = std::time::Instant::now();
            self.reload_organisation();
            self.sync_organisation();
        }
        if let Some(seen) = self.controller.take_fence_request()
            && let Err(error) = self.restart(seen)
        {
            {
                tracing::error!(%error, "could not move past the epoch an agent reported");
                self.controller
                    .store_health
                    .record(Err(error.to_string()), &self.controller.metrics);
                return;
            }
        }
        let now = self.now();
        let mut inputs = std::mem::take(&mut self.carried);
        inputs.extend(self.controller.take_inputs());
        inputs.extend(self.fleet_inputs(now));
        let woken = self.next_wake.is_some_and(|wake| wake <= now);
        if inputs.is_empty() && !woken {
            return;
        }
        if inputs.is_empty() {
            inputs.push(Input::Tick);
        }
        // What is not re-read every round (operator commands, organisation changes) must
        // survive a failed commit.
        let once_only: Vec<Input> = inputs
            .iter()
            .filter(|input| !matches!(input, Input::Fleet { .. } | Input::Tick))
            .cloned()
            .collect();
        let driver = self.driver.as_mut().expect("the driver runs");
        match driver.round(now, inputs) {
            Ok(committed) => {
                self.controller.store_health.record(Ok(()), &self.controller.metrics);
                self.controller.metrics.rounds.inc();
                let high_water = driver.engine().high_water().command_id;
                self.controller.note_round(now, high_water);
                self.deliver(&committed.actions, Vec::new(), now);
            }
            Err(error) => {
                tracing::error!(%error, "a round's commit failed; nothing of it is delivered");
                self.controller
                    .store_health
                    .record(Err(error.to_string()), &self.controller.metrics);
                self.carried.extend(once_only);
                // Reports are re-read: snapshot every target again next round.
                self.last_snapshot.clear();
                self.controller.mark_all_targets_dirty();
                std::thread::sleep(COMMIT_RETRY);
            }
        }
    }

    /// Queues the committed round's box commands (and `also`, re-sent after a start) for the
    /// agents, and notes the engine's next wake-up.
    fn deliver(&mut self, actions: &[Action], also: Vec<BoxCommand>, now: Timestamp) {
        let mut commands = also;
        let mut wake: Option<Timestamp> = None;
        let mut verdicts = Vec::new();
        for action in actions {
            match action {
                Action::Deploy(command) => {
                    commands.push(command.clone());
                }
                Action::RollBack(command) => {
                    self.controller.metrics.rollbacks.inc();
                    commands.push(command.clone());
                }
                Action::WakeAt(at) => wake = Some(wake.map_or(*at, |w| w.min(*at))),
                Action::Notify(event) => {
                    self.controller.metrics.decisions.inc();
                    match event {
                        Event::CommandAccepted { id, summary, .. } => {
                            verdicts.push((id.clone(), Verdict::Accepted(summary.clone())));
                        }
                        Event::CommandRejected { id, reason, .. } => {
                            verdicts.push((id.clone(), Verdict::Rejected(reason.clone())));
                        }
                        _ => {}
                    }
                }
                Action::Page { .. } => {
                    self.controller.metrics.decisions.inc();
                }
                Action::RunTestGate { .. } => {}
            }
        }
        self.next_wake = wake;
        // Views first: a request answered with its verdict then reads what the verdict did.
        self.publish_views();
        for (id, verdict) in verdicts {
            self.controller.record_verdict(id, verdict);
        }
        if commands.is_empty() {
            return;
        }
        self.controller.metrics.commands_issued.inc_by(commands.len() as u64);
        let engine = self.driver.as_ref().map(Driver::engine);
        let mut agents = self.controller.agents.lock().expect("agents lock");
        for command in &commands {
            let plan = engine.and_then(|engine| engine.pipeline(&command.pipeline));
            agents.queue(agent_command(command, plan.map(|p| &*p.plan), now));
        }
        self.controller.metrics.outbox_depth.set(agents.depth() as i64);
        drop(agents);
        self.controller.commands_changed.notify_waiters();
    }

    /// Refreshes what the API shows of every pipeline.
    fn publish_views(&self) {
        let Some(driver) = &self.driver else { return };
        let engine = driver.engine();
        let views = engine
            .pipelines()
            .filter_map(|(name, pipeline)| {
                let status = engine.status(name)?;
                let artifacts = pipeline
                    .artifacts
                    .values()
                    .rev()
                    .map(|artifact| ArtifactView {
                        digest: artifact.digest,
                        sequence: artifact.sequence,
                        authors: artifact.authors().map(str::to_string).collect(),
                        unreviewed_commits: artifact
                            .unreviewed_commits()
                            .map(|c| c.id.clone())
                            .collect(),
                        deployable: artifact.deployable(),
                    })
                    .collect();
                let view = PipelineView {
                    pipeline: name.to_string(),
                    team: pipeline.plan.team.clone(),
                    service: pipeline.plan.service.clone(),
                    status,
                    artifacts,
                };
                Some((name.to_string(), view))
            })
            .collect();
        self.controller.set_pipeline_views(views);
    }
}
