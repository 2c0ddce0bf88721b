//! A statistical one-box-versus-fleet judge, after Kayenta's NetflixACAJudge: a Mann–Whitney
//! test on one metric's values from the one box (the *canary*) and from the boxes still on the
//! old artifact (the *baseline*).
//!
//! For each metric: NaN values are removed; fewer than `min_points` on either side is
//! [`Classification::NoData`] (which fails closed: it never passes a gate). Otherwise the
//! Hodges–Lehmann estimate of the shift (canary − baseline) and its confidence interval at
//! `confidence` are computed from all pairwise differences, with the normal approximation of
//! the Mann–Whitney distribution for the interval's ranks. The metric is `High` only when the
//! whole interval lies above a tolerance band of ±`tolerance`×|estimate| around zero, the mean
//! ratio (canary / baseline) is above `allowed_increase`, and the metric's direction allows an
//! increase; `Low` likewise downwards; otherwise `Pass`.
//!
//! The verdict maps to an alarm state ([`Judgement::state`]), so it can roll back like any
//! alarm: `High`/`Low` in a watched direction is ALARM, `NoData` is INSUFFICIENT_DATA.
//! [`score`] combines several metrics as Kayenta does: the share of passing metrics against
//! marginal and pass thresholds, failing outright on a critical metric's regression or when
//! half the metrics have no data.
//!
//! A pipeline declares the judge on one metric as a `judge` alarm
//! ([`gantry_model::pipeline::JudgeAlarm`]): [`JudgeSpec`] checks it and [`evaluate`] judges
//! the values of the last `window` at a time, like a metric alarm, so the verdict can be a
//! rollback alarm or a composite's child.

use std::fmt;

use gantry_model::pipeline::{JudgeAlarm, JudgeDirection};

use crate::metric::{Decision, MAX_WINDOW_SECONDS_SHORT_PERIODS};
use crate::series::{Labels, Store, TimestampMs, narrowed};
use crate::{AlarmState, FieldProblem};

/// Values used per side. Kayenta asks for at least 50; pairwise differences grow with the
/// product of the sides, so beyond this the newest values are used (4 million differences,
/// 32 MB, well under a second).
pub const MAX_POINTS_PER_SIDE: usize = 2_000;

/// Fewest values per side a judge alarm may ask for: below three, the confidence interval of
/// the Mann–Whitney shift is the whole range of pairwise differences, whatever the confidence.
pub const MIN_POINTS_FLOOR: u32 = 3;
/// Longest window a judge alarm may read: one day, which the store's default retention (26
/// hours) covers.
pub const MAX_WINDOW_SECONDS: u64 = MAX_WINDOW_SECONDS_SHORT_PERIODS;

/// Which way a metric may regress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Only higher is bad (latency, faults).
    Increase,
    /// Only lower is bad (request count, success rate).
    Decrease,
    Either,
}

/// The judge's settings for one metric; the defaults are Kayenta's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct JudgeConfig {
    /// Confidence level of the interval, e.g. 0.98.
    pub confidence: f64,
    /// Half-width of the tolerance band, as a fraction of |estimate|.
    pub tolerance: f64,
    /// Fewest values per side to judge at all.
    pub min_points: usize,
    pub direction: Direction,
    /// `High` needs mean(canary) / mean(baseline) above this.
    pub allowed_increase: f64,
    /// `Low` needs mean(canary) / mean(baseline) below 1 / this.
    pub allowed_decrease: f64,
}

impl Default for JudgeConfig {
    fn default() -> Self {
        JudgeConfig {
            confidence: 0.98,
            tolerance: 0.25,
            min_points: 50,
            direction: Direction::Either,
            allowed_increase: 1.0,
            allowed_decrease: 1.0,
        }
    }
}

/// A metric's class, as Kayenta names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Classification {
    Pass,
    High,
    Low,
    NoData,
}

/// The judge's verdict on one metric, with the numbers behind it.
#[derive(Clone, Debug, PartialEq)]
pub struct Judgement {
    pub classification: Classification,
    pub canary_points: usize,
    pub baseline_points: usize,
    /// Hodges–Lehmann estimate of canary − baseline.
    pub estimate: f64,
    pub interval: (f64, f64),
    pub mean_ratio: f64,
    /// Whether the classification is in a direction that counts against the canary.
    pub regression: bool,
    pub reason: String,
}

