//! The in-memory metric store: labelled series of timestamped samples, with bounded retention
//! and limits on series and samples.
//!
//! Every source (the scraper, pushed samples, an external Prometheus, canaries) writes here, and
//! every evaluation reads from here. Counters are stored as *increments*: each sample of a
//! counter holds how much it grew since the previous sample of the same series (a drop in value
//! is a reset, and the increment is the new value, as Prometheus's `increase` treats it). So a
//! `Sum` over a period of a counter is the count of events in that period, across restarts.
//!
//! Times are milliseconds since the Unix epoch ([`TimestampMs`]); the store never reads a clock.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use crate::Error;

/// Milliseconds since the Unix epoch.
pub type TimestampMs = i64;

/// Label names to values. Ordered, so a series' identity and its printed form are stable.
pub type Labels = BTreeMap<String, String>;

/// Default limit on distinct series. A fleet of 500 boxes exposing 20 series each fits with room
/// to spare; beyond it, a label with unbounded values (a request id, a timestamp) is the likely
/// cause, and refusing new series keeps the controller's memory bounded.
pub const DEFAULT_MAX_SERIES: usize = 10_000;
/// Default limit on samples kept per series: 26 hours at one sample every 10 seconds, with
/// margin. Together with [`DEFAULT_MAX_SERIES`] this bounds memory to about 1.6 GB at worst.
pub const DEFAULT_MAX_SAMPLES_PER_SERIES: usize = 10_000;
/// Default retention: 26 hours, so a one-day alarm window (CloudWatch's limit for periods under
/// an hour) and a 12-hour first-wave bake can both be evaluated from the store.
pub const DEFAULT_RETENTION_MS: i64 = 26 * 3600 * 1000;

/// Whether a series is a gauge (each sample a value) or a counter (stored as increments).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SeriesKind {
    Gauge,
    Counter,
}

/// One sample of a batch for [`Store::ingest_all`].
#[derive(Clone, Copy, Debug)]
pub struct BatchSample<'a> {
    pub name: &'a str,
    pub labels: &'a Labels,
    pub kind: SeriesKind,
    pub value: f64,
}

/// Limits on what the store holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreLimits {
    pub max_series: usize,
    pub max_samples_per_series: usize,
    /// Samples older than the newest sample of the series by more than this are dropped.
    pub retention_ms: i64,
}

impl Default for StoreLimits {
    fn default() -> Self {
        StoreLimits {
            max_series: DEFAULT_MAX_SERIES,
            max_samples_per_series: DEFAULT_MAX_SAMPLES_PER_SERIES,
            retention_ms: DEFAULT_RETENTION_MS,
        }
    }
}

/// One series: its labels (without the name), kind and samples in time order.
#[derive(Clone, Debug)]
pub struct Series {
    pub labels: Labels,
    pub kind: SeriesKind,
    /// For gauges, values; for counters, increments since the previous sample.
    samples: VecDeque<(TimestampMs, f64)>,
    /// A counter's last raw value, to compute the next increment.
    last_counter_value: Option<f64>,
    /// Time of the newest sample seen, even when it produced no stored sample.
    last_seen: Option<TimestampMs>,
}

