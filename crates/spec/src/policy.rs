//! Best-practice checks: the organisation's policy file and the rules `gantry check` applies to
//! every pipeline.
//!
//! The seed's answer to teams not learning from each other: "Our solution was to mechanize our
//! learning by adding checks for best practices into the tools we use to build and release
//! software ... we allowed these checks to be configured on a per-organization basis." A rule
//! starts as a warning, "By placing messages in the tools, it almost guaranteed that team members
//! would learn about the best practice and when that best practice would take effect", and
//! "Our systems have opt-out mechanisms so we don't slow down teams that need a permanent or
//! temporary exemption".
//!
//! This module owns the [`Policy`] file ([`load_policy`]), the rules ([`Rule`]) and their
//! evaluation over loaded pipelines ([`check`]), which yields a [`Report`]: one [`Finding`] per
//! rule a pipeline breaks, and each pipeline's [`Automation`] level. Rules read the expanded
//! [`Plan`](gantry_model::Plan); none does I/O or reads a clock (`today` is an argument).
//!
//! Levels: `off` skips a rule; `warn` reports; `enforce` reports and fails the check;
//! `{level: warn, enforce_from: DATE}` warns before DATE and enforces on and after it. A rule the
//! policy does not name is at `warn`. An exemption (pipeline, rule, reason, expiry) turns a
//! finding into an exempted note that does not count, up to and including its expiry date; after
//! that the finding counts again and says the exemption expired.
//!
//! | rule | fires when | from the seeds |
//! | --- | --- | --- |
//! | `prod-waves-start-with-one-box` | a wave's first step is not a one-box step, or the one box takes more than 10% of a target's traffic | "Deployments to each production wave start with a one-box stage ... the one box serves at most ten percent of overall requests" |
//! | `first-wave-single-region-zone-by-zone` | the first wave covers more than one region, or a step deploys two zones (cells) of a region at once | "The first wave deploys to a Region with a low number of requests ... to only one Availability Zone (or cell) at a time within that Region" |
//! | `one-box-bake-at-least-1h` | a production one-box step bakes less than 1 h | "A typical pipeline waits at least one hour after each one-box stage" |
//! | `first-wave-bake-at-least-12h` | the first wave bakes less than 12 h after its last step | "at least 12 hours after the first regional wave" |
//! | `rollback-alarm-on-every-prod-stage` | a production step watches no rollback alarm | "During the entire bake time, the deployment is automatically rolled back if the team's high-severity aggregate alarm goes into the alarm state" |
//! | `bake-requires-data-points` | a production step bakes for a time without a minimum data-point count | "The bake time includes requirements to wait for a specific number of data points in the team's metrics"; "wait for a fixed period of time in addition to gathering positive data points" |
//! | `windows-exclude-weekends-and-holidays` | a deployment may start on a Saturday or Sunday, or no holidays are listed | "Oncall engineers typically take longer to engage at night, on office holidays, and on weekends, so these times are excluded from the time windows" |
//! | `gamma-mirrors-prod` | there is no gamma, or its deployment strategy, one-box step or rollback alarms differ from production's | "Gamma is as production-like as possible, including the same deployment configuration, the same monitoring and alarms" |
//! | `code-review-required` | `code_review: optional` | "The pipeline enforces the requirement that all commits on the mainline branch must be code reviewed and approved" |
//! | `hermetic-build` | `build.network: true` | "All builds run without network access to isolate the builds and encourage build reproducibility" |
//! | `auto-rollback-on` | a stage's deployment has `auto_rollback: false` | "if the deployment engine can detect a failure, it should roll back the change to minimize the time that customers see a defect" |
//!
//! Automation levels count promotions (moves from one stage to the next) that wait for a person:
//! the seed's teams "classified pipelines by their level of automation" and "gradually turned on
//! automation at different stages of their pipeline until they no longer needed to manually
//! trigger any step". See [`AutomationLevel`].
//!
//! `docs/policy.md` is the user guide: the file format, an example and this table.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use gantry_model::pipeline::{
    CodeReview, DeploymentStrategy, HostCount, HostCountKind, PreprodKind, Promotion, Weekday,
};
use gantry_model::{Duration, Plan, Stage, StageKind, StepKind};
use jiff::civil::Date;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, IntoDeserializer, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::de::closest;
use crate::diagnostic::{Diagnostic, Diagnostics, Location};
use crate::node::Node;
use crate::{Loaded, located};

