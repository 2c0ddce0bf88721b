//! The engine's own tests: the inputs of a live organisation, boxes shared by pipelines, and the
//! records a step reports. Each test is data: a world, rounds of inputs, and the lines the
//! engine's decisions must contain in order, through one `check` helper.
//!
//! The harness plays ideal agents: a command is carried out at once and succeeds, every box is
//! healthy, alarms are OK unless a test forces one, and traffic serves plenty of data points.
//! It runs every step in checked mode: records the step did not report must be byte-identical
//! before and after it, and a step concerning one pipeline must report only that pipeline's
//! records.

use std::collections::{BTreeMap, BTreeSet};

use gantry_engine::fleet::{BoxId, BoxReport, CommandOutcome, Health};
use gantry_engine::input::{AlarmState, Input, OperatorCommand};
use gantry_engine::{Action, ArtifactReady, Commit, Digest, Engine, Event};
use gantry_model::pipeline::{
    AlarmBlockers, CodeReview, DeploymentStrategy, HostCount, Limits, Promotion, SourceKind,
    TimeWindows, UrgentPolicy,
};
use gantry_model::{Bake, Duration, OneBoxScope, Plan, Stage, StageKind, Step, StepKind, Target};
use gantry_store::{Change, RecordKey};
use jiff::{SignedDuration, Timestamp};

const START: &str = "2026-11-24T14:00:00Z";

/// A pipeline of `service` with one production wave per entry of `waves`, each a list of
/// (region, zones); every bake ten minutes.
fn plan(name: &str, service: &str, waves: &[&[(&str, u32)]], strategy: DeploymentStrategy) -> Plan {
    let bake = Bake { duration: Duration::from_minutes(10), data_points: BTreeMap::new() };
    let stages = waves
        .iter()
        .enumerate()
        .map(|(index, regions)| {
            let wave = format!("wave-{}", index + 1);
            let target = |region: &str, zone: u32| Target {
                environment: "prod".into(),
                region: region.into(),
                zone: Some(format!("{region}-az{zone}")),
                cell: None,
            };
            let mut steps = vec![Step {
                name: format!("{wave}/one-box"),
                kind: StepKind::OneBox,
                targets: regions.iter().map(|(region, _)| target(region, 1)).collect(),
                bake: bake.clone(),
                rollback_alarms: vec![format!("{service}-high-severity")],
                one_box_of: Some(OneBoxScope::Region),
            }];
            let zones = regions.iter().map(|(_, zones)| *zones).max().unwrap_or(1);
            for zone in 1..=zones {
                steps.push(Step {
                    name: format!("{wave}/zone-{zone}"),
                    kind: StepKind::Zone(zone),
                    targets: regions
                        .iter()
                        .filter(|(_, zones)| *zones >= zone)
                        .map(|(region, _)| target(region, zone))
                        .collect(),
                    bake: bake.clone(),
                    rollback_alarms: vec![format!("{service}-high-severity")],
                    one_box_of: None,
                });
            }
            Stage {
                name: wave,
                kind: StageKind::Wave { number: index as u32 + 1 },
                promotion: Promotion::Automatic,
                tests: Vec::new(),
                deployment: strategy.clone(),
                steps,
            }
        })
        .collect();
    Plan {
        pipeline: name.into(),
        team: "team-a".into(),
        service: service.into(),
        kind: SourceKind::Code,
        sources: Vec::new(),
        build_command: String::new(),
        build_network: false,
        code_review: CodeReview::Required,
        stages,
        alarm_blockers: AlarmBlockers::default(),
        time_windows: TimeWindows::default(),
        limits: Limits::default(),
        urgent: UrgentPolicy::default(),
    }
}

fn zones() -> BTreeMap<String, String> {
    ["r1", "r2", "r3"].iter().map(|r| (r.to_string(), "America/New_York".to_string())).collect()
}

/// One ideal box: what it runs per pipeline and how each pipeline's last command ended.
#[derive(Clone, Default)]
struct IdealBox {
    running: BTreeMap<String, Digest>,
    last: BTreeMap<String, CommandOutcome>,
    /// When it last carried out a command.
    acted_at: Option<Timestamp>,
    /// Reports unhealthy whatever it runs (broken before any deployment).
    broken: bool,
}