impl Judgement {
    /// ALARM for a regression, INSUFFICIENT_DATA without enough data, else OK.
    pub fn state(&self) -> AlarmState {
        match self.classification {
            Classification::NoData => AlarmState::InsufficientData,
            _ if self.regression => AlarmState::Alarm,
            _ => AlarmState::Ok,
        }
    }
}

impl fmt::Display for Classification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Classification::Pass => "Pass",
            Classification::High => "High",
            Classification::Low => "Low",
            Classification::NoData => "NoData",
        })
    }
}

/// Judges one metric's canary values against its baseline values.
pub fn judge(canary: &[f64], baseline: &[f64], config: &JudgeConfig) -> Judgement {
    let clean = |values: &[f64]| -> Vec<f64> {
        let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        let skip = finite.len().saturating_sub(MAX_POINTS_PER_SIDE);
        finite[skip..].to_vec()
    };
    let canary = clean(canary);
    let baseline = clean(baseline);
    let (n, m) = (canary.len(), baseline.len());
    let mut judgement = Judgement {
        classification: Classification::NoData,
        canary_points: n,
        baseline_points: m,
        estimate: f64::NAN,
        interval: (f64::NAN, f64::NAN),
        mean_ratio: f64::NAN,
        regression: false,
        reason: String::new(),
    };
    if n < config.min_points || m < config.min_points {
        judgement.reason = format!(
            "not enough data: {n} canary and {m} baseline values, {} needed on each side",
            config.min_points
        );
        return judgement;
    }
    let mut differences: Vec<f64> =
        canary.iter().flat_map(|c| baseline.iter().map(move |b| c - b)).collect();
    differences.sort_unstable_by(f64::total_cmp);
    let total = differences.len();
    let estimate = median_of_sorted(&differences);
    let z = normal_quantile(1.0 - (1.0 - config.confidence) / 2.0);
    let (nf, mf) = (n as f64, m as f64);
    let spread = (nf * mf * (nf + mf + 1.0) / 12.0).sqrt();
    let rank = ((nf * mf / 2.0 - z * spread).floor() as usize).clamp(1, total);
    let interval = (differences[rank - 1], differences[total - rank]);
    let mean = |values: &[f64]| values.iter().sum::<f64>() / values.len() as f64;
    let mean_ratio = mean(&canary) / mean(&baseline);

    let band = config.tolerance * estimate.abs();
    let classification = if interval.0 > band && mean_ratio > config.allowed_increase {
        Classification::High
    } else if interval.1 < -band && mean_ratio < 1.0 / config.allowed_decrease {
        Classification::Low
    } else {
        Classification::Pass
    };
    let regression = matches!(
        (classification, config.direction),
        (Classification::High, Direction::Increase | Direction::Either)
            | (Classification::Low, Direction::Decrease | Direction::Either)
    );
    judgement.classification = classification;
    judgement.estimate = estimate;
    judgement.interval = interval;
    judgement.mean_ratio = mean_ratio;
    judgement.regression = regression;
    judgement.reason = format!(
        "{classification}: canary − baseline ≈ {estimate:.4} ({:.0}% interval {:.4} to {:.4}), \
         mean ratio {mean_ratio:.3}, {n} canary and {m} baseline values{}",
        config.confidence * 100.0,
        interval.0,
        interval.1,
        if classification != Classification::Pass && !regression {
            "; not a regression in the watched direction"
        } else {
            ""
        }
    );
    judgement
}

/// The stored values of `metric` with `since < time <= now` in the series matching `matchers`,
/// oldest first: a gauge's samples, or a counter's increments.
pub fn values(
    store: &Store,
    metric: &str,
    matchers: &Labels,
    since: TimestampMs,
    now: TimestampMs,
) -> Vec<f64> {
    let mut timed: Vec<(TimestampMs, f64)> = store
        .select(metric, matchers)
        .flat_map(|series| series.samples_between(since + 1, now + 1))
        .collect();
    timed.sort_by_key(|(time, _)| *time);
    timed.into_iter().map(|(_, value)| value).collect()
}