/// The most of a target's traffic a one box may take (seed: "at most ten percent").
pub const MAX_ONE_BOX_PERCENT: u32 = 10;
/// The shortest bake after a production one-box step.
pub const MIN_ONE_BOX_BAKE: Duration = Duration::from_hours(1);
/// The shortest bake after the first wave.
pub const MIN_FIRST_WAVE_BAKE: Duration = Duration::from_hours(12);
/// A finding is one line: lists of steps longer than this end in "and N more".
const LISTED: usize = 4;
/// How far ahead the weekend check looks for an allow-window opening on a Saturday or Sunday:
/// a year and a week covers every day-of-month and month combination a cron can name.
const WEEKEND_HORIZON_DAYS: i32 = 372;

/// The organisation's policy file.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Rule settings by rule id. Rules not named here are at `warn`.
    #[serde(default)]
    pub rules: BTreeMap<String, RuleSetting>,
    /// Per-pipeline exemptions from one rule each, with a reason and an expiry.
    #[serde(default)]
    pub exemptions: Vec<Exemption>,
}

/// How strictly a rule applies: `off`, `warn`, `enforce`, or `{level: warn, enforce_from: DATE}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleSetting {
    pub level: RuleLevel,
    /// From this date on, the rule is enforced whatever `level` says.
    pub enforce_from: Option<Date>,
}

/// A rule's level as the policy writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RuleLevel {
    Off,
    Warn,
    Enforce,
}

impl RuleSetting {
    /// The setting of a rule the policy does not name.
    pub const DEFAULT: RuleSetting = RuleSetting { level: RuleLevel::Warn, enforce_from: None };

    /// The level that applies on `today`, or `None` when the rule is off.
    pub fn level_on(&self, today: Date) -> Option<Level> {
        if self.enforce_from.is_some_and(|from| from <= today) {
            return Some(Level::Enforce);
        }
        match self.level {
            RuleLevel::Off => None,
            RuleLevel::Warn => Some(Level::Warn),
            RuleLevel::Enforce => Some(Level::Enforce),
        }
    }
}

/// The map form of a rule setting.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ScheduledSetting {
    /// The level before `enforce_from`.
    #[serde(default = "warn")]
    level: RuleLevel,
    /// The date from which the rule is enforced.
    #[serde(default)]
    enforce_from: Option<Date>,
}

fn warn() -> RuleLevel {
    RuleLevel::Warn
}

/// The shapes a rule setting may take, for the JSON Schema only (the untagged form is read by
/// hand, so that a mistake is reported at its place in the file).
#[derive(JsonSchema)]
#[schemars(untagged)]
#[allow(dead_code, reason = "describes the accepted shapes for the JSON Schema; never built")]
enum RuleSettingForm {
    Level(RuleLevel),
    Scheduled(ScheduledSetting),
}

impl JsonSchema for RuleSetting {
    fn schema_name() -> Cow<'static, str> {
        "RuleSetting".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        RuleSettingForm::json_schema(generator)
    }
}

impl<'de> Deserialize<'de> for RuleSetting {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<RuleSetting, D::Error> {
        struct SettingVisitor;
        impl<'de> Visitor<'de> for SettingVisitor {
            type Value = RuleSetting;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`off`, `warn`, `enforce`, or `{level: warn, enforce_from: DATE}`")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<RuleSetting, E> {
                let level = RuleLevel::deserialize(text.into_deserializer())?;
                Ok(RuleSetting { level, enforce_from: None })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RuleSetting, A::Error> {
                let form =
                    ScheduledSetting::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RuleSetting { level: form.level, enforce_from: form.enforce_from })
            }
        }
        deserializer.deserialize_any(SettingVisitor)
    }
}

/// One pipeline's exemption from one rule.
#[derive(Clone, Debug, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Exemption {
    /// The pipeline's name, e.g. `payments-ledger-infra`.
    pub pipeline: String,
    /// The rule's id, e.g. `hermetic-build`.
    pub rule: String,
    /// Why the pipeline cannot follow the rule yet. Required.
    #[serde(default)]
    pub reason: String,
    /// The last day the exemption applies.
    pub expires: Date,
}

