//! Semantic checks of a typed definition against the topology: every name refers to something
//! that exists, every expression parses, every number is in range. Each check adds to one
//! [`Diagnostics`] so a file reports all its problems at once, each at the place it was written.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use gantry_model::pipeline::{
    AlarmDefinition, AnomalyAlarm, HostCount, HostCountKind, JudgeAlarm, MetricAlarm, PipelineSpec,
};
use gantry_model::plan::{fewest_boxes_for_one_box, one_box_share};
use gantry_model::{Bake, Duration, OneBoxScope, Plan, Stage, StageKind, StepKind, Topology};

use crate::de::closest;
use crate::diagnostic::{Diagnostic, Diagnostics, Location, echo};
use crate::located;
use crate::node::Node;

/// Checks a topology on its own.
pub fn topology(topology: &Topology, node: &Node) -> Diagnostics {
    let mut out = Diagnostics::default();
    let at = |path: &[&str]| located(node, path);
    if topology.regions.is_empty() {
        out.push(Diagnostic::error(at(&["regions"]), "the topology lists no regions"));
    }
    let mut region_names = HashSet::new();
    let mut zone_regions: BTreeMap<&str, &str> = BTreeMap::new();
    for (index, region) in topology.regions.iter().enumerate() {
        let index = index.to_string();
        if !region_names.insert(region.name.as_str()) {
            out.push(Diagnostic::error(
                at(&["regions", &index, "name"]),
                format!("region `{}` is listed twice", region.name),
            ));
        }
        if let Err(message) = check_time_zone(&region.time_zone) {
            out.push(
                Diagnostic::error(at(&["regions", &index, "time_zone"]), message)
                    .with_hint("use an IANA name such as `Europe/Dublin`"),
            );
        }
        if region.zones.is_empty() {
            out.push(Diagnostic::error(
                at(&["regions", &index, "zones"]),
                format!("region `{}` has no availability zones", region.name),
            ));
        }
        for (zone_index, zone) in region.zones.iter().enumerate() {
            if let Some(first) = zone_regions.insert(&zone.name, &region.name) {
                let message = if first == region.name {
                    format!("availability zone `{}` is listed twice in region `{first}`", zone.name)
                } else {
                    format!(
                        "availability zone `{}` is listed in region `{first}` and in region `{}`",
                        zone.name, region.name
                    )
                };
                out.push(
                    Diagnostic::error(
                        at(&["regions", &index, "zones", &zone_index.to_string(), "name"]),
                        message,
                    )
                    .with_hint("zone names are unique across the topology"),
                );
            }
        }
    }
    let known_regions: Vec<&str> =
        topology.regions.iter().map(|region| region.name.as_str()).collect();
    for (index, environment) in topology.environments.iter().enumerate() {
        let index = index.to_string();
        if !["alpha", "beta", "gamma", "zeta"].contains(&environment.name.as_str()) {
            out.push(
                Diagnostic::error(
                    at(&["environments", &index, "name"]),
                    format!("unknown environment `{}`", environment.name),
                )
                .with_hint("pre-production environments are `alpha`, `beta`, `gamma` and `zeta`"),
            );
        }
        for (region_index, region) in environment.regions.iter().enumerate() {
            if !known_regions.contains(&region.as_str()) {
                out.push(unknown_region(
                    at(&["environments", &index, "regions", &region_index.to_string()]),
                    region,
                    &known_regions,
                ));
            }
        }
    }
    out
}

pub fn unknown_region(location: Location, name: &str, known: &[&str]) -> Diagnostic {
    let diagnostic = Diagnostic::error(location, format!("unknown region `{}`", echo(name)));
    match closest(name, known) {
        Some(near) => diagnostic
            .with_hint(format!("did you mean `{near}`? Regions come from the topology file")),
        None => diagnostic.with_hint("regions come from the topology file"),
    }
}

pub fn check_time_zone(name: &str) -> Result<(), String> {
    jiff::tz::TimeZone::get(name)
        .map(|_| ())
        .map_err(|_| format!("unknown time zone `{}`", echo(name)))
}

