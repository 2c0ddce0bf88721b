//! Metric alarms with CloudWatch's semantics: a statistic per period, "M out of N" data points,
//! and `TreatMissingData`.
//!
//! Evaluation is pure: [`evaluate`] takes the store, the scope and the time, and returns the
//! new state with a reason. Periods end at the evaluation time rounded down to the evaluation
//! cadence (every minute, or every 10 seconds for high-resolution periods), so "Period 5 min,
//! N=1" evaluated at 10:07 looks at 10:02–10:07, as CloudWatch's sliding windows do.
//!
//! # Missing data
//!
//! The evaluation *range* is N + [`EXTRA_EVALUATION_PERIODS`] periods, as in AWS's documented
//! example (N=3, range 5). With at least N real data points in the range, the newest N are
//! evaluated and `TreatMissingData` is not used. Otherwise every real point counts and the
//! N − real missing points are filled:
//!
//! - `breaching`: filled points breach; `notBreaching`: they do not.
//! - `missing`: no data at all is `INSUFFICIENT_DATA`. Otherwise ALARM when M real points
//!   breach, or — AWS's "premature alarm" rule — when every real point breaches and the oldest
//!   of them is at least M periods old; else OK.
//! - `ignore`: as `missing`, but where `missing` would give `INSUFFICIENT_DATA` or a premature
//!   ALARM, the current state is kept.
//!
//! AWS's tables for these cases are the golden tests below. A period whose samples are all NaN,
//! or a ratio whose denominator is zero, is a missing data point, and the reason says so. A
//! ratio whose numerator has no samples is missing too, not zero: a misspelt fault counter must
//! not read as a perfect fault rate. Services should export their fault counters from start-up
//! at 0, as Prometheus's client guidelines advise.
//!
//! States follow CloudWatch, so an alarm can be OK on filled-in data. Fail-closed gates need
//! more: every [`Decision`] says whether it rests on N usable data points including the newest
//! period ([`Decision::data_gap`]), and a gate refuses any state that does not.

use std::fmt::Write as _;

use gantry_model::pipeline::{ComparisonOperator, MetricAlarm, TreatMissingData};

use crate::AlarmState;
use crate::series::{Labels, Store, TimestampMs, narrowed};
use crate::statistic::{Statistic, histogram_quantile};

/// Extra periods retrieved beyond N, so that missing points can be skipped over; AWS's
/// documented example retrieves 5 points for N = 3.
pub const EXTRA_EVALUATION_PERIODS: usize = 2;
/// Data point values quoted in a reason; older ones are counted, not listed.
pub const MAX_LISTED_VALUES: usize = 20;
/// CloudWatch's high-resolution periods, in seconds; other periods must be multiples of 60.
pub const HIGH_RESOLUTION_PERIODS: [u64; 3] = [10, 20, 30];
/// CloudWatch's limit on Period × EvaluationPeriods for periods under an hour: one day.
pub const MAX_WINDOW_SECONDS_SHORT_PERIODS: u64 = 86_400;
/// CloudWatch's limit on Period × EvaluationPeriods for periods of an hour or more: 7 days.
pub const MAX_WINDOW_SECONDS: u64 = 604_800;

/// A metric alarm definition, checked and ready to evaluate.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricSpec {
    pub metric: String,
    pub divide_by: Option<String>,
    pub labels: Labels,
    pub statistic: Statistic,
    pub period_ms: i64,
    pub evaluation_periods: usize,
    pub datapoints_to_alarm: usize,
    pub comparison: ComparisonOperator,
    pub threshold: f64,
    pub treat_missing_data: TreatMissingData,
}

