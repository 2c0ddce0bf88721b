//! A set of alarm definitions evaluated together in one scope, with each alarm's state, reason
//! and history of transitions.
//!
//! An [`AlarmSet`] is built from a pipeline's `alarms.definitions` and a *scope*: labels added
//! to every metric alarm's selector, such as `{region: eu-west-1}` for a region's alarms. A
//! definition's own labels narrow further (and win over the scope's for the same label name) —
//! `{role: one-box}` makes a one-box alarm over only the one box's series, and a team aggregate
//! alarm is a composite over the team's services' alarms. Anomaly alarms narrow their watched
//! series and a `fleet` baseline the same way; a judge narrows its canary and baseline
//! selectors. Metric, anomaly and judge alarms all decide on data, and each says when its
//! state is not backed by enough of it (a gate fails closed on that).
//!
//! Building refuses the whole set, listing every problem, when a definition is invalid, a
//! composite names an alarm that does not exist, or composites form a cycle (CloudWatch stops
//! evaluating a cycle at run time; Gantry refuses it up front).
//!
//! [`AlarmSet::evaluate`] is pure: store and time in, transitions out. Composites are evaluated
//! after their children, in one pass. A composite is `INSUFFICIENT_DATA` only before its first
//! evaluation, as in CloudWatch; since `ALARM(x)` is false for a child without data, a gate must
//! not trust a composite's OK alone: [`AlarmSet::gate`] fails closed when any alarm the rule
//! depends on lacks data.

use std::collections::{BTreeMap, HashMap, VecDeque};

use gantry_model::pipeline::AlarmDefinition;

use crate::anomaly::{self, AnomalySpec};
use crate::composite::{self, Rule};
use crate::judge::{self, JudgeSpec};
use crate::metric::{self, MetricSpec};
use crate::series::{Labels, Store, TimestampMs};
use crate::{AlarmState, DefinitionError, Error};

/// Transitions kept per alarm. Enough to explain any rollback of the last days; older
/// transitions belong in the durable audit log, not in memory.
pub const MAX_HISTORY: usize = 100;
/// AWS's limit on the composite alarms whose rules may name one alarm.
pub const MAX_COMPOSITE_PARENTS: usize = 150;
/// Alarms in one set. A pipeline with more is almost certainly generated wrongly, and each
/// evaluation pass is linear in this.
pub const MAX_ALARMS: usize = 10_000;

/// One alarm's current state.
#[derive(Clone, Debug, PartialEq)]
pub struct AlarmStatus {
    pub state: AlarmState,
    pub reason: String,
    /// When the alarm entered `state`; `None` before the first evaluation.
    pub since: Option<TimestampMs>,
    /// The time of the latest evaluation.
    pub evaluated_at: Option<TimestampMs>,
    /// For a metric alarm, why its latest state is not backed by enough usable data (see
    /// [`metric::Decision::data_gap`]); gates fail on it.
    pub data_gap: Option<String>,
}

/// One change of state.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    pub alarm: String,
    pub at: TimestampMs,
    pub from: AlarmState,
    pub to: AlarmState,
    pub reason: String,
}

/// Whether a gate (a bake's end, a promotion, a blocker check) may pass on an alarm.
#[derive(Clone, Debug, PartialEq)]
pub enum Gate {
    Pass,
    /// Refused, with the reason to show.
    Fail(String),
}

#[derive(Clone, Debug)]
enum AlarmKind {
    Metric(MetricSpec),
    Anomaly(AnomalySpec),
    Judge(JudgeSpec),
    Composite(Rule),
}

#[derive(Clone, Debug)]
struct Alarm {
    name: String,
    kind: AlarmKind,
    status: AlarmStatus,
    history: VecDeque<Transition>,
}

/// Alarms of one scope, evaluated together.
#[derive(Clone, Debug)]
pub struct AlarmSet {
    /// In evaluation order: every composite after the alarms its rule references.
    alarms: Vec<Alarm>,
    index: HashMap<String, usize>,
    scope: Labels,
}

