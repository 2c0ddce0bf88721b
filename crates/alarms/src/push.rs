//! Pushed samples: expositions or parsed samples stored at a given time with the sender's
//! labels. The scraper stores what it reads through here too. Pure: no I/O.

use crate::Error;
use crate::exposition::{self, ExpositionLimits, Sample};
use crate::series::{Labels, Store, TimestampMs};

/// Stores pushed or scraped samples at `now` with `labels` added (and winning). Stops at the
/// first sample the store refuses and returns its error; samples before it stay stored, as a
/// partial scrape in Prometheus would.
pub fn ingest(
    store: &mut Store,
    samples: &[Sample],
    labels: &Labels,
    now: TimestampMs,
) -> Result<usize, Error> {
    for sample in samples {
        let mut series_labels = sample.labels.clone();
        series_labels.extend(labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        store.ingest(&sample.name, &series_labels, sample.kind, now, sample.value)?;
    }
    Ok(samples.len())
}

/// Parses a pushed exposition and stores it at `now` with `labels`: the push endpoint's body.
pub fn exposition(
    store: &mut Store,
    text: &str,
    labels: &Labels,
    limits: &ExpositionLimits,
    now: TimestampMs,
) -> Result<usize, Error> {
    let samples = exposition::parse(text, limits)
        .map_err(|source| Error::Exposition { url: "push".to_string(), source })?;
    ingest(store, &samples, labels, now)
}