/// Reads and checks a policy file: unknown rule ids, exemptions without a reason or naming an
/// unknown rule, and `enforce_from` on a rule that is already enforced are errors.
pub fn load_policy(path: &Path) -> Result<Policy, Diagnostics> {
    let (policy, node): (Policy, Node) = crate::load_document(path)?;
    let ids: Vec<&str> = Rule::ALL.iter().map(|rule| rule.id()).collect();
    let mut out = Diagnostics::default();
    for (id, setting) in &policy.rules {
        if Rule::from_id(id).is_none() {
            out.push(unknown_rule(key_location(&node, "rules", id), id, &ids));
        } else if setting.level == RuleLevel::Enforce && setting.enforce_from.is_some() {
            out.push(
                Diagnostic::error(
                    located(&node, &["rules", id, "enforce_from"]),
                    format!("rule `{id}` is already enforced, so `enforce_from` has no effect"),
                )
                .with_hint("write `{level: warn, enforce_from: DATE}` to warn until DATE"),
            );
        }
    }
    for (index, exemption) in policy.exemptions.iter().enumerate() {
        let index = index.to_string();
        if Rule::from_id(&exemption.rule).is_none() {
            out.push(unknown_rule(
                located(&node, &["exemptions", &index, "rule"]),
                &exemption.rule,
                &ids,
            ));
        }
        if exemption.reason.trim().is_empty() {
            out.push(
                Diagnostic::error(
                    located(&node, &["exemptions", &index, "reason"]),
                    format!(
                        "the exemption of `{}` from `{}` gives no reason",
                        exemption.pipeline, exemption.rule
                    ),
                )
                .with_hint("add `reason:` saying why the pipeline cannot follow the rule yet"),
            );
        }
    }
    if out.has_errors() {
        return Err(out);
    }
    Ok(policy)
}

/// Where the key `key` of the mapping `parent` was written, else the closest value.
fn key_location(root: &Node, parent: &str, key: &str) -> Location {
    root.get(parent)
        .and_then(|entry| entry.value.get(key))
        .map(|entry| entry.key_location.clone())
        .unwrap_or_else(|| located(root, &[parent, key]))
}

fn unknown_rule(location: Location, id: &str, ids: &[&str]) -> Diagnostic {
    let hint = match closest(id, ids) {
        Some(near) => format!("did you mean `{near}`?"),
        None => format!("the rules are {}", ids.join(", ")),
    };
    Diagnostic::error(location, format!("unknown rule `{id}`")).with_hint(hint)
}

/// The best-practice rules. The module documentation gives each one's rationale.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    ProdWavesStartWithOneBox,
    FirstWaveSingleRegionZoneByZone,
    OneBoxBakeAtLeast1h,
    FirstWaveBakeAtLeast12h,
    RollbackAlarmOnEveryProdStage,
    BakeRequiresDataPoints,
    WindowsExcludeWeekendsAndHolidays,
    GammaMirrorsProd,
    CodeReviewRequired,
    HermeticBuild,
    AutoRollbackOn,
}

impl Rule {
    /// Every rule, in the order findings are reported.
    pub const ALL: [Rule; 11] = [
        Rule::ProdWavesStartWithOneBox,
        Rule::FirstWaveSingleRegionZoneByZone,
        Rule::OneBoxBakeAtLeast1h,
        Rule::FirstWaveBakeAtLeast12h,
        Rule::RollbackAlarmOnEveryProdStage,
        Rule::BakeRequiresDataPoints,
        Rule::WindowsExcludeWeekendsAndHolidays,
        Rule::GammaMirrorsProd,
        Rule::CodeReviewRequired,
        Rule::HermeticBuild,
        Rule::AutoRollbackOn,
    ];