impl Series {
    /// Samples with `start <= time < end`, in time order.
    pub fn samples_between(
        &self,
        start: TimestampMs,
        end: TimestampMs,
    ) -> impl Iterator<Item = (TimestampMs, f64)> + '_ {
        let first = self.samples.partition_point(|(time, _)| *time < start);
        self.samples.range(first..).take_while(move |(time, _)| *time < end).copied()
    }

    /// The time of the newest sample received, if any.
    pub fn last_seen(&self) -> Option<TimestampMs> {
        self.last_seen
    }

    /// The oldest sample still retained.
    pub fn oldest(&self) -> Option<TimestampMs> {
        self.samples.front().map(|(time, _)| *time)
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

/// The store: series by metric name.
#[derive(Clone, Debug, Default)]
pub struct Store {
    limits: StoreLimits,
    by_name: HashMap<String, Family>,
    series_count: usize,
}

/// The series of one metric name, with an index by label set.
#[derive(Clone, Debug, Default)]
struct Family {
    series: Vec<Series>,
    index: HashMap<Labels, usize>,
}

impl Store {
    pub fn new(limits: StoreLimits) -> Store {
        Store { limits, by_name: HashMap::new(), series_count: 0 }
    }

    pub fn limits(&self) -> StoreLimits {
        self.limits
    }

    /// The number of distinct series held.
    pub fn series_count(&self) -> usize {
        self.series_count
    }

    /// Adds one sample. A sample not newer than the series' newest is refused
    /// ([`Error::OutOfOrder`]); a new series beyond the limit is refused ([`Error::TooManySeries`])
    /// after series that stopped arriving have been pruned ([`Store::prune`]).
    /// NaN is stored for gauges (evaluation treats it as missing and says so); a NaN counter value
    /// is refused, since no increment can be computed from it.
    pub fn ingest(
        &mut self,
        name: &str,
        labels: &Labels,
        kind: SeriesKind,
        time: TimestampMs,
        value: f64,
    ) -> Result<(), Error> {
        let limits = self.limits;
        if self.series_count >= limits.max_series
            && !self.by_name.get(name).is_some_and(|family| family.index.contains_key(labels))
        {
            // Boxes come and go; their series must not fill the store for good.
            self.prune(time);
        }
        if !self.by_name.contains_key(name) {
            self.by_name.insert(name.to_string(), Family::default());
        }
        let family = self.by_name.get_mut(name).expect("inserted above");
        let index = match family.index.get(labels) {
            Some(index) => *index,
            None => {
                if self.series_count >= limits.max_series {
                    return Err(Error::TooManySeries {
                        limit: limits.max_series,
                        series: format_series(name, labels),
                    });
                }
                self.series_count += 1;
                family.series.push(Series {
                    labels: labels.clone(),
                    kind,
                    samples: VecDeque::new(),
                    last_counter_value: None,
                    last_seen: None,
                });
                family.index.insert(labels.clone(), family.series.len() - 1);
                family.series.len() - 1
            }
        };
        let series = &mut family.series[index];
        if series.kind != kind {
            return Err(Error::KindChanged { series: format_series(name, labels) });
        }
        if let Some(last) = series.last_seen
            && time <= last
        {
            return Err(Error::OutOfOrder { series: format_series(name, labels), time, last });
        }
        let stored = match kind {
            SeriesKind::Gauge => Some(value),
            SeriesKind::Counter => {
                if !value.is_finite() || value < 0.0 {
                    return Err(Error::BadCounterValue {
                        series: format_series(name, labels),
                        value,
                    });
                }
                let increment = series.last_counter_value.map(|previous| {
                    // A counter that went down was reset (the process restarted): everything it
                    // counts now happened since the reset.
                    if value >= previous { value - previous } else { value }
                });
                series.last_counter_value = Some(value);
                increment
            }
        };
        series.last_seen = Some(time);
        if let Some(stored) = stored {
            series.samples.push_back((time, stored));
        }
        let horizon = time - limits.retention_ms;
        while series.samples.front().is_some_and(|(oldest, _)| *oldest < horizon)
            || series.samples.len() > limits.max_samples_per_series
        {
            series.samples.pop_front();
        }
        Ok(())
    }

    /// Adds every sample of one scrape or push at `time`, or none of them: each sample is
    /// checked first (kind, order, counter values, the series limit), and the first refusal is
    /// returned with the store unchanged. A sum across label sets never sees half a scrape.
    pub fn ingest_all(
        &mut self,
        time: TimestampMs,
        samples: &[BatchSample<'_>],
    ) -> Result<(), Error> {
        let mut new_series: Vec<(&str, &Labels)> = Vec::new();
        let mut seen: HashSet<(&str, &Labels)> = HashSet::with_capacity(samples.len());
        for sample in samples {
            if !seen.insert((sample.name, sample.labels)) {
                return Err(Error::DuplicateInBatch {
                    series: format_series(sample.name, sample.labels),
                });
            }
            let existing = self
                .by_name
                .get(sample.name)
                .and_then(|family| family.index.get(sample.labels).map(|&i| &family.series[i]));
            let series_name = || format_series(sample.name, sample.labels);
            match existing {
                Some(series) => {
                    if series.kind != sample.kind {
                        return Err(Error::KindChanged { series: series_name() });
                    }
                    if let Some(last) = series.last_seen
                        && time <= last
                    {
                        return Err(Error::OutOfOrder { series: series_name(), time, last });
                    }
                }
                None => new_series.push((sample.name, sample.labels)),
            }
            if sample.kind == SeriesKind::Counter
                && !(sample.value.is_finite() && sample.value >= 0.0)
            {
                return Err(Error::BadCounterValue { series: series_name(), value: sample.value });
            }
        }
        if self.series_count + new_series.len() > self.limits.max_series {
            // Series that stopped arriving are past their retention: dropping them loses nothing
            // an alarm could read, and may make room.
            self.prune(time);
            if self.series_count + new_series.len() > self.limits.max_series {
                let fits = self.limits.max_series.saturating_sub(self.series_count);
                let (name, labels) = new_series[fits];
                return Err(Error::TooManySeries {
                    limit: self.limits.max_series,
                    series: format_series(name, labels),
                });
            }
        }
        for sample in samples {
            self.ingest(sample.name, sample.labels, sample.kind, time, sample.value)
                .expect("every sample was checked above");
        }
        Ok(())
    }

    /// Drops samples older than the retention before `now`, and series with no sample within
    /// it (a replaced box's, a removed endpoint's). Call it periodically; ingestion calls it when
    /// the series limit is reached. A dropped counter starts afresh if it comes back: its first
    /// new sample gives no increment, so nothing is counted twice.
    pub fn prune(&mut self, now: TimestampMs) {
        let horizon = now - self.limits.retention_ms;
        for family in self.by_name.values_mut() {
            for series in &mut family.series {
                while series.samples.front().is_some_and(|(time, _)| *time < horizon) {
                    series.samples.pop_front();
                }
            }
            let before = family.series.len();
            family.series.retain(|series| series.last_seen.is_some_and(|seen| seen >= horizon));
            if family.series.len() != before {
                family.index = family
                    .series
                    .iter()
                    .enumerate()
                    .map(|(index, series)| (series.labels.clone(), index))
                    .collect();
            }
        }
        self.by_name.retain(|_, family| !family.series.is_empty());
        self.series_count = self.by_name.values().map(|family| family.series.len()).sum();
    }

    /// Series of metric `name` whose labels include every pair in `matchers`.
    pub fn select<'store: 'matchers, 'matchers>(
        &'store self,
        name: &str,
        matchers: &'matchers Labels,
    ) -> impl Iterator<Item = &'store Series> + 'matchers {
        self.by_name.get(name).into_iter().flat_map(|family| &family.series).filter(move |series| {
            matchers.iter().all(|(key, value)| series.labels.get(key) == Some(value))
        })
    }

    /// Every metric name held, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.by_name.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}

/// A scope's selectors narrowed by an alarm's own labels, which win for the same label name.
pub fn narrowed(scope: &Labels, labels: &Labels) -> Labels {
    let mut matchers = scope.clone();
    matchers.extend(labels.iter().map(|(key, value)| (key.clone(), value.clone())));
    matchers
}

/// `name{a="1",b="2"}`, as Prometheus prints a series.
pub fn format_series(name: &str, labels: &Labels) -> String {
    if labels.is_empty() {
        return name.to_string();
    }
    let pairs: Vec<String> = labels.iter().map(|(key, value)| format!("{key}={value:?}")).collect();
    format!("{name}{{{}}}", pairs.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// Ingests `(time, value)` samples of one series and compares what is stored, or the first
    /// error, with `expected`.
    #[track_caller]
    fn check(kind: SeriesKind, limits: StoreLimits, samples: &[(i64, f64)], expected: &str) {
        let mut store = Store::new(limits);
        let key = labels(&[("box", "b1")]);
        for (time, value) in samples {
            if let Err(error) = store.ingest("m", &key, kind, *time, *value) {
                assert_eq!(format!("error: {error}"), expected);
                return;
            }
        }
        let series = store.select("m", &key).next().unwrap();
        let stored: Vec<String> =
            series.samples_between(i64::MIN, i64::MAX).map(|(t, v)| format!("{t}:{v}")).collect();
        assert_eq!(stored.join(" "), expected);
    }

    #[test]
    fn counters_become_increments_across_resets() {
        let limits = StoreLimits::default();
        check(SeriesKind::Counter, limits, &[(0, 10.0), (10, 15.0), (20, 15.0)], "10:5 20:0");
        // Reset: 15 -> 3 means 3 events since the restart.
        check(
            SeriesKind::Counter,
            limits,
            &[(0, 10.0), (10, 15.0), (20, 3.0), (30, 7.0)],
            "10:5 20:3 30:4",
        );
        check(
            SeriesKind::Counter,
            limits,
            &[(0, 1.0), (10, f64::NAN)],
            "error: counter m{box=\"b1\"} reported NaN; counters must be finite and not negative",
        );
        check(SeriesKind::Gauge, limits, &[(0, 1.0), (10, f64::NAN)], "0:1 10:NaN");
    }

    #[test]
    fn order_retention_and_limits_hold() {
        let limits = StoreLimits { max_series: 1, max_samples_per_series: 3, retention_ms: 100 };
        check(
            SeriesKind::Gauge,
            limits,
            &[(10, 1.0), (10, 2.0)],
            "error: sample of m{box=\"b1\"} at 10 ms is not newer than the previous one at 10 ms; samples must arrive in time order",
        );
        check(SeriesKind::Gauge, limits, &[(0, 1.0), (50, 2.0), (120, 3.0)], "50:2 120:3");
        check(SeriesKind::Gauge, limits, &[(1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0)], "2:2 3:3 4:4");

        let mut store = Store::new(limits);
        store.ingest("m", &labels(&[("box", "b1")]), SeriesKind::Gauge, 0, 1.0).unwrap();
        let error = store.ingest("m", &labels(&[("box", "b2")]), SeriesKind::Gauge, 0, 1.0);
        assert_eq!(
            error.unwrap_err().to_string(),
            "the store holds its limit of 1 series; refusing new series m{box=\"b2\"} (look for a label with unbounded values, or raise the limit)"
        );
    }

    #[test]
    fn series_that_stopped_arriving_make_room() {
        let limits = StoreLimits { max_series: 2, max_samples_per_series: 100, retention_ms: 100 };
        let mut store = Store::new(limits);
        let box_labels = |name: &str| labels(&[("box", name)]);
        store.ingest("up", &box_labels("old"), SeriesKind::Gauge, 0, 1.0).unwrap();
        store.ingest("up", &box_labels("kept"), SeriesKind::Gauge, 0, 1.0).unwrap();
        store.ingest("up", &box_labels("kept"), SeriesKind::Gauge, 150, 1.0).unwrap();
        // Full, and nothing is old enough yet at 90: refused.
        assert!(store.ingest("up", &box_labels("new"), SeriesKind::Gauge, 90, 1.0).is_err());
        // At 150 the old box's series (last seen at 0) is past the 100 ms retention: pruned.
        store.ingest("up", &box_labels("new"), SeriesKind::Gauge, 150, 1.0).unwrap();
        let boxes: Vec<&str> =
            store.select("up", &Labels::new()).map(|s| s.labels["box"].as_str()).collect();
        assert_eq!(boxes, ["kept", "new"]);
        assert_eq!(store.series_count(), 2);
        store.prune(1_000);
        assert_eq!(store.series_count(), 0);
        assert!(store.names().is_empty());
    }

    #[test]
    fn select_matches_label_subsets() {
        let mut store = Store::default_for_tests();
        for (region, one_box) in [("eu", "no"), ("eu", "yes"), ("us", "no")] {
            let key = labels(&[("region", region), ("one_box", one_box)]);
            store.ingest("latency", &key, SeriesKind::Gauge, 0, 1.0).unwrap();
        }
        let count = |pairs: &[(&str, &str)]| store.select("latency", &labels(pairs)).count();
        assert_eq!(count(&[]), 3);
        assert_eq!(count(&[("region", "eu")]), 2);
        assert_eq!(count(&[("region", "eu"), ("one_box", "yes")]), 1);
        assert_eq!(count(&[("region", "ap")]), 0);
        assert_eq!(store.select("other", &labels(&[])).count(), 0);
    }

    impl Store {
        fn default_for_tests() -> Store {
            Store::new(StoreLimits::default())
        }
    }
}