impl MetricSpec {
    /// Checks a definition against CloudWatch's rules; the error says what to change.
    pub fn from_definition(definition: &MetricAlarm) -> Result<MetricSpec, String> {
        let statistic: Statistic = definition.statistic.parse()?;
        if definition.metric.is_empty() {
            return Err("`metric` is empty: name the series to watch".to_string());
        }
        let period = definition.period.as_seconds();
        check_period(period)?;
        let evaluation_periods = definition.evaluation_periods;
        if evaluation_periods == 0 {
            return Err("`evaluation_periods` must be at least 1".to_string());
        }
        let datapoints_to_alarm = definition.datapoints_to_alarm.unwrap_or(evaluation_periods);
        if datapoints_to_alarm == 0 || datapoints_to_alarm > evaluation_periods {
            return Err(format!(
                "`datapoints_to_alarm` is {datapoints_to_alarm}; it must be between 1 and \
                 `evaluation_periods` ({evaluation_periods})"
            ));
        }
        let window = period * u64::from(evaluation_periods);
        let limit =
            if period < 3600 { MAX_WINDOW_SECONDS_SHORT_PERIODS } else { MAX_WINDOW_SECONDS };
        if window > limit {
            return Err(format!(
                "`period` × `evaluation_periods` is {window}s; CloudWatch allows at most {limit}s \
                 for this period"
            ));
        }
        if !definition.threshold.is_finite() {
            return Err("`threshold` must be a finite number".to_string());
        }
        Ok(MetricSpec {
            metric: definition.metric.clone(),
            divide_by: definition.divide_by.clone(),
            labels: definition.labels.clone(),
            statistic,
            period_ms: period as i64 * 1000,
            evaluation_periods: evaluation_periods as usize,
            datapoints_to_alarm: datapoints_to_alarm as usize,
            comparison: definition.comparison,
            threshold: definition.threshold,
            treat_missing_data: definition.treat_missing_data,
        })
    }

    /// The evaluation cadence: every 10 s for high-resolution periods, else every minute.
    pub fn cadence_ms(&self) -> i64 {
        if self.period_ms < 60_000 { 10_000 } else { 60_000 }
    }

    /// Whether `value` breaches the threshold.
    pub fn breaches(&self, value: f64) -> bool {
        match self.comparison {
            ComparisonOperator::GreaterThanThreshold => value > self.threshold,
            ComparisonOperator::GreaterThanOrEqualToThreshold => value >= self.threshold,
            ComparisonOperator::LessThanThreshold => value < self.threshold,
            ComparisonOperator::LessThanOrEqualToThreshold => value <= self.threshold,
        }
    }

    fn comparison_phrase(&self) -> &'static str {
        match self.comparison {
            ComparisonOperator::GreaterThanThreshold => "greater than",
            ComparisonOperator::GreaterThanOrEqualToThreshold => "greater than or equal to",
            ComparisonOperator::LessThanThreshold => "less than",
            ComparisonOperator::LessThanOrEqualToThreshold => "less than or equal to",
        }
    }
}

/// Checks a period against CloudWatch's: 10 s, 20 s, 30 s or a multiple of a minute. Anomaly
/// alarms read periods the same way.
pub fn check_period(seconds: u64) -> Result<(), String> {
    if HIGH_RESOLUTION_PERIODS.contains(&seconds) || (seconds > 0 && seconds.is_multiple_of(60)) {
        Ok(())
    } else {
        Err(format!("`period` is {seconds}s; CloudWatch allows 10s, 20s, 30s or a multiple of 60s"))
    }
}

/// One period's data point: its value, or why it has none.
#[derive(Clone, Debug, PartialEq)]
pub enum DataPoint {
    Value(f64),
    /// No samples in the period.
    Missing,
    /// Samples, but all NaN, or a ratio over zero: never healthy, treated as missing.
    Invalid(&'static str),
}

impl DataPoint {
    pub fn value(&self) -> Option<f64> {
        match self {
            DataPoint::Value(value) => Some(*value),
            _ => None,
        }
    }
}

/// The state an evaluation arrives at, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub state: AlarmState,
    pub reason: String,
    /// Why the decision is not backed by N usable data points (fewer real points than N, or
    /// NaN / zero-denominator periods in the range); `None` when it is. Gates fail on a gap
    /// whatever the state, since missing data filled as `notBreaching` is not evidence of
    /// health.
    pub data_gap: Option<String>,
}

/// The end of the newest period evaluated at `now`.
pub fn window_end(spec: &MetricSpec, now: TimestampMs) -> TimestampMs {
    now - now.rem_euclid(spec.cadence_ms())
}