struct Harness {
    engine: Engine,
    now: Timestamp,
    /// Boxes per (service, target).
    boxes: BTreeMap<(String, Target), Vec<IdealBox>>,
    names: BTreeMap<Digest, String>,
    /// Alarms forced to a state, per (alarm, region).
    forced: BTreeMap<(String, String), AlarmState>,
    log: Vec<String>,
    stored: BTreeMap<RecordKey, Vec<u8>>,
    /// Agents report at their own pace: a box that carried out a command reports at once,
    /// the others' last reports are [`IDLE_REPORT_AGE`] old (older than the last round).
    idle_reports_lag: bool,
}

/// How old an idle box's last report is when reports lag: past the last round, still fresh.
const IDLE_REPORT_AGE: SignedDuration = SignedDuration::from_secs(90);

impl Harness {
    /// `boxes` per target; every pipeline's boxes start on its artifact 0.
    fn new(plans: Vec<Plan>, boxes: u32) -> Harness {
        let mut names = BTreeMap::new();
        let mut fleets: BTreeMap<(String, Target), Vec<IdealBox>> = BTreeMap::new();
        for plan in &plans {
            let initial = Digest::of(format!("{}-0", plan.pipeline).as_bytes());
            names.insert(initial, format!("{}-0", plan.pipeline));
            for target in plan.stages.iter().flat_map(|s| &s.steps).flat_map(|s| &s.targets) {
                let fleet = fleets
                    .entry((plan.service.clone(), target.clone()))
                    .or_insert_with(|| vec![IdealBox::default(); boxes as usize]);
                for ideal in fleet {
                    ideal.running.insert(plan.pipeline.clone(), initial);
                }
            }
        }
        let engine = Engine::new(plans, zones()).expect("valid plans");
        // A new engine has reported nothing: its first step reports every record.
        let stored = BTreeMap::new();
        let mut harness = Harness {
            engine,
            now: START.parse().unwrap(),
            boxes: fleets,
            names,
            forced: BTreeMap::new(),
            log: Vec::new(),
            stored,
            idle_reports_lag: false,
        };
        harness.round(vec![Input::ControllerStarted { epoch: 1 }]);
        harness
    }

    fn name(&self, digest: &Digest) -> String {
        self.names.get(digest).cloned().unwrap_or_else(|| digest.short())
    }

    /// Artifact `number` of `pipeline`, built after the one before.
    fn artifact(&mut self, pipeline: &str, number: u64) -> Input {
        let name = format!("{pipeline}-{number}");
        let digest = Digest::of(name.as_bytes());
        self.names.insert(digest, name.clone());
        Input::ArtifactReady {
            pipeline: pipeline.into(),
            artifact: ArtifactReady {
                digest,
                sequence: number,
                previous: number.checked_sub(1).filter(|previous| *previous > 0),
                commits: vec![Commit {
                    id: format!("{name}-commit"),
                    author: "dev".into(),
                    approvers: vec!["reviewer".into()],
                }],
                packages: Vec::new(),
                signature_verified: true,
            },
        }
    }

    fn operator(&self, id: &str, command: OperatorCommand) -> Input {
        Input::Operator { id: id.into(), by: "oncall".into(), command }
    }

    /// One step with `inputs`, checked: exactly the changed records reported, and only the
    /// concerned pipeline's when the inputs name one. Commands are carried out at once.
    fn round(&mut self, inputs: Vec<Input>) {
        let single: Option<String> = {
            let mut names = inputs.iter().map(Input::pipeline);
            let first = names.next().flatten().map(str::to_string);
            first.filter(|first| names.all(|name| name == Some(first.as_str())))
        };
        // The pipeline's records before the step too: removing it deletes them.
        let mut own: BTreeSet<RecordKey> =
            single.iter().flat_map(|pipeline| self.engine.records_of(pipeline)).collect();
        let outcome = self.engine.step_many(self.now, inputs);
        for change in &outcome.changed {
            match change {
                Change::Put { key, bytes } => {
                    assert!(self.stored.get(key) != Some(bytes), "{key} reported unchanged");
                    self.stored.insert(key.clone(), bytes.clone());
                }
                Change::Delete { key } => {
                    assert!(self.stored.remove(key).is_some(), "{key} deleted twice");
                }
            }
        }
        let now_held = self.engine.records();
        let differ: Vec<&RecordKey> = self
            .stored
            .keys()
            .chain(now_held.keys())
            .filter(|key| self.stored.get(*key) != now_held.get(*key))
            .collect();
        assert!(differ.is_empty(), "records changed without being reported: {differ:?}");
        if let Some(pipeline) = single {
            own.extend(self.engine.records_of(&pipeline));
            for change in &outcome.changed {
                assert!(own.contains(change.key()), "a {pipeline} step wrote {}", change.key());
            }
        }
        for action in outcome.actions {
            self.perform(action);
        }
    }

