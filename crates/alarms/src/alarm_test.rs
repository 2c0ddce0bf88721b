//! Alarm unit tests, as `promtool test rules` gives Prometheus users: a file of alarm
//! definitions, input series (values at times, gaps allowed) and the expected state of each
//! alarm at given times. `gantry alarm test FILE` runs it and reports every mismatch, so teams
//! test their alarms before they trust them with rollbacks.
//!
//! The format is documented with an example in `examples/alarm-tests/README.md`. In short:
//!
//! ```yaml
//! evaluation_interval: 1m          # how often alarms are evaluated (default 1m)
//! scope: {region: eu-west-1}       # labels added to every metric alarm's selector
//! alarms:                          # exactly a pipeline's `alarms.definitions`
//!   high_latency:
//!     metric: {metric: latency, statistic: p99, period: 1m, evaluation_periods: 3,
//!              datapoints_to_alarm: 2, comparison: GreaterThanThreshold, threshold: 0.5}
//!   rollback:
//!     composite: ALARM("high_latency")
//! tests:
//!   - name: a slow minute is not enough
//!     series:
//!       - series: 'latency{region="eu-west-1"}'
//!         values: 0.1x3 0.9 0.1x5        # promtool's expanding notation
//!     expect:
//!       - at: 5m
//!         states: {high_latency: OK, rollback: OK}
//! ```
//!
//! Values use promtool's notation: `1.5`, `_` (no sample), `_xN` (N missing), `AxN` (A, N+1
//! times), `A+BxN` / `A-BxN` (A, then N more steps of B), `NaN`, `Inf`, `-Inf`. Value *i* of a
//! series is at `start + i × interval` (`start` 0 and `interval` the evaluation interval by
//! default). Each test starts from empty alarms and an empty store; alarms are evaluated at
//! every multiple of the evaluation interval up to the last expectation, after the samples up
//! to that time are stored, so `ignore` and history behave as they would live.

use std::collections::BTreeMap;

use gantry_model::Duration;
use gantry_model::pipeline::AlarmDefinition;
use serde::Deserialize;

use crate::alarm_set::{AlarmSet, Gate};
use crate::exposition::{self, ExpositionLimits};
use crate::series::{Labels, SeriesKind, Store, StoreLimits, TimestampMs};
use crate::{AlarmState, Error};

/// Values one series line may expand to. A typo like `0x100000000` must not exhaust memory.
pub const MAX_VALUES_PER_SERIES: usize = 100_000;
/// Evaluations one test may run (last expectation ÷ evaluation interval): a week of minutes.
pub const MAX_EVALUATIONS: i64 = 7 * 24 * 60;

/// A test file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlarmTestFile {
    #[serde(default = "one_minute")]
    pub evaluation_interval: Duration,
    #[serde(default)]
    pub scope: Labels,
    pub alarms: BTreeMap<String, AlarmDefinition>,
    pub tests: Vec<AlarmTestCase>,
}

fn one_minute() -> Duration {
    Duration::from_minutes(1)
}

/// One test: input series and expectations.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlarmTestCase {
    pub name: String,
    #[serde(default)]
    pub series: Vec<InputSeries>,
    pub expect: Vec<Expectation>,
}

/// One input series.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSeries {
    /// `name{label="value",...}`, as Prometheus prints a series.
    pub series: String,
    #[serde(default)]
    pub kind: InputKind,
    /// Time of the first value.
    #[serde(default)]
    pub start: Duration,
    /// Spacing of values; defaults to the evaluation interval.
    #[serde(default)]
    pub interval: Option<Duration>,
    pub values: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputKind {
    #[default]
    Gauge,
    Counter,
}

/// Expected states at one time.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    pub at: Duration,
    /// Alarm name to `OK`, `ALARM` or `INSUFFICIENT_DATA`.
    #[serde(default)]
    pub states: BTreeMap<String, String>,
    /// Alarm name to `pass` or `fail`: whether a gate (bake end, promotion) may pass on the
    /// alarm at this time, with data no older than this evaluation.
    #[serde(default)]
    pub gates: BTreeMap<String, String>,
}

/// One expectation that did not hold.
#[derive(Clone, Debug, PartialEq)]
pub struct Mismatch {
    pub test: String,
    pub at: Duration,
    pub alarm: String,
    /// `state` or `gate`.
    pub what: &'static str,
    /// `OK`, `ALARM`, `INSUFFICIENT_DATA`, or for a gate `pass` / `fail`.
    pub expected: String,
    pub actual: String,
    pub reason: String,
}

/// What a file's tests found.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct TestReport {
    pub tests: usize,
    /// Expectations checked (one per alarm per time).
    pub checks: usize,
    pub mismatches: Vec<Mismatch>,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "test `{}` at {}: {} `{}` is {}, expected {} ({})",
            self.test,
            self.at,
            if self.what == "gate" { "the gate on" } else { "alarm" },
            self.alarm,
            self.actual,
            self.expected,
            self.reason
        )
    }
}