/// Judges `metric` on the one box (`canary` matchers) against the boxes still on the old
/// artifact (`baseline` matchers) since `since`.
pub fn judge_scopes(
    store: &Store,
    metric: &str,
    canary: &Labels,
    baseline: &Labels,
    since: TimestampMs,
    now: TimestampMs,
    config: &JudgeConfig,
) -> Judgement {
    judge(
        &values(store, metric, canary, since, now),
        &values(store, metric, baseline, since, now),
        config,
    )
}

/// A `judge` alarm definition, checked and ready to evaluate.
#[derive(Clone, Debug, PartialEq)]
pub struct JudgeSpec {
    pub metric: String,
    pub canary: Labels,
    pub baseline: Labels,
    pub window_ms: i64,
    pub config: JudgeConfig,
}

impl JudgeSpec {
    /// Checks a definition; every field out of range is reported, each with what to change.
    pub fn from_definition(definition: &JudgeAlarm) -> Result<JudgeSpec, Vec<FieldProblem>> {
        let mut problems = Vec::new();
        let mut refuse = |field, message: String| problems.push(FieldProblem::new(field, message));
        if definition.metric.is_empty() {
            refuse("metric", "`metric` is empty: name the series to judge".to_string());
        }
        if definition.canary.is_empty() {
            refuse(
                "canary",
                "the canary selects every series: give its labels, e.g. `{role: one-box}`"
                    .to_string(),
            );
        }
        if definition.baseline.is_empty() {
            refuse(
                "baseline",
                "the baseline selects every series: give its labels, e.g. `{role: fleet}`"
                    .to_string(),
            );
        } else if definition.baseline == definition.canary {
            refuse(
                "baseline",
                "the baseline selects the same series as the canary: the judge would compare \
                 the canary with itself"
                    .to_string(),
            );
        }
        let window = definition.window.as_seconds();
        if window == 0 || window > MAX_WINDOW_SECONDS {
            refuse(
                "window",
                format!(
                    "`window` is {window}s; it must be between 1s and {MAX_WINDOW_SECONDS}s \
                     (one day)"
                ),
            );
        }
        let confidence = definition.confidence;
        if !(confidence > 0.0 && confidence < 1.0) {
            refuse(
                "confidence",
                format!("`confidence` is {confidence}; it must be between 0 and 1, e.g. 0.98"),
            );
        }
        let tolerance = definition.tolerance;
        if !(tolerance.is_finite() && tolerance >= 0.0) {
            refuse(
                "tolerance",
                format!("`tolerance` is {tolerance}; it must be a number of at least 0, e.g. 0.25"),
            );
        }
        let min_points = definition.min_points;
        if !(MIN_POINTS_FLOOR..=MAX_POINTS_PER_SIDE as u32).contains(&min_points) {
            refuse(
                "min_points",
                format!(
                    "`min_points` is {min_points}; it must be between {MIN_POINTS_FLOOR} and \
                     {MAX_POINTS_PER_SIDE} (Kayenta asks for 50)"
                ),
            );
        }
        for (field, value) in [
            ("allowed_increase", definition.allowed_increase),
            ("allowed_decrease", definition.allowed_decrease),
        ] {
            if !(value.is_finite() && value >= 1.0) {
                refuse(
                    field,
                    format!(
                        "`{field}` is {value}; it must be a ratio of at least 1 (1: any change)"
                    ),
                );
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(JudgeSpec {
            metric: definition.metric.clone(),
            canary: definition.canary.clone(),
            baseline: definition.baseline.clone(),
            window_ms: window as i64 * 1000,
            config: JudgeConfig {
                confidence,
                tolerance,
                min_points: min_points as usize,
                direction: match definition.direction {
                    JudgeDirection::Increase => Direction::Increase,
                    JudgeDirection::Decrease => Direction::Decrease,
                    JudgeDirection::Either => Direction::Either,
                },
                allowed_increase: definition.allowed_increase,
                allowed_decrease: definition.allowed_decrease,
            },
        })
    }
}

/// Evaluates a judge alarm at `now` in `scope`: the metric's values in the last `window` from
/// the scope's series narrowed by the canary's labels, against those narrowed by the
/// baseline's. Too few values on either side is INSUFFICIENT_DATA, which no gate passes.
pub fn evaluate(spec: &JudgeSpec, store: &Store, scope: &Labels, now: TimestampMs) -> Decision {
    let since = now - spec.window_ms;
    let judgement = judge_scopes(
        store,
        &spec.metric,
        &narrowed(scope, &spec.canary),
        &narrowed(scope, &spec.baseline),
        since,
        now,
        &spec.config,
    );
    let state = judgement.state();
    let data_gap = (state == AlarmState::InsufficientData).then(|| judgement.reason.clone());
    Decision { state, reason: judgement.reason, data_gap }
}

/// How a judged metric counts in the overall score.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoredMetric {
    pub metric: String,
    pub judgement: Judgement,
    /// A regression here fails the whole canary, whatever the score.
    pub critical: bool,
}

/// Kayenta's score thresholds: below `marginal` fails, at or above `pass` passes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScoreThresholds {
    pub marginal: f64,
    pub pass: f64,
}

