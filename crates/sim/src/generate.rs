//! Worlds drawn from a seed: a small topology, one or two pipelines of one team built directly
//! from the model types, their fleets, a start instant and the fault rates ("swarm" knobs,
//! zeros included, as in TigerBeetle's VOPR).

use std::collections::BTreeMap;

use gantry_model::pipeline::{
    AlarmBlockers, AllowWindow, CodeReview, DeploymentStrategy, Holidays, HostCount, Limits,
    PreprodKind, Promotion, SourceKind, TestGate, TestKind, TimeWindows, UrgentPolicy, Weekday,
};
use gantry_model::plan::NamedTestGate;
use gantry_model::{Bake, Duration, Plan, Stage, StageKind, Step, StepKind, Target};
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::rng::Rng;

/// Time zones regions are drawn from: both hemispheres' DST rules, and none.
const ZONES: [&str; 6] = [
    "America/New_York",
    "Europe/Berlin",
    "Asia/Tokyo",
    "UTC",
    "Australia/Sydney",
    "America/Los_Angeles",
];

/// Start instants worth visiting: ordinary weeks, the weeks of both European and US DST changes,
/// and a holiday season.
const STARTS: [&str; 6] = [
    "2026-11-23T08:00:00Z",
    "2026-03-27T12:00:00Z",
    "2026-10-23T12:00:00Z",
    "2026-03-06T18:00:00Z",
    "2026-12-23T10:00:00Z",
    "2026-06-12T14:00:00Z",
];

/// Per-event fault probabilities in parts per million, drawn per seed.
#[derive(Clone, Debug, Serialize)]
pub struct Swarm {
    pub message_drop: u32,
    pub message_duplicate: u32,
    /// Largest extra delivery delay, in seconds (reordering follows from it).
    pub message_delay_max: u64,
    pub hook_failure: u32,
    pub hook_hang: u32,
    pub download_corruption: u32,
    /// Per box per observation round.
    pub health_flap: u32,
    pub agent_crash: u32,
    /// Per target per observation round.
    pub scale_out: u32,
    pub scale_in: u32,
    /// Per alarm reading.
    pub alarm_flap: u32,
    pub alarm_missing: u32,
    /// Per observation round.
    pub controller_restart: u32,
    pub organisation_event: u32,
    /// Per artifact.
    pub bad_artifact: u32,
    pub unreviewed_commit: u32,
    pub unsigned_artifact: u32,
    /// Mean minutes between new artifacts.
    pub artifact_interval_minutes: u64,
    /// Per observation round: an operator does something.
    pub operator_action: u32,
}

impl Swarm {
    /// No faults at all: scripted scenarios.
    pub fn calm() -> Swarm {
        Swarm {
            message_drop: 0,
            message_duplicate: 0,
            message_delay_max: 1,
            hook_failure: 0,
            hook_hang: 0,
            download_corruption: 0,
            health_flap: 0,
            agent_crash: 0,
            scale_out: 0,
            scale_in: 0,
            alarm_flap: 0,
            alarm_missing: 0,
            controller_restart: 0,
            organisation_event: 0,
            bad_artifact: 0,
            unreviewed_commit: 0,
            unsigned_artifact: 0,
            artifact_interval_minutes: 0,
            operator_action: 0,
        }
    }
}

/// The fleets of `plans`: every target of every step once per service (a service's pipelines
/// deploy to the same boxes), with `boxes(target)` boxes.
pub fn fleets(plans: &[Plan], mut boxes: impl FnMut(&Target) -> u32) -> Vec<(String, Target, u32)> {
    let mut fleets: Vec<(String, Target, u32)> = Vec::new();
    for plan in plans {
        for target in
            plan.stages.iter().flat_map(|stage| &stage.steps).flat_map(|step| &step.targets)
        {
            if !fleets.iter().any(|(service, known, _)| service == &plan.service && known == target)
            {
                fleets.push((plan.service.clone(), target.clone(), boxes(target)));
            }
        }
    }
    fleets
}

/// A world to simulate.
#[derive(Clone, Debug, Serialize)]
pub struct World {
    pub seed: u64,
    pub plans: Vec<Plan>,
    pub region_zones: BTreeMap<String, String>,
    /// Boxes per (service, target) at the start; a service's pipelines share them.
    pub fleets: Vec<(String, Target, u32)>,
    pub start: Timestamp,
    pub team_alarm: String,
    pub organisation_alarm: String,
    pub swarm: Swarm,
}