    /// The id the policy file and the findings use.
    pub fn id(self) -> &'static str {
        match self {
            Rule::ProdWavesStartWithOneBox => "prod-waves-start-with-one-box",
            Rule::FirstWaveSingleRegionZoneByZone => "first-wave-single-region-zone-by-zone",
            Rule::OneBoxBakeAtLeast1h => "one-box-bake-at-least-1h",
            Rule::FirstWaveBakeAtLeast12h => "first-wave-bake-at-least-12h",
            Rule::RollbackAlarmOnEveryProdStage => "rollback-alarm-on-every-prod-stage",
            Rule::BakeRequiresDataPoints => "bake-requires-data-points",
            Rule::WindowsExcludeWeekendsAndHolidays => "windows-exclude-weekends-and-holidays",
            Rule::GammaMirrorsProd => "gamma-mirrors-prod",
            Rule::CodeReviewRequired => "code-review-required",
            Rule::HermeticBuild => "hermetic-build",
            Rule::AutoRollbackOn => "auto-rollback-on",
        }
    }

    pub fn from_id(id: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|rule| rule.id() == id)
    }

    /// What is wrong with `plan` under this rule, or `None` when it complies.
    fn evaluate(self, plan: &Plan, today: Date) -> Option<String> {
        match self {
            Rule::ProdWavesStartWithOneBox => waves_start_with_one_box(plan),
            Rule::FirstWaveSingleRegionZoneByZone => first_wave_single_region(plan),
            Rule::OneBoxBakeAtLeast1h => one_box_bake(plan),
            Rule::FirstWaveBakeAtLeast12h => first_wave_bake(plan),
            Rule::RollbackAlarmOnEveryProdStage => rollback_alarms(plan),
            Rule::BakeRequiresDataPoints => bake_data_points(plan),
            Rule::WindowsExcludeWeekendsAndHolidays => windows_exclude_weekends(plan, today),
            Rule::GammaMirrorsProd => gamma_mirrors_prod(plan),
            Rule::CodeReviewRequired => (plan.code_review == CodeReview::Optional).then(|| {
                "code review is optional; the rule asks that every commit be approved by \
                 someone other than its author"
                    .to_string()
            }),
            Rule::HermeticBuild => plan.build_network.then(|| {
                "the build may reach the network (`build.network: true`); the rule asks for \
                 builds without network access"
                    .to_string()
            }),
            Rule::AutoRollbackOn => auto_rollback(plan),
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// How a counted finding weighs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Reported; the check still passes.
    Warn,
    /// Reported; the check fails unless the pipeline is exempted.
    Enforce,
}

/// One rule broken by one pipeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub pipeline: String,
    /// The pipeline's own file (not its ancestors).
    pub file: PathBuf,
    pub rule: &'static str,
    pub level: Level,
    /// What is wrong, with the pipeline's actual numbers and what the rule asks for.
    pub message: String,
    /// The date the policy enforces this rule from, if it names one.
    pub enforce_from: Option<Date>,
    /// A valid exemption: its reason and expiry. An exempted finding does not count.
    pub exempted: Option<String>,
    /// The expiry date of an exemption that no longer applies.
    pub expired_exemption: Option<Date>,
}

impl Finding {
    /// Whether this finding fails the check.
    pub fn is_enforced_violation(&self) -> bool {
        self.level == Level::Enforce && self.exempted.is_none()
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = match (&self.exempted, self.level) {
            (Some(_), _) => "exempted",
            (None, Level::Warn) => "warning",
            (None, Level::Enforce) => "enforced",
        };
        write!(f, "{}: {label} [{}] {}", self.pipeline, self.rule, self.message)?;
        if let Some(exemption) = &self.exempted {
            write!(f, " (exempt {exemption})")?;
        } else if let (Level::Warn, Some(from)) = (self.level, self.enforce_from) {
            write!(f, " (enforced from {from})")?;
        }
        if let Some(expired) = self.expired_exemption {
            write!(f, " (its exemption expired on {expired})")?;
        }
        Ok(())
    }
}

/// How many of a pipeline's promotions wait for a person.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Automation {
    pub pipeline: String,
    /// Promotions (moves from one stage to the next) that wait for a manual approval.
    pub manual_promotions: usize,
    /// Every promotion: one fewer than the stages.
    pub total_promotions: usize,
    pub level: AutomationLevel,
}

/// A pipeline's level of automation, by its manual promotions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AutomationLevel {
    /// No promotion waits for a person: a merged change reaches every region hands-off.
    FullyAutomated,
    /// Some promotions, not all, wait for a manual approval.
    PartlyManual,
    /// Every promotion waits for a person: the pipeline is a visual interface to a manual
    /// release process (the seed's starting point, "manual steps and all").
    Manual,
}