/// Checks a pipeline definition against its topology.
pub fn pipeline(spec: &PipelineSpec, topology: &Topology, node: &Node) -> Diagnostics {
    let mut out = Diagnostics::default();
    let at = |path: &[&str]| located(node, path);
    let known_regions: Vec<&str> =
        topology.regions.iter().map(|region| region.name.as_str()).collect();

    if !is_name(&spec.pipeline) {
        out.push(
            Diagnostic::error(
                at(&["pipeline"]),
                format!("pipeline name `{}` is not a valid name", spec.pipeline),
            )
            .with_hint("use lowercase letters, digits, `-`, `_` and `.`"),
        );
    }
    if spec.sources.is_empty() {
        out.push(Diagnostic::error(
            at(&["sources"]),
            "a pipeline needs at least one source repository",
        ));
    }
    if spec.build.command.trim().is_empty() {
        out.push(Diagnostic::error(at(&["build", "command"]), "the build command is empty"));
    }
    if spec.build.outputs.is_empty() {
        out.push(Diagnostic::error(
            at(&["build", "outputs"]),
            "the build declares no outputs to package",
        ));
    }
    for (index, region) in spec.exclude_regions.iter().enumerate() {
        if !known_regions.contains(&region.as_str()) {
            out.push(unknown_region(
                at(&["exclude_regions", &index.to_string()]),
                region,
                &known_regions,
            ));
        }
    }
    let known_zones: Vec<&str> = topology
        .regions
        .iter()
        .flat_map(|region| &region.zones)
        .map(|zone| zone.name.as_str())
        .collect();
    for (index, zone) in spec.exclude_zones.iter().enumerate() {
        if !known_zones.contains(&zone.as_str()) {
            let diagnostic = Diagnostic::error(
                at(&["exclude_zones", &index.to_string()]),
                format!("unknown availability zone `{}`", echo(zone)),
            );
            out.push(match closest(zone, &known_zones) {
                Some(near) => diagnostic
                    .with_hint(format!("did you mean `{near}`? Zones come from the topology file")),
                None => diagnostic.with_hint("zones come from the topology file"),
            });
        }
    }
    for (kind, stage) in spec.preprod.in_order() {
        let name = kind.name();
        if topology.environment(name).is_none() {
            out.push(
                Diagnostic::error(
                    at(&["preprod", name]),
                    format!("stage `{name}` has no environment in the topology"),
                )
                .with_hint(format!(
                    "add `{{name: {name}, regions: [...]}}` to the topology's `environments`"
                )),
            );
        }
        for (test, gate) in &stage.tests {
            if gate.command.trim().is_empty() {
                out.push(Diagnostic::error(
                    at(&["preprod", name, "tests", test, "command"]),
                    format!("test `{test}` has an empty command"),
                ));
            }
        }
        if let Some(deployment) = &stage.deployment {
            check_deployment(deployment, &["preprod", name, "deployment"], &at, &mut out);
        }
    }
    check_deployment(&spec.deployment, &["deployment"], &at, &mut out);
    check_waves(spec, &known_regions, &at, &mut out);
    check_alarms(spec, &at, &mut out);
    check_time_windows(spec, &at, &mut out);
    if spec.limits.max_artifacts_in_production == Some(0) {
        out.push(Diagnostic::error(
            at(&["limits", "max_artifacts_in_production"]),
            "a limit of 0 would stop every deployment",
        ));
    }
    let urgent = &spec.urgent;
    if urgent.required_approvals == 0 {
        out.push(Diagnostic::error(
            at(&["urgent", "required_approvals"]),
            "urgent mode needs at least one approval",
        ));
    } else if !urgent.approvers.is_empty()
        && urgent.required_approvals as usize > urgent.approvers.len()
    {
        out.push(against(
            Diagnostic::error(
                at(&["urgent", "required_approvals"]),
                format!(
                    "{} approvals required but only {} approvers listed",
                    urgent.required_approvals,
                    urgent.approvers.len()
                ),
            ),
            "approvers",
            at(&["urgent", "approvers"]),
        ));
    }
    if urgent.minimum_bake_percent > 100 {
        out.push(Diagnostic::error(
            at(&["urgent", "minimum_bake_percent"]),
            "a percentage above 100",
        ));
    }
    out
}

