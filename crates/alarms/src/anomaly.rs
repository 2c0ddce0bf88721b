//! Anomaly detection on the standard metrics every service emits — request count, latency,
//! fault rate — without per-team thresholds.
//!
//! Two checks, each comparing recent periods with a *baseline*: the same target in the periods
//! before the deployment ([`Baseline::Before`]), or the boxes still on the old artifact over the
//! same periods ([`Baseline::Fleet`]):
//!
//! - [`request_drop`]: requests fell to zero (every recent period zero or missing) while the
//!   baseline had traffic.
//! - [`above_baseline`]: the recent median is far above normal — above `factor` × the baseline
//!   median, above the median by `robust_z` robust standard deviations (1.4826 × MAD), and
//!   above it by at least `min_increase`, all three.
//!
//! A verdict maps to an alarm state ([`Verdict::state`]); too little baseline or recent data
//! is `NoData`, which never passes a gate.
//!
//! A pipeline declares one check on one metric as an `anomaly` alarm
//! ([`gantry_model::pipeline::AnomalyAlarm`]); [`AnomalySpec`] checks it and [`evaluate`]
//! judges it at a time, like a metric alarm. Its `before` baseline is the same series in the
//! periods just before the recent ones, so it slides with the evaluation: a regression that
//! lasts longer than the baseline becomes the baseline. Watch the one box with a `fleet`
//! baseline where that matters.

use gantry_model::pipeline::{AnomalyAlarm, AnomalyBaseline, AnomalyCheck};

use crate::metric::{
    DataPoint, Decision, MAX_WINDOW_SECONDS_SHORT_PERIODS, PeriodQuery, check_period, period_points,
};
use crate::series::{Labels, Store, TimestampMs, narrowed};
use crate::statistic::Statistic;
use crate::{AlarmState, FieldProblem};

/// Fewest baseline periods an anomaly alarm may ask for: a median and a median absolute
/// deviation of fewer than three values say nothing about spread.
pub const MIN_BASELINE_POINTS_FLOOR: u32 = 3;
/// Longest span (recent plus baseline periods) an anomaly alarm may read: one day, which the
/// store's default retention (26 hours) covers.
pub const MAX_SPAN_SECONDS: u64 = MAX_WINDOW_SECONDS_SHORT_PERIODS;

/// The judgement of one check.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    Normal(String),
    Anomalous(String),
    NoData(String),
}

impl Verdict {
    pub fn state(&self) -> AlarmState {
        match self {
            Verdict::Normal(_) => AlarmState::Ok,
            Verdict::Anomalous(_) => AlarmState::Alarm,
            Verdict::NoData(_) => AlarmState::InsufficientData,
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            Verdict::Normal(reason) | Verdict::Anomalous(reason) | Verdict::NoData(reason) => {
                reason
            }
        }
    }
}

/// Settings of the checks; the defaults suit the standard metrics.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AnomalyConfig {
    /// Fewest baseline periods with data to judge at all.
    pub min_baseline_points: usize,
    /// "Far above": recent median above this multiple of the baseline median...
    pub factor: f64,
    /// ...and above the baseline median by this many robust standard deviations...
    pub robust_z: f64,
    /// ...and by at least this much in absolute terms (so 0.1% faults over a 0% baseline is
    /// not an anomaly).
    pub min_increase: f64,
}

impl Default for AnomalyConfig {
    /// Ten baseline periods (a robust median and MAD need several); "much higher than normal"
    /// as more than double the median *and* five robust deviations above it, so a noisy metric
    /// must move far and a steady one must at least double. No absolute floor by default; set
    /// one for rates near zero (faults).
    fn default() -> Self {
        AnomalyConfig { min_baseline_points: 10, factor: 2.0, robust_z: 5.0, min_increase: 0.0 }
    }
}

/// Where the normal values come from.
#[derive(Clone, Debug, PartialEq)]
pub enum Baseline {
    /// The same scope, in `periods` periods ending at `end` (the deployment's start).
    Before { end: TimestampMs, periods: usize },
    /// Other series over the same recent periods, e.g. `{role: fleet}` for the boxes still on
    /// the old artifact.
    Fleet { matchers: Labels },
}

