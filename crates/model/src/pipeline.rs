//! A pipeline definition as its authors write it, after inheritance has been applied.
//!
//! One pipeline releases one service's changes of one source kind. Most fields come from team
//! and organisation defaults (see `docs/pipelines.md` for the merge rules); the loader in
//! `gantry-spec` resolves `extends`, then deserializes the merged document into [`PipelineSpec`].
//! Field names are snake_case; CodeDeploy's and CloudWatch's vocabulary is kept where it fits
//! (`minimum_healthy_hosts` with `HOST_COUNT` / `FLEET_PERCENT`, `GreaterThanThreshold`, ...).

use std::collections::BTreeMap;

use jiff::civil::{Date, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Duration;

/// One pipeline definition, complete after inheritance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PipelineSpec {
    /// The parent definition this one inherits from: a path relative to this file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extends: Option<String>,
    /// Marks a file of defaults that is only ever inherited, never deployed on its own.
    #[serde(default, rename = "abstract", skip_serializing_if = "std::ops::Not::not")]
    pub is_abstract: bool,
    /// The pipeline's unique name, e.g. `checkout-api-code`.
    pub pipeline: String,
    /// The owning team.
    pub team: String,
    /// The service this pipeline releases.
    pub service: String,
    /// What kind of source this pipeline releases.
    pub kind: SourceKind,
    /// Path of the topology file, relative to the file that names it (usually the
    /// organisation's defaults).
    pub topology: String,
    /// Git repositories whose mainline commits start the pipeline.
    pub sources: Vec<Source>,
    pub build: Build,
    #[serde(default)]
    pub code_review: CodeReview,
    /// Pre-production stages, always run in the order alpha, beta, gamma, zeta.
    #[serde(default)]
    pub preprod: PreprodStages,
    /// Production waves, in order.
    pub waves: Vec<WaveSpec>,
    /// Whether the waves must cover every region of the topology (the default).
    #[serde(default = "yes")]
    pub waves_cover_topology: bool,
    /// Regions this service does not run in; no wave selects them.
    #[serde(default)]
    pub exclude_regions: Vec<String>,
    /// Availability zones this service does not run in; no step deploys them.
    #[serde(default)]
    pub exclude_zones: Vec<String>,
    #[serde(default)]
    pub deployment: DeploymentStrategy,
    #[serde(default)]
    pub bake: BakePolicy,
    #[serde(default)]
    pub alarms: Alarms,
    #[serde(default)]
    pub time_windows: TimeWindows,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub urgent: UrgentPolicy,
}

fn yes() -> bool {
    true
}

/// What a pipeline releases. The seed's five kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// Application code.
    Code,
    /// Runtime configuration and feature flags.
    Config,
    /// Infrastructure as code.
    Infra,
    /// Operating-system patches and images.
    Os,
    /// Operator tools.
    Tools,
}

/// A git repository and the branch treated as mainline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// A local path or a remote URL.
    pub repository: String,
    #[serde(default = "default_branch")]
    pub branch: String,
}

fn default_branch() -> String {
    "main".to_string()
}

/// How a commit becomes an artifact.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Build {
    /// Shell command run in a clean checkout; it compiles and runs the unit tests.
    pub command: String,
    /// Paths (relative to the checkout) packaged into the artifact.
    pub outputs: Vec<String>,
    /// Whether the build may reach the network. Hermetic builds (`false`) are the default.
    #[serde(default)]
    pub network: bool,
    #[serde(default = "default_build_timeout")]
    pub timeout: Duration,
}

fn default_build_timeout() -> Duration {
    Duration::from_hours(1)
}

/// Whether every commit must be approved by a team member other than its author.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CodeReview {
    #[default]
    Required,
    Optional,
}

/// The pre-production stages. Each is optional; a child removes an inherited one with `null`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PreprodStages {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<PreprodStage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beta: Option<PreprodStage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gamma: Option<PreprodStage>,
    /// Calls only production endpoints: a backward-compatibility stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zeta: Option<PreprodStage>,
}

impl PreprodStages {
    /// The stages present, in promotion order.
    pub fn in_order(&self) -> impl Iterator<Item = (PreprodKind, &PreprodStage)> {
        [
            (PreprodKind::Alpha, &self.alpha),
            (PreprodKind::Beta, &self.beta),
            (PreprodKind::Gamma, &self.gamma),
            (PreprodKind::Zeta, &self.zeta),
        ]
        .into_iter()
        .filter_map(|(kind, stage)| stage.as_ref().map(|stage| (kind, stage)))
    }
}

