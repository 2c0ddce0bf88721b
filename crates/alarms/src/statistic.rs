//! CloudWatch's statistics over the samples of one period, and quantiles of Prometheus
//! histograms.
//!
//! Besides `Average`, `Sum`, `Minimum`, `Maximum`, `SampleCount` and `pNN`, the trimmed and
//! windowed statistics CloudWatch accepts ("CloudWatch statistics definitions"):
//!
//! | written | means |
//! | --- | --- |
//! | `tm90`, `TM(2%:98%)`, `TM(150:1000)` | trimmed mean: the mean of the values within the bounds |
//! | `wm98`, `WM(10%:90%)` | winsorized mean: values outside the bounds count as the bound's value |
//! | `tc90`, `TC(...)` | trimmed count: how many values are within the bounds |
//! | `ts90`, `TS(...)` | trimmed sum: the sum of the values within the bounds |
//! | `PR(:300)`, `PR(100:2000)` | percentile rank: the percentage of values within the bounds |
//! | `IQM` | interquartile mean, `TM(25%:75%)` |
//!
//! Bounds are both percentages or both values; either may be left out (`TM(:95%)`). The short
//! form `tmNN` is `TM(:NN%)`. A value is within bounds `(a:b)` when `a < value ≤ b`, as
//! CloudWatch documents ("exclusive of the lower bound, inclusive of the upper"). Percentage
//! bounds go by rank, as `pNN` does (nearest rank): `(a%:b%)` keeps the values ranked above
//! ⌊a·n/100⌋ and up to ⌈b·n/100⌉ of n sorted values. Percentile rank takes values only: a
//! percentage rank of percentages means nothing.

use std::fmt;
use std::str::FromStr;

/// How a period's samples become one data point.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Statistic {
    Average,
    Sum,
    Minimum,
    Maximum,
    SampleCount,
    /// `pNN`: the NN-th percentile, 0 to 100, e.g. `p99` or `p99.9`.
    Percentile(f64),
    /// `TM`, `WM`, `TC`, `TS` (and `IQM`) over the values within `bounds`.
    Trimmed {
        kind: Trim,
        bounds: Bounds,
    },
    /// `PR(a:b)`: the percentage of values `v` with `a < v ≤ b`.
    PercentileRank {
        lower: Option<f64>,
        upper: Option<f64>,
    },
}

/// What a trimmed statistic computes over the values within its bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trim {
    /// `TM`: their mean.
    Mean,
    /// `WM`: the mean of every value, those outside the bounds clamped to the bound's value.
    WinsorizedMean,
    /// `TC`: their count.
    Count,
    /// `TS`: their sum.
    Sum,
}

impl Trim {
    fn prefix(self) -> &'static str {
        match self {
            Trim::Mean => "TM",
            Trim::WinsorizedMean => "WM",
            Trim::Count => "TC",
            Trim::Sum => "TS",
        }
    }
}

/// The bounds of a trimmed statistic: percentages of the sorted values, or values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Bounds {
    Percent { lower: Option<f64>, upper: Option<f64> },
    Values { lower: Option<f64>, upper: Option<f64> },
}

/// `IQM`: the mean of the middle half of the values.
const INTERQUARTILE: Bounds = Bounds::Percent { lower: Some(25.0), upper: Some(75.0) };

/// What the statistics a metric alarm accepts look like, for messages.
pub const STATISTICS_HINT: &str = "expected `Average`, `Sum`, `Minimum`, `Maximum`, \
     `SampleCount`, a percentile such as `p99` or `p99.9`, a trimmed statistic such as `tm99`, \
     `TM(10%:90%)`, `wm98`, `tc90`, `ts90` or `TS(150:1000)`, a percentile rank such as \
     `PR(:300)`, or `IQM`";

/// `NN` of a short form (`tm99`): a percentage above 0 and at most 100, digits and a point only.
fn percent_number(text: &str) -> Option<f64> {
    if text.is_empty() || !text.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return None;
    }
    text.parse::<f64>().ok().filter(|p| *p > 0.0 && *p <= 100.0)
}

