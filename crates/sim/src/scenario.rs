//! Scripted scenarios: a pipeline against a described fleet with events at given times (an
//! artifact arrives, an alarm fires, boxes fail, someone overrides a blocker, the controller
//! restarts), printed as the timeline of the engine's decisions and their reasons.
//!
//! People use them to rehearse incidents and to check a pipeline change before it goes live;
//! Gantry's own scenario tests are written in the same JSON format (`tests/scenarios.rs`).
//! Faults are off; the invariant checker still runs after every step.
//!
//! Alarm names follow the fleet: `<service>-high-severity` and `<service>-one-box` per
//! production region, `<service>-gamma-high-severity` in gamma's region, `team-aggregate` per
//! region, and `org-large-scale-event` with no region. A bad artifact makes its service's alarms
//! fire once it has served for three minutes (one minute for the one-box alarm).

use std::collections::BTreeMap;

use gantry_engine::input::{AlarmState, OperatorCommand};
use gantry_model::pipeline::{
    AlarmBlockers, CodeReview, DeploymentStrategy, Limits, PreprodKind, Promotion, SourceKind,
    TimeWindows, UrgentPolicy,
};
use gantry_model::{Bake, Duration, Plan, Stage, StageKind, Step, StepKind, Target};
use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;

use crate::generate::{Swarm, World};
use crate::run::{self, Options, Report, Script, Scripted};

/// Why a scenario file was refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("scenario is not valid JSON for the scenario format: {0}")]
    Format(#[from] serde_json::Error),
    #[error("scenario: {0}")]
    Invalid(String),
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub start: Timestamp,
    /// How long to run after `start`.
    pub until: Duration,
    pub regions: Vec<RegionSpec>,
    pub pipelines: Vec<PipelineSpec>,
    #[serde(default)]
    pub events: Vec<ScriptedEvent>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionSpec {
    pub name: String,
    pub time_zone: String,
    pub zones: u32,
    /// Boxes per zone (and in gamma, when gamma runs in this region).
    pub boxes: u32,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSpec {
    pub name: String,
    /// Defaults to the pipeline's name.
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default = "team")]
    pub team: String,
    /// A gamma stage in the first region before production.
    #[serde(default)]
    pub gamma: bool,
    /// Regions per production wave, in order.
    pub waves: Vec<Vec<String>>,
    #[serde(default)]
    pub bake: BakeSpec,
    #[serde(default)]
    pub deployment: DeploymentStrategy,
    #[serde(default)]
    pub time_windows: TimeWindows,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub urgent: UrgentPolicy,
    /// Stages (`gamma`, `wave-1`, ...) that wait for a person's approval.
    #[serde(default)]
    pub manual: Vec<String>,
    /// Whether the organisation's large-scale-event alarm blocks production starts.
    #[serde(default)]
    pub organisation_alarm: bool,
}

