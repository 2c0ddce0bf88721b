//! What-if ETA: when a change entering a pipeline now reaches each stage and region, and what
//! it waits for longest.
//!
//! The engine itself computes it, under a virtual clock that jumps from one wake-up to the next
//! (no polling): an ideal fleet where every install takes [`INSTALL_TIME`] and succeeds, every
//! alarm is OK, every test gate passes after [`TEST_TIME`], and traffic always meets the bake's
//! data-point minimums. What remains is what the pipeline itself imposes: batches, bakes, time
//! windows, holidays, manual approvals (given at once here) and the order of waves.
//!
//! Each wake-up is one round of the [`Driver`](crate::Driver), as a controller runs it: what
//! finished and what the engine needs fresh ([`Engine::needs_observing`]: the boxes of
//! deployments in progress or free to start, the data points of bakes, the alarms of their
//! regions) is reported, then the engine decides once. A lane held by a window gets nothing
//! until the window opens; the engine wakes itself then. Nothing of a what-if is worth
//! keeping, so its engine reports no records ([`Engine::without_records`]) and its store is
//! in memory.

use std::collections::{BTreeMap, BTreeSet};

use gantry_engine::fleet::{BoxId, BoxReport, CommandId, CommandOutcome, Health};
use gantry_engine::input::{AlarmState, Input, OperatorCommand};
use gantry_engine::windows::{Closure, CompiledWindows};
use gantry_engine::{Action, ArtifactReady, BlockerKind, Commit, Digest, Engine, Event};
use gantry_model::{Plan, Target};
use gantry_store::MemoryStore;

use crate::Driver;
use crate::timeline::Names;
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

/// How long one box takes to install an artifact and pass its health checks.
pub const INSTALL_TIME: SignedDuration = SignedDuration::from_secs(180);
/// How long a test gate runs.
pub const TEST_TIME: SignedDuration = SignedDuration::from_secs(600);
/// Boxes per target in the ideal fleet at least: enough for any capacity floor below 90% to
/// leave a box to take. A one-box step's scope gets more when its share needs them
/// ([`gantry_model::plan::fewest_boxes_for_one_box`]).
pub const BOXES_PER_TARGET: u32 = 10;
/// Data points the ideal traffic serves per second on every target: far more than any bake's
/// minimum once the bake has lasted a second.
pub const DATA_POINTS_PER_SECOND: u64 = 1_000_000;
/// The most wake-ups an ETA follows; a pipeline needing more is reported unfinished.
pub const MAX_WAKE_UPS: usize = 20_000;