pub fn world(seed: u64) -> World {
    let mut rng = Rng::new(seed);
    let region_count = rng.range(1, 3);
    let mut region_zones = BTreeMap::new();
    let mut regions = Vec::new();
    for number in 1..=region_count {
        let name = format!("r{number}");
        region_zones.insert(name.clone(), rng.pick(&ZONES).to_string());
        regions.push((name, rng.range(1, 3) as u32));
    }
    let team_alarm = "team-aggregate".to_string();
    let organisation_alarm = "org-large-scale-event".to_string();
    let pipelines = rng.range(1, 2);
    // Half the worlds with two pipelines give both to one service: its code and config
    // pipelines deploy to the same boxes.
    let shared = pipelines == 2 && rng.chance(500_000);
    let mut plans = Vec::new();
    for number in 1..=pipelines {
        let (service, kind) = match (shared, number) {
            (true, 2) => ("service-1".to_string(), "config"),
            _ => (format!("service-{number}"), "code"),
        };
        let plan =
            pipeline_plan(&mut rng, &service, kind, &regions, &team_alarm, &organisation_alarm);
        plans.push(plan);
    }
    let fleets = fleets(&plans, |_| rng.range(10, 12) as u32);
    let start: Timestamp = rng.pick(&STARTS).parse().expect("valid start");
    let start = start + SignedDuration::from_mins(rng.below(24 * 60) as i64);
    let mut knob =
        |max: u32| if rng.chance(300_000) { 0 } else { rng.below(u64::from(max) + 1) as u32 };
    let swarm = Swarm {
        message_drop: knob(100_000),
        message_duplicate: knob(100_000),
        message_delay_max: u64::from(knob(90)),
        hook_failure: knob(60_000),
        hook_hang: knob(20_000),
        download_corruption: knob(10_000),
        health_flap: knob(2_000),
        agent_crash: knob(300),
        scale_out: knob(1_000),
        scale_in: knob(1_000),
        alarm_flap: knob(3_000),
        alarm_missing: knob(100_000),
        controller_restart: knob(2_000),
        organisation_event: knob(500),
        bad_artifact: knob(400_000),
        unreviewed_commit: knob(100_000),
        unsigned_artifact: knob(50_000),
        operator_action: knob(20_000),
        artifact_interval_minutes: 0,
    };
    let swarm = Swarm { artifact_interval_minutes: rng.range(60, 360), ..swarm };
    World { seed, plans, region_zones, fleets, start, team_alarm, organisation_alarm, swarm }
}

fn minutes(rng: &mut Rng, low: u64, high: u64) -> Duration {
    Duration::from_minutes(rng.range(low, high))
}

fn bake(rng: &mut Rng, low: u64, high: u64) -> Bake {
    let mut data_points = BTreeMap::new();
    if rng.chance(500_000) {
        data_points.insert("requests".to_string(), rng.range(20, 400));
    }
    Bake { duration: minutes(rng, low, high), data_points }
}

fn strategy(rng: &mut Rng) -> DeploymentStrategy {
    let floors = [
        HostCount::percent(66),
        HostCount::percent(50),
        HostCount::hosts(8),
        HostCount::percent(75),
        HostCount::percent(0),
        HostCount::percent(90),
    ];
    let batches = [
        HostCount::percent(33),
        HostCount::percent(5),
        HostCount::percent(50),
        HostCount::hosts(2),
        HostCount::percent(100),
    ];
    DeploymentStrategy {
        one_box_percent: 10,
        minimum_healthy_hosts: *rng.pick(&floors),
        batch_size: *rng.pick(&batches),
        rollback_batch_size: HostCount::percent(33),
        health_check_timeout: minutes(rng, 3, 6),
        hook_timeout: minutes(rng, 5, 10),
        auto_rollback: !rng.chance(100_000),
    }
}