fn team() -> String {
    "team-a".into()
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BakeSpec {
    #[serde(default = "hour")]
    pub one_box: Duration,
    /// After every zone step but a wave's last.
    #[serde(default)]
    pub zone: Duration,
    /// After a wave's last step; `waves` sets it per wave.
    #[serde(default = "four_hours")]
    pub wave: Duration,
    #[serde(default)]
    pub waves: Vec<Duration>,
    /// Minimum `requests` data points per target in every bake.
    #[serde(default)]
    pub data_points: u64,
}

fn hour() -> Duration {
    Duration::from_hours(1)
}
fn four_hours() -> Duration {
    Duration::from_hours(4)
}

impl Default for BakeSpec {
    fn default() -> Self {
        BakeSpec {
            one_box: hour(),
            zone: Duration::ZERO,
            wave: four_hours(),
            waves: Vec::new(),
            data_points: 0,
        }
    }
}

/// (No `deny_unknown_fields` here: serde cannot combine it with `flatten`.)
#[derive(Clone, Debug, Deserialize)]
pub struct ScriptedEvent {
    /// Offset from `start`.
    pub at: Duration,
    #[serde(flatten)]
    pub what: What,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum What {
    /// Build `number` of the pipeline is ready (higher numbers are later commits).
    Artifact {
        pipeline: String,
        number: u64,
        #[serde(default)]
        bad: bool,
        #[serde(default)]
        unreviewed: bool,
    },
    /// Forces an alarm's state from now on; `null` returns it to what the fleet implies.
    Alarm { alarm: String, region: Option<String>, state: Option<AlarmState> },
    /// `count` healthy boxes of a production zone (or gamma) fail their health checks.
    BoxesFail {
        pipeline: String,
        environment: String,
        region: String,
        zone: Option<String>,
        count: u32,
    },
    /// A person's command.
    Command {
        by: String,
        #[serde(flatten)]
        command: OperatorCommand,
    },
    /// The controller crashes and restarts from its persisted state.
    Restart,
}

/// Parses a scenario file's text. Artifacts are named as the scenario builds them
/// (`sha256:api-1` is build 1 of pipeline `api`); such a name stands for the digest the
/// simulator gives that build.
pub fn parse(text: &str) -> Result<Scenario, Error> {
    let mut value: serde_json::Value = serde_json::from_str(text)?;
    name_artifacts(&mut value);
    Ok(serde_json::from_value(value)?)
}

/// Replaces every `"artifact": "sha256:<name>"` that is not a digest with the digest of the
/// build called `<name>`.
fn name_artifacts(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, field) in map.iter_mut() {
                if key == "artifact"
                    && let serde_json::Value::String(text) = field
                    && text.parse::<gantry_engine::Digest>().is_err()
                {
                    let name = text.strip_prefix("sha256:").unwrap_or(text);
                    *text = gantry_engine::Digest::of(name.as_bytes()).to_string();
                } else {
                    name_artifacts(field);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(name_artifacts),
        _ => {}
    }
}

fn bake(duration: Duration, data_points: u64) -> Bake {
    let mut points = BTreeMap::new();
    if data_points > 0 {
        points.insert("requests".to_string(), data_points);
    }
    Bake { duration, data_points: points }
}

fn plan(spec: &PipelineSpec, regions: &BTreeMap<String, RegionSpec>) -> Result<Plan, Error> {
    let service = spec.service.clone().unwrap_or_else(|| spec.name.clone());
    let promotion = |stage: &str| {
        if spec.manual.iter().any(|s| s == stage) {
            Promotion::Manual
        } else {
            Promotion::Automatic
        }
    };
    let mut stages = Vec::new();
    let first = spec
        .waves
        .first()
        .and_then(|wave| wave.first())
        .ok_or_else(|| Error::Invalid(format!("{}: no waves", spec.name)))?;
    if spec.gamma {
        stages.push(Stage {
            name: "gamma".into(),
            kind: StageKind::Preprod { environment: PreprodKind::Gamma },
            promotion: promotion("gamma"),
            tests: Vec::new(),
            deployment: spec.deployment.clone(),
            steps: vec![Step {
                name: "gamma/environment".into(),
                kind: StepKind::Environment,
                targets: vec![Target {
                    environment: "gamma".into(),
                    region: first.clone(),
                    zone: None,
                    cell: None,
                }],
                bake: bake(spec.bake.zone, spec.bake.data_points),
                rollback_alarms: vec![format!("{service}-gamma-high-severity")],
                one_box_of: None,
            }],
        });
    }
    for (index, wave_regions) in spec.waves.iter().enumerate() {
        let wave = format!("wave-{}", index + 1);
        let mut zones = 0;
        for region in wave_regions {
            let region = regions
                .get(region)
                .ok_or_else(|| Error::Invalid(format!("{}: unknown region {region}", spec.name)))?;
            zones = zones.max(region.zones);
        }
        let target = |region: &str, zone: u32| Target {
            environment: "prod".into(),
            region: region.into(),
            zone: Some(format!("{region}-az{zone}")),
            cell: None,
        };
        let high_severity = format!("{service}-high-severity");
        let mut steps = vec![Step {
            name: format!("{wave}/one-box"),
            kind: StepKind::OneBox,
            targets: wave_regions.iter().map(|region| target(region, 1)).collect(),
            bake: bake(spec.bake.one_box, spec.bake.data_points),
            rollback_alarms: vec![high_severity.clone(), format!("{service}-one-box")],
            one_box_of: Some(gantry_model::OneBoxScope::Region),
        }];
        for zone in 1..=zones {
            let last = zone == zones;
            let duration = if last {
                spec.bake.waves.get(index).copied().unwrap_or(spec.bake.wave)
            } else {
                spec.bake.zone
            };
            steps.push(Step {
                name: format!("{wave}/zone-{zone}"),
                kind: StepKind::Zone(zone),
                targets: wave_regions
                    .iter()
                    .filter(|region| regions[*region].zones >= zone)
                    .map(|region| target(region, zone))
                    .collect(),
                bake: bake(duration, spec.bake.data_points),
                rollback_alarms: vec![high_severity.clone()],
                one_box_of: None,
            });
        }
        stages.push(Stage {
            name: wave.clone(),
            kind: StageKind::Wave { number: index as u32 + 1 },
            promotion: promotion(&wave),
            tests: Vec::new(),
            deployment: spec.deployment.clone(),
            steps,
        });
    }
    Ok(Plan {
        pipeline: spec.name.clone(),
        team: spec.team.clone(),
        service,
        kind: SourceKind::Code,
        sources: Vec::new(),
        build_command: String::new(),
        build_network: false,
        code_review: CodeReview::Required,
        stages,
        alarm_blockers: AlarmBlockers {
            team: vec!["team-aggregate".into()],
            organisation: if spec.organisation_alarm {
                vec!["org-large-scale-event".into()]
            } else {
                Vec::new()
            },
        },
        time_windows: spec.time_windows.clone(),
        limits: spec.limits.clone(),
        urgent: spec.urgent.clone(),
    })
}

/// Builds the world a scenario describes.
pub fn world(scenario: &Scenario) -> Result<World, Error> {
    let regions: BTreeMap<String, RegionSpec> =
        scenario.regions.iter().map(|region| (region.name.clone(), region.clone())).collect();
    let plans = scenario
        .pipelines
        .iter()
        .map(|spec| plan(spec, &regions))
        .collect::<Result<Vec<_>, _>>()?;
    let fleets = crate::generate::fleets(&plans, |target| regions[&target.region].boxes);
    let region_zones: BTreeMap<String, String> =
        regions.values().map(|region| (region.name.clone(), region.time_zone.clone())).collect();
    // Refuse plans the engine refuses, with its reason, before running anything.
    gantry_engine::Engine::new(plans.clone(), region_zones.clone())
        .map_err(|error| Error::Invalid(error.to_string()))?;
    Ok(World {
        seed: 0,
        plans,
        region_zones,
        fleets,
        start: scenario.start,
        team_alarm: "team-aggregate".into(),
        organisation_alarm: "org-large-scale-event".into(),
        swarm: Swarm::calm(),
    })
}

/// Runs a scenario and returns its report; `report.timeline` is the story.
pub fn run(scenario: &Scenario) -> Result<Report, Error> {
    let world = world(scenario)?;
    let seconds = |duration: Duration| SignedDuration::from_secs(duration.as_seconds() as i64);
    let mut events = Vec::new();
    for event in &scenario.events {
        let scripted = match event.what.clone() {
            What::Artifact { pipeline, number, bad, unreviewed } => {
                Scripted::Artifact { pipeline, number, bad, unreviewed }
            }
            What::Alarm { alarm, region, state } => Scripted::Alarm { alarm, region, state },
            What::BoxesFail { pipeline, environment, region, zone, count } => Scripted::BoxFails {
                pipeline,
                target: Target { environment, region, zone, cell: None },
                count,
            },
            What::Command { by, command } => Scripted::Operator { by, command },
            What::Restart => Scripted::Restart,
        };
        events.push((seconds(event.at), scripted));
    }
    let script = Script { events, until: seconds(scenario.until) };
    Ok(run::play(world, &Options { keep_trace: true, ..Options::default() }, Some(script)))
}
