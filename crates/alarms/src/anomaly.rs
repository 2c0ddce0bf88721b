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

use crate::AlarmState;
use crate::metric::{DataPoint, PeriodQuery, period_points};
use crate::series::{Labels, Store, TimestampMs};
use crate::statistic::Statistic;

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