    fn perform(&mut self, action: Action) {
        match action {
            Action::Deploy(command) | Action::RollBack(command) => {
                self.log.push(format!(
                    "command {} {} {}: {:?} {}",
                    command.pipeline,
                    command.target,
                    command.box_id,
                    command.kind,
                    self.name(&command.artifact)
                ));
                let service = self.engine.pipeline(&command.pipeline).unwrap().plan.service.clone();
                let index: usize = command.box_id.0.trim_start_matches("box-").parse().unwrap();
                let ideal = &mut self.boxes.get_mut(&(service, command.target)).unwrap()[index];
                ideal.running.insert(command.pipeline.clone(), command.artifact);
                ideal.acted_at = Some(self.now);
                ideal.last.insert(
                    command.pipeline,
                    CommandOutcome { command: command.id, succeeded: true, detail: String::new() },
                );
            }
            Action::Notify(event) => {
                let line = self.describe(&event);
                self.log.push(line);
            }
            Action::Page { pipeline, target, reason } => {
                self.log.push(format!("page {pipeline} {target}: {reason}"));
            }
            Action::RunTestGate { .. } | Action::WakeAt(_) => {}
        }
    }

    fn describe(&self, event: &Event) -> String {
        let n = |digest: &Digest| self.name(digest);
        match event {
            Event::DeploymentStarted { pipeline, step, target, artifact, .. } => {
                format!("{pipeline} {step} {target}: deploying {}", n(artifact))
            }
            Event::DeploymentFailed { pipeline, step, target, artifact, reason, .. } => {
                format!("{pipeline} {step} {target}: {} failed: {reason}", n(artifact))
            }
            Event::StagePassed { pipeline, stage, artifact } => {
                format!("{pipeline} {stage}: {} passed", n(artifact))
            }
            Event::StageFailed { pipeline, stage, artifact, reason } => {
                format!("{pipeline} {stage}: {} failed: {reason}", n(artifact))
            }
            Event::RollbackStarted { pipeline, target, to, .. } => {
                format!("{pipeline} {target}: rolling back to {}", n(to))
            }
            Event::RollbackFinished { pipeline, target, to } => {
                format!("{pipeline} {target}: rolled back to {}", n(to))
            }
            Event::CommandAccepted { id, summary, .. } => format!("accepted {id}: {summary}"),
            Event::CommandRejected { id, reason, .. } => format!("refused {id}: {reason}"),
            Event::KnownGoodAdopted { pipeline, target, artifact } => {
                format!("{pipeline} {target}: adopted {} as known good", n(artifact))
            }
            Event::PlanVersionStarted { pipeline, version } => {
                format!("{pipeline}: plan version {version}")
            }
            other => format!("{other:?}"),
        }
    }

    /// A fleet of `boxes` per target that runs nothing yet, reported once.
    fn empty_fleet(plans: Vec<Plan>, boxes: u32) -> Harness {
        let mut harness = Harness::new(plans, boxes);
        for ideal in harness.boxes.values_mut().flatten() {
            ideal.running.clear();
        }
        harness.run(1);
        harness
    }

    /// What every agent and alarm reports now.
    fn observations(&mut self) -> Vec<Input> {
        let mut inputs = Vec::new();
        for ((service, target), boxes) in &self.boxes {
            let reports = boxes
                .iter()
                .enumerate()
                .map(|(index, ideal)| BoxReport {
                    id: BoxId(format!("box-{index}")),
                    health: if ideal.broken { Health::Unhealthy } else { Health::Healthy },
                    running: ideal.running.clone(),
                    last_commands: ideal.last.clone(),
                    in_progress: None,
                    observed_at: (self.idle_reports_lag
                        && ideal.acted_at.is_none_or(|at| at < self.now - IDLE_REPORT_AGE))
                    .then(|| self.now - IDLE_REPORT_AGE),
                })
                .collect();
            inputs.push(Input::Fleet {
                service: service.clone(),
                target: target.clone(),
                observed_at: self.now,
                boxes: reports,
            });
        }
        let mut alarms: BTreeSet<(String, String)> = BTreeSet::new();
        for (_, pipeline) in self.engine.pipelines() {
            for step in pipeline.plan.stages.iter().flat_map(|s| &s.steps) {
                for target in &step.targets {
                    for alarm in &step.rollback_alarms {
                        alarms.insert((alarm.clone(), target.region.clone()));
                    }
                }
            }
        }
        for (alarm, region) in alarms {
            let state = self.forced.get(&(alarm.clone(), region.clone())).copied();
            inputs.push(Input::Alarm {
                alarm,
                region: Some(region),
                state: state.unwrap_or(AlarmState::Ok),
                observed_at: self.now,
            });
        }
        inputs.push(Input::Tick);
        inputs
    }