impl AutomationLevel {
    pub fn from_counts(manual: usize, total: usize) -> AutomationLevel {
        if manual == 0 {
            AutomationLevel::FullyAutomated
        } else if manual < total {
            AutomationLevel::PartlyManual
        } else {
            AutomationLevel::Manual
        }
    }
}

impl fmt::Display for AutomationLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AutomationLevel::FullyAutomated => "fully automated",
            AutomationLevel::PartlyManual => "partly manual",
            AutomationLevel::Manual => "manual",
        })
    }
}

impl Automation {
    pub fn of(plan: &Plan) -> Automation {
        let promotions = &plan.stages[..plan.stages.len().saturating_sub(1)];
        let manual_promotions =
            promotions.iter().filter(|stage| stage.promotion == Promotion::Manual).count();
        let total_promotions = promotions.len();
        Automation {
            pipeline: plan.pipeline.clone(),
            manual_promotions,
            total_promotions,
            level: AutomationLevel::from_counts(manual_promotions, total_promotions),
        }
    }
}

impl fmt::Display for Automation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} ({} of {} promotions manual)",
            self.pipeline, self.level, self.manual_promotions, self.total_promotions
        )
    }
}

/// What `gantry check` found: findings in pipeline order, then rule order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub findings: Vec<Finding>,
    pub automation: Vec<Automation>,
}

impl Report {
    /// Whether any finding is enforced and not exempted: `gantry check` then exits non-zero.
    pub fn has_enforced_violations(&self) -> bool {
        self.findings.iter().any(Finding::is_enforced_violation)
    }
}

/// Applies `policy` to every pipeline as of `today`.
pub fn check(policy: &Policy, pipelines: &[Loaded], today: Date) -> Report {
    let mut report = Report::default();
    for loaded in pipelines {
        let plan = &loaded.plan;
        for rule in Rule::ALL {
            let setting = policy.rules.get(rule.id()).copied().unwrap_or(RuleSetting::DEFAULT);
            let Some(level) = setting.level_on(today) else { continue };
            let Some(message) = rule.evaluate(plan, today) else { continue };
            let exemptions: Vec<&Exemption> = policy
                .exemptions
                .iter()
                .filter(|exemption| {
                    exemption.pipeline == plan.pipeline && exemption.rule == rule.id()
                })
                .collect();
            let valid = exemptions
                .iter()
                .filter(|exemption| today <= exemption.expires)
                .max_by_key(|exemption| exemption.expires);
            let expired = match valid {
                Some(_) => None,
                None => exemptions.iter().map(|exemption| exemption.expires).max(),
            };
            report.findings.push(Finding {
                pipeline: plan.pipeline.clone(),
                file: loaded.files.first().cloned().unwrap_or_default(),
                rule: rule.id(),
                level,
                message,
                enforce_from: setting.enforce_from,
                exempted: valid.map(|exemption| {
                    format!("until {}: {}", exemption.expires, exemption.reason.trim())
                }),
                expired_exemption: expired,
            });
        }
        report.automation.push(Automation::of(plan));
    }
    report
}

// The rules, one function each. Each returns the message of its finding.

fn waves_start_with_one_box(plan: &Plan) -> Option<String> {
    let waves: Vec<&Stage> = plan.production_stages().collect();
    let without: Vec<&str> = waves
        .iter()
        .filter(|wave| wave.steps.first().is_none_or(|step| step.kind != StepKind::OneBox))
        .map(|wave| wave.name.as_str())
        .collect();
    if !without.is_empty() {
        return Some(format!(
            "{} not start with a one-box step; the rule asks that every wave does",
            counted(&without, "wave", "does", "do")
        ));
    }
    let mut by_share: BTreeMap<u32, Vec<&str>> = BTreeMap::new();
    for wave in &waves {
        if wave.deployment.one_box_percent > MAX_ONE_BOX_PERCENT {
            by_share.entry(wave.deployment.one_box_percent).or_default().push(&wave.name);
        }
    }
    (!by_share.is_empty()).then(|| {
        format!(
            "the one box takes {} of a target's traffic; the rule asks for a one box of at most \
             {MAX_ONE_BOX_PERCENT}%",
            grouped(&by_share, waves.len(), |share| format!("{share}%"))
        )
    })
}