/// `(a:b)` with both bounds percentages or both values, either left out.
fn parse_bounds(inside: &str) -> Result<Bounds, String> {
    let (lower, upper) = inside.split_once(':').ok_or_else(|| {
        format!("bounds `({inside})` need a `:` between the lower and upper bound")
    })?;
    let bound = |text: &str| -> Result<Option<(f64, bool)>, String> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(None);
        }
        let (number, percent) = match text.strip_suffix('%') {
            Some(number) => (number, true),
            None => (text, false),
        };
        let valid = !number.is_empty()
            && number
                .chars()
                .enumerate()
                .all(|(i, c)| c.is_ascii_digit() || c == '.' || (i == 0 && c == '-' && !percent));
        match number.parse::<f64>() {
            Ok(value)
                if valid && value.is_finite() && (!percent || (0.0..=100.0).contains(&value)) =>
            {
                Ok(Some((value, percent)))
            }
            _ if percent => Err(format!("bound `{text}` is not a percentage from 0% to 100%")),
            _ => Err(format!("bound `{text}` is not a number")),
        }
    };
    let (lower, upper) = (bound(lower)?, bound(upper)?);
    let percent = match (lower, upper) {
        (None, None) => return Err("bounds `(:)` give neither a lower nor an upper bound".into()),
        (Some((_, a)), Some((_, b))) if a != b => {
            return Err(format!(
                "bounds `({inside})` mix a percentage and a value; write both as percentages or both as values"
            ));
        }
        (Some((_, percent)), _) | (_, Some((_, percent))) => percent,
    };
    let (lower, upper) = (lower.map(|(v, _)| v), upper.map(|(v, _)| v));
    if let (Some(a), Some(b)) = (lower, upper)
        && a >= b
    {
        return Err(format!("bounds `({inside})`: the lower bound must be below the upper"));
    }
    Ok(if percent { Bounds::Percent { lower, upper } } else { Bounds::Values { lower, upper } })
}

/// A trimmed statistic or percentile rank, long (`TM(…)`) or short (`tm99`) form.
fn parse_extended(text: &str) -> Option<Result<Statistic, String>> {
    if text == "IQM" {
        return Some(Ok(Statistic::Trimmed { kind: Trim::Mean, bounds: INTERQUARTILE }));
    }
    let prefix = text.get(..2)?.to_ascii_uppercase();
    let rest = &text[2..];
    let kind = match prefix.as_str() {
        "TM" => Some(Trim::Mean),
        "WM" => Some(Trim::WinsorizedMean),
        "TC" => Some(Trim::Count),
        "TS" => Some(Trim::Sum),
        "PR" => None,
        _ => return None,
    };
    if let Some(inside) = rest.strip_prefix('(').and_then(|rest| rest.strip_suffix(')')) {
        let bounds = match parse_bounds(inside) {
            Ok(bounds) => bounds,
            Err(message) => return Some(Err(format!("statistic `{text}`: {message}"))),
        };
        return Some(match (kind, bounds) {
            (Some(kind), bounds) => Ok(Statistic::Trimmed { kind, bounds }),
            (None, Bounds::Values { lower, upper }) => {
                Ok(Statistic::PercentileRank { lower, upper })
            }
            (None, Bounds::Percent { .. }) => Err(format!(
                "statistic `{text}`: a percentile rank takes values, not percentages, e.g. `PR(:300)`"
            )),
        });
    }
    // The short form `tm99` is `TM(:99%)`; percentile rank has none.
    let kind = kind?;
    let upper = percent_number(rest)?;
    Some(Ok(Statistic::Trimmed {
        kind,
        bounds: Bounds::Percent { lower: None, upper: Some(upper) },
    }))
}

impl FromStr for Statistic {
    type Err = String;

    fn from_str(text: &str) -> Result<Statistic, String> {
        if let Some(extended) = parse_extended(text) {
            return extended;
        }
        Ok(match text {
            "Average" => Statistic::Average,
            "Sum" => Statistic::Sum,
            "Minimum" => Statistic::Minimum,
            "Maximum" => Statistic::Maximum,
            "SampleCount" => Statistic::SampleCount,
            _ => {
                let percentile = text
                    .strip_prefix('p')
                    .and_then(|number| number.parse::<f64>().ok())
                    .filter(|p| (0.0..=100.0).contains(p) && !text.contains(['+', '-', 'e', 'E']));
                match percentile {
                    Some(p) => Statistic::Percentile(p),
                    None => return Err(format!("unknown statistic `{text}`: {STATISTICS_HINT}")),
                }
            }
        })
    }
}