    /// Rounds a minute apart for `minutes`, every agent and alarm reporting in each.
    fn run(&mut self, minutes: i64) {
        for _ in 0..minutes {
            self.now += SignedDuration::from_mins(1);
            let inputs = self.observations();
            self.round(inputs);
        }
    }

    /// One round at the current time with `inputs` and the observations.
    fn at_once(&mut self, inputs: Vec<Input>) {
        let mut all = inputs;
        all.extend(self.observations());
        self.round(all);
    }
}

/// Checks that each expected line is part of a logged line, in order.
fn check(harness: &Harness, expected: &[&str]) {
    let log = harness.log.join("\n");
    let mut lines = harness.log.iter();
    for want in expected {
        assert!(lines.any(|line| line.contains(want)), "log lacks (in order) {want:?}:\n{log}");
    }
}

fn check_never(harness: &Harness, unwanted: &str) {
    let log = harness.log.join("\n");
    assert!(!log.contains(unwanted), "log contains {unwanted:?}:\n{log}");
}

/// How many logged lines contain `wanted`.
fn count(harness: &Harness, wanted: &str) -> usize {
    harness.log.iter().filter(|line| line.contains(wanted)).count()
}

fn one_region() -> Plan {
    plan("api", "api", &[&[("r1", 2)]], DeploymentStrategy::default())
}

#[test]
fn a_pipeline_added_at_runtime_deploys_and_one_removed_stops_being_decided() {
    let mut h = Harness::new(vec![one_region()], 10);
    let worker = plan("worker", "worker", &[&[("r1", 1)]], DeploymentStrategy::default());
    h.boxes.insert(
        ("worker".into(), worker.stages[0].steps[0].targets[0].clone()),
        vec![
            IdealBox {
                running: [("worker".to_string(), Digest::of(b"worker-0"))].into(),
                ..IdealBox::default()
            };
            10
        ],
    );
    h.names.insert(Digest::of(b"worker-0"), "worker-0".into());
    h.round(vec![Input::AddPipeline { plan: Box::new(worker) }]);
    let artifact = h.artifact("worker", 1);
    h.at_once(vec![artifact]);
    h.run(60);
    let busy = h.artifact("worker", 2);
    h.at_once(vec![busy]);
    h.round(vec![Input::RemovePipeline { pipeline: "worker".into() }]);
    h.run(60);
    h.round(vec![Input::RemovePipeline { pipeline: "worker".into() }]);
    h.round(vec![Input::RemovePipeline { pipeline: "worker".into() }]);
    check(
        &h,
        &[
            "accepted add-worker: pipeline worker added",
            "worker wave-1/one-box prod/r1/r1-az1: deploying worker-1",
            "worker wave-1: worker-1 passed",
            "worker wave-1/one-box prod/r1/r1-az1: deploying worker-2",
            "refused remove-worker: worker is deploying; remove it once it is idle",
            "worker wave-1: worker-2 passed",
            "accepted remove-worker: pipeline worker removed",
            "refused remove-worker: no pipeline \"worker\"",
        ],
    );
    assert!(h.engine.pipeline("worker").is_none());
    assert!(
        !h.stored.keys().any(|key| key.key.starts_with("worker")),
        "the removed pipeline's records are deleted: {:?}",
        h.stored.keys().collect::<Vec<_>>()
    );
}