fn first_wave_single_region(plan: &Plan) -> Option<String> {
    let Some(wave) = plan.production_stages().next() else {
        return Some("the pipeline has no production wave".to_string());
    };
    let regions: BTreeSet<&str> = wave
        .steps
        .iter()
        .flat_map(|step| step.targets.iter().map(|target| target.region.as_str()))
        .collect();
    if regions.len() > 1 {
        let names: Vec<&str> = regions.into_iter().collect();
        return Some(format!(
            "{} deploys to {} regions ({}); the rule asks for a single region",
            wave.name,
            names.len(),
            listed(&names)
        ));
    }
    for step in wave.steps.iter().filter(|step| step.kind != StepKind::OneBox) {
        let mut per_region: BTreeMap<&str, usize> = BTreeMap::new();
        for target in &step.targets {
            *per_region.entry(&target.region).or_default() += 1;
        }
        if let Some((region, count)) = per_region.into_iter().find(|(_, count)| *count > 1) {
            return Some(format!(
                "{} deploys {count} zones or cells of {region} at once; the rule asks for one \
                 at a time",
                step.name
            ));
        }
    }
    None
}

fn one_box_bake(plan: &Plan) -> Option<String> {
    let waves: Vec<&Stage> = plan.production_stages().collect();
    let mut by_duration: BTreeMap<Duration, Vec<&str>> = BTreeMap::new();
    for wave in &waves {
        for step in wave.steps.iter().filter(|step| step.kind == StepKind::OneBox) {
            if step.bake.duration < MIN_ONE_BOX_BAKE {
                by_duration.entry(step.bake.duration).or_default().push(&wave.name);
            }
        }
    }
    (!by_duration.is_empty()).then(|| {
        format!(
            "one-box bake is {}; the rule asks for at least {MIN_ONE_BOX_BAKE}",
            grouped(&by_duration, waves.len(), Duration::to_string)
        )
    })
}

fn first_wave_bake(plan: &Plan) -> Option<String> {
    let wave = plan.production_stages().next()?;
    let bake = &wave.steps.last()?.bake;
    (bake.duration < MIN_FIRST_WAVE_BAKE).then(|| {
        format!(
            "{} bakes {} after its last step; the rule asks for at least {MIN_FIRST_WAVE_BAKE}",
            wave.name, bake.duration
        )
    })
}

fn rollback_alarms(plan: &Plan) -> Option<String> {
    let steps: Vec<&str> = plan
        .production_stages()
        .flat_map(|wave| wave.steps.iter())
        .filter(|step| step.rollback_alarms.is_empty())
        .map(|step| step.name.as_str())
        .collect();
    let total: usize = plan.production_stages().map(|wave| wave.steps.len()).sum();
    let what = if steps.len() == total && total > 1 {
        "no production step has a rollback alarm".to_string()
    } else if steps.is_empty() {
        return None;
    } else {
        format!("{} no rollback alarm", counted(&steps, "production step", "has", "have"))
    };
    Some(format!("{what}; the rule asks for one in every production step"))
}

fn bake_data_points(plan: &Plan) -> Option<String> {
    let bakes: Vec<&gantry_model::Step> = plan
        .production_stages()
        .flat_map(|wave| wave.steps.iter())
        .filter(|step| step.bake.duration > Duration::ZERO)
        .collect();
    let steps: Vec<&str> = bakes
        .iter()
        .filter(|step| step.bake.data_points.is_empty())
        .map(|step| step.name.as_str())
        .collect();
    let what = if steps.len() == bakes.len() && bakes.len() > 1 {
        "no production bake asks for a minimum of data points".to_string()
    } else if steps.is_empty() {
        return None;
    } else {
        format!(
            "{} for a time without a minimum of data points",
            counted(&steps, "production step", "bakes", "bake")
        )
    };
    Some(format!("{what}; the rule asks for both a time and data points"))
}