/// Requests dropped to zero: every recent period is zero or missing while the baseline's median
/// is above zero. Missing counts as zero here: a target that stops reporting requests is exactly
/// what this check exists for.
pub fn request_drop(
    baseline: &[DataPoint],
    recent: &[DataPoint],
    config: &AnomalyConfig,
) -> Verdict {
    let normal: Vec<f64> = baseline.iter().filter_map(DataPoint::value).collect();
    if normal.len() < config.min_baseline_points {
        return Verdict::NoData(format!(
            "{} baseline periods with request counts, {} needed",
            normal.len(),
            config.min_baseline_points
        ));
    }
    if recent.is_empty() {
        return Verdict::NoData("no recent periods to judge".to_string());
    }
    let median = median(normal);
    let recent_total: f64 = recent.iter().filter_map(DataPoint::value).sum();
    if median > 0.0 && recent_total == 0.0 {
        Verdict::Anomalous(format!(
            "requests dropped to zero in the last {} periods; the baseline median is {median} per \
             period",
            recent.len()
        ))
    } else {
        Verdict::Normal(format!(
            "{recent_total} requests in the last {} periods; baseline median {median} per period",
            recent.len()
        ))
    }
}

/// The recent median far above the baseline; see the module doc.
pub fn above_baseline(
    baseline: &[DataPoint],
    recent: &[DataPoint],
    config: &AnomalyConfig,
) -> Verdict {
    let normal: Vec<f64> = baseline.iter().filter_map(DataPoint::value).collect();
    if normal.len() < config.min_baseline_points {
        return Verdict::NoData(format!(
            "{} baseline periods with data, {} needed",
            normal.len(),
            config.min_baseline_points
        ));
    }
    let now: Vec<f64> = recent.iter().filter_map(DataPoint::value).collect();
    if now.is_empty() {
        return Verdict::NoData(format!("no data in the last {} periods", recent.len()));
    }
    let median_normal = median(normal.clone());
    let deviations: Vec<f64> = normal.iter().map(|v| (v - median_normal).abs()).collect();
    let spread = 1.4826 * median(deviations);
    let current = median(now);
    let z = if spread > 0.0 { (current - median_normal) / spread } else { f64::INFINITY };
    let far = current > config.factor * median_normal
        && (current - median_normal) > config.robust_z * spread
        && (current - median_normal) >= config.min_increase
        && current > median_normal;
    let text = format!(
        "recent median {current:.6} against baseline median {median_normal:.6} (×{:.2}, {} robust \
         deviations)",
        current / median_normal,
        if z.is_finite() { format!("{z:.1}") } else { "∞".to_string() }
    );
    if far { Verdict::Anomalous(text) } else { Verdict::Normal(text) }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_unstable_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 1 { values[middle] } else { (values[middle - 1] + values[middle]) / 2.0 }
}

/// The standard metrics of one service, by series name.
#[derive(Clone, Debug, PartialEq)]
pub struct StandardMetrics {
    /// A counter of requests.
    pub requests: String,
    /// A counter of faults (5xx); the fault rate is faults / requests.
    pub faults: String,
    /// A latency histogram or gauge, judged at `latency_statistic`.
    pub latency: String,
    pub latency_statistic: Statistic,
}

/// The recent periods judged: `periods` periods of `period_ms` ending at `now` (rounded down to
/// a period boundary).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub now: TimestampMs,
    pub period_ms: i64,
    pub periods: usize,
}

/// One check's outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct AnomalyReport {
    pub check: &'static str,
    pub verdict: Verdict,
}

impl StandardMetrics {
    /// Runs the three checks on `scope` over `window` against `baseline`.
    pub fn check(
        &self,
        store: &Store,
        scope: &Labels,
        baseline: &Baseline,
        window: Window,
        config: &AnomalyConfig,
    ) -> Vec<AnomalyReport> {
        let Window { now, period_ms, periods: recent } = window;
        let points =
            |metric: &str, divide_by: Option<&str>, statistic, matchers: &Labels, end, count| {
                let query = PeriodQuery { metric, divide_by, statistic, matchers, period_ms };
                period_points(store, &query, end, count)
            };
        let end = now - now.rem_euclid(period_ms);
        let series = [
            ("request count", self.requests.as_str(), None, Statistic::Sum),
            ("fault rate", self.faults.as_str(), Some(self.requests.as_str()), Statistic::Sum),
            ("latency", self.latency.as_str(), None, self.latency_statistic),
        ];
        series
            .into_iter()
            .map(|(check, metric, divide_by, statistic)| {
                let now_points = points(metric, divide_by, statistic, scope, end, recent);
                let normal_points = match baseline {
                    Baseline::Before { end, periods } => {
                        let end = end - end.rem_euclid(period_ms);
                        points(metric, divide_by, statistic, scope, end, *periods)
                    }
                    Baseline::Fleet { matchers } => points(
                        metric,
                        divide_by,
                        statistic,
                        matchers,
                        end,
                        recent.max(config.min_baseline_points),
                    ),
                };
                let verdict = if check == "request count" {
                    request_drop(&normal_points, &now_points, config)
                } else {
                    above_baseline(&normal_points, &now_points, config)
                };
                AnomalyReport { check, verdict }
            })
            .collect()
    }
}