impl AlarmSet {
    /// Checks and orders `definitions`; every problem is reported at once.
    pub fn new(
        definitions: &BTreeMap<String, AlarmDefinition>,
        scope: Labels,
    ) -> Result<AlarmSet, Error> {
        let mut errors = Vec::new();
        let mut refuse = |alarm: &str, message: String| {
            errors.push(DefinitionError { alarm: alarm.to_string(), message })
        };
        if definitions.len() > MAX_ALARMS {
            refuse(
                "*",
                format!("{} alarms in one set; the limit is {MAX_ALARMS}", definitions.len()),
            );
        }
        let mut kinds: BTreeMap<&str, AlarmKind> = BTreeMap::new();
        for (name, definition) in definitions {
            if name.is_empty() || name.chars().count() > composite::MAX_ALARM_NAME_CHARS {
                refuse(
                    name,
                    format!("names are 1 to {} characters", composite::MAX_ALARM_NAME_CHARS),
                );
                continue;
            }
            match definition {
                AlarmDefinition::Metric(metric) => match MetricSpec::from_definition(metric) {
                    Ok(spec) => {
                        kinds.insert(name, AlarmKind::Metric(spec));
                    }
                    Err(message) => refuse(name, message),
                },
                AlarmDefinition::Anomaly(anomaly) => match AnomalySpec::from_definition(anomaly) {
                    Ok(spec) => {
                        kinds.insert(name, AlarmKind::Anomaly(spec));
                    }
                    Err(problems) => {
                        problems.into_iter().for_each(|problem| refuse(name, problem.message))
                    }
                },
                AlarmDefinition::Judge(definition) => {
                    match JudgeSpec::from_definition(definition) {
                        Ok(spec) => {
                            kinds.insert(name, AlarmKind::Judge(spec));
                        }
                        Err(problems) => {
                            problems.into_iter().for_each(|problem| refuse(name, problem.message))
                        }
                    }
                }
                AlarmDefinition::Composite(text) => match composite::parse(text) {
                    Ok(rule) => {
                        for child in rule.alarm_names() {
                            if !definitions.contains_key(child) {
                                refuse(
                                    name,
                                    format!("the rule references `{child}`, which is not defined"),
                                );
                            }
                        }
                        kinds.insert(name, AlarmKind::Composite(rule));
                    }
                    Err(error) => refuse(name, format!("rule {error}")),
                },
            }
        }
        let mut parents: BTreeMap<&str, usize> = BTreeMap::new();
        for kind in kinds.values() {
            if let AlarmKind::Composite(rule) = kind {
                for child in rule.alarm_names() {
                    *parents.entry(child).or_default() += 1;
                }
            }
        }
        for (child, count) in parents {
            if count > MAX_COMPOSITE_PARENTS {
                refuse(
                    child,
                    format!(
                        "named by {count} composite alarms; CloudWatch allows at most \
                         {MAX_COMPOSITE_PARENTS}: aggregate through an intermediate composite"
                    ),
                );
            }
        }
        let order = evaluation_order(&kinds, &mut refuse);
        if !errors.is_empty() {
            return Err(Error::InvalidDefinitions(errors));
        }
        let alarms: Vec<Alarm> = order
            .into_iter()
            .map(|name| Alarm {
                name: name.to_string(),
                kind: kinds[name].clone(),
                status: AlarmStatus {
                    state: AlarmState::InsufficientData,
                    reason: "not evaluated yet".to_string(),
                    since: None,
                    evaluated_at: None,
                    data_gap: Some("not evaluated yet".to_string()),
                },
                history: VecDeque::new(),
            })
            .collect();
        let index = alarms.iter().enumerate().map(|(i, alarm)| (alarm.name.clone(), i)).collect();
        Ok(AlarmSet { alarms, index, scope })
    }

    pub fn scope(&self) -> &Labels {
        &self.scope
    }

    /// The longest span of samples any alarm reads: (N + extra) periods of a metric alarm, the
    /// recent and baseline periods of an anomaly alarm, a judge's window. The store's retention
    /// must cover it, or the oldest periods read as missing.
    pub fn longest_window_ms(&self) -> i64 {
        self.alarms
            .iter()
            .filter_map(|alarm| match &alarm.kind {
                AlarmKind::Metric(spec) => Some(
                    spec.period_ms
                        * (spec.evaluation_periods + metric::EXTRA_EVALUATION_PERIODS) as i64
                        + spec.cadence_ms(),
                ),
                AlarmKind::Anomaly(spec) => Some(spec.span_ms()),
                AlarmKind::Judge(spec) => Some(spec.window_ms),
                AlarmKind::Composite(_) => None,
            })
            .max()
            .unwrap_or(0)
    }

