//! Metrics in: scraping Prometheus exposition endpoints (boxes, load balancers, canaries) into
//! the [`Store`].
//!
//! This is the edge: it does I/O and reads the wall clock only through the `now` it is given.
//! Every sample of one scrape is stored at the scrape's time (an exposition's own timestamps are
//! ignored, so one scrape is one instant, and a target cannot write into the past). The
//! target's labels (region, zone, cell, box, role) are added to every sample and win over the
//! target's own labels of the same name, so a box cannot claim another's identity. Each scrape
//! also records `up{target labels}`: 1 when it succeeded, 0 when it failed, as Prometheus does,
//! so an alarm can watch for boxes that stop answering.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::Error;
use crate::exposition::{self, ExpositionLimits, Sample};
use crate::fetch::Client;
use crate::push;
use crate::series::{Labels, SeriesKind, Store, TimestampMs};

/// The series recording whether each scrape succeeded.
pub const UP_METRIC: &str = "up";
/// The shortest scrape interval accepted: one second. Canaries may probe every few seconds;
/// anything faster is load on the target, not signal.
pub const MIN_SCRAPE_INTERVAL: Duration = Duration::from_secs(1);

/// An endpoint to scrape and the labels that place it in the topology.
#[derive(Clone, Debug, PartialEq)]
pub struct ScrapeTarget {
    pub url: String,
    pub labels: Labels,
}

/// What one scrape did.
#[derive(Clone, Debug, PartialEq)]
pub struct ScrapeOutcome {
    pub url: String,
    /// Samples stored.
    pub samples: usize,
    /// Why the scrape failed (the target is then `up == 0`).
    pub error: Option<String>,
}

/// Scrapes a fixed list of targets.
#[derive(Clone, Debug)]
pub struct Scraper {
    client: Client,
    targets: Vec<ScrapeTarget>,
    limits: ExpositionLimits,
}

impl Scraper {
    /// Refuses targets that share a label set: they would write into the same series.
    pub fn new(
        client: Client,
        targets: Vec<ScrapeTarget>,
        limits: ExpositionLimits,
    ) -> Result<Scraper, Error> {
        for (index, target) in targets.iter().enumerate() {
            if let Some(other) = targets[index + 1..].iter().find(|o| o.labels == target.labels) {
                return Err(Error::DuplicateTargets {
                    first: target.url.clone(),
                    second: other.url.clone(),
                    labels: format!("{:?}", target.labels),
                });
            }
        }
        Ok(Scraper { client, targets, limits })
    }

    pub fn targets(&self) -> &[ScrapeTarget] {
        &self.targets
    }

    /// Scrapes every target once and stores what it read at `now`.
    pub fn scrape_once(&self, store: &mut Store, now: TimestampMs) -> Vec<ScrapeOutcome> {
        self.targets
            .iter()
            .map(|target| {
                let result = self.fetch(target);
                record(store, target, result, now)
            })
            .collect()
    }

    /// Fetches and parses one target without storing anything.
    pub fn fetch(&self, target: &ScrapeTarget) -> Result<Vec<Sample>, Error> {
        let fetched = self.client.get(&target.url, &[])?;
        if fetched.status != 200 {
            return Err(Error::ScrapeStatus { url: target.url.clone(), status: fetched.status });
        }
        exposition::parse(&fetched.body, &self.limits)
            .map_err(|source| Error::Exposition { url: target.url.clone(), source })
    }

    /// Scrapes every `interval` until `stop` is set, reading the time from `clock` (milliseconds
    /// since the epoch). Each round's outcomes go to `report`.
    pub fn run(
        &self,
        store: &Mutex<Store>,
        interval: Duration,
        stop: &AtomicBool,
        clock: impl Fn() -> TimestampMs,
        mut report: impl FnMut(Vec<ScrapeOutcome>),
    ) {
        every(interval, stop, || {
            // Fetch outside the lock so a slow target does not stall evaluation.
            let fetched: Vec<_> = self.targets.iter().map(|target| self.fetch(target)).collect();
            let now = clock();
            let outcomes = {
                let mut store = store.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                self.targets
                    .iter()
                    .zip(fetched)
                    .map(|(target, result)| record(&mut store, target, result, now))
                    .collect()
            };
            report(outcomes);
        });
    }
}

/// Runs `round` every `interval` (at least [`MIN_SCRAPE_INTERVAL`]) until `stop` is set. Rounds
/// keep their cadence however long each took, and stopping never waits a whole interval.
pub(crate) fn every(interval: Duration, stop: &AtomicBool, mut round: impl FnMut()) {
    let interval = interval.max(MIN_SCRAPE_INTERVAL);
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        round();
        wait_for_next_round(started, interval, stop);
    }
}

/// How often a waiting loop checks its stop flag: stopping never waits a whole interval.
const STOP_CHECK: Duration = Duration::from_millis(100);

/// Sleeps until `interval` after `round` began (so rounds keep their cadence however long the
/// fetches took), returning early once `stop` is set.
fn wait_for_next_round(round: Instant, interval: Duration, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let remaining = interval.saturating_sub(round.elapsed());
        if remaining.is_zero() {
            return;
        }
        std::thread::sleep(remaining.min(STOP_CHECK));
    }
}

/// Stores one scrape's result at `now`, with the `up` sample.
pub fn record(
    store: &mut Store,
    target: &ScrapeTarget,
    result: Result<Vec<Sample>, Error>,
    now: TimestampMs,
) -> ScrapeOutcome {
    let (samples, error) = match result {
        Ok(samples) => match push::ingest(store, &samples, &target.labels, now) {
            Ok(count) => (count, None),
            Err(error) => (0, Some(error.to_string())),
        },
        Err(error) => (0, Some(error.to_string())),
    };
    let up = if error.is_none() { 1.0 } else { 0.0 };
    // `up` is best effort: if even it is refused (series limit), the scrape error says why.
    let _ = store.ingest(UP_METRIC, &target.labels, SeriesKind::Gauge, now, up);
    ScrapeOutcome { url: target.url.clone(), samples, error }
}