/// A conflict between two fields names both places: when `other` (the field the checked one
/// disagrees with) was written in another file of the `extends` chain, say where, since the
/// file that introduced the conflict may be either.
fn against(diagnostic: Diagnostic, other_field: &str, other: Location) -> Diagnostic {
    let is_default = other.file() == std::path::Path::new(crate::defaults::DEFAULTS_FILE);
    if is_default || other.file() == diagnostic.location.file() {
        return diagnostic;
    }
    let message = format!("{} (`{other_field}` is written at {other})", diagnostic.message);
    Diagnostic { message, ..diagnostic }
}

fn is_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 128
        && text.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        })
}

fn check_deployment(
    deployment: &gantry_model::pipeline::DeploymentStrategy,
    path: &[&str],
    at: &dyn Fn(&[&str]) -> Location,
    out: &mut Diagnostics,
) {
    let field = |name: &str| at(&[path, &[name]].concat());
    if let Err(error) = gantry_model::plan::check_one_box_percent(deployment.one_box_percent) {
        out.push(Diagnostic::error(field("one_box_percent"), error.to_string()));
    }
    let mut host_count = |name: &str, count: HostCount, minimum: u32| {
        if count.kind == HostCountKind::FleetPercent && count.value > 100 {
            out.push(Diagnostic::error(
                field(name),
                format!("{}% is more than the whole fleet", count.value),
            ));
        }
        if count.value < minimum {
            out.push(Diagnostic::error(
                field(name),
                format!("`{name}` must be at least {minimum}"),
            ));
        }
    };
    host_count("minimum_healthy_hosts", deployment.minimum_healthy_hosts, 0);
    host_count("batch_size", deployment.batch_size, 1);
    host_count("rollback_batch_size", deployment.rollback_batch_size, 1);
    if deployment.health_check_timeout == Duration::ZERO {
        out.push(Diagnostic::error(
            field("health_check_timeout"),
            "a zero health-check timeout fails every box",
        ));
    }
}

fn check_waves(
    spec: &PipelineSpec,
    known_regions: &[&str],
    at: &dyn Fn(&[&str]) -> Location,
    out: &mut Diagnostics,
) {
    if spec.waves.is_empty() {
        out.push(Diagnostic::error(
            at(&["waves"]),
            "a pipeline needs at least one production wave",
        ));
    }
    let mut claimed: BTreeMap<&str, usize> = BTreeMap::new();
    for (index, wave) in spec.waves.iter().enumerate() {
        let wave_path = index.to_string();
        let selectors = [
            ("regions", wave.regions.is_some()),
            ("lowest_traffic", wave.lowest_traffic.is_some()),
            ("highest_traffic", wave.highest_traffic.is_some()),
            ("count", wave.count.is_some()),
            ("up_to", wave.up_to.is_some()),
            ("rest", wave.rest),
        ];
        let set: Vec<&str> =
            selectors.iter().filter(|(_, on)| *on).map(|(name, _)| *name).collect();
        match set.as_slice() {
            [] => out.push(Diagnostic::error(at(&["waves", &wave_path]), format!("wave {} selects no regions", index + 1))
                .with_hint("set one of `regions`, `lowest_traffic`, `highest_traffic`, `count`, `up_to` or `rest`")),
            [_] => {}
            [first, second, ..] => out.push(Diagnostic::error(
                at(&["waves", &wave_path, second]),
                format!("wave {} sets both `{first}` and `{second}`; a wave has one selector", index + 1),
            )),
        }
        if wave.regions.as_ref().is_some_and(Vec::is_empty) {
            out.push(
                Diagnostic::error(
                    at(&["waves", &wave_path, "regions"]),
                    format!(
                        "wave {} lists no regions, so its steps would deploy nothing",
                        index + 1
                    ),
                )
                .with_hint("name at least one region, or remove the wave"),
            );
        }
        for (name, value) in [
            ("lowest_traffic", wave.lowest_traffic),
            ("highest_traffic", wave.highest_traffic),
            ("count", wave.count),
            ("up_to", wave.up_to),
        ] {
            if value == Some(0) {
                out.push(Diagnostic::error(
                    at(&["waves", &wave_path, name]),
                    "a wave must select at least one region",
                ));
            }
        }
        if wave.rest && index + 1 != spec.waves.len() {
            out.push(Diagnostic::error(
                at(&["waves", &wave_path, "rest"]),
                "only the last wave may take the rest of the regions",
            ));
        }
        for (region_index, region) in wave.regions.iter().flatten().enumerate() {
            let location = at(&["waves", &wave_path, "regions", &region_index.to_string()]);
            if !known_regions.contains(&region.as_str()) {
                out.push(unknown_region(location, region, known_regions));
            } else if let Some(excluded) =
                spec.exclude_regions.iter().position(|excluded| excluded == region)
            {
                out.push(against(
                    Diagnostic::error(
                        location,
                        format!("region `{region}` is in `exclude_regions`"),
                    ),
                    "exclude_regions",
                    at(&["exclude_regions", &excluded.to_string()]),
                ));
            } else if let Some(previous) = claimed.insert(region, index) {
                let message = if previous == index {
                    format!("region `{region}` is listed twice in wave {}", index + 1)
                } else {
                    format!("region `{region}` is in wave {} and wave {}", previous + 1, index + 1)
                };
                out.push(
                    Diagnostic::error(location, message)
                        .with_hint("a region belongs to exactly one wave"),
                );
            }
        }
    }
}

