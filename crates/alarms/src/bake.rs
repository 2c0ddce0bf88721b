//! Data points for bake: how many qualifying data points a metric has had in a scope since a
//! moment ("at least 100 requests to the Create API since the deployment finished").
//!
//! For a counter the count is the number of events (the sum of its increments); for a gauge it
//! is the number of finite samples. Counts are lower bounds, so that a bake never completes on
//! data it did not see: the first increment after `since` is skipped, because part of it may
//! predate `since`. A requirement is met only when its count is reached *and* the metric is
//! still arriving (its newest sample is not older than `stale_after_ms`); every shortfall says
//! why.

use std::collections::BTreeMap;

use crate::series::{Labels, Series, SeriesKind, Store, TimestampMs};

/// Prometheus's staleness horizon: a series with no sample for 5 minutes is stale there too.
pub const DEFAULT_STALE_AFTER_MS: i64 = 5 * 60 * 1000;

/// The count for one metric in one scope.
#[derive(Clone, Debug, PartialEq)]
pub struct DataPointCount {
    pub metric: String,
    pub count: u64,
    pub required: u64,
    /// Why the requirement is not met yet (`None` when it is).
    pub shortfall: Option<String>,
}

impl DataPointCount {
    pub fn is_met(&self) -> bool {
        self.shortfall.is_none()
    }
}

/// Counts data points of `metric` in `scope` with `since < time <= now`.
pub fn count_data_points(
    store: &Store,
    metric: &str,
    scope: &Labels,
    since: TimestampMs,
    now: TimestampMs,
    required: u64,
    stale_after_ms: i64,
) -> DataPointCount {
    let mut count = 0.0_f64;
    let mut newest: Option<TimestampMs> = None;
    let mut series_seen = 0;
    for series in store.select(metric, scope) {
        series_seen += 1;
        newest = newest.max(series.last_seen());
        let mut samples = series.samples_between(since + 1, now + 1);
        match series.kind {
            SeriesKind::Counter => {
                let _partly_before_since = samples.next();
                count += samples.map(|(_, increment)| increment).sum::<f64>();
            }
            SeriesKind::Gauge => {
                count += samples.filter(|(_, value)| value.is_finite()).count() as f64;
            }
        }
    }
    let count = count.max(0.0).floor() as u64;
    let shortfall = if series_seen == 0 {
        Some(format!("no series `{metric}` in scope {scope:?}: nothing to count"))
    } else if newest.is_none_or(|newest| newest < now - stale_after_ms) {
        Some(format!(
            "`{metric}` stopped arriving: newest sample at {} ms, more than {} s before {now} ms",
            newest.unwrap_or(i64::MIN),
            stale_after_ms / 1000
        ))
    } else if count < required {
        Some(format!("{count} of {required} data points of `{metric}` since {since} ms"))
    } else {
        None
    };
    DataPointCount { metric: metric.to_string(), count, required, shortfall }
}

/// The data points one series holds with `after < time <= until`: the sum of a counter's
/// increments (every increment counted, so that a caller adding up adjacent windows counts each
/// event once), or a gauge's finite samples. A controller keeps cumulative counts this way
/// across scrapes, for the engine's `DataPoints` input, without reading samples the store has
/// already dropped.
pub fn data_points_between(series: &Series, after: TimestampMs, until: TimestampMs) -> f64 {
    let samples = series.samples_between(after.saturating_add(1), until.saturating_add(1));
    match series.kind {
        SeriesKind::Counter => samples.map(|(_, increment)| increment.max(0.0)).sum(),
        SeriesKind::Gauge => samples.filter(|(_, value)| value.is_finite()).count() as f64,
    }
}