/// The four pre-production stage kinds, in promotion order.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum PreprodKind {
    Alpha,
    Beta,
    Gamma,
    Zeta,
}

impl PreprodKind {
    pub fn name(self) -> &'static str {
        match self {
            PreprodKind::Alpha => "alpha",
            PreprodKind::Beta => "beta",
            PreprodKind::Gamma => "gamma",
            PreprodKind::Zeta => "zeta",
        }
    }
}

/// One pre-production stage.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PreprodStage {
    /// How an artifact that passed this stage moves on.
    #[serde(default)]
    pub promotion: Promotion,
    /// Test gates run after the deployment, by name.
    #[serde(default)]
    pub tests: BTreeMap<String, TestGate>,
    /// Deploy to one box first and bake it (gamma's one-box).
    #[serde(default)]
    pub one_box: bool,
    /// Overrides the pipeline's deployment strategy in this stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<DeploymentStrategy>,
    /// Overrides the pipeline's rollback alarms in this stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_alarms: Option<Vec<String>>,
    /// Bake after the stage's deployment. Defaults to no bake.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bake: Option<Bake>,
}

/// Automatic promotion, or a person's approval first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Promotion {
    #[default]
    Automatic,
    Manual,
}

/// A test run that must pass before promotion.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TestGate {
    pub kind: TestKind,
    /// Shell command; exit status 0 passes.
    pub command: String,
    #[serde(default = "default_test_timeout")]
    pub timeout: Duration,
}

fn default_test_timeout() -> Duration {
    Duration::from_minutes(30)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TestKind {
    Integration,
    Load,
    Fuzz,
    Canary,
}

/// One production wave, declared as policy (which regions) and expanded from the topology.
///
/// Exactly one selector is set: `regions`, `lowest_traffic`, `highest_traffic`, `count`,
/// `up_to` or `rest`. Explicit `regions` are reserved first; then selectors take regions not
/// yet taken, in wave order; `count` and `up_to` take the lowest-traffic remaining regions.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WaveSpec {
    /// Defaults to `wave-N`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// These regions, by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regions: Option<Vec<String>>,
    /// The N remaining regions with the least traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lowest_traffic: Option<u32>,
    /// The N remaining regions with the most traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub highest_traffic: Option<u32>,
    /// Exactly N remaining regions (lowest traffic first); an error if fewer remain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// At most N remaining regions (lowest traffic first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub up_to: Option<u32>,
    /// Every region not taken by another wave. Only the last wave may say this.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rest: bool,
    /// Each step deploys one zone (the default) or one cell per region.
    #[serde(default)]
    pub granularity: Granularity,
    /// Bake after the wave's last step; defaults to the pipeline's `bake.wave`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bake: Option<Bake>,
}

/// How finely a wave's regions are split into steps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    /// One availability zone per region per step.
    #[default]
    Zone,
    /// One cell per region per step.
    Cell,
}

/// A count of hosts, in CodeDeploy's `MinimumHealthyHosts` shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HostCount {
    #[serde(rename = "type")]
    pub kind: HostCountKind,
    pub value: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HostCountKind {
    HostCount,
    FleetPercent,
}

impl HostCount {
    pub const fn percent(value: u32) -> HostCount {
        HostCount { kind: HostCountKind::FleetPercent, value }
    }
    pub const fn hosts(value: u32) -> HostCount {
        HostCount { kind: HostCountKind::HostCount, value }
    }
}

/// How a target moves from one artifact to another.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeploymentStrategy {
    /// The most of a target's traffic the one box may take, in percent.
    #[serde(default = "default_one_box_percent")]
    pub one_box_percent: u32,
    /// Healthy capacity never drops below this, rollbacks included.
    #[serde(default = "default_minimum_healthy")]
    pub minimum_healthy_hosts: HostCount,
    /// The largest batch replaced at once; the capacity floor may make it smaller.
    #[serde(default = "default_batch")]
    pub batch_size: HostCount,
    /// Batch size when rolling back ("fast rollback").
    #[serde(default = "default_batch")]
    pub rollback_batch_size: HostCount,
    /// How long a box may take to report healthy after install.
    #[serde(default = "default_health_timeout")]
    pub health_check_timeout: Duration,
    /// How long one lifecycle hook may run.
    #[serde(default = "default_hook_timeout")]
    pub hook_timeout: Duration,
    /// Roll back automatically when a rollback alarm fires.
    #[serde(default = "yes")]
    pub auto_rollback: bool,
}