fn check_alarms(spec: &PipelineSpec, at: &dyn Fn(&[&str]) -> Location, out: &mut Diagnostics) {
    let defined: Vec<&str> = spec.alarms.definitions.keys().map(String::as_str).collect();
    let mut children: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (name, definition) in &spec.alarms.definitions {
        let path = ["alarms", "definitions", name.as_str()];
        match definition {
            AlarmDefinition::Composite(rule) => match gantry_alarms::composite::parse(rule) {
                Ok(parsed) => {
                    let names: Vec<String> =
                        parsed.alarm_names().into_iter().map(str::to_string).collect();
                    for child in &names {
                        if defined.contains(&child.as_str()) {
                            continue;
                        }
                        let location = at(&[&path[..], &["composite"]].concat());
                        out.push(match gantry_alarms::composite::parse_alarm_arn(child) {
                            // A pipeline's composites run in every region's set, so an ARN
                            // (one region's, one account's) names nothing here.
                            Some(arn) => Diagnostic::error(
                                location,
                                format!("composite `{name}` names the alarm `{}` by its ARN `{}`", arn.name, echo(child)),
                            )
                            .with_hint(format!(
                                "name it `{}`: a pipeline's composites are evaluated in every region; `gantry alarm import` resolves a CloudWatch composite's ARNs",
                                arn.name
                            )),
                            None => unknown_alarm(location, child, &defined).with_hint(format!(
                                "composite `{name}` refers to it; define it under `alarms.definitions`"
                            )),
                        });
                    }
                    children.insert(name, names);
                }
                Err(error) => out.push(Diagnostic::error(
                    at(&[&path[..], &["composite"]].concat()),
                    format!(
                        "composite rule of `{name}`: column {}: {}",
                        error.column, error.message
                    ),
                )),
            },
            AlarmDefinition::Metric(metric) => {
                check_metric_alarm(metric, &[&path[..], &["metric"]].concat(), at, out)
            }
            AlarmDefinition::Anomaly(anomaly) => {
                check_anomaly_alarm(anomaly, &[&path[..], &["anomaly"]].concat(), at, out)
            }
            AlarmDefinition::Judge(judge) => {
                check_judge_alarm(judge, &[&path[..], &["judge"]].concat(), at, out)
            }
        }
    }
    if let Some(cycle) = find_cycle(&children) {
        out.push(Diagnostic::error(
            at(&["alarms", "definitions", &cycle[0]]),
            format!("composite alarms form a cycle: {}", cycle.join(" → ")),
        ));
    }
    let uses: [(&str, &[String], &[&str]); 4] = [
        ("rollback", &spec.alarms.rollback, &["alarms", "rollback"]),
        ("one_box_rollback", &spec.alarms.one_box_rollback, &["alarms", "one_box_rollback"]),
        ("team blockers", &spec.alarms.blockers.team, &["alarms", "blockers", "team"]),
        (
            "organisation blockers",
            &spec.alarms.blockers.organisation,
            &["alarms", "blockers", "organisation"],
        ),
    ];
    for (_, names, path) in uses {
        for (index, name) in names.iter().enumerate() {
            if !defined.contains(&name.as_str()) {
                out.push(unknown_alarm(
                    at(&[path, &[index.to_string().as_str()]].concat()),
                    name,
                    &defined,
                ));
            }
        }
    }
    for (kind, stage) in spec.preprod.in_order() {
        for (index, name) in stage.rollback_alarms.iter().flatten().enumerate() {
            if !defined.contains(&name.as_str()) {
                out.push(unknown_alarm(
                    at(&["preprod", kind.name(), "rollback_alarms", &index.to_string()]),
                    name,
                    &defined,
                ));
            }
        }
    }
}