/// Counts every requirement of a bake (`metric -> minimum`), in name order.
pub fn count_requirements(
    store: &Store,
    requirements: &BTreeMap<String, u64>,
    scope: &Labels,
    since: TimestampMs,
    now: TimestampMs,
    stale_after_ms: i64,
) -> Vec<DataPointCount> {
    requirements
        .iter()
        .map(|(metric, required)| {
            count_data_points(store, metric, scope, since, now, *required, stale_after_ms)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series::StoreLimits;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// Ingests `(seconds, box, value)` samples of `create_requests` as `kind`, counts since
    /// `since` at `now` (seconds) in region eu against `required`, and compares.
    #[track_caller]
    fn check(
        kind: SeriesKind,
        samples: &[(i64, &str, f64)],
        since: i64,
        now: i64,
        required: u64,
        expected: &str,
    ) {
        let mut store = Store::new(StoreLimits::default());
        for (time, box_name, value) in samples {
            let key = labels(&[("region", "eu"), ("box", box_name)]);
            store.ingest("create_requests", &key, kind, time * 1000, *value).unwrap();
        }
        let counted = count_data_points(
            &store,
            "create_requests",
            &labels(&[("region", "eu")]),
            since * 1000,
            now * 1000,
            required,
            DEFAULT_STALE_AFTER_MS,
        );
        let actual = match counted.shortfall {
            None => format!("met with {}", counted.count),
            Some(why) => format!("not met: {why}"),
        };
        assert_eq!(actual, expected);
    }

    #[test]
    fn counters_count_events_since_the_moment() {
        let samples = [
            (0, "b1", 0.0),
            (60, "b1", 40.0),
            (120, "b1", 90.0),
            (180, "b1", 150.0),
            (60, "b2", 10.0),
            (120, "b2", 30.0),
            (180, "b2", 60.0),
        ];
        // Since 0: b1's first increment (40) and b2's (20) may straddle `since` and are skipped.
        check(SeriesKind::Counter, &samples, 0, 180, 100, "met with 140");
        check(
            SeriesKind::Counter,
            &samples,
            0,
            180,
            141,
            "not met: 140 of 141 data points of `create_requests` since 0 ms",
        );
        check(SeriesKind::Counter, &samples, 100, 180, 10, "met with 90");
        // A reset counts everything since the restart.
        check(
            SeriesKind::Counter,
            &[(0, "b1", 5.0), (60, "b1", 50.0), (120, "b1", 70.0), (180, "b1", 20.0)],
            0,
            180,
            40,
            "met with 40",
        );
    }

    #[test]
    fn adjacent_windows_count_every_event_once() {
        let mut store = Store::new(StoreLimits::default());
        let key = labels(&[("box", "b1")]);
        for (time, value) in [(10, 0.0), (20, 5.0), (30, 9.0), (40, 2.0), (50, 4.0)] {
            store.ingest("requests", &key, SeriesKind::Counter, time, value).unwrap();
        }
        store.ingest("latency", &key, SeriesKind::Gauge, 10, 0.1).unwrap();
        store.ingest("latency", &key, SeriesKind::Gauge, 20, f64::NAN).unwrap();
        store.ingest("latency", &key, SeriesKind::Gauge, 30, 0.3).unwrap();
        let series = |name: &str| store.select(name, &key).next().unwrap();
        // Increments 5, 4, 2 (a reset) and 2: 13 events, however the time is cut.
        let whole = data_points_between(series("requests"), 0, 50);
        let cut = data_points_between(series("requests"), 0, 25)
            + data_points_between(series("requests"), 25, 50);
        assert_eq!((whole, cut), (13.0, 13.0));
        assert_eq!(data_points_between(series("latency"), 0, 30), 2.0);
        assert_eq!(data_points_between(series("latency"), 10, 30), 1.0);
    }

    #[test]
    fn gauges_count_finite_samples() {
        check(
            SeriesKind::Gauge,
            &[(10, "b1", 1.0), (20, "b1", f64::NAN), (30, "b1", 3.0)],
            0,
            60,
            2,
            "met with 2",
        );
        check(
            SeriesKind::Gauge,
            &[(10, "b1", 1.0), (20, "b1", f64::NAN), (30, "b1", 3.0)],
            0,
            60,
            3,
            "not met: 2 of 3 data points of `create_requests` since 0 ms",
        );
    }

    #[test]
    fn a_metric_that_stops_arriving_never_completes_a_bake() {
        let samples = [(0, "b1", 0.0), (60, "b1", 500.0), (120, "b1", 1000.0)];
        check(SeriesKind::Counter, &samples, 0, 400, 100, "met with 500");
        check(
            SeriesKind::Counter,
            &samples,
            0,
            421,
            100,
            "not met: `create_requests` stopped arriving: newest sample at 120000 ms, more than 300 s before 421000 ms",
        );
        check(
            SeriesKind::Counter,
            &[],
            0,
            60,
            1,
            "not met: no series `create_requests` in scope {\"region\": \"eu\"}: nothing to count",
        );
    }
}