    /// Alarm names in evaluation order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.alarms.iter().map(|alarm| alarm.name.as_str())
    }

    /// Evaluates every alarm at `now` and returns the transitions, in evaluation order.
    pub fn evaluate(&mut self, store: &Store, now: TimestampMs) -> Vec<Transition> {
        let mut transitions = Vec::new();
        for position in 0..self.alarms.len() {
            let current = self.alarms[position].status.state;
            let (state, reason, data_gap) = match &self.alarms[position].kind {
                AlarmKind::Metric(spec) => {
                    let decision = metric::evaluate(spec, store, &self.scope, now, current);
                    (decision.state, decision.reason, decision.data_gap)
                }
                AlarmKind::Anomaly(spec) => {
                    let decision = anomaly::evaluate(spec, store, &self.scope, now);
                    (decision.state, decision.reason, decision.data_gap)
                }
                AlarmKind::Judge(spec) => {
                    let decision = judge::evaluate(spec, store, &self.scope, now);
                    (decision.state, decision.reason, decision.data_gap)
                }
                AlarmKind::Composite(rule) => {
                    let holds =
                        rule.holds(&mut |child| self.alarms[self.index[child]].status.state);
                    let children: Vec<String> = rule
                        .alarm_names()
                        .iter()
                        .map(|child| {
                            format!("{child} is {}", self.alarms[self.index[*child]].status.state)
                        })
                        .collect();
                    let verdict = if holds { "the rule holds" } else { "the rule does not hold" };
                    let state = if holds { AlarmState::Alarm } else { AlarmState::Ok };
                    (state, format!("{verdict}: {}", children.join(", ")), None)
                }
            };
            let alarm = &mut self.alarms[position];
            alarm.status.evaluated_at = Some(now);
            if state != current || alarm.status.since.is_none() {
                let transition = Transition {
                    alarm: alarm.name.clone(),
                    at: now,
                    from: current,
                    to: state,
                    reason: reason.clone(),
                };
                if alarm.history.len() == MAX_HISTORY {
                    alarm.history.pop_front();
                }
                alarm.history.push_back(transition.clone());
                if state != current {
                    transitions.push(transition);
                }
                alarm.status.since = Some(now);
            }
            alarm.status.state = state;
            alarm.status.reason = reason;
            alarm.status.data_gap = data_gap;
        }
        transitions
    }

    /// Puts back an alarm's status and history saved before a restart, so `ignore` keeps the
    /// right state and the history still explains past rollbacks. Unknown names are skipped
    /// (the definition was removed); history beyond [`MAX_HISTORY`] keeps the newest. Returns
    /// whether the alarm exists.
    pub fn restore(
        &mut self,
        name: &str,
        status: AlarmStatus,
        history: impl IntoIterator<Item = Transition>,
    ) -> bool {
        let Some(&position) = self.index.get(name) else { return false };
        let alarm = &mut self.alarms[position];
        alarm.status = status;
        alarm.history = history.into_iter().collect();
        while alarm.history.len() > MAX_HISTORY {
            alarm.history.pop_front();
        }
        true
    }

    /// The data points a metric alarm `name` decides on at `now`, oldest first, with the end
    /// of each period: the "recent values" people read beside its state. `None` for an alarm
    /// of another kind or one not defined.
    pub fn recent_values(
        &self,
        name: &str,
        store: &Store,
        now: TimestampMs,
    ) -> Option<Vec<(TimestampMs, metric::DataPoint)>> {
        let alarm = &self.alarms[*self.index.get(name)?];
        let AlarmKind::Metric(spec) = &alarm.kind else { return None };
        let points = metric::data_points(spec, store, &self.scope, now);
        let end = metric::window_end(spec, now);
        let count = points.len() as i64;
        Some(
            points
                .into_iter()
                .enumerate()
                .map(|(index, point)| (end - (count - 1 - index as i64) * spec.period_ms, point))
                .collect(),
        )
    }

    pub fn status(&self, name: &str) -> Option<&AlarmStatus> {
        self.index.get(name).map(|&i| &self.alarms[i].status)
    }

    /// The alarm's transitions, oldest first (at most [`MAX_HISTORY`]); the first records the
    /// first evaluation.
    pub fn history(&self, name: &str) -> impl Iterator<Item = &Transition> {
        self.index.get(name).into_iter().flat_map(|&i| self.alarms[i].history.iter())
    }

    /// The metric, anomaly and judge alarms behind alarm `name`'s current state that are in
    /// ALARM, each with its reason, in evaluation order: the account of a rollback ("the team
    /// aggregate fired because the one box's p99 latency was 1.5 s"). For such an alarm in
    /// ALARM, itself.
    pub fn causes(&self, name: &str) -> Vec<(&str, &str)> {
        let Some(&root) = self.index.get(name) else { return Vec::new() };
        let mut pending = vec![root];
        let mut seen = vec![false; self.alarms.len()];
        while let Some(current) = pending.pop() {
            if std::mem::replace(&mut seen[current], true) {
                continue;
            }
            if let AlarmKind::Composite(rule) = &self.alarms[current].kind {
                pending.extend(rule.alarm_names().iter().map(|child| self.index[*child]));
            }
        }
        self.alarms
            .iter()
            .enumerate()
            .filter(|(position, alarm)| {
                seen[*position]
                    && !matches!(alarm.kind, AlarmKind::Composite(_))
                    && alarm.status.state == AlarmState::Alarm
            })
            .map(|(_, alarm)| (alarm.name.as_str(), alarm.status.reason.as_str()))
            .collect()
    }

    /// Whether a gate may pass on alarm `name` at `now`. It passes only when the alarm is OK,
    /// was evaluated at or after `fresh_since`, and it and every alarm it depends on (directly
    /// or through other composites) decided on usable data: none is `INSUFFICIENT_DATA`, and
    /// no metric alarm's state rests on missing data filled by its policy or on NaN periods.
    /// Anything else fails closed, with the reason.
    pub fn gate(&self, name: &str, fresh_since: TimestampMs) -> Gate {
        let Some(&position) = self.index.get(name) else {
            return Gate::Fail(format!("alarm `{name}` is not defined"));
        };
        let alarm = &self.alarms[position];
        match alarm.status.evaluated_at {
            None => return Gate::Fail(format!("alarm `{name}` has not been evaluated yet")),
            Some(at) if at < fresh_since => {
                return Gate::Fail(format!(
                    "alarm `{name}` was last evaluated at {at} ms, before {fresh_since} ms: its \
                     state is stale"
                ));
            }
            Some(_) => {}
        }
        if alarm.status.state != AlarmState::Ok {
            return Gate::Fail(format!(
                "alarm `{name}` is {}: {}",
                alarm.status.state, alarm.status.reason
            ));
        }
        let mut pending = vec![position];
        let mut seen = vec![false; self.alarms.len()];
        while let Some(current) = pending.pop() {
            if std::mem::replace(&mut seen[current], true) {
                continue;
            }
            let alarm = &self.alarms[current];
            if alarm.status.state == AlarmState::InsufficientData {
                return Gate::Fail(format!(
                    "alarm `{name}` is OK but `{}`, which it depends on, has insufficient data: {}",
                    alarm.name, alarm.status.reason
                ));
            }
            if let Some(gap) = &alarm.status.data_gap {
                let whose = if current == position {
                    "its state".to_string()
                } else {
                    format!("the state of `{}`, which it depends on,", alarm.name)
                };
                return Gate::Fail(format!(
                    "alarm `{name}` is OK but {whose} is not backed by data: {gap}"
                ));
            }
            if let AlarmKind::Composite(rule) = &alarm.kind {
                pending.extend(rule.alarm_names().iter().map(|child| self.index[*child]));
            }
        }
        Gate::Pass
    }
}