fn unknown_alarm(location: Location, name: &str, defined: &[&str]) -> Diagnostic {
    let diagnostic = Diagnostic::error(location, format!("unknown alarm `{}`", echo(name)));
    match closest(name, defined) {
        Some(near) => diagnostic.with_hint(format!("did you mean `{near}`?")),
        None => diagnostic.with_hint("define it under `alarms.definitions` (here or in a parent)"),
    }
}

/// The first cycle among composite alarms, as a path of names that returns to its start.
fn find_cycle(children: &BTreeMap<&str, Vec<String>>) -> Option<Vec<String>> {
    fn visit<'a>(
        name: &'a str,
        children: &'a BTreeMap<&str, Vec<String>>,
        stack: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(start) = stack.iter().position(|seen| *seen == name) {
            let mut cycle: Vec<String> =
                stack[start..].iter().map(|seen| seen.to_string()).collect();
            cycle.push(name.to_string());
            return Some(cycle);
        }
        if !done.insert(name) {
            return None;
        }
        stack.push(name);
        for child in children.get(name).into_iter().flatten() {
            if let Some(cycle) = visit(child, children, stack, done) {
                return Some(cycle);
            }
        }
        stack.pop();
        None
    }
    let mut done = BTreeSet::new();
    children.keys().find_map(|name| visit(name, children, &mut Vec::new(), &mut done))
}

fn check_metric_alarm(
    metric: &MetricAlarm,
    path: &[&str],
    at: &dyn Fn(&[&str]) -> Location,
    out: &mut Diagnostics,
) {
    let field = |name: &str| at(&[path, &[name]].concat());
    if let Err(message) = metric.statistic.parse::<gantry_alarms::statistic::Statistic>() {
        // The message repeats the statistic; a huge one is cut like any echo.
        let message = if metric.statistic.chars().count() > crate::diagnostic::MAX_ECHO_CHARS {
            format!("unknown statistic `{}`", echo(&metric.statistic))
        } else {
            message
        };
        out.push(Diagnostic::error(field("statistic"), message));
    }
    if metric.period.as_seconds() < 10 {
        out.push(Diagnostic::error(field("period"), "the period must be at least 10s"));
    }
    if metric.evaluation_periods == 0 {
        out.push(Diagnostic::error(
            field("evaluation_periods"),
            "at least one evaluation period is needed",
        ));
    }
    if let Some(m) = metric.datapoints_to_alarm
        && (m == 0 || m > metric.evaluation_periods)
    {
        out.push(against(
            Diagnostic::error(
                field("datapoints_to_alarm"),
                format!(
                    "datapoints_to_alarm ({m}) must be between 1 and evaluation_periods ({})",
                    metric.evaluation_periods
                ),
            ),
            "evaluation_periods",
            field("evaluation_periods"),
        ));
    }
    if !metric.threshold.is_finite() {
        out.push(Diagnostic::error(field("threshold"), "the threshold must be a finite number"));
    }
}

/// An anomaly alarm's ranges, as `gantry-alarms` checks them when it builds the alarm, each
/// located at its field (or at the alarm when the field was left to its default).
fn check_anomaly_alarm(
    anomaly: &AnomalyAlarm,
    path: &[&str],
    at: &dyn Fn(&[&str]) -> Location,
    out: &mut Diagnostics,
) {
    if let Err(problems) = gantry_alarms::anomaly::AnomalySpec::from_definition(anomaly) {
        for problem in problems {
            out.push(Diagnostic::error(at(&[path, &[problem.field]].concat()), problem.message));
        }
    }
}

/// A judge alarm's ranges (confidence in (0, 1), tolerance ≥ 0, at least three points per side,
/// canary and baseline selectors given and different, ...), as `gantry-alarms` checks them.
fn check_judge_alarm(
    judge: &JudgeAlarm,
    path: &[&str],
    at: &dyn Fn(&[&str]) -> Location,
    out: &mut Diagnostics,
) {
    if let Err(problems) = gantry_alarms::judge::JudgeSpec::from_definition(judge) {
        for problem in problems {
            out.push(Diagnostic::error(at(&[path, &[problem.field]].concat()), problem.message));
        }
    }
}