/// Parses and runs a test file's text; `origin` names it in errors.
pub fn run(text: &str, origin: &str) -> Result<TestReport, Error> {
    let fail = |message: String| Error::AlarmTest { file: origin.to_string(), message };
    let file: AlarmTestFile = serde_saphyr::from_str(text).map_err(|error| {
        let text = error.to_string();
        fail(text.strip_prefix("error: ").unwrap_or(&text).to_string())
    })?;
    let interval_ms = file.evaluation_interval.as_seconds() as i64 * 1000;
    if interval_ms == 0 {
        return Err(fail("`evaluation_interval` must be at least 1s".to_string()));
    }
    // Check the definitions once, before any test, so a bad file is refused as a whole.
    AlarmSet::new(&file.alarms, file.scope.clone())
        .map_err(|error| fail(format!("invalid alarms:\n{error}")))?;
    let mut report = TestReport::default();
    for test in &file.tests {
        run_test(&file, test, interval_ms, &mut report)
            .map_err(|message| fail(format!("test `{}`: {message}", test.name)))?;
    }
    Ok(report)
}

/// Runs test files and writes a line per file (and per mismatch) to `out`, for `gantry alarm
/// test FILE...`. Returns whether every file ran and every expectation held.
pub fn run_files(
    paths: &[std::path::PathBuf],
    out: &mut dyn std::io::Write,
) -> std::io::Result<bool> {
    let mut all_passed = true;
    for path in paths {
        let origin = path.display().to_string();
        let result = std::fs::read_to_string(path)
            .map_err(|error| Error::AlarmTest { file: origin.clone(), message: error.to_string() })
            .and_then(|text| run(&text, &origin));
        match result {
            Ok(report) if report.mismatches.is_empty() => {
                writeln!(out, "ok    {origin}: {} tests, {} checks", report.tests, report.checks)?;
            }
            Ok(report) => {
                all_passed = false;
                writeln!(
                    out,
                    "FAIL  {origin}: {} of {} checks failed",
                    report.mismatches.len(),
                    report.checks
                )?;
                for mismatch in &report.mismatches {
                    writeln!(out, "      {mismatch}")?;
                }
            }
            Err(error) => {
                all_passed = false;
                writeln!(out, "ERROR {error}")?;
            }
        }
    }
    Ok(all_passed)
}

fn run_test(
    file: &AlarmTestFile,
    test: &AlarmTestCase,
    interval_ms: i64,
    report: &mut TestReport,
) -> Result<(), String> {
    let mut alarms = AlarmSet::new(&file.alarms, file.scope.clone()).map_err(|e| e.to_string())?;
    let mut samples: Vec<(TimestampMs, String, Labels, SeriesKind, f64)> = Vec::new();
    for input in &test.series {
        let parsed =
            exposition::parse(&format!("{} 0", input.series), &ExpositionLimits::default())
                .map_err(|error| format!("series `{}`: {}", input.series, error.message))?;
        let [sample] = parsed.as_slice() else {
            return Err(format!("series `{}`: expected one series", input.series));
        };
        let kind = match input.kind {
            InputKind::Gauge => SeriesKind::Gauge,
            InputKind::Counter => SeriesKind::Counter,
        };
        let step = input.interval.map_or(interval_ms, |d| d.as_seconds() as i64 * 1000);
        if step == 0 {
            return Err(format!("series `{}`: `interval` must be at least 1s", input.series));
        }
        let start = input.start.as_seconds() as i64 * 1000;
        let values = expand_values(&input.values)
            .map_err(|message| format!("series `{}`: {message}", input.series))?;
        for (index, value) in values.into_iter().enumerate() {
            if let Some(value) = value {
                let time = start + index as i64 * step;
                samples.push((time, sample.name.clone(), sample.labels.clone(), kind, value));
            }
        }
    }
    samples.sort_by_key(|sample| sample.0);
    let mut expectations: Vec<&Expectation> = test.expect.iter().collect();
    expectations.sort_by_key(|expectation| expectation.at);
    let last = expectations.last().map_or(0, |e| e.at.as_seconds() as i64 * 1000);
    if last / interval_ms > MAX_EVALUATIONS {
        return Err(format!(
            "expectations reach {last} ms, more than {MAX_EVALUATIONS} evaluations"
        ));
    }
    for expectation in &expectations {
        let at = expectation.at.as_seconds() as i64 * 1000;
        if at % interval_ms != 0 {
            return Err(format!(
                "expectation at {} is not a multiple of the evaluation interval {}",
                expectation.at, file.evaluation_interval
            ));
        }
        for alarm in expectation.states.keys().chain(expectation.gates.keys()) {
            if alarms.status(alarm).is_none() {
                return Err(format!(
                    "expectation at {} names alarm `{alarm}`, which is not defined",
                    expectation.at
                ));
            }
        }
    }
    let mut store = Store::new(StoreLimits::default());
    let mut next_sample = 0;
    let mut pending = expectations.into_iter().peekable();
    let mut time = 0;
    while time <= last {
        while let Some((at, name, labels, kind, value)) = samples.get(next_sample)
            && *at <= time
        {
            store.ingest(name, labels, *kind, *at, *value).map_err(|e| e.to_string())?;
            next_sample += 1;
        }
        alarms.evaluate(&store, time);
        while let Some(expectation) = pending.next_if(|e| e.at.as_seconds() as i64 * 1000 == time) {
            for (alarm, expected) in &expectation.states {
                let expected = parse_state(expected).map_err(|message| {
                    format!("expectation at {} for `{alarm}`: {message}", expectation.at)
                })?;
                let status = alarms.status(alarm).expect("checked above");
                report.checks += 1;
                if status.state != expected {
                    report.mismatches.push(Mismatch {
                        test: test.name.clone(),
                        at: expectation.at,
                        alarm: alarm.clone(),
                        what: "state",
                        expected: expected.to_string(),
                        actual: status.state.to_string(),
                        reason: status.reason.clone(),
                    });
                }
            }
            for (alarm, expected) in &expectation.gates {
                if expected != "pass" && expected != "fail" {
                    return Err(format!(
                        "expectation at {} for the gate on `{alarm}`: unknown outcome \
                         `{expected}`: expected pass or fail",
                        expectation.at
                    ));
                }
                report.checks += 1;
                let (actual, reason) = match alarms.gate(alarm, time) {
                    Gate::Pass => ("pass", "the alarm is OK on fresh, usable data".to_string()),
                    Gate::Fail(reason) => ("fail", reason),
                };
                if actual != expected {
                    report.mismatches.push(Mismatch {
                        test: test.name.clone(),
                        at: expectation.at,
                        alarm: alarm.clone(),
                        what: "gate",
                        expected: expected.clone(),
                        actual: actual.to_string(),
                        reason,
                    });
                }
            }
        }
        time += interval_ms;
    }
    report.tests += 1;
    Ok(())
}