impl Default for ScoreThresholds {
    /// Kayenta's documented starting points: marginal 75, pass 95.
    fn default() -> Self {
        ScoreThresholds { marginal: 75.0, pass: 95.0 }
    }
}

/// The overall verdict over several metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Marginal,
    Fail,
}

/// A canary's score and verdict, with the reason.
#[derive(Clone, Debug, PartialEq)]
pub struct Score {
    /// 0 to 100: the share of metrics that passed.
    pub score: f64,
    pub verdict: Verdict,
    pub reason: String,
}

impl Score {
    /// ALARM unless the canary passed: a marginal canary does not promote either.
    pub fn state(&self) -> AlarmState {
        match self.verdict {
            Verdict::Pass => AlarmState::Ok,
            Verdict::Marginal | Verdict::Fail => AlarmState::Alarm,
        }
    }
}

/// Scores judged metrics as Kayenta does (one group): passing metrics over all judged ones,
/// where a metric without data counts as failing (Gantry fails closed, like Kayenta's
/// `mustHaveData`). A critical metric's regression, or no data for half the metrics or more,
/// fails outright.
pub fn score(metrics: &[ScoredMetric], thresholds: &ScoreThresholds) -> Score {
    let fail = |reason: String| Score { score: 0.0, verdict: Verdict::Fail, reason };
    if metrics.is_empty() {
        return fail("no metrics were judged".to_string());
    }
    if let Some(critical) = metrics.iter().find(|m| m.critical && m.judgement.regression) {
        return fail(format!(
            "critical metric `{}` regressed: {}",
            critical.metric, critical.judgement.reason
        ));
    }
    let no_data: Vec<&str> = metrics
        .iter()
        .filter(|m| m.judgement.classification == Classification::NoData)
        .map(|m| m.metric.as_str())
        .collect();
    if no_data.len() * 2 >= metrics.len() {
        return fail(format!(
            "{} of {} metrics have no data ({}): too little to judge",
            no_data.len(),
            metrics.len(),
            no_data.join(", ")
        ));
    }
    let failing: Vec<&str> = metrics
        .iter()
        .filter(|m| m.judgement.regression || m.judgement.classification == Classification::NoData)
        .map(|m| m.metric.as_str())
        .collect();
    let score = 100.0 * (metrics.len() - failing.len()) as f64 / metrics.len() as f64;
    let verdict = if score >= thresholds.pass {
        Verdict::Pass
    } else if score >= thresholds.marginal {
        Verdict::Marginal
    } else {
        Verdict::Fail
    };
    let reason = if failing.is_empty() {
        format!("score {score:.0}: all {} metrics passed", metrics.len())
    } else {
        format!("score {score:.0}: failing {}", failing.join(", "))
    };
    Score { score, verdict, reason }
}

fn median_of_sorted(values: &[f64]) -> f64 {
    let middle = values.len() / 2;
    if values.len() % 2 == 1 { values[middle] } else { (values[middle - 1] + values[middle]) / 2.0 }
}

