//! The metric source boundary: everything that brings samples into the [`Store`] — the
//! scraper, an external Prometheus, canaries — behind one narrow trait, with an in-memory
//! implementation ([`Recorded`]) for the simulator and tests.
//!
//! A source is read *level-triggered*: the caller collects from every source on each tick at
//! the tick's time, and a collect that fails loses nothing but that tick's samples (the alarm
//! sees a missing period and its missing-data policy applies).

#[cfg(feature = "edge")]
use crate::canary::Canary;
#[cfg(feature = "edge")]
use crate::prometheus::PrometheusSource;
#[cfg(feature = "edge")]
use crate::scrape::Scraper;
use crate::series::{Labels, SeriesKind, Store, TimestampMs};

/// What one collect stored, and what went wrong.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Collected {
    pub samples: usize,
    /// One line per failed target, query or probe.
    pub problems: Vec<String>,
}

/// A place samples come from.
pub trait MetricSource {
    /// Reads the source once and stores what it read at (or up to) `now`.
    fn collect(&mut self, store: &mut Store, now: TimestampMs) -> Collected;
}

#[cfg(feature = "edge")]
impl MetricSource for Scraper {
    fn collect(&mut self, store: &mut Store, now: TimestampMs) -> Collected {
        let outcomes = self.scrape_once(store, now);
        Collected {
            samples: outcomes.iter().map(|outcome| outcome.samples).sum(),
            problems: outcomes.into_iter().filter_map(|outcome| outcome.error).collect(),
        }
    }
}

#[cfg(feature = "edge")]
impl MetricSource for PrometheusSource {
    fn collect(&mut self, store: &mut Store, now: TimestampMs) -> Collected {
        match PrometheusSource::collect(self, store, now) {
            Ok(samples) => Collected { samples, problems: Vec::new() },
            Err(error) => Collected { samples: 0, problems: vec![error.to_string()] },
        }
    }
}

#[cfg(feature = "edge")]
impl MetricSource for Canary {
    fn collect(&mut self, store: &mut Store, now: TimestampMs) -> Collected {
        let results = self.probe_all(store, now);
        Collected {
            samples: results.len(),
            problems: results
                .into_iter()
                .filter_map(|result| {
                    result.failure.map(|why| format!("canary {}: {why}", result.name))
                })
                .collect(),
        }
    }
}

/// One recorded sample.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedSample {
    pub time: TimestampMs,
    pub name: String,
    pub labels: Labels,
    pub kind: SeriesKind,
    pub value: f64,
}

/// An in-memory source that replays recorded samples: each collect stores the samples with
/// `time <= now` not stored yet. For the simulator and tests.
#[derive(Clone, Debug, Default)]
pub struct Recorded {
    samples: Vec<RecordedSample>,
    next: usize,
}

impl Recorded {
    /// Samples in any order; they are replayed in time order.
    pub fn new(mut samples: Vec<RecordedSample>) -> Recorded {
        samples.sort_by_key(|sample| sample.time);
        Recorded { samples, next: 0 }
    }

    /// Adds a sample to replay later (a push). Samples older than what was replayed are stored
    /// on the next collect, where the store refuses them as out of order and says so.
    pub fn push(&mut self, sample: RecordedSample) {
        let position = self.samples[self.next..].partition_point(|s| s.time <= sample.time);
        self.samples.insert(self.next + position, sample);
    }
}

impl MetricSource for Recorded {
    fn collect(&mut self, store: &mut Store, now: TimestampMs) -> Collected {
        let mut collected = Collected::default();
        while let Some(sample) = self.samples.get(self.next).filter(|sample| sample.time <= now) {
            match store.ingest(&sample.name, &sample.labels, sample.kind, sample.time, sample.value)
            {
                Ok(()) => collected.samples += 1,
                Err(error) => collected.problems.push(error.to_string()),
            }
            self.next += 1;
        }
        collected
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series::StoreLimits;

    fn sample(time: TimestampMs, value: f64) -> RecordedSample {
        RecordedSample {
            time,
            name: "requests_total".to_string(),
            labels: Labels::new(),
            kind: SeriesKind::Counter,
            value,
        }
    }

    #[test]
    fn recorded_samples_replay_in_time_order() {
        let mut source = Recorded::new(vec![sample(20, 30.0), sample(0, 0.0), sample(10, 10.0)]);
        let mut store = Store::new(StoreLimits::default());
        let first = source.collect(&mut store, 10);
        assert_eq!(first, Collected { samples: 2, problems: vec![] });
        source.push(sample(30, 35.0));
        source.push(sample(5, 1.0));
        let second = source.collect(&mut store, 100);
        assert_eq!(second.samples, 2);
        assert_eq!(
            second.problems,
            [
                "sample of requests_total at 5 ms is not newer than the previous one at 10 ms; samples must arrive in time order"
            ]
        );
        let stored: Vec<(i64, f64)> = store
            .select("requests_total", &Labels::new())
            .flat_map(|series| series.samples_between(0, 1_000).collect::<Vec<_>>())
            .collect();
        assert_eq!(stored, [(10, 10.0), (20, 20.0), (30, 5.0)]);
        assert_eq!(source.collect(&mut store, 1_000), Collected::default());
    }
}