/// The data points of the evaluation range at `now`, oldest first.
pub fn data_points(
    spec: &MetricSpec,
    store: &Store,
    scope: &Labels,
    now: TimestampMs,
) -> Vec<DataPoint> {
    let matchers = narrowed(scope, &spec.labels);
    let query = PeriodQuery {
        metric: &spec.metric,
        divide_by: spec.divide_by.as_deref(),
        statistic: spec.statistic,
        matchers: &matchers,
        period_ms: spec.period_ms,
    };
    period_points(
        store,
        &query,
        window_end(spec, now),
        spec.evaluation_periods + EXTRA_EVALUATION_PERIODS,
    )
}

/// What to compute per period: a statistic of a metric (or of a ratio of two) over the series
/// matching `matchers`.
#[derive(Clone, Copy, Debug)]
pub struct PeriodQuery<'a> {
    pub metric: &'a str,
    pub divide_by: Option<&'a str>,
    pub statistic: Statistic,
    pub matchers: &'a Labels,
    pub period_ms: i64,
}

/// The data points of the `count` periods ending at `end`, oldest first. Anomaly detection and
/// the judge read baselines through this too.
pub fn period_points(
    store: &Store,
    query: &PeriodQuery<'_>,
    end: TimestampMs,
    count: usize,
) -> Vec<DataPoint> {
    let mut scratch = Vec::new();
    (0..count)
        .rev()
        .map(|age| {
            let period_end = end - age as i64 * query.period_ms;
            let period_start = period_end - query.period_ms;
            let mut statistic_of = |metric| {
                period_statistic(
                    query.statistic,
                    store,
                    metric,
                    query.matchers,
                    period_start,
                    period_end,
                    &mut scratch,
                )
            };
            let numerator = statistic_of(query.metric);
            let point = match query.divide_by {
                None => numerator,
                Some(denominator) => ratio(numerator, statistic_of(denominator)),
            };
            match point {
                // Defence in depth: no statistic should produce one, but a NaN or infinite
                // data point must never count as healthy.
                DataPoint::Value(value) if !value.is_finite() => {
                    DataPoint::Invalid("the statistic is not a finite number")
                }
                point => point,
            }
        })
        .collect()
}

fn ratio(numerator: DataPoint, denominator: DataPoint) -> DataPoint {
    match (numerator, denominator) {
        (DataPoint::Value(_), DataPoint::Value(0.0)) => {
            DataPoint::Invalid("the denominator is zero")
        }
        (DataPoint::Value(top), DataPoint::Value(bottom)) => DataPoint::Value(top / bottom),
        (DataPoint::Invalid(why), _) | (_, DataPoint::Invalid(why)) => DataPoint::Invalid(why),
        _ => DataPoint::Missing,
    }
}

fn period_statistic(
    statistic: Statistic,
    store: &Store,
    metric: &str,
    matchers: &Labels,
    start: TimestampMs,
    end: TimestampMs,
    scratch: &mut Vec<f64>,
) -> DataPoint {
    let mut series = store.select(metric, matchers).peekable();
    if series.peek().is_none()
        && let Statistic::Percentile(p) = statistic
    {
        return histogram_point(p, store, metric, matchers, start, end);
    }
    scratch.clear();
    let mut invalid = 0;
    for series in series {
        for (_, value) in series.samples_between(start, end) {
            if value.is_finite() {
                scratch.push(value);
            } else {
                invalid += 1;
            }
        }
    }
    match statistic.compute(scratch) {
        Some(value) => DataPoint::Value(value),
        None if invalid > 0 => DataPoint::Invalid("every sample in the period was NaN or infinite"),
        None => DataPoint::Missing,
    }
}

/// pNN of a Prometheus histogram `metric_bucket{le=...}` over the period's observations.
fn histogram_point(
    percentile: f64,
    store: &Store,
    metric: &str,
    matchers: &Labels,
    start: TimestampMs,
    end: TimestampMs,
) -> DataPoint {
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    let mut any = false;
    for series in store.select(&format!("{metric}_bucket"), matchers) {
        let Some(bound) = series.labels.get("le").and_then(|le| parse_bound(le)) else {
            continue;
        };
        let observations: f64 = series.samples_between(start, end).map(|(_, v)| v).sum();
        any |= series.samples_between(start, end).next().is_some();
        match buckets.iter_mut().find(|(le, _)| *le == bound) {
            Some(bucket) => bucket.1 += observations,
            None => buckets.push((bound, observations)),
        }
    }
    if !any {
        return DataPoint::Missing;
    }
    match histogram_quantile(percentile / 100.0, &mut buckets) {
        Some(value) if value.is_finite() => DataPoint::Value(value),
        _ => DataPoint::Invalid("the histogram has no observations or no `+Inf` bucket"),
    }
}