/// An `anomaly` alarm definition, checked and ready to evaluate.
#[derive(Clone, Debug, PartialEq)]
pub struct AnomalySpec {
    pub check: AnomalyCheck,
    pub metric: String,
    pub divide_by: Option<String>,
    pub labels: Labels,
    pub statistic: Statistic,
    pub period_ms: i64,
    pub recent_periods: usize,
    pub baseline: AnomalyBaseline,
    pub config: AnomalyConfig,
}

impl AnomalySpec {
    /// Checks a definition; every field out of range is reported, each with what to change.
    pub fn from_definition(definition: &AnomalyAlarm) -> Result<AnomalySpec, Vec<FieldProblem>> {
        let mut problems = Vec::new();
        let mut refuse = |field, message: String| problems.push(FieldProblem::new(field, message));
        if definition.metric.is_empty() {
            refuse("metric", "`metric` is empty: name the series to watch".to_string());
        }
        let statistic = match &definition.statistic {
            None if definition.check == AnomalyCheck::RequestsToZero => Statistic::Sum,
            None => Statistic::Average,
            Some(text) => text.parse().unwrap_or_else(|message| {
                refuse("statistic", message);
                Statistic::Average
            }),
        };
        let period = definition.period.as_seconds();
        if let Err(message) = check_period(period) {
            refuse("period", message);
        }
        if definition.recent_periods == 0 {
            refuse("recent_periods", "`recent_periods` must be at least 1".to_string());
        }
        if definition.min_baseline_points < MIN_BASELINE_POINTS_FLOOR {
            refuse(
                "min_baseline_points",
                format!(
                    "`min_baseline_points` is {}; at least {MIN_BASELINE_POINTS_FLOOR} are needed \
                     for a median and its spread",
                    definition.min_baseline_points
                ),
            );
        }
        let baseline_periods = match &definition.baseline {
            AnomalyBaseline::Before(periods) => {
                if *periods < definition.min_baseline_points {
                    refuse(
                        "baseline",
                        format!(
                            "the baseline is {periods} periods but `min_baseline_points` is {}: \
                             the alarm could never judge; use at least that many periods",
                            definition.min_baseline_points
                        ),
                    );
                }
                *periods
            }
            AnomalyBaseline::Fleet(labels) => {
                if labels.is_empty() {
                    refuse(
                        "baseline",
                        "the fleet baseline selects every series: give its labels, e.g. \
                         `{fleet: {role: fleet}}`"
                            .to_string(),
                    );
                } else if *labels == definition.labels {
                    refuse(
                        "baseline",
                        "the fleet baseline selects the same series as `labels`: the metric \
                         would be compared with itself"
                            .to_string(),
                    );
                }
                definition.recent_periods.max(definition.min_baseline_points)
            }
        };
        let span = period
            .saturating_mul(u64::from(definition.recent_periods) + u64::from(baseline_periods));
        if span > MAX_SPAN_SECONDS {
            refuse(
                "baseline",
                format!(
                    "`period` × (recent + baseline periods) is {span}s; at most {MAX_SPAN_SECONDS}s \
                     (one day) is kept to read"
                ),
            );
        }
        let mut positive = |field, name: &str, value: f64, floor: f64| {
            if !(value.is_finite() && value >= floor) {
                refuse(
                    field,
                    format!("`{name}` is {value}; it must be a number of at least {floor}"),
                );
            }
        };
        // A factor under 1 would call values *below* the baseline "far above" it.
        positive("factor", "factor", definition.factor, 1.0);
        positive("robust_z", "robust_z", definition.robust_z, 0.0);
        positive("min_increase", "min_increase", definition.min_increase, 0.0);
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(AnomalySpec {
            check: definition.check,
            metric: definition.metric.clone(),
            divide_by: definition.divide_by.clone(),
            labels: definition.labels.clone(),
            statistic,
            period_ms: period as i64 * 1000,
            recent_periods: definition.recent_periods as usize,
            baseline: definition.baseline.clone(),
            config: AnomalyConfig {
                min_baseline_points: definition.min_baseline_points as usize,
                factor: definition.factor,
                robust_z: definition.robust_z,
                min_increase: definition.min_increase,
            },
        })
    }

