//! CloudWatch's statistics over the samples of one period, and quantiles of Prometheus
//! histograms.

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
}

impl FromStr for Statistic {
    type Err = String;

    fn from_str(text: &str) -> Result<Statistic, String> {
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
                    None => {
                        return Err(format!(
                            "unknown statistic `{text}`: expected `Average`, `Sum`, `Minimum`, \
                             `Maximum`, `SampleCount` or a percentile such as `p99` or `p99.9`"
                        ));
                    }
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
        })
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
        let expected = |text: &str| {
            format!(
                "error: unknown statistic `{text}`: expected `Average`, `Sum`, `Minimum`, \
                 `Maximum`, `SampleCount` or a percentile such as `p99` or `p99.9`"
            )
        };
        for text in ["average", "p", "p101", "p-1", "P99", "p1e1", "tm99", ""] {
            check(text, &[1.0], &expected(text));
        }
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