fn parse_bound(le: &str) -> Option<f64> {
    match le {
        "+Inf" | "Inf" | "inf" => Some(f64::INFINITY),
        _ => le.parse().ok(),
    }
}

/// Evaluates a metric alarm at `now`. `current` is the alarm's state before, which
/// `TreatMissingData: ignore` may keep.
pub fn evaluate(
    spec: &MetricSpec,
    store: &Store,
    scope: &Labels,
    now: TimestampMs,
    current: AlarmState,
) -> Decision {
    decide(spec, &data_points(spec, store, scope, now), current)
}

/// CloudWatch's decision over the range's data points (oldest first); see the module doc.
pub fn decide(spec: &MetricSpec, points: &[DataPoint], current: AlarmState) -> Decision {
    let n = spec.evaluation_periods;
    let m = spec.datapoints_to_alarm;
    let real: Vec<(usize, f64)> = points
        .iter()
        .enumerate()
        .filter_map(|(index, point)| point.value().map(|value| (points.len() - index, value)))
        .collect();
    let invalid: Vec<&str> = points
        .iter()
        .filter_map(|point| match point {
            DataPoint::Invalid(why) => Some(*why),
            _ => None,
        })
        .collect();
    let describe = |values: &[(usize, f64)], breaching: usize| {
        // The newest values, oldest first; a week of minutes would make an unreadable reason.
        let skipped = values.len().saturating_sub(MAX_LISTED_VALUES);
        let mut listed: Vec<String> =
            values[skipped..].iter().map(|(_, value)| value.to_string()).collect();
        if skipped > 0 {
            listed.insert(0, format!("{skipped} older values, ..."));
        }
        let mut text = format!(
            "{breaching} of {} data points {} {} the threshold {} ({m} of {n} needed to alarm): \
             [{}]",
            values.len(),
            if values.len() == 1 { "was" } else { "were" },
            spec.comparison_phrase(),
            spec.threshold,
            listed.join(", "),
        );
        if let Some(why) = invalid.first() {
            let _ = write!(text, "; {} period(s) had unusable data: {why}", invalid.len());
        }
        text
    };
    let data_gap = if let Some(why) = invalid.first() {
        Some(format!(
            "{} of the last {} periods had unusable data: {why}",
            invalid.len(),
            points.len()
        ))
    } else if real.len() < n {
        Some(format!("{} of {n} data points in the last {} periods", real.len(), points.len()))
    } else if !matches!(points.last(), Some(DataPoint::Value(_))) {
        Some("no data in the newest period: the metric may have stopped arriving".to_string())
    } else {
        None
    };
    let decision = |state, reason| Decision { state, reason, data_gap: data_gap.clone() };

    if real.len() >= n {
        let newest = &real[real.len() - n..];
        let breaching = newest.iter().filter(|(_, value)| spec.breaches(*value)).count();
        let state = if breaching >= m { AlarmState::Alarm } else { AlarmState::Ok };
        return decision(state, describe(newest, breaching));
    }
    let breaching = real.iter().filter(|(_, value)| spec.breaches(*value)).count();
    let filled = n - real.len();
    let summary = describe(&real, breaching);
    let missing_note =
        format!("{} of {n} data points present, {filled} missing treated as", real.len());
    match spec.treat_missing_data {
        TreatMissingData::Breaching => {
            let state = if breaching + filled >= m { AlarmState::Alarm } else { AlarmState::Ok };
            decision(state, format!("{missing_note} breaching; {summary}"))
        }
        TreatMissingData::NotBreaching => {
            let state = if breaching >= m { AlarmState::Alarm } else { AlarmState::Ok };
            decision(state, format!("{missing_note} not breaching; {summary}"))
        }
        policy @ (TreatMissingData::Missing | TreatMissingData::Ignore) => {
            let ignore = policy == TreatMissingData::Ignore;
            if real.is_empty() {
                let why = match invalid.first() {
                    Some(why) => {
                        format!("no usable data in the last {} periods ({why})", points.len())
                    }
                    None => format!("no data in the last {} periods", points.len()),
                };
                return if ignore {
                    decision(current, format!("{why}; missing data ignored, state kept"))
                } else {
                    decision(AlarmState::InsufficientData, why)
                };
            }
            if breaching >= m {
                return decision(AlarmState::Alarm, format!("{missing_note} missing; {summary}"));
            }
            let oldest_age = real[0].0;
            if breaching == real.len() && oldest_age >= m {
                let premature = format!(
                    "{missing_note} missing; every present data point breaches and the oldest is \
                     {oldest_age} periods old; {summary}"
                );
                return if ignore {
                    decision(current, format!("{premature}; missing data ignored, state kept"))
                } else {
                    decision(AlarmState::Alarm, premature)
                };
            }
            decision(AlarmState::Ok, format!("{missing_note} missing; {summary}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use gantry_model::Duration;

    use super::*;
    use crate::series::{SeriesKind, StoreLimits};

    fn spec(n: u32, m: u32, policy: TreatMissingData) -> MetricSpec {
        MetricSpec::from_definition(&MetricAlarm {
            metric: "errors".to_string(),
            divide_by: None,
            labels: BTreeMap::new(),
            statistic: "Sum".to_string(),
            period: Duration::from_minutes(1),
            evaluation_periods: n,
            datapoints_to_alarm: Some(m),
            comparison: ComparisonOperator::GreaterThanThreshold,
            threshold: 0.5,
            treat_missing_data: policy,
        })
        .unwrap()
    }

    /// Decides over points written as AWS's tables write them (`0` ok, `X` breaching, `-`
    /// missing, oldest first), starting from `retain_from` (what "retain" keeps), and compares
    /// the four policies' states with `expected`, in the tables' column order: missing, ignore,
    /// breaching, notBreaching.
    #[track_caller]
    fn check(n: u32, m: u32, data: &str, expected: [&str; 4]) {
        let points = cells(data);
        let policies = [
            TreatMissingData::Missing,
            TreatMissingData::Ignore,
            TreatMissingData::Breaching,
            TreatMissingData::NotBreaching,
        ];
        // "retain" must keep whatever the state was: try two different starting states.
        for retain_from in [AlarmState::Ok, AlarmState::Alarm] {
            let actual: Vec<String> = policies
                .iter()
                .map(|policy| {
                    let decision = decide(&spec(n, m, *policy), &points, retain_from);
                    if *policy == TreatMissingData::Ignore && decision.reason.contains("state kept")
                    {
                        assert_eq!(decision.state, retain_from);
                        "retain".to_string()
                    } else {
                        decision.state.to_string()
                    }
                })
                .collect();
            assert_eq!(actual, expected, "N={n} M={m} data `{data}` from {retain_from}");
        }
    }

    /// Data points written `0` (ok), `X` (breaching), `-` (missing), `N` (NaN period).
    fn cells(data: &str) -> Vec<DataPoint> {
        data.split_whitespace()
            .map(|cell| match cell {
                "0" => DataPoint::Value(0.0),
                "X" => DataPoint::Value(1.0),
                "-" => DataPoint::Missing,
                "N" => DataPoint::Invalid("every sample in the period was NaN or infinite"),
                other => panic!("bad cell {other}"),
            })
            .collect()
    }

    #[test]
    fn data_gaps_keep_gates_closed() {
        let gap = |data: &str, policy| {
            decide(&spec(3, 3, policy), &cells(data), AlarmState::Ok).data_gap.unwrap_or_default()
        };
        assert_eq!(gap("0 0 0 0 0", TreatMissingData::Missing), "");
        assert_eq!(gap("- - 0 0 0", TreatMissingData::Missing), "");
        assert_eq!(
            gap("0 0 0 0 -", TreatMissingData::Missing),
            "no data in the newest period: the metric may have stopped arriving"
        );
        assert_eq!(
            gap("- - 0 - -", TreatMissingData::NotBreaching),
            "1 of 3 data points in the last 5 periods"
        );
        assert_eq!(
            gap("0 0 N 0 0", TreatMissingData::Missing),
            "1 of the last 5 periods had unusable data: every sample in the period was NaN or infinite"
        );
    }

    #[test]
    fn long_reasons_list_only_the_newest_values() {
        let data = vec!["X"; 30].join(" ");
        let decision =
            decide(&spec(28, 28, TreatMissingData::Missing), &cells(&data), AlarmState::Ok);
        assert_eq!(
            decision.reason,
            "28 of 28 data points were greater than the threshold 0.5 (28 of 28 needed to alarm): \
             [8 older values, ..., 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"
        );
    }

    use proptest::prelude::{Just, Strategy};

    /// Points from a proptest pattern: 0 ok, 1 breaching, 2 missing.
    fn pattern(cells: &[u8]) -> Vec<DataPoint> {
        cells
            .iter()
            .map(|cell| match cell {
                0 => DataPoint::Value(0.0),
                1 => DataPoint::Value(1.0),
                _ => DataPoint::Missing,
            })
            .collect()
    }

    proptest::proptest! {
        /// A period that turns into a breach never turns ALARM into anything else.
        #[test]
        fn one_more_breach_never_clears_an_alarm(
            (n, m, cells, flip) in (1u32..6).prop_flat_map(|n| {
                (Just(n), 1..=n, proptest::collection::vec(0u8..3, n as usize + 2), 0..n as usize + 2)
            })
        ) {
            for policy in [TreatMissingData::Missing, TreatMissingData::Breaching, TreatMissingData::NotBreaching] {
                let spec = spec(n, m, policy);
                let before = decide(&spec, &pattern(&cells), AlarmState::Ok).state;
                let mut worse = cells.clone();
                worse[flip] = 1;
                let after = decide(&spec, &pattern(&worse), AlarmState::Ok).state;
                proptest::prop_assert!(before != AlarmState::Alarm || after == AlarmState::Alarm,
                    "{policy:?} {cells:?} -> {worse:?}: {before} -> {after}");
            }
        }

        /// notBreaching alarms only when missing alarms, which alarms only when breaching does.
        #[test]
        fn policies_are_ordered(
            (n, m, cells) in (1u32..6).prop_flat_map(|n| {
                (Just(n), 1..=n, proptest::collection::vec(0u8..3, n as usize + 2))
            })
        ) {
            let alarms = |policy| decide(&spec(n, m, policy), &pattern(&cells), AlarmState::Ok).state == AlarmState::Alarm;
            let (not_breaching, missing, breaching) = (
                alarms(TreatMissingData::NotBreaching),
                alarms(TreatMissingData::Missing),
                alarms(TreatMissingData::Breaching),
            );
            proptest::prop_assert!(!not_breaching || missing, "{cells:?}");
            proptest::prop_assert!(!missing || breaching, "{cells:?}");
        }
    }

    #[test]
    fn aws_missing_data_table_three_of_three() {
        check(3, 3, "0 - X - X", ["OK", "OK", "OK", "OK"]);
        check(3, 3, "0 - - - -", ["OK", "OK", "OK", "OK"]);
        check(3, 3, "- - - - -", ["INSUFFICIENT_DATA", "retain", "ALARM", "OK"]);
        check(3, 3, "0 X X - X", ["ALARM", "ALARM", "ALARM", "ALARM"]);
        check(3, 3, "- - X - -", ["ALARM", "retain", "ALARM", "OK"]);
    }

    #[test]
    fn aws_missing_data_table_two_of_three() {
        check(3, 2, "0 - X - X", ["ALARM", "ALARM", "ALARM", "ALARM"]);
        check(3, 2, "0 0 X 0 X", ["ALARM", "ALARM", "ALARM", "ALARM"]);
        check(3, 2, "0 - X - -", ["OK", "OK", "ALARM", "OK"]);
        check(3, 2, "- - - - 0", ["OK", "OK", "ALARM", "OK"]);
        check(3, 2, "- - - X -", ["ALARM", "retain", "ALARM", "OK"]);
    }

    #[test]
    fn aws_premature_alarm_rule() {
        // "- - - - X" and "- - - X -" do not alarm with N = M = 3; "- - X - -" does.
        check(3, 3, "- - - - X", ["OK", "OK", "ALARM", "OK"]);
        check(3, 3, "- - - X -", ["OK", "OK", "ALARM", "OK"]);
        check(3, 3, "- - X - -", ["ALARM", "retain", "ALARM", "OK"]);
    }

    #[test]
    fn m_of_n_edge_cases() {
        // Breaches need not be consecutive; only the newest N real points count.
        check(5, 3, "0 0 X 0 X 0 X", ["ALARM", "ALARM", "ALARM", "ALARM"]);
        check(5, 3, "X X X 0 0 0 X", ["OK", "OK", "OK", "OK"]);
        check(1, 1, "0 0 X", ["ALARM", "ALARM", "ALARM", "ALARM"]);
        check(1, 1, "X X 0", ["OK", "OK", "OK", "OK"]);
        check(1, 1, "X - -", ["ALARM", "ALARM", "ALARM", "ALARM"]);
        check(1, 1, "- - -", ["INSUFFICIENT_DATA", "retain", "ALARM", "OK"]);
        check(2, 1, "- - - X", ["ALARM", "ALARM", "ALARM", "ALARM"]);
        // Beyond the range, nothing counts.
        check(3, 3, "X X X X X", ["ALARM", "ALARM", "ALARM", "ALARM"]);
    }

    #[test]
    fn definitions_are_checked() {
        let base = MetricAlarm {
            metric: "latency".to_string(),
            divide_by: None,
            labels: BTreeMap::new(),
            statistic: "p99".to_string(),
            period: Duration::from_minutes(1),
            evaluation_periods: 3,
            datapoints_to_alarm: None,
            comparison: ComparisonOperator::GreaterThanThreshold,
            threshold: 1.0,
            treat_missing_data: TreatMissingData::Missing,
        };
        let cases: Vec<(MetricAlarm, &str)> = vec![
            (
                MetricAlarm { period: Duration::from_seconds(45), ..base.clone() },
                "`period` is 45s; CloudWatch allows 10s, 20s, 30s or a multiple of 60s",
            ),
            (
                MetricAlarm { evaluation_periods: 0, ..base.clone() },
                "`evaluation_periods` must be at least 1",
            ),
            (
                MetricAlarm { datapoints_to_alarm: Some(4), ..base.clone() },
                "`datapoints_to_alarm` is 4; it must be between 1 and `evaluation_periods` (3)",
            ),
            (
                MetricAlarm {
                    evaluation_periods: 1441,
                    datapoints_to_alarm: Some(1),
                    ..base.clone()
                },
                "`period` × `evaluation_periods` is 86460s; CloudWatch allows at most 86400s for this period",
            ),
            (
                MetricAlarm { statistic: "P99".to_string(), ..base.clone() },
                "unknown statistic `P99`: expected `Average`, `Sum`, `Minimum`, `Maximum`, `SampleCount`, a percentile such as `p99` or `p99.9`, a trimmed statistic such as `tm99`, `TM(10%:90%)`, `wm98`, `tc90`, `ts90` or `TS(150:1000)`, a percentile rank such as `PR(:300)`, or `IQM`",
            ),
            (
                MetricAlarm { threshold: f64::NAN, ..base.clone() },
                "`threshold` must be a finite number",
            ),
        ];
        for (definition, expected) in cases {
            assert_eq!(MetricSpec::from_definition(&definition).unwrap_err(), expected);
        }
        let hourly = MetricAlarm {
            period: Duration::from_hours(1),
            evaluation_periods: 168,
            ..base.clone()
        };
        assert!(MetricSpec::from_definition(&hourly).is_ok());
        let high_resolution = MetricAlarm { period: Duration::from_seconds(10), ..base };
        assert_eq!(MetricSpec::from_definition(&high_resolution).unwrap().cadence_ms(), 10_000);
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn data_points_use_statistic_ratio_and_sliding_windows() {
        let mut store = Store::new(StoreLimits::default());
        let scope = labels(&[("region", "eu")]);
        // Requests and faults counters scraped every 10 s from two boxes over 3 minutes.
        for box_name in ["b1", "b2"] {
            let box_labels = labels(&[("region", "eu"), ("box", box_name)]);
            for step in 0..=18 {
                let time = step * 10_000;
                // No requests in the first minute, then 10 per scrape; faults on b2 only, in
                // the third minute.
                let requests = if step <= 5 { 0 } else { step * 10 };
                let faults = if box_name == "b2" && step > 12 { step - 12 } else { 0 };
                store
                    .ingest("requests", &box_labels, SeriesKind::Counter, time, requests as f64)
                    .unwrap();
                store
                    .ingest("faults", &box_labels, SeriesKind::Counter, time, faults as f64)
                    .unwrap();
            }
        }
        let mut fault_rate = spec(3, 3, TreatMissingData::Missing);
        fault_rate.metric = "faults".to_string();
        fault_rate.divide_by = Some("requests".to_string());
        fault_rate.threshold = 0.01;
        // At 3:05 the newest window ends at 3:00: [0:00, 1:00), [1:00, 2:00), [2:00, 3:00) and
        // two older, empty ones.
        let points = data_points(&fault_rate, &store, &scope, 185_000);
        let expected = vec![
            DataPoint::Missing,
            DataPoint::Missing,
            DataPoint::Invalid("the denominator is zero"),
            DataPoint::Value(0.0),
            DataPoint::Value(5.0 / 120.0),
        ];
        assert_eq!(points, expected);
        let decision = decide(&fault_rate, &points, AlarmState::Ok);
        assert_eq!(decision.state, AlarmState::Ok);
        assert_eq!(
            decision.reason,
            "2 of 3 data points present, 1 missing treated as missing; 1 of 2 data points were \
             greater than the threshold 0.01 (3 of 3 needed to alarm): [0, 0.041666666666666664]; \
             1 period(s) had unusable data: the denominator is zero"
        );
        // Another region sees nothing.
        let elsewhere = data_points(&fault_rate, &store, &labels(&[("region", "us")]), 185_000);
        assert!(elsewhere.iter().all(|point| *point == DataPoint::Missing));
    }

    #[test]
    fn percentiles_come_from_histograms_when_no_plain_series_exists() {
        let mut store = Store::new(StoreLimits::default());
        let bounds = [("0.1", 0.0), ("0.5", 0.0), ("+Inf", 0.0)];
        for (le, _) in bounds {
            store
                .ingest("latency_bucket", &labels(&[("le", le)]), SeriesKind::Counter, 0, 0.0)
                .unwrap();
        }
        // In the next minute: 60 observations under 0.1 s, 30 in (0.1, 0.5], 10 above.
        for (le, count) in [("0.1", 60.0), ("0.5", 90.0), ("+Inf", 100.0)] {
            store
                .ingest(
                    "latency_bucket",
                    &labels(&[("le", le)]),
                    SeriesKind::Counter,
                    30_000,
                    count,
                )
                .unwrap();
        }
        let mut p50 = spec(1, 1, TreatMissingData::Missing);
        p50.metric = "latency".to_string();
        p50.statistic = Statistic::Percentile(50.0);
        let points = data_points(&p50, &store, &Labels::new(), 60_000);
        // Prometheus computes 0 + (0.1 - 0) * (50 / 60).
        assert_eq!(points.last(), Some(&DataPoint::Value(0.1 * (50.0 / 60.0))));
        p50.statistic = Statistic::Percentile(95.0);
        assert_eq!(
            data_points(&p50, &store, &Labels::new(), 60_000).last(),
            Some(&DataPoint::Value(0.5))
        );
    }

    #[test]
    fn nan_periods_are_unusable_not_healthy() {
        let mut store = Store::new(StoreLimits::default());
        store.ingest("cpu", &Labels::new(), SeriesKind::Gauge, 1_000, f64::NAN).unwrap();
        let mut cpu = spec(1, 1, TreatMissingData::Missing);
        cpu.metric = "cpu".to_string();
        let decision = evaluate(&cpu, &store, &Labels::new(), 60_000, AlarmState::Ok);
        assert_eq!(decision.state, AlarmState::InsufficientData);
        assert_eq!(
            decision.reason,
            "no usable data in the last 3 periods (every sample in the period was NaN or infinite)"
        );
    }
}
