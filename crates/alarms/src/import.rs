//! CloudWatch alarms teams already have, as Gantry alarm definitions: `gantry alarm import`.
//!
//! Two sources, in the shapes AWS documents them:
//! - a CloudFormation template as `cdk synth` emits it (JSON, or YAML in the long form
//!   `Fn::GetAtt:` that CDK writes): its `AWS::CloudWatch::Alarm` and
//!   `AWS::CloudWatch::CompositeAlarm` resources, with `Ref`, `Fn::GetAtt`, `Fn::Join` and
//!   `Fn::Sub` resolved in names and rules;
//! - the JSON of `aws cloudwatch describe-alarms`: `MetricAlarms` and `CompositeAlarms`.
//!
//! A metric alarm becomes a `metric` definition: the metric's name is the series name, its
//! namespace the `namespace` label and each dimension a label of its own (names outside
//! Prometheus's `[a-zA-Z_:][a-zA-Z0-9_:]*` have other characters replaced by `_`). `Statistic`
//! or `ExtendedStatistic`, `Period`, `EvaluationPeriods`, `DatapointsToAlarm`,
//! `ComparisonOperator`, `Threshold` and `TreatMissingData` keep their CloudWatch meaning. A
//! metric-math alarm whose expression is one metric divided by another (`m1/m2`, same
//! statistic, period and dimensions) becomes `divide_by`. A composite's rule is kept, its
//! alarm ARNs resolved to names in its own region and account ([`composite::resolve_arns`]).
//!
//! What cannot be translated is reported, never guessed: anomaly-detection bands, other
//! metric math, comparison operators Gantry lacks, statistics it does not know, ARNs of
//! another region or account, and composites whose children were not translated. Actions,
//! descriptions and units are not alarm semantics in Gantry (a firing alarm rolls back or
//! blocks) and are noted as dropped.

use std::cell::RefCell;
use std::collections::BTreeMap;

use gantry_model::Duration;
use gantry_model::pipeline::{AlarmDefinition, ComparisonOperator, MetricAlarm, TreatMissingData};
use serde_json::Value;

use crate::alarm_set::AlarmSet;
use crate::composite;
use crate::series::Labels;
use crate::statistic::Statistic;
use crate::{DefinitionError, Error};

/// The label an imported alarm's CloudWatch namespace goes to.
pub const NAMESPACE_LABEL: &str = "namespace";
/// Resources or alarms read from one source. A template or an account with more is split:
/// the limit bounds the work one import does on an untrusted file.
pub const MAX_ALARMS: usize = 10_000;
/// Deepest nesting of intrinsic functions resolved (`Fn::Join` of `Fn::Sub` of ...). CDK
/// nests two or three; the limit bounds the recursion on a hostile template.
pub const MAX_INTRINSIC_DEPTH: usize = 16;

/// The longest text an intrinsic function may build: CloudWatch's limit on an `AlarmRule`, the
/// longest text an alarm has. Names built from names could otherwise double at every step.
pub const MAX_RESOLVED_TEXT: usize = 10_240;

/// Refuses a built text longer than [`MAX_RESOLVED_TEXT`].
fn bounded(function: &str, text: String) -> Result<String, String> {
    if text.len() > MAX_RESOLVED_TEXT {
        return Err(format!(
            "`{function}` builds a text longer than {MAX_RESOLVED_TEXT} characters, CloudWatch's \
             longest alarm rule"
        ));
    }
    Ok(text)
}

/// Where the definitions came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceFormat {
    CloudFormation,
    DescribeAlarms,
}

/// The region and account composite rules resolve ARNs in (CloudFormation's `AWS::Region` and
/// `AWS::AccountId`). For `describe-alarms`, each alarm's own ARN says; these, when given,
/// must agree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportOptions {
    pub region: Option<String>,
    pub account: Option<String>,
}

/// What an import produced.
#[derive(Clone, Debug, PartialEq)]
pub struct Imported {
    pub format: SourceFormat,
    pub definitions: BTreeMap<String, AlarmDefinition>,
    /// Alarms not translated, and why.
    pub skipped: Vec<Finding>,
    /// Properties dropped from translated alarms, and why.
    pub notes: Vec<Finding>,
}