fn default_one_box_percent() -> u32 {
    10
}
fn default_minimum_healthy() -> HostCount {
    HostCount::percent(66)
}
fn default_batch() -> HostCount {
    HostCount::percent(33)
}
fn default_health_timeout() -> Duration {
    Duration::from_minutes(5)
}
fn default_hook_timeout() -> Duration {
    Duration::from_minutes(10)
}

impl Default for DeploymentStrategy {
    fn default() -> Self {
        DeploymentStrategy {
            one_box_percent: default_one_box_percent(),
            minimum_healthy_hosts: default_minimum_healthy(),
            batch_size: default_batch(),
            rollback_batch_size: default_batch(),
            health_check_timeout: default_health_timeout(),
            hook_timeout: default_hook_timeout(),
            auto_rollback: true,
        }
    }
}

/// A bake: a time to wait *and* data points to see, both required, with rollback alarms watched.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Bake {
    #[serde(default)]
    pub duration: Duration,
    /// Minimum qualifying data points per named metric, e.g. `api.create.requests: 100`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data_points: BTreeMap<String, u64>,
}

/// Bake per step kind. Every production step bakes for a time above zero *and* until it has
/// seen at least one data-point requirement (`gantry-spec` refuses a plan where any does not);
/// the defaults satisfy that rule, and the organisation's policy sets the hours.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BakePolicy {
    /// After each one-box step.
    #[serde(default = "default_one_box_bake")]
    pub one_box: Bake,
    /// After a wave's first zone (or cell) step.
    #[serde(default = "default_zone_bake")]
    pub first_zone: Bake,
    /// After each later zone step but the wave's last.
    #[serde(default = "default_zone_bake")]
    pub later_zones: Bake,
    /// After a wave's last step, unless the wave sets its own.
    #[serde(default = "default_wave_bake")]
    pub wave: Bake,
}

/// The metric the default bakes count: the request count every service emits, read in the
/// scope of the target being baked (the seed's "wait for at least 100 requests").
pub const DEFAULT_BAKE_METRIC: &str = "requests";

fn requests(count: u64) -> BTreeMap<String, u64> {
    BTreeMap::from([(DEFAULT_BAKE_METRIC.to_string(), count)])
}

/// The seed: "at least one hour after each one-box stage", with a hundred requests seen.
fn default_one_box_bake() -> Bake {
    Bake { duration: Duration::from_hours(1), data_points: requests(100) }
}
/// A zone (or cell) step: an hour and a hundred requests, as for the one box.
fn default_zone_bake() -> Bake {
    Bake { duration: Duration::from_hours(1), data_points: requests(100) }
}
/// The seed's "two to four hours" after a wave, with a thousand requests seen.
fn default_wave_bake() -> Bake {
    Bake { duration: Duration::from_hours(4), data_points: requests(1000) }
}

impl Default for BakePolicy {
    fn default() -> Self {
        BakePolicy {
            one_box: default_one_box_bake(),
            first_zone: default_zone_bake(),
            later_zones: default_zone_bake(),
            wave: default_wave_bake(),
        }
    }
}

/// Alarm definitions and their uses.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Alarms {
    /// Alarms by name. Organisation and team alarms are usually defined in the defaults.
    #[serde(default)]
    pub definitions: BTreeMap<String, AlarmDefinition>,
    /// Alarms watched during every production deployment and bake; ALARM rolls back.
    #[serde(default)]
    pub rollback: Vec<String>,
    /// Extra alarms watched in one-box steps, scoped to the one box's metrics.
    #[serde(default)]
    pub one_box_rollback: Vec<String>,
    /// Alarms that block a production deployment from starting.
    #[serde(default)]
    pub blockers: AlarmBlockers,
}

/// Blocker alarms, checked before any production deployment starts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlarmBlockers {
    /// The team's own alarms, e.g. its high-severity aggregate alarm.
    #[serde(default)]
    pub team: Vec<String>,
    /// Organisation-wide alarms, e.g. a large-scale event alarm.
    #[serde(default)]
    pub organisation: Vec<String>,
}