fn check_time_windows(
    spec: &PipelineSpec,
    at: &dyn Fn(&[&str]) -> Location,
    out: &mut Diagnostics,
) {
    let windows = &spec.time_windows;
    for (index, window) in windows.allow.iter().enumerate() {
        let index = index.to_string();
        if let Err(message) = parse_cron(&window.cron) {
            out.push(Diagnostic::error(at(&["time_windows", "allow", &index, "cron"]), message)
                .with_hint("five fields: minute hour day-of-month month day-of-week, e.g. `* 9-14 * * MON-THU`"));
        }
        if window.duration == Duration::ZERO {
            out.push(Diagnostic::error(
                at(&["time_windows", "allow", &index, "duration"]),
                "a window of zero length never opens",
            ));
        }
        if let Some(zone) = &window.time_zone
            && let Err(message) = check_time_zone(zone)
        {
            out.push(Diagnostic::error(at(&["time_windows", "allow", &index, "time_zone"]), message)
                .with_hint("use an IANA name such as `America/New_York`, or leave it out to use each region's zone"));
        }
    }
    if let (Some(before), Some(after)) = (windows.not_before, windows.not_after)
        && before >= after
    {
        out.push(against(
            Diagnostic::error(
                at(&["time_windows", "not_after"]),
                format!("not_after ({after}) is not later than not_before ({before})"),
            ),
            "not_before",
            at(&["time_windows", "not_before"]),
        ));
    }
}

/// Every holiday of the pipeline: its dates and the days of its calendars, sorted. A calendar
/// that cannot be read is an error at the line that names it.
pub fn holidays(spec: &PipelineSpec, node: &Node, out: &mut Diagnostics) -> Vec<jiff::civil::Date> {
    let holidays = &spec.time_windows.holidays;
    let mut dates = holidays.dates.clone();
    for (index, calendar) in holidays.calendars.iter().enumerate() {
        match crate::calendar::read_dates(std::path::Path::new(calendar)) {
            Ok(days) => dates.extend(days),
            Err(message) => out.push(Diagnostic::error(
                located(node, &["time_windows", "holidays", "calendars", &index.to_string()]),
                message,
            )),
        }
    }
    dates.sort();
    dates.dedup();
    dates
}

/// Parses a five-field cron expression the way the engine will evaluate it.
pub fn parse_cron(text: &str) -> Result<croner::Cron, String> {
    let fields = text.split_whitespace().count();
    if fields != 5 {
        return Err(format!("cron `{}` has {fields} fields; allow-windows use five", echo(text)));
    }
    const FIELDS: [&str; 5] = ["minute", "hour", "day-of-month", "month", "day-of-week"];
    // What each field takes, said in the author's terms rather than the parser's.
    const ALLOWED: [&str; 5] = [
        "minutes are 0 to 59",
        "hours are 0 to 23",
        "days of the month are 1 to 31",
        "months are 1 to 12 or JAN to DEC",
        "days of the week are 0 to 7 (0 and 7 are Sunday) or SUN to SAT",
    ];
    text.parse::<croner::Cron>().map_err(|error| {
        // Find the field at fault by parsing each one beside wildcards.
        let words: Vec<&str> = text.split_whitespace().collect();
        let wrong = (0..FIELDS.len()).find(|&index| {
            let probe: Vec<&str> =
                (0..FIELDS.len()).map(|i| if i == index { words[i] } else { "*" }).collect();
            probe.join(" ").parse::<croner::Cron>().is_err()
        });
        match wrong {
            Some(index) => format!(
                "invalid cron `{}`: field {} ({}) `{}` is not valid: {}, as a value, a range \
                 `a-b`, a list `a,b`, a step `*/n` or `*`",
                echo(text),
                index + 1,
                FIELDS[index],
                echo(words[index]),
                ALLOWED[index]
            ),
            None => format!("invalid cron `{}`: {error}", echo(text)),
        }
    })
}