fn windows_exclude_weekends(plan: &Plan, today: Date) -> Option<String> {
    let windows = &plan.time_windows;
    let mut problems = Vec::new();
    let open_weekend: Vec<Weekday> = [Weekday::Saturday, Weekday::Sunday]
        .into_iter()
        .filter(|day| !windows.exclude_weekdays.contains(day))
        .collect();
    if !open_weekend.is_empty() {
        if windows.allow.is_empty() {
            problems.push(
                "deployments may start at any time, weekends included (no allow-window, and \
                 `exclude_weekdays` leaves out neither Saturday nor Sunday)"
                    .to_string(),
            );
        }
        for window in &windows.allow {
            if let Some(day) = weekend_opening(&window.cron, window.duration, &open_weekend, today)
            {
                problems.push(format!("allow-window `{}` opens on {day}", window.cron));
            }
        }
    }
    if windows.holidays.dates.is_empty() && windows.holidays.calendars.is_empty() {
        problems.push("no holidays are listed".to_string());
    }
    (!problems.is_empty()).then(|| {
        format!(
            "{}; the rule asks that no deployment start at weekends or on holidays",
            problems.join("; ")
        )
    })
}

/// The first weekend day (among `days`) within a year of `today` on which the window is open.
/// A window that opens late on Friday and lasts into Saturday counts as open on Saturday.
fn weekend_opening(
    cron: &str,
    duration: Duration,
    days: &[Weekday],
    today: Date,
) -> Option<&'static str> {
    // A bad cron is a validation error, reported when the pipeline loads.
    let cron = crate::validate::parse_cron(cron).ok()?;
    let reach = jiff::Span::new().seconds(duration.as_seconds().saturating_sub(60) as i64);
    for offset in 0..WEEKEND_HORIZON_DAYS {
        let date = today.checked_add(jiff::Span::new().days(offset)).ok()?;
        let Some(day) = weekend_day(date.weekday()) else { continue };
        if !days.contains(&day) {
            continue;
        }
        let midnight = date.to_datetime(jiff::civil::Time::midnight());
        let end = midnight.checked_add(jiff::Span::new().days(1)).ok()?;
        let from = midnight.checked_sub(reach).ok()?;
        if cron.find_next_occurrence(&from, true).is_ok_and(|opening| opening < end) {
            return Some(if day == Weekday::Saturday { "Saturday" } else { "Sunday" });
        }
    }
    None
}

fn weekend_day(day: jiff::civil::Weekday) -> Option<Weekday> {
    match day {
        jiff::civil::Weekday::Saturday => Some(Weekday::Saturday),
        jiff::civil::Weekday::Sunday => Some(Weekday::Sunday),
        _ => None,
    }
}

fn gamma_mirrors_prod(plan: &Plan) -> Option<String> {
    let gamma = plan
        .stages
        .iter()
        .find(|stage| stage.kind == StageKind::Preprod { environment: PreprodKind::Gamma });
    let Some(gamma) = gamma else {
        return Some(
            "the pipeline has no gamma stage; the rule asks for a production-like gamma"
                .to_string(),
        );
    };
    let prod = plan.production_stages().next()?;
    let mut differences = deployment_differences(&gamma.deployment, &prod.deployment);
    let starts_with_one_box =
        |stage: &Stage| stage.steps.first().is_some_and(|step| step.kind == StepKind::OneBox);
    if starts_with_one_box(prod) && !starts_with_one_box(gamma) {
        differences.push("gamma has no one-box step".to_string());
    }
    let alarms = |stage: &Stage| -> BTreeSet<String> {
        stage
            .steps
            .iter()
            .find(|step| step.kind != StepKind::OneBox)
            .map(|step| step.rollback_alarms.iter().cloned().collect())
            .unwrap_or_default()
    };
    let (gamma_alarms, prod_alarms) = (alarms(gamma), alarms(prod));
    if gamma_alarms != prod_alarms {
        differences.push(format!(
            "gamma rolls back on {} but production on {}",
            alarm_list(&gamma_alarms),
            alarm_list(&prod_alarms)
        ));
    }
    (!differences.is_empty()).then(|| {
        format!(
            "{}; the rule asks for gamma's deployment configuration and alarms to equal \
             production's",
            differences.join(", ")
        )
    })
}