/// The standard normal quantile for probability `p` in (0, 1), by Acklam's rational
/// approximation (relative error below 1.2e-9).
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.38357751867269e2,
        -3.066479806614716e1,
        2.506628277459239e0,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e1,
        1.615858368580409e2,
        -1.556989798598866e2,
        6.680131188771972e1,
        -1.328068155288572e1,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838e0,
        -2.549732539343734e0,
        4.374664141464968e0,
        2.938163982698783e0,
    ];
    const D: [f64; 4] =
        [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996e0, 3.754408661907416e0];
    const LOW: f64 = 0.02425;
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < LOW {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - LOW {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A seeded generator (SplitMix64) for reproducible synthetic latencies.
    pub(crate) struct Seeded(u64);

    impl Seeded {
        pub(crate) fn new(seed: u64) -> Seeded {
            Seeded(seed)
        }
        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn uniform(&mut self) -> f64 {
            ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        }
        /// A standard normal draw (Box–Muller).
        pub(crate) fn normal(&mut self) -> f64 {
            (-2.0 * self.uniform().ln()).sqrt() * (std::f64::consts::TAU * self.uniform()).cos()
        }
        /// A log-normal latency in seconds with median `median`: long-tailed, like real ones.
        pub(crate) fn latency(&mut self, median: f64) -> f64 {
            median * (0.4 * self.normal()).exp()
        }
    }

    /// Judges `canary` against `baseline` and compares the classification, state and reason.
    #[track_caller]
    fn check(canary: &[f64], baseline: &[f64], config: JudgeConfig, expected: &str) {
        let judgement = judge(canary, baseline, &config);
        let actual = format!("{} {}", judgement.state(), judgement.reason);
        assert_eq!(actual, expected);
    }

    #[test]
    fn normal_quantiles() {
        for (p, z) in
            [(0.5, 0.0), (0.99, 2.326_347_874), (0.975, 1.959_963_985), (0.001, -3.090_232_306)]
        {
            assert!((normal_quantile(p) - z).abs() < 1e-8, "p={p}");
        }
    }

    #[test]
    fn classifications() {
        let baseline: Vec<f64> = (0..60).map(|i| 100.0 + f64::from(i % 10)).collect();
        let higher: Vec<f64> = baseline.iter().map(|v| v * 1.5).collect();
        let lower: Vec<f64> = baseline.iter().map(|v| v * 0.5).collect();
        let latency = JudgeConfig { direction: Direction::Increase, ..JudgeConfig::default() };
        // A constant shift moves the estimate and the interval by exactly that shift.
        let shifted: Vec<f64> = baseline.iter().map(|v| v + 10.0).collect();
        check(
            &shifted,
            &baseline,
            latency,
            "ALARM High: canary − baseline ≈ 10.0000 (98% interval 9.0000 to 11.0000), mean ratio 1.096, 60 canary and 60 baseline values",
        );
        check(
            &baseline,
            &baseline,
            latency,
            "OK Pass: canary − baseline ≈ 0.0000 (98% interval -1.0000 to 1.0000), mean ratio 1.000, 60 canary and 60 baseline values",
        );
        check(
            &higher,
            &baseline,
            latency,
            "ALARM High: canary − baseline ≈ 52.2500 (98% interval 50.5000 to 54.0000), mean ratio 1.500, 60 canary and 60 baseline values",
        );
        check(
            &lower,
            &baseline,
            latency,
            "OK Low: canary − baseline ≈ -52.2500 (98% interval -53.5000 to -51.0000), mean ratio 0.500, 60 canary and 60 baseline values; not a regression in the watched direction",
        );
        let requests = JudgeConfig { direction: Direction::Decrease, ..JudgeConfig::default() };
        check(
            &lower,
            &baseline,
            requests,
            "ALARM Low: canary − baseline ≈ -52.2500 (98% interval -53.5000 to -51.0000), mean ratio 0.500, 60 canary and 60 baseline values",
        );
        // The effect must also exceed the allowed increase.
        let lenient = JudgeConfig { allowed_increase: 1.6, ..latency };
        check(
            &higher,
            &baseline,
            lenient,
            "OK Pass: canary − baseline ≈ 52.2500 (98% interval 50.5000 to 54.0000), mean ratio 1.500, 60 canary and 60 baseline values",
        );
    }

    #[test]
    fn scores_follow_kayenta() {
        let baseline: Vec<f64> = (0..60).map(|i| 100.0 + f64::from(i % 10)).collect();
        let slower: Vec<f64> = baseline.iter().map(|v| v * 1.5).collect();
        let latency = JudgeConfig { direction: Direction::Increase, ..JudgeConfig::default() };
        let metric = |name: &str, canary: &[f64], critical| ScoredMetric {
            metric: name.to_string(),
            judgement: judge(canary, &baseline, &latency),
            critical,
        };
        let check_score = |metrics: Vec<ScoredMetric>, expected: &str| {
            let score = score(&metrics, &ScoreThresholds::default());
            assert_eq!(format!("{:?} {} {}", score.verdict, score.state(), score.reason), expected);
        };
        let healthy: Vec<ScoredMetric> =
            (0..19).map(|i| metric(&format!("m{i}"), &baseline, false)).collect();
        check_score(healthy.clone(), "Pass OK score 100: all 19 metrics passed");
        let mut one_bad = healthy.clone();
        one_bad.push(metric("latency", &slower, false));
        check_score(one_bad, "Pass OK score 95: failing latency");
        let mut two_bad = healthy[..18].to_vec();
        two_bad.extend([metric("latency", &slower, false), metric("cpu", &[], false)]);
        check_score(two_bad, "Marginal ALARM score 90: failing latency, cpu");
        let critical = vec![metric("faults", &slower, true), metric("cpu", &baseline, false)];
        assert!(
            score(&critical, &ScoreThresholds::default())
                .reason
                .starts_with("critical metric `faults` regressed: High")
        );
        check_score(
            vec![metric("a", &[], false), metric("b", &baseline, false)],
            "Fail ALARM 1 of 2 metrics have no data (a): too little to judge",
        );
        check_score(vec![], "Fail ALARM no metrics were judged");
    }

    #[test]
    fn too_little_or_nan_data_fails_closed() {
        let mut canary = vec![f64::NAN; 100];
        canary.extend([1.0; 10]);
        check(
            &canary,
            &[1.0; 80],
            JudgeConfig::default(),
            "INSUFFICIENT_DATA not enough data: 10 canary and 80 baseline values, 50 needed on each side",
        );
        check(
            &[],
            &[],
            JudgeConfig::default(),
            "INSUFFICIENT_DATA not enough data: 0 canary and 0 baseline values, 50 needed on each side",
        );
    }

    /// Runs the judge over `runs` seeded pairs of 60-value samples of log-normal latency, the
    /// canary's median scaled by `slowdown`, and returns the share flagged as regressions.
    fn flagged_share(runs: u64, slowdown: f64) -> f64 {
        let config = JudgeConfig {
            direction: Direction::Increase,
            allowed_increase: 1.05,
            ..JudgeConfig::default()
        };
        let flagged = (0..runs)
            .filter(|seed| {
                let mut random = Seeded::new(*seed);
                let baseline: Vec<f64> = (0..60).map(|_| random.latency(0.100)).collect();
                let canary: Vec<f64> = (0..60).map(|_| random.latency(0.100 * slowdown)).collect();
                judge(&canary, &baseline, &config).state() == AlarmState::Alarm
            })
            .count();
        flagged as f64 / runs as f64
    }

    #[test]
    fn healthy_one_box_is_rarely_flagged_and_a_regression_is_caught() {
        // A healthy canary: the 98% interval alone gives at most 1% one-sided; the tolerance
        // band and allowed increase make it rarer still.
        let false_positives = flagged_share(1_000, 1.0);
        println!("false-positive rate over 1000 seeded healthy runs: {false_positives}");
        assert!(false_positives <= 0.01, "false-positive rate {false_positives}");
        let caught = flagged_share(200, 1.5);
        println!("detection rate of a 50% latency regression over 200 seeded runs: {caught}");
        assert!(caught >= 0.95, "detection rate {caught}");
    }
}
