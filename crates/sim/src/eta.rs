//! What-if ETA: when a change entering a pipeline now reaches each stage and region, and what
//! it waits for longest.
//!
//! The engine itself computes it, under a virtual clock that jumps from one wake-up to the next
//! (no polling): an ideal fleet where every install takes [`INSTALL_TIME`] and succeeds, every
//! alarm is OK, every test gate passes after [`TEST_TIME`], and traffic always meets the bake's
//! data-point minimums. What remains is what the pipeline itself imposes: batches, bakes, time
//! windows, holidays, manual approvals (given at once here) and the order of waves.

use std::collections::BTreeMap;

use gantry_engine::fleet::{BoxId, BoxObservation, CommandOutcome, Health};
use gantry_engine::input::{AlarmState, Input, OperatorCommand};
use gantry_engine::{Action, ArtifactReady, BlockerKind, Commit, Digest, Engine, Event};
use gantry_model::{Plan, Target};
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

/// How long one box takes to install an artifact and pass its health checks.
pub const INSTALL_TIME: SignedDuration = SignedDuration::from_secs(180);
/// How long a test gate runs.
pub const TEST_TIME: SignedDuration = SignedDuration::from_secs(600);
/// Boxes per target in the ideal fleet: enough for a one-box of at most 10% of traffic.
pub const BOXES_PER_TARGET: u32 = 10;
/// The most wake-ups an ETA follows; a pipeline needing more is reported unfinished.
pub const MAX_WAKE_UPS: usize = 20_000;

/// Why an ETA could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the engine refuses the plan: {0}")]
    Plan(#[from] gantry_engine::Error),
    #[error(
        "the change does not finish within {MAX_WAKE_UPS} wake-ups; last seen at {at}: {stuck}"
    )]
    Unfinished { at: Timestamp, stuck: String },
}