#[test]
fn a_plan_change_waits_for_the_artifact_in_flight_and_the_next_one_takes_it() {
    let mut h = Harness::new(vec![one_region()], 10);
    let first = h.artifact("api", 1);
    h.at_once(vec![first]);
    h.run(5);
    // Version 2 adds a wave in r2 while api-1 deploys in r1.
    let two_waves =
        plan("api", "api", &[&[("r1", 2)], &[("r2", 1)]], DeploymentStrategy::default());
    h.boxes.insert(
        ("api".into(), two_waves.stages[1].steps[0].targets[0].clone()),
        vec![
            IdealBox {
                running: [("api".to_string(), Digest::of(b"api-0"))].into(),
                ..IdealBox::default()
            };
            10
        ],
    );
    h.round(vec![Input::UpdatePlan { plan: Box::new(two_waves) }]);
    h.run(60);
    let second = h.artifact("api", 2);
    h.at_once(vec![second]);
    h.run(120);
    check(
        &h,
        &[
            "api wave-1/one-box prod/r1/r1-az1: deploying api-1",
            "accepted plan-api: plan version 2 accepted",
            "api wave-1: api-1 passed",
            "api: plan version 2",
            "api wave-1/one-box prod/r1/r1-az1: deploying api-2",
            "api wave-2/one-box prod/r2/r2-az1: deploying api-2",
            "api wave-2: api-2 passed",
        ],
    );
    check_never(&h, "wave-2/one-box prod/r2/r2-az1: deploying api-1");
}

#[test]
fn a_new_region_joins_every_pipeline_from_its_next_artifact() {
    let mut h = Harness::new(vec![one_region()], 10);
    let first = h.artifact("api", 1);
    h.at_once(vec![first]);
    // The topology gains r3 (already known to the engine's zones here), and the plan with it.
    let mut zones = zones();
    zones.insert("r4".into(), "Europe/Berlin".into());
    h.round(vec![Input::Topology { region_zones: zones }]);
    let wider = plan("api", "api", &[&[("r1", 2), ("r4", 1)]], DeploymentStrategy::default());
    h.boxes.insert(
        ("api".into(), wider.stages[0].steps[0].targets[1].clone()),
        vec![
            IdealBox {
                running: [("api".to_string(), Digest::of(b"api-0"))].into(),
                ..IdealBox::default()
            };
            10
        ],
    );
    h.round(vec![Input::UpdatePlan { plan: Box::new(wider) }]);
    h.run(60);
    let second = h.artifact("api", 2);
    h.at_once(vec![second]);
    h.run(60);
    check(
        &h,
        &[
            "accepted topology: topology of 4 regions",
            "api wave-1: api-1 passed",
            "api: plan version 2",
            "api wave-1/one-box prod/r4/r4-az1: deploying api-2",
            "api wave-1: api-2 passed",
        ],
    );
    check_never(&h, "prod/r4/r4-az1: deploying api-1");
}

#[test]
fn one_target_and_one_stage_roll_back_by_hand() {
    let mut h = Harness::new(vec![one_region()], 10);
    let first = h.artifact("api", 1);
    h.at_once(vec![first]);
    h.run(60);
    let second = h.artifact("api", 2);
    h.at_once(vec![second]);
    h.run(12);
    let zone1 = Target {
        environment: "prod".into(),
        region: "r1".into(),
        zone: Some("r1-az1".into()),
        cell: None,
    };
    let target = h.operator(
        "op-1",
        OperatorCommand::RollBackTarget {
            pipeline: "api".into(),
            target: zone1,
            reason: "latency".into(),
        },
    );
    h.at_once(vec![target]);
    h.run(10);
    let stage = h.operator(
        "op-2",
        OperatorCommand::RollBackStage {
            pipeline: "api".into(),
            stage: "wave-1".into(),
            reason: "errors".into(),
        },
    );
    h.at_once(vec![stage]);
    h.run(10);
    check(
        &h,
        &[
            "api wave-1: api-1 passed",
            "api wave-1/zone-1 prod/r1/r1-az1: deploying api-2",
            "accepted op-1: rolling prod/r1/r1-az1 back from",
            "api prod/r1/r1-az1: rolling back to api-1",
            "api wave-1: api-2 failed: rolled back by hand: latency",
            "api prod/r1/r1-az1: rolled back to api-1",
            "accepted op-2: rolling back",
            "api prod/r1/r1-az1: rolling back to api-0",
            "api prod/r1/r1-az2: rolling back to api-0",
            "api prod/r1/r1-az2: rolled back to api-0",
        ],
    );
}