/// Why an ETA could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the engine refuses the plan: {0}")]
    Plan(#[from] gantry_engine::Error),
    #[error("the round driver failed: {0}")]
    Driver(#[from] crate::Error),
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
    /// Weekdays (Monday to Friday, UTC) from the start's to the finish's, both counted: a
    /// change entering Monday and done on Thursday took 4 business days.
    pub business_days: u32,
    /// The longest waits on blockers, longest first: (what, from, to).
    pub waits: Vec<Wait>,
    /// Every decision the engine made on the way, one line each.
    pub timeline: Vec<String>,
    /// Rounds the computation took: one `Engine::step_many` each.
    pub engine_steps: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Wait {
    pub region: String,
    pub kind: BlockerKind,
    pub what: String,
    pub from: Timestamp,
    pub to: Timestamp,
    pub hours: f64,
}

/// What an ideal box runs, how its last command ended, and the command it is carrying out.
#[derive(Clone)]
struct IdealBox {
    running: Option<Digest>,
    last: Option<CommandOutcome>,
    installing: Option<CommandId>,
}

/// An install in progress on an ideal box: when it finishes, where, and what.
struct Install {
    at: Timestamp,
    target: Target,
    index: usize,
    artifact: Digest,
    command: CommandId,
}

/// Boxes per target of the ideal fleet: at least [`BOXES_PER_TARGET`], and enough that every
/// one-box step's box takes at most its share of the scope it stands for.
fn boxes_per_target(plan: &Plan) -> BTreeMap<Target, u32> {
    let mut boxes: BTreeMap<Target, u32> = BTreeMap::new();
    for stage in &plan.stages {
        let fewest = gantry_model::plan::fewest_boxes_for_one_box(stage.deployment.one_box_percent);
        for step in &stage.steps {
            for target in &step.targets {
                let mut needed = BOXES_PER_TARGET;
                if step.kind == gantry_model::StepKind::OneBox {
                    // The region's targets of the stage share the scope when the step stands
                    // for its region.
                    let sharing = match step.one_box_of {
                        Some(gantry_model::OneBoxScope::Region) => stage
                            .steps
                            .iter()
                            .flat_map(|step| &step.targets)
                            .filter(|other| other.region == target.region)
                            .collect::<BTreeSet<_>>()
                            .len()
                            as u32,
                        _ => 1,
                    };
                    needed = needed.max(fewest.div_ceil(sharing.max(1)));
                }
                let entry = boxes.entry(target.clone()).or_default();
                *entry = (*entry).max(needed);
            }
        }
    }
    boxes
}

/// Computes when a change entering `plan` at `start` reaches every stage and region.
pub fn eta(
    plan: &Plan,
    region_zones: &BTreeMap<String, String>,
    start: Timestamp,
) -> Result<Eta, Error> {
    let mut names = Names::default();
    let base = names.artifact("running-now");
    let change = names.artifact("the-change");
    let name = plan.pipeline.clone();
    let service = plan.service.clone();
    let sizes = boxes_per_target(plan);
    let mut fleet: BTreeMap<Target, Vec<IdealBox>> = sizes
        .iter()
        .map(|(t, size)| {
            let ideal = IdealBox { running: Some(base), last: None, installing: None };
            (t.clone(), vec![ideal; *size as usize])
        })
        .collect();
    // Every alarm the engine reads, per region: rollback alarms and alarm blockers.
    let mut alarms: BTreeMap<&str, BTreeSet<&String>> = BTreeMap::new();
    for stage in &plan.stages {
        for step in &stage.steps {
            for target in &step.targets {
                let region = alarms.entry(target.region.as_str()).or_default();
                region.extend(gantry_engine::engine::rollback_alarms(plan, stage, step));
                region.extend(&plan.alarm_blockers.team);
                region.extend(&plan.alarm_blockers.organisation);
            }
        }
    }
    let metrics: BTreeSet<&String> = plan
        .stages
        .iter()
        .flat_map(|stage| &stage.steps)
        .flat_map(|step| step.bake.data_points.keys())
        .collect();

    let mut report = Eta {
        start,
        stages: Vec::new(),
        regions: BTreeMap::new(),
        finish: start,
        total: SignedDuration::ZERO,
        business_days: 0,
        waits: Vec::new(),
        timeline: Vec::new(),
        engine_steps: 0,
    };
    let last_stage = plan.stages.last().map(|stage| stage.name.clone());
    let mut blocked_since: BTreeMap<(Target, BlockerKind), (Timestamp, String)> = BTreeMap::new();
    let mut installs: Vec<Install> = Vec::new();
    // Targets whose installs finished since they were last reported.
    let mut changed: BTreeSet<Target> = BTreeSet::new();
    let mut gates: Vec<(Timestamp, CommandId)> = Vec::new();
    // When alarms and each target were last reported: only stale ones are reported again (the
    // engine treats alarms older than three minutes and boxes older than two as unknown).
    let alarm_refresh = SignedDuration::from_secs(150);
    let fleet_refresh = SignedDuration::from_secs(100);
    let mut alarm_fed: BTreeMap<String, Timestamp> = BTreeMap::new();
    let box_ids: Vec<BoxId> = (0..sizes.values().copied().max().unwrap_or(BOXES_PER_TARGET))
        .map(|index| BoxId(format!("box-{index}")))
        .collect();
    let mut fleet_fed: BTreeMap<Target, Timestamp> = BTreeMap::new();

    let fresh = || {
        let engine = Engine::new(vec![plan.clone()], region_zones.clone())?;
        Ok(engine.without_records())
    };
    let (mut driver, started) = Driver::start(MemoryStore::new(), fresh, 0, start, None)?;
    let mut pending_actions = started.round.actions;
    // The change arrives.
    let mut inputs = vec![Input::ArtifactReady {
        pipeline: name.clone(),
        artifact: ArtifactReady {
            digest: change,
            sequence: 1,
            previous: None,
            commits: vec![Commit {
                id: "the-change".into(),
                author: "author".into(),
                approvers: vec!["reviewer".into()],
            }],
            packages: Vec::new(),
            signature_verified: true,
        },
    }];
    let mut now = start;
    // What needs fresh reports, as of `watched_at`: the watch a round ends with is the next
    // round's when no time passed in between (nothing else moves the engine).
    let mut watch = driver.engine().needs_observing(now);
    let mut watched_at = now;
    for round in 0..MAX_WAKE_UPS {
        // Finish what is due, then report what changed or went stale, all in one round.
        installs.retain(|install| {
            if install.at > now {
                return true;
            }
            fleet.get_mut(&install.target).expect("known target")[install.index] = IdealBox {
                running: Some(install.artifact),
                last: Some(CommandOutcome {
                    command: install.command,
                    succeeded: true,
                    detail: String::new(),
                }),
                installing: None,
            };
            changed.insert(install.target.clone());
            false
        });
        gates.retain(|(at, command)| {
            if *at > now {
                return true;
            }
            inputs.push(Input::TestGateResult {
                pipeline: name.clone(),
                command: *command,
                passed: true,
                detail: String::new(),
            });
            false
        });
        // Only the regions and targets of steps in progress need fresh readings.
        if watched_at != now {
            watch = driver.engine().needs_observing(now);
        }
        for region in &watch.alarm_regions {
            alarm_fed.insert(region.clone(), now);
            for alarm in alarms.get(region.as_str()).into_iter().flatten() {
                inputs.push(Input::Alarm {
                    alarm: (*alarm).clone(),
                    region: Some(region.clone()),
                    state: AlarmState::Ok,
                    observed_at: now,
                });
            }
        }
        // Traffic meets every bake's minimums: cumulative counts, growing by the second.
        let served = (now.duration_since(start).as_secs().max(0) as u64 + 1)
            .saturating_mul(DATA_POINTS_PER_SECOND);
        for (_, target) in &watch.data_points {
            for metric in &metrics {
                inputs.push(Input::DataPoints {
                    pipeline: name.clone(),
                    target: target.clone(),
                    artifact: change,
                    metric: (*metric).clone(),
                    count: served,
                    observed_at: now,
                });
            }
        }
        // Targets whose boxes changed, and targets in progress whose report went stale.
        let stale = |target: &Target| {
            fleet_fed.get(target).is_none_or(|at| now.duration_since(*at) >= fleet_refresh)
        };
        let due: BTreeSet<Target> = std::mem::take(&mut changed)
            .into_iter()
            .chain(watch.fleets.iter().map(|(_, target)| target).filter(|t| stale(t)).cloned())
            .collect();
        for target in due {
            fleet_fed.insert(target.clone(), now);
            inputs.push(Input::Fleet {
                service: service.clone(),
                boxes: observe(&name, &fleet[&target], &box_ids),
                target,
                observed_at: now,
            });
        }
        inputs.push(Input::Tick);
        report.engine_steps = round as u64 + 1;
        let committed = driver.round(now, std::mem::take(&mut inputs))?;
        let mut wake: Option<Timestamp> = None;
        let actions = std::mem::take(&mut pending_actions).into_iter().chain(committed.actions);
        for action in actions {
            match action {
                Action::Deploy(command) | Action::RollBack(command) => {
                    let index: usize =
                        command.box_id.0.trim_start_matches("box-").parse().expect("our box ids");
                    // Agents apply a command id once: a re-sent command changes nothing.
                    let ideal = &mut fleet.get_mut(&command.target).expect("known target")[index];
                    let known = ideal.installing == Some(command.id)
                        || ideal.last.as_ref().is_some_and(|last| last.command == command.id);
                    if !known {
                        // The agent takes it at once and says so whenever it reports.
                        ideal.installing = Some(command.id);
                        installs.retain(|i| !(i.target == command.target && i.index == index));
                        installs.push(Install {
                            at: now + INSTALL_TIME,
                            target: command.target,
                            index,
                            artifact: command.artifact,
                            command: command.id,
                        });
                    }
                }
                Action::RunTestGate { id, .. } => {
                    if !gates.iter().any(|(_, gate)| *gate == id) {
                        gates.push((now + TEST_TIME, id));
                    }
                }
                // Each round's wake-up replaces the last: the engine decides it afresh.
                Action::WakeAt(at) => wake = Some(at),
                Action::Page { .. } => {}
                Action::Notify(event) => {
                    if let Some(line) = crate::timeline::describe(&event, &names) {
                        report.timeline.push(format!("{} {line}", crate::timeline::when(now)));
                    }
                    match event {
                        Event::StagePassed { stage, .. } => {
                            report.stages.push((stage.clone(), now));
                            report.finish = now;
                            if Some(&stage) == last_stage.as_ref() {
                                report.total = now.duration_since(start);
                                report.business_days = business_days(start, now);
                                explain_waits(&mut report.waits, &plan.time_windows, region_zones);
                                return Ok(report);
                            }
                        }
                        Event::StepBaked { target, .. } if target.environment == "prod" => {
                            report.regions.insert(target.region, now);
                        }
                        // Manual approvals are given at once, in the next round.
                        Event::AwaitingApproval { stage, artifact, .. } => {
                            inputs.push(Input::Operator {
                                id: format!("eta-approval-{stage}"),
                                by: "eta".into(),
                                command: OperatorCommand::Approve {
                                    pipeline: name.clone(),
                                    stage,
                                    artifact,
                                },
                            });
                        }
                        Event::Blocked { target, blockers, .. } => {
                            record_waits(
                                &mut report.waits,
                                &mut blocked_since,
                                now,
                                &target,
                                &blockers,
                                region_zones,
                            );
                        }
                        _ => {}
                    }
                }
            }
        }
        // An approval given, or a lane that may start now and needs fresh observations:
        // another round at the same instant.
        watch = driver.engine().needs_observing(now);
        watched_at = now;
        let unobserved = watch.fleets.iter().any(|(_, target)| {
            fleet_fed.get(target).is_none_or(|at| now.duration_since(*at) >= fleet_refresh)
        }) || watch.alarm_regions.iter().any(|region| {
            alarm_fed.get(region).is_none_or(|at| now.duration_since(*at) >= alarm_refresh)
        });
        if !inputs.is_empty() || unobserved {
            continue;
        }
        let next_install = installs.iter().map(|install| install.at).min();
        let next_gate = gates.iter().map(|(at, _)| *at).min();
        let next =
            [wake, next_install, next_gate].into_iter().flatten().filter(|at| *at > now).min();
        match next {
            Some(at) => now = at,
            None => break,
        }
    }
    let recent = report.timeline.iter().rev().take(5).rev().cloned().collect::<Vec<_>>().join("\n");
    Err(Error::Unfinished { at: now, stuck: recent })
}

/// What the ideal agents report: every box healthy on what it runs.
fn observe(pipeline: &str, boxes: &[IdealBox], ids: &[BoxId]) -> Vec<BoxReport> {
    boxes
        .iter()
        .zip(ids)
        .map(|(ideal, id)| BoxReport {
            id: id.clone(),
            running: ideal.running.iter().map(|d| (pipeline.to_string(), *d)).collect(),
            health: Health::Healthy,
            last_commands: ideal.last.iter().map(|l| (pipeline.to_string(), l.clone())).collect(),
            in_progress: ideal.installing,
            observed_at: None,
        })
        .collect()
}

/// Notes when each blocker of `target` began, and records a wait for each that cleared.
fn record_waits(
    waits: &mut Vec<Wait>,
    blocked_since: &mut BTreeMap<(Target, BlockerKind), (Timestamp, String)>,
    now: Timestamp,
    target: &Target,
    blockers: &[gantry_engine::Blocker],
    region_zones: &BTreeMap<String, String>,
) {
    for blocker in blockers {
        blocked_since
            .entry((target.clone(), blocker.kind))
            .or_insert((now, describe_wait(blocker, region_zones.get(&target.region))));
    }
    let cleared: Vec<(Target, BlockerKind)> = blocked_since
        .keys()
        .filter(|(t, kind)| t == target && !blockers.iter().any(|b| b.kind == *kind))
        .cloned()
        .collect();
    for (target, kind) in cleared {
        let (from, what) = blocked_since.remove(&(target.clone(), kind)).expect("listed");
        // Alarms are OK in the ideal world and reported whenever they matter: an alarm blocker
        // there only says no reading was asked for while something else held the lane.
        let alarm = matches!(kind, BlockerKind::TeamAlarm | BlockerKind::OrganisationAlarm);
        if now > from && !alarm {
            let hours = now.duration_since(from).as_secs_f64() / 3600.0;
            let what = format!("{}: {what}", target.region);
            waits.push(Wait { region: target.region, kind, what, from, to: now, hours });
        }
    }
}

/// Explains each wait on a closed window by the rules that kept it closed, longest first.
fn explain_waits(
    waits: &mut [Wait],
    windows: &gantry_model::pipeline::TimeWindows,
    region_zones: &BTreeMap<String, String>,
) {
    waits.sort_by(|a, b| b.hours.total_cmp(&a.hours));
    // Parsed once, then read in each region's zone.
    let Ok(utc) = CompiledWindows::new(windows, jiff::tz::TimeZone::UTC) else { return };
    let mut compiled: BTreeMap<String, Option<(CompiledWindows, jiff::tz::TimeZone)>> =
        BTreeMap::new();
    for wait in waits.iter_mut().filter(|wait| wait.kind == BlockerKind::TimeWindow) {
        let entry = compiled.entry(wait.region.clone()).or_insert_with(|| {
            let tz = jiff::tz::TimeZone::get(region_zones.get(&wait.region)?).ok()?;
            Some((utc.in_zone(tz.clone()), tz))
        });
        if let Some((compiled, tz)) = entry {
            wait.what =
                format!("{}: {}", wait.region, closed_because(compiled, tz, wait.from, wait.to));
        }
    }
}

/// Why the windows stayed closed from `from` to `to` in `zone`, reason by reason, e.g. "closed
/// Thu 15:00 → Mon 09:00 CET: at or after 15:00 local time; no deployments start on Friday,
/// Saturday or Sunday".
fn closed_because(
    compiled: &CompiledWindows,
    tz: &jiff::tz::TimeZone,
    from: Timestamp,
    to: Timestamp,
) -> String {
    let mut reasons: Vec<String> = Vec::new();
    let mut weekdays: Vec<String> = Vec::new();
    let mut at = from;
    while at < to && reasons.len() + weekdays.len() < 16 {
        let Ok(Some((closure, lifts))) = compiled.closure(at) else { break };
        match closure {
            Closure::ExcludedWeekday { weekday } => {
                let day = format!("{weekday:?}");
                if !weekdays.contains(&day) {
                    weekdays.push(day);
                }
            }
            other => {
                let reason = other.to_string();
                if !reasons.contains(&reason) {
                    reasons.push(reason);
                }
            }
        }
        if lifts <= at {
            break;
        }
        at = lifts;
    }
    if let Some((last, rest)) = weekdays.split_last() {
        let days =
            if rest.is_empty() { last.clone() } else { format!("{} or {last}", rest.join(", ")) };
        reasons.push(format!("no deployments start on {days}"));
    }
    let local = |at: Timestamp| at.to_zoned(tz.clone()).strftime("%a %H:%M").to_string();
    let zone_name = to.to_zoned(tz.clone()).strftime("%Z").to_string();
    format!("closed {} → {} {zone_name}: {}", local(from), local(to), reasons.join("; "))
}

/// Weekdays from `start`'s date to `finish`'s (UTC), both counted.
pub fn business_days(start: Timestamp, finish: Timestamp) -> u32 {
    let first = start.to_zoned(jiff::tz::TimeZone::UTC).date();
    let last = finish.to_zoned(jiff::tz::TimeZone::UTC).date();
    let mut count = 0;
    let mut day = first;
    while day <= last {
        if !matches!(day.weekday(), jiff::civil::Weekday::Saturday | jiff::civil::Weekday::Sunday) {
            count += 1;
        }
        day = day.tomorrow().expect("dates of an ETA are far from the end of time");
    }
    count
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