#[derive(Clone, Debug, Serialize)]
pub struct Eta {
    pub start: Timestamp,
    /// When the change passed each stage, in order.
    pub stages: Vec<(String, Timestamp)>,
    /// When each production region finished its last step.
    pub regions: BTreeMap<String, Timestamp>,
    pub finish: Timestamp,
    pub total: SignedDuration,
    /// The longest waits on blockers, longest first: (what, from, to).
    pub waits: Vec<Wait>,
    /// Every decision the engine made on the way, one line each.
    pub timeline: Vec<String>,
    /// Engine steps the computation took.
    pub engine_steps: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Wait {
    pub what: String,
    pub from: Timestamp,
    pub to: Timestamp,
    pub hours: f64,
}

/// What an ideal box runs and how its last command ended.
type IdealBox = (Option<Digest>, Option<CommandOutcome>);

/// Computes when a change entering `plan` at `start` reaches every stage and region.
pub fn eta(
    plan: &Plan,
    region_zones: &BTreeMap<String, String>,
    start: Timestamp,
) -> Result<Eta, Error> {
    let mut engine = Engine::new(vec![plan.clone()], region_zones.clone())?;
    let name = plan.pipeline.clone();
    let base = Digest("sha256:running-now".into());
    let change = Digest("sha256:the-change".into());
    let targets: Vec<Target> = plan
        .stages
        .iter()
        .flat_map(|stage| &stage.steps)
        .flat_map(|step| step.targets.iter().cloned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    // What each box runs, and installs finishing at a time.
    let mut fleet: BTreeMap<Target, Vec<IdealBox>> = targets
        .iter()
        .map(|t| (t.clone(), vec![(Some(base.clone()), None); BOXES_PER_TARGET as usize]))
        .collect();
    let mut installs: Vec<(Timestamp, Target, usize, Digest, gantry_engine::CommandId)> =
        Vec::new();
    let mut gates: Vec<(Timestamp, gantry_engine::CommandId)> = Vec::new();
    let mut alarms: Vec<(String, Option<String>)> = Vec::new();
    for stage in &plan.stages {
        for step in &stage.steps {
            for alarm in gantry_engine::engine::rollback_alarms(plan, stage, step) {
                for target in &step.targets {
                    alarms.push((alarm.clone(), Some(target.region.clone())));
                }
            }
        }
    }
    for alarm in plan.alarm_blockers.team.iter().chain(&plan.alarm_blockers.organisation) {
        for region in region_zones.keys() {
            alarms.push((alarm.clone(), Some(region.clone())));
        }
    }
    alarms.sort();
    alarms.dedup();
    let metrics: Vec<String> = plan
        .stages
        .iter()
        .flat_map(|stage| &stage.steps)
        .flat_map(|step| step.bake.data_points.keys().cloned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();

    let mut now = start;
    let mut wake: Option<Timestamp> = None;
    let mut report = Eta {
        start,
        stages: Vec::new(),
        regions: BTreeMap::new(),
        finish: start,
        total: SignedDuration::ZERO,
        waits: Vec::new(),
        timeline: Vec::new(),
        engine_steps: 0,
    };
    let mut blocked_since: BTreeMap<(Target, String), (Timestamp, String)> = BTreeMap::new();
    let steps = std::cell::Cell::new(0u64);
    let step = |engine: &mut Engine, now: Timestamp, input: Input, pending: &mut Vec<Action>| {
        steps.set(steps.get() + 1);
        pending.extend(engine.step(now, input));
    };
    let mut actions = Vec::new();
    step(&mut engine, now, Input::ControllerStarted { epoch: 1 }, &mut actions);
    let ready = ArtifactReady {
        digest: change.clone(),
        sequence: 1,
        previous: None,
        commits: vec![Commit {
            id: "the-change".into(),
            author: "author".into(),
            approvers: vec!["reviewer".into()],
        }],
        packages: Vec::new(),
        signature_verified: true,
    };
    let last_stage = plan.stages.last().map(|stage| stage.name.clone());
    // When each alarm and target was last reported, so only stale ones are reported again
    // (the engine treats alarms older than three minutes and boxes older than two as unknown).
    let alarm_refresh = SignedDuration::from_secs(150);
    let fleet_refresh = SignedDuration::from_secs(100);
    let mut alarm_fed: Option<Timestamp> = None;
    let mut fleet_fed: BTreeMap<Target, Timestamp> = BTreeMap::new();
    for metric in &metrics {
        for target in &targets {
            let input = Input::DataPoints {
                pipeline: name.clone(),
                target: target.clone(),
                artifact: change.clone(),
                metric: metric.clone(),
                count: u64::MAX / 2,
                observed_at: now,
            };
            step(&mut engine, now, input, &mut actions);
        }
    }
    for _ in 0..MAX_WAKE_UPS {
        // Finish what is due, then report what changed or went stale.
        let mut changed: std::collections::BTreeSet<Target> = std::collections::BTreeSet::new();
        installs.retain(|(at, target, index, artifact, command)| {
            if *at > now {
                return true;
            }
            fleet.get_mut(target).expect("known target")[*index] = (
                Some(artifact.clone()),
                Some(CommandOutcome { command: *command, succeeded: true, detail: String::new() }),
            );
            changed.insert(target.clone());
            false
        });
        let due: Vec<gantry_engine::CommandId> =
            gates.iter().filter(|(at, _)| *at <= now).map(|(_, id)| *id).collect();
        gates.retain(|(at, _)| *at > now);
        for command in due {
            step(
                &mut engine,
                now,
                Input::TestGateResult {
                    pipeline: name.clone(),
                    command,
                    passed: true,
                    detail: String::new(),
                },
                &mut actions,
            );
        }
        if alarm_fed.is_none_or(|at| now.duration_since(at) >= alarm_refresh) {
            alarm_fed = Some(now);
            for (alarm, region) in &alarms {
                let input = Input::Alarm {
                    alarm: alarm.clone(),
                    region: region.clone(),
                    state: AlarmState::Ok,
                    observed_at: now,
                };
                step(&mut engine, now, input, &mut actions);
            }
        }
        if now == start {
            step(
                &mut engine,
                now,
                Input::ArtifactReady { pipeline: name.clone(), artifact: ready.clone() },
                &mut actions,
            );
        }
        step(&mut engine, now, Input::Tick, &mut actions);
        // Only targets of a step in progress need fresh observations.
        let active: std::collections::BTreeSet<Target> = engine.pipelines[&name]
            .stages
            .iter()
            .filter_map(|state| match &state.run {
                Some(gantry_engine::state::StageRun {
                    phase: gantry_engine::state::StagePhase::Step { targets, .. },
                    ..
                }) => Some(targets.keys()),
                _ => None,
            })
            .flatten()
            .cloned()
            .collect();
        for (target, boxes) in &fleet {
            let stale =
                fleet_fed.get(target).is_none_or(|at| now.duration_since(*at) >= fleet_refresh);
            let needed = changed.contains(target) || (stale && active.contains(target));
            if !needed {
                continue;
            }
            fleet_fed.insert(target.clone(), now);
            let observations = boxes
                .iter()
                .enumerate()
                .map(|(index, (running, outcome))| BoxObservation {
                    id: BoxId(format!("box-{index}")),
                    running: running.clone(),
                    health: Health::Healthy,
                    last_command: outcome.clone(),
                })
                .collect();
            step(
                &mut engine,
                now,
                Input::Fleet {
                    pipeline: name.clone(),
                    target: target.clone(),
                    observed_at: now,
                    boxes: observations,
                },
                &mut actions,
            );
        }
        let mut approvals = Vec::new();
        for action in actions.drain(..) {
            match action {
                Action::Deploy(command) | Action::RollBack(command) => {
                    let index: usize =
                        command.box_id.0.trim_start_matches("box-").parse().expect("our box ids");
                    // Agents apply a command id once: a re-sent command changes nothing.
                    let known = installs.iter().any(|(.., id)| *id == command.id)
                        || fleet[&command.target][index]
                            .1
                            .as_ref()
                            .is_some_and(|outcome| outcome.command == command.id);
                    if !known {
                        installs.retain(|(_, target, i, _, _)| {
                            !(target == &command.target && *i == index)
                        });
                        installs.push((
                            now + INSTALL_TIME,
                            command.target,
                            index,
                            command.artifact,
                            command.id,
                        ));
                    }
                }
                Action::RunTestGate { id, .. } => gates.push((now + TEST_TIME, id)),
                Action::WakeAt(at) => wake = Some(wake.map_or(at, |w: Timestamp| w.min(at))),
                Action::Notify(event) => {
                    if let Some(line) = crate::timeline::describe(&event) {
                        report.timeline.push(format!("{} {line}", crate::timeline::when(now)));
                    }
                    match event {
                        Event::StagePassed { stage, .. } => {
                            report.stages.push((stage.clone(), now));
                            report.finish = now;
                            if Some(&stage) == last_stage.as_ref() {
                                report.total = now.duration_since(start);
                                report.engine_steps = steps.get();
                                report.waits.sort_by(|a, b| b.hours.total_cmp(&a.hours));
                                return Ok(report);
                            }
                        }
                        Event::StepBaked { step: step_name, .. } => {
                            let regions = plan
                                .stages
                                .iter()
                                .flat_map(|stage| &stage.steps)
                                .filter(|s| {
                                    s.name == step_name
                                        && s.targets.iter().all(|t| t.environment == "prod")
                                })
                                .flat_map(|s| s.targets.iter().map(|t| t.region.clone()));
                            for region in regions.collect::<Vec<_>>() {
                                report.regions.insert(region, now);
                            }
                        }
                        Event::AwaitingApproval { stage, artifact, .. } => {
                            approvals.push(OperatorCommand::Approve {
                                pipeline: name.clone(),
                                stage,
                                artifact,
                            });
                        }
                        Event::Blocked { target, blockers, .. } => {
                            for blocker in &blockers {
                                let key = (target.clone(), format!("{:?}", blocker.kind));
                                blocked_since.entry(key).or_insert((
                                    now,
                                    describe_wait(blocker, region_zones.get(&target.region)),
                                ));
                            }
                            let open: Vec<(Target, String)> = blocked_since
                                .keys()
                                .filter(|(t, kind)| {
                                    t == &target
                                        && !blockers
                                            .iter()
                                            .any(|b| &format!("{:?}", b.kind) == kind)
                                })
                                .cloned()
                                .collect();
                            for key in open {
                                let (from, what) = blocked_since.remove(&key).expect("listed");
                                if now > from && key.1 != format!("{:?}", BlockerKind::TeamAlarm) {
                                    let hours = now.duration_since(from).as_secs_f64() / 3600.0;
                                    report.waits.push(Wait {
                                        what: format!("{}: {what}", key.0.region),
                                        from,
                                        to: now,
                                        hours,
                                    });
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        // Approvals are given at once; their consequences are read at the same instant.
        let approved = !approvals.is_empty();
        for (number, command) in approvals.into_iter().enumerate() {
            let input = Input::Operator {
                id: format!("eta-approval-{number}-{now}"),
                by: "eta".into(),
                command,
            };
            step(&mut engine, now, input, &mut actions);
        }
        // A step that started in this instant needs its targets' observations now.
        let newly_active = engine.pipelines[&name].stages.iter().any(|state| match &state.run {
            Some(gantry_engine::state::StageRun {
                phase: gantry_engine::state::StagePhase::Step { targets, .. },
                ..
            }) => targets.keys().any(|target| {
                fleet_fed.get(target).is_none_or(|at| now.duration_since(*at) >= fleet_refresh)
            }),
            _ => false,
        });
        if approved || newly_active {
            continue;
        }
        let next_install = installs.iter().map(|(at, ..)| *at).min();
        let next_gate = gates.iter().map(|(at, _)| *at).min();
        let next = [wake.take(), next_install, next_gate]
            .into_iter()
            .flatten()
            .filter(|at| *at > now)
            .min();
        match next {
            Some(at) => now = at,
            None => break,
        }
    }
    let recent = report.timeline.iter().rev().take(5).rev().cloned().collect::<Vec<_>>().join("\n");
    Err(Error::Unfinished { at: now, stuck: recent })
}

/// "Saturday–Sunday closed" style descriptions of a blocker, in the region's zone.
fn describe_wait(blocker: &gantry_engine::Blocker, zone: Option<&String>) -> String {
    match (blocker.kind, blocker.clears_at, zone) {
        (BlockerKind::TimeWindow, Some(clears), Some(zone)) => {
            let tz = jiff::tz::TimeZone::get(zone).unwrap_or(jiff::tz::TimeZone::UTC);
            let until = clears.to_zoned(tz);
            format!("{} until {}", blocker.reason, until.strftime("%a %H:%M %Z"))
        }
        _ => blocker.reason.clone(),
    }
}