/// Orders alarms so that every composite comes after the alarms it references, reporting each
/// cycle found as `a -> b -> a`.
fn evaluation_order<'a>(
    kinds: &'a BTreeMap<&'a str, AlarmKind>,
    refuse: &mut impl FnMut(&str, String),
) -> Vec<&'a str> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        InProgress,
        Done,
    }
    let mut marks: HashMap<&str, Mark> = kinds.keys().map(|name| (*name, Mark::New)).collect();
    let mut order = Vec::new();
    for &root in kinds.keys() {
        if marks[root] != Mark::New {
            continue;
        }
        // Iterative depth-first search: (alarm, index of the next child to visit).
        let mut path: Vec<(&'a str, usize)> = vec![(root, 0)];
        marks.insert(root, Mark::InProgress);
        while let Some((name, next)) = path.last().copied() {
            let children: Vec<&str> = match &kinds[name] {
                AlarmKind::Composite(rule) => rule.alarm_names(),
                AlarmKind::Metric(_) | AlarmKind::Anomaly(_) | AlarmKind::Judge(_) => Vec::new(),
            };
            let Some(child) = children.get(next) else {
                marks.insert(name, Mark::Done);
                order.push(name);
                path.pop();
                continue;
            };
            path.last_mut().expect("not empty").1 += 1;
            let Some((&child, _)) = kinds.get_key_value(child) else { continue };
            match marks[child] {
                Mark::Done => {}
                Mark::New => {
                    marks.insert(child, Mark::InProgress);
                    path.push((child, 0));
                }
                Mark::InProgress => {
                    let start = path.iter().position(|(n, _)| *n == child).expect("on the path");
                    let cycle: Vec<&str> =
                        path[start..].iter().map(|(n, _)| *n).chain([child]).collect();
                    refuse(
                        child,
                        format!(
                            "composite alarms form a cycle: {}; break it by removing one reference",
                            cycle.join(" -> ")
                        ),
                    );
                }
            }
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use gantry_model::Duration;
    use gantry_model::pipeline::{ComparisonOperator, MetricAlarm, TreatMissingData};

    use super::*;
    use crate::series::{SeriesKind, StoreLimits};

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// A one-minute `Maximum > threshold` alarm over `metric` with extra `label` selectors,
    /// 1 of 1 data points, missing data as missing.
    fn above(metric: &str, threshold: f64, selector: &[(&str, &str)]) -> AlarmDefinition {
        AlarmDefinition::Metric(MetricAlarm {
            metric: metric.to_string(),
            divide_by: None,
            labels: labels(selector),
            statistic: "Maximum".to_string(),
            period: Duration::from_minutes(1),
            evaluation_periods: 1,
            datapoints_to_alarm: None,
            comparison: ComparisonOperator::GreaterThanThreshold,
            threshold,
            treat_missing_data: TreatMissingData::Missing,
        })
    }

    fn composite(rule: &str) -> AlarmDefinition {
        AlarmDefinition::Composite(rule.to_string())
    }

    /// A gauge sample: time in seconds, metric, labels, value.
    type TestSample<'a> = (i64, &'a str, &'a [(&'a str, &'a str)], f64);

    fn set(definitions: Vec<(&str, AlarmDefinition)>) -> Result<AlarmSet, Error> {
        let definitions = definitions
            .into_iter()
            .map(|(name, definition)| (name.to_string(), definition))
            .collect();
        AlarmSet::new(&definitions, labels(&[("region", "eu")]))
    }

    /// Builds the set, feeds `samples` (`metric{labels} value` at a time in seconds), evaluates
    /// at each of `times` (seconds), and compares every alarm's state after each with `expected`
    /// (one line per time: `name=STATE ...` in evaluation order).
    #[track_caller]
    fn check(
        definitions: Vec<(&str, AlarmDefinition)>,
        samples: &[TestSample],
        times: &[i64],
        expected: &str,
    ) {
        let mut alarms = match set(definitions) {
            Ok(alarms) => alarms,
            Err(error) => {
                assert_eq!(format!("error: {error}"), expected);
                return;
            }
        };
        let mut store = Store::new(StoreLimits::default());
        let mut lines = Vec::new();
        for &time in times {
            for (at, metric, pairs, value) in samples {
                if *at <= time && *at > time - 60 {
                    store
                        .ingest(metric, &labels(pairs), SeriesKind::Gauge, at * 1000, *value)
                        .unwrap();
                }
            }
            alarms.evaluate(&store, time * 1000);
            let states: Vec<String> = alarms
                .names()
                .map(|name| format!("{name}={}", alarms.status(name).unwrap().state))
                .collect();
            lines.push(states.join(" "));
        }
        assert_eq!(lines.join("\n"), expected);
    }

    #[test]
    fn definitions_are_refused_as_a_whole() {
        check(
            vec![
                ("a", composite("ALARM(b) OR ALARM(missing)")),
                ("b", composite("ALARM(c)")),
                ("c", composite("NOT ALARM(a)")),
                ("d", composite("ALARM(d)")),
                ("e", composite("ALARM(")),
                ("f", above("latency", f64::INFINITY, &[])),
            ],
            &[],
            &[],
            "error: alarm `a`: the rule references `missing`, which is not defined\n\
             alarm `e`: rule column 7: expected an alarm name in `ALARM(` opened at column 1, found end of rule\n\
             alarm `f`: `threshold` must be a finite number\n\
             alarm `a`: composite alarms form a cycle: a -> b -> c -> a; break it by removing one reference\n\
             alarm `d`: composite alarms form a cycle: d -> d; break it by removing one reference",
        );
    }

    #[test]
    fn an_alarm_named_by_too_many_composites_is_refused() {
        let mut definitions = vec![("cpu", above("cpu", 0.8, &[]))];
        let names: Vec<String> = (0..=MAX_COMPOSITE_PARENTS).map(|i| format!("c{i}")).collect();
        definitions.extend(names.iter().map(|name| (name.as_str(), composite("ALARM(cpu)"))));
        let error = set(definitions).unwrap_err().to_string();
        assert_eq!(
            error,
            "alarm `cpu`: named by 151 composite alarms; CloudWatch allows at most 150: aggregate \
             through an intermediate composite"
        );
    }

    #[test]
    fn one_box_alarm_catches_what_the_fleet_alarm_misses() {
        // Ten boxes; the one box's p-latency doubles. The fleet alarm averages, the one-box
        // alarm sees only the one box.
        let mut samples: Vec<TestSample> = Vec::new();
        let boxes: [&[(&str, &str)]; 4] = [
            &[("region", "eu"), ("role", "fleet"), ("box", "1")],
            &[("region", "eu"), ("role", "fleet"), ("box", "2")],
            &[("region", "eu"), ("role", "fleet"), ("box", "3")],
            &[("region", "eu"), ("role", "one-box"), ("box", "4")],
        ];
        for second in (10..=170).step_by(10) {
            for (index, labels) in boxes.iter().enumerate() {
                let slow = index == 3 && second > 60;
                samples.push((second, "latency", labels, if slow { 0.9 } else { 0.2 }));
            }
        }
        let fleet = AlarmDefinition::Metric(MetricAlarm {
            statistic: "Average".to_string(),
            ..match above("latency", 0.5, &[]) {
                AlarmDefinition::Metric(metric) => metric,
                _ => unreachable!("a metric alarm"),
            }
        });
        check(
            vec![
                ("fleet_latency", fleet),
                ("one_box_latency", above("latency", 0.5, &[("role", "one-box")])),
                ("one_box_rollback", composite("ALARM(fleet_latency) OR ALARM(one_box_latency)")),
            ],
            &samples,
            &[60, 120, 180],
            "fleet_latency=OK one_box_latency=OK one_box_rollback=OK\n\
             fleet_latency=OK one_box_latency=ALARM one_box_rollback=ALARM\n\
             fleet_latency=OK one_box_latency=ALARM one_box_rollback=ALARM",
        );
    }

    #[test]
    fn team_aggregate_rolls_up_services_and_canaries() {
        let eu: &[(&str, &str)] = &[("region", "eu")];
        let us: &[(&str, &str)] = &[("region", "us")];
        check(
            vec![
                ("frontend_faults", above("frontend_faults", 5.0, &[])),
                ("backend_faults", above("backend_faults", 5.0, &[])),
                ("canary_failures", above("canary_failures", 0.0, &[])),
                ("frontend_high_severity", composite("ALARM(frontend_faults)")),
                (
                    "team_aggregate",
                    composite(
                        "ALARM(\"frontend_high_severity\") OR ALARM(\"backend_faults\") OR ALARM(\"canary_failures\")",
                    ),
                ),
            ],
            &[
                (30, "frontend_faults", eu, 1.0),
                (30, "backend_faults", eu, 1.0),
                (30, "canary_failures", eu, 0.0),
                (90, "frontend_faults", eu, 1.0),
                // Another region: not this scope. Without an eu point this minute, the previous
                // minute's is still in the range (N + 2 periods), so backend_faults stays OK.
                (90, "backend_faults", us, 50.0),
                (90, "canary_failures", eu, 1.0),
                (150, "frontend_faults", eu, 1.0),
                (150, "backend_faults", eu, 1.0),
                (150, "canary_failures", eu, 0.0),
            ],
            &[60, 120, 180],
            "backend_faults=OK canary_failures=OK frontend_faults=OK frontend_high_severity=OK team_aggregate=OK\n\
             backend_faults=OK canary_failures=ALARM frontend_faults=OK frontend_high_severity=OK team_aggregate=ALARM\n\
             backend_faults=OK canary_failures=OK frontend_faults=OK frontend_high_severity=OK team_aggregate=OK",
        );
    }

    #[test]
    fn causes_explain_a_composite_in_alarm() {
        let mut alarms = set(vec![
            ("cpu", above("cpu", 0.8, &[])),
            ("disk", above("disk", 0.8, &[])),
            ("memory", above("memory", 0.8, &[])),
            ("host", composite("ALARM(cpu) OR ALARM(disk)")),
            ("aggregate", composite("ALARM(host) OR ALARM(memory)")),
        ])
        .unwrap();
        let mut store = Store::new(StoreLimits::default());
        let scope = labels(&[("region", "eu")]);
        for (metric, value) in [("cpu", 0.95), ("disk", 0.1), ("memory", 0.9)] {
            store.ingest(metric, &scope, SeriesKind::Gauge, 30_000, value).unwrap();
        }
        alarms.evaluate(&store, 60_000);
        let causes = alarms.causes("aggregate");
        assert_eq!(
            causes,
            [
                (
                    "cpu",
                    "1 of 1 data points was greater than the threshold 0.8 (1 of 1 needed to alarm): [0.95]"
                ),
                (
                    "memory",
                    "1 of 1 data points was greater than the threshold 0.8 (1 of 1 needed to alarm): [0.9]"
                ),
            ]
        );
        assert_eq!(alarms.causes("disk"), []);
        assert_eq!(alarms.causes("cpu").len(), 1);
        assert_eq!(alarms.causes("nope"), []);
    }

    #[test]
    fn history_and_reasons_are_kept() {
        let mut alarms =
            set(vec![("cpu", above("cpu", 0.8, &[])), ("any", composite("ALARM(cpu)"))]).unwrap();
        let mut store = Store::new(StoreLimits::default());
        let scope = labels(&[("region", "eu")]);
        store.ingest("cpu", &scope, SeriesKind::Gauge, 30_000, 0.9).unwrap();
        let transitions = alarms.evaluate(&store, 60_000);
        let summary: Vec<String> = transitions
            .iter()
            .map(|t| format!("{} {}->{} at {}: {}", t.alarm, t.from, t.to, t.at, t.reason))
            .collect();
        assert_eq!(
            summary,
            [
                "cpu INSUFFICIENT_DATA->ALARM at 60000: 1 of 1 data points was greater than the threshold 0.8 (1 of 1 needed to alarm): [0.9]",
                "any INSUFFICIENT_DATA->ALARM at 60000: the rule holds: cpu is ALARM",
            ]
        );
        // No change, no transition; then the metric stops arriving.
        store.ingest("cpu", &scope, SeriesKind::Gauge, 90_000, 0.95).unwrap();
        assert!(alarms.evaluate(&store, 120_000).is_empty());
        let transitions = alarms.evaluate(&store, 600_000);
        assert_eq!(transitions.len(), 2);
        assert_eq!(transitions[0].reason, "no data in the last 3 periods");
        assert_eq!(alarms.history("cpu").count(), 2);
        assert_eq!(alarms.status("any").unwrap().since, Some(600_000));
    }

    #[test]
    fn restored_state_is_kept_by_ignore() {
        let quiet = AlarmDefinition::Metric(MetricAlarm {
            treat_missing_data: TreatMissingData::Ignore,
            ..match above("cpu", 0.8, &[]) {
                AlarmDefinition::Metric(metric) => metric,
                _ => unreachable!("a metric alarm"),
            }
        });
        let mut before = set(vec![("cpu", quiet.clone())]).unwrap();
        let mut store = Store::new(StoreLimits::default());
        store.ingest("cpu", &labels(&[("region", "eu")]), SeriesKind::Gauge, 30_000, 0.9).unwrap();
        before.evaluate(&store, 60_000);
        let status = before.status("cpu").unwrap().clone();
        let history: Vec<Transition> = before.history("cpu").cloned().collect();

        // After a restart the store is empty: `ignore` keeps the restored ALARM.
        let mut after = set(vec![("cpu", quiet)]).unwrap();
        assert!(after.restore("cpu", status, history));
        assert!(!after.restore("gone", before.status("cpu").unwrap().clone(), []));
        after.evaluate(&Store::new(StoreLimits::default()), 120_000);
        assert_eq!(after.status("cpu").unwrap().state, AlarmState::Alarm);
        assert_eq!(after.history("cpu").count(), 1);
    }

    #[test]
    fn gates_fail_closed() {
        let mut alarms = set(vec![
            ("cpu", above("cpu", 0.8, &[])),
            ("disk", above("disk", 0.8, &[])),
            ("host", composite("ALARM(cpu) OR ALARM(disk)")),
            ("aggregate", composite("ALARM(host)")),
        ])
        .unwrap();
        let mut store = Store::new(StoreLimits::default());
        let scope = labels(&[("region", "eu")]);
        assert_eq!(
            alarms.gate("aggregate", 0),
            Gate::Fail("alarm `aggregate` has not been evaluated yet".to_string())
        );
        store.ingest("cpu", &scope, SeriesKind::Gauge, 30_000, 0.1).unwrap();
        alarms.evaluate(&store, 60_000);
        // The composite says OK, but disk has no data: the gate refuses.
        assert_eq!(alarms.status("aggregate").unwrap().state, AlarmState::Ok);
        assert_eq!(
            alarms.gate("aggregate", 60_000),
            Gate::Fail("alarm `aggregate` is OK but `disk`, which it depends on, has insufficient data: no data in the last 3 periods".to_string())
        );
        store.ingest("disk", &scope, SeriesKind::Gauge, 100_000, 0.1).unwrap();
        store.ingest("cpu", &scope, SeriesKind::Gauge, 100_000, 0.1).unwrap();
        alarms.evaluate(&store, 120_000);
        assert_eq!(alarms.gate("aggregate", 120_000), Gate::Pass);
        assert_eq!(
            alarms.gate("aggregate", 180_000),
            Gate::Fail("alarm `aggregate` was last evaluated at 120000 ms, before 180000 ms: its state is stale".to_string())
        );
        assert_eq!(alarms.gate("nope", 0), Gate::Fail("alarm `nope` is not defined".to_string()));
        // Three one-minute periods plus a minute of cadence.
        assert_eq!(alarms.longest_window_ms(), 4 * 60_000);
        // Missing data treated as not breaching keeps an alarm OK, but never passes a gate.
        let quiet = AlarmDefinition::Metric(MetricAlarm {
            treat_missing_data: TreatMissingData::NotBreaching,
            ..match above("silent", 0.8, &[]) {
                AlarmDefinition::Metric(metric) => metric,
                _ => unreachable!("a metric alarm"),
            }
        });
        let mut quiet_set =
            set(vec![("silent", quiet), ("wrapper", composite("ALARM(silent)"))]).unwrap();
        quiet_set.evaluate(&store, 120_000);
        assert_eq!(quiet_set.status("silent").unwrap().state, AlarmState::Ok);
        assert_eq!(
            quiet_set.gate("silent", 120_000),
            Gate::Fail("alarm `silent` is OK but its state is not backed by data: 0 of 1 data points in the last 3 periods".to_string())
        );
        assert_eq!(
            quiet_set.gate("wrapper", 120_000),
            Gate::Fail("alarm `wrapper` is OK but the state of `silent`, which it depends on, is not backed by data: 0 of 1 data points in the last 3 periods".to_string())
        );
        store.ingest("disk", &scope, SeriesKind::Gauge, 150_000, 0.9).unwrap();
        alarms.evaluate(&store, 180_000);
        assert!(
            matches!(alarms.gate("aggregate", 180_000), Gate::Fail(reason) if reason.starts_with("alarm `aggregate` is ALARM: the rule holds: host is ALARM"))
        );
    }

    /// A definition as a pipeline file writes it, e.g. `judge: {metric: x, ...}`.
    fn written(yaml: &str) -> AlarmDefinition {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn anomaly_and_judge_definitions_are_refused_field_by_field() {
        check(
            vec![
                (
                    "judge",
                    written(
                        "judge: {metric: '', canary: {role: one-box}, baseline: {role: one-box}, \
                         window: 0s, confidence: 1, tolerance: -0.1, min_points: 2, \
                         allowed_increase: 0.5}",
                    ),
                ),
                (
                    "anomaly",
                    written(
                        "anomaly: {check: above_baseline, metric: latency, statistic: p200, \
                         period: 45s, recent_periods: 0, baseline: {before: 2}, \
                         min_baseline_points: 2, factor: 0.5, robust_z: .nan}",
                    ),
                ),
                (
                    "fleetless",
                    written(
                        "anomaly: {check: requests_to_zero, metric: requests, baseline: {fleet: {}}}",
                    ),
                ),
                (
                    "too_long",
                    written(
                        "anomaly: {check: requests_to_zero, metric: requests, period: 1h, \
                         baseline: {before: 30}}",
                    ),
                ),
            ],
            &[],
            &[],
            "error: alarm `anomaly`: unknown statistic `p200`: expected `Average`, `Sum`, `Minimum`, `Maximum`, `SampleCount`, a percentile such as `p99` or `p99.9`, a trimmed statistic such as `tm99`, `TM(10%:90%)`, `wm98`, `tc90`, `ts90` or `TS(150:1000)`, a percentile rank such as `PR(:300)`, or `IQM`\n\
             alarm `anomaly`: `period` is 45s; CloudWatch allows 10s, 20s, 30s or a multiple of 60s\n\
             alarm `anomaly`: `recent_periods` must be at least 1\n\
             alarm `anomaly`: `min_baseline_points` is 2; at least 3 are needed for a median and its spread\n\
             alarm `anomaly`: `factor` is 0.5; it must be a number of at least 1\n\
             alarm `anomaly`: `robust_z` is NaN; it must be a number of at least 0\n\
             alarm `fleetless`: the fleet baseline selects every series: give its labels, e.g. `{fleet: {role: fleet}}`\n\
             alarm `judge`: `metric` is empty: name the series to judge\n\
             alarm `judge`: the baseline selects the same series as the canary: the judge would compare the canary with itself\n\
             alarm `judge`: `window` is 0s; it must be between 1s and 86400s (one day)\n\
             alarm `judge`: `confidence` is 1; it must be between 0 and 1, e.g. 0.98\n\
             alarm `judge`: `tolerance` is -0.1; it must be a number of at least 0, e.g. 0.25\n\
             alarm `judge`: `min_points` is 2; it must be between 3 and 2000 (Kayenta asks for 50)\n\
             alarm `judge`: `allowed_increase` is 0.5; it must be a ratio of at least 1 (1: any change)\n\
             alarm `too_long`: `period` × (recent + baseline periods) is 126000s; at most 86400s (one day) is kept to read",
        );
    }

    #[test]
    fn a_judge_rolls_back_through_a_composite_and_explains_why() {
        // Ten seconds apart, 60 values a side in the judge's 10 minutes: the one box is 50%
        // slower from the start; the fleet's two boxes alternate 0.1 and 0.12.
        let one_box: &[(&str, &str)] = &[("region", "eu"), ("role", "one-box")];
        let fleet: [&[(&str, &str)]; 2] = [
            &[("region", "eu"), ("role", "fleet"), ("box", "1")],
            &[("region", "eu"), ("role", "fleet"), ("box", "2")],
        ];
        let mut samples: Vec<TestSample> = Vec::new();
        for step in 1..=60_i64 {
            let usual = if step % 2 == 0 { 0.1 } else { 0.12 };
            samples.push((step * 10, "latency", one_box, usual * 1.5));
            samples.extend(fleet.iter().map(|labels| (step * 10, "latency", *labels, usual)));
        }
        let judge = written(
            "judge: {metric: latency, canary: {role: one-box}, baseline: {role: fleet}, window: 10m, \
             direction: increase}",
        );
        let anomaly = written(
            "anomaly: {check: above_baseline, metric: latency, labels: {role: one-box}, \
             baseline: {fleet: {role: fleet}}, recent_periods: 3, min_baseline_points: 3, factor: 1.2}",
        );
        let mut alarms = set(vec![
            ("judge", judge.clone()),
            ("anomaly", anomaly),
            ("rollback", composite("ALARM(judge) OR ALARM(anomaly)")),
        ])
        .unwrap();
        let mut store = Store::new(StoreLimits::default());
        for (at, metric, pairs, value) in &samples {
            store.ingest(metric, &labels(pairs), SeriesKind::Gauge, at * 1000, *value).unwrap();
        }
        alarms.evaluate(&store, 600_000);
        let states: Vec<String> = alarms
            .names()
            .map(|name| format!("{name}={}", alarms.status(name).unwrap().state))
            .collect();
        assert_eq!(states, ["anomaly=ALARM", "judge=ALARM", "rollback=ALARM"]);
        let causes: Vec<&str> = alarms.causes("rollback").iter().map(|(name, _)| *name).collect();
        assert_eq!(causes, ["anomaly", "judge"]);
        assert_eq!(
            alarms.status("judge").unwrap().reason,
            "High: canary − baseline ≈ 0.0550 (98% interval 0.0500 to 0.0600), mean ratio 1.500, \
             60 canary and 120 baseline values"
        );
        // The judge reads its 10-minute window: the store must keep that much.
        assert_eq!(alarms.longest_window_ms(), 10 * 60_000);
        // Half the window later, 30 one-box values remain: too few, and the gate fails closed.
        alarms.evaluate(&store, 900_000);
        assert_eq!(alarms.status("judge").unwrap().state, AlarmState::InsufficientData);
        assert_eq!(
            alarms.gate("judge", 900_000),
            Gate::Fail(
                "alarm `judge` is INSUFFICIENT_DATA: not enough data: 30 canary and 60 baseline \
                 values, 50 needed on each side"
                    .to_string()
            )
        );
    }
}