/// Checks of the expanded plan: every production step's bake (after inheritance) has a
/// duration above zero and at least one data-point requirement, and every setting fits the
/// fleets the topology gives. Each problem is located where the setting was written.
pub fn plan(
    spec: &PipelineSpec,
    plan: &Plan,
    topology: &Topology,
    node: &Node,
    out: &mut Diagnostics,
) {
    check_production_bakes(spec, plan, node, out);
    check_fleet_sizes(spec, plan, topology, node, out);
}

/// Where the bake of production step `step` (of wave `wave`) comes from, as a field path.
fn bake_source(spec: &PipelineSpec, wave: usize, stage: &Stage, step: usize) -> Vec<String> {
    let own = |field: &str| vec!["bake".to_string(), field.to_string()];
    match stage.steps[step].kind {
        StepKind::OneBox => own("one_box"),
        _ if step + 1 == stage.steps.len() => match spec.waves[wave].bake {
            Some(_) => vec!["waves".to_string(), wave.to_string(), "bake".to_string()],
            None => own("wave"),
        },
        _ if step == 1 => own("first_zone"),
        _ => own("later_zones"),
    }
}

fn check_production_bakes(spec: &PipelineSpec, plan: &Plan, node: &Node, out: &mut Diagnostics) {
    // One error per place a bake is written, naming every step that uses it.
    let mut by_source: BTreeMap<Vec<String>, (Vec<&str>, &Bake)> = BTreeMap::new();
    for (wave, stage) in plan.production_stages().enumerate() {
        for (index, step) in stage.steps.iter().enumerate() {
            if step.bake.duration > Duration::ZERO && !step.bake.data_points.is_empty() {
                continue;
            }
            let source = bake_source(spec, wave, stage, index);
            by_source.entry(source).or_insert_with(|| (Vec::new(), &step.bake)).0.push(&step.name);
        }
    }
    for (source, (steps, bake)) in by_source {
        let path: Vec<&str> = source.iter().map(String::as_str).collect();
        let steps = quoted_list(&steps);
        if bake.duration == Duration::ZERO {
            out.push(
                Diagnostic::error(
                    located(node, &[&path[..], &["duration"]].concat()),
                    format!("production step {steps} bakes for 0s; every production bake needs a duration above zero"),
                )
                .with_hint("the organisation's policy sets the hours, e.g. `duration: 1h`"),
            );
        }
        if bake.data_points.is_empty() {
            out.push(
                Diagnostic::error(
                    located(node, &[&path[..], &["data_points"]].concat()),
                    format!("production step {steps} bakes without a data-point requirement; every production bake needs at least one"),
                )
                .with_hint("e.g. `data_points: {requests: 100}`: the bake waits for that many requests in the target's scope"),
            );
        }
    }
}

/// `step`, or `a`, `b` and 3 more: a short list of names for a message.
fn quoted_list(names: &[&str]) -> String {
    /// Names quoted in one message before the rest are counted: enough to find the pattern.
    const NAMED: usize = 3;
    let shown: Vec<String> = names.iter().take(NAMED).map(|name| format!("`{name}`")).collect();
    match names.len() {
        n if n > NAMED => format!("{} and {} more", shown.join(", "), n - NAMED),
        _ => shown.join(", "),
    }
}

/// The healthy boxes CodeDeploy keeps of a target of `boxes` boxes: a percentage rounds up.
fn capacity_floor(rule: HostCount, boxes: u32) -> u32 {
    match rule.kind {
        HostCountKind::HostCount => rule.value,
        HostCountKind::FleetPercent => {
            (u64::from(rule.value) * u64::from(boxes)).div_ceil(100).min(u64::from(u32::MAX)) as u32
        }
    }
}