/// One alarm not translated, or one property dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub alarm: String,
    pub message: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}`: {}", self.alarm, self.message)
    }
}

/// Why a file could not be read as either source at all.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ImportError(pub String);

/// Reads `text` (JSON or YAML) as a template or a `describe-alarms` answer and translates its
/// alarms.
pub fn import(text: &str, options: &ImportOptions) -> Result<Imported, ImportError> {
    let document: Value = match serde_json::from_str(text) {
        Ok(value) => value,
        Err(json) => serde_saphyr::from_str(text).map_err(|yaml| {
            ImportError(format!(
                "neither JSON ({json}) nor YAML ({})",
                yaml.to_string().lines().next().unwrap_or_default()
            ))
        })?,
    };
    let importer = Importer { options, imported: None };
    if let Some(resources) = document.get("Resources").and_then(Value::as_object) {
        importer.template(resources)
    } else if document.get("MetricAlarms").is_some() || document.get("CompositeAlarms").is_some() {
        importer.describe_alarms(&document)
    } else {
        Err(ImportError(
            "not a CloudFormation template (no `Resources`) nor `aws cloudwatch describe-alarms` \
             output (no `MetricAlarms` or `CompositeAlarms`)"
                .to_string(),
        ))
    }
}

struct Importer<'o> {
    options: &'o ImportOptions,
    imported: Option<Imported>,
}

/// A composite waiting for its children: name, rule text, region and account of its ARNs.
struct PendingComposite {
    name: String,
    rule: Result<String, String>,
    region: Option<String>,
    account: Option<String>,
}

impl Importer<'_> {
    fn start(&mut self, format: SourceFormat) -> &mut Imported {
        self.imported.insert(Imported {
            format,
            definitions: BTreeMap::new(),
            skipped: Vec::new(),
            notes: Vec::new(),
        })
    }

    fn template(
        mut self,
        resources: &serde_json::Map<String, Value>,
    ) -> Result<Imported, ImportError> {
        let alarms: Vec<(&String, &Value)> = resources
            .iter()
            .filter(|(_, resource)| {
                matches!(
                    resource.get("Type").and_then(Value::as_str),
                    Some("AWS::CloudWatch::Alarm" | "AWS::CloudWatch::CompositeAlarm")
                )
            })
            .collect();
        if alarms.len() > MAX_ALARMS {
            return Err(ImportError(format!(
                "the template has {} alarms; at most {MAX_ALARMS} are imported at once",
                alarms.len()
            )));
        }
        let context = Template {
            resources,
            options: self.options,
            names: RefCell::new(BTreeMap::new()),
            resolving: RefCell::new(Vec::new()),
        };
        let mut composites = Vec::new();
        let mut names = Names::default();
        let imported = self.start(SourceFormat::CloudFormation);
        for (logical_id, resource) in alarms {
            let empty = Value::Object(Default::default());
            let raw = resource.get("Properties").unwrap_or(&empty);
            let name = context.alarm_name(logical_id);
            if let Err(message) = names.claim(&name, &format!("resource `{logical_id}`")) {
                imported.skipped.push(Finding { alarm: name, message });
                continue;
            }
            if raw.get("AlarmName").is_some()
                && let Err(why) = context.resolved_name(logical_id)
            {
                imported.notes.push(Finding {
                    alarm: name.clone(),
                    message: format!(
                        "`AlarmName` not resolved ({why}); the alarm is named by its logical ID"
                    ),
                });
            }
            let is_metric =
                resource.get("Type").and_then(Value::as_str) == Some("AWS::CloudWatch::Alarm");
            let dropped = if is_metric { METRIC_DROPPED } else { COMPOSITE_DROPPED };
            // Only what carries alarm semantics is resolved: an action's `Ref` to a topic
            // need not resolve for the alarm to translate.
            let mut semantic = raw.clone();
            if let Some(fields) = semantic.as_object_mut() {
                for key in dropped.iter().chain(&["AlarmName", "AlarmDescription"]) {
                    fields.remove(*key);
                }
            }
            let properties = match context.resolve(&semantic, 0) {
                Ok(properties) => properties,
                Err(message) => {
                    imported.skipped.push(Finding { alarm: name, message });
                    continue;
                }
            };
            if is_metric {
                if translate_metric(imported, name.clone(), &properties) {
                    note_dropped(imported, &name, raw, METRIC_DROPPED);
                }
            } else {
                note_dropped(imported, &name, raw, COMPOSITE_DROPPED);
                let rule = match properties.get("AlarmRule") {
                    Some(Value::String(rule)) => Ok(rule.clone()),
                    Some(_) => Err("`AlarmRule` is not a string".to_string()),
                    None => Err("no `AlarmRule`".to_string()),
                };
                composites.push(PendingComposite {
                    name,
                    rule,
                    region: Some(context.region().to_string()),
                    account: Some(context.account().to_string()),
                });
            }
        }
        let mut imported = self.imported.take().expect("started above");
        finish_composites(&mut imported, composites);
        Ok(imported)
    }

    fn describe_alarms(mut self, document: &Value) -> Result<Imported, ImportError> {
        let list = |key: &str| -> Result<Vec<Value>, ImportError> {
            match document.get(key) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::Array(items)) => Ok(items.clone()),
                Some(_) => Err(ImportError(format!("`{key}` is not a list"))),
            }
        };
        let (metrics, composites) = (list("MetricAlarms")?, list("CompositeAlarms")?);
        if metrics.len() + composites.len() > MAX_ALARMS {
            return Err(ImportError(format!(
                "the answer holds {} alarms; at most {MAX_ALARMS} are imported at once",
                metrics.len() + composites.len()
            )));
        }
        let options = self.options;
        let mut names = Names::default();
        let imported = self.start(SourceFormat::DescribeAlarms);
        for (index, alarm) in metrics.iter().enumerate() {
            let Some(name) = alarm.get("AlarmName").and_then(Value::as_str) else {
                imported.skipped.push(Finding {
                    alarm: format!("MetricAlarms[{index}]"),
                    message: "no `AlarmName`".to_string(),
                });
                continue;
            };
            if let Err(message) = names.claim(name, &format!("MetricAlarms[{index}]")) {
                imported.skipped.push(Finding { alarm: name.to_string(), message });
                continue;
            }
            if let Err(message) = check_account(alarm, options) {
                imported.skipped.push(Finding { alarm: name.to_string(), message });
                continue;
            }
            if translate_metric(imported, name.to_string(), alarm) {
                note_dropped(imported, name, alarm, METRIC_DROPPED);
            }
        }
        let mut pending = Vec::new();
        for (index, alarm) in composites.iter().enumerate() {
            let Some(name) = alarm.get("AlarmName").and_then(Value::as_str) else {
                imported.skipped.push(Finding {
                    alarm: format!("CompositeAlarms[{index}]"),
                    message: "no `AlarmName`".to_string(),
                });
                continue;
            };
            if let Err(message) = names.claim(name, &format!("CompositeAlarms[{index}]")) {
                imported.skipped.push(Finding { alarm: name.to_string(), message });
                continue;
            }
            if let Err(message) = check_account(alarm, options) {
                imported.skipped.push(Finding { alarm: name.to_string(), message });
                continue;
            }
            note_dropped(imported, name, alarm, COMPOSITE_DROPPED);
            let arn =
                alarm.get("AlarmArn").and_then(Value::as_str).and_then(composite::parse_alarm_arn);
            pending.push(PendingComposite {
                name: name.to_string(),
                rule: alarm
                    .get("AlarmRule")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .ok_or_else(|| "no `AlarmRule`".to_string()),
                region: arn.map(|arn| arn.region.to_string()).or_else(|| options.region.clone()),
                account: options.account.clone().or_else(|| arn.map(|arn| arn.account.to_string())),
            });
        }
        let mut imported = self.imported.take().expect("started above");
        finish_composites(&mut imported, pending);
        Ok(imported)
    }
}

/// The names given out so far, and where each came from: two alarms of one source under one
/// name would write one definition over the other, so the second is refused.
#[derive(Default)]
struct Names(BTreeMap<String, String>);

impl Names {
    fn claim(&mut self, name: &str, place: &str) -> Result<(), String> {
        match self.0.get(name) {
            Some(first) => Err(format!(
                "{place} has the same name as {first}; alarm names are unique in an account and \
                 region, so only the first is imported"
            )),
            None => {
                self.0.insert(name.to_string(), place.to_string());
                Ok(())
            }
        }
    }
}

/// An alarm of `describe-alarms` must be in the configured region and account, when given.
fn check_account(alarm: &Value, options: &ImportOptions) -> Result<(), String> {
    let Some(arn) = alarm.get("AlarmArn").and_then(Value::as_str) else { return Ok(()) };
    let Some(parts) = composite::parse_alarm_arn(arn) else {
        return Err(format!("`AlarmArn` `{arn}` is not an alarm ARN"));
    };
    if let Some(account) = &options.account
        && parts.account != account
    {
        return Err(format!(
            "the alarm is in account `{}`; the configured account is `{account}`",
            parts.account
        ));
    }
    if let Some(region) = &options.region
        && parts.region != region
    {
        return Err(format!(
            "the alarm is in region `{}`; the configured region is `{region}`",
            parts.region
        ));
    }
    Ok(())
}

/// Properties of a composite that carry no alarm semantics in Gantry.
const COMPOSITE_DROPPED: &[&str] = &[
    "AlarmActions",
    "OKActions",
    "InsufficientDataActions",
    "ActionsSuppressor",
    "ActionsSuppressorWaitPeriod",
    "ActionsSuppressorExtensionPeriod",
];

/// Properties of a metric alarm that carry no alarm semantics in Gantry.
const METRIC_DROPPED: &[&str] = &["AlarmActions", "OKActions", "InsufficientDataActions", "Unit"];

fn note_dropped(imported: &mut Imported, name: &str, properties: &Value, dropped: &[&str]) {
    let present: Vec<&str> = dropped
        .iter()
        .copied()
        .filter(|key| match properties.get(*key) {
            None | Some(Value::Null) => false,
            Some(Value::Array(items)) => !items.is_empty(),
            Some(Value::String(text)) => !text.is_empty(),
            // `describe-alarms` answers 0 for a suppressor period that is not set.
            Some(Value::Number(number)) => number.as_f64() != Some(0.0),
            Some(_) => true,
        })
        .collect();
    if !present.is_empty() {
        imported.notes.push(Finding {
            alarm: name.to_string(),
            message: format!(
                "{} not imported: a Gantry alarm in ALARM rolls back or blocks, and series carry \
                 no units",
                present.iter().map(|key| format!("`{key}`")).collect::<Vec<_>>().join(", ")
            ),
        });
    }
}

/// Translates one metric alarm's properties, recording it or why not; whether it was.
fn translate_metric(imported: &mut Imported, name: String, properties: &Value) -> bool {
    match metric_alarm(properties) {
        Ok(alarm) => {
            imported.definitions.insert(name, AlarmDefinition::Metric(alarm));
            true
        }
        Err(message) => {
            imported.skipped.push(Finding { alarm: name, message });
            false
        }
    }
}

fn number(properties: &Value, key: &str) -> Result<Option<f64>, String> {
    match properties.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(number)) => Ok(number.as_f64()),
        // CloudFormation accepts numbers written as strings.
        Some(Value::String(text)) => {
            text.parse::<f64>().map(Some).map_err(|_| format!("`{key}` is `{text}`, not a number"))
        }
        Some(_) => Err(format!("`{key}` is not a number")),
    }
}

fn whole(properties: &Value, key: &str) -> Result<Option<u32>, String> {
    match number(properties, key)? {
        None => Ok(None),
        Some(value) if value >= 1.0 && value.fract() == 0.0 && value <= f64::from(u32::MAX) => {
            Ok(Some(value as u32))
        }
        Some(value) => Err(format!("`{key}` is {value}, not a whole number of at least 1")),
    }
}

fn text<'v>(properties: &'v Value, key: &str) -> Result<Option<&'v str>, String> {
    match properties.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(format!("`{key}` is not a string")),
    }
}

/// A Prometheus-safe name: characters outside `[a-zA-Z0-9_]` (and `:` for metrics) become `_`,
/// and a leading digit gets a `_` before it.
fn safe_name(name: &str, allow_colon: bool) -> String {
    let mut safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || (allow_colon && c == ':') { c } else { '_' }
        })
        .collect();
    if safe.is_empty() || safe.starts_with(|c: char| c.is_ascii_digit()) {
        safe.insert(0, '_');
    }
    safe
}

/// The metric, namespace and dimensions of a `MetricStat`-like object, as a series name and
/// labels.
fn series_of(metric: &Value) -> Result<(String, BTreeMap<String, String>), String> {
    let name = text(metric, "MetricName")?.ok_or("no `MetricName`")?;
    let mut labels = BTreeMap::new();
    if let Some(namespace) = text(metric, "Namespace")? {
        labels.insert(NAMESPACE_LABEL.to_string(), namespace.to_string());
    }
    match metric.get("Dimensions") {
        None | Some(Value::Null) => {}
        Some(Value::Array(dimensions)) => {
            for dimension in dimensions {
                let (Some(key), Some(value)) = (
                    dimension.get("Name").and_then(Value::as_str),
                    dimension.get("Value").and_then(Value::as_str),
                ) else {
                    return Err("a dimension without a string `Name` and `Value`".to_string());
                };
                let label = safe_name(key, false);
                if label == NAMESPACE_LABEL
                    || labels.insert(label.clone(), value.to_string()).is_some()
                {
                    return Err(format!("dimension `{key}` maps to the label `{label}` twice"));
                }
            }
        }
        Some(_) => return Err("`Dimensions` is not a list".to_string()),
    }
    Ok((safe_name(name, true), labels))
}

fn comparison(properties: &Value) -> Result<ComparisonOperator, String> {
    Ok(match text(properties, "ComparisonOperator")?.ok_or("no `ComparisonOperator`")? {
        "GreaterThanOrEqualToThreshold" => ComparisonOperator::GreaterThanOrEqualToThreshold,
        "GreaterThanThreshold" => ComparisonOperator::GreaterThanThreshold,
        "LessThanThreshold" => ComparisonOperator::LessThanThreshold,
        "LessThanOrEqualToThreshold" => ComparisonOperator::LessThanOrEqualToThreshold,
        other @ ("LessThanLowerOrGreaterThanUpperThreshold"
        | "LessThanLowerThreshold"
        | "GreaterThanUpperThreshold") => {
            return Err(format!(
                "`{other}` compares with an anomaly-detection band, which Gantry does not model; \
                 use an `anomaly` alarm (docs/alarms.md)"
            ));
        }
        other => return Err(format!("unknown `ComparisonOperator` `{other}`")),
    })
}

fn treat_missing(properties: &Value) -> Result<TreatMissingData, String> {
    Ok(match text(properties, "TreatMissingData")? {
        None | Some("missing") => TreatMissingData::Missing,
        Some("notBreaching") => TreatMissingData::NotBreaching,
        Some("breaching") => TreatMissingData::Breaching,
        Some("ignore") => TreatMissingData::Ignore,
        Some(other) => return Err(format!("unknown `TreatMissingData` `{other}`")),
    })
}

/// The statistic of `Statistic` or `ExtendedStatistic` (or a `MetricStat`'s `Stat`), checked
/// with Gantry's parser.
fn statistic(properties: &Value, keys: &[&str]) -> Result<String, String> {
    let found: Vec<&str> =
        keys.iter().filter_map(|key| text(properties, key).ok().flatten()).collect();
    let [statistic] = found.as_slice() else {
        return Err(format!(
            "expected exactly one of {}",
            keys.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
        ));
    };
    statistic
        .parse::<Statistic>()
        .map_err(|message| format!("statistic not translated: {message}"))?;
    Ok(statistic.to_string())
}

fn metric_alarm(properties: &Value) -> Result<MetricAlarm, String> {
    if properties.get("ThresholdMetricId").is_some_and(|id| !id.is_null()) {
        return Err("the threshold is an anomaly-detection band (`ThresholdMetricId`), which \
                    Gantry does not model; use an `anomaly` alarm (docs/alarms.md)"
            .to_string());
    }
    match text(properties, "EvaluateLowSampleCountPercentile")? {
        None | Some("evaluate") => {}
        Some(other) => {
            return Err(format!(
                "`EvaluateLowSampleCountPercentile: {other}` is not modelled: Gantry evaluates \
                 percentiles on any number of samples (`evaluate`)"
            ));
        }
    }
    let threshold = number(properties, "Threshold")?.ok_or("no `Threshold`")?;
    if !threshold.is_finite() {
        return Err("`Threshold` is not a finite number".to_string());
    }
    let (metric, divide_by, labels, statistic, period) = match properties.get("Metrics") {
        Some(Value::Array(metrics)) if !metrics.is_empty() => math_ratio(metrics)?,
        _ => {
            let (metric, labels) = series_of(properties)?;
            let statistic = statistic(properties, &["Statistic", "ExtendedStatistic"])?;
            let period = whole(properties, "Period")?.ok_or("no `Period`")?;
            (metric, None, labels, statistic, period)
        }
    };
    let evaluation_periods =
        whole(properties, "EvaluationPeriods")?.ok_or("no `EvaluationPeriods`")?;
    Ok(MetricAlarm {
        metric,
        divide_by,
        labels,
        statistic,
        period: Duration::from_seconds(u64::from(period)),
        evaluation_periods,
        datapoints_to_alarm: whole(properties, "DatapointsToAlarm")?,
        comparison: comparison(properties)?,
        threshold,
        treat_missing_data: treat_missing(properties)?,
    })
}

type Ratio = (String, Option<String>, BTreeMap<String, String>, String, u32);

/// A metric-math alarm whose returned expression is `a/b` of two `MetricStat`s with the same
/// statistic, period and dimensions: `metric: a, divide_by: b`.
fn math_ratio(metrics: &[Value]) -> Result<Ratio, String> {
    let refuse = |why: &str| {
        Err(format!(
            "metric math is translated only as one metric divided by another (`m1/m2`, same \
             statistic, period and dimensions): {why}"
        ))
    };
    // A query of another account's metric (`AccountId`, a cross-account alarm) would read
    // this account's series of the same name in Gantry: refused, naming it.
    if let Some(account) =
        metrics.iter().find_map(|metric| metric.get("AccountId").and_then(Value::as_str))
    {
        return Err(format!(
            "the alarm reads metrics of account `{account}` (`AccountId`); Gantry reads the series \
             its own scrapes store, so a cross-account alarm is not translated"
        ));
    }
    let returned: Vec<&Value> = metrics
        .iter()
        .filter(|metric| metric.get("ReturnData").and_then(Value::as_bool).unwrap_or(true))
        .collect();
    let [expression] = returned.as_slice() else {
        return refuse("not exactly one metric returns data");
    };
    let Some(text) = expression.get("Expression").and_then(Value::as_str) else {
        return refuse("the returned metric is not an expression");
    };
    let Some((top, bottom)) = text.split_once('/') else { return refuse(&format!("`{text}`")) };
    let stat = |id: &str| -> Result<(String, BTreeMap<String, String>, String, u32), String> {
        let id = id.trim();
        let entry = metrics
            .iter()
            .find(|metric| metric.get("Id").and_then(Value::as_str) == Some(id))
            .ok_or_else(|| format!("`{text}` names `{id}`, which is not one of the metrics"))?;
        let stat =
            entry.get("MetricStat").ok_or_else(|| format!("`{id}` is not a `MetricStat`"))?;
        let metric = stat.get("Metric").ok_or_else(|| format!("`{id}` has no `Metric`"))?;
        let (name, labels) = series_of(metric)?;
        let statistic = statistic(stat, &["Stat"])?;
        let period = whole(stat, "Period")?.ok_or_else(|| format!("`{id}` has no `Period`"))?;
        Ok((name, labels, statistic, period))
    };
    let (top, bottom) = match (stat(top), stat(bottom)) {
        (Ok(top), Ok(bottom)) => (top, bottom),
        (Err(why), _) | (_, Err(why)) => return refuse(&why),
    };
    if top.1 != bottom.1 || top.2 != bottom.2 || top.3 != bottom.3 {
        return refuse(&format!(
            "`{text}` divides metrics of different dimensions, statistics or periods"
        ));
    }
    Ok((top.0, Some(bottom.0), top.1, top.2, top.3))
}

/// Resolves each composite's ARNs and keeps it if every child was translated.
fn finish_composites(imported: &mut Imported, composites: Vec<PendingComposite>) {
    let mut pending: Vec<(String, composite::Rule)> = Vec::new();
    for composite in composites {
        let rule = composite.rule.and_then(|text| {
            let rule =
                composite::parse(&text).map_err(|error| format!("rule `{text}`: {error}"))?;
            match (&composite.region, &composite.account) {
                (Some(region), Some(account)) => composite::resolve_arns(&rule, region, account),
                _ if rule.alarm_names().iter().any(|name| name.starts_with("arn:")) => {
                    Err("the rule names alarms by ARN; give the region and account (`--region`, \
                     `--account`) to resolve them"
                        .to_string())
                }
                _ => Ok(rule),
            }
        });
        match rule {
            Ok(rule) => pending.push((composite.name, rule)),
            Err(message) => imported.skipped.push(Finding { alarm: composite.name, message }),
        }
    }
    // A composite whose child was not translated is not either; that may cascade.
    loop {
        let missing_children = |rule: &composite::Rule| -> Vec<String> {
            rule.alarm_names()
                .into_iter()
                .filter(|child| {
                    !imported.definitions.contains_key(*child)
                        && !pending.iter().any(|(other, _)| other == child)
                })
                .map(|child| format!("`{child}`"))
                .collect()
        };
        let Some((index, missing)) = pending.iter().enumerate().find_map(|(index, (_, rule))| {
            let missing = missing_children(rule);
            (!missing.is_empty()).then_some((index, missing))
        }) else {
            break;
        };
        let (name, _) = pending.remove(index);
        imported.skipped.push(Finding {
            alarm: name,
            message: format!(
                "its rule names {}, which {} not translated",
                missing.join(", "),
                if missing.len() == 1 { "was" } else { "were" }
            ),
        });
    }
    for (name, rule) in pending {
        imported.definitions.insert(name, AlarmDefinition::Composite(rule.to_string()));
    }
    keep_what_loads(imported);
}

/// Drops whatever the alarm set refuses (a period CloudWatch would not take, a cycle of
/// composites, a composite over a dropped alarm), reporting why, until the rest loads: the
/// written definitions always load as they are.
fn keep_what_loads(imported: &mut Imported) {
    for _ in 0..=imported.definitions.len() {
        let Err(error) = AlarmSet::new(&imported.definitions, Labels::new()) else { return };
        let refused: Vec<DefinitionError> = match error {
            Error::InvalidDefinitions(refused) => refused,
            other => {
                // Not about one alarm: keep nothing rather than write what does not load.
                let names: Vec<String> = imported.definitions.keys().cloned().collect();
                for alarm in names {
                    imported.skipped.push(Finding { alarm, message: other.to_string() });
                }
                imported.definitions.clear();
                return;
            }
        };
        let mut removed = false;
        for DefinitionError { alarm, message } in refused {
            if imported.definitions.remove(&alarm).is_some() {
                removed = true;
                imported.skipped.push(Finding { alarm, message });
            }
        }
        if !removed {
            // Errors that name no definition: refuse all, as above.
            let names: Vec<String> = imported.definitions.keys().cloned().collect();
            for alarm in names {
                imported.skipped.push(Finding {
                    alarm,
                    message: "the alarm set refused the definitions".to_string(),
                });
            }
            imported.definitions.clear();
            return;
        }
    }
}

/// A template's resources, for resolving intrinsic functions.
struct Template<'t> {
    resources: &'t serde_json::Map<String, Value>,
    options: &'t ImportOptions,
    /// Each alarm's `AlarmName`, resolved once (names may `Ref` each other, so resolving them
    /// again at every mention would take time exponential in the chain), or why it did not.
    names: RefCell<BTreeMap<String, Result<String, String>>>,
    /// The alarms whose `AlarmName` is being resolved, outermost first: one met again is a
    /// cycle, which CloudFormation refuses.
    resolving: RefCell<Vec<String>>,
}

/// Stand-ins for `AWS::Region` and `AWS::AccountId` when none are configured: the ARNs a
/// template builds from them then resolve among themselves.
const TEMPLATE_REGION: &str = "template-region";
const TEMPLATE_ACCOUNT: &str = "000000000000";

impl Template<'_> {
    fn region(&self) -> &str {
        self.options.region.as_deref().unwrap_or(TEMPLATE_REGION)
    }

    fn account(&self) -> &str {
        self.options.account.as_deref().unwrap_or(TEMPLATE_ACCOUNT)
    }

    /// The alarm's name: its `AlarmName` resolved, else its logical ID (CloudFormation
    /// generates a name at deployment, which the template cannot know).
    fn alarm_name(&self, logical_id: &str) -> String {
        self.resolved_name(logical_id).unwrap_or_else(|_| logical_id.to_string())
    }

    /// The alarm's `AlarmName` resolved, or why not (none given, a function the import does not
    /// know, a name built from itself).
    fn resolved_name(&self, logical_id: &str) -> Result<String, String> {
        if let Some(name) = self.names.borrow().get(logical_id) {
            return name.clone();
        }
        if self.resolving.borrow().iter().any(|id| id == logical_id) {
            let mut chain = self.resolving.borrow().clone();
            chain.push(logical_id.to_string());
            return Err(format!("the names refer to each other: {}", chain.join(" → ")));
        }
        let Some(written) = self
            .resources
            .get(logical_id)
            .and_then(|resource| resource.get("Properties"))
            .and_then(|properties| properties.get("AlarmName"))
        else {
            return Err("none is given".to_string());
        };
        self.resolving.borrow_mut().push(logical_id.to_string());
        let resolved = self.resolve(written, 0).and_then(|name| match name {
            Value::String(name) if !name.is_empty() => Ok(name),
            other => Err(format!("it resolves to {other}, not a name")),
        });
        self.resolving.borrow_mut().pop();
        self.names.borrow_mut().insert(logical_id.to_string(), resolved.clone());
        resolved
    }

    /// The name another alarm's `Ref` or ARN stands for: while an `AlarmName` is being resolved,
    /// only a resolved name (so a name falls back to its logical ID only as a whole); in rules,
    /// the name the alarm is written under.
    fn name_for_reference(&self, logical_id: &str) -> Result<String, String> {
        if self.resolving.borrow().is_empty() {
            Ok(self.alarm_name(logical_id))
        } else {
            self.resolved_name(logical_id)
        }
    }

    fn is_alarm(&self, logical_id: &str) -> bool {
        self.resources
            .get(logical_id)
            .and_then(|r| r.get("Type"))
            .and_then(Value::as_str)
            .is_some_and(|kind| {
                matches!(kind, "AWS::CloudWatch::Alarm" | "AWS::CloudWatch::CompositeAlarm")
            })
    }

    fn arn(&self, logical_id: &str) -> Result<String, String> {
        Ok(format!(
            "arn:aws:cloudwatch:{}:{}:alarm:{}",
            self.region(),
            self.account(),
            self.name_for_reference(logical_id)?
        ))
    }

    fn reference(&self, name: &str) -> Result<String, String> {
        match name {
            "AWS::Region" => Ok(self.region().to_string()),
            "AWS::AccountId" => Ok(self.account().to_string()),
            "AWS::Partition" => Ok("aws".to_string()),
            "AWS::URLSuffix" => Ok("amazonaws.com".to_string()),
            // `Ref` of an alarm is its name.
            id if self.is_alarm(id) => self.name_for_reference(id),
            other => Err(format!(
                "`Ref: {other}` is not an alarm or a pseudo parameter the import knows"
            )),
        }
    }

    fn get_att(&self, id: &str, attribute: &str) -> Result<String, String> {
        if !self.is_alarm(id) {
            return Err(format!(
                "`Fn::GetAtt: [{id}, {attribute}]` does not name an alarm of the template"
            ));
        }
        match attribute {
            "Arn" => self.arn(id),
            other => Err(format!("`Fn::GetAtt: [{id}, {other}]`: only `Arn` is known")),
        }
    }

    /// `value` with every intrinsic function replaced by its value.
    fn resolve(&self, value: &Value, depth: usize) -> Result<Value, String> {
        if depth > MAX_INTRINSIC_DEPTH {
            return Err(format!("intrinsic functions nest deeper than {MAX_INTRINSIC_DEPTH}"));
        }
        let fields = match value {
            Value::Array(items) => {
                return items
                    .iter()
                    .map(|item| self.resolve(item, depth + 1))
                    .collect::<Result<_, _>>()
                    .map(Value::Array);
            }
            Value::Object(fields) => fields,
            other => return Ok(other.clone()),
        };
        if fields.len() == 1 {
            let (function, argument) = fields.iter().next().expect("one field");
            let string = |value: Value| -> Result<String, String> {
                match value {
                    Value::String(text) => Ok(text),
                    Value::Number(number) => Ok(number.to_string()),
                    other => Err(format!("`{function}` needs strings, found {other}")),
                }
            };
            match function.as_str() {
                "Ref" => {
                    let name = argument.as_str().ok_or("`Ref` takes a name")?;
                    return self.reference(name).map(Value::String);
                }
                "Fn::GetAtt" => {
                    let (id, attribute) = match argument {
                        Value::Array(parts) if parts.len() == 2 => (
                            parts[0].as_str().ok_or("`Fn::GetAtt` takes names")?.to_string(),
                            parts[1].as_str().ok_or("`Fn::GetAtt` takes names")?.to_string(),
                        ),
                        Value::String(text) => match text.split_once('.') {
                            Some((id, attribute)) => (id.to_string(), attribute.to_string()),
                            None => return Err(format!("`Fn::GetAtt: {text}` has no attribute")),
                        },
                        _ => return Err("`Fn::GetAtt` takes [LogicalId, Attribute]".to_string()),
                    };
                    return self.get_att(&id, &attribute).map(Value::String);
                }
                "Fn::Join" => {
                    let Some([separator, Value::Array(parts)]) =
                        argument.as_array().map(Vec::as_slice)
                    else {
                        return Err("`Fn::Join` takes [separator, [values...]]".to_string());
                    };
                    let separator =
                        separator.as_str().ok_or("`Fn::Join`'s separator is not a string")?;
                    let mut joined = String::new();
                    for (index, part) in parts.iter().enumerate() {
                        if index > 0 {
                            joined.push_str(separator);
                        }
                        joined.push_str(&self.resolve(part, depth + 1).and_then(string)?);
                        joined = bounded("Fn::Join", joined)?;
                    }
                    return Ok(Value::String(joined));
                }
                "Fn::Sub" => {
                    let (template, variables) = match argument {
                        Value::String(template) => (template.as_str(), None),
                        Value::Array(parts) if parts.len() == 2 => (
                            parts[0].as_str().ok_or("`Fn::Sub` takes a string")?,
                            parts[1].as_object(),
                        ),
                        _ => {
                            return Err(
                                "`Fn::Sub` takes a string or [string, {variables}]".to_string()
                            );
                        }
                    };
                    return self.substitute(template, variables, depth).map(Value::String);
                }
                name if name.starts_with("Fn::") => {
                    return Err(format!("`{name}` is not resolved by the import"));
                }
                _ => {}
            }
        }
        fields
            .iter()
            .map(|(key, field)| Ok((key.clone(), self.resolve(field, depth + 1)?)))
            .collect::<Result<serde_json::Map<_, _>, String>>()
            .map(Value::Object)
    }

    /// `Fn::Sub`: `${Name}` (a `Ref`, or a variable), `${Id.Arn}` (`Fn::GetAtt`), `${!x}` (a
    /// literal `${x}`).
    fn substitute(
        &self,
        template: &str,
        variables: Option<&serde_json::Map<String, Value>>,
        depth: usize,
    ) -> Result<String, String> {
        let mut out = String::new();
        let mut rest = template;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| format!("`Fn::Sub` `{template}` has an unclosed `${{`"))?;
            let name = &after[..end];
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str(&format!("${{{literal}}}"));
            } else if let Some(value) = variables.and_then(|variables| variables.get(name)) {
                match self.resolve(value, depth + 1)? {
                    Value::String(text) => out.push_str(&text),
                    other => {
                        return Err(format!(
                            "`Fn::Sub` variable `{name}` is {other}, not a string"
                        ));
                    }
                }
            } else if let Some((id, attribute)) = name.split_once('.') {
                out.push_str(&self.get_att(id, attribute)?);
            } else {
                out.push_str(&self.reference(name)?);
            }
            rest = &after[end + 1..];
            out = bounded("Fn::Sub", out)?;
        }
        out.push_str(rest);
        bounded("Fn::Sub", out)
    }
}