/// One alarm: a CloudWatch-style metric alarm, a composite rule, an anomaly alarm on a standard
/// metric, or a statistical one-box-versus-fleet judge. All four are OK, ALARM or
/// INSUFFICIENT_DATA, can be children of composites and can be named as rollback alarms.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlarmDefinition {
    /// A rule in CloudWatch's composite syntax, e.g. `ALARM("a") OR ALARM("b")`.
    Composite(String),
    Metric(MetricAlarm),
    /// A standard metric compared with its own baseline, without a per-team threshold.
    Anomaly(AnomalyAlarm),
    /// Kayenta's judge: a Mann–Whitney test of the one box's values against the fleet's.
    Judge(JudgeAlarm),
}

/// Anomaly detection on a standard metric (request count, latency, fault rate): the recent
/// periods of the watched series against a baseline, with no threshold to tune per team.
/// Too few baseline periods, or no recent data for `above_baseline`, is INSUFFICIENT_DATA.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AnomalyAlarm {
    /// Which anomaly to look for.
    pub check: AnomalyCheck,
    /// The metric (a series name), optionally divided by another for ratios.
    pub metric: String,
    /// Denominator for a ratio such as faults / requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub divide_by: Option<String>,
    /// Label selectors of the series judged, e.g. `{role: one-box}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The per-period statistic, as for metric alarms; defaults to `Sum` for
    /// `requests_to_zero` and `Average` for `above_baseline`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statistic: Option<String>,
    #[serde(default = "one_minute")]
    pub period: Duration,
    /// The recent periods judged, ending at the evaluation time.
    #[serde(default = "default_recent_periods")]
    pub recent_periods: u32,
    /// Where the normal values come from.
    pub baseline: AnomalyBaseline,
    /// Fewest baseline periods with data to judge at all (a robust median and MAD need several).
    #[serde(default = "default_min_baseline_points")]
    pub min_baseline_points: u32,
    /// `above_baseline`: the recent median must be above this multiple of the baseline median...
    #[serde(default = "default_anomaly_factor")]
    pub factor: f64,
    /// ...and above it by this many robust standard deviations (1.4826 × MAD)...
    #[serde(default = "default_robust_z")]
    pub robust_z: f64,
    /// ...and by at least this much in absolute terms (set it for rates near zero, e.g. faults).
    #[serde(default)]
    pub min_increase: f64,
}

/// The anomaly an [`AnomalyAlarm`] looks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyCheck {
    /// Every recent period zero or missing while the baseline had traffic.
    RequestsToZero,
    /// The recent median far above the baseline median (see `factor`, `robust_z`,
    /// `min_increase`).
    AboveBaseline,
}

/// The normal values an anomaly alarm compares with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyBaseline {
    /// The same series in this many periods just before the recent ones: `{before: 30}`.
    Before(u32),
    /// Other series over the same periods, selected by labels, e.g. the boxes still on the old
    /// artifact: `{fleet: {role: fleet}}`.
    Fleet(BTreeMap<String, String>),
}

fn default_recent_periods() -> u32 {
    5
}

fn default_min_baseline_points() -> u32 {
    10
}

fn default_anomaly_factor() -> f64 {
    2.0
}

fn default_robust_z() -> f64 {
    5.0
}

/// A statistical judge after Kayenta's: the values of `metric` from the canary scope (the one
/// box) and from the baseline scope (the boxes still on the old artifact) over the last
/// `window`, compared by a Mann–Whitney test. ALARM when the whole confidence interval of the
/// shift lies outside the tolerance band in a watched direction; fewer than `min_points` values
/// on either side is INSUFFICIENT_DATA. The defaults are Kayenta's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JudgeAlarm {
    /// The metric (a series name): a gauge's samples, or a counter's increments, are the values.
    pub metric: String,
    /// Label selectors of the canary's series, e.g. `{role: one-box}`.
    pub canary: BTreeMap<String, String>,
    /// Label selectors of the baseline's series, e.g. `{role: fleet}`.
    pub baseline: BTreeMap<String, String>,
    /// The values judged: those of the last `window` before the evaluation (Kayenta's sliding
    /// lookback).
    #[serde(default = "one_hour")]
    pub window: Duration,
    /// Which way the metric may regress.
    #[serde(default)]
    pub direction: JudgeDirection,
    /// Confidence level of the interval, in (0, 1).
    #[serde(default = "default_confidence")]
    pub confidence: f64,
    /// Half-width of the tolerance band around zero, as a fraction of |estimate|.
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
    /// Fewest values on each side to judge at all.
    #[serde(default = "default_min_points")]
    pub min_points: u32,
    /// An increase also needs mean(canary) / mean(baseline) above this.
    #[serde(default = "one")]
    pub allowed_increase: f64,
    /// A decrease also needs mean(canary) / mean(baseline) below 1 / this.
    #[serde(default = "one")]
    pub allowed_decrease: f64,
}