fn pipeline_plan(
    rng: &mut Rng,
    service: &str,
    kind: &str,
    regions: &[(String, u32)],
    team_alarm: &str,
    organisation_alarm: &str,
) -> Plan {
    let name = format!("{service}-{kind}");
    let high_severity = format!("{service}-high-severity");
    let mut stages = Vec::new();
    let gamma_target = Target {
        environment: "gamma".into(),
        region: regions[0].0.clone(),
        zone: None,
        cell: None,
    };
    let tests = if rng.chance(500_000) {
        vec![NamedTestGate {
            name: "integration".into(),
            gate: TestGate {
                kind: TestKind::Integration,
                command: "make integ".into(),
                timeout: Duration::from_minutes(30),
            },
        }]
    } else {
        Vec::new()
    };
    stages.push(Stage {
        name: "gamma".into(),
        kind: StageKind::Preprod { environment: PreprodKind::Gamma },
        promotion: if rng.chance(200_000) { Promotion::Manual } else { Promotion::Automatic },
        tests,
        deployment: strategy(rng),
        steps: vec![Step {
            name: "gamma/environment".into(),
            kind: StepKind::Environment,
            targets: vec![gamma_target],
            bake: bake(rng, 0, 30),
            rollback_alarms: vec![format!("{service}-gamma-high-severity")],
            one_box_of: None,
        }],
    });
    // Wave 1: the first region alone; wave 2: the rest.
    let waves: Vec<&[(String, u32)]> =
        if regions.len() > 1 { vec![&regions[..1], &regions[1..]] } else { vec![regions] };
    for (number, wave_regions) in waves.into_iter().enumerate() {
        let wave = format!("wave-{}", number + 1);
        let target = |region: &str, zone: u32| Target {
            environment: "prod".into(),
            region: region.into(),
            zone: Some(format!("{region}-az{zone}")),
            cell: None,
        };
        let mut steps = vec![Step {
            name: format!("{wave}/one-box"),
            kind: StepKind::OneBox,
            targets: wave_regions.iter().map(|(region, _)| target(region, 1)).collect(),
            bake: bake(rng, 10, 60),
            rollback_alarms: vec![high_severity.clone(), format!("{service}-one-box")],
            one_box_of: Some(gantry_model::OneBoxScope::Region),
        }];
        let zones = wave_regions.iter().map(|(_, zones)| *zones).max().unwrap_or(1);
        for zone in 1..=zones {
            let last = zone == zones;
            steps.push(Step {
                name: format!("{wave}/zone-{zone}"),
                kind: StepKind::Zone(zone),
                targets: wave_regions
                    .iter()
                    .filter(|(_, count)| *count >= zone)
                    .map(|(region, _)| target(region, zone))
                    .collect(),
                bake: if last { bake(rng, 30, 180) } else { bake(rng, 0, 30) },
                rollback_alarms: vec![high_severity.clone()],
                one_box_of: None,
            });
        }
        stages.push(Stage {
            name: wave,
            kind: StageKind::Wave { number: number as u32 + 1 },
            promotion: Promotion::Automatic,
            tests: Vec::new(),
            deployment: strategy(rng),
            steps,
        });
    }
    let time_windows = if rng.chance(400_000) {
        TimeWindows::default()
    } else {
        TimeWindows {
            allow: vec![AllowWindow {
                cron: (*rng.pick(&["0 9 * * MON-FRI", "0 8 * * MON-THU", "30 2 * * *"])).into(),
                duration: Duration::from_hours(rng.range(6, 10)),
                time_zone: None,
            }],
            holidays: Holidays {
                dates: if rng.chance(300_000) {
                    vec![
                        "2026-12-24".parse().unwrap(),
                        "2026-12-25".parse().unwrap(),
                        "2026-11-26".parse().unwrap(),
                    ]
                } else {
                    Vec::new()
                },
                calendars: Vec::new(),
            },
            exclude_weekdays: if rng.chance(500_000) { vec![Weekday::Friday] } else { Vec::new() },
            not_before: None,
            not_after: if rng.chance(500_000) { Some("16:00".parse().unwrap()) } else { None },
        }
    };
    Plan {
        pipeline: name,
        team: "team-a".into(),
        service: service.into(),
        kind: if kind == "config" { SourceKind::Config } else { SourceKind::Code },
        sources: Vec::new(),
        build_command: "make".into(),
        build_network: false,
        code_review: CodeReview::Required,
        stages,
        alarm_blockers: AlarmBlockers {
            team: vec![team_alarm.into()],
            organisation: if rng.chance(500_000) {
                vec![organisation_alarm.into()]
            } else {
                Vec::new()
            },
        },
        time_windows,
        limits: Limits {
            max_artifacts_in_production: if rng.chance(300_000) {
                Some(rng.range(1, 2) as u32)
            } else {
                None
            },
        },
        urgent: UrgentPolicy {
            approvers: vec!["pe-1".into(), "pe-2".into(), "pe-3".into()],
            required_approvals: 2,
            minimum_bake_percent: 25,
        },
    }
}