    /// The longest span of samples the alarm reads, for the store's retention.
    pub fn span_ms(&self) -> i64 {
        let baseline = match &self.baseline {
            AnomalyBaseline::Before(periods) => *periods as usize,
            AnomalyBaseline::Fleet(_) => 0,
        };
        self.period_ms * (self.recent_periods + baseline) as i64 + self.period_ms
    }
}

/// Evaluates an anomaly alarm at `now` in `scope`: the recent periods ending at `now` (rounded
/// down to the period) of the scope's series narrowed by the alarm's labels, against its
/// baseline. Fails closed: too few baseline periods, no recent data for `above_baseline`, or no
/// data in the newest period is never a gate's pass (see [`Decision::data_gap`]).
pub fn evaluate(spec: &AnomalySpec, store: &Store, scope: &Labels, now: TimestampMs) -> Decision {
    let matchers = narrowed(scope, &spec.labels);
    let query = PeriodQuery {
        metric: &spec.metric,
        divide_by: spec.divide_by.as_deref(),
        statistic: spec.statistic,
        matchers: &matchers,
        period_ms: spec.period_ms,
    };
    let end = now - now.rem_euclid(spec.period_ms);
    let recent = period_points(store, &query, end, spec.recent_periods);
    let (baseline, against) = match &spec.baseline {
        AnomalyBaseline::Before(periods) => {
            let before = end - spec.recent_periods as i64 * spec.period_ms;
            let points = period_points(store, &query, before, *periods as usize);
            (points, format!("the {periods} periods before"))
        }
        AnomalyBaseline::Fleet(labels) => {
            let fleet = narrowed(scope, labels);
            let fleet_query = PeriodQuery { matchers: &fleet, ..query };
            let count = spec.recent_periods.max(spec.config.min_baseline_points);
            let points = period_points(store, &fleet_query, end, count);
            (points, format!("the fleet {}", crate::series::format_series("", labels)))
        }
    };
    let verdict = match spec.check {
        AnomalyCheck::RequestsToZero => request_drop(&baseline, &recent, &spec.config),
        AnomalyCheck::AboveBaseline => above_baseline(&baseline, &recent, &spec.config),
    };
    let state = verdict.state();
    let reason = format!("{}; baseline: {against}", verdict.reason());
    let data_gap = if state == AlarmState::InsufficientData {
        Some(reason.clone())
    } else if !matches!(recent.last(), Some(DataPoint::Value(_))) {
        Some("no data in the newest period: the metric may have stopped arriving".to_string())
    } else {
        None
    };
    Decision { state, reason, data_gap }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series::{SeriesKind, StoreLimits};

    fn points(text: &str) -> Vec<DataPoint> {
        text.split_whitespace()
            .map(|cell| match cell {
                "-" => DataPoint::Missing,
                number => DataPoint::Value(number.parse().unwrap()),
            })
            .collect()
    }

    /// Runs `check` on baseline and recent periods written as numbers (`-` missing) and compares
    /// state and reason.
    #[track_caller]
    fn check(
        verdict_of: fn(&[DataPoint], &[DataPoint], &AnomalyConfig) -> Verdict,
        baseline: &str,
        recent: &str,
        config: AnomalyConfig,
        expected: &str,
    ) {
        let verdict = verdict_of(&points(baseline), &points(recent), &config);
        assert_eq!(format!("{} {}", verdict.state(), verdict.reason()), expected);
    }

    const TEN: &str = "100 120 90 110 100 105 95 100 98 102";

    #[test]
    fn request_count_dropping_to_zero() {
        let config = AnomalyConfig::default();
        check(
            request_drop,
            TEN,
            "0 0 0",
            config,
            "ALARM requests dropped to zero in the last 3 periods; the baseline median is 100 per period",
        );
        check(
            request_drop,
            TEN,
            "- - -",
            config,
            "ALARM requests dropped to zero in the last 3 periods; the baseline median is 100 per period",
        );
        check(
            request_drop,
            TEN,
            "0 3 0",
            config,
            "OK 3 requests in the last 3 periods; baseline median 100 per period",
        );
        check(
            request_drop,
            "0 0 0 0 0 0 0 0 0 0",
            "0 0",
            config,
            "OK 0 requests in the last 2 periods; baseline median 0 per period",
        );
        check(
            request_drop,
            "100 -",
            "0",
            config,
            "INSUFFICIENT_DATA 1 baseline periods with request counts, 10 needed",
        );
    }

    #[test]
    fn latency_far_above_baseline() {
        let config = AnomalyConfig::default();
        let latency = "0.10 0.11 0.09 0.10 0.12 0.10 0.10 0.11 0.09 0.10";
        check(
            above_baseline,
            latency,
            "0.30 0.31 0.29",
            config,
            "ALARM recent median 0.300000 against baseline median 0.100000 (×3.00, 27.0 robust deviations)",
        );
        check(
            above_baseline,
            latency,
            "0.12 0.13 0.11",
            config,
            "OK recent median 0.120000 against baseline median 0.100000 (×1.20, 2.7 robust deviations)",
        );
        // Doubling exactly is not "far above" (the factor is exclusive).
        check(
            above_baseline,
            latency,
            "0.2",
            config,
            "OK recent median 0.200000 against baseline median 0.100000 (×2.00, 13.5 robust deviations)",
        );
        check(
            above_baseline,
            latency,
            "- -",
            config,
            "INSUFFICIENT_DATA no data in the last 2 periods",
        );
        check(
            above_baseline,
            "0.1 0.1",
            "0.5",
            config,
            "INSUFFICIENT_DATA 2 baseline periods with data, 10 needed",
        );
    }

    #[test]
    fn fault_rate_needs_an_absolute_increase_too() {
        let config = AnomalyConfig { min_increase: 0.01, ..AnomalyConfig::default() };
        let zero = "0 0 0 0 0 0 0 0 0 0";
        check(
            above_baseline,
            zero,
            "0.002",
            config,
            "OK recent median 0.002000 against baseline median 0.000000 (×inf, ∞ robust deviations)",
        );
        check(
            above_baseline,
            zero,
            "0.05",
            config,
            "ALARM recent median 0.050000 against baseline median 0.000000 (×inf, ∞ robust deviations)",
        );
    }

    #[test]
    fn standard_metrics_of_a_one_box_against_the_fleet() {
        let mut store = Store::new(StoreLimits::default());
        let labels = |role: &str, box_name: &str| -> Labels {
            [("role", role), ("box", box_name)]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        // 15 minutes; the one box (b0) serves requests with many faults and slow responses.
        for minute in 0..=15_i64 {
            let time = minute * 60_000;
            for (role, box_name) in [("one-box", "b0"), ("fleet", "b1"), ("fleet", "b2")] {
                let key = labels(role, box_name);
                let bad = role == "one-box";
                let requests = (minute * 100) as f64;
                let faults = if bad { (minute * 20) as f64 } else { minute as f64 };
                let latency = if bad { 0.5 } else { 0.1 };
                store.ingest("requests_total", &key, SeriesKind::Counter, time, requests).unwrap();
                store.ingest("faults_total", &key, SeriesKind::Counter, time, faults).unwrap();
                store.ingest("latency_p99", &key, SeriesKind::Gauge, time, latency).unwrap();
            }
        }
        let standard = StandardMetrics {
            requests: "requests_total".to_string(),
            faults: "faults_total".to_string(),
            latency: "latency_p99".to_string(),
            latency_statistic: Statistic::Average,
        };
        let one_box = labels("one-box", "b0");
        let fleet =
            Baseline::Fleet { matchers: [("role".to_string(), "fleet".to_string())].into() };
        let config = AnomalyConfig { min_increase: 0.01, ..AnomalyConfig::default() };
        let window = Window { now: 15 * 60_000 + 1, period_ms: 60_000, periods: 5 };
        let reports = standard.check(&store, &one_box, &fleet, window, &config);
        let summary: Vec<String> =
            reports.iter().map(|r| format!("{}: {}", r.check, r.verdict.state())).collect();
        assert_eq!(summary, ["request count: OK", "fault rate: ALARM", "latency: ALARM"]);
        // The fleet judged against itself before: nothing anomalous.
        let fleet_box = labels("fleet", "b1");
        let before = Baseline::Before { end: 11 * 60_000, periods: 10 };
        let reports = standard.check(&store, &fleet_box, &before, window, &config);
        let summary: Vec<String> =
            reports.iter().map(|r| format!("{}: {}", r.check, r.verdict.state())).collect();
        assert_eq!(summary, ["request count: OK", "fault rate: OK", "latency: OK"]);
    }
}