fn deployment_differences(gamma: &DeploymentStrategy, prod: &DeploymentStrategy) -> Vec<String> {
    let mut out = Vec::new();
    let mut compare = |field: &str, gamma: String, prod: String| {
        if gamma != prod {
            out.push(format!("{field} is {gamma} in gamma but {prod} in production"));
        }
    };
    let percent = |value: u32| format!("{value}%");
    compare("one_box_percent", percent(gamma.one_box_percent), percent(prod.one_box_percent));
    let hosts = |count: HostCount| match count.kind {
        HostCountKind::FleetPercent => format!("{}%", count.value),
        HostCountKind::HostCount if count.value == 1 => "1 host".to_string(),
        HostCountKind::HostCount => format!("{} hosts", count.value),
    };
    compare(
        "minimum_healthy_hosts",
        hosts(gamma.minimum_healthy_hosts),
        hosts(prod.minimum_healthy_hosts),
    );
    compare("batch_size", hosts(gamma.batch_size), hosts(prod.batch_size));
    compare(
        "rollback_batch_size",
        hosts(gamma.rollback_batch_size),
        hosts(prod.rollback_batch_size),
    );
    compare(
        "health_check_timeout",
        gamma.health_check_timeout.to_string(),
        prod.health_check_timeout.to_string(),
    );
    compare("hook_timeout", gamma.hook_timeout.to_string(), prod.hook_timeout.to_string());
    let on_off = |flag: bool| if flag { "on" } else { "off" }.to_string();
    compare("auto_rollback", on_off(gamma.auto_rollback), on_off(prod.auto_rollback));
    out
}

fn alarm_list(alarms: &BTreeSet<String>) -> String {
    if alarms.is_empty() {
        return "no alarm".to_string();
    }
    alarms.iter().map(|alarm| format!("`{alarm}`")).collect::<Vec<_>>().join(", ")
}

fn auto_rollback(plan: &Plan) -> Option<String> {
    let stages: Vec<&str> = plan
        .stages
        .iter()
        .filter(|stage| !stage.deployment.auto_rollback)
        .map(|stage| stage.name.as_str())
        .collect();
    (!stages.is_empty()).then(|| {
        format!(
            "automatic rollback is off in {}; the rule asks that a firing rollback alarm roll \
             the change back",
            if stages.len() == plan.stages.len() {
                "every stage".to_string()
            } else {
                listed(&stages)
            }
        )
    })
}

// Message helpers.

/// `names` as a sentence subject with its verb: "wave-2 does", "3 waves (a, b, c) do".
fn counted(names: &[&str], noun: &str, singular: &str, plural: &str) -> String {
    match names {
        [one] => format!("{one} {singular}"),
        _ => format!("{} {noun}s ({}) {plural}", names.len(), listed(names)),
    }
}

/// Values grouped by the stages that have them: "30m", or "30m in wave-1, 20m in wave-3".
fn grouped<T>(
    groups: &BTreeMap<T, Vec<&str>>,
    total: usize,
    show: impl Fn(&T) -> String,
) -> String {
    if let [(value, names)] = groups.iter().collect::<Vec<_>>()[..]
        && names.len() == total
    {
        return show(value);
    }
    groups
        .iter()
        .map(|(value, names)| format!("{} in {}", show(value), listed(names)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Names joined with commas, the first few only.
fn listed(names: &[&str]) -> String {
    let mut text = names.iter().take(LISTED).copied().collect::<Vec<_>>().join(", ");
    if names.len() > LISTED {
        text.push_str(&format!(" and {} more", names.len() - LISTED));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn automation_level_counts_manual_promotions() {
        let cases = [
            (0, 0, AutomationLevel::FullyAutomated),
            (0, 6, AutomationLevel::FullyAutomated),
            (1, 6, AutomationLevel::PartlyManual),
            (6, 6, AutomationLevel::Manual),
        ];
        for (manual, total, expected) in cases {
            assert_eq!(AutomationLevel::from_counts(manual, total), expected, "{manual}/{total}");
        }
    }

    #[test]
    fn schema_describes_both_setting_forms() {
        let schema = serde_json::to_string(&schemars::schema_for!(Policy)).unwrap();
        for word in ["\"enforce\"", "enforce_from", "exemptions", "expires"] {
            assert!(schema.contains(word), "{word} missing from {schema}");
        }
    }

    #[test]
    fn rule_ids_round_trip() {
        for rule in Rule::ALL {
            assert_eq!(Rule::from_id(rule.id()), Some(rule));
        }
    }
}