/// Which way a judged metric may regress.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum JudgeDirection {
    /// Only higher is bad (latency, faults).
    Increase,
    /// Only lower is bad (request count, success rate).
    Decrease,
    #[default]
    Either,
}

fn one_hour() -> Duration {
    Duration::from_hours(1)
}

fn default_confidence() -> f64 {
    0.98
}

fn default_tolerance() -> f64 {
    0.25
}

fn default_min_points() -> u32 {
    50
}

fn one() -> f64 {
    1.0
}

/// A metric alarm with CloudWatch's fields and semantics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricAlarm {
    /// The metric (a series name), optionally divided by another for ratios.
    pub metric: String,
    /// Denominator for a ratio such as faults / requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub divide_by: Option<String>,
    /// Label selectors narrowing the series, e.g. `{role: one-box}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// `Average`, `Sum`, `Minimum`, `Maximum`, `SampleCount` or `pNN` (e.g. `p99`, `p99.9`).
    pub statistic: String,
    pub period: Duration,
    pub evaluation_periods: u32,
    /// "M out of N": defaults to `evaluation_periods`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datapoints_to_alarm: Option<u32>,
    pub comparison: ComparisonOperator,
    pub threshold: f64,
    #[serde(default)]
    pub treat_missing_data: TreatMissingData,
}

/// CloudWatch's comparison operators, by their API names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ComparisonOperator {
    GreaterThanOrEqualToThreshold,
    GreaterThanThreshold,
    LessThanThreshold,
    LessThanOrEqualToThreshold,
}

/// CloudWatch's `TreatMissingData`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum TreatMissingData {
    #[default]
    Missing,
    NotBreaching,
    Breaching,
    Ignore,
}

/// When a production deployment may *start*. Empty `allow` means any time, less the exclusions.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TimeWindows {
    /// Windows during which a start is allowed.
    #[serde(default)]
    pub allow: Vec<AllowWindow>,
    /// Days on which nothing starts.
    #[serde(default)]
    pub holidays: Holidays,
    /// Weekdays on which nothing starts, e.g. `[friday]`.
    #[serde(default)]
    pub exclude_weekdays: Vec<Weekday>,
    /// No start before this local time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<Time>,
    /// No start at or after this local time, e.g. `15:00`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<Time>,
}

/// An allow-window: opens at every time the cron expression matches, for `duration`
/// (default one minute, so `* 9-16 * * MON-THU` opens every minute from 09:00 to 16:59).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AllowWindow {
    /// Five-field cron (minute hour day-of-month month day-of-week).
    pub cron: String,
    #[serde(default = "one_minute")]
    pub duration: Duration,
    /// IANA time zone; defaults to the time zone of the region being deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
}

fn one_minute() -> Duration {
    Duration::from_minutes(1)
}

/// Holidays, as dates and as iCalendar files.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Holidays {
    #[serde(default)]
    pub dates: Vec<Date>,
    /// Paths of `.ics` files, relative to the file that names them.
    #[serde(default)]
    pub calendars: Vec<String>,
}

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Weekday {
    Monday,
    Tuesday,
    Wednesday,
    Thursday,
    Friday,
    Saturday,
    Sunday,
}

/// Limits on what is in flight.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// The most distinct artifacts deploying or baking in production stages at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_artifacts_in_production: Option<u32>,
}

/// Who may dial bake down for an urgent change, and how far.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UrgentPolicy {
    /// People (e.g. principal engineers) whose approval counts.
    #[serde(default)]
    pub approvers: Vec<String>,
    /// Approvals needed, from distinct approvers other than the change's authors.
    #[serde(default = "two")]
    pub required_approvals: u32,
    /// Bake may be cut to no less than this share of its normal duration, in percent.
    #[serde(default = "default_minimum_bake_percent")]
    pub minimum_bake_percent: u32,
}

fn two() -> u32 {
    2
}
fn default_minimum_bake_percent() -> u32 {
    25
}

impl Default for UrgentPolicy {
    fn default() -> Self {
        UrgentPolicy {
            approvers: Vec::new(),
            required_approvals: two(),
            minimum_bake_percent: default_minimum_bake_percent(),
        }
    }
}