impl fmt::Display for Statistic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Statistic::Average => f.write_str("Average"),
            Statistic::Sum => f.write_str("Sum"),
            Statistic::Minimum => f.write_str("Minimum"),
            Statistic::Maximum => f.write_str("Maximum"),
            Statistic::SampleCount => f.write_str("SampleCount"),
            Statistic::Percentile(p) => write!(f, "p{p}"),
            Statistic::Trimmed { kind: Trim::Mean, bounds: INTERQUARTILE } => f.write_str("IQM"),
            Statistic::Trimmed { kind, bounds } => {
                let (lower, upper, unit) = match bounds {
                    Bounds::Percent { lower, upper } => (lower, upper, "%"),
                    Bounds::Values { lower, upper } => (lower, upper, ""),
                };
                let bound =
                    |value: Option<f64>| value.map(|v| format!("{v}{unit}")).unwrap_or_default();
                write!(f, "{}({}:{})", kind.prefix(), bound(*lower), bound(*upper))
            }
            Statistic::PercentileRank { lower, upper } => {
                let bound = |value: &Option<f64>| value.map(|v| v.to_string()).unwrap_or_default();
                write!(f, "PR({}:{})", bound(lower), bound(upper))
            }
        }
    }
}

impl Statistic {
    /// The statistic of `values` (finite values only; the caller drops NaN), or `None` when
    /// there are none. Percentiles use the nearest-rank method: the smallest value with at least
    /// p% of the values at or below it. Reorders `values`.
    pub fn compute(self, values: &mut [f64]) -> Option<f64> {
        if values.is_empty() {
            return None;
        }
        let count = values.len() as f64;
        Some(match self {
            Statistic::Sum => values.iter().sum(),
            Statistic::Average => values.iter().sum::<f64>() / count,
            Statistic::Minimum => values.iter().copied().fold(f64::INFINITY, f64::min),
            Statistic::Maximum => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            Statistic::SampleCount => count,
            Statistic::Percentile(p) => {
                // The epsilon keeps `p99.9` of 1000 values at rank 999 despite 99.9's binary
                // rounding.
                let rank = ((p / 100.0) * count - 1e-9).ceil().max(1.0) as usize;
                let (_, value, _) = values.select_nth_unstable_by(rank - 1, f64::total_cmp);
                *value
            }
            Statistic::Trimmed { kind, bounds } => return trimmed(kind, bounds, values),
            Statistic::PercentileRank { lower, upper } => {
                let within = values
                    .iter()
                    .filter(|v| lower.is_none_or(|a| **v > a) && upper.is_none_or(|b| **v <= b))
                    .count();
                100.0 * within as f64 / count
            }
        })
    }
}

/// A trimmed statistic of `values` (not empty). With value bounds, a value is within when
/// `lower < value ≤ upper`; with percentage bounds, when its rank in sorted order is above
/// ⌊lower·n/100⌋ and at most ⌈upper·n/100⌉ (nearest rank, as for `pNN`). `None` when nothing is
/// within the bounds, except for a count, which is then 0.
fn trimmed(kind: Trim, bounds: Bounds, values: &mut [f64]) -> Option<f64> {
    values.sort_unstable_by(f64::total_cmp);
    let n = values.len();
    let (first, last) = match bounds {
        Bounds::Percent { lower, upper } => {
            // The epsilon keeps 99.9% of 1000 values at rank 999 despite binary rounding.
            let low = lower.map_or(0, |p| ((p / 100.0) * n as f64 + 1e-9).floor() as usize);
            let high =
                upper.map_or(n, |p| ((p / 100.0) * n as f64 - 1e-9).ceil().max(0.0) as usize);
            (low.min(n), high.min(n))
        }
        Bounds::Values { lower, upper } => (
            lower.map_or(0, |a| values.partition_point(|v| *v <= a)),
            upper.map_or(n, |b| values.partition_point(|v| *v <= b)),
        ),
    };
    let within = if first < last { &values[first..last] } else { &values[..0] };
    match kind {
        Trim::Count => Some(within.len() as f64),
        _ if within.is_empty() => None,
        Trim::Sum => Some(within.iter().sum()),
        Trim::Mean => Some(within.iter().sum::<f64>() / within.len() as f64),
        Trim::WinsorizedMean => {
            let (low, high) = (within[0], within[within.len() - 1]);
            Some(values.iter().map(|v| v.clamp(low, high)).sum::<f64>() / n as f64)
        }
    }
}