fn check_fleet_sizes(
    spec: &PipelineSpec,
    plan: &Plan,
    topology: &Topology,
    node: &Node,
    out: &mut Diagnostics,
) {
    let mut reported: BTreeSet<(String, &str)> = BTreeSet::new();
    for stage in &plan.stages {
        let deployment_path: Vec<&str> = match stage.kind {
            StageKind::Preprod { environment }
                if spec
                    .preprod
                    .in_order()
                    .any(|(kind, stage)| kind == environment && stage.deployment.is_some()) =>
            {
                vec!["preprod", environment.name(), "deployment"]
            }
            _ => vec!["deployment"],
        };
        let at = |field: &str| located(node, &[&deployment_path[..], &[field]].concat());
        let deployment = &stage.deployment;
        let floor = deployment.minimum_healthy_hosts;
        if floor.kind == HostCountKind::FleetPercent
            && floor.value >= 100
            && reported.insert((deployment_path.join("."), "minimum_healthy_hosts"))
        {
            out.push(Diagnostic::error(
                at("minimum_healthy_hosts"),
                format!(
                    "stage `{}`: a floor of {}% of the fleet keeps every box in service, so no box of any fleet size can ever be replaced",
                    stage.name, floor.value
                ),
            ).with_hint("keep fewer healthy, e.g. `{type: FLEET_PERCENT, value: 66}`"));
        }
        for step in &stage.steps {
            for target in &step.targets {
                let Some(boxes) = topology.boxes_per_target(target) else { continue };
                if step.kind == StepKind::OneBox
                    && let Some((scope_boxes, scope)) =
                        topology.one_box_scope_boxes(stage, step, target)
                    && let Err(error) =
                        one_box_share(scope_boxes, scope, deployment.one_box_percent)
                    && reported.insert((step.name.clone(), "one_box_percent"))
                {
                    let scope_name = match scope {
                        OneBoxScope::Region => "region",
                        OneBoxScope::Zone => "target",
                    };
                    out.push(
                        Diagnostic::error(
                            at("one_box_percent"),
                            format!(
                                "step `{}`, target {target}: {error} (`one_box_percent: {}`, {scope_boxes} boxes in the {scope_name} by the topology)",
                                step.name, deployment.one_box_percent
                            ),
                        )
                        .with_hint(if scope_boxes == 0 {
                            // No share fits an empty scope: only boxes help.
                            format!(
                                "a {}% share needs at least {} boxes in the {scope_name}; give the {scope_name} boxes in the topology",
                                deployment.one_box_percent,
                                fewest_boxes_for_one_box(deployment.one_box_percent),
                            )
                        } else {
                            format!(
                                "a {}% share needs at least {} boxes in the {scope_name}; raise `one_box_percent` to {} or give the {scope_name} more boxes in the topology",
                                deployment.one_box_percent,
                                fewest_boxes_for_one_box(deployment.one_box_percent),
                                100u32.div_ceil(scope_boxes),
                            )
                        }),
                    );
                }
                if boxes == 0 && reported.insert((step.name.clone(), "minimum_healthy_hosts")) {
                    // No floor fits an empty target: say what is wrong, not "lower the floor".
                    out.push(Diagnostic::error(
                        at("minimum_healthy_hosts"),
                        format!(
                            "step `{}`, target {target}: the topology gives the target 0 boxes, so no deployment there can replace any",
                            step.name
                        ),
                    ).with_hint("give the target boxes in the topology, or leave `boxes` out where the count is not known"));
                } else if capacity_floor(floor, boxes) >= boxes
                    && reported.insert((step.name.clone(), "minimum_healthy_hosts"))
                {
                    out.push(Diagnostic::error(
                        at("minimum_healthy_hosts"),
                        format!(
                            "step `{}`, target {target}: `minimum_healthy_hosts` keeps {} of its {boxes} boxes healthy, so no box can be replaced",
                            step.name,
                            capacity_floor(floor, boxes)
                        ),
                    ).with_hint("lower the floor, or give the target more boxes in the topology"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cron_errors_name_the_field_and_what_it_takes_in_the_authors_terms() {
        let cases = [
            ("60 9 * * MON", "field 1 (minute) `60` is not valid: minutes are 0 to 59"),
            ("* 9-25 * * MON", "field 2 (hour) `9-25` is not valid: hours are 0 to 23"),
            (
                "* 9 32 * MON",
                "field 3 (day-of-month) `32` is not valid: days of the month are 1 to 31",
            ),
            (
                "* 9 * FEBR MON",
                "field 4 (month) `FEBR` is not valid: months are 1 to 12 or JAN to DEC",
            ),
            (
                "* 9 * * MON-THX",
                "field 5 (day-of-week) `MON-THX` is not valid: days of the week are 0 to 7 (0 and 7 are Sunday) or SUN to SAT",
            ),
        ];
        for (cron, expected) in cases {
            let message = super::parse_cron(cron).unwrap_err();
            assert_eq!(
                message,
                format!(
                    "invalid cron `{cron}`: {expected}, as a value, a range `a-b`, a list `a,b`, a step `*/n` or `*`"
                )
            );
        }
    }
}
