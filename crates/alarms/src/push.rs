//! Pushed samples: expositions or parsed samples stored at a given time with the sender's
//! labels. The scraper stores what it reads through here too. Pure: no I/O.

use crate::Error;
use crate::exposition::{self, ExpositionLimits, Sample};
use crate::series::{BatchSample, Labels, Store, TimestampMs};

/// Stores pushed or scraped samples at `now` with `labels` added (and winning), all or none:
/// if the store refuses any sample, nothing of the batch is stored and the error says which
/// sample. The caller then treats the scrape as failed (`up` 0), which gates read as missing
/// data, so an alarm never sums half a scrape.
pub fn ingest(
    store: &mut Store,
    samples: &[Sample],
    labels: &Labels,
    now: TimestampMs,
) -> Result<usize, Error> {
    let labelled: Vec<Labels> = samples
        .iter()
        .map(|sample| {
            let mut series_labels = sample.labels.clone();
            series_labels.extend(labels.iter().map(|(k, v)| (k.clone(), v.clone())));
            series_labels
        })
        .collect();
    let batch: Vec<BatchSample> = samples
        .iter()
        .zip(&labelled)
        .map(|(sample, labels)| BatchSample {
            name: &sample.name,
            labels,
            kind: sample.kind,
            value: sample.value,
        })
        .collect();
    store.ingest_all(now, &batch)?;
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