/// The `q`-quantile (0 to 1) of a histogram given as `(upper bound, cumulative count)` buckets,
/// computed exactly as Prometheus's `histogram_quantile` does (same steps, same floating-point
/// order, cross-checked against promtool): counts made monotonic, linear interpolation inside
/// the first bucket whose count reaches the rank, 0 as the lower bound of the first bucket, and
/// the highest finite bound when the rank falls in the `+Inf` bucket. `None` without a `+Inf`
/// bucket, with fewer than two buckets, without observations, or for `q` outside 0 to 1.
pub fn histogram_quantile(q: f64, buckets: &mut [(f64, f64)]) -> Option<f64> {
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    if buckets.len() < 2 || buckets.last()?.0 != f64::INFINITY || !(0.0..=1.0).contains(&q) {
        return None;
    }
    // Scrapes of different buckets may race; keep counts monotonic as Prometheus does.
    let mut running = 0.0_f64;
    for bucket in buckets.iter_mut() {
        running = running.max(bucket.1);
        bucket.1 = running;
    }
    let observations = buckets[buckets.len() - 1].1;
    if observations == 0.0 {
        return None;
    }
    let mut rank = q * observations;
    let finite = buckets.len() - 1;
    let index = buckets[..finite].partition_point(|(_, count)| *count < rank);
    if index == finite {
        return Some(buckets[finite - 1].0);
    }
    if index == 0 && buckets[0].0 <= 0.0 {
        return Some(buckets[0].0);
    }
    let (upper, mut count) = buckets[index];
    let mut lower = 0.0;
    if index > 0 {
        lower = buckets[index - 1].0;
        count -= buckets[index - 1].1;
        rank -= buckets[index - 1].1;
    }
    Some(lower + (upper - lower) * (rank / count))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(statistic: &str, values: &[f64], expected: &str) {
        let actual = match statistic.parse::<Statistic>() {
            Ok(statistic) => {
                let mut values = values.to_vec();
                format!("{:?}", statistic.compute(&mut values))
            }
            Err(error) => format!("error: {error}"),
        };
        assert_eq!(actual, expected, "{statistic} of {values:?}");
    }

    #[test]
    fn statistics_follow_cloudwatch() {
        let values = [3.0, 1.0, 4.0, 1.0, 5.0];
        check("Average", &values, "Some(2.8)");
        check("Sum", &values, "Some(14.0)");
        check("Minimum", &values, "Some(1.0)");
        check("Maximum", &values, "Some(5.0)");
        check("SampleCount", &values, "Some(5.0)");
        check("Sum", &[], "None");
        check("p50", &values, "Some(3.0)");
        check("p0", &values, "Some(1.0)");
        check("p100", &values, "Some(5.0)");
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        check("p99", &hundred, "Some(99.0)");
        check("p99.9", &hundred, "Some(100.0)");
        check("p90", &hundred, "Some(90.0)");
        check("p50", &hundred, "Some(50.0)");
        check("p1", &hundred, "Some(1.0)");
        check("p99", &[7.0], "Some(7.0)");
        let thousand: Vec<f64> = (1..=1000).rev().map(f64::from).collect();
        check("p99.9", &thousand, "Some(999.0)");
        check("p99.99", &thousand, "Some(1000.0)");
    }

    #[test]
    fn unknown_statistics_are_refused() {
        let expected = |text: &str| format!("error: unknown statistic `{text}`: {STATISTICS_HINT}");
        for text in ["average", "p", "p101", "p-1", "P99", "p1e1", "tm0", "tm101", "xx(1:2)", ""] {
            check(text, &[1.0], &expected(text));
        }
        check(
            "TM(90%:10%)",
            &[1.0],
            "error: statistic `TM(90%:10%)`: bounds `(90%:10%)`: the lower bound must be below the upper",
        );
        check(
            "TM(10%:900)",
            &[1.0],
            "error: statistic `TM(10%:900)`: bounds `(10%:900)` mix a percentage and a value; write both as percentages or both as values",
        );
        check(
            "TM(:)",
            &[1.0],
            "error: statistic `TM(:)`: bounds `(:)` give neither a lower nor an upper bound",
        );
        check(
            "TM(5)",
            &[1.0],
            "error: statistic `TM(5)`: bounds `(5)` need a `:` between the lower and upper bound",
        );
        check(
            "TM(:101%)",
            &[1.0],
            "error: statistic `TM(:101%)`: bound `101%` is not a percentage from 0% to 100%",
        );
        check(
            "PR(:90%)",
            &[1.0],
            "error: statistic `PR(:90%)`: a percentile rank takes values, not percentages, e.g. `PR(:300)`",
        );
    }

    #[test]
    fn trimmed_and_windowed_statistics_follow_cloudwatch() {
        let ten: Vec<f64> = (1..=10).map(f64::from).collect();
        // tm90: the highest 10% removed.
        check("tm90", &ten, "Some(5.0)");
        check("TM(:90%)", &ten, "Some(5.0)");
        check("TM(10%:90%)", &ten, "Some(5.5)");
        check("TM(20%:)", &ten, "Some(6.5)");
        // Values: lower exclusive, upper inclusive.
        check("TM(3:7)", &ten, "Some(5.5)");
        check("TM(-1:1)", &ten, "Some(1.0)");
        check("TM(20:30)", &ten, "None");
        check("IQM", &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 100.0], "Some(4.5)");
        // wm80: the top 20% (9 and 10) count as the 80% boundary's value, 8.
        check("wm80", &ten, "Some(5.2)");
        check("WM(10%:90%)", &ten, "Some(5.5)");
        check("tc90", &ten, "Some(9.0)");
        check("TC(3:7)", &ten, "Some(4.0)");
        check("TC(20:30)", &ten, "Some(0.0)");
        check("ts90", &ten, "Some(45.0)");
        check("TS(:5)", &ten, "Some(15.0)");
        check("PR(:3)", &ten, "Some(30.0)");
        check("PR(3:7)", &ten, "Some(40.0)");
        check("PR(100:)", &ten, "Some(0.0)");
        check("TM(:90%)", &[], "None");
        // Written forms read back.
        for text in ["TM(10%:90%)", "WM(:98%)", "TC(150:1000)", "TS(:5)", "PR(100:2000)", "IQM"] {
            assert_eq!(text.parse::<Statistic>().unwrap().to_string(), text);
        }
        assert_eq!("tm99".parse::<Statistic>().unwrap().to_string(), "TM(:99%)");
    }

    #[track_caller]
    fn check_histogram(q: f64, buckets: &[(f64, f64)], expected: Option<f64>) {
        let mut buckets = buckets.to_vec();
        let actual = histogram_quantile(q, &mut buckets);
        match (actual, expected) {
            (Some(actual), Some(expected)) => {
                assert!((actual - expected).abs() < 1e-12, "q={q}: {actual} != {expected}")
            }
            _ => assert_eq!(actual, expected, "q={q}"),
        }
    }

    #[test]
    fn histogram_quantiles_match_prometheus() {
        let inf = f64::INFINITY;
        let buckets = [(0.1, 50.0), (0.5, 90.0), (1.0, 100.0), (inf, 100.0)];
        check_histogram(0.5, &buckets, Some(0.1));
        check_histogram(0.25, &buckets, Some(0.05));
        check_histogram(0.7, &buckets, Some(0.3));
        check_histogram(0.95, &buckets, Some(0.75));
        // Rank in +Inf: the highest finite bound.
        check_histogram(0.99, &[(0.1, 50.0), (1.0, 90.0), (inf, 100.0)], Some(1.0));
        check_histogram(0.5, &[(0.1, 0.0), (inf, 0.0)], None);
        check_histogram(0.5, &[(0.1, 5.0), (1.0, 10.0)], None);
        // Out-of-order bucket counts are made monotonic.
        check_histogram(0.5, &[(0.1, 6.0), (0.2, 5.0), (inf, 10.0)], Some(0.1 * 5.0 / 6.0));
    }
}