#[test]
fn roll_forward_a_newer_artifact_replaces_a_failed_one_through_the_gates() {
    let mut h = Harness::new(vec![one_region()], 10);
    let first = h.artifact("api", 1);
    h.at_once(vec![first]);
    h.run(3);
    h.forced.insert(("api-high-severity".into(), "r1".into()), AlarmState::Alarm);
    h.run(10);
    h.forced.clear();
    h.run(5);
    let fix = h.artifact("api", 2);
    h.at_once(vec![fix]);
    h.run(60);
    check(
        &h,
        &[
            "api wave-1/one-box prod/r1/r1-az1: deploying api-1",
            "api prod/r1/r1-az1: rolling back to api-0",
            "api wave-1: api-1 failed",
            "api prod/r1/r1-az1: rolled back to api-0",
            "api wave-1/one-box prod/r1/r1-az1: deploying api-2",
            "api wave-1/zone-1 prod/r1/r1-az1: deploying api-2",
            "api wave-1: api-2 passed",
        ],
    );
}

#[test]
fn two_pipelines_on_one_target_never_take_it_below_its_floor_together() {
    // Code and config of one service on the same 10 boxes with a floor of 8: each alone may
    // take 2, so together they may never have more than 2 out of service.
    let strategy = DeploymentStrategy {
        batch_size: HostCount::hosts(2),
        minimum_healthy_hosts: HostCount::hosts(8),
        ..DeploymentStrategy::default()
    };
    let code = plan("shop-code", "shop", &[&[("r1", 1)]], strategy.clone());
    let config = plan("shop-config", "shop", &[&[("r1", 1)]], strategy);
    let mut h = Harness::new(vec![code, config], 10);
    let first = h.artifact("shop-code", 1);
    let second = h.artifact("shop-config", 1);
    h.at_once(vec![first, second]);
    // Every round: boxes commanded and not yet settled, by either pipeline, never exceed 2.
    for _ in 0..120 {
        h.now += SignedDuration::from_mins(1);
        let inputs = h.observations();
        let outcome = h.engine.step_many(h.now, inputs);
        let mut commanded: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for command in h.engine.outstanding_commands() {
            commanded.entry(command.box_id.0).or_default().push(command.pipeline);
        }
        assert!(
            commanded.len() <= 2,
            "{} boxes out of service at once: {commanded:?}",
            commanded.len()
        );
        assert!(
            commanded.values().all(|pipelines| pipelines.len() == 1),
            "a box given two pipelines' commands at once: {commanded:?}"
        );
        for change in outcome.changed {
            if let Change::Put { key, bytes } = change {
                h.stored.insert(key, bytes);
            }
        }
        for action in outcome.actions {
            h.perform(action);
        }
    }
    check(&h, &["shop-code wave-1: shop-code-1 passed"]);
    check(&h, &["shop-config wave-1: shop-config-1 passed"]);
}

#[test]
fn a_restarted_engine_from_its_records_decides_as_the_one_it_replaces() {
    let mut h = Harness::new(vec![one_region()], 10);
    let first = h.artifact("api", 1);
    h.at_once(vec![first]);
    h.run(15);
    let high_water = h.engine.high_water();
    let restored =
        Engine::from_records(&h.stored, gantry_engine::SCHEMA_VERSION, high_water).unwrap();
    assert_eq!(restored.records(), h.engine.records(), "the records are the whole state");
    h.engine = restored;
    h.round(vec![Input::ControllerStarted { epoch: 2 }]);
    h.run(60);
    check(&h, &["api wave-1: api-1 passed"]);
    let wrong = Engine::from_records(&h.stored, gantry_engine::SCHEMA_VERSION + 1, high_water);
    assert!(matches!(wrong, Err(gantry_engine::Error::SchemaVersion { .. })));
}