fn parse_state(text: &str) -> Result<AlarmState, String> {
    [AlarmState::Ok, AlarmState::Alarm, AlarmState::InsufficientData]
        .into_iter()
        .find(|state| state.name() == text)
        .ok_or_else(|| format!("unknown state `{text}`: expected OK, ALARM or INSUFFICIENT_DATA"))
}

/// Expands promtool's value notation; `None` is a gap.
pub fn expand_values(text: &str) -> Result<Vec<Option<f64>>, String> {
    let mut values = Vec::new();
    for token in text.split_whitespace() {
        let bad = |why: &str| format!("bad value `{token}`: {why}");
        let (head, times) = match token.rsplit_once('x') {
            Some((head, count))
                if !head.is_empty() && count.chars().all(|c| c.is_ascii_digit()) =>
            {
                let count: usize =
                    count.parse().map_err(|_| bad("the repeat count is not a number"))?;
                (head, Some(count))
            }
            _ => (token, None),
        };
        let total = values.len() + times.map_or(1, |n| n.saturating_add(1));
        if total > MAX_VALUES_PER_SERIES {
            return Err(format!("more than {MAX_VALUES_PER_SERIES} values in one series"));
        }
        if head == "_" {
            // `_xN` is N gaps; `_` alone is one.
            values.extend(std::iter::repeat_n(None, times.unwrap_or(1)));
            continue;
        }
        let number = |text: &str| -> Result<f64, String> {
            match text {
                "NaN" => Ok(f64::NAN),
                "Inf" | "+Inf" => Ok(f64::INFINITY),
                "-Inf" => Ok(f64::NEG_INFINITY),
                _ => {
                    text.parse::<f64>().map_err(|_| bad("expected a number, `_`, `AxN` or `A+BxN`"))
                }
            }
        };
        let Some(count) = times else {
            values.push(Some(number(head)?));
            continue;
        };
        // `A+B` or `A-B`: find the operator after the first character (A may be negative).
        let split = head
            .char_indices()
            .skip(1)
            .find(|(index, c)| (*c == '+' || *c == '-') && !head[..*index].ends_with(['e', 'E']));
        let (start, step) = match split {
            Some((index, _)) => (number(&head[..index])?, number(&head[index..])?),
            None => (number(head)?, 0.0),
        };
        values.extend((0..=count).map(|i| Some(start + step * i as f64)));
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(text: &str, expected: &str) {
        let actual = match expand_values(text) {
            Ok(values) => values
                .iter()
                .map(|value| value.map_or("_".to_string(), |v| v.to_string()))
                .collect::<Vec<_>>()
                .join(" "),
            Err(error) => format!("error: {error}"),
        };
        assert_eq!(actual, expected, "{text}");
    }

    #[test]
    fn promtool_value_notation_expands() {
        check("1 2.5 _ 3", "1 2.5 _ 3");
        check("0+10x3", "0 10 20 30");
        check("5-1x2 _x2 1x2", "5 4 3 _ _ 1 1 1");
        check("-1+1x2", "-1 0 1");
        check("1e-3+1e-3x1", "0.001 0.002");
        check("NaN Inf -Inf", "NaN inf -inf");
        check("", "");
        check("1+", "error: bad value `1+`: expected a number, `_`, `AxN` or `A+BxN`");
        check("abc", "error: bad value `abc`: expected a number, `_`, `AxN` or `A+BxN`");
        check("0x100000", "error: more than 100000 values in one series");
    }
}