#[test]
fn a_box_another_pipeline_failed_to_move_is_not_capacity_for_either() {
    // Code and config of one service on 10 boxes with a floor of 8. Code's install fails on
    // box-0 and box-1: they keep the old code, so code counts them out of service, and config
    // may not count them either: together no more than 2 boxes are ever out of service.
    let strategy = DeploymentStrategy {
        batch_size: HostCount::hosts(2),
        minimum_healthy_hosts: HostCount::hosts(8),
        ..DeploymentStrategy::default()
    };
    let code = plan("shop-code", "shop", &[&[("r1", 1)]], strategy.clone());
    let config = plan("shop-config", "shop", &[&[("r1", 1)]], strategy);
    let mut h = Harness::new(vec![code, config], 10);
    let first = h.artifact("shop-code", 1);
    h.at_once(vec![first]);
    let mut second = Some(h.artifact("shop-config", 1));
    // Boxes whose last command of some pipeline failed, leaving them off its artifact.
    let mut failed: BTreeSet<String> = BTreeSet::new();
    for minute in 0..180 {
        h.now += SignedDuration::from_mins(1);
        let mut inputs = h.observations();
        if minute == 3 {
            inputs.extend(second.take());
        }
        let outcome = h.engine.step_many(h.now, inputs);
        let mut out: BTreeSet<String> = failed.clone();
        out.extend(h.engine.outstanding_commands().into_iter().map(|command| command.box_id.0));
        assert!(out.len() <= 2, "{} boxes out of service at once: {out:?}", out.len());
        for change in outcome.changed {
            if let Change::Put { key, bytes } = change {
                h.stored.insert(key, bytes);
            }
        }
        for action in outcome.actions {
            match action {
                Action::Deploy(command)
                    if command.pipeline == "shop-code"
                        && h.name(&command.artifact) == "shop-code-1"
                        && ["box-0", "box-1"].contains(&command.box_id.0.as_str()) =>
                {
                    let index: usize = command.box_id.0.trim_start_matches("box-").parse().unwrap();
                    let ideal =
                        &mut h.boxes.get_mut(&("shop".into(), command.target)).unwrap()[index];
                    ideal.last.insert(
                        command.pipeline,
                        CommandOutcome {
                            command: command.id,
                            succeeded: false,
                            detail: "install failed".into(),
                        },
                    );
                    failed.insert(command.box_id.0);
                }
                Action::Deploy(command) | Action::RollBack(command) => {
                    if command.pipeline == "shop-code" {
                        failed.remove(&command.box_id.0);
                    }
                    h.perform(Action::Deploy(command));
                }
                other => h.perform(other),
            }
        }
    }
}

/// The engine a controller restart builds from the stored records alone.
fn restart(h: &mut Harness, epoch: u64) {
    let high_water = h.engine.high_water();
    h.engine = Engine::from_records(&h.stored, gantry_engine::SCHEMA_VERSION, high_water).unwrap();
    h.round(vec![Input::ControllerStarted { epoch }]);
}

#[test]
fn a_restarted_engine_commands_no_box_before_its_target_reports_and_repeats_no_step() {
    // Restarts while the one box bakes, as zone 1 starts, and in the middle of zone 1. Box
    // reports are not stored, so until a target reports again its boxes are unknown: not
    // "running nothing" (to be repaired back to the old artifact), not out of service (to be
    // taken first at no cost), not failed.
    for minutes in [3, 12, 13, 14] {
        let mut h = Harness::new(vec![one_region()], 10);
        let first = h.artifact("api", 1);
        h.at_once(vec![first]);
        h.run(minutes);
        restart(&mut h, 2);
        let restarted = h.log.len();
        for _ in 0..3 {
            h.now += SignedDuration::from_mins(1);
            h.round(vec![Input::Tick]);
        }
        let before_reports = &h.log[restarted..];
        assert!(
            !before_reports.iter().any(|line| line.starts_with("command")),
            "restart after {minutes} min: commands before any report: {before_reports:#?}"
        );
        h.run(60);
        check(&h, &["api wave-1: api-1 passed"]);
        check_never(&h, "Repair");
        check_never(&h, "failed");
        for step in ["one-box", "zone-1", "zone-2"] {
            let started = format!("api wave-1/{step} prod/r1/r1-az");
            assert_eq!(count(&h, &started), 1, "restart after {minutes} min: {step} started again");
        }
    }
}

#[test]
fn a_target_adopts_what_its_boxes_run_though_one_was_broken_before_the_first_deployment() {
    // box-3 reports unhealthy from the start. The target still adopts shop-config-0 as known
    // good, so an alarm at the one box rolls the one box back to it rather than finding nothing
    // to roll back to; so does its code pipeline sharing the boxes.
    let code = plan("shop-code", "shop", &[&[("r1", 1)]], DeploymentStrategy::default());
    let config = plan("shop-config", "shop", &[&[("r1", 1)]], DeploymentStrategy::default());
    let mut h = Harness::new(vec![code, config], 10);
    for boxes in h.boxes.values_mut() {
        boxes[3].broken = true;
    }
    let first = h.artifact("shop-config", 1);
    h.at_once(vec![first]);
    h.run(2);
    h.forced.insert(("shop-high-severity".into(), "r1".into()), AlarmState::Alarm);
    h.run(5);
    check(
        &h,
        &[
            "shop-config prod/r1/r1-az1: adopted shop-config-0 as known good",
            "shop-config wave-1/one-box prod/r1/r1-az1: deploying shop-config-1",
            "shop-config prod/r1/r1-az1: rolling back to shop-config-0",
            "command shop-config prod/r1/r1-az1 box-0: RollBack shop-config-0",
        ],
    );
    check(&h, &["shop-code prod/r1/r1-az1: adopted shop-code-0 as known good"]);
    check_never(&h, "no known-good artifact");
}

#[test]
fn a_deployment_waits_until_its_target_runs_one_artifact_to_roll_back_to() {
    // box-9 was added and runs nothing yet, so the target has no known-good artifact: the
    // deployment waits for the repair that makes the target uniform, adopts it, then starts.
    let mut h = Harness::new(vec![one_region()], 10);
    for boxes in h.boxes.values_mut() {
        boxes[9].running.clear();
    }
    let first = h.artifact("api", 1);
    h.at_once(vec![first]);
    h.run(60);
    check(
        &h,
        &[
            "command api prod/r1/r1-az1 box-9: Repair api-0",
            "api prod/r1/r1-az1: adopted api-0 as known good",
            "api wave-1/one-box prod/r1/r1-az1: deploying api-1",
            "api wave-1: api-1 passed",
        ],
    );
}

#[test]
fn an_override_lasts_at_most_a_day() {
    let mut h = Harness::new(vec![one_region()], 10);
    let day = gantry_engine::limits::MAX_OVERRIDE_SECONDS;
    assert_eq!(day, 24 * 3600, "the operator API allows 24 hours; the engine the same");
    for (id, lasts) in [("op-day", day), ("op-longer", day + 1), ("op-hour", 3600)] {
        let command = OperatorCommand::Override {
            pipeline: "api".into(),
            blocker: gantry_engine::BlockerKind::TimeWindow,
            stage: None,
            region: None,
            reason: "a fix across the night".into(),
            expires_at: h.now + SignedDuration::from_secs(lasts),
        };
        let input = h.operator(id, command);
        h.round(vec![input]);
    }
    check(
        &h,
        &[
            "accepted op-day: override of TimeWindow",
            "refused op-longer: an override lasts at most 24 hours",
            "accepted op-hour: override of TimeWindow",
        ],
    );
}

#[test]
fn a_box_that_reported_after_its_command_counts_however_old_its_neighbours_reports_are() {
    // Each box's report is as old as it is: the one box reports its deployment at once while
    // its neighbours last reported before the command was issued. Stamping the whole snapshot
    // with its oldest report would read the one box as not yet done, and fail it.
    let mut h = Harness::new(vec![one_region()], 10);
    h.idle_reports_lag = true;
    let first = h.artifact("api", 1);
    h.at_once(vec![first]);
    h.run(90);
    check(&h, &["api wave-1/one-box prod/r1/r1-az1: deploying api-1", "api wave-1: api-1 passed"]);
    check_never(&h, "failed");
}

#[test]
fn a_first_deployment_to_boxes_that_run_nothing_goes_on_past_its_one_box() {
    // A new fleet runs nothing: nothing is known good anywhere. The one box takes the first
    // artifact; the zone step after it on the same target must not wait for a known-good
    // artifact that can never exist (the only one there is the stage's own).
    let mut h = Harness::empty_fleet(vec![one_region()], 10);
    let first = h.artifact("api", 1);
    h.at_once(vec![first]);
    h.run(90);
    check(
        &h,
        &[
            "api wave-1/one-box prod/r1/r1-az1: deploying api-1",
            "api wave-1/zone-1 prod/r1/r1-az1: deploying api-1",
            "api wave-1: api-1 passed",
        ],
    );
}

#[test]
fn on_a_fleet_that_started_empty_a_bad_change_rolls_back_its_one_box_to_the_first_good_one() {
    let mut h = Harness::empty_fleet(vec![one_region()], 10);
    let good = h.artifact("api", 1);
    h.at_once(vec![good]);
    h.run(120);
    let bad = h.artifact("api", 2);
    h.at_once(vec![bad]);
    h.run(3);
    h.forced.insert(("api-high-severity".into(), "r1".into()), AlarmState::Alarm);
    h.run(10);
    check(
        &h,
        &[
            "api wave-1: api-1 passed",
            "api wave-1/one-box prod/r1/r1-az1: deploying api-2",
            "api prod/r1/r1-az1: rolling back to api-1",
            "api prod/r1/r1-az1: rolled back to api-1",
        ],
    );
}
